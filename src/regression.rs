//! Sparse linear regression: the model of l0-python's `SparseL0Linear`, with
//! its configuration, fit driver, results, a lambda path scored by an
//! information criterion or on a validation split and a least-squares refit
//! of the selected support.
//!
//! Feature `i` has a coefficient `p_i` of either sign and a gate logit `a_i`;
//! the weight is `w_i = p_i z_i` with `z_i` a Hard Concrete gate (see
//! [`crate::hard_concrete`], `Magnitude::Linear`). With an optional intercept
//! `b`, the loss over `n` samples is
//!
//! ```text
//! yhat = X w + b
//! L    = (1/n) sum_q (y_q - yhat_q)^2 + lambda_l0 L0 + lambda_l2 sum_i p_i^2
//! ```
//!
//! i.e. the calibration loss with `g_q = 1/n` and `d_q = 1`, minimised by
//! Adam over `p`, `a` and `b` through the same fit loop ([`crate::engine`]).
//!
//! Initialisation: `p ~ N(0, 0.1^2)` and `a = logit(init_keep_prob) +
//! N(0, 0.01^2)`, both drawn from the model seed at construction; the
//! intercept is set to `mean(y)` before the first Adam step. Unlike the
//! reference (whose `fit` redraws the coefficients and restarts Adam), the
//! state belongs to the model: a second [`Regression::fit`] continues
//! exactly where the first stopped.
//!
//! Results use deterministic gates ([`TestGate::Temperature`],
//! `sigmoid(a / beta)`, as the reference; or [`TestGate::Paper`],
//! `sigmoid(a)`). The reference README promises `get_coefficients(threshold)`
//! and a `lambda_l0` argument that the package lacks; both are here
//! ([`Regression::coefficients`], [`RegressionFitParams::lambda_l0`]).
//!
//! Model selection over a lambda path, least-squares refits and splicing:
//! [`crate::selection`].

use crate::backend::{
    make_backend, make_batch_backend, Backend, Device, Hyper, ParamState, Problem,
};
use crate::batch::{self, Apart, BatchFit, ProgressPerModel, Together};
use crate::engine::{self, Snapshot};
use crate::error::{check_finite, L0Error, Result};
use crate::hard_concrete::{ColumnRule, GateParams, Magnitude, TestGate};
use crate::matrix::SparseMatrix;
use crate::model::{self, Init};
use std::fmt;
use std::time::Instant;

/// Seed stream of the initial coefficients, derived from the model seed.
const COEF_STREAM: u64 = 0x636f_6566_5f69_6e69;

/// Model options (the reference's constructor arguments).
///
/// | field | default | valid |
/// |---|---|---|
/// | `gate.beta` | 2/3 | > 0 |
/// | `gate.gamma` | -0.1 | < 0 |
/// | `gate.zeta` | 1.1 | > 1 |
/// | `fit_intercept` | true | |
/// | `init_keep_prob` | 0.5 | scalar in (0, 1); array in [0, 1], clipped to [1e-6, 1-1e-6] |
/// | `init_coefficients` | None (draws `N(0, coef_init_sd^2)`) | finite |
/// | `coef_init_sd` | 0.1 | >= 0 |
/// | `log_alpha_jitter_sd` | 0.01 | >= 0 |
/// | `seed` | None (drawn, then kept in the model) | |
/// | `test_gate` | temperature | temperature, paper |
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionParams {
    /// Gate distribution.
    pub gate: GateParams,
    /// Whether a scalar intercept is fitted (initialised to `mean(y)`).
    pub fit_intercept: bool,
    /// Initial probability that each gate is open.
    pub init_keep_prob: Init,
    /// Initial coefficients (None: random draws).
    pub init_coefficients: Option<Init>,
    /// Standard deviation of the random initial coefficients.
    pub coef_init_sd: f64,
    /// Standard deviation of the noise added to the gate logits at construction.
    pub log_alpha_jitter_sd: f64,
    /// Seed of every random draw (initial values and gate noise).
    pub seed: Option<u64>,
    /// Deterministic gate used for results and reports.
    pub test_gate: TestGate,
}

impl Default for RegressionParams {
    fn default() -> Self {
        RegressionParams {
            gate: GateParams::default(),
            fit_intercept: true,
            init_keep_prob: Init::Scalar(0.5),
            init_coefficients: None,
            coef_init_sd: 0.1,
            log_alpha_jitter_sd: 0.01,
            seed: None,
            test_gate: TestGate::Temperature,
        }
    }
}

