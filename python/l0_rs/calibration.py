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

import functools
import os
import socket
import warnings

import numpy as np

from . import _native, _ray
from ._base import Model
from ._convert import as_groups, as_matrix, as_vector, count as _count, per_column, resolve_device
from ._convert import warn_fallbacks
from ._tensor import tensor_like

__all__ = [
    "Refit",
    "SparseCalibrationWeights",
    "Sweep",
    "fit_to_budget",
    "holdout_targets",
    "lambda_grid",
    "sweep",
]


class SparseCalibrationWeights(Model):
    """L0-regularized calibration weights with positivity constraint.

    Parameters are l0-python's (``n_features``, ``beta``, ``gamma``,
    ``zeta``, ``init_keep_prob``, ``init_weights``, ``log_weight_jitter_sd``,
    ``log_alpha_jitter_sd``, ``device``, ``use_gates``, ``seed``), plus
    ``test_gate``: the deterministic gate of results, "temperature"
    (``sigmoid(log_alpha / beta)``, the reference's) or "paper"
    (``sigmoid(log_alpha)``).

    ``device`` is "cpu" (the default, as in the reference), "cuda",
    "cuda:N" or "auto" (the GPU when one can be used, else the CPU).
    "cuda" or "cuda:N" where that GPU cannot be used raises ``RuntimeError``
    at ``fit`` with the command line's message; "auto" is the way to fall
    back to the CPU.
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
        min_weight_ratio=None,
        conserve_total=None,
        target_tolerance=None,
        loss_cap=None,
        holdout_targets=None,
    ):
        """Fit the weights by Adam, continuing from the current state.

        The reference's arguments, plus: ``excluded_targets`` (target
        indices left out of the loss, still in the progress metrics),
        ``target_weights`` (a loss factor per target), ``max_weight`` and
        ``max_weight_ratio`` (caps the weights are held to),
        ``min_weight_ratio`` (every kept weight at least this times its
        initial weight; zeros stay allowed), ``conserve_total`` (the
        weights sum to this after every step and in the result; True: the
        sum of the initial weights),
        ``target_tolerance`` (a band around each target's relative error in
        which it costs nothing: a number, or one per target),
        ``loss_type="l1-relative"`` with ``loss_cap`` (the capped absolute
        relative error),
        ``holdout_targets`` (target indices left out of the loss and reported
        apart as validation: ``holdout_mean_rel_err`` and
        ``holdout_max_rel_err`` in ``fit_report_["last"]``; see
        :func:`holdout_targets` to draw them),
        ``threads`` (CPU threads; default all cores) and ``device`` (this
        fit only; default the model's). The GIL is released while the
        engine runs; Ctrl-C stops the fit after the current epoch, keeps
        that epoch's state in the model and raises KeyboardInterrupt.
        Returns self.
        """
        m = as_matrix(M, "M")
        y = as_vector(y, "y")
        opts = _fit_options(
            self,
            lambda_l0=lambda_l0,
            device=device,
            **_shared_options(locals()),
        )
        self.fit_report_ = self._model.fit(m, y, opts, print if verbose else None)
        for w in self.fit_report_["warnings"]:
            # The CLI's text, with fit's argument names.
            warnings.warn(w.removeprefix("warning: "), UserWarning, stacklevel=2)
        return self

    def refit(
        self,
        M,
        y,
        epochs=1000,
        lr=0.01,
        lambda_l2=0.0,
        loss_type="mse",
        verbose=False,
        verbose_freq=100,
        target_groups=None,
        normalize_groups=True,
        group_multipliers=None,
        *,
        excluded_targets=None,
        holdout_targets=None,
        threads=None,
        device=None,
        target_weights=None,
        max_weight=None,
        max_weight_ratio=None,
        min_weight_ratio=None,
        conserve_total=None,
        target_tolerance=None,
        loss_cap=None,
    ):
        """Select, then refit: keep the records with a non-zero
        deterministic weight, drop their gates and train only their weights
        for ``epochs`` epochs (``lambda_l0 = 0``), starting from the fitted
        weights with fresh Adam moments. Takes ``fit``'s options (give the
        same loss, groups, exclusions, holdout, target weights and caps as
        the fit). The dropped records stay exactly 0 and the active count
        cannot grow. This model is not changed; returns a :class:`Refit`.
        """
        m = as_matrix(M, "M")
        y = as_vector(y, "y")
        opts = _fit_options(
            self,
            lambda_l0=0.0,
            device=device,
            **_shared_options(locals()),
        )
        native, columns, report = self._model.refit(m, y, opts, print if verbose else None)
        if self.init_weights is None:
            design = np.ones(self.n_features)
        else:
            design = np.broadcast_to(np.asarray(self.init_weights, dtype=np.float64), (self.n_features,))
        sub = SparseCalibrationWeights(
            len(columns),
            beta=self.beta,
            gamma=self.gamma,
            zeta=self.zeta,
            init_keep_prob=0.5,
            init_weights=np.array(design[columns]),
            log_weight_jitter_sd=0.0,
            log_alpha_jitter_sd=0.0,
            device=self.device,
            use_gates=False,
            seed=self.seed_in_use,
            test_gate=self.test_gate,
        )
        sub._model = native
        sub.fit_report_ = report
        return Refit(sub, columns, self.n_features)

    def diagnostics(self, M):
        """How concentrated the deterministic weights are and who carries
        each target of ``M``, as a dict:

        - ``active`` (non-zero weights), ``ess`` (Kish's effective sample
          size ``(sum w)^2 / sum w^2``), ``design_effect`` (``active /
          ess``), ``max_weight``, ``top1pct_share`` (share of ``sum w``
          carried by the largest ``ceil(active / 100)`` weights);
        - ``quantiles``: the active weights' quantiles at
          ``quantile_levels`` (0, 1, 25, 50, 75, 99, 100%; numpy's linear
          interpolation);
        - per target (row of ``M``), with contributions ``c_i = M_qi w_i``:
          ``top_record`` (int64; the record with the largest positive
          ``c_i``, the lowest on a tie, -1 when none is positive),
          ``top_record_share`` (``c_top / sum_i c_i``, 0 when undefined) and
          ``records_contributing`` (int64; how many ``c_i`` are non-zero).

        With no active weight every figure is 0.
        """
        return self._model.diagnostics(as_matrix(M, "M"))

    def get_weights(self, deterministic=False):
        """Weights ``exp(log_weight) * gate``: deterministic gates, or gates
        sampled with the noise of the next training step."""
        return tensor_like(self._model.weights(bool(deterministic)))

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
        return tensor_like(self._model.predict(as_matrix(M, "M")))

    def save_checkpoint(self, path, M, y, target_groups=None):
        """Write the engine's checkpoint file (``l0 calibrate``'s
        ``checkpoint.l0ck`` format): the state, the seed and a fingerprint
        of the problem ``(M, y, target_groups)``."""
        self._model.save_checkpoint(
            str(path), as_matrix(M, "M"), as_vector(y, "y"), None if target_groups is None else as_groups(target_groups).tolist()
        )

    def load_checkpoint(self, path, M, y, target_groups=None):
        """Take the state and seed of a checkpoint file, written by
        :meth:`save_checkpoint` or by ``l0 calibrate --checkpoint-every``;
        ``ValueError`` when it was written for another problem. A fit then
        continues exactly as the saved run would have."""
        self._model.load_checkpoint(
            str(path), as_matrix(M, "M"), as_vector(y, "y"), None if target_groups is None else as_groups(target_groups).tolist()
        )
        return self

    def target_report(
        self,
        M,
        y,
        target_names=None,
        excluded_targets=None,
        csv_path=None,
        *,
        holdout_targets=None,
        target_tolerance=None,
    ):
        """Per-target outcome with deterministic weights, as ``l0 calibrate``
        reports it: ``estimate`` (``M w``) and ``rel_error``
        (``(estimate - y) / (y + 1)``) arrays, and over the targets not in
        ``excluded_targets``: ``included``, ``rel_loss`` (mean squared
        relative error), ``mean_abs_rel_err``, ``max_abs_rel_err`` and
        ``within`` (share of targets within 1, 5, 10 and 25%). ``csv_path``
        also writes the CLI's ``targets.csv`` there (names default to
        ``target_0``, ``target_1``, ...). Targets in ``holdout_targets`` are
        left out of those figures and summarized apart under ``holdout``
        (the same figures; None without a holdout). With ``target_tolerance``
        (as ``fit`` takes it), ``within_tolerance`` counts the targets in
        the loss inside their bands and targets.csv gains its column (None
        and no column without)."""
        return self._model.target_report(
            as_matrix(M, "M"),
            as_vector(y, "y"),
            None if target_names is None else [str(t) for t in target_names],
            _indices(excluded_targets, "excluded_targets"),
            _indices(holdout_targets, "holdout_targets"),
            None if csv_path is None else str(csv_path),
            None if target_tolerance is None else _tolerance(target_tolerance).tolist(),
        )


def _indices(v, what):
    """Target indices (a list, tuple or integer array) as a list of ints."""
    if v is None:
        return []
    return [_count(t, what) for t in np.asarray(v).ravel().tolist()]


# fit()'s options that refit, sweep and fit_to_budget take too (all but
# lambda_l0 and device, which each caller sets).
_SHARED_FIT_KEYS = (
    "lambda_l2",
    "lr",
    "epochs",
    "loss_type",
    "verbose",
    "verbose_freq",
    "target_groups",
    "normalize_groups",
    "group_multipliers",
    "excluded_targets",
    "holdout_targets",
    "threads",
    "target_weights",
    "max_weight",
    "max_weight_ratio",
    "min_weight_ratio",
    "conserve_total",
    "target_tolerance",
    "loss_cap",
)


def _shared_options(args):
    """The shared fit options among a caller's arguments (its ``locals()``)."""
    return {k: args[k] for k in _SHARED_FIT_KEYS}


