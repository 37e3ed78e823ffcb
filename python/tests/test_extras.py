"""The crate's extras from Python: diagnostics, holdout targets, select-
then-refit and λ sweeps, each checked against an independent computation
or the plain fit it must equal bit for bit."""

import math
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import l0_rs
from conftest import make_problem
from l0_rs.calibration import (
    Refit,
    SparseCalibrationWeights,
    Sweep,
    holdout_targets,
    lambda_grid,
    sweep,
)

# A fit that drops about a third of the records.
FIT = dict(lambda_l0=0.5, lr=0.2, epochs=200)
MODEL = dict(init_keep_prob=0.1)


@pytest.fixture(scope="module")
def fitted():
    m, y = make_problem(q=40, n=500, seed=3)
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=5, **MODEL)
    model.fit(m, y, **FIT)
    return model, m, y


def rel_err(y, yhat):
    scale = np.where(y + 1 == 0, 1.0, y + 1)
    return np.abs((y - yhat) / scale)


# --- diagnostics ---------------------------------------------------------


def numpy_diagnostics(m, w):
    a = np.sort(w[w != 0])
    n = a.size
    s = a.sum()
    ess = s * s / np.sum(a * a)
    k = math.ceil(n / 100)
    c = m.multiply(w[None, :]).tocsr()  # contributions c_qi = M_qi w_i
    top, share, count = [], [], []
    for q in range(m.shape[0]):
        row = c.getrow(q).toarray()[0]
        count.append(int(np.count_nonzero(row)))
        pos = row > 0
        if not pos.any():
            top.append(-1)
            share.append(0.0)
            continue
        i = int(np.argmax(np.where(pos, row, -np.inf)))  # lowest index on a tie
        top.append(i)
        est = row.sum()
        share.append(row[i] / est if est != 0 else 0.0)
    return dict(
        active=n,
        ess=ess,
        design_effect=n / ess,
        max_weight=a[-1],
        top1pct_share=a[-k:].sum() / s,
        quantiles=np.quantile(a, [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1]),
        top_record=np.array(top),
        top_record_share=np.array(share),
        records_contributing=np.array(count),
    )


def test_diagnostics_equal_numpy(fitted):
    model, m, _ = fitted
    d = model.diagnostics(m)
    w = model.get_weights(deterministic=True)
    ref = numpy_diagnostics(m.astype(np.float64), w)
    assert 0 < d["active"] < m.shape[1]
    assert d["active"] == ref["active"] == model.get_active_weights()["count"]
    for k in ("ess", "design_effect", "max_weight", "top1pct_share"):
        assert isinstance(d[k], float), k
        assert d[k] == pytest.approx(ref[k], rel=1e-12), k
    assert d["design_effect"] >= 1.0
    np.testing.assert_array_equal(d["quantile_levels"], [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1])
    np.testing.assert_allclose(d["quantiles"], ref["quantiles"], rtol=1e-12)
    assert d["top_record"].dtype == np.int64 and d["records_contributing"].dtype == np.int64
    np.testing.assert_array_equal(d["top_record"], ref["top_record"])
    np.testing.assert_array_equal(d["records_contributing"], ref["records_contributing"])
    np.testing.assert_allclose(d["top_record_share"], ref["top_record_share"], rtol=1e-6)


def test_diagnostics_of_a_handmade_case():
    # One target carried by one record, one by nobody.
    m = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]], dtype=np.float32))
    model = SparseCalibrationWeights(n_features=3, seed=0)
    # Gates closed on record 1 (log_alpha very negative), open elsewhere.
    sd = model.state_dict()
    sd["log_alpha"] = np.array([10.0, -10.0, 10.0], dtype=np.float32)
    sd["log_weight"] = np.log(np.array([1.0, 1.0, 2.0])).astype(np.float32)
    model.load_state_dict(sd)
    w = model.get_weights(deterministic=True)
    assert w[1] == 0 and w[0] > 0 and w[2] > 0
    d = model.diagnostics(m)
    assert d["active"] == 2
    assert list(d["top_record"]) == [2, -1]
    assert list(d["records_contributing"]) == [2, 0]
    assert d["top_record_share"][0] == pytest.approx(3 * w[2] / (w[0] + 3 * w[2]))
    assert d["top_record_share"][1] == 0.0