/// Fit options (the reference's `fit` arguments, plus where to run).
///
/// | field | default | valid |
/// |---|---|---|
/// | `lambda_l0` | 0.01 | >= 0 |
/// | `lambda_l2` | 0 | >= 0 |
/// | `lr` | 0.01 | > 0 |
/// | `epochs` | 1000 | 0 is a no-op |
/// | `device` | auto | auto, cpu, cuda:N |
/// | `threads` | all cores | >= 1 |
/// | `report_every` | None (last epoch only) | >= 1 |
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionFitParams {
    /// L0 strength (the reference's `lambda_reg`).
    pub lambda_l0: f64,
    /// L2 strength on the coefficients.
    pub lambda_l2: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Epochs to run.
    pub epochs: u64,
    /// Where to run.
    pub device: Device,
    /// CPU threads.
    pub threads: Option<usize>,
    /// Progress every this many epochs.
    pub report_every: Option<u64>,
}

impl Default for RegressionFitParams {
    fn default() -> Self {
        RegressionFitParams {
            lambda_l0: 0.01,
            lambda_l2: 0.0,
            lr: 0.01,
            epochs: 1000,
            device: Device::Auto,
            threads: None,
            report_every: None,
        }
    }
}

impl RegressionFitParams {
    fn check(&self) -> Result<()> {
        model::check_lr(self.lr)?;
        model::check_non_negative("lambda_l0", self.lambda_l0)?;
        model::check_non_negative("lambda_l2", self.lambda_l2)?;
        if self.report_every == Some(0) {
            return Err(L0Error::config("report_every must be at least 1"));
        }
        Ok(())
    }
}

/// Progress of a fit, as the reference prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionProgress {
    /// 1-based epoch within this fit.
    pub epoch: u64,
    /// Epochs of this fit.
    pub epochs: u64,
    /// The epoch's total (stochastic) loss.
    pub total_loss: f64,
    /// Its mean squared error (sampled gates).
    pub mse: f64,
    /// Its L0 penalty (expected open gates).
    pub l0_penalty: f64,
    /// Mean squared error with deterministic gates after the update.
    pub deterministic_mse: f64,
    /// Nonzero deterministic coefficients.
    pub active: u64,
    /// Features.
    pub n: usize,
}

impl fmt::Display for RegressionProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Epoch {:4}: loss={:.4}, mse={:.4}, l0={:.2}, active={}",
            self.epoch, self.total_loss, self.mse, self.l0_penalty, self.active
        )
    }
}

/// The outcome of one regression fit.
pub type RegressionReport = model::FitReport<RegressionProgress>;

/// L0-regularized linear regression.
#[derive(Clone, Debug)]
pub struct Regression {
    params: RegressionParams,
    seed: u64,
    state: ParamState,
}

impl Regression {
    /// A model for `n_features` features.
    pub fn new(n_features: usize, params: RegressionParams) -> Result<Self> {
        if n_features == 0 {
            return Err(L0Error::config("n_features must be at least 1"));
        }
        crate::limits::check_columns(n_features)?;
        params.gate.check()?;
        model::check_non_negative("coef_init_sd", params.coef_init_sd)?;
        model::check_non_negative("log_alpha_jitter_sd", params.log_alpha_jitter_sd)?;
        let seed = params.seed.unwrap_or_else(rand::random);
        let p: Vec<f32> = match &params.init_coefficients {
            Some(init) => model::expand(init, n_features, "init_coefficients")?,
            None if params.coef_init_sd > 0.0 => {
                model::normal_draws(seed, COEF_STREAM, params.coef_init_sd, n_features)?
            }
            None => vec![0.0; n_features],
        }
        .into_iter()
        .map(|v| v as f32)
        .collect();
        let a = model::initial_log_alpha(
            &params.init_keep_prob,
            n_features,
            params.log_alpha_jitter_sd,
            seed,
        )?;
        let intercept = params.fit_intercept.then_some(0.0);
        Ok(Regression {
            params,
            seed,
            state: ParamState::new(p, a, intercept),
        })
    }

    /// The model options.
    pub fn params(&self) -> &RegressionParams {
        &self.params
    }

