#!/usr/bin/env bash
# Builds the release tarball dist/aiges-swift-wrapper-<version>-linux-<arch>.tar.gz (and its .sha256):
#   libwrapper.so        stripped; its debug info is in libwrapper.so.debug, which its .gnu_debuglink names
#   libwrapper.so.debug  (objcopy --only-keep-debug; gdb finds it beside the library)
#   aiges-worker         worker process for config workers = N (the plugin runs it from beside itself)
#   aiges-harness        the loader-style smoke test; loads the libwrapper.so beside it
#   aiges_embed-*.whl    the aiges_embed package (python/), for authors' own tests and editors
#   examples/, docs/, README.md
# The version is Plugin.version in Sources/AigesBridge/Plugin.swift (what wrapperVersion returns).
#
#   scripts/package.sh [--no-build] [-o DIR]
#     --no-build   package dist/ as it is (by default scripts/build.sh builds it first)
#     -o DIR       write the tarball to DIR (default: dist/)
# AIGES_DIST=DIR takes libwrapper.so, aiges-worker and aiges-harness from DIR instead of dist/ (as the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "package: $*" >&2
    exit 1
}

build=1
out=dist
while (($#)); do
    case $1 in
    --no-build) build=0 ;;
    -o)
        (($# >= 2)) || fail "-o needs a folder"
        out=$2
        shift
        ;;
    *) fail "unknown argument \"$1\" (usage: scripts/package.sh [--no-build] [-o DIR])" ;;
    esac
    shift
done

version=$(sed -nE 's/.*static let version: StaticString = "aiges-swift-wrapper ([^"]+)".*/\1/p' \
    Sources/AigesBridge/Plugin.swift)
[[ $version =~ ^[0-9A-Za-z.+-]+$ ]] ||
    fail "cannot read the version (Plugin.version = \"aiges-swift-wrapper X.Y.Z\") from Sources/AigesBridge/Plugin.swift"
[[ -f python/pyproject.toml ]] ||
    fail "python/pyproject.toml not found: the aiges_embed wheel is built from the pip-installable package in python/"
for tool in objcopy strip readelf tar gzip sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install binutils tar gzip coreutils)"
done
/usr/bin/python3 -m pip --version >/dev/null 2>&1 ||
    fail "/usr/bin/python3 -m pip does not run (Debian: apt-get install python3-pip python3-setuptools python3-wheel)"

if ((build)); then scripts/build.sh; fi
bin=${AIGES_DIST:-dist}
for file in "$bin/libwrapper.so" "$bin/aiges-worker" "$bin/aiges-harness"; do
    [[ -f $file ]] || fail "$file not found (run scripts/build.sh, or drop --no-build)"
done

name="aiges-swift-wrapper-$version-linux-$(uname -m)"
work=$(mktemp -d "${TMPDIR:-/tmp}/aiges-package-XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/$name"
mkdir -p "$stage"

# The plugin without its debug info, which goes to a file of its own that the library links by name and CRC.
cp "$bin/libwrapper.so" "$stage/libwrapper.so"
objcopy --only-keep-debug "$stage/libwrapper.so" "$stage/libwrapper.so.debug"
chmod 0644 "$stage/libwrapper.so.debug"
strip --strip-unneeded --remove-section=.comment "$stage/libwrapper.so"
(cd "$stage" && objcopy --add-gnu-debuglink=libwrapper.so.debug libwrapper.so)
strip --strip-unneeded -o "$stage/aiges-harness" "$bin/aiges-harness"
strip --strip-unneeded -o "$stage/aiges-worker" "$bin/aiges-worker"

# The wheel, built from a copy of python/ so that the build leaves nothing (build/, *.egg-info) in the repo.
cp -r python "$work/python"
find "$work/python" -name __pycache__ -prune -exec rm -rf {} +
/usr/bin/python3 -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check \
    "$work/python" -w "$stage" >"$work/wheel.log" 2>&1 || {
    cat "$work/wheel.log" >&2
    fail "building the aiges_embed wheel from python/ failed"
}
wheels=("$stage"/*.whl)
((${#wheels[@]} == 1)) && [[ -f ${wheels[0]} ]] || fail "expected one wheel from python/, got: ${wheels[*]}"
wheel_version=$(basename "${wheels[0]}" | cut -d- -f2)
[[ $wheel_version == "$version" ]] ||
    fail "the aiges_embed wheel is version $wheel_version (python/pyproject.toml) but the plugin is $version (Plugin.version): make them equal"

# Examples, docs and the README: the files git knows (tracked or new, not ignored: no logs, no caches).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard -- examples docs README.md |
        while IFS= read -r -d '' file; do
            [[ -f $file ]] || continue # tracked but deleted in the work tree
            mkdir -p "$stage/$(dirname "$file")"
            cp -p "$file" "$stage/$file"
        done
else
    cp -r examples docs README.md "$stage/"
    find "$stage/examples" \( -name __pycache__ -o -name log \) -prune -exec rm -rf {} +
fi
[[ -f $stage/README.md && -f $stage/examples/echo/wrapper.py ]] || fail "README.md or examples/ missing from the package"

# A reproducible archive: sorted names, no owners, one mtime (the last commit's), no gzip timestamp.
mkdir -p "$out"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
tarball="$out/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$work" -cf - "$name" | gzip -n -9 >"$tarball"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "packaged $tarball"
tar -tzvf "$tarball" | awk '{printf "  %10s  %s\n", $3, $6}' | grep -v '/$'
