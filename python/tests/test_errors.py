"""Bad input raises ValueError or TypeError with the engine's message;
nothing panics into Python, and a failed fit leaves the model as it was."""

import numpy as np
import pytest
import scipy.sparse as sp

from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear


def raises(exc, message, f, *args, **kw):
    with pytest.raises(exc) as info:
        f(*args, **kw)
    assert str(info.value) == message
    return info.value


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n_features": 0}, "invalid configuration: n_features must be at least 1"),
        ({"beta": 0.0}, "invalid configuration: beta must be > 0, got 0"),
        ({"gamma": 0.1}, "invalid configuration: gamma must be < 0, got 0.1"),
        ({"zeta": 1.0}, "invalid configuration: zeta must be > 1, got 1"),
        ({"init_keep_prob": 1.0}, "invalid configuration: init_keep_prob must be in (0, 1), got 1"),
        ({"init_weights": -1.0}, "invalid configuration: init_weights must be >= 0, got -1 at column 0"),
        ({"log_alpha_jitter_sd": float("nan")}, "non-finite value in log_alpha_jitter_sd at index 0: NaN"),
        ({"init_weights": np.ones(3)}, "init_weights array must have shape (5,), got (3,)"),
        ({"device": "gpu"}, "invalid configuration: unknown device 'gpu': expected auto, cpu, cuda or cuda:N"),
        ({"test_gate": "cold"}, "invalid configuration: unknown test gate 'cold': expected 'temperature' or 'paper'"),
        ({"seed": -1}, "seed must be an integer in [0, 2^64), got -1"),
    ],
)
def test_constructor_errors(kw, message):
    args = {"n_features": 5, **kw}
    raises(ValueError, message, SparseCalibrationWeights, **args)


