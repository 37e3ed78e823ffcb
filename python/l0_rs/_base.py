"""What the two model classes share: their constructor arguments (kept as
attributes, as the reference keeps them, and for pickling), the results
both models have, the state and pickling."""

import numpy as np

from . import _native
from ._tensor import as_numpy, tensor_like


class Model:
    """Base of ``SparseCalibrationWeights`` and ``SparseL0Linear``; the
    subclass builds ``self._model`` (the engine's model) after ``_keep``
    and names its weight parameter in ``_PARAM`` (the reference's
    state-dict key)."""

    _PARAM = "log_weight"

    def _keep(self, init_args):
        self._init_args = dict(init_args)
        for name, value in init_args.items():
            setattr(self, name, value)
        self.device = str(self.device)
        _native.check_device(self.device)
        #: torch's ``Module.training`` flag, set by ``train``/``eval``; it
        #: changes nothing here (results are deterministic or sampled as
        #: each call asks).
        self.training = True
        #: The report of the last ``fit``: device, epochs run, seconds, and
        #: the metrics of its last progress report (``last``, with the
        #: reference's progress line under ``line``).
        self.fit_report_ = None

    @property
    def seed_in_use(self):
        """The seed of every random draw (the given one, or the one drawn)."""
        return self._model.seed

    def to(self, device):
        """Run later fits on ``device`` ("cpu", "cuda", "cuda:N", "auto", or
        a ``torch.device``); returns self, as torch's ``Module.to`` does.
        The state stays where the engine keeps it (host memory)."""
        device = str(device)
        _native.check_device(device)
        self.device = device
        self._init_args["device"] = device
        return self

    def cpu(self):
        """``to("cpu")``."""
        return self.to("cpu")

    def train(self, mode=True):
        """Sets ``training`` (torch's ``Module.train``); returns self. Only
        the flag changes: ``fit`` trains and the ``get_*`` methods take
        ``deterministic`` as in the reference, whatever the mode."""
        self.training = bool(mode)
        return self

    def eval(self):
        """``train(False)``; returns self."""
        return self.train(False)

    def get_deterministic_gates(self):
        """Deterministic gate values (for inference)."""
        return tensor_like(self._model.deterministic_gates())

    def get_l0_penalty(self):
        """Expected number of open gates."""
        return self._model.l0_penalty()

    def state_dict(self):
        """Parameters, their Adam moments (``*_exp_avg``, ``*_exp_avg_sq``),
        the step count and the seed: float32 arrays exactly as the engine
        holds them; for a calibration fitted with ``min_weight_ratio`` or
        ``conserve_total``, also the weight bounds its reported weights are
        held to (``max_weight``, ``max_weight_ratio``, ``min_weight_ratio``,
        ``conserve_total``: numbers or None)."""
        return self._model.state_dict()

    def load_state_dict(self, state_dict):
        """Replace the trainable state with one from ``state_dict``: this
        package's (a fit then continues exactly as the saved model would
        have) or l0-python's, which holds only the parameters (``log_weight``
        or ``weight``, ``log_alpha``, ``bias``): then Adam starts fresh
        (zero moments, step 0, as the reference's every ``fit`` does) and
        the seed stays this model's. Values may be numpy arrays or torch
        tensors (read through ``.detach().cpu().numpy()``; torch is not
        imported)."""
        d = {k: v if k in _BOUND_KEYS else as_numpy(v) for k, v in dict(state_dict).items()}
        for k in ("step", "seed"):
            if k in d:
                d[k] = int(d[k])
        if self._PARAM in d and f"{self._PARAM}_exp_avg" not in d:
            d = self._fresh_adam(d)
        for k in ("bias", "bias_exp_avg", "bias_exp_avg_sq"):
            if k in d:
                d[k] = _one_number(d[k], k)
        self._model.load_state_dict(d)

    def _fresh_adam(self, d):
        """l0-python's state dict ``d`` (parameters only) with zero Adam
        moments, step 0 and this model's seed added."""
        d = dict(d)
        for name in (self._PARAM, "log_alpha"):
            if name in d:
                zeros = np.zeros(np.shape(d[name]), dtype=np.float32)
                d.setdefault(f"{name}_exp_avg", zeros)
                d.setdefault(f"{name}_exp_avg_sq", zeros.copy())
        if "bias" in d:
            d.setdefault("bias_exp_avg", 0.0)
            d.setdefault("bias_exp_avg_sq", 0.0)
        d.setdefault("step", 0)
        d.setdefault("seed", self.seed_in_use)
        return d

    def __getstate__(self):
        return {"init": self._init_args, "state": self.state_dict(), "report": self.fit_report_}

    def __setstate__(self, d):
        self.__init__(**d["init"])
        self.load_state_dict(d["state"])
        self.fit_report_ = d.get("report")

    def __repr__(self):
        return f"{type(self).__name__}(n_features={self.n_features}, device={self.device!r}, seed={self.seed_in_use})"


# The weight bounds a calibration's state_dict carries (numbers or None).
_BOUND_KEYS = ("max_weight", "max_weight_ratio", "min_weight_ratio", "conserve_total")


def _one_number(value, key):
    """A scalar state value (the reference keeps ``bias`` as a 1-element
    tensor) as a float; ``ValueError`` unless it holds exactly one number."""
    a = np.asarray(value)
    if a.size != 1:
        raise ValueError(f"state_dict['{key}']: expected one number, got shape {a.shape}")
    return float(a.reshape(-1)[0])
