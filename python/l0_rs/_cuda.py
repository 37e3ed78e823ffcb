"""CUDA from a wheel: only the NVIDIA driver and NVRTC are needed, and
``pip install "l0-rs[cuda]"`` brings NVRTC (the nvidia-cuda-nvrtc-cu12
wheel). The engine loads NVRTC by its soname (libnvrtc.so.12), which the
dynamic loader does not look for in site-packages; so importing ``l0_rs``
loads the wheel's library once, by its full path and with RTLD_GLOBAL,
and the engine's later lookup by soname finds the library already loaded:
no LD_LIBRARY_PATH. (libnvrtc-builtins, beside it, is found through the
library's own RUNPATH, $ORIGIN.)

``cuda_available`` and ``cuda_status`` say whether a device can be used
and, when not, exactly what is missing: the driver (libcuda), NVRTC, or
the device."""

import ctypes
import glob
import os
import sys

from . import _native

#: Where the nvidia-cuda-nvrtc-cu12 wheel puts NVRTC, under a sys.path entry.
NVRTC_WHEEL_GLOB = os.path.join("nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*")

#: What missing NVRTC means for this package, and how to add it.
NVRTC_MISSING = (
    "NVRTC (libnvrtc.so.12 or .so.13, which compiles the CUDA kernels) cannot be "
    "loaded: pip install \"l0-rs[cuda]\" installs it (the nvidia-cuda-nvrtc-cu12 wheel)"
)

# The wheel's NVRTC as loaded at import: (path, None), (path, the loader's
# error), or None when no NVRTC wheel is installed.
_preloaded = None
# The loaded library, kept referenced for the life of the process.
_handle = None


def nvrtc_wheel_library():
    """The NVRTC library of an installed nvidia-cuda-nvrtc-cu12 wheel: the
    first match along ``sys.path`` (relative entries such as the current
    folder are not searched), or None."""
    for entry in sys.path:
        if not entry or not os.path.isabs(entry):
            continue
        hits = sorted(glob.glob(os.path.join(entry, NVRTC_WHEEL_GLOB)))
        if hits:
            return hits[0]
    return None


def preload_nvrtc():
    """Loads the NVRTC wheel's library (if installed) with RTLD_GLOBAL, once;
    returns ``(path, error or None)`` or None without the wheel."""
    global _preloaded, _handle
    if _preloaded is not None:
        return _preloaded
    path = nvrtc_wheel_library()
    if path is None:
        return None
    try:
        _handle = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        _preloaded = (path, None)
    except OSError as e:
        _preloaded = (path, str(e))
    return _preloaded


def _ordinal(device):
    """The device number of "cuda" (0) or "cuda:N"; ValueError otherwise."""
    device = str(device)
    _native.check_device(device)
    if device == "cuda":
        return 0
    if device.startswith("cuda:"):
        return int(device[len("cuda:"):])
    raise ValueError(f"a CUDA device is \"cuda\" or \"cuda:N\", got {device!r}")


def _nvrtc_missing():
    """Why NVRTC does not load, with how to install it."""
    if _preloaded is not None and _preloaded[1] is not None:
        path, error = _preloaded
        return f"NVRTC from the nvidia-cuda-nvrtc-cu12 wheel ({path}) failed to load: {error}"
    return NVRTC_MISSING


def _reason(driver, nvrtc, engine_reason):
    """What is missing, from whether the driver and NVRTC load and the
    engine's reason (``CudaBackend::available``: it stops at the first
    missing piece, the driver, and gives the l0 program's advice for
    NVRTC): the driver's message, then this package's for NVRTC."""
    if engine_reason is not None:
        engine_reason = engine_reason.removeprefix("CUDA: ")
    if nvrtc:
        return engine_reason
    if driver:
        return _nvrtc_missing()
    return f"{engine_reason}; {_nvrtc_missing()}"


def cuda_status(device="cuda"):
    """What this process finds of CUDA for ``device`` ("cuda" or "cuda:N"),
    as a dict:

    - ``available``: whether fits can run on that device;
    - ``reason``: None when available; else the missing libraries, the
      driver (libcuda) and NVRTC (with how to install it), or when both
      load, what is wrong with the device (none found, no such number);
    - ``driver``: whether the driver library loads;
    - ``nvrtc``: NVRTC's version ("12.9"), None when it does not load;
    - ``nvrtc_archs``: the architectures NVRTC compiles for (e.g. 90);
    - ``nvrtc_wheel``: the path of the nvidia-cuda-nvrtc-cu12 wheel's
      library that the package loaded, None without the wheel.
    """
    ordinal = _ordinal(device)
    driver, nvrtc, archs = _native.cuda_libraries()
    reason = _reason(driver, nvrtc is not None, _native.cuda_unavailable(ordinal))
    wheel = _preloaded[0] if _preloaded is not None and _preloaded[1] is None else None
    return {
        "available": reason is None,
        "reason": reason,
        "driver": driver,
        "nvrtc": nvrtc,
        "nvrtc_archs": archs,
        "nvrtc_wheel": wheel,
    }


def cuda_available(device="cuda"):
    """Whether fits can run on ``device`` ("cuda" or "cuda:N"); when not,
    ``cuda_status(device)["reason"]`` says what is missing."""
    return cuda_status(device)["available"]


def unavailable_reason(device):
    """``cuda_status(device)["reason"]``: None when the device can be used."""
    return cuda_status(device)["reason"]


def check_nvrtc(arch="sm_80"):
    """Compiles the engine's CUDA kernels with the NVRTC this process
    loads, for ``arch`` ("sm_XY": cubins, "compute_XY": PTX): a check that
    NVRTC works, which needs no GPU. Returns ``[(file, kind, bytes)]``;
    RuntimeError when NVRTC is missing or fails."""
    if _native.cuda_libraries()[1] is None:
        raise RuntimeError(_nvrtc_missing())
    return _native.compile_kernels(arch)


preload_nvrtc()
