"""Sweeps in checkpointed batches, here and as Ray tasks: the same models
and metrics as the local sweep bit for bit, a batch that resumes from its
last checkpoint after its process died (SIGKILL), and the errors. The Ray
tests run on a local cluster (``ray.init(num_cpus=2)``) and are skipped
when Ray is not installed; the others need no Ray."""

import builtins
import importlib.util
import os
import signal
import sys

import numpy as np
import pytest

from conftest import make_problem
from l0_rs import as_matrix
from l0_rs.calibration import sweep

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason="Ray is not installed (pip install 'l0-rs[ray]')"
)

LAMBDAS = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2]
ARGS = dict(epochs=23, lr=0.05, seed=7, verbose_freq=10, log_weight_jitter_sd=0.05)


@pytest.fixture(scope="module")
def local():
    """The problem and its sweep in one call, which the others must equal."""
    m, y = make_problem(q=25, n=300, seed=3)
    return m, y, sweep(m, y, LAMBDAS, **ARGS)


def same_bits(a, b):
    """Weights, every metric but seconds, and each report's last progress
    bit for bit."""
    assert np.array_equal(a.weights.view(np.uint64), b.weights.view(np.uint64))
    for ma, mb in zip(a.models, b.models):
        for key, v in ma.state_dict().items():
            assert np.array_equal(np.asarray(v), np.asarray(mb.state_dict()[key])), key
    ka, kb = a.metrics, b.metrics
    assert ka.keys() == kb.keys()
    for key in ka:
        if key != "seconds":
            assert np.array_equal(ka[key], kb[key], equal_nan=True), key
    for ra, rb in zip(a.reports, b.reports):
        assert ra["last"] == rb["last"]
        assert ra["epochs"] == rb["epochs"] == 23


class Crash(Exception):
    pass


def crash_at_first_checkpoint(batch, step):
    raise Crash(f"batch {batch} stopped at epoch {step}")


def test_a_local_sweep_in_checkpointed_batches_resumes_and_equals_the_sweep(local, tmp_path):
    m, y, whole = local
    # Batches of 2: the third batch holds one λ; checkpoints at 5, 10, 15, 20.
    with pytest.raises(Crash, match="^batch 0 stopped at epoch 5$"):
        sweep(m, y, LAMBDAS, checkpoint_dir=tmp_path, checkpoint_every=5, batch_size=2,
              on_checkpoint=crash_at_first_checkpoint, **ARGS)
    assert sorted(os.listdir(tmp_path)) == ["batch-000"]
    assert sorted(os.listdir(tmp_path / "batch-000")) == ["latest", "step-0000000005"]
    assert (tmp_path / "batch-000" / "latest").read_text() == "5\n"
    steps = []
    again = sweep(m, y, LAMBDAS, checkpoint_dir=tmp_path, checkpoint_every=5, batch_size=2,
                  on_checkpoint=lambda b, s: steps.append((b, s)), **ARGS)
    same_bits(again, whole)
    assert again.resumed == {0: 5}
    assert [b["lambdas"] for b in again.batches] == [LAMBDAS[:2], LAMBDAS[2:4], LAMBDAS[4:]]
    assert [b["resumed_from"] for b in again.batches] == [5, None, None]
    assert again.batches[0]["checkpoint_dir"] == str(tmp_path / "batch-000")
    assert steps == [(0, 10), (0, 15), (0, 20)] + [(b, s) for b in (1, 2) for s in (5, 10, 15, 20)]
    # Only the last checkpoint of each batch is kept.
    assert sorted(os.listdir(tmp_path / "batch-002")) == ["latest", "step-0000000020"]
    assert whole.batches is None and whole.resumed == {}


def test_a_checkpoint_folder_of_another_sweep_is_refused(local, tmp_path):
    m, y, _ = local
    sweep(m, y, LAMBDAS[:2], checkpoint_dir=tmp_path, checkpoint_every=5, **ARGS)
    other = dict(ARGS, lr=0.02)
    with pytest.raises(ValueError) as e:
        sweep(m, y, LAMBDAS[:2], checkpoint_dir=tmp_path, checkpoint_every=5, **other)
    path = tmp_path / "batch-000" / "step-0000000020" / "model-0.l0ck"
    assert str(e.value) == (
        f"invalid configuration: {path}: the checkpoint is of another sweep batch "
        "(its fit_options differ); give another checkpoint_dir or empty this one"
    )
    with pytest.raises(ValueError, match="the checkpoint was written for another problem"):
        sweep(m, y * 2, LAMBDAS[:2], checkpoint_dir=tmp_path, checkpoint_every=5, **ARGS)
    with pytest.raises(ValueError, match=r"\(its seed, lambda_l0 differ\)"):
        sweep(m, y, [5e-2, 1e-3], checkpoint_dir=tmp_path, checkpoint_every=5, **dict(ARGS, seed=8))


