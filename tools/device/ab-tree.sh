#!/usr/bin/env bash
# Writes the tree of commit REF (default: main) to .device/ab/REF for `gpu.sh ab` (git-ignored; carry
# it: about 2.5 MB), with its full sha in AB_COMMIT so the benchmark JSON names it.
#   bash tools/device/ab-tree.sh ee7d3b5     -> .device/ab/ee7d3b5
set -euo pipefail
cd "$(dirname "$0")/../.."
ref="${1:-main}"
sha=$(git rev-parse --verify "$ref^{commit}")
dir=".device/ab/$ref"
rm -rf "$dir"
mkdir -p "$dir"
git archive "$ref" | tar -x -C "$dir"
echo "$sha" > "$dir/AB_COMMIT"
echo "$dir ($(du -sh "$dir" | cut -f1)): carry it and run  bash tools/device/gpu.sh ab $dir SCRIPT [ARGS...]"
