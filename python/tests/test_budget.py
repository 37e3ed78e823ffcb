"""The record budget from Python (``l0_rs.calibration.fit_to_budget``, the
library's ``l0::budget::fit_to_budget``): a budget met within tolerance, the chosen model equal bit for bit to a single fit with
the reported lambda, the shortfall of a budget out of reach, and the
engine's messages for bad budgets."""

import re

import numpy as np
import pytest

import l0_rs
from l0_rs.calibration import SparseCalibrationWeights, fit_to_budget

from conftest import make_problem

# test_extras' problem; its counts fall from 429 to 273 records over
# lambda_l0 1e-9..1e-1 in this many epochs.
K = 370
FIT = dict(lr=0.2, epochs=200)
MODEL = dict(init_keep_prob=0.1, seed=5)


@pytest.fixture(scope="module")
def sparse_truth():
    return make_problem(q=40, n=500, seed=3)


@pytest.fixture(scope="module")
def searched(sparse_truth):
    m, y = sparse_truth
    return fit_to_budget(m, y, K, records_tolerance=0.05, **MODEL, **FIT)


def test_budget_met_within_tolerance(searched):
    model, r = searched
    assert isinstance(model, SparseCalibrationWeights)
    active = model.get_active_weights()["count"]
    assert r["met"] is True and r["shortfall"] is None
    assert r["active"] == active
    assert abs(active - K) <= 0.05 * K
    assert r["target_records"] == K and r["tolerance"] == 0.05
    assert 1e-9 <= r["lambda_l0"] <= 1e-1
    e = FIT["epochs"]
    full = [t for t in r["trials"] if t["epochs"] == e]
    bracket = [t for t in r["trials"] if t["stage"] == "bracket"]
    assert len(bracket) == 9 and len(full) in (1, 2)
    assert r["lambda_l0"] in [t["lambda_l0"] for t in full]
    batches = r["batches"]
    stage = lambda name, models, epochs: {"stage": name, "models": models, "epochs": epochs}
    # The narrowing batch stops at the bracket's step (10 epochs) for the
    # adaptive look; its counts have settled by 20 (the fast schedule).
    assert batches[:5] == [
        stage("bracket", 9, 10),
        stage("narrow", 8, 10),
        stage("narrow", 8, 10),
        stage("continue", 4, 60),
        stage("continue", 1, 120),
    ]
    assert r["settled"] is True
    refined = len(full) - 1
    assert batches[5:] == [stage("refine", 1, e)] * refined
    assert r["models_trained"] == 17 + refined
    assert r["epochs_total"] == 90 + 160 + 240 + 120 + refined * e
    assert r["fits"] == r["epochs_total"] / e
    assert r["passes"] == (210 + refined * e) / e
    assert r["cost_fits"] == pytest.approx(0.05 * (3.63 + 1) + 0.1 * 3.63 + 0.3 * 2.59 + 0.6 + refined)
    assert r["seconds"] >= 0.0
    assert model.fit_report_["epochs"] == FIT["epochs"]


def test_chosen_model_equals_single_fit_bit_for_bit(sparse_truth, searched):
    m, y = sparse_truth
    model, r = searched
    one = SparseCalibrationWeights(m.shape[1], **MODEL)
    one.fit(m, y, lambda_l0=r["lambda_l0"], **FIT)
    assert np.array_equal(model.get_weights(deterministic=True), one.get_weights(deterministic=True))
    mine, theirs = model.state_dict(), one.state_dict()
    assert set(mine) == set(theirs)
    for key, v in theirs.items():
        assert np.array_equal(mine[key], v), key
    assert model.seed_in_use == 5
    assert model.fit_report_["last"]["mean_rel_err"] == one.fit_report_["last"]["mean_rel_err"]


def test_budget_out_of_reach_warns_and_keeps_nearest(sparse_truth):
    m, y = sparse_truth
    with pytest.warns(RuntimeWarning, match="nearest tried"):
        model, r = fit_to_budget(m, y, 1, lr=0.1, epochs=2, seed=1)
    assert r["met"] is False
    assert r["shortfall"].startswith("no lambda_l0 in 1e-9..1e-1 tried in ")
    # Two epochs close no gate: all 500 records even at the range's top.
    assert r["shortfall"].endswith(
        "tried in 1 full fit(s) keeps 1 records within 5%; nearest tried: 500 records at lambda_l0 1e-1; "
        "even the range's largest lambda_l0 keeps too many records: raise its top (lambda_range=(lo, hi)) or epochs"
    ), r["shortfall"]
    assert model.get_active_weights()["count"] == r["active"]


def test_verbose_prints_per_model(sparse_truth, capsys):
    m, y = sparse_truth
    with pytest.warns(RuntimeWarning):  # 40 epochs keep every record
        fit_to_budget(m, y, K, lr=0.1, epochs=40, verbose=True, verbose_freq=2, seed=1)
    out = capsys.readouterr().out
    assert "[bracket lambda_l0=0.000000001] Epoch    2:" in out
    assert "[narrow lambda_l0=" in out and "[continue lambda_l0=" in out
    assert re.search(r"\[continue lambda_l0=[^\]]*\] Epoch   40:", out), out


def test_budget_errors(sparse_truth):
    m, y = sparse_truth
    msg = "invalid configuration: a record budget must keep at least 1 record, got 0"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_to_budget(m, y, 0, epochs=1)
    msg = "invalid configuration: cannot keep 501 records: the matrix has only 500 columns"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_to_budget(m, y, 501, epochs=1)
    for t, shown in ((0.0, "0"), (1.0, "1"), (-0.5, "-0.5"), (1.5, "1.5"), (float("nan"), "NaN")):
        msg = (
            "invalid configuration: the records tolerance must be a number between 0 and 1 "
            f"(exclusive), got {shown}"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
            fit_to_budget(m, y, K, records_tolerance=t, epochs=1)
    msg = "invalid configuration: a record budget's lambda range needs 0 < lo < hi, got 0.1 and 0.01"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_to_budget(m, y, K, epochs=1, lambda_range=(0.1, 0.01))
    with pytest.raises(ValueError, match="a record budget needs gates"):
        fit_to_budget(m, y, K, epochs=1, use_gates=False)
    with pytest.raises(ValueError, match="target_records must be a non-negative integer"):
        fit_to_budget(m, y, -1, epochs=1)
    with pytest.raises(TypeError, match="target_records must be an integer"):
        fit_to_budget(m, y, "ten", epochs=1)
    with pytest.raises(ValueError, match="shape mismatch"):
        fit_to_budget(m, y[:-1], K, epochs=1)


def test_exports():
    assert l0_rs.fit_to_budget is fit_to_budget
    assert l0_rs.calibration.fit_to_budget is fit_to_budget
    assert "fit_to_budget" in l0_rs.__all__
