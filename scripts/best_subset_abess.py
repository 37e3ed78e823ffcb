"""abess on the data written by `cargo run --release --example best_subset -- DIR`.

Reads DIR/seed_<s>/{X,y,beta}.npy and fits abess.LinearRegression with its
defaults (support size path 0..min(n, p/log(log n)/log p), chosen by its
default information criterion, with an intercept), then prints true and
false positives, F1, ||b_hat - b||_2 and wall time per seed and averaged,
in the same table as the Rust example.

    /work/refvenv/bin/python scripts/best_subset_abess.py DIR
"""

import sys
import time
from pathlib import Path

import numpy as np
from abess.linear import LinearRegression


def main() -> None:
    root = Path(sys.argv[1])
    seeds = sorted(
        (p for p in root.glob("seed_*") if p.is_dir()),
        key=lambda p: int(p.name.split("_")[1]),
    )
    if not seeds:
        raise SystemExit(f"no seed_* folders in {root}")
    print(f"abess {__import__('abess').__version__}: LinearRegression() defaults")
    print(f"{'seed':>4} {'size':>7} {'TP':>4} {'FP':>4} {'F1':>6} {'coef_err':>8} {'time_s':>8}")
    rows = []
    for d in seeds:
        X = np.load(d / "X.npy")
        y = np.load(d / "y.npy")
        beta = np.load(d / "beta.npy")
        t0 = time.perf_counter()
        model = LinearRegression()
        model.fit(X, y)
        secs = time.perf_counter() - t0
        b = model.coef_
        sel = b != 0
        true = beta != 0
        tp = int(np.sum(sel & true))
        fp = int(np.sum(sel & ~true))
        f1 = 2 * tp / (sel.sum() + true.sum()) if sel.sum() else 0.0
        err = float(np.linalg.norm(b - beta))
        rows.append((tp, fp, f1, err, secs))
        seed = d.name.split("_")[1]
        print(f"{seed:>4} {int(sel.sum()):>7} {tp:>4} {fp:>4} {f1:>6.3f} {err:>8.4f} {secs:>8.2f}")
    m = np.mean(np.array(rows), axis=0)
    print(f"mean {'':>7} {m[0]:>4.1f} {m[1]:>4.1f} {m[2]:>6.3f} {m[3]:>8.4f} {m[4]:>8.2f}")


if __name__ == "__main__":
    main()
