#!/usr/bin/env bash
# Run on the development machine: builds the release test, example and bench
# binaries and the `l0` command, copies the executables into .gpu/
# (git-ignored), and builds the Python package's wheel into .whl/ with
# pytest's wheels beside it, ready for scripts/gpu-check.sh on a GPU machine
# that has no Rust toolchain (numpy and scipy must be installed there).
#
#   scripts/gpu-build.sh                 # -> .gpu/bin/{l0,tests/*,examples/*,benches/*}, .whl/*.whl
#   scripts/gpu-build.sh --with-nvrtc    # also copy NVRTC into .gpu/lib (~115 MB)
#   scripts/gpu-build.sh --no-python     # no wheels
#
# The binaries load libcuda and NVRTC at run time, so nothing CUDA is needed
# here. Symbols and debug info are stripped to keep the folder small (about 64 MiB is the
# most some runners carry). Environment: L0_GPU_DIR (default .gpu),
# CARGO_TARGET_DIR as usual.
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${L0_GPU_DIR:-.gpu}"
with_nvrtc=0
with_python=1
for a in "$@"; do
    case "$a" in
        --with-nvrtc) with_nvrtc=1 ;;
        --no-python) with_python=0 ;;
        *) echo "unknown argument $a" >&2; exit 2 ;;
    esac
done

rm -rf "$dest"
mkdir -p "$dest/bin/tests" "$dest/bin/examples" "$dest/bin/benches"

# Lists "kind name path" for every executable in cargo's JSON messages.
executables() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    kind = t["kind"][0]
    name = t["name"] + ("-unit" if kind == "lib" else "")
    if kind == "bin" and m["profile"]["test"]:
        # The unit tests of a binary are a test binary, not the command.
        kind, name = "test", t["name"] + "-bin-unit"
    print(kind, name, m["executable"])
'
}

copy() { # kind name path
    local sub
    case "$1" in
        bin)
            cp "$3" "$dest/bin/$2"
            strip "$dest/bin/$2" 2>/dev/null || true
            return 0
            ;;
        test | lib) sub=tests ;;
        example) sub=examples ;;
        bench) sub=benches ;;
        *) return 0 ;;
    esac
    cp "$3" "$dest/bin/$sub/$2"
    strip "$dest/bin/$sub/$2" 2>/dev/null || true
}

cargo test --release --no-run --message-format=json-render-diagnostics | executables |
    while read -r kind name path; do copy "$kind" "$name" "$path"; done
cargo build --release --bins --examples --benches --message-format=json-render-diagnostics |
    executables | while read -r kind name path; do copy "$kind" "$name" "$path"; done

if [ "$with_nvrtc" = 1 ]; then
    lib="$(scripts/install-nvrtc.sh)"
    mkdir -p "$dest/lib"
    cp "$lib"/libnvrtc.so.* "$lib"/libnvrtc-builtins.so.* "$dest/lib/"
fi

if [ "$with_python" = 1 ]; then
    # The l0_rs wheel (abi3: any CPython from 3.9) and pytest's, installed
    # on the GPU machine with --no-index.
    rm -rf .whl/l0_rs-*.whl
    mkdir -p .whl
    python3 -m pip wheel -q --no-deps -w .whl ./python
    # Pure-Python wheels resolved for CPython 3.9, so that any later
    # CPython on the GPU machine finds what its pytest needs among them
    # (pip evaluates the markers for this Python: the two for 3.9 and 3.10
    # are named).
    rm -rf .whl/pytest-*.whl
    python3 -m pip download -q --only-binary=:all: --platform any --implementation py \
        --python-version 3.9 -d .whl pytest exceptiongroup tomli
fi

git rev-parse HEAD >"$dest/COMMIT" 2>/dev/null || true
# tests/cli.rs and tests/io_formats.rs find their files at this path.
pwd >"$dest/BUILD_ROOT"
echo "binaries in $dest:" >&2
du -ah "$dest" | sort -k2 >&2
if [ -d .whl ]; then
    du -ah .whl >&2
fi
echo "carried in all (.gpu and .whl; at most 64 MiB): $(du -sch "$dest" .whl 2>/dev/null | tail -1 | cut -f1)" >&2
