"""The survey objectives in Python: tolerance bands and the capped
l1-relative loss, bit for bit the command line's, with the CLI's report."""

import numpy as np
import pytest

from conftest import make_problem
from l0_rs.calibration import SparseCalibrationWeights
from test_cli_parity import cli_weights


def fitted(m, y, **fit_args):
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=4)
    model.fit(m, y, epochs=200, lr=0.05, lambda_l0=1e-3, **fit_args)
    return model


def test_a_zero_tolerance_is_no_tolerance_bit_for_bit():
    m, y = make_problem(seed=5)
    plain = fitted(m, y, loss_type="relative").get_weights(deterministic=True)
    zero = fitted(m, y, loss_type="relative", target_tolerance=0.0).get_weights(deterministic=True)
    assert np.array_equal(plain.view(np.uint64), zero.view(np.uint64))


def test_bands_and_the_capped_l1_loss_match_the_cli(l0_bin, tmp_path):
    m, y = make_problem(seed=6)
    tol = np.linspace(0.0, 0.1, len(y))
    np.save(tmp_path / "tol.npy", tol)
    args = ["--epochs", "200", "--seed", "4", "--lr", "0.05", "--lambda-l0", "1e-3",
            "--loss", "l1-relative", "--loss-cap", "0.8", "--target-tolerance", "tol.npy"]
    want = cli_weights(l0_bin, tmp_path, m, y, args)
    model = fitted(m, y, loss_type="l1-relative", loss_cap=0.8, target_tolerance=tol)
    assert np.array_equal(model.get_weights(deterministic=True), want)
    report = model.target_report(m, y, csv_path=tmp_path / "targets.csv", target_tolerance=tol)
    assert (tmp_path / "targets.csv").read_text() == (tmp_path / "out" / "targets.csv").read_text()
    inside = np.abs(report["rel_error"]) <= tol
    assert report["within_tolerance"] == int(inside.sum())
    assert model.target_report(m, y)["within_tolerance"] is None


def test_bad_objective_options_are_value_errors():
    m, y = make_problem(seed=7)
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=1)
    with pytest.raises(ValueError, match=r'^invalid configuration: loss_cap applies to loss_type="l1-relative" only, not to mse$'):
        model.fit(m, y, epochs=5, loss_cap=0.5)
    with pytest.raises(ValueError, match=r"^invalid configuration: loss_cap must be a number > 0, got -1$"):
        model.fit(m, y, epochs=5, loss_type="l1-relative", loss_cap=-1)
    with pytest.raises(ValueError, match=r"target tolerances \(one per target, or one for all\): expected \d+, got 3$"):
        model.fit(m, y, epochs=5, target_tolerance=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"target_tolerance of target 1 must be a finite number >= 0, got -0.5$"):
        model.fit(m, y, epochs=5, target_tolerance=np.r_[0.1, -0.5, np.zeros(len(y) - 2)])
    fresh = SparseCalibrationWeights(n_features=m.shape[1], seed=1)
    assert np.array_equal(model.get_weights(deterministic=True), fresh.get_weights(deterministic=True))
