#!/usr/bin/env bash
# Run on a GPU machine without a Rust toolchain, from the repository root,
# after scripts/gpu-build.sh filled .gpu/ on the development machine:
#
#   scripts/gpu-check.sh            # everything under $OUT (default ./gpu-out)
#
# In order of importance, each step under its own time limit, so that a slow
# step cannot starve the ones before it:
# 1. records nvidia-smi, where NVRTC was found (its version; the kernels'
#    arch and whether a cubin or PTX was loaded appear in every backend line);
# 2. runs the CUDA tests (tests/cuda_kernels.rs) with L0_REQUIRE_GPU=1 and
#    L0_REQUIRE_NVRTC=1, so a missing GPU or NVRTC fails instead of skipping;
# 3. parity: the 250k-column geo problem trained on the CPU and the GPU from
#    the same state, max relative parameter difference after 1 epoch, loss
#    and active count after 500 epochs;
# 4. examples/gpu_bench at production shape (US districts, ~146M nonzeros)
#    and at ~300M nonzeros, CPU and CUDA on the same problem; then a sweep
#    of 8 λ against one fit on the GPU (examples/sweep_bench);
# 5. l0-python 0.6.2 on torch CUDA against l0 on the same card and problem,
#    when l0-python is importable or its wheel is in .whl/;
# 6. Nsight Compute on one epoch's kernels at production shape (when ncu is
#    there), and the ~300M-nonzero benchmark;
# 7. the other prebuilt test binaries except cli and io_formats, which read
#    files at build-machine paths (Device::Auto now picks the GPU).
# Every figure goes to $OUT/summary.txt, the logs beside it.
#
# Environment: L0_GPU_DIR (default .gpu), OUT, L0_NVRTC_LIB (a folder with
# libnvrtc.so.*), L0_SKIP="sweep reference ncu bench300 tests" (steps to leave out),
# L0_REFERENCE_PROBLEMS (default geo:12000:436:40:30).
# Exit status: non-zero when a test or parity check failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${L0_GPU_DIR:-$root/.gpu}"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
skip() { [[ " ${L0_SKIP:-} " == *" $1 "* ]]; }
failed=0

if [ ! -d "$dir/bin" ]; then
    say "no prebuilt binaries in $dir/bin: run scripts/gpu-build.sh on the development machine"
    exit 2
fi
[ -f "$dir/COMMIT" ] && say "binaries built from commit $(cat "$dir/COMMIT")"
say "started $(date -u +%FT%TZ)"

# 1. The card and NVRTC.
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed (see nvidia-smi.txt)"
say "card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null)"

# Folders that may hold libnvrtc.so*: the given one, the CUDA toolkit's, pip
# wheels of CUDA 12 (nvidia/cuda_nvrtc/lib) and CUDA 13 (nvidia/cu13/lib).
nvrtc_candidates() {
    printf '%s\n' "${L0_NVRTC_LIB:-}" "$dir/lib" /usr/local/cuda/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
        /usr/local/cuda-*/targets/x86_64-linux/lib "$HOME/.cache/l0-nvrtc/nvidia/cuda_nvrtc/lib"
    python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
    for p in nvidia.__path__:
        for sub in ("cu13/lib", "cu12/lib", "cuda_nvrtc/lib"):
            print(os.path.join(p, sub))
except Exception:
    pass
EOF
}
# The system loader's list, read once (no `grep -q` in a pipeline under
# pipefail: grep's early exit would fail the pipeline).
loader_list="$(ldconfig -p 2>/dev/null || true)"
nvrtc_dir=""
while read -r d; do
    if [ -n "$d" ] && compgen -G "$d/libnvrtc.so*" >/dev/null; then
        nvrtc_dir="$d"
        break
    fi
done < <(nvrtc_candidates)
if [ -n "$nvrtc_dir" ]; then
    export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "NVRTC from $nvrtc_dir: $(cd "$nvrtc_dir" && ls libnvrtc.so* | tr '\n' ' ')"
elif [[ "$loader_list" == *libnvrtc.so* ]]; then
    say "NVRTC from the system loader path"
else
    say "NVRTC not found: the CUDA steps will fail"
fi

# 2. The CUDA tests.
run_test() { # name binary limit
    local name="$1" bin="$2" limit="$3"
    L0_REQUIRE_GPU=1 L0_REQUIRE_NVRTC=1 timeout "$limit" "$bin" --test-threads=1 \
        >"$out/test-$name.log" 2>&1
    local rc=$?
    say "test $name: $(grep -E '^test result' "$out/test-$name.log" | tail -1) (exit $rc)"
    [ $rc -eq 0 ] || failed=1
}
if [ -x "$dir/bin/tests/cuda_kernels" ]; then
    run_test cuda_kernels "$dir/bin/tests/cuda_kernels" 120
    grep -E 'panicked|FAILED|^NVRTC' "$out/test-cuda_kernels.log" | head -20 | tee -a "$summary"
