"""A fit that ends far from its targets, or under a penalty that outweighs
the data, warns (UserWarning) with l0 calibrate's text and rules
(l0::advice), naming fit's arguments instead of the CLI's flags."""

import warnings

import numpy as np
import pytest

from conftest import make_problem
from l0_rs.calibration import SparseCalibrationWeights


def fit_warnings(model, m, y, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(m, y, **kw)
    return [str(w.message) for w in caught if w.category is UserWarning]


def test_an_l2_penalty_above_the_data_warns_with_fits_argument_names():
    m, y = make_problem(q=30, n=400, seed=1)
    model = SparseCalibrationWeights(n_features=400, seed=1)
    got = fit_warnings(model, m, y, lambda_l0=0.0, lambda_l2=100.0, lr=0.05, epochs=200, loss_type="relative")
    last = model.fit_report_["last"]
    l2 = last["total_loss"] - last["data_loss"]
    err = model.target_report(m, y)["mean_abs_rel_err"]
    assert err > 0.25
    assert got == [
        f"the fit is far from its targets (mean |rel err| {100 * err:.1f}% > 25%): "
        f"the lambda_l2 penalty ({l2:.4f}) outweighs the data loss ({last['data_loss']:.4f}): "
        "lower lambda_l2 (now 100.0)"
    ]
    assert model.fit_report_["warnings"] == ["warning: " + got[0]]


def test_an_unconverged_fit_names_epochs_and_lr():
    m, y = make_problem(q=30, n=400, seed=2)
    model = SparseCalibrationWeights(n_features=400, seed=1)
    got = fit_warnings(model, m, y, lambda_l0=0.0, epochs=20, loss_type="relative")
    err = model.target_report(m, y)["mean_abs_rel_err"]
    assert got == [
        f"the fit is far from its targets (mean |rel err| {100 * err:.1f}% > 25%): "
        "the fit has not converged: raise epochs (now 20) or lr (now 0.01)"
    ]


def test_a_fit_close_to_its_targets_is_quiet():
    m, y = make_problem(q=30, n=400, seed=3)
    model = SparseCalibrationWeights(n_features=400, seed=1)
    got = fit_warnings(model, m, y, lambda_l0=1e-6, lr=0.2, epochs=1000, loss_type="relative",
                       target_groups=np.arange(30) % 3)
    assert model.target_report(m, y)["mean_abs_rel_err"] < 0.05
    assert got == [] and model.fit_report_["warnings"] == []
