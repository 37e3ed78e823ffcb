//! Sparse linear regression: the model of l0-python's `SparseL0Linear`, with
//! its configuration, fit driver, results, a lambda path scored on a
//! validation split and a least-squares refit of the selected support.
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
//! Model selection ([`fit_path`]): one fresh model per lambda, fitted on a
//! training split; its support (gates above a threshold) is optionally
//! refitted by ordinary least squares ([`refit_least_squares`], Cholesky on
//! the normal equations in f64) and scored by mean squared error on a
//! validation split. The lambda with the lowest validation error wins, or
//! ([`Selection::OneStandardError`]) the sparsest one within one standard
//! error of it, or ([`Selection::Gic`]) the refit with the lowest
//! information criterion on the training split, as abess chooses.

use crate::backend::{
    make_backend, make_batch_backend, Backend, Device, Hyper, ParamState, Problem,
};
use crate::batch::{self, Apart, BatchFit, ProgressPerModel, Together};
use crate::engine::{self, Snapshot};
use crate::error::{check_finite, check_finite_scalar, L0Error, Result};
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

/// An ordinary least-squares fit restricted to a support.
#[derive(Clone, Debug, PartialEq)]
pub struct LeastSquares {
    /// The columns used, ascending.
    pub support: Vec<usize>,
    /// One coefficient per feature, exactly zero off the support.
    pub coefficients: Vec<f64>,
    /// The intercept (0 without one).
    pub intercept: f64,
}

impl LeastSquares {
    /// `X coefficients + intercept`.
    pub fn predict(&self, x: &SparseMatrix) -> Result<Vec<f64>> {
        let mut out = x.mul_vec(&self.coefficients)?;
        out.iter_mut().for_each(|v| *v += self.intercept);
        Ok(out)
    }
}

/// Refuses targets `y` (named `what`) that are not one finite value per
/// row of `x` (named `x_name`).
fn check_y(what: &str, x_name: &str, x: &SparseMatrix, y: &[f64]) -> Result<()> {
    if y.len() != x.rows() {
        return Err(L0Error::shape(
            format!("{what} (one value per row of {x_name})"),
            x.rows(),
            y.len(),
        ));
    }
    check_finite(what, y)
}

/// Ordinary least squares of `y` on the columns `support` of `x` (plus an
/// intercept when `fit_intercept`), by Cholesky factorisation of the
/// (centred) normal equations in f64. Removes the shrinkage of the gated
/// fit: the refitted coefficients are unbiased on a correct support.
pub fn refit_least_squares(
    x: &SparseMatrix,
    y: &[f64],
    support: &[usize],
    fit_intercept: bool,
) -> Result<LeastSquares> {
    let (n, p) = (x.rows(), x.cols());
    check_y("y", "X", x, y)?;
    let mut support = support.to_vec();
    support.sort_unstable();
    support.dedup();
    if let Some((position, &j)) = support.iter().enumerate().find(|(_, &j)| j >= p) {
        return Err(L0Error::IndexOutOfRange {
            what: "support".into(),
            index: j as u64,
            position,
            bound: p as u64,
        });
    }
    let s = support.len();
    let unknowns = s + fit_intercept as usize;
    if unknowns > n {
        return Err(L0Error::config(format!(
            "least-squares refit: {unknowns} unknowns but only {n} rows"
        )));
    }
    // Dense copies of the selected columns (column-major), centred with an intercept.
    let csc = x.csc();
    let ptr = csc.indptr();
    let ptr = ptr.raw_storage();
    let (idx, val) = (csc.indices(), csc.data());
    let mut cols = vec![0.0f64; s * n];
    for (k, &j) in support.iter().enumerate() {
        let c = &mut cols[k * n..(k + 1) * n];
        for t in ptr[j]..ptr[j + 1] {
            c[idx[t] as usize] = val[t] as f64;
        }
    }
    let y_mean = if fit_intercept {
        y.iter().sum::<f64>() / n as f64
    } else {
        0.0
    };
    let mut means = vec![0.0f64; s];
    if fit_intercept {
        for (k, c) in cols.chunks_mut(n).enumerate() {
            means[k] = c.iter().sum::<f64>() / n as f64;
            c.iter_mut().for_each(|v| *v -= means[k]);
        }
    }
    let mut gram = vec![0.0f64; s * s];
    let mut rhs = vec![0.0f64; s];
    for a in 0..s {
        let ca = &cols[a * n..(a + 1) * n];
        rhs[a] = ca.iter().zip(y).map(|(u, v)| u * (v - y_mean)).sum();
        for b in 0..=a {
            let cb = &cols[b * n..(b + 1) * n];
            gram[a * s + b] = ca.iter().zip(cb).map(|(u, v)| u * v).sum();
        }
    }
    let beta = cholesky_solve(&mut gram, &mut rhs, s)?;
    let mut coefficients = vec![0.0; p];
    for (k, &j) in support.iter().enumerate() {
        coefficients[j] = beta[k];
    }
    let intercept = if fit_intercept {
        y_mean - means.iter().zip(&beta).map(|(m, b)| m * b).sum::<f64>()
    } else {
        0.0
    };
    Ok(LeastSquares {
        support,
        coefficients,
        intercept,
    })
}

