#!/usr/bin/env bash
# Builds dist/libwrapper.so and dist/aiges-harness (release).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product wrapper
swift build -c release --product aiges-harness
bin=$(swift build -c release --show-bin-path)
mkdir -p dist
cp "$bin/libwrapper.so" "$bin/aiges-harness" dist/
echo "built dist/libwrapper.so and dist/aiges-harness"