@pytest.fixture
def model_and_data():
    m = sp.csr_matrix(np.array([[1.0, 0, 2.0, 0], [0, 3.0, 0, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32))
    y = np.array([3.0, 4.0, 4.0])
    return SparseCalibrationWeights(n_features=4, seed=0), m, y


@pytest.mark.parametrize(
    "change, exc, message",
    [
        (lambda m, y: (m[:, :3], y, {}), ValueError,
         "shape mismatch: matrix columns (one per weight): expected 4, got 3"),
        (lambda m, y: (m, y[:2], {}), ValueError,
         "shape mismatch: y (one target per matrix row): expected 3, got 2"),
        (lambda m, y: (m, np.array([1.0, np.nan, 2.0]), {}), ValueError,
         "non-finite value in y at index 1: NaN"),
        (lambda m, y: (m, y, {"loss_type": "l1"}), ValueError,
         "invalid configuration: unknown loss 'l1': expected 'mse', 'relative' or 'l1-relative'"),
        (lambda m, y: (m, np.array([1.0, -1.0, 2.0]), {"loss_type": "relative"}), ValueError,
         "invalid configuration: relative loss divides by y + 1, but target 1 equals -1"),
        (lambda m, y: (m, y, {"lr": 0.0}), ValueError, "invalid configuration: lr must be > 0, got 0"),
        (lambda m, y: (m, y, {"lambda_l0": -1.0}), ValueError,
         "invalid configuration: lambda_l0 must be >= 0, got -1"),
        (lambda m, y: (m, y, {"group_multipliers": {1: 2.0}}), ValueError,
         "group_multipliers requires target_groups to be set"),
        (lambda m, y: (m, y, {"target_groups": [0, 0, 1], "group_multipliers": {5: 2.0}}), ValueError,
         "invalid configuration: group_multipliers key 5 not found in target_groups"),
        (lambda m, y: (m, y, {"target_groups": [0, 1]}), ValueError,
         "shape mismatch: target_groups (one per target): expected 3, got 2"),
        (lambda m, y: (m, y, {"target_groups": [0.5, 1, 1]}), ValueError,
         "target_groups must hold integers, got 0.5 at index 0"),
        (lambda m, y: (m, y, {"verbose": True, "verbose_freq": 0}), ValueError,
         "invalid configuration: report_every must be at least 1"),
        (lambda m, y: (m, y, {"epochs": -3}), ValueError, "epochs must be a non-negative integer, got -3"),
        (lambda m, y: (m, y, {"device": "cuda:x"}), ValueError,
         "invalid configuration: unknown device 'cuda:x': expected auto, cpu, cuda or cuda:N"),
        (lambda m, y: (m.toarray().tolist(), y, {}), TypeError,
         "M must be a scipy.sparse matrix or array or a 2-D numpy array, got list"),
        (lambda m, y: (m.astype(np.complex128), y, {}), TypeError,
         "matrix data: expected a 1-D float32 or float64 array, got complex128"),
        (lambda m, y: (m, "abc", {}), TypeError, "y must be a numeric vector, got str"),
        (lambda m, y: (m, np.ones((3, 2)), {}), ValueError, "y must be 1-D, got shape (3, 2)"),
    ],
)
def test_fit_errors_leave_the_model_unchanged(model_and_data, change, exc, message):
    model, m, y = model_and_data
    before = model.state_dict()
    m2, y2, kw = change(m, y)
    raises(exc, message, model.fit, m2, y2, **{"epochs": 5, **kw})
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def bad_csr(indptr, indices, data, shape=(2, 3)):
    """A csr_matrix whose arrays scipy does not check."""
    m = sp.csr_matrix(shape, dtype=np.float32)
    m.indptr, m.indices, m.data = np.asarray(indptr), np.asarray(indices), np.asarray(data)
    return m


@pytest.mark.parametrize(
    "m, exc, message",
    [
        (bad_csr(np.array([0, 1, 2], np.int32), np.array([0, 3], np.int32), np.ones(2, np.float32)),
         ValueError, "index out of range in indices: 3 at position 1, but the bound is 3"),
        (bad_csr(np.array([0, 1, 2], np.int64), np.array([0, -2], np.int64), np.ones(2)),
         ValueError, "invalid configuration: indices: negative index -2 at position 1"),
        (bad_csr(np.array([0, 2, 1], np.int32), np.array([0, 1], np.int32), np.ones(2, np.float32)),
         ValueError, "invalid configuration: indptr must start at 0 and end at nnz = 2, got 0 .. 1"),
        (bad_csr(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([1.0, np.inf], np.float32)),
         ValueError, "non-finite value in matrix values at index 1: inf"),
        (bad_csr(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([1.0, 1e300])),
         ValueError, "non-finite value in matrix values at index 1: inf"),
    ],
)
def test_malformed_matrices(m, exc, message):
    model = SparseCalibrationWeights(n_features=3, seed=0)
    raises(exc, message, model.fit, m, np.ones(2), epochs=1)


def test_negative_coo_index():
    m = sp.coo_matrix((2, 3))
    m.row, m.col, m.data = np.array([0], np.int32), np.array([-1], np.int32), np.ones(1)
    model = SparseCalibrationWeights(n_features=3, seed=0)
    raises(ValueError, "invalid configuration: col: negative index -1 at position 0",
           model.fit, m, np.ones(2), epochs=1)


def test_empty_matrix_and_no_target_left():
    model = SparseCalibrationWeights(n_features=3, seed=0)
    raises(ValueError, "invalid configuration: the matrix must have at least one row and one column, got 0 x 3",
           model.fit, sp.csr_matrix((0, 3)), np.ones(0), epochs=1)
    raises(ValueError,
           "invalid configuration: no target is left in the loss: each one is excluded, has a loss weight of 0 or an all-zero matrix row",
           model.fit, sp.csr_matrix((2, 3)), np.ones(2), epochs=1)


def test_regression_errors():
    raises(ValueError, "invalid configuration: coef_init_sd must be >= 0, got -1",
           SparseL0Linear, 4, coef_init_sd=-1.0)
    model = SparseL0Linear(n_features=4, seed=0)
    x = sp.random(10, 4, density=0.5, format="csr", random_state=0)
    raises(ValueError, "shape mismatch: y (one value per row of X): expected 10, got 9",
           model.fit, x, np.ones(9), epochs=1)
    raises(ValueError, "shape mismatch: X columns (one per feature): expected 4, got 3",
           model.predict, x[:, :3])
    raises(TypeError, "give lambda_reg or lambda_l0, not both",
           model.fit, x, np.ones(10), lambda_reg=0.1, lambda_l0=0.2)


def test_target_report_errors(model_and_data):
    model, m, y = model_and_data
    raises(ValueError, "shape mismatch: target_names (one per target): expected 3, got 1",
           model.target_report, m, y, target_names=["a"])
    raises(ValueError, "index out of range in excluded targets: 3 at position 1, but the bound is 3",
           model.target_report, m, y, excluded_targets=[0, 3])
    with pytest.raises(OSError) as info:
        model.target_report(m, y, csv_path="/nonexistent/dir/t.csv")
    assert str(info.value).startswith("/nonexistent/dir/t.csv: ")
