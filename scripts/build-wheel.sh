#!/usr/bin/env bash
# Builds the Python package (python/) into one wheel for every CPython from
# 3.9 on x86_64 Linux: abi3 (pyo3's abi3-py39), linked by zig against glibc
# 2.17 so that it is a manylinux2014 (manylinux_2_17) wheel, stripped. Writes
# it into python/dist/ (removing the wheels built there before), checks it
# with `auditwheel show` and prints its path as the last line on stdout:
#
#   wheel="$(scripts/build-wheel.sh)"
#   pip install "$wheel"            # or "$wheel[cuda]" for the GPU (NVRTC wheel)
#
# Needs a Rust toolchain and python3 only: maturin, ziglang (the zig linker)
# and auditwheel come from PyPI into a tools venv, pinned below.
# Environment:
#   L0_WHEEL_TOOLS   the tools venv (default: target/wheel-tools; reused when
#                    it already holds the pinned versions)
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${L0_WHEEL_TOOLS:-target/wheel-tools}"
pins=(maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2)
stamp="$tools/pins.txt"
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
    echo "installing ${pins[*]} into $tools" >&2
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
    echo "${pins[*]}" >"$stamp"
fi
tools="$(cd "$tools" && pwd)"

mkdir -p python/dist
rm -f python/dist/l0_rs-*.whl
# maturin finds zig through the tools venv's python (python -m ziglang).
PATH="$tools/bin:$PATH" maturin build --release --zig --compatibility manylinux2014 \
    --manifest-path python/Cargo.toml --out python/dist >&2

wheels=(python/dist/l0_rs-*.whl)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    echo "error: expected one wheel in python/dist, found: ${wheels[*]}" >&2
    exit 1
fi
wheel="${wheels[0]}"
case "$wheel" in
*-cp39-abi3-*manylinux*_x86_64.whl) ;;
*)
    echo "error: $wheel is not a cp39-abi3 manylinux x86_64 wheel" >&2
    exit 1
    ;;
esac
report="$("$tools/bin/auditwheel" show "$wheel")"
echo "$report" >&2
if ! grep -q 'consistent with the following platform tag' <<<"$report" ||
    ! grep -q '"manylinux_2_17_x86_64"' <<<"$report"; then
    echo "error: auditwheel does not find $wheel manylinux_2_17 (manylinux2014) compliant" >&2
    exit 1
fi
echo "$(du -k "$wheel" | cut -f1) KiB: $wheel" >&2
echo "$PWD/$wheel"
