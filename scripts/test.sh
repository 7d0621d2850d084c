#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the release plugin and harness into dist/,
# then runs the Swift test targets (which drive dist/ through subprocesses).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
swift test "$@"