def test_diagnostics_errors(fitted):
    model, m, _ = fitted
    with pytest.raises(ValueError, match="shape mismatch"):
        model.diagnostics(m[:, :10])


# --- holdout -------------------------------------------------------------


def test_holdout_fit_equals_excluded_fit_bit_for_bit(fitted):
    _, m, y = fitted
    groups = np.arange(m.shape[0]) % 4
    held = holdout_targets(m.shape[0], groups, fraction=0.25, seed=11)
    # round(0.25 x 10) = 3 in each of the 4 groups.
    assert held.dtype == np.int64 and held.size == 12
    kw = dict(FIT, target_groups=groups)
    a = SparseCalibrationWeights(m.shape[1], seed=9, **MODEL).fit(m, y, holdout_targets=held, **kw)
    b = SparseCalibrationWeights(m.shape[1], seed=9, **MODEL).fit(m, y, excluded_targets=held, **kw)
    assert np.array_equal(a.get_weights(deterministic=True), b.get_weights(deterministic=True))
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]), k
    last = a.fit_report_["last"]
    err = rel_err(y, a.predict(m))
    assert last["holdout_mean_rel_err"] == pytest.approx(err[held].mean(), rel=1e-9)
    assert last["holdout_max_rel_err"] == pytest.approx(err[held].max(), rel=1e-9)
    train = np.setdiff1d(np.arange(m.shape[0]), held)
    assert last["mean_rel_err"] == pytest.approx(err[train].mean(), rel=1e-9)
    assert b.fit_report_["last"]["holdout_mean_rel_err"] is None
    # The report splits the targets the same way.
    rep = a.target_report(m, y, holdout_targets=held)
    assert rep["included"] == train.size and rep["holdout"]["included"] == held.size
    assert rep["holdout"]["mean_abs_rel_err"] == pytest.approx(err[held].mean(), rel=1e-9)
    assert a.target_report(m, y)["holdout"] is None


def test_holdout_draws():
    g = np.repeat([1, 2, 3], [4, 6, 10])
    assert list(holdout_targets(20, g, groups=[2])) == list(range(4, 10))
    h = holdout_targets(20, g, fraction=0.5, seed=1)
    assert [np.sum(g[h] == k) for k in (1, 2, 3)] == [2, 3, 5]
    assert np.array_equal(h, holdout_targets(20, g, fraction=0.5, seed=1))
    assert not np.array_equal(h, holdout_targets(20, g, fraction=0.5, seed=2))
    assert holdout_targets(20, fraction=0.3, seed=0).size == 6
    with pytest.raises(ValueError, match="not a group of any target"):
        holdout_targets(20, g, groups=[7])
    with pytest.raises(ValueError, match="needs target groups"):
        holdout_targets(20, groups=[1])
    with pytest.raises(ValueError, match="fraction must be in"):
        holdout_targets(20, fraction=1.5)
    with pytest.raises(ValueError, match="all 20 targets"):
        holdout_targets(20, g, groups=[1, 2, 3])
    with pytest.raises(ValueError, match="either groups or a fraction"):
        holdout_targets(20, g)


def test_holdout_errors(fitted):
    _, m, y = fitted
    model = SparseCalibrationWeights(m.shape[1], seed=1)
    with pytest.raises(ValueError, match="holdout targets"):
        model.fit(m, y, epochs=2, holdout_targets=[0, 400])
    with pytest.raises(ValueError):
        model.fit(m, y, epochs=2, holdout_targets=[-1])


# --- refit ---------------------------------------------------------------


def rel_loss(m, y, w):
    return float(np.mean(rel_err(y, m.astype(np.float64) @ w) ** 2))


