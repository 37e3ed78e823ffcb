#!/usr/bin/env python3
"""Side-by-side steady-state seconds per epoch: l0 (Rust) versus l0-python
0.6.2 (torch), on the very same problems, in the same run, on the same machine.

Usage (needs a Python with l0-python, torch, numpy, scipy; never run by CI):
    python scripts/compare_reference.py [--epochs-ref 5] [--epochs-l0 50] [--device cpu]
        [--problems readme,geo,geo:12000:436:40:30] [--l0-bin PATH]

For each problem it runs the Rust example `epoch_time`, which writes the
problem to a temporary folder (matrix.npz as scipy.sparse.save_npz writes it,
y.npy, groups.npy) and reports l0's steady-state seconds per epoch; then it
loads the same files with scipy and times SparseCalibrationWeights.fit with
the same options (relative loss, groups, lambda_l0 1e-6, lr 0.15).

Both sides are steady state: each times two run lengths (a short fit of
E/4 epochs, at least 1, and a long fit of E epochs, after a one-epoch
warm-up) and divides the difference of the times by the difference of the
epochs, so per-fit setup (the reference converts the matrix to a torch
sparse tensor inside every fit) is not counted as epochs. The reference's
setup per fit is printed too (short fit time minus its epochs), and so is
the ratio of CPU seconds per epoch (all threads, both sides), which other
work sharing the machine changes far less than wall time.
"""
import argparse, json, os, subprocess, sys, tempfile, time

import numpy as np
import scipy.sparse as sp
import torch
from l0.calibration import SparseCalibrationWeights


def load_problem(d):
    """The matrix, targets and groups epoch_time wrote (matrix.npz, or the
    CSR arrays older builds of epoch_time write)."""
    npz = os.path.join(d, "matrix.npz")
    if os.path.exists(npz):
        M = sp.load_npz(npz).tocsr()
    else:
        shape = tuple(np.load(os.path.join(d, "shape.npy")))
        M = sp.csr_matrix((np.load(os.path.join(d, "data.npy")),
                           np.load(os.path.join(d, "indices.npy")),
                           np.load(os.path.join(d, "indptr.npy"))), shape=shape)
    return M, np.load(os.path.join(d, "y.npy")), np.load(os.path.join(d, "groups.npy"))


def steady_state(fit, epochs):
    """(seconds per epoch, setup seconds per fit, CPU seconds per epoch)
    from fits of E/4 and E epochs after a one-epoch warm-up; `fit(n)`
    returns its (wall, CPU) times."""
    fit(1)
    short = max(1, epochs // 4)
    t_short, c_short = fit(short)
    if epochs <= short:
        return t_short / short, float("nan"), c_short / short
    t_long, c_long = fit(epochs)
    per_epoch = (t_long - t_short) / (epochs - short)
    return per_epoch, t_short - short * per_epoch, (c_long - c_short) / (epochs - short)


def time_reference(d, epochs, device):
    M, y, groups = load_problem(d)
    kw = dict(lambda_l0=1e-6, lr=0.15, loss_type="relative", target_groups=groups)

    def fit(n):
        """Wall and CPU seconds of one fit of a fresh model (matrix conversion included)."""
        model = SparseCalibrationWeights(n_features=M.shape[1], seed=1, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        model.fit(M, y, epochs=n, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, time.process_time() - c

    return steady_state(fit, epochs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs-ref", type=int, default=5)
    ap.add_argument("--epochs-l0", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--problems", default="readme,geo",
                    help="comma-separated: readme, geo, geo:H:G:NAT:PER "
                         "(geo:12000:436:40:30 is the production shape)")
    ap.add_argument("--l0-bin", default=None, help="prebuilt epoch_time example")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = a.l0_bin
    if exe is None:
        subprocess.run(["cargo", "build", "--release", "--example", "epoch_time"], cwd=root, check=True)
        exe = os.path.join(root, "target", "release", "examples", "epoch_time")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}; "
          f"steady state: fits of E/4 and E epochs (l0 E={a.epochs_l0}, reference E={a.epochs_ref}), difference")
    if a.device == "cuda":
        print(f"card: {torch.cuda.get_device_name(0)}")
    print(f"{'problem':20} {'rows':>6} {'cols':>8} {'nnz':>10} {'l0 s/epoch':>11} {'ref s/epoch':>12} "
          f"{'speed-up':>9} {'ref setup/fit':>14} {'CPU-time speed-up':>18}")
    for prob in a.problems.split(","):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([exe, prob, str(a.epochs_l0), d, "--device", a.device],
                                 check=True, capture_output=True, text=True).stdout
            mine = json.loads(out.strip().splitlines()[-1])
            try:
                ref, setup, ref_cpu = time_reference(d, a.epochs_ref, a.device)
            except Exception as e:  # e.g. torch.cuda.OutOfMemoryError at production size
                ref = None
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ours = mine["seconds_per_epoch"]
        head = f"{prob:20} {mine['rows']:6} {mine['cols']:8} {mine['nnz']:10} {ours:11.4f}"
        if ref is None:
            print(f"{head} {'failed':>12} {'-':>9}   [{mine['device']}] reference: {why}")
        else:
            cpu = mine.get("cpu_seconds_per_epoch")
            cpu_ratio = f"{ref_cpu / cpu:17.1f}x" if cpu else f"{'-':>18}"
            rep = mine.get("seconds_per_report")
            rep = f"; a report costs {rep / ours:.0%} of an epoch" if rep is not None else ""
            print(f"{head} {ref:12.4f} {ref / ours:8.1f}x {setup:13.2f}s {cpu_ratio}   [{mine['device']}{rep}]")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