def _batch_options(template, args, device=None):
    """The fit options of models trained in batches (``sweep``,
    ``fit_to_budget``) from the caller's arguments ``args``: ``lambda_l0``
    is set per model, and reports come every ``verbose_freq`` epochs even
    when quiet, since Ctrl-C is noticed at reports and a batch of models is
    one long call. ``device`` replaces the model's (None: the model's)."""
    opts = _fit_options(template, lambda_l0=0.0, device=device, **_shared_options(args))
    opts["report_every"] = _count(args["verbose_freq"], "verbose_freq")
    return opts


def _fit_options(
    model,
    *,
    lambda_l0,
    lambda_l2,
    lr,
    epochs,
    loss_type,
    verbose,
    verbose_freq,
    target_groups,
    normalize_groups,
    group_multipliers,
    excluded_targets,
    holdout_targets,
    threads,
    device,
    target_weights,
    max_weight,
    max_weight_ratio,
    min_weight_ratio,
    conserve_total,
    target_tolerance,
    loss_cap,
):
    """The engine's fit options (one key per field of the crate's
    ``FitParams``) from ``fit``'s arguments; prints the reference's
    ``Groups:`` line when verbose."""
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
    return dict(
        lambda_l0=float(lambda_l0),
        lambda_l2=float(lambda_l2),
        lr=float(lr),
        epochs=_count(epochs, "epochs"),
        loss=loss_type,
        target_groups=groups,
        normalize_groups=bool(normalize_groups),
        group_multipliers=mults,
        excluded_targets=_indices(excluded_targets, "excluded_targets"),
        holdout_targets=_indices(holdout_targets, "holdout_targets"),
        device=resolve_device(model.device if device is None else str(device)),
        threads=None if threads is None else _count(threads, "threads"),
        report_every=_count(verbose_freq, "verbose_freq") if verbose else None,
        target_weights=None if target_weights is None else as_vector(target_weights, "target_weights"),
        max_weight=None if max_weight is None else float(max_weight),
        max_weight_ratio=None if max_weight_ratio is None else float(max_weight_ratio),
        min_weight_ratio=None if min_weight_ratio is None else float(min_weight_ratio),
        conserve_total=_conserved_total(model, conserve_total),
        target_tolerance=None if target_tolerance is None else _tolerance(target_tolerance),
        loss_cap=None if loss_cap is None else float(loss_cap),
    )


