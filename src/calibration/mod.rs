//! Sparse calibration weights: the model of l0-python's
//! `SparseCalibrationWeights`, with its configuration, fit loop driver,
//! progress metrics and results.
//!
//! Find `w >= 0`, mostly exactly zero, with `M w ≈ y`: each record `i` has a
//! log-weight `p_i` and a gate logit `a_i`, `w_i = exp(p_i) z_i` (see
//! [`crate::hard_concrete`] for the gate and its gradients). The data loss is
//!
//! ```text
//! L_data = sum_q g_q ((y_q - yhat_q) / d_q)^2,   yhat = M w
//! d_q = y_q + 1 (loss "relative") or 1 ("mse")
//! g_q = 1 without groups; 1/|group(q)| with groups and normalisation
//!       (else 1), times the group's multiplier
//! L   = L_data + lambda_l0 L0 + lambda_l2 L2
//! ```
//!
//! minimised by Adam over both vectors. Unlike the reference, the Adam state
//! belongs to the model: a second [`Calibration::fit`] continues exactly
//! where the first stopped (and the log-weight jitter is applied only before
//! the very first step).
//!
//! The files: `params.rs` (the options), `targets.rs` (loss weights, roles,
//! caps) and `progress.rs` (metrics and observers); the model is here.

mod params;
mod progress;
mod targets;

pub use crate::model::Init;
pub use params::{CalibrationParams, FitParams, Loss};
pub use progress::{CalibrationObserver, Progress, ProgressObserver, TargetMetrics};
pub use targets::{
    check_target_lists, rel_scale, target_roles, target_weights, weight_caps, weight_floors,
    TargetRole, TargetWeights,
};

use crate::backend::{make_backend, BatchBackends, ColumnBounds, Hyper, ParamState, Problem};
use crate::batch::{self, Apart, BatchFit, ProgressPerModel, Together};
use crate::constraints::{check_conflicts, floor_bounds, ReportBounds, TotalMiss};
use crate::engine::{self, Snapshot};
use crate::error::{check_finite, check_finite_scalar, L0Error, Result};
use crate::hard_concrete::Magnitude;
use crate::matrix::SparseMatrix;
use crate::model;
use crate::naming::Naming;
use progress::Adapter;
use std::time::Instant;
use targets::{check_target_left, log_weight_bound};

/// The outcome of one calibration fit.
pub type FitReport = model::FitReport<Progress>;

/// The nonzero deterministic weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveWeights {
    /// Column indices.
    pub indices: Vec<usize>,
    /// Their weights.
    pub values: Vec<f64>,
    /// How many.
    pub count: usize,
}

/// L0-regularized non-negative calibration weights.
#[derive(Clone, Debug)]
pub struct Calibration {
    params: CalibrationParams,
    seed: u64,
    state: ParamState,
    /// The weight bounds of the last fit (or [`Calibration::set_weight_bounds`])
    /// and what they hold the reported weights to ([`crate::constraints`]);
    /// nothing before a fit.
    bound_options: WeightBounds,
    bounds: ReportBounds,
}

/// The options that hold a model's reported weights: the caps, the kept
/// records' lower bound and the conserved total ([`FitParams`]' fields of
/// those names). A fit sets them; a model's saved state carries them
/// ([`Calibration::weight_bounds`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WeightBounds {
    /// [`FitParams::max_weight`].
    pub max_weight: Option<f64>,
    /// [`FitParams::max_weight_ratio`].
    pub max_weight_ratio: Option<f64>,
    /// [`FitParams::min_weight_ratio`].
    pub min_weight_ratio: Option<f64>,
    /// [`FitParams::conserve_total`].
    pub conserve_total: Option<f64>,
}

impl WeightBounds {
    /// Those of `opts`.
    pub fn of(opts: &FitParams) -> Self {
        WeightBounds {
            max_weight: opts.max_weight,
            max_weight_ratio: opts.max_weight_ratio,
            min_weight_ratio: opts.min_weight_ratio,
            conserve_total: opts.conserve_total,
        }
    }

    /// Whether they hold the reported weights beyond the training's own
    /// (a lower bound or a total).
    pub fn hold_reports(&self) -> bool {
        self.min_weight_ratio.is_some() || self.conserve_total.is_some()
    }
}

