"""The weight constraints in Python: kept records' lower bounds and a
conserved total, bit for bit the command line's, with the conflicts as
ValueError and an unreachable total as a UserWarning."""

import numpy as np
import pytest

from conftest import make_problem
from l0_rs.calibration import SparseCalibrationWeights, sweep
from test_cli_parity import cli_weights


def model_for(m, design):
    return SparseCalibrationWeights(n_features=m.shape[1], seed=4, init_weights=design)


def test_floors_and_the_initial_total_match_the_cli(l0_bin, tmp_path):
    m, y = make_problem(seed=8)
    # Values whose sum depends on the order of the additions: the engine
    # sums them for both sides.
    design = 0.1 + (np.arange(m.shape[1]) % 7) * 0.37
    np.save(tmp_path / "design.npy", design)
    args = ["--epochs", "200", "--seed", "4", "--lr", "0.05", "--lambda-l0", "1e-3",
            "--init-weights", "design.npy", "--min-weight-ratio", "0.3", "--conserve-total"]
    want = cli_weights(l0_bin, tmp_path, m, y, args)
    model = model_for(m, design)
    model.fit(m, y, epochs=200, lr=0.05, lambda_l0=1e-3, min_weight_ratio=0.3, conserve_total=True)
    w = model.get_weights(deterministic=True)
    assert np.array_equal(w, want)
    assert abs(w.sum() - design.sum()) <= 1e-9 * design.sum()
    assert model._model.design_total() == sum(design.tolist())
    kept = w > 0
    assert np.all(w[kept] >= 0.3 * design[kept])


def test_a_sweep_conserves_each_models_total():
    m, y = make_problem(seed=9)
    design = np.ones(m.shape[1])
    result = sweep(m, y, [1e-4, 1e-2], epochs=100, lr=0.05, conserve_total=42.0,
                   seed=3, init_weights=design)
    for model in result:
        w = model.get_weights(deterministic=True)
        assert abs(w.sum() - 42.0) <= 1e-9 * 42.0


def test_conflicts_are_value_errors_and_a_missed_total_warns():
    m, y = make_problem(seed=10)
    design = np.ones(m.shape[1])
    model = model_for(m, design)
    n = m.shape[1]
    with pytest.raises(ValueError, match=rf"^invalid configuration: conserve_total 1000000 is above what the weight caps allow: the {n} records' caps sum to {2 * n}$"):
        model.fit(m, y, epochs=5, conserve_total=1e6, max_weight=2.0)
    with pytest.raises(ValueError, match=r"^invalid configuration: min_weight_ratio puts record 0's lower bound 3 above its cap 2 \(max_weight / max_weight_ratio\)$"):
        model.fit(m, y, epochs=5, min_weight_ratio=3.0, max_weight_ratio=2.0)
    with pytest.raises(ValueError, match=r"^invalid configuration: conserve_total must be a finite number > 0, got -1$"):
        model.fit(m, y, epochs=5, conserve_total=-1.0)
    # Lower bounds whose kept records alone exceed the total.
    with pytest.warns(UserWarning, match=r"^the conserved total 1\.5 is out of reach: the \d+ kept records sum to .* with every weight at their lower bounds$"):
        model_for(m, design).fit(m, y, epochs=5, conserve_total=1.5, min_weight_ratio=1.0)


def test_the_bounds_travel_with_the_state():
    import pickle

    m, y = make_problem(seed=11)
    design = np.ones(m.shape[1])
    model = model_for(m, design)
    model.fit(m, y, epochs=100, lr=0.05, lambda_l0=1e-3, min_weight_ratio=0.5, conserve_total=np.True_)
    w = model.get_weights(deterministic=True)
    assert abs(w.sum() - m.shape[1]) <= 1e-9 * m.shape[1]
    state = model.state_dict()
    assert state["conserve_total"] == float(m.shape[1]) and state["min_weight_ratio"] == 0.5
    assert state["max_weight"] is None
    # Pickled (as Ray returns models) and loaded into a fresh model: the
    # same reported weights, bit for bit.
    again = pickle.loads(pickle.dumps(model)).get_weights(deterministic=True)
    assert np.array_equal(again, w)
    fresh = model_for(m, design)
    fresh.load_state_dict(state)
    assert np.array_equal(fresh.get_weights(deterministic=True), w)
    # A state without bounds (l0-python's keys, or a plain fit's) holds none.
    plain = model_for(m, design)
    plain.fit(m, y, epochs=100, lr=0.05, lambda_l0=1e-3)
    assert "conserve_total" not in plain.state_dict()
