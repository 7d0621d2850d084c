#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the release plugin and harness into dist/,
# then runs aiges_embed's pytest tests and the Swift test targets (which drive dist/ through subprocesses).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
# The tests drive dist/ (release) through subprocesses: build only the test bundle, not debug copies of
# the plugin, harness and faults driver that nothing runs.
swift build --product aiges-swift-wrapperPackageTests
# aiges_embed's own tests (python/tests), with Debian's Python: the one the plugin embeds.
/usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
swift test --skip-build "$@"
