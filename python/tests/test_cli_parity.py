"""With the same inputs, options and seed, the package's fits give bit for
bit the weights of `l0 calibrate` and the coefficients of `l0 regress` on
the CPU."""

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import make_problem, run_cli
from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear


def cli_weights(l0_bin, tmp_path, m, y, args, groups=None):
    sp.save_npz(tmp_path / "M.npz", m)
    np.save(tmp_path / "y.npy", y)
    cmd = ["calibrate", "--matrix", "M.npz", "--targets", "y.npy", "--device", "cpu", "--out", "out"]
    if groups is not None:
        np.save(tmp_path / "g.npy", groups)
        cmd += ["--groups", "g.npy"]
    run_cli(l0_bin, cmd + args, tmp_path)
    return np.load(tmp_path / "out" / "weights.npy")


def test_default_options_match_the_cli(l0_bin, tmp_path):
    m, y = make_problem()
    want = cli_weights(l0_bin, tmp_path, m, y, ["--epochs", "300", "--seed", "11"])
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=11)
    model.fit(m, y, epochs=300)
    got = model.get_weights(deterministic=True)
    assert got.dtype == np.float64
    assert np.array_equal(got, want)
    assert model.get_active_weights()["count"] == np.count_nonzero(want)


def test_every_option_matches_the_cli(l0_bin, tmp_path):
    m, y = make_problem(q=40, n=500, seed=3)
    n = m.shape[1]
    groups = np.repeat([0, 1, 2, 7], 10)
    keep = np.linspace(0.2, 0.9, n)
    init_w = np.linspace(0.5, 3.0, n)
    np.save(tmp_path / "keep.npy", keep)
    np.save(tmp_path / "w0.npy", init_w)
    args = [
        "--epochs", "250", "--seed", "5", "--lr", "0.07", "--lambda-l0", "0.002",
        "--lambda-l2", "1e-5", "--beta", "0.5", "--gamma", "-0.2", "--zeta", "1.2",
        "--log-alpha-jitter-sd", "0.03", "--log-weight-jitter-sd", "0.05",
        "--loss", "relative", "--no-normalize-groups", "--group-multiplier", "7=2.5",
        "--group-multiplier", "1=0.5", "--init-keep-prob", "keep.npy",
        "--init-weights", "w0.npy", "--test-gate", "paper",
    ]
    want = cli_weights(l0_bin, tmp_path, m, y, args, groups=groups)
    model = SparseCalibrationWeights(
        n_features=n, beta=0.5, gamma=-0.2, zeta=1.2, init_keep_prob=keep,
        init_weights=init_w, log_weight_jitter_sd=0.05, log_alpha_jitter_sd=0.03,
        seed=5, test_gate="paper",
    )
    model.fit(
        m, y, lambda_l0=0.002, lambda_l2=1e-5, lr=0.07, epochs=250,
        loss_type="relative", target_groups=groups, normalize_groups=False,
        group_multipliers={7: 2.5, 1: 0.5},
    )
    assert np.array_equal(model.get_weights(deterministic=True), want)
    # The per-target report is the CLI's targets.csv, byte for byte.
    report = model.target_report(m, y, csv_path=tmp_path / "targets.csv")
    cli_csv = (tmp_path / "out" / "targets.csv").read_text()
    assert (tmp_path / "targets.csv").read_text() == cli_csv
    assert np.array_equal(report["estimate"], model.predict(m))
    rel = (report["estimate"] - y) / (y + 1)
    assert np.allclose(report["rel_error"], rel, rtol=1e-15, atol=0)
    assert report["included"] == len(y)
    assert report["max_abs_rel_err"] == np.abs(report["rel_error"]).max()
    assert report["within"][0.25] == np.mean(np.abs(report["rel_error"]) <= 0.25)


