#!/usr/bin/env bash
# Installs NVRTC (the CUDA runtime compiler, no GPU needed) from the
# nvidia-cuda-nvrtc-cu12 wheel into a cache folder outside the repository,
# and prints the folder holding libnvrtc.so.12 (and libnvrtc-builtins, which
# NVRTC loads from the same folder) for LD_LIBRARY_PATH:
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
#   L0_REQUIRE_NVRTC=1 cargo test --test cuda_kernels
#
# Environment:
#   L0_NVRTC_DIR        install target (default: $HOME/.cache/l0-nvrtc)
#   L0_NVRTC_WHEEL_DIR  a folder that already holds the wheel: installs from it
#                       without touching the network
#   L0_NVRTC_VERSION    pin a wheel version (e.g. 12.9.86)
# The ~90 MB download is skipped when the library is already installed.
set -euo pipefail

dest="${L0_NVRTC_DIR:-$HOME/.cache/l0-nvrtc}"
lib="$dest/nvidia/cuda_nvrtc/lib"

if ! compgen -G "$lib/libnvrtc.so.*" >/dev/null || ! compgen -G "$lib/libnvrtc-builtins.so.*" >/dev/null; then
    spec="nvidia-cuda-nvrtc-cu12${L0_NVRTC_VERSION:+==$L0_NVRTC_VERSION}"
    args=(--quiet --disable-pip-version-check --no-deps --upgrade --target "$dest")
    if [ -n "${L0_NVRTC_WHEEL_DIR:-}" ]; then
        args+=(--no-index --find-links "$L0_NVRTC_WHEEL_DIR")
    fi
    echo "installing $spec into $dest" >&2
    python3 -m pip install "${args[@]}" "$spec" >&2
fi

if ! compgen -G "$lib/libnvrtc.so.*" >/dev/null; then
    echo "error: no libnvrtc.so.* under $lib after installing" >&2
    exit 1
fi
# cudarc looks for libnvrtc.so, then libnvrtc.so.13, then libnvrtc.so.12.
echo "$lib"