def _conserved_total(model, total):
    """``conserve_total``: None (off), True (the sum of the model's initial
    weights) or the total."""
    if total is None or (isinstance(total, (bool, np.bool_)) and not total):
        return None
    if isinstance(total, (bool, np.bool_)):
        # Summed by the engine, in its order, as the command line sums it.
        return model._model.design_total()
    return float(total)


def _tolerance(t):
    """``target_tolerance``: a number for every target, or one per target."""
    if np.ndim(t) == 0:
        return as_vector([float(t)], "target_tolerance")
    return as_vector(t, "target_tolerance")


class Refit:
    """The result of :meth:`SparseCalibrationWeights.refit`.

    ``columns``: the kept records (int64, ascending); ``model``: a
    gate-free ``SparseCalibrationWeights`` over those columns (column ``k``
    is record ``columns[k]``; it can be fitted further, saved, pickled);
    ``fit_report_``: the refit's report; ``n_features``: records of the
    full matrix.
    """

    def __init__(self, model, columns, n_features):
        self.model = model
        self.columns = columns
        self.n_features = int(n_features)

    @property
    def fit_report_(self):
        return self.model.fit_report_

    def get_weights(self, deterministic=True):
        """The refit weights over all ``n_features`` records: exactly 0 for
        every record the L0 fit dropped."""
        w = np.zeros(self.n_features)
        w[self.columns] = self.model.get_weights(deterministic=deterministic)
        return tensor_like(w)

    def get_active_weights(self):
        """``{"indices", "values", "count"}`` of the non-zero refit weights
        (indices into the full matrix)."""
        w = self.get_weights()
        idx = np.flatnonzero(w)
        return {"indices": idx.astype(np.int64), "values": w[idx], "count": int(idx.size)}

    def get_sparsity(self):
        """Fraction of the full matrix's records with weight 0."""
        return float(np.mean(self.get_weights() == 0.0)) if self.n_features else 0.0

    def predict(self, M):
        """``M w`` with the refit weights (``M`` over all records)."""
        return _native.mul_vec(as_matrix(M, "M"), self.get_weights())

    def __repr__(self):
        return f"Refit(kept {len(self.columns)} of {self.n_features} records)"


