"""The package on a GPU (tests marked ``gpu``: skipped without a usable
one, a failure under L0_REQUIRE_GPU=1): ``fit``, ``sweep``,
``fit_to_budget`` and ``refit`` with ``device="cuda"`` give bit for bit
what ``l0 calibrate``/``l0 sweep --device cuda`` write, and after one epoch
the state of the CPU's fit within the tolerances of the Rust CUDA tests
(relative 1e-5, absolute 1e-9: tests/cuda_kernels.rs). Without a GPU,
``device="cuda"`` raises with the command line's message and
``device="auto"`` runs on the CPU."""

import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

import l0_rs
from conftest import gpu_unusable, make_problem, run_cli
from l0_rs.calibration import SparseCalibrationWeights, fit_to_budget, lambda_grid, sweep

MODEL = dict(seed=6, init_keep_prob=0.1)
FIT = dict(lr=0.2, epochs=120)
CLI = ["--seed", "6", "--init-keep-prob", "0.1", "--lr", "0.2", "--epochs", "120"]
STATE = ("log_weight", "log_alpha", "log_weight_exp_avg", "log_weight_exp_avg_sq",
         "log_alpha_exp_avg", "log_alpha_exp_avg_sq")


@pytest.fixture(scope="module")
def data():
    return make_problem(q=40, n=500, seed=3)


def inputs(tmp_path, m, y):
    sp.save_npz(tmp_path / "M.npz", m)
    np.save(tmp_path / "y.npy", y)
    return ["--matrix", "M.npz", "--targets", "y.npy", "--device", "cuda", "--out", "out"]


def states_close(got, want):
    """The Rust CUDA tests' tolerance on a state after one epoch."""
    for k in STATE:
        g = np.asarray(got[k], dtype=np.float64)
        w = np.asarray(want[k], dtype=np.float64)
        assert np.all(np.abs(g - w) <= 1e-5 * np.abs(w) + 1e-9), k


def one_epoch_state(m, y, device, **fit):
    model = SparseCalibrationWeights(m.shape[1], device=device, **MODEL)
    model.fit(m, y, epochs=1, **fit)
    return model.state_dict()


@pytest.mark.gpu
def test_gpu_fit_is_the_cli_fit_and_near_the_cpu(l0_bin, tmp_path, data):
    m, y = data
    run_cli(l0_bin, ["calibrate", *inputs(tmp_path, m, y), *CLI, "--lambda-l0", "0.02"], tmp_path)
    model = SparseCalibrationWeights(m.shape[1], device="cuda", **MODEL)
    model.fit(m, y, lambda_l0=0.02, **FIT)
    assert model.fit_report_["device"].startswith("cuda:0")
    assert np.array_equal(model.get_weights(deterministic=True), np.load(tmp_path / "out" / "weights.npy"))
    states_close(one_epoch_state(m, y, "cuda", lr=0.2), one_epoch_state(m, y, "cpu", lr=0.2))


@pytest.mark.gpu
def test_gpu_sweep_is_the_cli_sweep_in_one_pass(l0_bin, tmp_path, data):
    m, y = data
    args = [*inputs(tmp_path, m, y), *CLI, "--lambda-grid", "0.01:1:3"]
    run_cli(l0_bin, ["sweep", *args], tmp_path)
    s = sweep(m, y, lambda_grid(0.01, 1, 3), device="cuda", **MODEL, **FIT)
    for k, model in enumerate(s):
        assert model.fit_report_["device"].startswith("cuda:0"), k
        assert model.fit_report_["fallback"] is None, k
        want = np.load(tmp_path / "out" / f"weights_{k}.npy")
        assert np.array_equal(model.get_weights(deterministic=True), want), k
    one = dict(lr=0.2, epochs=1)
    cuda = sweep(m, y, [0.01, 1.0], device="cuda", **MODEL, **one)
    cpu = sweep(m, y, [0.01, 1.0], device="cpu", **MODEL, **one)
    for g, c in zip(cuda, cpu):
        states_close(g.state_dict(), c.state_dict())