def test_refit_keeps_zeros_and_lowers_training_error():
    m, y = make_problem(q=40, n=500, seed=3)
    model = SparseCalibrationWeights(m.shape[1], seed=5, **MODEL)
    model.fit(m, y, **FIT)
    before = model.state_dict()
    w0 = model.get_weights(deterministic=True)
    r = model.refit(m, y, epochs=200, lr=0.2)
    assert isinstance(r, Refit)
    w1 = r.get_weights()
    assert w1.shape == w0.shape
    assert np.all(w1[w0 == 0] == 0)
    assert np.array_equal(r.columns, np.flatnonzero(w0))
    assert r.get_active_weights()["count"] <= np.count_nonzero(w0)
    assert rel_loss(m, y, w1) < 0.5 * rel_loss(m, y, w0)
    np.testing.assert_allclose(r.predict(m), m.astype(np.float64) @ w1, rtol=1e-6)
    assert r.fit_report_["epochs"] == 200
    assert r.model.n_features == r.columns.size and r.model.use_gates is False
    # The L0 model is untouched.
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k
    # The refit model is an ordinary model: pickles and continues.
    r2 = pickle.loads(pickle.dumps(r.model))
    assert np.array_equal(r2.get_weights(deterministic=True), r.model.get_weights(deterministic=True))
    sub = m[:, r.columns]
    a = r.model.fit(sub, y, lambda_l0=0.0, lr=0.05, epochs=5).get_weights(deterministic=True)
    b = r2.fit(sub, y, lambda_l0=0.0, lr=0.05, epochs=5).get_weights(deterministic=True)
    assert np.array_equal(a, b)


def test_refit_with_caps_and_errors(fitted):
    model, m, y = fitted
    r = model.refit(m, y, epochs=50, lr=0.05, max_weight=1.5)
    assert r.get_weights().max() <= 1.5 * (1 + 1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        model.refit(m, y[:-1], epochs=5)
    empty = SparseCalibrationWeights(m.shape[1], seed=0)
    sd = empty.state_dict()
    sd["log_alpha"][:] = -20
    empty.load_state_dict(sd)
    with pytest.raises(ValueError, match="at least one record"):
        empty.refit(m, y, epochs=5)


# --- sweep ---------------------------------------------------------------


def test_sweep_model_k_equals_single_fit_bit_for_bit(fitted):
    _, m, y = fitted
    lambdas = lambda_grid(1e-3, 1.0, 3)
    assert lambdas[0] == 1e-3 and lambdas[-1] == 1.0
    kw = dict(lr=0.05, epochs=60)
    s = sweep(m, y, lambdas, seed=4, log_weight_jitter_sd=0.05, **kw)
    assert isinstance(s, Sweep) and len(s) == 3
    W = s.weights
    assert W.shape == (3, m.shape[1])
    for k, lam in enumerate(lambdas):
        one = SparseCalibrationWeights(m.shape[1], seed=4, log_weight_jitter_sd=0.05)
        one.fit(m, y, lambda_l0=lam, **kw)
        assert np.array_equal(s[k].get_weights(deterministic=True), one.get_weights(deterministic=True))
        assert np.array_equal(W[k], one.get_weights(deterministic=True))
        for key, v in one.state_dict().items():
            assert np.array_equal(s[k].state_dict()[key], v), key
        assert s.metrics["mean_rel_err"][k] == one.fit_report_["last"]["mean_rel_err"]
    t = s.metrics
    assert set(t) >= {"lambda_l0", "active", "sparsity", "mean_rel_err", "holdout_mean_rel_err", "seconds"}
    assert all(len(v) == 3 for v in t.values())
    np.testing.assert_array_equal(t["lambda_l0"], lambdas)
    np.testing.assert_array_equal(t["active"], [np.count_nonzero(w) for w in W])
    assert t["active"][0] >= t["active"][-1]
    assert np.all(np.isnan(t["holdout_mean_rel_err"]))


def test_sweep_shares_a_drawn_seed_and_takes_fit_options(fitted):
    _, m, y = fitted
    held = [0, 5, 9]
    s = sweep(m, y, [0.01, 0.1], lr=0.05, epochs=20, holdout_targets=held)
    assert s[0].seed_in_use == s[1].seed_in_use
    one = SparseCalibrationWeights(m.shape[1], seed=s[0].seed_in_use)
    one.fit(m, y, lambda_l0=0.1, lr=0.05, epochs=20, holdout_targets=held)
    assert np.array_equal(s[1].get_weights(deterministic=True), one.get_weights(deterministic=True))
    assert np.all(np.isfinite(s.metrics["holdout_mean_rel_err"]))
    # Each sweep model pickles like any model.
    back = pickle.loads(pickle.dumps(s[1]))
    assert np.array_equal(back.get_weights(deterministic=True), one.get_weights(deterministic=True))


def test_sweep_verbose_prints_per_lambda(fitted, capsys):
    _, m, y = fitted
    sweep(m, y, [0.01, 0.1], lr=0.05, epochs=4, verbose=True, verbose_freq=2, seed=1)
    out = capsys.readouterr().out
    assert out.count("[lambda_l0=0.01]") == 2 and out.count("[lambda_l0=0.1]") == 2


def test_sweep_errors(fitted):
    _, m, y = fitted
    with pytest.raises(ValueError, match="at least one lambda_l0"):
        sweep(m, y, [])
    with pytest.raises(ValueError, match="finite number >= 0"):
        sweep(m, y, [0.1, -1.0], epochs=1)
    with pytest.raises(ValueError, match="shape mismatch"):
        sweep(m, y[:-1], [0.1], epochs=1)
    with pytest.raises(ValueError, match="0 < LO <= HI"):
        lambda_grid(1.0, 0.1, 3)


def test_exports():
    assert l0_rs.calibration.sweep is sweep
    assert hasattr(l0_rs, "sweep") and hasattr(l0_rs, "holdout_targets")


# --- parity with the command line ----------------------------------------


def write_inputs(tmp_path, m, y, groups):
    sp.save_npz(tmp_path / "M.npz", m)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "g.npy", groups)
    return ["--matrix", "M.npz", "--targets", "y.npy", "--groups", "g.npy", "--device", "cpu"]


