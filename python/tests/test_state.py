"""state_dict round trips exactly, and a reloaded or unpickled model
continues a fit bit for bit as the original would have."""

import pickle

import numpy as np
import scipy.sparse as sp

from conftest import make_problem
from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear

STATE_KEYS = {
    "log_weight", "log_alpha", "log_weight_exp_avg", "log_weight_exp_avg_sq",
    "log_alpha_exp_avg", "log_alpha_exp_avg_sq", "step", "seed",
}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype == np.float32, k
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_state_dict_holds_parameters_moments_step_and_seed(problem):
    m, y = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=21)
    model.fit(m, y, epochs=40, lr=0.05)
    sd = model.state_dict()
    assert set(sd) == STATE_KEYS
    assert sd["step"] == 40 and sd["seed"] == 21
    assert np.any(sd["log_weight_exp_avg_sq"] > 0)
    # The gates are the reference's formula over the stored log_alpha.
    s = 1 / (1 + np.exp(-sd["log_alpha"].astype(np.float64) / (2 / 3)))
    gates = np.clip(s * 1.2 - 0.1, 0, 1)
    assert np.allclose(model.get_deterministic_gates(), gates, atol=1e-6)


def test_reload_continues_exactly(problem):
    m, y = problem
    n = m.shape[1]
    whole = SparseCalibrationWeights(n_features=n, seed=4, log_weight_jitter_sd=0.1)
    whole.fit(m, y, epochs=120, lr=0.05, loss_type="relative")

    first = SparseCalibrationWeights(n_features=n, seed=4, log_weight_jitter_sd=0.1)
    first.fit(m, y, epochs=50, lr=0.05, loss_type="relative")
    # A model built with another seed takes the saved one with the state.
    reloaded = SparseCalibrationWeights(n_features=n, seed=999, log_weight_jitter_sd=0.1)
    reloaded.load_state_dict(first.state_dict())
    assert_same_state(reloaded.state_dict(), first.state_dict())
    assert reloaded.seed_in_use == 4
    reloaded.fit(m, y, epochs=70, lr=0.05, loss_type="relative")
    assert_same_state(reloaded.state_dict(), whole.state_dict())
    assert np.array_equal(reloaded.get_weights(deterministic=True), whole.get_weights(deterministic=True))
    # Sampled weights use the next step's noise: equal too.
    assert np.array_equal(reloaded.get_weights(), whole.get_weights())


def test_pickle_round_trip_and_continuation(problem):
    m, y = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], init_keep_prob=0.7, init_weights=2.0)
    model.fit(m, y, epochs=30)
    copy = pickle.loads(pickle.dumps(model))
    assert type(copy) is SparseCalibrationWeights
    assert copy.seed_in_use == model.seed_in_use
    assert_same_state(copy.state_dict(), model.state_dict())
    assert copy.fit_report_ == model.fit_report_
    model.fit(m, y, epochs=25)
    copy.fit(m, y, epochs=25)
    assert_same_state(copy.state_dict(), model.state_dict())


def test_bad_state_dicts_are_refused(problem):
    m, _ = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=1)
    sd = model.state_dict()
    del sd["log_alpha_exp_avg"]
    try:
        model.load_state_dict(sd)
    except ValueError as e:
        assert str(e) == "state_dict lacks 'log_alpha_exp_avg'"
    else:
        raise AssertionError("missing key accepted")
    sd = model.state_dict()
    sd["log_alpha"] = sd["log_alpha"][:-1]
    try:
        model.load_state_dict(sd)
    except ValueError as e:
        assert str(e) == f"shape mismatch: log_alpha: expected {m.shape[1]}, got {m.shape[1] - 1}"
    else:
        raise AssertionError("short log_alpha accepted")
    sd = model.state_dict()
    sd["log_weight"] = sd["log_weight"].astype(np.float64)
    try:
        model.load_state_dict(sd)
    except TypeError as e:
        assert str(e) == "state_dict['log_weight']: expected a 1-D float32 array, got float64"
    else:
        raise AssertionError("float64 state accepted")
    # The failed loads left the model as it was.
    assert_same_state(model.state_dict(), SparseCalibrationWeights(n_features=m.shape[1], seed=1).state_dict())


def test_regression_state_and_pickle():
    rng = np.random.default_rng(0)
    x = sp.random(100, 12, density=0.4, format="csr", random_state=rng)
    y = x @ np.arange(12.0) + 1.0
    whole = SparseL0Linear(n_features=12, seed=3).fit(x, y, epochs=90, lr=0.05)
    part = SparseL0Linear(n_features=12, seed=3).fit(x, y, epochs=40, lr=0.05)
    sd = part.state_dict()
    assert {"weight", "bias", "bias_exp_avg", "bias_exp_avg_sq", "step"} <= set(sd)
    copy = pickle.loads(pickle.dumps(part))
    other = SparseL0Linear(n_features=12, seed=77)
    other.load_state_dict(sd)
    for mdl in (part, copy, other):
        mdl.fit(x, y, epochs=50, lr=0.05)
        assert np.array_equal(mdl.get_coefficients(), whole.get_coefficients())
        assert mdl.bias == whole.bias
        assert np.array_equal(mdl.predict(x), whole.predict(x))


def test_regression_recovers_a_sparse_truth_and_refits():
    rng = np.random.default_rng(1)
    x = sp.random(400, 20, density=0.5, format="csr", random_state=rng)
    truth = np.zeros(20)
    truth[[1, 4, 9]] = [2.0, -1.5, 1.0]
    y = x @ truth + 0.5 + rng.normal(0, 0.01, 400)
    model = SparseL0Linear(n_features=20, seed=0).fit(x, y, lambda_reg=0.01, lr=0.05, epochs=1500)
    assert list(model.get_selected_features()) == [1, 4, 9]
    r = model.refit(x, y)
    assert list(r["support"]) == [1, 4, 9]
    a = np.column_stack([x[:, [1, 4, 9]].toarray(), np.ones(400)])
    want = np.linalg.lstsq(a, y, rcond=None)[0]
    assert np.allclose(r["coefficients"][[1, 4, 9]], want[:3], rtol=1e-9)
    assert np.isclose(r["intercept"], want[3], rtol=1e-9)
    assert np.count_nonzero(r["coefficients"]) == 3
