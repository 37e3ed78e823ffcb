"""l0_rs: the l0 Rust engine as a drop-in for l0-python.

``l0_rs.calibration.SparseCalibrationWeights`` and ``l0_rs.sparse.SparseL0Linear``
take the constructor and ``fit`` arguments of l0-python 0.6.2's classes of
the same names (change only the import line). Inputs are scipy.sparse
matrices or arrays (csr, csc, coo, others converted to csr; int32/int64
indices; float32/float64 data) or dense numpy arrays, and numpy vectors.
Results come back as numpy arrays where the reference returns torch
tensors: arrays that also answer ``.cpu()``, ``.detach()`` and ``.numpy()``
(:class:`l0_rs._tensor.TensorArray`), so
``model.get_weights(deterministic=True).cpu().numpy()`` runs unchanged.
Models have ``to(device)``, ``cpu()``, ``train()`` and ``eval()``, and
``load_state_dict`` takes l0-python's state dicts (torch tensors or numpy
arrays; Adam then starts fresh).

The engine's extras: ``SparseCalibrationWeights.diagnostics`` (weight
concentration, who carries each target), ``.refit`` (select, then refit
without gates), ``fit(..., holdout_targets=...)`` with
``holdout_targets`` to draw them, ``sweep`` (one model per L0
strength, with ``lambda_grid``; with ``checkpoint_dir`` its batches
checkpoint and resume, and ``executor="ray"`` runs them as Ray tasks, see
docs/ray.md) and ``fit_to_budget`` (the L0 strength that keeps a given
number of records).

CUDA needs only the NVIDIA driver and NVRTC: ``pip install "l0-rs[cuda]"``
adds NVRTC's wheel, which the package finds in site-packages on import.
``cuda_available()`` and ``cuda_status()`` say whether a GPU can be used
and, when not, what is missing; ``check_nvrtc()`` compiles the kernels
(no GPU needed).
"""

from ._convert import as_matrix
from ._cuda import check_nvrtc, cuda_available, cuda_status
from ._native import Matrix
from .calibration import (
    SparseCalibrationWeights,
    fit_to_budget,
    holdout_targets,
    lambda_grid,
    sweep,
)
from .sparse import SparseL0Linear

__version__ = "0.1.0"

__all__ = [
    "Matrix",
    "SparseCalibrationWeights",
    "SparseL0Linear",
    "as_matrix",
    "check_nvrtc",
    "cuda_available",
    "cuda_status",
    "fit_to_budget",
    "holdout_targets",
    "lambda_grid",
    "sweep",
]
