#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages, then configures and
# builds acns into build/. Idempotent: quiet when everything is already there.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  build-essential pkg-config meson ninja-build python3
  clang llvm libclang-rt-14-dev
  libabsl-dev libyaml-dev libre2-dev
  libprotobuf-dev protobuf-compiler
  libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev libnl-route-3-dev
  libc-ares-dev libmicrohttpd-dev liburing-dev
  libgrpc++-dev protobuf-compiler-grpc prometheus-cpp-dev
  # tests and benchmarks: real DNS servers and clients, started by the tests themselves
  libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 iputils-ping dnsutils knot-dnsutils unbound dnsperf dnsdist prometheus
  # the connection graph's HTML page is looked at in a real browser (headless), in a monospace font
  chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # unbound and dnsdist are for tests, which start their own on 127.0.0.1: keep their packages
  # from starting system services on this machine (Debian's policy-rc.d convention).
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  trap '[[ -n "$added_policy" ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ "${1:-}" == "--no-build" ]] && exit 0

if [[ ! -f build/build.ninja ]]; then
  meson setup build --buildtype=release >/dev/null
fi
ninja -C build >/dev/null || ninja -C build
