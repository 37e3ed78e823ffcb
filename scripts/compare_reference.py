#!/usr/bin/env python3
"""Side-by-side seconds per epoch: l0 (Rust) versus l0-python 0.6.2 (torch),
on the very same problems, in the same run, on the same machine.

Usage (needs a Python with l0-python, torch, numpy, scipy; never run by CI):
    python scripts/compare_reference.py [--epochs-ref 5] [--epochs-l0 50] [--device cpu]

It builds the Rust example, which writes each problem's CSR arrays to a
temporary folder and times l0; then it loads the same arrays into scipy and
times SparseCalibrationWeights.fit with the same options (relative loss,
groups, lambda_l0 1e-6, lr 0.15). Prints a table and the ratio.
"""
import argparse, json, os, subprocess, sys, tempfile, time

import numpy as np
import scipy.sparse as sp
import torch
from l0.calibration import SparseCalibrationWeights


def time_fit(M, y, groups, epochs, device):
    """Wall seconds of one fit of a fresh model (matrix conversion included)."""
    model = SparseCalibrationWeights(n_features=M.shape[1], seed=1, device=device)
    kw = dict(lambda_l0=1e-6, lr=0.15, loss_type="relative", target_groups=groups)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    model.fit(M, y, epochs=epochs, **kw)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def time_reference(d, epochs, device):
    """Steady-state seconds per epoch: every fit converts the matrix again
    (seconds at production size), so time a 1-epoch and a (1 + epochs)-epoch
    fit and divide the difference by epochs; a first 1-epoch fit warms up
    (CUDA context, allocator)."""
    shape = tuple(np.load(os.path.join(d, "shape.npy")))
    M = sp.csr_matrix((np.load(os.path.join(d, "data.npy")),
                       np.load(os.path.join(d, "indices.npy")),
                       np.load(os.path.join(d, "indptr.npy"))), shape=shape)
    y = np.load(os.path.join(d, "y.npy"))
    groups = np.load(os.path.join(d, "groups.npy"))
    time_fit(M, y, groups, 1, device)
    short = time_fit(M, y, groups, 1, device)
    long = time_fit(M, y, groups, 1 + epochs, device)
    print(f"  reference fits: 1 epoch {short:.3f} s, {1 + epochs} epochs {long:.3f} s", flush=True)
    return (long - short) / epochs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs-ref", type=int, default=5)
    ap.add_argument("--epochs-l0", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--problems", default="readme,geo",
                    help="comma-separated: readme, geo, geo:H:G:NAT:PER")
    ap.add_argument("--l0-bin", default=None, help="prebuilt epoch_time example")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = a.l0_bin
    if exe is None:
        subprocess.run(["cargo", "build", "--release", "--example", "epoch_time"], cwd=root, check=True)
        exe = os.path.join(root, "target", "release", "examples", "epoch_time")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}")
    if a.device == "cuda":
        print(f"card: {torch.cuda.get_device_name(0)}")
    print(f"{'problem':8} {'rows':>6} {'cols':>8} {'nnz':>10} {'l0 s/epoch':>11} {'ref s/epoch':>12} {'speed-up':>9}")
    for prob in a.problems.split(","):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([exe, prob, str(a.epochs_l0), d, "--device", a.device],
                                 check=True, capture_output=True, text=True).stdout
            mine = json.loads(out.strip().splitlines()[-1])
            try:
                ref = time_reference(d, a.epochs_ref, a.device)
            except Exception as e:  # e.g. torch.cuda.OutOfMemoryError at production size
                ref = None
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ours = mine["seconds_per_epoch"]
        if ref is None:
            print(f"{prob:8} {mine['rows']:6} {mine['cols']:8} {mine['nnz']:10} {ours:11.4f} {'failed':>12} {'-':>9}"
                  f"   [{mine['device']}] reference: {why}")
        else:
            print(f"{prob:8} {mine['rows']:6} {mine['cols']:8} {mine['nnz']:10} {ours:11.4f} {ref:12.4f} {ref / ours:8.1f}x"
                  f"   [{mine['device']}]")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
