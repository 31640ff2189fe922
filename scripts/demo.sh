#!/usr/bin/env bash
# Sets up acns and runs the main job. Until the agent exists, the job is acnsctl over the
# bundled example policies and FQDN cache files: validate policies, show DNS decisions and
# toFQDNs selectors, list a pre-cache.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctl=build/examples/agent/acnsctl
policies=examples/policies
kube_dns=(--server 198.51.100.10 --server-labels k8s-app=kube-dns --server-namespace kube-system)

run() { echo; echo "\$ acnsctl $*"; "$ctl" "$@" || true; }

run policy validate "$policies"
run policy validate examples/invalid-policies/broken.yaml
run policy check --policy "$policies" --labels app=crawler --namespace team-a "${kube_dns[@]}" --qname www.allowed.test
run policy check --policy "$policies" --labels app=crawler --namespace team-a "${kube_dns[@]}" --qname evil.example
run policy check --policy "$policies" --labels app=checkout --namespace payments "${kube_dns[@]}" --protocol tcp --qname a.b.bank.example
run policy check --policy "$policies" --labels app=web --namespace team-z "${kube_dns[@]}" --qname anything.example
run policy selectors --policy "$policies" -- www.allowed.test a.b.bank.example api.example.com unknown.example
run fqdn match --pattern '**.cilium.io' cilium.io test.cilium.io a.b.cilium.io
# A Cilium `fqdn cache list -o json` export (a pre-cache), listed as a table and back as JSON.
run fqdn cache list --precache examples/fqdn/precache.json
run fqdn cache list --precache examples/fqdn/precache.json -o json
