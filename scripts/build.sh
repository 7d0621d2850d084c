#!/usr/bin/env bash
# Builds dist/libwrapper.so, dist/aiges-worker (its worker processes, config workers), dist/aiges-harness
# and dist/aiges-faults (release).
# With AIGES_NO_BUILD=1 it only checks that dist/ has them (the tests set it when they run the
# README's commands: SwiftPM holds .build while `swift test` runs, so a nested build would wait forever).
set -euo pipefail
cd "$(dirname "$0")/.."
products=(libwrapper.so aiges-worker aiges-harness aiges-faults)
if [[ ${AIGES_NO_BUILD:-} == 1 ]]; then
    for product in "${products[@]}"; do
        [[ -f dist/$product ]] || { echo "build: AIGES_NO_BUILD=1 but dist/$product is missing" >&2; exit 1; }
    done
    echo "build: AIGES_NO_BUILD=1: using dist/ as it is"
    exit 0
fi
scripts/setup.sh
swift build -c release # the four products; test targets are built only by swift test
bin=$(swift build -c release --show-bin-path)
mkdir -p dist
for product in "${products[@]}"; do
    # Copy, then rename: a process running the old file keeps its mapping intact.
    cp "$bin/$product" "dist/.$product.new"
    mv -f "dist/.$product.new" "dist/$product"
done
echo "built dist/libwrapper.so, dist/aiges-worker, dist/aiges-harness and dist/aiges-faults"