/// Solves `G x = r` for symmetric positive definite `G` (lower triangle of a
/// row-major `s x s` array), overwriting `G` with its Cholesky factor.
fn cholesky_solve(g: &mut [f64], r: &mut [f64], s: usize) -> Result<Vec<f64>> {
    let max_diag = (0..s).map(|i| g[i * s + i]).fold(0.0f64, f64::max);
    for i in 0..s {
        for j in 0..=i {
            let mut v = g[i * s + j];
            for k in 0..j {
                v -= g[i * s + k] * g[j * s + k];
            }
            if i == j {
                if v.is_nan() || v <= 1e-12 * max_diag {
                    return Err(L0Error::config(
                        "least-squares refit: the selected columns are linearly dependent",
                    ));
                }
                g[i * s + i] = v.sqrt();
            } else {
                g[i * s + j] = v / g[j * s + j];
            }
        }
    }
    for i in 0..s {
        let mut v = r[i];
        for k in 0..i {
            v -= g[i * s + k] * r[k];
        }
        r[i] = v / g[i * s + i];
    }
    for i in (0..s).rev() {
        let mut v = r[i];
        for k in i + 1..s {
            v -= g[k * s + i] * r[k];
        }
        r[i] = v / g[i * s + i];
    }
    Ok(r.to_vec())
}

/// How [`fit_path`] picks its lambda from the validation errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// The lowest validation mean squared error.
    #[default]
    MinError,
    /// The sparsest support whose validation error is within one standard
    /// error of the lowest (the "one-standard-error rule"; the standard error
    /// is that of the mean of the squared validation errors at the minimum).
    OneStandardError,
    /// The lowest generalised information criterion of the least-squares
    /// refits on the training split (abess's GIC,
    /// `n ln(RSS / n) + s ln(p) ln(ln n)`: `n` training rows, `s` features
    /// in the support, `p` features; [`PathPoint::gic`]); the validation
    /// error decides where no support could be refitted.
    Gic,
}

/// abess's generalised information criterion of a least-squares fit with
/// residual sum of squares `rss` over `n` rows, `s` of `p` features.
pub fn gic(rss: f64, n: usize, s: usize, p: usize) -> f64 {
    let n = n as f64;
    n * (rss / n).ln() + s as f64 * (p.max(2) as f64).ln() * n.ln().ln()
}

/// Options of [`fit_path`].
#[derive(Clone, Debug, PartialEq)]
pub struct PathParams {
    /// The L0 strengths to try (each > = 0, finite).
    pub lambdas: Vec<f64>,
    /// Gate threshold that defines the support (default 0.01).
    pub threshold: f64,
    /// Score (and return) the least-squares refit of each support rather
    /// than the gated coefficients (default true).
    pub refit: bool,
    /// How the lambda is chosen (default: lowest validation error).
    pub selection: Selection,
}

impl Default for PathParams {
    fn default() -> Self {
        PathParams {
            lambdas: vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
            threshold: 0.01,
            refit: true,
            selection: Selection::MinError,
        }
    }
}

/// One lambda of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPoint {
    /// The L0 strength.
    pub lambda: f64,
    /// Selected features.
    pub support: Vec<usize>,
    /// Validation mean squared error.
    pub val_mse: f64,
    /// Its standard error (of the mean of the squared errors).
    pub val_se: f64,
    /// Whether the score is that of the least-squares refit (false when no
    /// refit was asked for, or the support could not be refitted).
    pub refitted: bool,
    /// The refit's [`gic`] on the training split (None without a refit).
    pub gic: Option<f64>,
}

/// The outcome of [`fit_path`].
#[derive(Clone, Debug)]
pub struct PathFit {
    /// Every lambda, in the order given.
    pub points: Vec<PathPoint>,
    /// Index of the chosen lambda (by [`PathParams::selection`]; ties go to
    /// the sparser support, then the earlier lambda).
    pub best: usize,
    /// The chosen lambda.
    pub lambda: f64,
    /// The model fitted at the chosen lambda.
    pub model: Regression,
    /// Its least-squares refit on the training split, when scored that way.
    pub refit: Option<LeastSquares>,
}

