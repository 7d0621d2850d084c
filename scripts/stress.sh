#!/usr/bin/env bash
# Stress run of the plugin: builds dist/ (scripts/build.sh), then runs `dist/aiges-faults stress`
# against Tests/Fixtures/stress for SECONDS (default 60): 8 loader-style threads mix wrapperExec,
# wrapperExecAsync with timeouts that expire, pull sessions and push sessions destroyed while results
# are still coming, then call wrapperFini with requests pending and sessions open. It fails on any
# wrong, missing, duplicate or late callback, and on RSS growth over 20 MiB after the warm-up.
# Then it runs the same scenario for a shorter time (a quarter, at least 15 s) with the driver built
# with clang -fsanitize=address into .build/asan/aiges-faults (every malloc/free in the process goes
# through ASan); there RSS is only reported, since ASan's quarantine keeps freed memory resident.
#
#   scripts/stress.sh [SECONDS] [aiges-faults options, e.g. -c stress.seed=0x1234 -c stress.threads=16]
#
# The plugin's own log (stderr: a warning per expired request) goes to a file whose path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
if [[ $# -gt 0 && $1 != -* ]]; then
    seconds=$1
    shift
fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
    echo "usage: scripts/stress.sh [SECONDS] [aiges-faults options]" >&2
    exit 2
fi
asan_seconds=$((seconds / 4 > 15 ? seconds / 4 : 15))
asan_seconds=$((asan_seconds < seconds ? asan_seconds : seconds))

scripts/build.sh
logs=$(mktemp -d "${TMPDIR:-/tmp}/aiges-stress-XXXXXX")
config=(-c "wrapper.file=$PWD/Tests/Fixtures/stress/wrapper.py")

echo "== stress: dist/aiges-faults for $seconds s (plugin log: $logs/stress.log)"
if ! dist/aiges-faults stress --so dist/libwrapper.so "${config[@]}" -c "stress.seconds=$seconds" "$@" \
    2>"$logs/stress.log"; then
    echo "stress failed (plugin log: $logs/stress.log)" >&2
    exit 1
fi

echo "== stress under AddressSanitizer: .build/asan/aiges-faults for $asan_seconds s (plugin log: $logs/asan.log)"
mkdir -p .build/asan
if ! clang -g -O1 -fsanitize=address -fno-omit-frame-pointer -Iinclude -ISources/AigesLoader/include \
    Sources/AigesLoader/loader.c Tests/Faults/*.c \
    -o .build/asan/aiges-faults -ldl -lpthread 2>"$logs/clang.log"; then
    cat "$logs/clang.log" >&2
    exit 1
fi
status=0
ASAN_OPTIONS=detect_leaks=0 .build/asan/aiges-faults stress --so dist/libwrapper.so "${config[@]}" \
    -c "stress.seconds=$asan_seconds" -c stress.rss_mib=0 "$@" 2>"$logs/asan.log" || status=$?
if grep -q AddressSanitizer "$logs/asan.log"; then
    grep -m1 -A30 AddressSanitizer "$logs/asan.log" >&2
    echo "AddressSanitizer reported an error (full log: $logs/asan.log)" >&2
    exit 1
fi
if ((status != 0)); then
    echo "stress under AddressSanitizer failed (plugin log: $logs/asan.log)" >&2
    exit 1
fi
rm -rf "$logs"
echo "stress: ok ($seconds s, then $asan_seconds s under AddressSanitizer)"