def test_holdout_and_refit_match_l0_calibrate(l0_bin, tmp_path):
    from conftest import run_cli

    m, y = make_problem(q=40, n=500, seed=3)
    groups = np.repeat([0, 1, 2, 7], 10)
    args = write_inputs(tmp_path, m, y, groups) + [
        "--out", "out", "--epochs", "120", "--seed", "6", "--lr", "0.2",
        "--lambda-l0", "0.5", "--init-keep-prob", "0.1", "--holdout-fraction", "0.2",
        "--holdout-seed", "13", "--refit", "--refit-epochs", "80",
    ]
    run_cli(l0_bin, ["calibrate", *args], tmp_path)
    want = np.load(tmp_path / "out" / "weights.npy")
    held = holdout_targets(len(y), groups, fraction=0.2, seed=13)
    model = SparseCalibrationWeights(m.shape[1], seed=6, init_keep_prob=0.1)
    kw = dict(lr=0.2, target_groups=groups, holdout_targets=held)
    model.fit(m, y, lambda_l0=0.5, epochs=120, **kw)
    got = model.refit(m, y, epochs=80, **kw).get_weights()
    assert np.count_nonzero(got) < m.shape[1]
    assert np.array_equal(got, want)


def test_sweep_matches_l0_sweep(l0_bin, tmp_path):
    from conftest import run_cli

    m, y = make_problem(q=40, n=500, seed=3)
    groups = np.repeat([0, 1, 2, 7], 10)
    args = write_inputs(tmp_path, m, y, groups) + [
        "--out", "out", "--epochs", "60", "--seed", "8", "--lr", "0.2",
        "--init-keep-prob", "0.1", "--lambda-grid", "0.01:1:3", "--holdout-groups", "7",
    ]
    run_cli(l0_bin, ["sweep", *args], tmp_path)
    held = holdout_targets(len(y), groups, groups=[7])
    s = sweep(
        m, y, lambda_grid(0.01, 1, 3), lr=0.2, epochs=60, target_groups=groups,
        holdout_targets=held, seed=8, init_keep_prob=0.1,
    )
    for k in range(3):
        assert np.array_equal(s.weights[k], np.load(tmp_path / "out" / f"weights_{k}.npy")), k
