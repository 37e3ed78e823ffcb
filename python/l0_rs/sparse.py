"""Sparse L0-regularized linear regression: l0-python's ``SparseL0Linear``
on the l0 engine.

``y ≈ X w + b`` with ``w_i = weight_i * gate_i``; ``X`` is a scipy.sparse
matrix (or a dense numpy array). The constructor and ``fit`` take the
reference's arguments; the reference README's ``fit(..., lambda_l0=...)``
and ``get_coefficients(threshold)``, which the reference package lacks,
work here too. Unlike the reference (whose ``fit`` redraws the
coefficients and restarts Adam), a second ``fit`` continues exactly where
the first stopped.
"""

from . import _native
from ._base import Model
from ._convert import as_matrix, as_vector, count as _count, per_column, resolve_device
from ._tensor import tensor_like

__all__ = ["SparseL0Linear"]


class SparseL0Linear(Model):
    """L0-regularized sparse linear regression.

    The reference's parameters (``n_features``, ``fit_intercept``,
    ``beta``, ``gamma``, ``zeta``, ``init_keep_prob``, ``device``,
    ``seed``), plus the engine's: ``init_coefficients`` (a number or one
    per feature; default random draws ``N(0, coef_init_sd^2)``),
    ``coef_init_sd`` (0.1, the reference's), ``log_alpha_jitter_sd`` (0.01)
    and ``test_gate`` ("temperature" or "paper").
    """

    _PARAM = "weight"

    def __init__(
        self,
        n_features,
        fit_intercept=True,
        beta=2 / 3,
        gamma=-0.1,
        zeta=1.1,
        init_keep_prob=0.5,
        device="cpu",
        seed=None,
        *,
        init_coefficients=None,
        coef_init_sd=0.1,
        log_alpha_jitter_sd=0.01,
        test_gate="temperature",
    ):
        self._keep(
            dict(
                n_features=n_features,
                fit_intercept=fit_intercept,
                beta=beta,
                gamma=gamma,
                zeta=zeta,
                init_keep_prob=init_keep_prob,
                device=device,
                seed=seed,
                init_coefficients=init_coefficients,
                coef_init_sd=coef_init_sd,
                log_alpha_jitter_sd=log_alpha_jitter_sd,
                test_gate=test_gate,
            )
        )
        self._model = _native.Regression(
            int(n_features),
            bool(fit_intercept),
            float(beta),
            float(gamma),
            float(zeta),
            per_column(init_keep_prob, n_features, "init_keep_prob"),
            None
            if init_coefficients is None
            else per_column(init_coefficients, n_features, "init_coefficients"),
            float(coef_init_sd),
            float(log_alpha_jitter_sd),
            seed,
            test_gate,
        )

    @property
    def weight(self):
        """The ungated coefficients (the reference's ``weight`` parameter)."""
        return tensor_like(self._model.raw_coefficients())

    @property
    def bias(self):
        """The intercept (None without one)."""
        return self._model.intercept()

    def fit(
        self,
        X_sparse,
        y,
        lambda_reg=0.01,
        lr=0.01,
        epochs=1000,
        verbose=False,
        verbose_freq=100,
        *,
        lambda_l0=None,
        lambda_l2=0.0,
        threads=None,
        device=None,
    ):
        """Fit by Adam, continuing from the current state; returns self.

        ``lambda_l0`` is another name for ``lambda_reg`` (the reference
        README uses it); ``lambda_l2`` adds ``lambda_l2 * sum(weight^2)``.
        The GIL is released while the engine runs; Ctrl-C stops after the
        current epoch, keeps that state and raises KeyboardInterrupt.
        """
        if lambda_l0 is not None and lambda_reg != 0.01 and lambda_l0 != lambda_reg:
            raise TypeError("give lambda_reg or lambda_l0, not both")
        lam = lambda_reg if lambda_l0 is None else lambda_l0
        self.fit_report_ = self._model.fit(
            as_matrix(X_sparse, "X_sparse"),
            as_vector(y, "y"),
            float(lam),
            float(lambda_l2),
            float(lr),
            _count(epochs, "epochs"),
            resolve_device(self.device if device is None else str(device)),
            None if threads is None else _count(threads, "threads"),
            _count(verbose_freq, "verbose_freq") if verbose else None,
            print if verbose else None,
        )
        return self

    def get_sparsity(self):
        """Fraction of deterministic gates below 0.01."""
        return self._model.sparsity()

    def get_selected_features(self, threshold=0.01):
        """Indices of the features whose deterministic gate exceeds ``threshold``."""
        return self._model.selected_features(float(threshold))

    def get_coefficients(self, threshold=0.01):
        """Coefficients times deterministic gates; exactly zero where the
        gate is below ``threshold``."""
        return tensor_like(self._model.coefficients(float(threshold)))

    def refit(self, X_sparse, y, threshold=0.01):
        """Ordinary least squares of ``y`` on the selected features (gate
        above ``threshold``; plus an intercept when the model has one),
        removing the shrinkage of the gated fit. Returns ``support``,
        ``coefficients`` (one per feature, zero off the support) and
        ``intercept``; the model is unchanged."""
        return self._model.refit(
            as_matrix(X_sparse, "X_sparse"), as_vector(y, "y"), float(threshold)
        )

    def get_weights(self, deterministic=True):
        """Gated coefficients: deterministic, or sampled with the next step's noise."""
        return tensor_like(self._model.weights(bool(deterministic)))

    def predict(self, X_sparse):
        """``X w + b`` with deterministic gates."""
        return tensor_like(self._model.predict(as_matrix(X_sparse, "X_sparse")))