def test_the_batch_options_are_checked(local, tmp_path):
    m, y, _ = local
    with pytest.raises(ValueError, match="^executor must be 'local' or 'ray', got 'dask'$"):
        sweep(m, y, LAMBDAS, executor="dask", **ARGS)
    with pytest.raises(ValueError, match="^batch_size must be from 1 to 8, got 9$"):
        sweep(m, y, LAMBDAS, checkpoint_dir=tmp_path, batch_size=9, **ARGS)
    with pytest.raises(ValueError, match="^checkpoint_every must be at least 1, got 0$"):
        sweep(m, y, LAMBDAS, checkpoint_dir=tmp_path, checkpoint_every=0, **ARGS)
    with pytest.raises(ValueError, match="^ray_options needs executor='ray'$"):
        sweep(m, y, LAMBDAS, ray_options={"max_retries": 1}, **ARGS)
    with pytest.raises(ValueError, match="^on_checkpoint needs a checkpoint_dir$"):
        sweep(m, y, LAMBDAS, on_checkpoint=print, **ARGS)
    assert os.listdir(tmp_path) == []


def test_without_ray_the_ray_executor_says_how_to_install_it(local, monkeypatch):
    m, y, _ = local
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError) as e:
        sweep(m, y, LAMBDAS, executor="ray", **ARGS)
    assert str(e.value) == (
        "sweep(executor='ray') needs Ray, which is not installed: pip install 'l0-rs[ray]'"
    )


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The tests' hooks travel to the workers by value (this module is not
    # importable there).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@needs_ray
def test_a_ray_sweep_equals_the_local_sweep(local, cluster, tmp_path):
    m, y, whole = local
    # Three tasks of 2, 2 and 1 λ, no checkpoints; then one of 5 with.
    plain = sweep(m, y, LAMBDAS, executor="ray", batch_size=2, **ARGS)
    same_bits(plain, whole)
    assert [b["lambdas"] for b in plain.batches] == [LAMBDAS[:2], LAMBDAS[2:4], LAMBDAS[4:]]
    assert plain.resumed == {}
    assert all(b["pid"] != os.getpid() for b in plain.batches)
    saved = sweep(m, y, LAMBDAS, executor="ray", checkpoint_dir=tmp_path, checkpoint_every=4, **ARGS)
    same_bits(saved, whole)
    assert (tmp_path / "batch-000" / "latest").read_text() == "20\n"
    assert saved.resumed == {}
    with pytest.raises(TypeError, match=r"^executor='ray' needs M as a scipy.sparse matrix or a numpy array \(it goes"):
        sweep(as_matrix(m), y, LAMBDAS, executor="ray", **ARGS)


def kill_at_first_checkpoint(marks):
    """A hook that, the first time batch 1 saves a checkpoint, writes its
    process id and epoch to ``marks`` and kills its own process with
    SIGKILL (the retried task finds the mark and goes on)."""

    def hook(batch, step):
        if batch == 1 and not os.path.exists(marks):
            with open(marks, "w") as f:
                f.write(f"{os.getpid()} {step}")
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


@needs_ray
def test_a_worker_killed_mid_task_resumes_from_its_checkpoint(local, cluster, tmp_path):
    m, y, whole = local
    marks = str(tmp_path / "killed")
    out = sweep(m, y, LAMBDAS, executor="ray", checkpoint_dir=tmp_path / "ck", checkpoint_every=6,
                batch_size=3, on_checkpoint=kill_at_first_checkpoint(marks), **ARGS)
    pid, step = map(int, open(marks).read().split())
    assert step == 6
    same_bits(out, whole)
    assert out.resumed == {1: 6}
    assert [b["resumed_from"] for b in out.batches] == [None, 6]
    # Another worker process finished the batch.
    assert out.batches[1]["pid"] != pid


def test_a_cuda_sweep_asks_ray_for_one_gpu_per_task(local, monkeypatch, tmp_path):
    """Without a GPU here, what Ray is asked for is checked, not a run:
    device="cuda:1" gives each task num_gpus=1 and a model on "cuda" (the
    GPU Ray assigns), threads CPUs; a CPU sweep asks for no GPU."""
    from l0_rs import _ray

    monkeypatch.setattr(_ray, "require_ray", lambda: None)
    asked = []

    def record(run_batch, M, jobs, options):
        asked.append((options, [job["model_args"]["device"] for job in jobs]))
        raise RuntimeError("recorded")

    monkeypatch.setattr(_ray, "run_batches", record)
    m, y = make_problem(seed=2)
    for device, want_gpus, want_device in [("cuda:1", 1, "cuda"), ("cpu", 0, "cpu")]:
        with pytest.raises(RuntimeError, match="^recorded$"):
            sweep(m, y, [1e-3, 1e-2, 1e-1], epochs=5, executor="ray", device=device, threads=2,
                  batch_size=2, checkpoint_dir=tmp_path / device)
        options, devices = asked[-1]
        assert options == {"max_retries": 3, "num_cpus": 2, "num_gpus": want_gpus}
        assert devices == [want_device, want_device]
