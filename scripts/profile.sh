#!/usr/bin/env bash
# Instruction counts per tiny-echo call, by function, with valgrind --tool=callgrind.
# valgrind 3.19 cannot read the DWARF that Swift's clang emits, so the harness is built with gcc
# and the plugin is profiled from a copy stripped of debug info (function names stay in .symtab).
#   scripts/profile.sh [calls]      (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20000}
scripts/build.sh >/dev/null
mkdir -p .build/profile
gcc -O2 -g -Iinclude -ISources/AigesLoader/include Sources/AigesLoader/loader.c Sources/aiges-harness/*.c \
    -o .build/profile/aiges-harness -ldl -lpthread
strip --strip-debug -o .build/profile/libwrapper.so dist/libwrapper.so
valgrind --tool=callgrind --callgrind-out-file=.build/profile/callgrind.out \
    .build/profile/aiges-harness exec --so .build/profile/libwrapper.so -c wrapper.file=scripts/bench/wrapper.py \
    -c bench.workload=echo -i data:audio=gen:1K -n "$calls" -q >/dev/null 2>&1
echo "instructions per call (inclusive), $calls tiny echo calls:"
callgrind_annotate --inclusive=yes .build/profile/callgrind.out 2>/dev/null |
    grep -E '^ *[0-9,]+ .*(\?\?\?:(wrapperExec|wrapperExecFree|PyGILState_Ensure|PyGILState_Release) |UserWrapperC4callyAA5PyRef.*KF |OutputBatchC_4kind5loansAC.*cfc |OutputBatchCfD |LoanedRequestV4make.*Tf4nnd_n |makeDictyAA5PyRef)' |
    sed -E 's/^ *([0-9,]+) *\( *[0-9.]+%\) *[*]? *\?\?\?:([^ ]+) .*/\1 \2/' |
    awk -v n="$calls" '$2 !~ /^[(]/ {gsub(",", "", $1); printf "%8.0f  %s\n", $1 / n, $2}'
