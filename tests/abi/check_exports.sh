#!/usr/bin/env bash
# The exported symbols of libacns.so are exactly the global names of lib/acns.map, and every
# function declared in acns.h is among them.
set -euo pipefail
lib=$1 map=$2 header=$3
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}' | sed 's/@.*//' | sort -u)
listed=$(sed -n '/global:/,/local:/p' "$map" | grep -o 'acns_[a-z0-9_]*' | sort -u)
declared=$(grep '^ACNS_API' "$header" | grep -o 'acns_[a-z0-9_]*(' | tr -d '(' | sort -u)
status=0
if [[ "$exported" != "$listed" ]]; then
  echo "exported symbols differ from $map:"; diff <(echo "$exported") <(echo "$listed") || true; status=1
fi
if [[ "$declared" != "$listed" ]]; then
  echo "functions in acns.h differ from $map:"; diff <(echo "$declared") <(echo "$listed") || true; status=1
fi
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[[ "$soname" == libacns.so.* ]] || { echo "bad soname: $soname"; status=1; }
[[ $status == 0 ]] && echo "$(echo "$listed" | wc -l) symbols, soname $soname: ok"
exit $status
