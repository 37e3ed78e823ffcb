"""CUDA from a wheel: NVRTC from the nvidia-cuda-nvrtc-cu12 wheel found in
site-packages without LD_LIBRARY_PATH (``pip install "l0-rs[cuda]"``), and
``cuda_available`` / ``cuda_status`` naming exactly what is missing.

The tests that need the NVRTC wheel skip without it, and fail instead under
L0_REQUIRE_NVRTC=1 (CI installs the wheel's [cuda] extra and sets it); the
tests of a machine without the driver skip where libcuda loads."""

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import l0_rs
from l0_rs import _cuda
from l0_rs.calibration import SparseCalibrationWeights

from conftest import make_problem

DRIVER_MISSING = "the CUDA driver (libcuda.so) cannot be loaded: no NVIDIA driver on this machine"
NVRTC_MISSING = (
    "NVRTC (libnvrtc.so.12 or .so.13, which compiles the CUDA kernels) cannot be loaded: "
    'pip install "l0-rs[cuda]" installs it (the nvidia-cuda-nvrtc-cu12 wheel)'
)


def nvrtc_wheel_version():
    """The installed nvidia-cuda-nvrtc-cu12 wheel's version; skips the test
    without it (a failure under L0_REQUIRE_NVRTC=1)."""
    try:
        return importlib.metadata.version("nvidia-cuda-nvrtc-cu12")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("L0_REQUIRE_NVRTC") == "1":
            pytest.fail("L0_REQUIRE_NVRTC=1 but the nvidia-cuda-nvrtc-cu12 wheel is not installed")
        pytest.skip('the NVRTC wheel is not installed (pip install "l0-rs[cuda]")')


def without_ld_library_path(code):
    """Runs ``code`` in a fresh interpreter with no LD_LIBRARY_PATH and
    returns what it printed as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def no_driver():
    """Skips the test on a machine where libcuda loads."""
    if l0_rs.cuda_status()["driver"]:
        pytest.skip("this machine has the CUDA driver (libcuda)")


def test_nvrtc_wheel_found_in_site_packages_without_ld_library_path():
    version = nvrtc_wheel_version()
    got = without_ld_library_path(
        "import json, os, l0_rs\n"
        "s = l0_rs.cuda_status()\n"
        "maps = [l.split()[-1] for l in open('/proc/self/maps') if 'libnvrtc.so' in l]\n"
        "print(json.dumps({'ld': os.environ.get('LD_LIBRARY_PATH'), 'nvrtc': s['nvrtc'],\n"
        "    'wheel': s['nvrtc_wheel'], 'archs': s['nvrtc_archs'], 'mapped': sorted(set(maps))}))"
    )
    site = sysconfig.get_paths()["purelib"]
    wheel_lib = os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12")
    assert got["ld"] is None
    assert got["nvrtc"] == ".".join(version.split(".")[:2])
    assert got["wheel"] == wheel_lib
    # The one NVRTC in the process is the wheel's.
    assert got["mapped"] == [os.path.realpath(wheel_lib)]
    assert {70, 80, 90} <= set(got["archs"])


def test_check_nvrtc_compiles_every_kernel_with_the_wheels_nvrtc():
    nvrtc_wheel_version()
    got = without_ld_library_path(
        "import json, l0_rs\n"
        "print(json.dumps([l0_rs.check_nvrtc('sm_80'), l0_rs.check_nvrtc('compute_90')]))"
    )
    cubins, ptx = got
    assert [(f, k) for f, k, _ in cubins] == [("gates.cu", "cubin"), ("spmv.cu", "cubin"), ("step.cu", "cubin")]
    assert [(f, k) for f, k, _ in ptx] == [("gates.cu", "PTX"), ("spmv.cu", "PTX"), ("step.cu", "PTX")]
    assert all(size > 1000 for _, _, size in cubins + ptx)


def test_without_a_driver_cuda_status_names_the_driver():
    no_driver()
    s = l0_rs.cuda_status()
    expected = DRIVER_MISSING if s["nvrtc"] is not None else f"{DRIVER_MISSING}; {NVRTC_MISSING}"
    assert s["available"] is False
    assert s["reason"] == expected
    assert l0_rs.cuda_available() is False
    assert l0_rs.cuda_available("cuda:3") is False
    assert l0_rs.cuda_status("cuda:3")["reason"] == expected


def test_the_reason_names_each_missing_library_and_how_to_get_nvrtc():
    engine_driver = f"CUDA: {DRIVER_MISSING}"
    engine_nvrtc = (
        "CUDA: NVRTC (libnvrtc.so.13 or libnvrtc.so.12) cannot be loaded; the CUDA backend "
        "compiles its kernels at run time and needs it (install the CUDA toolkit or the "
        "nvidia-cuda-nvrtc-cu12 wheel and add its lib folder to LD_LIBRARY_PATH)"
    )
    assert _cuda._reason(False, False, engine_driver) == f"{DRIVER_MISSING}; {NVRTC_MISSING}"
    assert _cuda._reason(False, True, engine_driver) == DRIVER_MISSING
    assert _cuda._reason(True, False, engine_nvrtc) == NVRTC_MISSING
    assert _cuda._reason(True, True, "CUDA: no CUDA device found") == "no CUDA device found"
    assert _cuda._reason(True, True, None) is None


@pytest.mark.parametrize(
    "device, message",
    [
        ("cpu", "a CUDA device is \"cuda\" or \"cuda:N\", got 'cpu'"),
        ("gpu", "invalid configuration: unknown device 'gpu': expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_cuda_available_refuses_what_is_not_a_cuda_device(device, message):
    with pytest.raises(ValueError) as e:
        l0_rs.cuda_available(device)
    assert str(e.value) == message


def test_a_fit_on_cuda_n_without_a_driver_says_what_is_missing():
    no_driver()
    m, y = make_problem()
    reason = l0_rs.cuda_status()["reason"]
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=1)
    with pytest.raises(RuntimeError) as e:
        model.fit(m, y, epochs=2, device="cuda:0")
    assert str(e.value) == f"CUDA: {reason}"
    with pytest.warns(RuntimeWarning) as w:
        model.fit(m, y, epochs=2, device="cuda")
    # (Two epochs also end far from the targets: a UserWarning beside it.)
    runtime = [str(x.message) for x in w if x.category is RuntimeWarning]
    assert runtime == [f"device='cuda' runs on the CPU: {reason}"]
    assert model.fit_report_["device"].startswith("cpu (")  # "cpu (2 threads, avx2)"
    assert np.all(np.isfinite(model.get_weights(deterministic=True)))
