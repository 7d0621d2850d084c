#!/usr/bin/env bash
# Builds dist/libwrapper.so, dist/aiges-harness and dist/aiges-faults (release).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product wrapper
swift build -c release --product aiges-harness
swift build -c release --product aiges-faults
bin=$(swift build -c release --show-bin-path)
mkdir -p dist
cp "$bin/libwrapper.so" "$bin/aiges-harness" "$bin/aiges-faults" dist/
echo "built dist/libwrapper.so, dist/aiges-harness and dist/aiges-faults"