/// Fits one fresh model per lambda on `(x_train, y_train)` (all with the same
/// seed, hence the same start), scores each on `(x_val, y_val)` by mean
/// squared error, and returns the path with the best model. The models are
/// trained together ([`Regression::fit_together`]: on the CPU, one pass
/// over `X` per epoch serves every lambda), each bit for bit its own fit.
/// See the module documentation.
#[allow(clippy::too_many_arguments)]
pub fn fit_path(
    params: &RegressionParams,
    opts: &RegressionFitParams,
    path: &PathParams,
    x_train: &SparseMatrix,
    y_train: &[f64],
    x_val: &SparseMatrix,
    y_val: &[f64],
) -> Result<PathFit> {
    if path.lambdas.is_empty() {
        return Err(L0Error::config("the lambda path is empty"));
    }
    for &l in &path.lambdas {
        model::check_non_negative("lambda_l0", l)?;
    }
    check_finite_scalar("threshold", path.threshold)?;
    check_y("y_val", "X_val", x_val, y_val)?;
    let mut params = params.clone();
    params.seed = Some(params.seed.unwrap_or_else(rand::random));
    let n_features = x_train.cols();
    if x_val.cols() != n_features {
        return Err(L0Error::shape(
            "X_val columns (one per feature)",
            n_features,
            x_val.cols(),
        ));
    }
    // Mean and standard error of the squared validation errors.
    let score = |pred: Vec<f64>| {
        let sq: Vec<f64> = pred
            .iter()
            .zip(y_val)
            .map(|(p, y)| (p - y) * (p - y))
            .collect();
        let n = sq.len() as f64;
        let mean = sq.iter().sum::<f64>() / n;
        let var = sq.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, (var / n).sqrt())
    };
    let mut models = path
        .lambdas
        .iter()
        .map(|_| Regression::new(n_features, params.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut refs: Vec<&mut Regression> = models.iter_mut().collect();
    Regression::fit_together(&mut refs, &path.lambdas, x_train, y_train, opts)?;
    let mut fitted: Vec<(Regression, Option<LeastSquares>)> = Vec::new();
    let mut points: Vec<PathPoint> = Vec::with_capacity(path.lambdas.len());
    for (m, &lambda) in models.into_iter().zip(&path.lambdas) {
        let support = m.selected_features(path.threshold);
        let ls = if path.refit {
            refit_least_squares(x_train, y_train, &support, params.fit_intercept).ok()
        } else {
            None
        };
        let (val_mse, val_se) = match &ls {
            Some(ls) => score(ls.predict(x_val)?),
            None => score(m.predict(x_val)?),
        };
        let gic = match &ls {
            Some(ls) => {
                let rss: f64 = ls
                    .predict(x_train)?
                    .iter()
                    .zip(y_train)
                    .map(|(p, y)| (p - y) * (p - y))
                    .sum();
                Some(gic(rss, y_train.len(), support.len(), n_features))
            }
            None => None,
        };
        points.push(PathPoint {
            lambda,
            gic,
            refitted: ls.is_some(),
            support,
            val_mse,
            val_se,
        });
        fitted.push((m, ls));
    }
    // Lowest error, ties to the sparser support, then the earlier lambda.
    let min = (0..points.len())
        .min_by(|&i, &j| {
            let (a, b) = (&points[i], &points[j]);
            a.val_mse
                .total_cmp(&b.val_mse)
                .then(a.support.len().cmp(&b.support.len()))
                .then(i.cmp(&j))
        })
        .expect("the path has at least one lambda");
    let best = match path.selection {
        Selection::MinError => min,
        Selection::OneStandardError => {
            let limit = points[min].val_mse + points[min].val_se;
            (0..points.len())
                .filter(|&k| points[k].val_mse <= limit)
                .min_by_key(|&k| (points[k].support.len(), k))
                .unwrap_or(min)
        }
        Selection::Gic => (0..points.len())
            .filter_map(|k| points[k].gic.map(|g| (k, g)))
            .min_by(|(i, a), (j, b)| {
                a.total_cmp(b)
                    .then(points[*i].support.len().cmp(&points[*j].support.len()))
                    .then(i.cmp(j))
            })
            .map_or(min, |(k, _)| k),
    };
    let (model, refit) = fitted.swap_remove(best);
    Ok(PathFit {
        lambda: points[best].lambda,
        points,
        best,
        model,
        refit,
    })
}
