#!/usr/bin/env bash
# Benchmarks dist/libwrapper.so with `aiges-harness bench` (loaded like the loader, called from
# loader-style threads) and writes the tables to docs/performance.md.
#   scripts/bench.sh            # RSS after 1k vs 100k calls per workload (a few minutes)
#   scripts/bench.sh 20000      # a quicker run: RSS after 1k vs 20k calls
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
calls=${1:-100000}
command="dist/aiges-harness bench -c wrapper.file=scripts/bench/wrapper.py -n $calls"
tables=$($command 2>/dev/null)
{
    echo "# Performance"
    echo
    echo "Produced by \`scripts/bench.sh${1:+ $1}\`, which runs \`$command\`"
    echo "on $(date -u +%Y-%m-%d): $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
    echo "$(. /etc/os-release && echo "$PRETTY_NAME"), Python $(/usr/bin/python3 -c 'import platform; print(platform.python_version())'), release build."
    echo "Every figure below comes from that one run; the machine is shared and noisy, so compare"
    echo "ratios within the run rather than absolute numbers across runs."
    echo
    echo "- **default**: copy-on-read inputs (a node nobody reads costs nothing; reading it copies it once),"
    echo "  read-only outputs lent, writable ones copied; **data.lend**: the opt-in zero-copy inputs (views"
    echo "  straight over the loader's buffers); **data.copy**: every input and output copied, as a naive"
    echo "  plugin does. See README, \"Request and output memory\"."
    echo "- **floor**: the same \`wrapperOnceExec\` called directly from Python, in the same process, on"
    echo "  equivalent \`aiges_embed\` objects built beforehand (only the call is timed)."
    echo "- Latency is \`wrapperExec\` + \`wrapperExecFree\`; the harness builds its request list once"
    echo "  per thread, outside the timed region."
    echo "- **Worker processes** (config \`workers\`, last section): the same calls served by \`aiges-worker\`"
    echo "  processes. **cpu**: \`bench.cpu_loops\` rounds of Python arithmetic, the count calibrated"
    echo "  in-process to ~2 ms a call, then 4 caller threads with \`workers=0\` and \`workers=2\`, alternating;"
    echo "  tiny echo and the 16 MiB view-only input with \`workers=1\`, against the in-process median and"
    echo "  the harness's own \`memcpy\` of 16 MiB; the harness's RSS over N \`workers=1\` calls; and \`kill -9\`"
    echo "  of the worker while 4 threads call: calls by result, and the time to the first success begun after it."
    echo "- **Dynamic batching** (config \`batch.*\`): the \`device\` workload, a device that serves one call at"
    echo "  a time and takes ~5 ms whatever the batch size (the GIL released while it waits), from 8 caller"
    echo "  threads with \`batch.max_size\` 1 and 8, rounds alternating; one caller's median latency with each."
    echo "- **Tiny echo from several loader threads** (the entry gate, \`gil.gate_us\`/\`gil.stint_us\`): 1 and 4"
    echo "  caller threads, rounds alternating, on the machine as it is and beside a busy loop in a child"
    echo "  process (a second CPU-bound process, running during both the 1- and the 4-thread runs)."
    echo
    echo "$tables"
    cat docs/performance-notes.md
} > docs/performance.md
echo "wrote docs/performance.md"
