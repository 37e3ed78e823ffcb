#!/usr/bin/env bash
# Run on the development machine: builds the release test, example and bench
# binaries and copies the executables into .gpu/ (git-ignored), ready for
# scripts/gpu-check.sh on a GPU machine that has no Rust toolchain.
#
#   scripts/gpu-build.sh                 # -> .gpu/bin/{tests,examples,benches}/*
#   scripts/gpu-build.sh --with-nvrtc    # also copy NVRTC into .gpu/lib (~115 MB)
#
# The binaries load libcuda and NVRTC at run time, so nothing CUDA is needed
# here. Debug info is stripped to keep the folder small (about 64 MiB is the
# most some runners carry). Environment: L0_GPU_DIR (default .gpu),
# CARGO_TARGET_DIR as usual.
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${L0_GPU_DIR:-.gpu}"
with_nvrtc=0
for a in "$@"; do
    case "$a" in
        --with-nvrtc) with_nvrtc=1 ;;
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
    print(kind, name, m["executable"])
'
}

copy() { # kind name path
    local sub
    case "$1" in
        test | lib) sub=tests ;;
        example) sub=examples ;;
        bench) sub=benches ;;
        *) return 0 ;;
    esac
    cp "$3" "$dest/bin/$sub/$2"
    strip --strip-debug "$dest/bin/$sub/$2" 2>/dev/null || true
}

cargo test --release --no-run --message-format=json-render-diagnostics | executables |
    while read -r kind name path; do copy "$kind" "$name" "$path"; done
cargo build --release --examples --benches --message-format=json-render-diagnostics |
    executables | while read -r kind name path; do copy "$kind" "$name" "$path"; done

if [ "$with_nvrtc" = 1 ]; then
    lib="$(scripts/install-nvrtc.sh)"
    mkdir -p "$dest/lib"
    cp "$lib"/libnvrtc.so.* "$lib"/libnvrtc-builtins.so.* "$dest/lib/"
fi

git rev-parse HEAD >"$dest/COMMIT" 2>/dev/null || true
echo "binaries in $dest:" >&2
du -ah "$dest" | sort -k2 >&2