    /// The seed in use (drawn at construction when none was given).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.state.len()
    }

    /// The full trainable state (parameters, Adam moments, step counter).
    pub fn state(&self) -> &ParamState {
        &self.state
    }

    /// Replaces the trainable state (e.g. from a checkpoint).
    pub fn set_state(&mut self, state: ParamState) -> Result<()> {
        state.validate(self.n_features(), "coefficients", self.params.fit_intercept)?;
        self.state = state;
        Ok(())
    }

    fn hyper(&self, opts: &RegressionFitParams) -> Hyper {
        let g = &self.params.gate;
        Hyper {
            beta: g.beta,
            gamma: g.gamma,
            zeta: g.zeta,
            lambda_l0: opts.lambda_l0,
            lambda_l2: opts.lambda_l2,
            lr: opts.lr,
            magnitude: Magnitude::Linear,
            use_gates: true,
            fit_intercept: self.params.fit_intercept,
            seed: self.seed,
        }
    }

    fn rule(&self) -> ColumnRule<f32> {
        self.hyper(&RegressionFitParams::default()).rule()
    }

    /// Fits `X w + b ≈ y`, continuing from the current state.
    pub fn fit(
        &mut self,
        x: &SparseMatrix,
        y: &[f64],
        opts: &RegressionFitParams,
    ) -> Result<RegressionReport> {
        self.fit_with(x, y, opts, &mut |_| Ok(()))
    }

    /// [`Regression::fit`] on a dense row-major `X` with `y.len()` rows,
    /// converted once to the sparse layouts.
    pub fn fit_dense(
        &mut self,
        x: &[f64],
        y: &[f64],
        opts: &RegressionFitParams,
    ) -> Result<RegressionReport> {
        let m = SparseMatrix::from_dense(y.len(), self.n_features(), x)?;
        self.fit(&m, y, opts)
    }

    /// Like [`Regression::fit`], calling `on_progress` every
    /// `opts.report_every` epochs and after the last.
    pub fn fit_with(
        &mut self,
        x: &SparseMatrix,
        y: &[f64],
        opts: &RegressionFitParams,
        on_progress: &mut dyn FnMut(&RegressionProgress) -> Result<()>,
    ) -> Result<RegressionReport> {
        self.fit_until(x, y, opts, on_progress, &mut || false)
    }

    /// Like [`Regression::fit_with`], asking `stop` after every epoch: true
    /// ends the fit there (e.g. on Ctrl-C), the model holding that epoch's
    /// state, from which a later fit continues exactly; the report counts
    /// the epochs run.
    pub fn fit_until(
        &mut self,
        x: &SparseMatrix,
        y: &[f64],
        opts: &RegressionFitParams,
        on_progress: &mut dyn FnMut(&RegressionProgress) -> Result<()>,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<RegressionReport> {
        self.check_fit(x, y, opts)?;
        let (weight, denom) = loss_weights(y.len());
        let problem = loss_problem(x, y, &weight, &denom, self.hyper(opts));
        let mut backend = make_backend(opts.device, opts.threads, problem)?;
        let device = backend.describe();
        let mut state = Self::start_state(self.state.clone(), y);
        let start = Instant::now();
        let mut obs = progress_observer(y, self.n_features(), opts, vec![problem.hyper])
            .reporting(move |_, p| on_progress(p))
            .stopping(stop);
        let epochs = engine::train(
            backend.as_mut(),
            &mut state,
            opts.epochs,
            self.params.test_gate,
            &mut obs,
        )?;
        let last = obs.into_last().pop().flatten();
        self.state = state;
        Ok(RegressionReport {
            device,
            epochs,
            seconds: start.elapsed().as_secs_f64(),
            last,
            fallback: None,
        })
    }

    /// Fits `models[k]` with `lambda_l0 = lambdas[k]` and otherwise `opts`,
    /// all together in one pass over `X` per epoch when the device can
    /// ([`crate::backend::make_batch_backend`]: the CPU, a GPU), else one after
    /// another; either way model `k` ends exactly as its own
    /// [`Regression::fit`] would leave it. Together needs the models to
    /// share options and seed and be at the same step (a λ path's fresh
    /// models are); more than [`crate::limits::MAX_BATCH`] train in batches of that
    /// many. Returns each model's report (`seconds`: its batch's). On error
    /// a model keeps its state (a fresh one with its intercept at the mean
    /// of `y`).
    pub fn fit_together(
        models: &mut [&mut Regression],
        lambdas: &[f64],
        x: &SparseMatrix,
        y: &[f64],
        opts: &RegressionFitParams,
    ) -> Result<Vec<RegressionReport>> {
        let (weight, denom) = loss_weights(y.len());
        let mut job = TogetherJob {
            x,
            y,
            weight: &weight,
            denom: &denom,
            opts,
            backend: None,
        };
        batch::fit_together(models, lambdas, &mut job)
    }

    /// Checks a fit's options and data.
    fn check_fit(&self, x: &SparseMatrix, y: &[f64], opts: &RegressionFitParams) -> Result<()> {
        opts.check()?;
        self.check_x(x)?;
        check_y("y", "X", x, y)
    }

    /// The state a fit starts from: `state` (the model's), with the
    /// intercept of a fresh model set to the mean of `y`.
    fn start_state(mut state: ParamState, y: &[f64]) -> ParamState {
        if state.step == 0 {
            if let Some(b) = state.intercept.as_mut() {
                b.value = (y.iter().sum::<f64>() / y.len() as f64) as f32;
            }
        }
        state
    }

    fn check_x(&self, x: &SparseMatrix) -> Result<()> {
        if x.cols() != self.n_features() {
            return Err(L0Error::shape(
                "X columns (one per feature)",
                self.n_features(),
                x.cols(),
            ));
        }
        Ok(())
    }

    /// Deterministic gates under the model's test-time rule.
    pub fn deterministic_gates(&self) -> Vec<f64> {
        self.gates(self.params.test_gate)
    }

    /// Deterministic gates under a given test-time rule.
    pub fn gates(&self, test: TestGate) -> Vec<f64> {
        let g = self.rule().gate;
        self.state
            .a
            .iter()
            .map(|&a| g.deterministic(a, test) as f64)
            .collect()
    }

    /// The ungated coefficients `p` (the reference's `weight`).
    pub fn raw_coefficients(&self) -> Vec<f64> {
        self.state.p.iter().map(|&p| p as f64).collect()
    }

    /// Coefficients times deterministic gates; those whose gate is below
    /// `threshold` are exactly zero. (The reference README's
    /// `get_coefficients(threshold)`; 0.01 matches its selected features.)
    pub fn coefficients(&self, threshold: f64) -> Vec<f64> {
        self.coefficients_with(self.params.test_gate, threshold)
    }

    /// [`Regression::coefficients`] under a given test-time rule.
    pub fn coefficients_with(&self, test: TestGate, threshold: f64) -> Vec<f64> {
        let rule = self.rule();
        self.state
            .p
            .iter()
            .zip(&self.state.a)
            .map(|(&p, &a)| {
                if (rule.gate.deterministic(a, test) as f64) < threshold {
                    0.0
                } else {
                    rule.deterministic_weight(p, a, test) as f64
                }
            })
            .collect()
    }

    /// Deterministic weights (`deterministic`) or weights with gates sampled
    /// with the noise of the next step.
    pub fn weights(&self, deterministic: bool) -> Vec<f64> {
        model::weights(
            &self.state,
            &self.rule(),
            self.seed,
            deterministic,
            self.params.test_gate,
        )
    }

    /// The intercept (None without one).
    pub fn intercept(&self) -> Option<f64> {
        self.state.intercept.map(|b| b.value as f64)
    }

    /// Features whose deterministic gate exceeds `threshold` (the
    /// reference's default is 0.01).
    pub fn selected_features(&self, threshold: f64) -> Vec<usize> {
        self.deterministic_gates()
            .iter()
            .enumerate()
            .filter(|(_, &g)| g > threshold)
            .map(|(i, _)| i)
            .collect()
    }

    /// Share of deterministic gates below 0.01.
    pub fn sparsity(&self) -> f64 {
        let g = self.deterministic_gates();
        g.iter().filter(|&&z| z < 0.01).count() as f64 / g.len() as f64
    }

    /// Expected number of open gates, `sum_i sigmoid(a_i - beta ln(-gamma/zeta))`.
    pub fn l0_penalty(&self) -> f64 {
        model::penalties(&self.state, &self.rule()).0
    }

    /// Predictions `X w + b` with deterministic gates.
    pub fn predict(&self, x: &SparseMatrix) -> Result<Vec<f64>> {
        self.check_x(x)?;
        let b = self.intercept().unwrap_or(0.0);
        let mut out = x.mul_vec(&self.weights(true))?;
        out.iter_mut().for_each(|v| *v += b);
        Ok(out)
    }

    /// [`Regression::predict`] on a dense row-major `X`.
    pub fn predict_dense(&self, x: &[f64]) -> Result<Vec<f64>> {
        let m = dense_rows(x, self.n_features())?;
        self.predict(&m)
    }
}