_METRICS = (
    "total_loss",
    "data_loss",
    "l0_penalty",
    "mean_rel_err",
    "max_rel_err",
    "mean_group_rel_err",
    "holdout_mean_rel_err",
    "holdout_max_rel_err",
    "sparsity",
)


class Sweep:
    """The result of :func:`sweep`: one fitted model per ``lambda_l0``.

    ``lambdas`` (float64 array), ``models`` (list of
    ``SparseCalibrationWeights``; ``sweep[k]`` is ``models[k]``),
    ``reports`` (each model's ``fit_report_``), ``weights`` (K x n
    float64 array of deterministic weights) and ``metrics``: a dict of
    K-long arrays, one row per λ, from each fit's last progress report:
    ``lambda_l0``, ``active`` (int64), ``sparsity``, ``total_loss``,
    ``data_loss``, ``l0_penalty``, ``mean_rel_err``, ``max_rel_err``,
    ``mean_group_rel_err``, ``holdout_mean_rel_err``,
    ``holdout_max_rel_err`` (NaN where a figure does not apply), ``epochs``
    (int64) and ``seconds``. ``pandas.DataFrame(sweep.metrics)`` makes a
    table of it.

    ``batches``: None for a sweep trained in one call; with
    ``checkpoint_dir`` or ``executor="ray"``, one dict per batch:
    ``batch`` (its index), ``lambdas``, ``checkpoint_dir`` (its folder, or
    None), ``resumed_from`` (the epoch of the checkpoint it resumed from,
    None when it started afresh), ``pid`` and ``host`` (the process that
    finished it). ``resumed``: ``{batch: epoch}`` of the batches that
    resumed.
    """

    def __init__(self, lambdas, models, reports, batches=None):
        self.lambdas = np.asarray(lambdas, dtype=np.float64)
        self.models = list(models)
        self.reports = list(reports)
        self.batches = batches

    @property
    def resumed(self):
        return {
            b["batch"]: b["resumed_from"]
            for b in self.batches or ()
            if b["resumed_from"] is not None
        }

    @property
    def weights(self):
        if not self.models:
            return np.zeros((0, 0))
        return np.stack([m.get_weights(deterministic=True) for m in self.models])

    @property
    def metrics(self):
        out = {"lambda_l0": self.lambdas.copy()}
        last = [r["last"] or {} for r in self.reports]
        out["active"] = np.array([p.get("active", -1) for p in last], dtype=np.int64)
        for key in _METRICS:
            out[key] = np.array(
                [np.nan if p.get(key) is None else p[key] for p in last], dtype=np.float64
            )
        out["epochs"] = np.array([r["epochs"] for r in self.reports], dtype=np.int64)
        out["seconds"] = np.array([r["seconds"] for r in self.reports], dtype=np.float64)
        return out

    def __len__(self):
        return len(self.models)

    def __getitem__(self, k):
        return self.models[k]

    def __iter__(self):
        return iter(self.models)

    def __repr__(self):
        return f"Sweep({len(self.models)} models, lambda_l0 from {self.lambdas.min()} to {self.lambdas.max()})"