/// Seed stream of the log-weight jitter, derived from the model seed.
const LOG_WEIGHT_STREAM: u64 = 0x6c6f_675f_7765_6967;

impl Calibration {
    /// A model for `n_features` columns (records).
    pub fn new(n_features: usize, params: CalibrationParams) -> Result<Self> {
        if n_features == 0 {
            return Err(L0Error::config("n_features must be at least 1"));
        }
        crate::limits::check_columns(n_features)?;
        params.gate.check()?;
        for (name, v) in [
            ("log_weight_jitter_sd", params.log_weight_jitter_sd),
            ("log_alpha_jitter_sd", params.log_alpha_jitter_sd),
        ] {
            check_finite_scalar(name, v)?;
            if v < 0.0 {
                return Err(L0Error::config(format!("{name} must be >= 0, got {v}")));
            }
        }
        let seed = params.seed.unwrap_or_else(rand::random);
        let w = match &params.init_weights {
            None => vec![1.0; n_features],
            Some(init) => model::expand(init, n_features, "init_weights")?,
        };
        if let Some(k) = w.iter().position(|&v| v < 0.0) {
            return Err(L0Error::config(format!(
                "init_weights must be >= 0, got {} at column {k}",
                w[k]
            )));
        }
        if let Some(k) = w.iter().position(|&v| !(v as f32).is_finite()) {
            return Err(L0Error::config(format!(
                "init_weights must fit in f32, got {} at column {k}",
                w[k]
            )));
        }
        let p: Vec<f32> = w.iter().map(|&v| ((v as f32) + 1e-8).ln()).collect();
        let a = model::initial_log_alpha(
            &params.init_keep_prob,
            n_features,
            params.log_alpha_jitter_sd,
            seed,
        )?;
        Ok(Calibration {
            params,
            seed,
            state: ParamState::new(p, a, None),
            bound_options: WeightBounds::default(),
            bounds: ReportBounds::default(),
        })
    }

    /// The model options.
    pub fn params(&self) -> &CalibrationParams {
        &self.params
    }

