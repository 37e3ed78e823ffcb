"""Times l0_rs's fit as a user runs it: the problem's scipy CSR matrix and
targets already in memory (loaded untimed from DIR/M.npz, y.npy and
groups.npy, as examples/write_problem writes them), then one
``SparseCalibrationWeights(...).fit(...)`` of EPOCHS epochs with the
benchmarks' options (relative loss, lambda_l0 1e-6, lr 0.15, the target
groups, seed 1), from the call to its return. Prints one line per run:

    python fit: 1000 epochs in 3.21 s (epoch loop 1.30 s) on cuda:0 (...)

    python3 scripts/gpu_python_fit.py DIR [--epochs 1000] [--device cuda] [--runs 2]
        [--dtype float64]
"""

import argparse
import pathlib
import time

import numpy as np
import scipy.sparse as sp

from l0_rs.calibration import SparseCalibrationWeights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dtype", default="float64", help="the matrix's values as the user holds them")
    a = ap.parse_args()
    m = sp.load_npz(a.dir / "M.npz").tocsr().astype(a.dtype)
    y = np.load(a.dir / "y.npy")
    groups = np.load(a.dir / "groups.npy")
    print(f"python: {m.shape[0]} x {m.shape[1]}, {m.nnz} nonzeros ({m.data.dtype}) in memory")
    for _ in range(a.runs):
        t = time.perf_counter()
        model = SparseCalibrationWeights(m.shape[1], seed=1, device=a.device)
        model.fit(m, y, lambda_l0=1e-6, lr=0.15, epochs=a.epochs, loss_type="relative",
                  target_groups=groups)
        wall = time.perf_counter() - t
        r = model.fit_report_
        print(f"python fit: {r['epochs']} epochs in {wall:.2f} s (epoch loop {r['seconds']:.2f} s) "
              f"on {r['device']}; {model.get_active_weights()['count']} active")


if __name__ == "__main__":
    main()
