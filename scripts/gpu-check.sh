#!/usr/bin/env bash
# Run on a GPU machine without a Rust toolchain, from the repository root,
# after scripts/gpu-build.sh filled .gpu/ (and .whl/) on the development
# machine:
#
#   scripts/gpu-check.sh            # everything under $OUT (default ./gpu-out)
#   L0_GPU_CHECK_DRY=1 scripts/gpu-check.sh   # every step on the CPU, small
#
# In order of importance, each step under its own time limit and the whole
# under L0_GPU_CHECK_BUDGET_S (default 540 s; a step that would start with
# less than its need left is skipped and says so), so that a slow step
# cannot starve the ones before it:
# 1. records nvidia-smi, where NVRTC was found (its version; the kernels'
#    arch and whether a cubin or PTX was loaded appear in every backend line);
# 2. runs every test binary with L0_REQUIRE_GPU=1 (a missing GPU is a
#    failure, not a skip), tests/cuda_kernels.rs also with L0_REQUIRE_NVRTC=1;
#    tests/cli.rs and tests/io_formats.rs read files at the build machine's
#    paths (.gpu/BUILD_ROOT), which are linked to this checkout when they
#    are missing;
# 3. the Python package's GPU tests (python/tests, marker gpu: fit, sweep,
#    fit_to_budget and refit on cuda against the CLI bit for bit and the
#    CPU within the CUDA tests' tolerance) with L0_REQUIRE_GPU=1, from the
#    wheels in .whl/ (l0_rs and pytest; numpy and scipy must be installed);
# 4. whole commands timed as a user times them, at production shape
#    (13,120 x 5,232,000, ~146M nonzeros) from the scipy .npz that
#    examples/write_problem writes: `l0 calibrate --device cuda --epochs
#    1000` (goal 10 s, with its split into load, setup, training, outputs),
#    Python `fit` of 1000 epochs from a CSR in memory (goal 5 s) and `l0
#    sweep` of 16 lambda x 1000 epochs (goal 30 s);
# 5. the epoch's bandwidth at ~146M and ~300M nonzeros, one fit and a
#    batch of 8 per epoch (examples/gpu_bench --models 8; goals 70% of the
#    rated bandwidth, a batch of 8 at most 2x one fit), and a sweep of 8 λ
#    against one fit as whole calls (examples/sweep_bench);
# 6. (when asked: L0_SKIP without them) parity on the 250k-column geo
#    problem, l0-python on torch CUDA (when importable or its wheel is in
#    .whl/) and Nsight Compute on one epoch's kernels.
# Every figure goes to $OUT/summary.txt, the logs beside it.
#
# Environment: L0_GPU_DIR (default .gpu), OUT, L0_NVRTC_LIB (a folder with
# libnvrtc.so.*), L0_SKIP (steps to leave out, default "parity reference
# ncu"; names: tests pytest commands bench146 bench300 sweep parity
# reference ncu), L0_REFERENCE_PROBLEMS (default geo:12000:436:40:30),
# L0_GPU_CHECK_BUDGET_S, L0_GPU_CHECK_DRY=1 (every step on the CPU at a
# small shape and few epochs, with no GPU required: checks the script
# itself on a machine without one), L0_WORK (scratch, default
# /tmp/l0-gpu-check).
# Exit status: non-zero when a test, a parity check or a timed command failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${L0_GPU_DIR:-$root/.gpu}"
out="${OUT:-$root/gpu-out}"
work="${L0_WORK:-/tmp/l0-gpu-check}"
mkdir -p "$out" "$work"
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
skips="${L0_SKIP-parity reference ncu}"
skip() { [[ " $skips " == *" $1 "* ]]; }
failed=0
budget="${L0_GPU_CHECK_BUDGET_S:-540}"
# Seconds left of the budget; `room NAME NEED` is false (and says so) when
# fewer than NEED are left for step NAME.
left() { echo $((budget - SECONDS)); }
room() {
    if [ "$(left)" -lt "$2" ]; then
        say "$1: skipped, $(left) s of the budget left (needs $2 s)"
        return 1
    fi
}
# The least of LIMIT and the seconds left (at least 1).
cap() {
    local l
    l=$(left)
    [ "$l" -lt 1 ] && l=1
    [ "$1" -lt "$l" ] && echo "$1" || echo "$l"
}
# Runs "$@" under `timeout`, its wall time (s) in $wall.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    local rc=$?
    t1=$(date +%s.%N)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    return $rc
}
# "met" or "NOT met" for a wall time against a goal in seconds.
goal() { awk -v w="$1" -v g="$2" 'BEGIN { print (w <= g ? "met" : "NOT met") }'; }