    /// The seed in use (drawn at construction when none was given).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.state.len()
    }

    /// The full trainable state (parameters, Adam moments, step counter).
    pub fn state(&self) -> &ParamState {
        &self.state
    }

    /// Replaces the trainable state (e.g. from a checkpoint).
    pub fn set_state(&mut self, state: ParamState) -> Result<()> {
        state.validate(self.n_features(), "log_weight", false)?;
        self.state = state;
        Ok(())
    }

    fn hyper(&self, opts: &FitParams) -> Hyper {
        let g = &self.params.gate;
        Hyper {
            beta: g.beta,
            gamma: g.gamma,
            zeta: g.zeta,
            lambda_l0: opts.lambda_l0,
            lambda_l2: opts.lambda_l2,
            lr: opts.lr,
            magnitude: Magnitude::Exp,
            use_gates: self.params.use_gates,
            fit_intercept: false,
            seed: self.seed,
        }
    }

    /// Fits to `M w ≈ y`, continuing from the current state.
    pub fn fit(&mut self, m: &SparseMatrix, y: &[f64], opts: &FitParams) -> Result<FitReport> {
        self.fit_with(m, y, opts, &mut |_| Ok(()))
    }

    /// Like [`Calibration::fit`], calling `on_progress` every
    /// `opts.report_every` epochs and after the last.
    pub fn fit_with(
        &mut self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        on_progress: &mut dyn FnMut(&Progress) -> Result<()>,
    ) -> Result<FitReport> {
        let mut obs = ProgressObserver::new(y, opts, self.n_features(), on_progress)?;
        self.fit_observed(m, y, opts, &mut obs)
    }

    /// The general form: any [`Observer`](crate::engine::Observer) (progress, checkpoints).
    pub fn fit_observed(
        &mut self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        observer: &mut dyn CalibrationObserver,
    ) -> Result<FitReport> {
        self.fit_in_room(m, y, opts, observer, Room::Check)
    }

    /// [`Calibration::fit_observed`], checking the bounds' room or not
    /// ([`Room`]).
    fn fit_in_room(
        &mut self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        observer: &mut dyn CalibrationObserver,
        room: Room,
    ) -> Result<FitReport> {
        let inputs = self.fit_inputs(m, y, opts, room)?;
        let problem = inputs.problem(m, y, self.hyper(opts));
        let mut backend = make_backend(opts.device, opts.threads, problem)?;
        let device = backend.describe();
        let jitter = self.jitter(opts)?;
        let start = self.state.clone();
        (self.bound_options, self.bounds) = (WeightBounds::of(opts), inputs.report.clone());
        let mut state = Self::start_state(start, jitter.as_deref(), problem.bounds());
        let start = Instant::now();
        let mut adapter = Adapter {
            inner: observer,
            hyper: problem.hyper,
            last: None,
        };
        let epochs = engine::train(
            backend.as_mut(),
            &mut state,
            opts.epochs,
            self.params.test_gate,
            &mut adapter,
        )?;
        let last = adapter.last.take();
        self.state = state;
        Ok(FitReport {
            device,
            epochs,
            seconds: start.elapsed().as_secs_f64(),
            last,
            fallback: None,
        })
    }

    /// Fits `models[k]` with `lambda_l0 = lambdas[k]` and otherwise `opts`,
    /// all together in one pass over the matrix per epoch when the device
    /// can ([`crate::backend::make_batch_backend`]: the CPU, a GPU), else one after
    /// another; either way model `k` ends exactly as
    /// `models[k].fit_with(m, y, &FitParams { lambda_l0: lambdas[k], ..opts })`
    /// would leave it. Together needs the models to share their options
    /// and seed and be at the same step (a λ sweep's models are); others
    /// are fitted one after another. More than [`crate::limits::MAX_BATCH`] models
    /// train in batches of that many. The states of a batch are moved into
    /// the backend, not copied: on error a model keeps its state, with the
    /// start jitter and cap projection applied when the fit applies them. Calls `on_progress(k, progress)` at
    /// each model's reports; returns each model's report (`seconds` is the
    /// batch's time, shared).
    pub fn fit_together(
        models: &mut [&mut Calibration],
        lambdas: &[f64],
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
    ) -> Result<Vec<FitReport>> {
        batch::check_one_per_model(models.len(), lambdas.len())?;
        let Some(first) = models.first() else {
            return Ok(Vec::new());
        };
        let prepared = first.prepare(m, y, opts)?;
        let mut backends = prepared.backends(m, y, opts);
        Self::fit_together_on(models, lambdas, &prepared, &mut backends, opts, on_progress)
    }

    /// [`Calibration::fit_together`] on inputs checked once (`prepared`,
    /// [`Calibration::prepare`]) and a backend kept between calls
    /// (`backends`, [`Prepared::backends`]): every batch of models like the
    /// prepared one takes over the kept backend where the device allows
    /// ([`crate::backend::BatchBackends`]). Models unlike it train one after
    /// another.
    pub(crate) fn fit_together_on(
        models: &mut [&mut Calibration],
        lambdas: &[f64],
        prepared: &Prepared,
        backends: &mut BatchBackends<'_>,
        opts: &FitParams,
        on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
    ) -> Result<Vec<FitReport>> {
        for m in models.iter_mut() {
            m.bound_options = WeightBounds::of(opts);
            m.bounds = prepared.inputs.report.clone();
        }
        let mut job = TogetherJob {
            prepared,
            backends,
            opts,
            on_progress,
        };
        batch::fit_together(models, lambdas, &mut job)
    }

    /// Checks the options and the problem of a fit of models like this one
    /// (its options and seed) once, for [`Calibration::fit_together_on`].
    pub(crate) fn prepare(
        &self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
    ) -> Result<Prepared> {
        Ok(Prepared {
            inputs: self.fit_inputs(m, y, opts, Room::Check)?,
            params: self.params.clone(),
            hyper: self.hyper(opts),
        })
    }

    /// Checks the options and the problem, and builds the per-target loss
    /// weights and the weight bounds of a fit: the caps' and the lower
    /// bounds' log-weight bounds, the weight floors and the total
    /// ([`crate::constraints`]).
    fn fit_inputs(
        &self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        room: Room,
    ) -> Result<FitInputs> {
        opts.check(self.params.use_gates)?;
        self.check_problem(m, y)?;
        let tw = target_weights(y, opts)?;
        check_target_left(m, &tw.weight)?;
        let design = self.design_weights()?;
        let caps = weight_caps(opts, &design, self.params.use_gates)?;
        let floors = weight_floors(opts, &design);
        let total = opts.conserve_total;
        if room == Room::Check {
            check_conflicts(floors.as_deref(), caps.as_deref(), total, Naming::Python)?;
        }
        let max_p = caps
            .as_ref()
            .map(|c| c.iter().map(|&c| log_weight_bound(c)).collect());
        let (floor, min_p) = floors
            .as_ref()
            .map(|f| f.iter().map(|&lo| floor_bounds(lo)).unzip())
            .unzip();
        let report = ReportBounds::new(floors, caps, total);
        Ok(FitInputs {
            tw,
            max_p,
            min_p,
            floor,
            total,
            report,
        })
    }

    /// The weight bounds the reported weights are held to (those of the
    /// last fit, or set).
    pub fn weight_bounds(&self) -> WeightBounds {
        self.bound_options
    }

    /// Holds the reported weights to `b` from now on, as a fit with those
    /// options would (for a model restored from a saved state; a fit sets
    /// its own). Refuses values its checks refuse.
    pub fn set_weight_bounds(&mut self, b: WeightBounds) -> Result<()> {
        let opts = FitParams {
            max_weight: b.max_weight,
            max_weight_ratio: b.max_weight_ratio,
            min_weight_ratio: b.min_weight_ratio,
            conserve_total: b.conserve_total,
            ..FitParams::default()
        };
        opts.check_bounds(self.params.use_gates, Naming::Python)?;
        let design = self.design_weights()?;
        self.bounds = ReportBounds::new(
            weight_floors(&opts, &design),
            weight_caps(&opts, &design, self.params.use_gates)?,
            b.conserve_total,
        );
        self.bound_options = b;
        Ok(())
    }

    /// The sum of this model's design weights (`init_weights`, 1 each when
    /// unset): the default of a conserved total
    /// ([`FitParams::conserve_total`]).
    pub fn design_total(&self) -> Result<f64> {
        Ok(self.design_weights()?.iter().sum())
    }

    /// With a conserved total the bounds of the last fit do not let the
    /// kept records reach: by how much the reported weights miss it.
    pub fn total_miss(&self) -> Option<TotalMiss> {
        let mut w = self.raw_weights(true);
        self.bounds.apply(&mut w)
    }

    /// The initial log-weight jitter a fit of `opts` adds to this model's
    /// state: on a fresh model with `log_weight_jitter_sd > 0`, else None.
    /// Models with one seed and options draw the same, so a batch draws it
    /// once.
    fn jitter(&self, opts: &FitParams) -> Result<Option<Vec<f64>>> {
        let sd = self.params.log_weight_jitter_sd;
        if self.state.step > 0 || sd <= 0.0 || opts.epochs == 0 {
            return Ok(None);
        }
        model::normal_draws(self.seed, LOG_WEIGHT_STREAM, sd, self.state.len()).map(Some)
    }

    /// The state a fit starts from: `state` (the model's), with the initial
    /// log-weight `jitter` ([`Calibration::jitter`]) added and `p` held to
    /// its `bounds` (the weight caps and lower bounds).
    fn start_state(
        mut state: ParamState,
        jitter: Option<&[f64]>,
        bounds: ColumnBounds,
    ) -> ParamState {
        if let Some(j) = jitter {
            state.p.iter_mut().zip(j).for_each(|(p, j)| *p += *j as f32);
        }
        if bounds.min_p.is_some() || bounds.max_p.is_some() {
            for (i, p) in state.p.iter_mut().enumerate() {
                *p = bounds.clamp_p(i, *p);
            }
        }
        state
    }

    fn check_problem(&self, m: &SparseMatrix, y: &[f64]) -> Result<()> {
        if m.cols() != self.n_features() {
            return Err(L0Error::shape(
                "matrix columns (one per weight)",
                self.n_features(),
                m.cols(),
            ));
        }
        if y.len() != m.rows() {
            return Err(L0Error::shape(
                "y (one target per matrix row)",
                m.rows(),
                y.len(),
            ));
        }
        check_finite("y", y)
    }

    fn rule(&self) -> crate::hard_concrete::ColumnRule<f32> {
        self.hyper(&FitParams::default()).rule()
    }

    /// Deterministic (test-time) gates.
    pub fn deterministic_gates(&self) -> Vec<f64> {
        let g = self.rule().gate;
        self.state
            .a
            .iter()
            .map(|&a| g.deterministic(a, self.params.test_gate) as f64)
            .collect()
    }

    /// Deterministic weights (`deterministic`) or weights with gates sampled
    /// with the noise of the next step. The deterministic ones are held to
    /// the last fit's lower bounds and conserved total, in f64
    /// ([`ReportBounds::apply`]): every kept weight at least its bound, and
    /// their sum the total to f64 rounding (unless out of reach,
    /// [`Calibration::total_miss`]).
    pub fn weights(&self, deterministic: bool) -> Vec<f64> {
        let mut w = self.raw_weights(deterministic);
        if deterministic && self.bounds.is_active() {
            self.bounds.apply(&mut w);
        }
        w
    }

    /// [`Calibration::weights`] as the parameters give them, before the
    /// f64 projection.
    fn raw_weights(&self, deterministic: bool) -> Vec<f64> {
        model::weights(
            &self.state,
            &self.rule(),
            self.seed,
            deterministic,
            self.params.test_gate,
        )
    }

    /// Expected number of open gates, `sum_i sigmoid(a_i - beta ln(-gamma/zeta))`.
    pub fn l0_penalty(&self) -> f64 {
        model::penalties(&self.state, &self.rule()).0
    }

    /// `sum_i exp(p_i)^2`.
    pub fn l2_penalty(&self) -> f64 {
        model::penalties(&self.state, &self.rule()).1
    }

    /// Share of deterministic gates that are exactly zero.
    pub fn sparsity(&self) -> f64 {
        let g = self.deterministic_gates();
        g.iter().filter(|&&z| z == 0.0).count() as f64 / g.len() as f64
    }

    /// The nonzero deterministic weights.
    pub fn active_weights(&self) -> ActiveWeights {
        let (indices, values): (Vec<usize>, Vec<f64>) = self
            .weights(true)
            .into_iter()
            .enumerate()
            .filter(|(_, w)| *w > 0.0)
            .unzip();
        ActiveWeights {
            count: indices.len(),
            indices,
            values,
        }
    }

    /// `M w` with deterministic weights.
    pub fn predict(&self, m: &SparseMatrix) -> Result<Vec<f64>> {
        m.mul_vec(&self.weights(true))
    }

    /// The record weights' caps under `opts` ([`weight_caps`]; None: no
    /// cap), from this model's design weights.
    pub fn caps(&self, opts: &FitParams) -> Result<Option<Vec<f64>>> {
        weight_caps(opts, &self.design_weights()?, self.params.use_gates)
    }

    /// This model's design weights, `init_weights` (1 when unset).
    fn design_weights(&self) -> Result<Vec<f64>> {
        self.params.design_weights(self.n_features())
    }

    /// Select, then refit: keeps the records with a non-zero deterministic
    /// weight, drops their gates and trains only their weights for `epochs`
    /// epochs under `opts` with `lambda_l0 = 0` (the same loss, groups,
    /// exclusions, holdout, target weights and caps), starting from the L0
    /// weights: `p_k = ln w_k` and fresh Adam moments. The dropped records
    /// stay exactly zero and, as a weight without a gate is `exp(p) > 0`,
    /// the active count cannot grow. Needs at least one active record.
    ///
    /// A refit never worsens its start (the L0 weights, held to the caps
    /// when `opts` sets any): it keeps the best iterate. Without
    /// gates its loss has no noise, so the loss it minimises
    /// ([`Calibration::deterministic_loss`], in f64 on the host) is
    /// evaluated at the start, every [`REFIT_CHECK_EVERY`] epochs and at
    /// the end, and the returned model holds the state (parameters, Adam
    /// moments, step) with the lowest ([`Refit::best_epoch`]; the latest
    /// on a tie). Why not a step rule that guarantees descent: Adam with
    /// fresh moments takes a first step of about `lr` in every log-weight
    /// (15% of each weight at lr 0.15), which can leave a start that was
    /// already good far behind; a line search would need a loss per step
    /// in every backend's fused update, where keeping the best needs only
    /// the checkpoints the fit loop already hands out, costs one host
    /// product per check and leaves the training path as it is.
    pub fn refit(
        &self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        epochs: u64,
    ) -> Result<Refit> {
        self.refit_with(m, y, opts, epochs, &mut |_| Ok(()))
    }

    /// Like [`Calibration::refit`], calling `on_progress` every
    /// `opts.report_every` epochs and after the last.
    pub fn refit_with(
        &self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        epochs: u64,
        on_progress: &mut dyn FnMut(&Progress) -> Result<()>,
    ) -> Result<Refit> {
        self.check_problem(m, y)?;
        let kept = self.active_weights();
        if kept.count == 0 {
            return Err(L0Error::config(
                "refit needs at least one record with a non-zero weight, and the L0 fit kept none",
            ));
        }
        let design = self.design_weights()?;
        let params = CalibrationParams {
            init_keep_prob: Init::Scalar(0.5),
            init_weights: Some(Init::PerColumn(
                kept.indices.iter().map(|&i| design[i]).collect(),
            )),
            log_weight_jitter_sd: 0.0,
            log_alpha_jitter_sd: 0.0,
            use_gates: false,
            seed: Some(self.seed),
            ..self.params.clone()
        };
        let mut model = Calibration::new(kept.count, params)?;
        let p = kept.values.iter().map(|&w| (w as f32).ln()).collect();
        let a = model.state.a.clone();
        model.set_state(ParamState::new(p, a, None))?;
        let sub = m.select_columns(&kept.indices)?;
        let opts = FitParams {
            lambda_l0: 0.0,
            epochs,
            ..opts.clone()
        };
        // The start is the L0 weights held to the caps, as the fit would
        // begin from them (no jitter: its sd is 0).
        // The kept records may not reach the fit's total within their
        // bounds: the refit then ends with them at their bounds (and says
        // so, [`Calibration::total_miss`]) instead of failing after the fit.
        let inputs = model.fit_inputs(&sub, y, &opts, Room::Skip)?;
        let bounds = inputs.problem(&sub, y, model.hyper(&opts)).bounds();
        model.state = Self::start_state(model.state, None, bounds);
        (model.bound_options, model.bounds) = (WeightBounds::of(&opts), inputs.report.clone());
        let start_loss = model.deterministic_loss(&sub, y, &opts)?;
        let mut progress = ProgressObserver::new(y, &opts, kept.count, on_progress)?;
        let mut best = KeepBest {
            inner: &mut progress,
            probe: model.clone(),
            m: &sub,
            y,
            opts: &opts,
            best: (start_loss, model.state.clone()),
        };
        let report = model.fit_in_room(&sub, y, &opts, &mut best, Room::Skip)?;
        let (mut loss, best_state) = best.best;
        let end_loss = model.deterministic_loss(&sub, y, &opts)?;
        if end_loss <= loss {
            loss = end_loss;
        } else {
            model.state = best_state;
        }
        Ok(Refit {
            columns: kept.indices,
            n: self.n_features(),
            best_epoch: model.state.step,
            start_loss,
            loss,
            model,
            report,
        })
    }

    /// The loss of this model's deterministic weights `w` on `m`, `y`
    /// under `opts`, in f64: `sum_q g_q ((y_q - (M w)_q) / d_q)^2`
    /// ([`target_weights`]) plus `lambda_l0` times the expected open gates
    /// and (when positive) `lambda_l2` times `sum_i exp(p_i)^2`, the terms
    /// of the training loss. For a model without gates (a refit's) this is
    /// exactly the loss training minimises; with gates, training sees
    /// sampled gates instead.
    pub fn deterministic_loss(&self, m: &SparseMatrix, y: &[f64], opts: &FitParams) -> Result<f64> {
        self.check_problem(m, y)?;
        let tw = target_weights(y, opts)?;
        let yhat = self.predict(m)?;
        let data: f64 = (0..y.len()).map(|q| tw.term(q, y[q], yhat[q]).0).sum();
        let (l0, l2) = model::penalties(&self.state, &self.rule());
        let losses = crate::backend::Losses { data, l0, l2 };
        Ok(losses.total(&self.hyper(opts)))
    }

    /// How concentrated the deterministic weights are and who carries each
    /// target of `m` ([`crate::diagnostics`]).
    pub fn diagnostics(&self, m: &SparseMatrix) -> Result<crate::diagnostics::Diagnostics> {
        if m.cols() != self.n_features() {
            return Err(L0Error::shape(
                "matrix columns (one per weight)",
                self.n_features(),
                m.cols(),
            ));
        }
        Ok(crate::diagnostics::Diagnostics::of(
            m,
            &self.weights(true),
            crate::par::Par::current(),
        ))
    }
}

