#!/usr/bin/env bash
# Run on a GPU machine without a Rust toolchain, from the repository root,
# after scripts/gpu-build.sh filled .gpu/ on the development machine:
#
#   scripts/gpu-check.sh            # logs under $OUT (default ./gpu-out)
#
# 1. records nvidia-smi and where NVRTC was found;
# 2. runs the CUDA tests (tests/cuda_kernels.rs) with L0_REQUIRE_GPU=1 and
#    L0_REQUIRE_NVRTC=1, so a missing GPU or NVRTC fails instead of skipping;
# 3. runs the other prebuilt test binaries except cli and io_formats, which
#    read files at build-machine paths (Device::Auto now picks the GPU);
# 4. runs examples/gpu_bench on a small and then a ~300M-nonzero problem,
#    CPU and CUDA backends on the same problem.
#
# Environment: L0_GPU_DIR (default .gpu), OUT, L0_NVRTC_LIB (a folder with
# libnvrtc.so.*), L0_BENCH_ARGS (arguments of the large benchmark),
# L0_BENCH_TIMEOUT (seconds, default 300), L0_SKIP_BENCH=1.
# Exit status: non-zero when a test failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${L0_GPU_DIR:-$root/.gpu}"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

if [ ! -d "$dir/bin" ]; then
    say "no prebuilt binaries in $dir/bin: run scripts/gpu-build.sh on the development machine"
    exit 2
fi
[ -f "$dir/COMMIT" ] && say "binaries built from commit $(cat "$dir/COMMIT")"

nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed (see nvidia-smi.txt)"

# NVRTC: the system's if the loader knows it, else the first folder found.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    candidates=("${L0_NVRTC_LIB:-}" "$dir/lib" /usr/local/cuda/lib64
        /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64
        "$HOME/.cache/l0-nvrtc/nvidia/cuda_nvrtc/lib")
    while read -r d; do candidates+=("$d"); done < <(python3 -c '
import os
try:
    import nvidia
    for p in nvidia.__path__:
        print(os.path.join(p, "cuda_nvrtc", "lib"))
except Exception:
    pass' 2>/dev/null)
    for d in "${candidates[@]}"; do
        if [ -n "$d" ] && compgen -G "$d/libnvrtc.so*" >/dev/null; then
            export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
            say "NVRTC from $d"
            break
        fi
    done
else
    say "NVRTC from the system loader path"
fi

failed=0
run_test() { # name binary [args...]
    local name="$1" bin="$2"
    shift 2
    L0_REQUIRE_GPU=1 L0_REQUIRE_NVRTC=1 timeout 600 "$bin" --test-threads=1 "$@" \
        >"$out/test-$name.log" 2>&1
    local rc=$?
    say "test $name: $(grep -E '^test result' "$out/test-$name.log" | tail -1) (exit $rc)"
    [ $rc -eq 0 ] || failed=1
}

if [ -x "$dir/bin/tests/cuda_kernels" ]; then
    run_test cuda_kernels "$dir/bin/tests/cuda_kernels"
else
    say "missing $dir/bin/tests/cuda_kernels"
    failed=1
fi
for bin in "$dir"/bin/tests/*; do
    name="$(basename "$bin")"
    case "$name" in
        # cuda_kernels ran above; cli and io_formats exercise only files and
        # the l0 program at paths of the build machine (CI covers them).
        cuda_kernels | cli | io_formats) continue ;;
    esac
    run_test "$name" "$bin"
done

if [ "${L0_SKIP_BENCH:-0}" != 1 ] && [ -x "$dir/bin/examples/gpu_bench" ]; then
    timeout 120 "$dir/bin/examples/gpu_bench" --households 20000 --areas 50 \
        --cpu-epochs 3 --gpu-epochs 50 >"$out/bench-small.log" 2>&1
    say "bench small (exit $?):"
    grep -E '^(problem|RESULT|step-0|cuda|cpu)' "$out/bench-small.log" | tee -a "$summary"
    # shellcheck disable=SC2086
    timeout "${L0_BENCH_TIMEOUT:-300}" "$dir/bin/examples/gpu_bench" \
        ${L0_BENCH_ARGS:---households 100000 --areas 100 --national 10 --area-targets 20 --cpu-epochs 3 --gpu-epochs 20} \
        >"$out/bench-large.log" 2>&1
    say "bench large (exit $?):"
    grep -E '^(problem|RESULT|step-0|cuda|cpu)' "$out/bench-large.log" | tee -a "$summary"
fi

# 5. l0-python on torch CUDA against l0 on the same card and problem (the
# default large problem, geo:100000:100:30:50, has about 320M nonzeros). torch
# is on the GPU machine; l0-python travels as a wheel in .whl/ (see the
# device notes: pip download --no-deps l0-python==0.6.2 into .whl).
if [ "${L0_SKIP_REFERENCE:-0}" != 1 ] && [ -x "$dir/bin/examples/epoch_time" ]; then
    if ! python3 -c 'import l0.calibration' 2>/dev/null && compgen -G "$root/.whl/l0_python-*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/l0-ref "$root"/.whl/l0_python-*.whl \
            && export PYTHONPATH="/tmp/l0-ref:${PYTHONPATH:-}"
    fi
    if python3 -c 'import l0.calibration' 2>/dev/null; then
        timeout "${L0_REFERENCE_TIMEOUT:-500}" python3 "$root/scripts/compare_reference.py" --device cuda \
            --l0-bin "$dir/bin/examples/epoch_time" --epochs-ref 3 --epochs-l0 20 \
            --problems "${L0_REFERENCE_PROBLEMS:-geo,geo:100000:100:30:50}" >"$out/reference.log" 2>&1
        say "l0-python on CUDA (exit $?):"
        grep -vE 'Warning|M_torch' "$out/reference.log" | tee -a "$summary"
    else
        say "l0-python not importable: reference comparison skipped"
    fi
fi

say "overall: $([ $failed -eq 0 ] && echo PASS || echo FAIL)"
exit $failed
