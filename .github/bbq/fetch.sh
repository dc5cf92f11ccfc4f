#!/usr/bin/env bash
# Fetch the six BBQ categories the test suite reads from ../shared/bbq/data (the layout of the
# development machines), pinned to one upstream commit and checked against SHA256SUMS, so a
# GitHub runner tests against byte-identical items. BBQ (Parrish et al. 2022) is CC BY 4.0.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
dest="${1:-$repo_root/../shared/bbq/data}"
commit=bea11bd97d79217245b5871acd247b9d6eb24598   # nyu-mll/BBQ, 2022-07-06
base="https://raw.githubusercontent.com/nyu-mll/BBQ/$commit/data"
mkdir -p "$dest"
cd "$dest"
while read -r sum name; do
  if [ -f "$name" ] && echo "$sum  $name" | shasum -a 256 -c -s - 2>/dev/null; then
    continue
  fi
  curl -fsSL --retry 3 -o "$name.part" "$base/$name"
  mv "$name.part" "$name"
done < "$here/SHA256SUMS"
shasum -a 256 -c "$here/SHA256SUMS"