/// A dense row-major `X` with `n_features` columns as a sparse matrix.
fn dense_rows(x: &[f64], n_features: usize) -> Result<SparseMatrix> {
    if !x.len().is_multiple_of(n_features) {
        return Err(L0Error::shape(
            "dense X (a multiple of n_features values)",
            format!("a multiple of {n_features}"),
            x.len(),
        ));
    }
    SparseMatrix::from_dense(x.len() / n_features, n_features, x)
}

batch::impl_batchable!(Regression, RegressionParams);

/// The regression's problem for the engine: `X`, `y`, the loss weights
/// and scales ([`loss_weights`]) and `hyper`.
fn loss_problem<'a>(
    x: &'a SparseMatrix,
    y: &'a [f64],
    weight: &'a [f64],
    denom: &'a [f64],
    hyper: Hyper,
) -> Problem<'a> {
    Problem::new(x, y, weight, denom, hyper)
}

/// The per-row loss weights (`1/n`, the mean squared error) and error
/// scales (1) of `n` samples.
fn loss_weights(n: usize) -> (Vec<f64>, Vec<f64>) {
    (vec![1.0 / n as f64; n], vec![1.0; n])
}

/// The observer of a fit on targets `y` of models with `n` features, one
/// per `hypers[k]`, reporting as `opts` asks: each model's progress (its
/// total loss with its own hyperparameters), nowhere until told.
fn progress_observer<'s>(
    y: &'s [f64],
    n: usize,
    opts: &RegressionFitParams,
    hypers: Vec<Hyper>,
) -> ProgressPerModel<'s, RegressionProgress> {
    let progress = move |s: &Snapshot, total_loss| {
        let det = y
            .iter()
            .zip(s.yhat)
            .map(|(y, yh)| (y - yh) * (y - yh))
            .sum::<f64>()
            / y.len() as f64;
        RegressionProgress {
            epoch: s.epoch,
            epochs: s.epochs,
            total_loss,
            mse: s.losses.data,
            l0_penalty: s.losses.l0,
            deterministic_mse: det,
            active: s.weights.active,
            n,
        }
    };
    ProgressPerModel::new(opts.report_every, hypers, progress, |_, _| Ok(()))
}

