"""Fixtures of the l0_rs tests: small problems built here (no l0-python
needed) and the `l0` command line of this checkout, for parity tests."""

import os
import pathlib
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def l0_bin():
    """The `l0` binary: $L0_BIN, else target/{debug,release}/l0 of this
    checkout (after `cargo test` or `cargo build`), else built here."""
    given = os.environ.get("L0_BIN")
    if given:
        return given
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / "l0"
        if path.exists():
            return str(path)
    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "l0"], cwd=ROOT, check=True
    )
    return str(ROOT / "target" / "debug" / "l0")


def make_problem(q=30, n=400, density=0.2, seed=0):
    """A feasible calibration problem: float32 CSR (int32 indices) M, and
    targets y = M w* for positive w*, perturbed by 5%."""
    rng = np.random.default_rng(seed)
    m = sp.random(q, n, density=density, format="csr", random_state=rng, dtype=np.float32)
    m.data = (m.data * 10).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n)
    y = (m @ w) * rng.uniform(0.95, 1.05, q)
    return m, y


@pytest.fixture
def problem():
    return make_problem()


def run_cli(l0_bin, args, cwd):
    r = subprocess.run([l0_bin, *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def gpu_unusable():
    """Why cuda:0 cannot be used here (the engine's message), or None."""
    from l0_rs._native import cuda_unavailable

    return cuda_unavailable(0)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gpu: runs on cuda:0; skipped without a usable GPU, a failure under L0_REQUIRE_GPU=1",
    )


def pytest_runtest_setup(item):
    """Tests marked ``gpu`` skip where cuda:0 cannot be used, naming why,
    and fail there instead when L0_REQUIRE_GPU=1 (the GPU check script)."""
    if item.get_closest_marker("gpu") is None:
        return
    why = gpu_unusable()
    if why is None:
        return
    if os.environ.get("L0_REQUIRE_GPU") == "1":
        pytest.fail(f"L0_REQUIRE_GPU=1 but: {why}", pytrace=False)
    pytest.skip(f"no GPU: {why}")
