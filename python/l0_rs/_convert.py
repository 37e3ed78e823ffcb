"""Input conversion at the Python border: scipy.sparse / numpy to the
engine's ``Matrix``, vectors to contiguous float64 or int64 arrays. Errors
about the content of the arrays come from the engine; this module only
refuses what is not an array at all (``TypeError``) or has the wrong number
of dimensions (``ValueError``)."""

import numbers
import warnings

import numpy as np

from ._cuda import unavailable_reason
from ._native import Matrix, check_device

_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _index(a):
    a = np.asarray(a)
    # scipy uses int32 or int64; other integer types are widened once.
    if a.dtype.kind in "iu" and a.dtype not in _INDEX_DTYPES:
        a = a.astype(np.int64)
    return np.ascontiguousarray(a)


def _data(a):
    a = np.asarray(a)
    # Integer and boolean matrices (counts, indicators) become float64;
    # float32 and float64 pass through as they are.
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def as_matrix(M, what="M"):
    """An engine ``Matrix`` from a scipy.sparse matrix or array, a dense
    2-D numpy array, or a ``Matrix`` (returned as it is)."""
    if isinstance(M, Matrix):
        return M
    fmt = getattr(M, "format", None)
    if fmt is not None and hasattr(M, "tocsr"):
        if len(M.shape) != 2:
            raise ValueError(f"{what} must be 2-D, got shape {M.shape}")
        shape = (int(M.shape[0]), int(M.shape[1]))
        if fmt not in ("csr", "csc", "coo"):
            M = M.tocsr()
            fmt = "csr"
        if fmt == "coo":
            return Matrix.coo(shape, _index(M.row), _index(M.col), _data(M.data))
        return Matrix.compressed(
            fmt == "csc", shape, _index(M.indptr), _index(M.indices), _data(M.data)
        )
    if isinstance(M, np.ndarray):
        if M.ndim != 2:
            raise ValueError(f"{what} must be 2-D, got shape {M.shape}")
        if M.dtype.kind not in "biuf":
            raise TypeError(f"{what}: expected a numeric array, got {M.dtype}")
        return Matrix.dense(np.ascontiguousarray(M, dtype=np.float64))
    raise TypeError(
        f"{what} must be a scipy.sparse matrix or array or a 2-D numpy array, "
        f"got {type(M).__name__}"
    )


def as_vector(v, what):
    """A contiguous 1-D float64 array (a column vector is flattened)."""
    if isinstance(v, (str, bytes)) or v is None:
        raise TypeError(f"{what} must be a numeric vector, got {type(v).__name__}")
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a numeric vector, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def as_groups(g, what="target_groups"):
    """Integer group ids as a contiguous int64 array."""
    a = np.asarray(g)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if a.dtype.kind == "f":
        bad = np.flatnonzero(a != np.round(a))
        if bad.size:
            raise ValueError(
                f"{what} must hold integers, got {a[bad[0]]} at index {bad[0]}"
            )
    elif a.dtype.kind not in "biu":
        raise TypeError(f"{what} must hold integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def per_column(v, n_features, what):
    """A number, or a 1-D float64 array of one value per column (the
    reference's message when the shape is wrong)."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (n_features,):
        raise ValueError(
            f"{what} array must have shape ({n_features},), got {a.shape}"
        )
    return np.ascontiguousarray(a)


def resolve_device(device):
    """The device a fit runs on: plain "cuda" without a usable GPU becomes
    "cpu" with a warning, "cuda:N" without one is a RuntimeError, both
    saying what is missing (``cuda_status``); everything else as given
    (checked)."""
    check_device(device)
    if device == "cuda" or device.startswith("cuda:"):
        why = unavailable_reason(device)
        if why is not None and device == "cuda":
            warnings.warn(f"device='cuda' runs on the CPU: {why}", RuntimeWarning, stacklevel=3)
            return "cpu"
        if why is not None:
            raise RuntimeError(f"CUDA: {why}")
    return device


#: The largest count the engine takes (a 64-bit unsigned integer).
MAX_COUNT = 2**64 - 1


def count(v, what):
    """A non-negative int the engine can hold (at most ``MAX_COUNT``);
    refuses fractions, negatives and larger values, naming ``what``."""
    try:
        i = int(v)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{what} must be an integer, got {v!r}") from None
    if i != v or i < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {v!r}")
    if i > MAX_COUNT:
        raise ValueError(f"{what} must be at most {MAX_COUNT}, got {i}")
    return i
