"""abess on the data written by `cargo run --release --example best_subset -- DIR`.

Reads DIR/seed_<s>/{X,y,beta}.npy and fits abess.LinearRegression with its
defaults (support sizes 0..min(p, n/(log(log n) log p)) - 1, chosen by its
default information criterion, the extended BIC, with an intercept, one
thread), then prints true and false positives, F1, ||b_hat - b||_2, wall
and CPU time per seed and averaged, in the same table as the Rust example.

    /tmp/venv-abess/bin/python scripts/best_subset_abess.py DIR

With --l0 BIN (the built example), the two run interleaved: for each seed,
BIN writes the seed's data and fits it with each --select rule in turn,
then abess fits the same data, so that load from other work on the machine
falls on both alike; prints one summary row per rule and abess's, with the
ratio of each mean time to abess's. Arguments after `--` go to BIN
(problem size, threads). --abess-rows train fits abess on the first 80%
of the rows only, the rows `l0` selects on when it holds 20% out
(min-error, one-se, or `-- --validation 0.2`; ebic and gic use all rows):
a comparison of the searches on the same data.

    python scripts/best_subset_abess.py DIR --l0 target/release/examples/best_subset \\
        --seeds 10 --first-seed 100 --select ebic,gic,min-error,one-se -- --n 500 --p 1000 --k 10
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from abess.linear import LinearRegression


def fit_abess(d: Path, train_rows: bool = False):
    """(TP, FP, F1, coef error, wall s, CPU s) of abess on DIR/seed_<s>:
    on all rows, or with train_rows on the first 80% (the rows `l0` selects
    on in the example when it holds 20% out)."""
    X = np.load(d / "X.npy")
    y = np.load(d / "y.npy")
    beta = np.load(d / "beta.npy")
    if train_rows:
        n = X.shape[0] * 4 // 5
        X, y = X[:n], y[:n]
    t0, c0 = time.perf_counter(), time.process_time()
    model = LinearRegression()
    model.fit(X, y)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    b = model.coef_
    sel = b != 0
    true = beta != 0
    tp = int(np.sum(sel & true))
    fp = int(np.sum(sel & ~true))
    f1 = 2 * tp / (sel.sum() + true.sum()) if sel.sum() else 0.0
    err = float(np.linalg.norm(b - beta))
    return tp, fp, f1, err, secs, cpu


def fit_l0(binary: str, root: Path, seed: int, rule: str, extra):
    """The example's summary row (TP, FP, F1, coef error, wall s, CPU s)
    for one seed and rule; its data lands in root/seed_<seed>."""
    cmd = [binary, str(root), "--first-seed", str(seed), "--seeds", "1", "--select", rule]
    out = subprocess.run(cmd + list(extra), check=True, capture_output=True, text=True)
    mean = [l for l in out.stdout.splitlines() if l.startswith("mean")][-1]
    return tuple(float(v) for v in mean.split()[1:])


def table_row(name: str, rows, base=None) -> str:
    m = np.mean(np.array(rows), axis=0)
    ratio = "" if base is None else f" {m[4] / base[4]:>7.1f}x {m[5] / base[5]:>7.1f}x"
    return f"{name:>10} {m[0]:>5.1f} {m[1]:>5.1f} {m[2]:>6.3f} {m[3]:>8.4f} {m[4]:>8.3f} {m[5]:>8.3f}{ratio}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--l0", help="the built best_subset example: interleave with it")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--select", default="ebic")
    ap.add_argument(
        "--abess-rows",
        choices=["all", "train"],
        default="all",
        help="fit abess on all rows (default) or on the first 80%%, the rows l0 selects on with a hold-out",
    )
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    a.extra = argv[cut + 1 :]
    root = Path(a.dir)
    version = __import__("abess").__version__
    if a.l0 is None:
        seeds = sorted(
            (p for p in root.glob("seed_*") if p.is_dir()),
            key=lambda p: int(p.name.split("_")[1]),
        )
        if not seeds:
            raise SystemExit(f"no seed_* folders in {root}")
        print(f"abess {version}: LinearRegression() defaults")
        print(f"{'seed':>4} {'size':>7} {'TP':>4} {'FP':>4} {'F1':>6} {'coef_err':>8} {'time_s':>8} {'cpu_s':>8}")
        rows = []
        for d in seeds:
            r = fit_abess(d, a.abess_rows == "train")
            rows.append(r)
            tp, fp, f1, err, secs, cpu = r
            print(f"{d.name.split('_')[1]:>4} {tp + fp:>7} {tp:>4} {fp:>4} {f1:>6.3f} {err:>8.4f} {secs:>8.3f} {cpu:>8.3f}")
        m = np.mean(np.array(rows), axis=0)
        print(f"mean {'':>7} {m[0]:>4.1f} {m[1]:>4.1f} {m[2]:>6.3f} {m[3]:>8.4f} {m[4]:>8.3f} {m[5]:>8.3f}")
        return
    rules = a.select.split(",")
    rows = {r: [] for r in rules}
    rows["abess"] = []
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        for rule in rules:
            rows[rule].append(fit_l0(a.l0, root, seed, rule, a.extra))
        rows["abess"].append(fit_abess(root / f"seed_{seed}", a.abess_rows == "train"))
    base = np.mean(np.array(rows["abess"]), axis=0)
    print(
        f"l0 example args {' '.join(a.extra)}; seeds {a.first_seed}..{a.first_seed + a.seeds - 1}; "
        f"abess {version} on {a.abess_rows} rows"
    )
    print(f"{'rule':>10} {'TP':>5} {'FP':>5} {'F1':>6} {'coef_err':>8} {'time_s':>8} {'cpu_s':>8} {'time/ab':>8} {'cpu/ab':>8}")
    for rule in rules:
        print(table_row(rule, rows[rule], base))
    print(table_row("abess", rows["abess"]))


if __name__ == "__main__":
    main()
