#!/usr/bin/env bash
# The main job: build the plugin, then serve examples/echo through it with the C harness,
# loading dist/libwrapper.so exactly as the AIGES loader does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
echo "--- serving examples/echo/wrapper.py through dist/libwrapper.so"
dist/aiges-harness exec -c wrapper.file=examples/echo/wrapper.py -c log.level=info \
    -p appid=demo -i text="hello from the AIGES Swift plugin" -i audio:audio=gen:16K -d audio.rate=16000
echo "--- the numpy example"
dist/aiges-harness exec -c wrapper.file=examples/numpy/wrapper.py \
    -i samples:audio=gen:64K -d samples.dtype=int16
echo "--- a streaming session (results pushed through the loader's callback, as with asyncMode = true)"
dist/aiges-harness session --push -c wrapper.file=examples/streaming/wrapper.py \
    -i text="streaming text arrives " -i text="in chunks and " -i text="is processed by a worker thread"