/// A gate-free model over the records an L0 fit kept
/// ([`Calibration::refit`]).
#[derive(Clone, Debug)]
pub struct Refit {
    /// The kept columns of the full matrix, ascending.
    pub columns: Vec<usize>,
    /// Columns of the full matrix.
    pub n: usize,
    /// The model over the kept columns (column `k` is `columns[k]`).
    pub model: Calibration,
    /// The refit's training run (its `last` progress is that of the last
    /// epoch, which the model holds only when `best_epoch` is that epoch).
    pub report: FitReport,
    /// The refit's step whose state the model holds: the one with the
    /// lowest [`Calibration::deterministic_loss`] among the start (0), every
    /// [`REFIT_CHECK_EVERY`]-th step and the last.
    pub best_epoch: u64,
    /// The loss at the start (the L0 fit's weights, held to the caps).
    pub start_loss: f64,
    /// The loss of the model returned: at most `start_loss`.
    pub loss: f64,
}

/// How often, in epochs, a refit evaluates its loss to keep the best
/// iterate ([`Calibration::refit`]).
pub const REFIT_CHECK_EVERY: u64 = 10;

/// The observer of a refit: passes everything on to `inner` and keeps the
/// state with the lowest deterministic loss among the checkpoints it asks
/// for every [`REFIT_CHECK_EVERY`] epochs.
struct KeepBest<'o, 'a> {
    inner: &'o mut dyn CalibrationObserver,
    /// A copy of the model, whose state each checkpoint replaces to
    /// evaluate its loss.
    probe: Calibration,
    m: &'a SparseMatrix,
    y: &'a [f64],
    opts: &'a FitParams,
    /// The lowest loss so far and its state.
    best: (f64, ParamState),
}