if [ "${L0_GPU_CHECK_DRY:-0}" = 1 ]; then
    dev=cpu require=0 prod=geo:300:20:10:10 big=geo:300:20:20:16 epochs=50 bench_epochs=3
    gpu_bench_shape=(--households 300 --areas 20 --national 10 --per-area 10)
    gpu_bench_big=(--households 300 --areas 20 --national 20 --per-area 16)
    say "DRY RUN: every step on the CPU at a small shape; nothing here measures a GPU"
else
    dev=cuda require=1 prod=geo:12000:436:40:30 big=geo:12000:436:80:64 epochs=1000 bench_epochs=50
    gpu_bench_shape=()
    gpu_bench_big=(--national 80 --per-area 64)
fi

if [ ! -d "$dir/bin" ]; then
    say "no prebuilt binaries in $dir/bin: run scripts/gpu-build.sh on the development machine"
    exit 2
fi
[ -f "$dir/COMMIT" ] && say "binaries built from commit $(cat "$dir/COMMIT")"
say "started $(date -u +%FT%TZ), budget ${budget} s, device $dev"

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

# 2. Every test binary, a missing GPU a failure.
run_test() { # name binary limit
    local name="$1" bin="$2" limit
    limit=$(cap "$3")
    L0_REQUIRE_GPU=$require L0_REQUIRE_NVRTC=$require timeout "$limit" "$bin" --test-threads=1 \
        >"$out/test-$name.log" 2>&1
    local rc=$?
    say "test $name: $(grep -E '^test result' "$out/test-$name.log" | tail -1) (exit $rc)"
    [ $rc -eq 0 ] || failed=1
    grep -E 'panicked|FAILED|^NVRTC|skipped' "$out/test-$name.log" | head -8 | tee -a "$summary"
}
# tests/cli.rs and tests/io_formats.rs find the `l0` binary, their data and
# scratch folder at the build machine's paths: link them here when missing.
map_build_root() {
    local b
    b="$(cat "$dir/BUILD_ROOT" 2>/dev/null)" || return 1
    if [ "$b" != "$root" ] && [ ! -e "$b" ]; then
        mkdir -p "$(dirname "$b")" 2>/dev/null && ln -s "$root" "$b" 2>/dev/null || return 1
    fi
    mkdir -p "$b/target/release" "$b/target/tmp" || return 1
    [ -x "$b/target/release/l0" ] || cp "$dir/bin/l0" "$b/target/release/l0" || return 1
}
if ! skip tests; then
    if [ -x "$dir/bin/tests/cuda_kernels" ]; then
        run_test cuda_kernels "$dir/bin/tests/cuda_kernels" 120
    else
        say "missing $dir/bin/tests/cuda_kernels"
        failed=1
    fi
    mapped=1
    map_build_root || mapped=0
    for name in batch sweep budget calibration regression gradients reference_parity skips \
        l0-unit cli io_formats; do
        bin="$dir/bin/tests/$name"
        [ -x "$bin" ] || continue
        if [[ $name == cli || $name == io_formats ]] && [ $mapped = 0 ]; then
            say "test $name: not run, the build machine's path $(cat "$dir/BUILD_ROOT" 2>/dev/null) cannot be made here"
            failed=1
            continue
        fi
        room "test $name" 20 || { failed=1; continue; }
        run_test "$name" "$bin" 150
    done
    for bin in "$dir"/bin/tests/*; do # any binary not listed above
        name="$(basename "$bin")"
        case " cuda_kernels batch sweep budget calibration regression gradients reference_parity skips l0-unit cli io_formats " in
            *" $name "*) continue ;;
        esac
        room "test $name" 20 || { failed=1; continue; }
        run_test "$name" "$bin" 120
    done
fi

# 3. The Python package's GPU tests, from the wheels in .whl/.
pysite="$work/python"
python_ready() {
    [ -d "$pysite/l0_rs" ] && return 0
    compgen -G "$root/.whl/l0_rs-*.whl" >/dev/null || {
        say "python: no l0_rs wheel in .whl/ (scripts/gpu-build.sh builds it)"
        return 1
    }
    { python3 -m pip install -q --no-index --no-deps --find-links "$root/.whl" --target "$pysite" l0_rs &&
        python3 -m pip install -q --no-index --find-links "$root/.whl" --target "$pysite" pytest; } \
        >"$out/pip.log" 2>&1 || {
        say "python: installing .whl/ failed (see pip.log)"
        return 1
    }
}
if ! skip pytest && room pytest 60; then
    if python_ready; then
        PYTHONPATH="$pysite${PYTHONPATH:+:$PYTHONPATH}" L0_REQUIRE_GPU=$require \
            L0_BIN="$dir/bin/l0" timeout "$(cap 180)" python3 -m pytest -q -rs -p no:cacheprovider \
            -m gpu "$root/python/tests" >"$out/pytest-gpu.log" 2>&1
        rc=$?
        say "pytest -m gpu: $(tail -1 "$out/pytest-gpu.log") (exit $rc)"
        grep -E '^(FAILED|ERROR|SKIPPED)' "$out/pytest-gpu.log" | head -8 | tee -a "$summary"
        [ $rc -eq 0 ] || failed=1
    else
        failed=1
    fi
fi

# 4. Whole commands at production shape, from the files a user has.
l0="$dir/bin/l0"
prob="$work/prod"
problem_ready() {
    [ -f "$prob/M.npz" ] && return 0
    timeout "$(cap 150)" "$dir/bin/examples/write_problem" "$prod" "$prob" >"$out/write-problem.log" 2>&1
    local rc=$?
    say "$(tail -1 "$out/write-problem.log") (exit $rc)"
    return $rc
}
inputs=(--matrix "$prob/M.npz" --targets "$prob/y.npy" --groups "$prob/groups.npy"
    --loss relative --lr 0.15 --seed 1 --device "$dev")
if ! skip commands && room commands 90 && problem_ready; then
    for run in 1 2; do
        room "calibrate run $run" 20 || break
        timed timeout "$(cap 120)" "$l0" calibrate "${inputs[@]}" --lambda-l0 1e-6 --epochs "$epochs" \
            --out "$work/cal" --overwrite >"$out/calibrate-$run.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || failed=1
        say "l0 calibrate --device $dev --epochs $epochs (run $run): $wall s wall, goal 10 s $(goal "$wall" 10) (exit $rc)"
        grep -E '^(time|done):' "$out/calibrate-$run.log" | tee -a "$summary"
    done
    if room "python fit" 30 && python_ready; then
        PYTHONPATH="$pysite${PYTHONPATH:+:$PYTHONPATH}" timeout "$(cap 120)" python3 \
            "$root/scripts/gpu_python_fit.py" "$prob" --epochs "$epochs" --device "$dev" \
            >"$out/python-fit.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || failed=1
        say "python fit (exit $rc; goal 5 s per call):"
        grep -E '^python|Error' "$out/python-fit.log" | tee -a "$summary"
    fi
    if room "sweep" 40; then
        timed timeout "$(cap 150)" "$l0" sweep "${inputs[@]}" --lambda-grid 1e-7:1e-4:16 \
            --epochs "$epochs" --out "$work/sweep" --overwrite >"$out/sweep-16.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || failed=1
        say "l0 sweep 16 lambda x $epochs epochs --device $dev: $wall s wall, goal 30 s $(goal "$wall" 30) (exit $rc)"
        grep -E '^(done|warning)' "$out/sweep-16.log" | head -4 | tee -a "$summary"
    fi
fi

# 5. The epoch's bandwidth, one fit and a batch of 8, then whole calls.
bench="$dir/bin/examples/gpu_bench"
bench_run() { # name limit args...
    local name="$1" limit
    limit=$(cap "$2")
    shift 2
    timeout "$limit" "$bench" "$@" >"$out/bench-$name.log" 2>&1
    local rc=$?
    say "bench $name (exit $rc): $*"
    grep -E '^(problem|least|cpu|cuda|step-0|PARITY|RESULT|batch|error)' "$out/bench-$name.log" | tee -a "$summary"
    return $rc
}
if ! skip bench146 && room bench146 60; then
    bench_run prod146 150 ${gpu_bench_shape[@]+"${gpu_bench_shape[@]}"} --devices "cpu,$dev" --cpu-epochs 2 \
        --gpu-epochs "$bench_epochs" --models 8 || failed=1
fi
if ! skip bench300 && room bench300 90; then
    bench_run prod300 200 ${gpu_bench_big[@]+"${gpu_bench_big[@]}"} --devices "$dev" --gpu-epochs "$bench_epochs" \
        --models 8 || failed=1
fi
sweeps="$dir/bin/examples/sweep_bench"
if ! skip sweep && room sweep_bench 90; then
    timeout "$(cap 200)" "$sweeps" "$prod" --epochs "$epochs" --device "$dev" >"$out/sweep-bench.log" 2>&1
    say "sweep_bench $prod --epochs $epochs --device $dev (exit $?):"
    grep -E '^\{|rror' "$out/sweep-bench.log" | tail -3 | tee -a "$summary"
fi

# 6. Parity, the reference and Nsight Compute, when asked for.
if ! skip parity && room parity 60; then
    bench_run parity 150 --households 5000 --areas 50 --national 30 --per-area 40 \
        --devices "cpu,$dev" --cpu-epochs 3 --gpu-epochs 50 --parity --parity-epochs 500 || failed=1
fi
if ! skip reference && room reference 120 && [ -x "$dir/bin/examples/epoch_time" ]; then
    if ! python3 -c 'import l0.calibration' 2>/dev/null && compgen -G "$root/.whl/l0_python-*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/l0-ref "$root"/.whl/l0_python-*.whl \
            && export PYTHONPATH="/tmp/l0-ref${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if python3 -c 'import l0.calibration' 2>/dev/null; then
        PYTHONUNBUFFERED=1 timeout "$(cap "${L0_REFERENCE_TIMEOUT:-240}")" python3 "$root/scripts/compare_reference.py" \
            --device "$dev" --l0-bin "$dir/bin/examples/epoch_time" --epochs-ref 10 --epochs-l0 300 \
            --problems "${L0_REFERENCE_PROBLEMS:-$prod}" >"$out/reference.log" 2>&1
        say "l0-python on $dev (exit $?):"
        grep -vE 'Warning|M_torch|warn' "$out/reference.log" | tail -20 | tee -a "$summary"
    else
        say "l0-python not importable: reference comparison skipped"
    fi
fi
ncu="$(command -v ncu || compgen -G '/opt/nvidia/nsight-compute/*/ncu' | head -1 || true)"
if ! skip ncu && [ -n "$ncu" ] && room ncu 120; then
    timeout "$(cap 120)" "$ncu" --section SpeedOfLight --section LaunchStats --section Occupancy \
        --section MemoryWorkloadAnalysis -k 'regex:^(spmv_segments|residual|column_dots|step_columns)$' \
        --launch-skip 4 -c 4 "$bench" --devices "$dev" --gpu-epochs 2 >"$out/ncu.log" 2>&1
    say "ncu (exit $?):"
    grep -E '^  [a-z_]+\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Issue Slots Busy|L2 Hit Rate|L1/TEX Hit Rate' \
        "$out/ncu.log" | head -60 | tee -a "$summary"
fi

say "finished $(date -u +%FT%TZ) after ${SECONDS} s"
say "overall: $([ $failed -eq 0 ] && echo PASS || echo FAIL)"
exit $failed
