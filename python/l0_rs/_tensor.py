"""What l0-python code does with torch tensors, on numpy arrays.

The reference returns torch tensors, and its users write
``model.get_weights(deterministic=True).cpu().numpy()`` or
``.detach().cpu().numpy()``. Results here are :class:`TensorArray`: a
numpy ``ndarray`` subclass (use it as any array) whose ``cpu()``,
``detach()``, ``clone()`` and ``to(...)`` return it as it is and whose
``numpy()`` returns the plain ``ndarray``, so those lines run unchanged.
Arithmetic on one gives plain arrays and numpy scalars.

:func:`as_numpy` reads state-dict values the other way: torch tensors
(duck-typed through ``.detach().cpu().numpy()``, torch is never
imported), anything with ``.numpy()``, or array-likes.
"""

import numpy as np


class TensorArray(np.ndarray):
    """A numpy array that also answers the torch calls l0-python code makes
    on results: ``cpu()``, ``detach()``, ``clone()`` (a copy), ``to(...)``
    and ``numpy()`` (the plain ``ndarray``, no copy)."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        # Results of arithmetic and reductions are plain arrays (scalars
        # for 0-d results), as numpy gives for plain inputs.
        arr = arr.view(np.ndarray)
        return arr[()] if return_scalar or arr.ndim == 0 else arr

    def cpu(self):
        """Itself (the array already lives in host memory)."""
        return self

    def detach(self):
        """Itself (there is no autograd graph)."""
        return self

    def to(self, *args, **kwargs):
        """Itself, whatever device or dtype is named (torch's
        ``tensor.to(device)``); convert dtypes with ``astype``."""
        return self

    def clone(self):
        """A copy."""
        return self.copy()

    def numpy(self):
        """The plain ``numpy.ndarray`` (a view, no copy)."""
        return self.view(np.ndarray)


def tensor_like(a):
    """``a`` (an ndarray) as a :class:`TensorArray`, without a copy."""
    return np.asarray(a).view(TensorArray)


def as_numpy(value):
    """A state-dict value as a numpy array: a torch tensor through
    ``value.detach().cpu().numpy()`` (duck-typed: torch is not imported),
    anything else with ``.numpy()`` through it, else ``numpy.asarray``."""
    if isinstance(value, np.ndarray):
        return value.view(np.ndarray)
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)