@pytest.mark.gpu
def test_gpu_budget_is_the_cli_budget_on_one_backend(l0_bin, tmp_path, data):
    m, y = data
    run_cli(l0_bin, ["calibrate", *inputs(tmp_path, m, y), *CLI, "--target-records", "370"], tmp_path)
    model, r = fit_to_budget(m, y, 370, device="cuda", **MODEL, **FIT)
    assert r["backends_built"] == 1 and r["fallbacks"] == []
    assert np.array_equal(model.get_weights(deterministic=True), np.load(tmp_path / "out" / "weights.npy"))
    single = SparseCalibrationWeights(m.shape[1], device="cuda", **MODEL)
    single.fit(m, y, lambda_l0=r["lambda_l0"], **FIT)
    assert np.array_equal(single.get_weights(deterministic=True), model.get_weights(deterministic=True))
    _, on_cpu = fit_to_budget(m, y, 370, device="cpu", **MODEL, **FIT)
    assert r["met"] and on_cpu["met"], (r["active"], on_cpu["active"])


@pytest.mark.gpu
def test_gpu_refit_is_the_cli_refit_and_near_the_cpu(l0_bin, tmp_path, data):
    m, y = data
    cli = [*inputs(tmp_path, m, y), *CLI, "--lambda-l0", "0.5", "--refit", "--refit-epochs", "80"]
    run_cli(l0_bin, ["calibrate", *cli], tmp_path)
    model = SparseCalibrationWeights(m.shape[1], device="cuda", **MODEL)
    model.fit(m, y, lambda_l0=0.5, **FIT)
    refit = model.refit(m, y, epochs=80, lr=0.2)
    assert refit.fit_report_["device"].startswith("cuda:0")
    assert np.array_equal(refit.get_weights(), np.load(tmp_path / "out" / "weights.npy"))
    # One refit epoch from the same L0 model on each device.
    cpu = SparseCalibrationWeights(m.shape[1], device="cpu", **MODEL)
    cpu.load_state_dict(model.state_dict())
    got = model.refit(m, y, epochs=1, lr=0.2).get_weights()
    want = cpu.refit(m, y, epochs=1, lr=0.2).get_weights()
    assert np.all(np.abs(got - want) <= 1e-5 * np.abs(want) + 1e-9)


@pytest.mark.skipif(gpu_unusable() is None, reason="a GPU is usable here")
def test_cuda_without_a_gpu_raises_as_the_cli_does(l0_bin, tmp_path, data):
    m, y = data
    r = subprocess.run([l0_bin, "calibrate", *inputs(tmp_path, m, y), *CLI],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1
    cli_line = r.stderr.splitlines()[-1]
    assert cli_line == f"error: {gpu_unusable()}"
    for device in ("cuda", "cuda:0"):
        # The package's message: the command line's, then what the package
        # adds about NVRTC when that is missing too (cuda_status).
        want = f"CUDA: {l0_rs.cuda_status(device)['reason']}"
        assert ("error: " + want).startswith(cli_line)
        model = SparseCalibrationWeights(m.shape[1], device=device, **MODEL)
        with pytest.raises(RuntimeError) as e:
            model.fit(m, y, **FIT)
        assert str(e.value) == want
        assert model.fit_report_ is None
        with pytest.raises(RuntimeError) as e:
            sweep(m, y, [0.1, 1.0], device=device, **MODEL, **FIT)
        assert str(e.value) == want
        with pytest.raises(RuntimeError) as e:
            fit_to_budget(m, y, 370, device=device, **MODEL, **FIT)
        assert str(e.value) == want


@pytest.mark.skipif(gpu_unusable() is None, reason="a GPU is usable here")
def test_auto_falls_back_to_the_cpu_without_a_gpu(data, recwarn):
    m, y = data
    auto = SparseCalibrationWeights(m.shape[1], device="auto", **MODEL)
    auto.fit(m, y, **FIT)
    cpu = SparseCalibrationWeights(m.shape[1], device="cpu", **MODEL)
    cpu.fit(m, y, **FIT)
    assert auto.fit_report_["device"].startswith("cpu (")
    assert np.array_equal(auto.get_weights(deterministic=True), cpu.get_weights(deterministic=True))
    s = sweep(m, y, [0.1, 1.0], device="auto", **MODEL, **FIT)
    assert [model.fit_report_["fallback"] for model in s] == [None, None]
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]


def test_fallbacks_warn_once_each_in_order():
    """What sweep and fit_to_budget do with the reports' reasons why a
    batch trained one model after another: one RuntimeWarning per distinct
    reason (None: the batch ran as one pass)."""
    from l0_rs._convert import warn_fallbacks

    why = "the 8 models could not train together in one pass on cuda:0, so they train one after another: x"
    with pytest.warns(RuntimeWarning) as got:
        warn_fallbacks([None, why, why, "y"])
    assert [str(w.message) for w in got] == [why, "y"]