else
    say "missing $dir/bin/tests/cuda_kernels"
    failed=1
fi

bench="$dir/bin/examples/gpu_bench"
bench_run() { # name limit args...
    local name="$1" limit="$2"
    shift 2
    timeout "$limit" "$bench" "$@" >"$out/bench-$name.log" 2>&1
    local rc=$?
    say "bench $name (exit $rc): $*"
    grep -E '^(problem|least|cpu|cuda|step-0|PARITY|error)' "$out/bench-$name.log" | tee -a "$summary"
    return $rc
}

# 3. Parity on the 250k-column geo problem (7M nonzeros).
if [ -x "$bench" ]; then
    bench_run parity 150 --households 5000 --areas 50 --national 30 --per-area 40 \
        --cpu-epochs 3 --gpu-epochs 50 --parity --parity-epochs 500 || failed=1
    # 4. Production shape: ~146M, then ~300M nonzeros.
    bench_run prod146 150 --cpu-epochs 2 --gpu-epochs 30
else
    say "missing $bench"
    failed=1
fi

# 4b. A sweep of 8 λ against one fit of the same epochs on the GPU
# (examples/sweep_bench: one JSON line each, `ratio` = sweep / fit).
sweeps="$dir/bin/examples/sweep_bench"
if ! skip sweep && [ -x "$sweeps" ]; then
    for spec in "geo 200" "geo:12000:436:40:30 60"; do
        set -- $spec
        timeout 150 "$sweeps" "$1" --epochs "$2" --device cuda >"$out/sweep-$1.log" 2>&1
        say "sweep_bench $1 --epochs $2 --device cuda (exit $?):"
        grep -E '^\{|rror' "$out/sweep-$1.log" | tail -3 | tee -a "$summary"
    done
fi

# 5. l0-python on torch CUDA against l0 on the same card and problem.
if ! skip reference && [ -x "$dir/bin/examples/epoch_time" ]; then
    if ! python3 -c 'import l0.calibration' 2>/dev/null && compgen -G "$root/.whl/l0_python-*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/l0-ref "$root"/.whl/l0_python-*.whl \
            && export PYTHONPATH="/tmp/l0-ref${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if python3 -c 'import l0.calibration' 2>/dev/null; then
        PYTHONUNBUFFERED=1 timeout "${L0_REFERENCE_TIMEOUT:-240}" python3 "$root/scripts/compare_reference.py" \
            --device cuda --l0-bin "$dir/bin/examples/epoch_time" --epochs-ref 10 --epochs-l0 300 \
            --problems "${L0_REFERENCE_PROBLEMS:-geo:12000:436:40:30}" >"$out/reference.log" 2>&1
        say "l0-python on CUDA (exit $?):"
        grep -vE 'Warning|M_torch|warn' "$out/reference.log" | tail -20 | tee -a "$summary"
    else
        say "l0-python not importable: reference comparison skipped"
    fi
fi

# 6. Where the time goes: Nsight Compute on one epoch's kernels at
# production shape (throughput, memory and issue utilisation), then ~300M.
ncu="$(command -v ncu || compgen -G '/opt/nvidia/nsight-compute/*/ncu' | head -1 || true)"
if ! skip ncu && [ -n "$ncu" ] && [ -x "$bench" ]; then
    timeout 120 "$ncu" --section SpeedOfLight --section LaunchStats --section Occupancy \
        --section MemoryWorkloadAnalysis -k 'regex:^(spmv_segments|residual|column_dots|step_columns)$' \
        --launch-skip 4 -c 4 "$bench" --devices cuda --gpu-epochs 2 >"$out/ncu.log" 2>&1
    say "ncu (exit $?):"
    grep -E '^  [a-z_]+\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Issue Slots Busy|L2 Hit Rate|L1/TEX Hit Rate' \
        "$out/ncu.log" | head -60 | tee -a "$summary"
fi
if ! skip bench300 && [ -x "$bench" ]; then
    bench_run prod300 200 --national 80 --per-area 64 --cpu-epochs 1 --gpu-epochs 30
fi

# 7. The other test binaries, now with Device::Auto on the GPU.
if ! skip tests; then
    for bin in "$dir"/bin/tests/*; do
        name="$(basename "$bin")"
        case "$name" in
            cuda_kernels | cli | io_formats) continue ;;
        esac
        run_test "$name" "$bin" 60
    done
fi

say "finished $(date -u +%FT%TZ)"
say "overall: $([ $failed -eq 0 ] && echo PASS || echo FAIL)"
exit $failed
