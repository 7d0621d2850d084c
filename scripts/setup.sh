#!/usr/bin/env bash
# Installs what building and testing need, if missing: Debian's libpython3-dev (python3-embed.pc),
# python3-numpy (numpy example and tests), pkg-config, python3-venv, python3-pytest (python/tests), and
# what builds the aiges_embed wheel offline (pip, setuptools, wheel). The Swift toolchain must already be
# on PATH.
set -euo pipefail

packages=(libpython3-dev python3-numpy pkg-config python3-venv)
# aiges_embed's tests (python/tests; its wheel test builds with the packaging tools below).
packages+=(python3-pytest)
# scripts/package.sh (and the release test): the wheel, stripping and splitting debug info, `file`.
packages+=(python3-pip python3-setuptools python3-wheel binutils file)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift not found on PATH (install the Swift toolchain)" >&2; exit 1; }
