"""Code written for l0-python runs unchanged: results answer the torch
calls made on them (``.cpu()``, ``.detach()``, ``.numpy()``), models have
``to``/``cpu``/``train``/``eval``, and ``load_state_dict`` takes
l0-python's state dicts, with numpy arrays or torch tensors as values."""

import pathlib
import runpy

import numpy as np
import pytest

from conftest import make_problem
from l0_rs._tensor import TensorArray
from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "policyengine_style.py"


def test_a_policyengine_style_script_runs_unchanged(capsys):
    ns = runpy.run_path(str(SCRIPT))
    out = capsys.readouterr().out
    # verbose_freq=50 over chunks of 100 epochs: two progress lines a chunk.
    assert out.count("Epoch   50:") == 4 and out.count("Epoch  100:") == 4
    assert out.count("Groups: 4 groups, normalize=on") == 4
    history = ns["history"]
    assert [h[0] for h in history] == [100, 200, 300, 400]
    # Each chunk continues the last: fewer records, closer targets.
    active = [h[1] for h in history]
    assert active == sorted(active, reverse=True) and active[-1] < 1_000, history
    errs = [h[2] for h in history]
    assert errs[-1] < errs[0] and errs[-1] < 0.02, history
    final = ns["final_weights"]
    assert type(final) is np.ndarray and final.dtype == np.float64
    assert final.shape == (2_000,) and np.all(final >= 0)
    # The pickled state dict brings the model back bit for bit.
    assert np.array_equal(ns["restored_weights"], final)
    assert ns["restored"].seed_in_use == 7


def test_results_answer_torch_calls_and_stay_numpy(problem):
    m, y = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=3).fit(m, y, epochs=20)
    w = model.get_weights(deterministic=True)
    assert isinstance(w, np.ndarray) and isinstance(w, TensorArray)
    plain = w.cpu().numpy()
    assert type(plain) is np.ndarray and np.shares_memory(plain, w)
    assert w.detach() is w and w.cpu() is w and w.to("cpu") is w
    assert type(w.detach().cpu().numpy()) is np.ndarray
    c = w.clone()
    assert type(c) is TensorArray and not np.shares_memory(c, w) and np.array_equal(c, w)
    # Everything else gives plain numpy results.
    assert type(w * 2) is np.ndarray and type(np.exp(w)) is np.ndarray
    assert type(w.sum()) is np.float64 and w.sum() == plain.sum()
    assert type(m @ w) is np.ndarray
    for arr in (
        model.get_deterministic_gates(),
        model.predict(m),
        model.refit(m, y, epochs=5).get_weights(),
    ):
        assert type(arr.cpu().numpy()) is np.ndarray
    lin = SparseL0Linear(n_features=m.shape[1], seed=1)
    for arr in (lin.weight, lin.get_weights(), lin.get_coefficients()):
        assert type(arr.detach().cpu().numpy()) is np.ndarray


def test_models_have_to_cpu_train_and_eval(problem):
    m, y = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=3)
    assert model.training is True
    assert model.to("cpu") is model and model.device == "cpu"
    assert model.eval() is model and model.training is False
    assert model.train() is model and model.training is True
    assert model.train(False).training is False
    assert model.cpu() is model and model.device == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        model.to("gpu")
    assert model.device == "cpu"

    class Device:  # a torch.device, duck-typed: str() gives its name
        def __str__(self):
            return "cpu"

    assert model.to(Device()).device == "cpu"
    # The device travels with a pickle, as the constructor's would.
    model.to("auto")
    assert model.__getstate__()["init"]["device"] == "auto"
    lin = SparseL0Linear(n_features=4, seed=1)
    assert lin.to("cpu").eval().training is False


def reference_state(n, seed=0):
    """What l0-python 0.6.2's SparseCalibrationWeights.state_dict() holds:
    ``log_weight`` and ``log_alpha``, float32, one per feature."""
    rng = np.random.default_rng(seed)
    return {
        "log_weight": rng.normal(0.0, 0.3, n).astype(np.float32),
        "log_alpha": rng.normal(1.0, 1.0, n).astype(np.float32),
    }


