"""What the two model classes share: their constructor arguments (kept as
attributes, as the reference keeps them, and for pickling), the results
both models have, the state and pickling."""

from . import _native


class Model:
    """Base of ``SparseCalibrationWeights`` and ``SparseL0Linear``; the
    subclass builds ``self._model`` (the engine's model) after ``_keep``."""

    def _keep(self, init_args):
        self._init_args = dict(init_args)
        for name, value in init_args.items():
            setattr(self, name, value)
        self.device = str(self.device)
        _native.check_device(self.device)
        #: The report of the last ``fit``: device, epochs run, seconds, and
        #: the metrics of its last progress report (``last``, with the
        #: reference's progress line under ``line``).
        self.fit_report_ = None

    @property
    def seed_in_use(self):
        """The seed of every random draw (the given one, or the one drawn)."""
        return self._model.seed

    def get_deterministic_gates(self):
        """Deterministic gate values (for inference)."""
        return self._model.deterministic_gates()

    def get_l0_penalty(self):
        """Expected number of open gates."""
        return self._model.l0_penalty()

    def state_dict(self):
        """Parameters, their Adam moments (``*_exp_avg``, ``*_exp_avg_sq``),
        the step count and the seed: float32 arrays exactly as the engine
        holds them."""
        return self._model.state_dict()

    def load_state_dict(self, state_dict):
        """Replace the trainable state with one from ``state_dict``; a fit
        then continues exactly as the saved model would have."""
        self._model.load_state_dict(dict(state_dict))

    def __getstate__(self):
        return {"init": self._init_args, "state": self.state_dict(), "report": self.fit_report_}

    def __setstate__(self, d):
        self.__init__(**d["init"])
        self.load_state_dict(d["state"])
        self.fit_report_ = d.get("report")

    def __repr__(self):
        return f"{type(self).__name__}(n_features={self.n_features}, device={self.device!r}, seed={self.seed_in_use})"