impl CalibrationObserver for KeepBest<'_, '_> {
    fn report_every(&self) -> Option<u64> {
        self.inner.report_every()
    }
    fn snapshot(&mut self, s: &Snapshot) -> Result<()> {
        self.inner.snapshot(s)
    }
    fn progress(&mut self, p: &Progress) -> Result<()> {
        self.inner.progress(p)
    }
    fn checkpoint_every(&self) -> Option<u64> {
        Some(REFIT_CHECK_EVERY)
    }
    fn checkpoint(&mut self, state: &ParamState) -> Result<()> {
        self.probe.state.clone_from(state);
        let loss = self.probe.deterministic_loss(self.m, self.y, self.opts)?;
        if loss <= self.best.0 {
            self.best = (loss, state.clone());
        }
        Ok(())
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.inner.summarize(s, total_loss)
    }
    fn stop_requested(&mut self) -> bool {
        self.inner.stop_requested()
    }
}

impl Refit {
    /// The refit weights over all columns of the full matrix: exactly 0
    /// for every record the L0 fit dropped.
    pub fn weights(&self) -> Vec<f64> {
        let mut w = vec![0.0; self.n];
        for (&c, v) in self.columns.iter().zip(self.model.weights(true)) {
            w[c] = v;
        }
        w
    }
}