def test_load_state_dict_takes_l0_python_keys_with_adam_fresh(problem):
    m, y = problem
    n = m.shape[1]
    ref = reference_state(n)
    model = SparseCalibrationWeights(n_features=n, seed=11)
    model.fit(m, y, epochs=30, lr=0.05)
    model.load_state_dict(ref)
    sd = model.state_dict()
    assert np.array_equal(sd["log_weight"], ref["log_weight"])
    assert np.array_equal(sd["log_alpha"], ref["log_alpha"])
    for k in ("log_weight_exp_avg", "log_weight_exp_avg_sq", "log_alpha_exp_avg", "log_alpha_exp_avg_sq"):
        assert sd[k].dtype == np.float32 and not sd[k].any(), k
    assert sd["step"] == 0 and sd["seed"] == 11
    # Fresh Adam: the same as a model given the full state with zero moments.
    full = SparseCalibrationWeights(n_features=n, seed=11)
    full.load_state_dict(sd)
    model.fit(m, y, epochs=25, lr=0.05)
    full.fit(m, y, epochs=25, lr=0.05)
    assert np.array_equal(model.get_weights(deterministic=True), full.get_weights(deterministic=True))


class FakeTensor:
    """Stands in for a torch tensor: only detach(), cpu() and numpy()."""

    def __init__(self, a, calls):
        self.a, self.calls = np.asarray(a), calls

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def numpy(self):
        self.calls.append("numpy")
        return self.a


def test_load_state_dict_reads_tensor_like_values():
    n = 12
    calls = []
    ref = {k: FakeTensor(v, calls) for k, v in reference_state(n, 1).items()}
    model = SparseCalibrationWeights(n_features=n, seed=2)
    model.load_state_dict(ref)
    assert calls == ["detach", "cpu", "numpy"] * 2
    assert np.array_equal(model.state_dict()["log_alpha"], ref["log_alpha"].a)
    # The regression model's bias is a one-element tensor in l0-python.
    lin = SparseL0Linear(n_features=3, seed=1)
    calls.clear()
    lin.load_state_dict({
        "weight": FakeTensor(np.array([0.5, -1.0, 2.0], np.float32), calls),
        "bias": FakeTensor(np.array([3.0], np.float32), calls),
        "log_alpha": FakeTensor(np.array([2.0, -2.0, 2.0], np.float32), calls),
    })
    sd = lin.state_dict()
    assert np.array_equal(sd["weight"], np.array([0.5, -1.0, 2.0], np.float32))
    assert sd["bias"] == 3.0 and sd["bias_exp_avg"] == 0.0 and sd["step"] == 0
    assert lin.bias == 3.0
    with pytest.raises(ValueError, match=r"state_dict\['bias'\]: expected one number, got shape \(2,\)"):
        lin.load_state_dict({"weight": np.zeros(3, np.float32), "bias": np.zeros(2), "log_alpha": np.zeros(3, np.float32)})


def test_load_state_dict_reads_torch_tensors():
    torch = pytest.importorskip("torch")
    n = 8
    ref = reference_state(n, 2)
    model = SparseCalibrationWeights(n_features=n, seed=5)
    model.load_state_dict({k: torch.from_numpy(v).requires_grad_() for k, v in ref.items()})
    sd = model.state_dict()
    assert np.array_equal(sd["log_weight"], ref["log_weight"])
    assert np.array_equal(sd["log_alpha"], ref["log_alpha"])
    assert sd["step"] == 0 and sd["seed"] == 5
    # And this package's own state dict, saved as tensors, round trips.
    back = SparseCalibrationWeights(n_features=n, seed=9)
    back.load_state_dict({k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in sd.items()})
    assert np.array_equal(back.get_weights(deterministic=True), model.get_weights(deterministic=True))
