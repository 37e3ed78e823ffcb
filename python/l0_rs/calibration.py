"""L0-regularized calibration weights: l0-python's
``SparseCalibrationWeights`` on the l0 engine.

Find non-negative weights ``w``, mostly exactly zero, with ``M w ≈ y``
(``M``: targets x records). Same constructor and ``fit`` arguments as
l0-python 0.6.2; arrays come back as numpy float64 arrays instead of torch
tensors. Unlike the reference, the Adam state belongs to the model: a
second ``fit`` continues exactly where the first stopped (the log-weight
jitter is applied only before the very first step), and ``state_dict``
holds the Adam moments and step, so a reloaded model continues bit for bit.
"""

import numpy as np

from . import _native
from ._base import Model
from ._convert import as_groups, as_matrix, as_vector, count as _count, per_column, resolve_device

__all__ = ["SparseCalibrationWeights"]


class SparseCalibrationWeights(Model):
    """L0-regularized calibration weights with positivity constraint.

    Parameters are l0-python's (``n_features``, ``beta``, ``gamma``,
    ``zeta``, ``init_keep_prob``, ``init_weights``, ``log_weight_jitter_sd``,
    ``log_alpha_jitter_sd``, ``device``, ``use_gates``, ``seed``), plus
    ``test_gate``: the deterministic gate of results, "temperature"
    (``sigmoid(log_alpha / beta)``, the reference's) or "paper"
    (``sigmoid(log_alpha)``).

    ``device`` is "cpu" (the default, as in the reference), "cuda",
    "cuda:N" or "auto" (the GPU when one can be used, else the CPU). Plain
    "cuda" on a machine where CUDA cannot be used runs on the CPU with a
    warning (so scripts written for a GPU still run); "cuda:N" is an error
    there.
    ``seed=None`` draws a seed, kept in the model (``seed_in_use``) and in
    its ``state_dict``.
    """

    def __init__(
        self,
        n_features,
        beta=2 / 3,
        gamma=-0.1,
        zeta=1.1,
        init_keep_prob=0.5,
        init_weights=None,
        log_weight_jitter_sd=0.0,
        log_alpha_jitter_sd=0.01,
        device="cpu",
        use_gates=True,
        seed=None,
        *,
        test_gate="temperature",
    ):
        self._keep(
            dict(
                n_features=n_features,
                beta=beta,
                gamma=gamma,
                zeta=zeta,
                init_keep_prob=init_keep_prob,
                init_weights=init_weights,
                log_weight_jitter_sd=log_weight_jitter_sd,
                log_alpha_jitter_sd=log_alpha_jitter_sd,
                device=device,
                use_gates=use_gates,
                seed=seed,
                test_gate=test_gate,
            )
        )
        self._model = _native.Calibration(
            int(n_features),
            float(beta),
            float(gamma),
            float(zeta),
            per_column(init_keep_prob, n_features, "init_keep_prob"),
            None
            if init_weights is None
            else per_column(init_weights, n_features, "init_weights"),
            float(log_weight_jitter_sd),
            float(log_alpha_jitter_sd),
            bool(use_gates),
            seed,
            test_gate,
        )

    def fit(
        self,
        M,
        y,
        lambda_l0=0.01,
        lambda_l2=0.0,
        lr=0.01,
        epochs=1000,
        loss_type="mse",
        verbose=False,
        verbose_freq=100,
        target_groups=None,
        normalize_groups=True,
        group_multipliers=None,
        *,
        excluded_targets=None,
        threads=None,
        device=None,
        target_weights=None,
        max_weight=None,
        max_weight_ratio=None,
    ):
        """Fit the weights by Adam, continuing from the current state.

        The reference's arguments, plus: ``excluded_targets`` (target
        indices left out of the loss, still in the progress metrics),
        ``target_weights`` (a loss factor per target), ``max_weight`` and
        ``max_weight_ratio`` (caps the weights are held to),
        ``threads`` (CPU threads; default all cores) and ``device`` (this
        fit only; default the model's). The GIL is released while the
        engine runs; Ctrl-C stops the fit after the current epoch, keeps
        that epoch's state in the model and raises KeyboardInterrupt.
        Returns self.
        """
        m = as_matrix(M, "M")
        y = as_vector(y, "y")
        if group_multipliers is not None and target_groups is None:
            raise ValueError("group_multipliers requires target_groups to be set")
        groups = None if target_groups is None else as_groups(target_groups)
        mults = {}
        for gid, mult in (group_multipliers or {}).items():
            mults[int(gid)] = float(mult)
        if verbose:
            if groups is not None:
                parts = [f"{len(np.unique(groups))} groups"]
                parts.append(f"normalize={'on' if normalize_groups else 'off'}")
                if group_multipliers is not None:
                    parts.append(f"multipliers={group_multipliers}")
                print(f"Groups: {', '.join(parts)}")
            else:
                print("Groups: none (uniform weights)")
        self.fit_report_ = self._model.fit(
            m,
            y,
            float(lambda_l0),
            float(lambda_l2),
            float(lr),
            _count(epochs, "epochs"),
            loss_type,
            groups,
            bool(normalize_groups),
            mults,
            [_count(t, "excluded_targets") for t in (excluded_targets or [])],
            resolve_device(self.device if device is None else str(device)),
            None if threads is None else _count(threads, "threads"),
            _count(verbose_freq, "verbose_freq") if verbose else None,
            print if verbose else None,
            None if target_weights is None else as_vector(target_weights, "target_weights"),
            None if max_weight is None else float(max_weight),
            None if max_weight_ratio is None else float(max_weight_ratio),
        )
        return self

    def get_weights(self, deterministic=False):
        """Weights ``exp(log_weight) * gate``: deterministic gates, or gates
        sampled with the noise of the next training step."""
        return self._model.weights(bool(deterministic))

    def get_l2_penalty(self):
        """Sum of squared positive weights ``exp(log_weight)^2``."""
        return self._model.l2_penalty()

    def get_sparsity(self):
        """Fraction of deterministic gates that are exactly zero."""
        return self._model.sparsity()

    def get_active_weights(self):
        """``{"indices", "values", "count"}`` of the nonzero deterministic weights."""
        return self._model.active_weights()

    def predict(self, M):
        """``M w`` with deterministic weights."""
        return self._model.predict(as_matrix(M, "M"))

    def target_report(self, M, y, target_names=None, excluded_targets=None, csv_path=None):
        """Per-target outcome with deterministic weights, as ``l0 calibrate``
        reports it: ``estimate`` (``M w``) and ``rel_error``
        (``(estimate - y) / (y + 1)``) arrays, and over the targets not in
        ``excluded_targets``: ``included``, ``rel_loss`` (mean squared
        relative error), ``mean_abs_rel_err``, ``max_abs_rel_err`` and
        ``within`` (share of targets within 1, 5, 10 and 25%). ``csv_path``
        also writes the CLI's ``targets.csv`` there (names default to
        ``target_0``, ``target_1``, ...)."""
        return self._model.target_report(
            as_matrix(M, "M"),
            as_vector(y, "y"),
            None if target_names is None else [str(t) for t in target_names],
            [_count(t, "excluded_targets") for t in (excluded_targets or [])],
            None if csv_path is None else str(csv_path),
        )