batch::impl_batchable!(Calibration, CalibrationParams);

/// Whether a fit refuses weight bounds that leave no room for its total
/// ([`check_conflicts`]): every fit does, but a refit, whose kept records
/// are the L0 fit's outcome, trains to the nearest it can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Room {
    Check,
    Skip,
}

/// A fit's per-target loss weights and weight bounds
/// ([`Calibration::fit_inputs`]).
struct FitInputs {
    tw: TargetWeights,
    max_p: Option<Vec<f32>>,
    min_p: Option<Vec<f32>>,
    floor: Option<Vec<f32>>,
    total: Option<f64>,
    /// What the reported weights are held to.
    report: ReportBounds,
}

/// The checked inputs of fits of models with one set of options and seed
/// ([`Calibration::prepare`]), kept for the batches of a search.
pub(crate) struct Prepared {
    inputs: FitInputs,
    params: CalibrationParams,
    /// The models' hyperparameters (the seed among them).
    hyper: Hyper,
}

impl Prepared {
    /// No backend yet, for batches of these models on `m` and `y` with the
    /// device and threads of `opts`.
    pub(crate) fn backends<'a>(
        &'a self,
        m: &'a SparseMatrix,
        y: &'a [f64],
        opts: &FitParams,
    ) -> BatchBackends<'a> {
        BatchBackends::new(
            opts.device,
            opts.threads,
            self.inputs.problem(m, y, self.hyper),
        )
    }

    /// Whether `c` fitted with `opts` is a model these inputs were checked for.
    fn takes(&self, c: &Calibration, opts: &FitParams) -> bool {
        c.params == self.params && c.hyper(opts) == self.hyper
    }
}