/// A regression's side of [`Regression::fit_together`]: `X`, `y`, their
/// loss weights and scales, the options, and the backend of the batch in
/// training (dropped before the next is built).
struct TogetherJob<'a> {
    x: &'a SparseMatrix,
    y: &'a [f64],
    weight: &'a [f64],
    denom: &'a [f64],
    opts: &'a RegressionFitParams,
    backend: Option<Box<dyn Backend + 'a>>,
}

impl BatchFit<Regression> for TogetherJob<'_> {
    type Progress = RegressionProgress;

    fn fit_alone(
        &mut self,
        _k: usize,
        model: &mut Regression,
        lambda_l0: f64,
    ) -> Result<RegressionReport> {
        let opts = RegressionFitParams {
            lambda_l0,
            ..self.opts.clone()
        };
        model.fit(self.x, self.y, &opts)
    }

    fn together<'s>(
        &'s mut self,
        _first: usize,
        models: &[&mut Regression],
        lambdas: &[f64],
    ) -> Result<std::result::Result<Together<'s, RegressionProgress>, Apart>> {
        self.backend = None;
        if !batch::batchable(models, lambdas)? {
            return Ok(Err(None));
        }
        let (x, y, opts) = (self.x, self.y, self.opts);
        let model = &models[0];
        model.check_fit(x, y, opts)?;
        let hyper = model.hyper(opts);
        let problem = loss_problem(x, y, self.weight, self.denom, hyper);
        let backend = match make_batch_backend(opts.device, opts.threads, problem, lambdas)? {
            Ok(b) => b,
            Err(why) => return Ok(Err(Some(why))),
        };
        let hypers = batch::hypers(hyper, lambdas);
        Ok(Ok(Together {
            backend: self.backend.insert(backend).as_mut(),
            start: Box::new(move |s| Regression::start_state(s, y)),
            epochs: opts.epochs,
            test_gate: model.params.test_gate,
            observer: progress_observer(y, model.n_features(), opts, hypers),
        }))
    }
}

/// Refuses targets `y` (named `what`) that are not one finite value per
/// row of `x` (named `x_name`).
pub(crate) fn check_y(what: &str, x_name: &str, x: &SparseMatrix, y: &[f64]) -> Result<()> {
    if y.len() != x.rows() {
        return Err(L0Error::shape(
            format!("{what} (one value per row of {x_name})"),
            x.rows(),
            y.len(),
        ));
    }
    check_finite(what, y)
}