def test_no_gates_and_chunked_fits_match_the_cli(l0_bin, tmp_path):
    """Two fits of 100 and 150 epochs continue exactly: the CLI's one run
    of 250 gives the same weights."""
    m, y = make_problem(seed=9)
    want = cli_weights(l0_bin, tmp_path, m, y, ["--epochs", "250", "--seed", "2", "--no-gates", "--lr", "0.05"])
    model = SparseCalibrationWeights(n_features=m.shape[1], use_gates=False, seed=2)
    model.fit(m, y, lr=0.05, epochs=100).fit(m, y, lr=0.05, epochs=150)
    assert np.array_equal(model.get_weights(deterministic=True), want)


@pytest.mark.parametrize("intercept", [True, False])
def test_regression_matches_l0_regress(l0_bin, tmp_path, intercept):
    rng = np.random.default_rng(4)
    x = sp.random(200, 30, density=0.3, format="csr", random_state=rng)
    beta = np.zeros(30)
    beta[[2, 5, 11]] = [1.5, -2.0, 0.7]
    y = x @ beta + 0.3 + rng.normal(0, 0.05, 200)
    sp.save_npz(tmp_path / "X.npz", x)
    np.save(tmp_path / "y.npy", y)
    args = ["regress", "--x", "X.npz", "--y", "y.npy", "--epochs", "400", "--lr", "0.05",
            "--lambda-l0", "0.005", "--seed", "8", "--device", "cpu", "--out", "out"]
    if not intercept:
        args.append("--no-intercept")
    run_cli(l0_bin, args, tmp_path)
    want = np.load(tmp_path / "out" / "coefficients.npy")
    model = SparseL0Linear(n_features=30, fit_intercept=intercept, seed=8)
    model.fit(x, y, lambda_reg=0.005, lr=0.05, epochs=400)
    assert np.array_equal(model.get_coefficients(threshold=0.01), want)


def test_caps_and_target_weights_match_the_cli(l0_bin, tmp_path):
    m, y = make_problem(seed=12)
    tw = np.linspace(0.5, 2.0, len(y))
    np.save(tmp_path / "tw.npy", tw)
    args = ["--epochs", "200", "--seed", "3", "--lr", "0.1", "--max-weight", "1.8",
            "--target-weights", "tw.npy"]
    want = cli_weights(l0_bin, tmp_path, m, y, args)
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=3)
    model.fit(m, y, lr=0.1, epochs=200, max_weight=1.8, target_weights=tw)
    got = model.get_weights(deterministic=True)
    assert np.array_equal(got, want)
    assert got.max() <= 1.8


def test_checkpoints_are_shared_with_the_cli(l0_bin, tmp_path):
    """A checkpoint written by `l0 calibrate --checkpoint-every` loads into
    the package and continues bit for bit like the CLI's longer run; one
    written by the package loads back; another problem is refused."""
    m, y = make_problem(seed=4)
    groups = np.arange(len(y)) % 3
    common = ["--seed", "8", "--lr", "0.05"]
    cli_weights(l0_bin, tmp_path, m, y, ["--epochs", "120", "--checkpoint-every", "60"] + common, groups=groups)
    ckpt = tmp_path / "out" / "checkpoint.l0ck"
    model = SparseCalibrationWeights(n_features=m.shape[1])
    model.load_checkpoint(ckpt, m, y, target_groups=groups)
    assert model.state_dict()["step"] == 120
    assert model.seed_in_use == 8
    model.fit(m, y, lr=0.05, epochs=80, target_groups=groups)
    longer = tmp_path / "longer"
    longer.mkdir()
    want = cli_weights(l0_bin, longer, m, y, ["--epochs", "200"] + common, groups=groups)
    assert np.array_equal(model.get_weights(deterministic=True), want)

    mine = tmp_path / "mine.l0ck"
    model.save_checkpoint(mine, m, y, target_groups=groups)
    again = SparseCalibrationWeights(n_features=m.shape[1]).load_checkpoint(mine, m, y, target_groups=groups)
    for k, v in model.state_dict().items():
        assert np.array_equal(again.state_dict()[k], v), k
    with pytest.raises(ValueError) as e:
        again.load_checkpoint(mine, m, y * 2, target_groups=groups)
    assert str(e.value) == f"{mine}: the checkpoint was written for another problem (its matrix, targets or groups differ)"