impl FitInputs {
    /// The backend's problem for matrix `m`, targets `y` and `hyper`.
    fn problem<'a>(&'a self, m: &'a SparseMatrix, y: &'a [f64], hyper: Hyper) -> Problem<'a> {
        Problem {
            max_p: self.max_p.as_deref(),
            min_p: self.min_p.as_deref(),
            floor: self.floor.as_deref(),
            total: self.total,
            band: self.tw.band.as_deref(),
            shape: self.tw.shape,
            ..Problem::new(m, y, &self.tw.weight, &self.tw.denom, hyper)
        }
    }
}

/// A calibration's side of [`Calibration::fit_together_on`].
struct TogetherJob<'j, 'b> {
    prepared: &'j Prepared,
    backends: &'j mut BatchBackends<'b>,
    opts: &'j FitParams,
    on_progress: &'j mut dyn FnMut(usize, &Progress) -> Result<()>,
}

impl BatchFit<Calibration> for TogetherJob<'_, '_> {
    type Progress = Progress;

    fn fit_alone(&mut self, k: usize, c: &mut Calibration, lambda_l0: f64) -> Result<FitReport> {
        let opts = FitParams {
            lambda_l0,
            ..self.opts.clone()
        };
        let (m, y) = (
            self.backends.problem().matrix,
            self.backends.problem().targets,
        );
        c.fit_with(m, y, &opts, &mut |p| (self.on_progress)(k, p))
    }