def sweep(
    M,
    y,
    lambdas,
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
    holdout_targets=None,
    threads=None,
    target_weights=None,
    max_weight=None,
    max_weight_ratio=None,
    min_weight_ratio=None,
    conserve_total=None,
    target_tolerance=None,
    loss_cap=None,
    executor="local",
    checkpoint_dir=None,
    checkpoint_every=100,
    batch_size=8,
    on_checkpoint=None,
    ray_options=None,
    **model_args,
):
    """Fit one ``SparseCalibrationWeights`` per L0 strength in ``lambdas``,
    all from the same initial state, seed and options: model ``k`` is
    exactly ``SparseCalibrationWeights(M.shape[1], **model_args).fit(M, y,
    lambda_l0=lambdas[k], ...)`` with the seed in use.

    ``model_args`` are the constructor's (``beta``, ``gamma``, ``zeta``,
    ``init_keep_prob``, ``init_weights``, ``log_weight_jitter_sd``,
    ``log_alpha_jitter_sd``, ``device``, ``use_gates``, ``seed``,
    ``test_gate``); with ``seed=None`` one seed is drawn and shared by all
    models. The other arguments are ``fit``'s. The GIL is released while
    the models train (together, one pass over the matrix per epoch for all
    of them, on the CPU and on a GPU); Ctrl-C is noticed at progress reports (every
    ``verbose_freq`` epochs, printed only when verbose) and discards the
    sweep. Returns a :class:`Sweep`.

    The λ values train in batches of ``batch_size`` (1 to 8) consecutive
    values, each batch in one pass. ``executor="ray"`` runs each batch as a
    Ray task on the connected cluster (``M`` put in the object store once;
    ``num_gpus=1`` per task when ``device`` is "cuda" or "cuda:N", which
    then means the GPU Ray assigns; ``num_cpus`` = ``threads``, else 1;
    ``ray_options``, a dict for Ray's ``.options()``, overrides these and
    ``max_retries=3``); it needs ``pip install 'l0-rs[ray]'``. With
    ``checkpoint_dir`` (a folder every task can reach), each batch saves its
    models in ``checkpoint_dir/batch-NNN/`` every ``checkpoint_every``
    epochs, and a batch run again (a retried task, or the same sweep
    called again) resumes from its last checkpoint; a folder of another
    sweep is refused with ``ValueError``. ``on_checkpoint(batch, step)`` is
    called after each checkpoint, in the process that trains the batch
    (with Ray a worker: it must pickle). Every way gives the local
    sweep's models and metrics bit for bit (``seconds`` aside);
    ``Sweep.batches`` says which batch resumed from which epoch.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray":
        _ray.require_ray()
    elif ray_options is not None:
        raise ValueError("ray_options needs executor='ray'")
    if on_checkpoint is not None and checkpoint_dir is None:
        raise ValueError("on_checkpoint needs a checkpoint_dir")
    m = as_matrix(M, "M")
    y = as_vector(y, "y")
    lambdas = [float(v) for v in np.asarray(lambdas, dtype=np.float64).ravel()]
    template = SparseCalibrationWeights(m.shape[1], **model_args)
    if executor == "local" and checkpoint_dir is None:
        opts = _batch_options(template, locals())
        out = _native.sweep(template._model, m, y, opts, lambdas, print if verbose else None)
        models = [_trained(template, native, report) for _, native, report in out]
        warn_fallbacks(model.fit_report_["fallback"] for model in models)
        return Sweep(lambdas, models, [model.fit_report_ for model in models])
    # The options are checked here; each batch resolves the device where it runs.
    _batch_options(template, locals(), device="cpu")
    every = _count(checkpoint_every, "checkpoint_every")
    if every < 1:
        raise ValueError("checkpoint_every must be at least 1, got 0")
    size = _count(batch_size, "batch_size")
    if not 1 <= size <= 8:
        raise ValueError(f"batch_size must be from 1 to 8, got {size}")
    device = str(template.device)
    gpu = executor == "ray" and (device == "cuda" or device.startswith("cuda:"))
    fit_args = _shared_options(locals())
    jobs = [
        dict(
            y=y,
            lambdas=lambdas[first : first + size],
            fit_args=fit_args,
            model_args=dict(
                template._init_args,
                seed=template.seed_in_use,
                device="cuda" if gpu else device,
            ),
            checkpoint_dir=None
            if checkpoint_dir is None
            else os.path.join(os.fspath(checkpoint_dir), f"batch-{first // size:03d}"),
            checkpoint_every=every,
            on_checkpoint=None
            if on_checkpoint is None
            else functools.partial(on_checkpoint, first // size),
        )
        for first in range(0, len(lambdas), size)
    ]
    if executor == "ray":
        if isinstance(M, _native.Matrix):
            raise TypeError(
                "executor='ray' needs M as a scipy.sparse matrix or a numpy array "
                "(it goes to the object store; an l0_rs.Matrix does not pickle)"
            )
        options = _ray.task_options(gpu, threads, ray_options)
        done = _ray.run_batches(_run_batch, M, jobs, options)
    else:
        done = [_run_batch(m, **job) for job in jobs]
    batches = [dict(batch=b, **report) for b, (report, _) in enumerate(done)]
    models = [model for _, trained in done for model in trained]
    warn_fallbacks(model.fit_report_["fallback"] for model in models)
    return Sweep(lambdas, models, [model.fit_report_ for model in models], batches)


def _run_batch(M, y, lambdas, fit_args, model_args, checkpoint_dir, checkpoint_every, on_checkpoint):
    """One batch of a :func:`sweep` in this process (a Ray task's body):
    the models of ``lambdas`` trained together, checkpointed in
    ``checkpoint_dir`` every ``checkpoint_every`` epochs and resumed from
    its last checkpoint when there is one (``on_checkpoint(step)`` called
    after each). Returns ``(report, models)``: the batch's ``lambdas``,
    ``checkpoint_dir``, ``resumed_from`` (None for a fresh start), ``pid``
    and ``host``, and its trained ``SparseCalibrationWeights``."""
    m = as_matrix(M, "M")
    template = SparseCalibrationWeights(**model_args)
    opts = _batch_options(template, fit_args)
    printer = print if fit_args["verbose"] else None
    if checkpoint_dir is None:
        resumed = 0
        out = _native.sweep(template._model, m, y, opts, lambdas, printer)
    else:
        resumed, out = _native.sweep_batch(
            template._model, m, y, opts, lambdas, checkpoint_dir, checkpoint_every, printer, on_checkpoint
        )
    report = dict(
        lambdas=list(lambdas),
        checkpoint_dir=checkpoint_dir,
        resumed_from=resumed or None,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    return report, [_trained(template, native, r) for _, native, r in out]


def _trained(template, native, report):
    """A ``SparseCalibrationWeights`` built as ``template`` (with its seed
    in use) holding the trained native model and its fit report."""
    model = SparseCalibrationWeights(**dict(template._init_args, seed=template.seed_in_use))
    model._model = native
    model.fit_report_ = report
    return model


def fit_to_budget(
    M,
    y,
    target_records,
    records_tolerance=0.05,
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
    holdout_targets=None,
    threads=None,
    target_weights=None,
    max_weight=None,
    max_weight_ratio=None,
    min_weight_ratio=None,
    conserve_total=None,
    target_tolerance=None,
    loss_cap=None,
    lambda_range=(1e-9, 1e-1),
    **model_args,
):
    """Search the ``lambda_l0`` whose model keeps ``target_records`` records
    (non-zero deterministic weights) within ``records_tolerance`` (met when
    ``|active - K| <= records_tolerance * K``), as ``l0 calibrate
    --target-records K`` does (the library's ``l0::budget::fit_to_budget``):
    a batch of 9 short models (5% of the epochs) over ``lambda_l0`` in
    ``lambda_range`` (log-spaced; default 1e-9..1e-1, the CLI's) locates K;
    8 models over that interval train together to 10% of the epochs, the 4
    nearest where K is expected go on to 40% and the nearest of those to
    the full length (continued exactly, never restarted); when it is not
    within the tolerance, one more full-length model is placed where the
    counts are expected to cross K, while the estimated cost stays within
    3 fits. When the 8 models' counts have not settled by 10% (at the λ
    where their 5% counts cross K, the 10% count is more than 2x off K),
    the slow schedule runs instead: 20% and 60%, within 3.5 fits
    (``report["settled"]`` says which). Each batch trains its models
    together.

    ``model_args`` are the constructor's (with ``seed=None`` one seed is
    drawn and shared by all models; ``use_gates`` must stay True); the other
    arguments are ``fit``'s (``epochs`` is the length of a full fit). The
    GIL is released while the models train; Ctrl-C is noticed at progress
    reports (every ``verbose_freq`` epochs, printed only when verbose) and
    discards the search.

    Returns ``(model, report)``: ``model`` is the full-length fit whose
    count is nearest K, bit for bit
    ``SparseCalibrationWeights(M.shape[1], **model_args).fit(M, y,
    lambda_l0=report["lambda_l0"], ...)`` with the seed in use (its
    ``fit_report_`` is that fit's); ``report`` is a dict: ``lambda_l0``,
    ``active``, ``met``, ``target_records``, ``tolerance``,
    ``models_trained``, ``epochs_total``, ``fits`` (``epochs_total /
    epochs``, the cost in single fits of models trained one after another),
    ``batches`` (each ``stage`` "bracket", "narrow", "continue" or
    "refine", ``models``, ``epochs``: models at the same step trained
    together for that many more epochs), ``passes`` (the batches' epochs
    over ``epochs``: the cost in passes over the matrix when a batch trains
    in one pass), ``cost_fits`` (the estimated cost in fits of the batches
    trained together), ``settled`` (True when the counts had settled by
    the first drop and the fast schedule ran, False for the slow one, None
    when no decision was made), ``seconds``, ``shortfall`` (None when met, else one
    line naming the nearest count reached, also issued as a
    ``RuntimeWarning``) and ``trials`` (every model at the end of every
    batch it was in: ``stage``, ``lambda_l0``, ``epochs`` it had trained
    in all, ``active``). A budget
    not met is not an error. ``target_records`` of 0 or above the columns,
    or a tolerance outside (0, 1), raises ``ValueError``.
    """
    m = as_matrix(M, "M")
    y = as_vector(y, "y")
    k = _count(target_records, "target_records")
    template = SparseCalibrationWeights(m.shape[1], **model_args)
    opts = _batch_options(template, locals())
    native, fit_report, report = _native.fit_to_budget(
        template._model,
        m,
        y,
        opts,
        k,
        float(records_tolerance),
        (float(lambda_range[0]), float(lambda_range[1])),
        print if verbose else None,
    )
    model = _trained(template, native, fit_report)
    warn_fallbacks(report["fallbacks"])
    if report["shortfall"] is not None:
        warnings.warn(f"fit_to_budget: {report['shortfall']}", RuntimeWarning, stacklevel=2)
    return model, report


def lambda_grid(lo, hi, n):
    """``n`` L0 strengths from ``lo`` to ``hi`` (both included), evenly
    spaced in log scale, as a float64 array (``0 < lo <= hi``)."""
    return np.array(_native.lambda_grid(float(lo), float(hi), _count(n, "n")))


def holdout_targets(n_targets, target_groups=None, *, groups=None, fraction=None, seed=0):
    """Draw the targets to hold out of a fit, as sorted int64 indices for
    ``fit(..., holdout_targets=...)``: every target whose id in
    ``target_groups`` is in ``groups``, or a share ``fraction`` (in (0, 1))
    of the targets drawn at random within each group of ``target_groups``
    (of all targets without groups), keyed by ``seed``. Give ``groups`` or
    ``fraction``. Refuses a holdout of no target or of every target."""
    tg = None if target_groups is None else as_groups(target_groups)
    ids = None if groups is None else [int(g) for g in np.asarray(groups).ravel().tolist()]
    return _native.holdout_targets(
        _count(n_targets, "n_targets"),
        tg,
        ids,
        None if fraction is None else float(fraction),
        _count(seed, "seed"),
    )