    fn together<'s>(
        &'s mut self,
        first: usize,
        models: &[&mut Calibration],
        lambdas: &[f64],
    ) -> Result<std::result::Result<Together<'s, Progress>, Apart>> {
        let (prepared, opts) = (self.prepared, self.opts);
        let together = batch::batchable(models, lambdas)? || models.len() == 1;
        if !together || !models.iter().all(|c| prepared.takes(c, opts)) {
            return Ok(Err(Some(format!(
                "the {} models differ in seed, options or step, so they train one after another",
                models.len()
            ))));
        }
        let y = self.backends.problem().targets;
        let backend = match self.backends.get(lambdas)? {
            Ok(b) => b,
            Err(why) => return Ok(Err(Some(why))),
        };
        let model = &models[0];
        let jitter = model.jitter(opts)?;
        let bounds = ColumnBounds {
            min_p: prepared.inputs.min_p.as_deref(),
            max_p: prepared.inputs.max_p.as_deref(),
            floor: prepared.inputs.floor.as_deref(),
        };
        let metrics = TargetMetrics::new(y, opts)?;
        let n = model.n_features();
        let on_progress = &mut *self.on_progress;
        let observer = ProgressPerModel::new(
            opts.report_every,
            batch::hypers(prepared.hyper, lambdas),
            move |s, total_loss| metrics.progress(s, total_loss, n),
            move |k, p| on_progress(first + k, p),
        );
        Ok(Ok(Together {
            backend,
            start: Box::new(move |s| Calibration::start_state(s, jitter.as_deref(), bounds)),
            epochs: opts.epochs,
            test_gate: model.params.test_gate,
            observer,
        }))
    }
}
