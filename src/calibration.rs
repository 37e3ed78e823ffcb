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

use crate::backend::{make_backend, BatchBackends, Device, Hyper, ParamState, Problem};
use crate::engine::{self, Observer, Snapshot};
use crate::error::{check_finite, check_finite_scalar, L0Error, Result};
use crate::hard_concrete::{Magnitude, TestGate};
use crate::matrix::SparseMatrix;
use crate::model::{self, GateParams};
use crate::objective::{self, Shape};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// A per-column initial value: one number for all columns, or one each.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// The same value for every column.
    Scalar(f64),
    /// One value per column.
    PerColumn(Vec<f64>),
}

/// The data loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Loss {
    /// Squared error `(y - yhat)^2`.
    #[default]
    Mse,
    /// Squared relative error `((y - yhat) / (y + 1))^2`.
    Relative,
    /// Absolute relative error `|y - yhat| / max(|y|, 1)`, at most
    /// [`FitParams::loss_cap`] per target ([`crate::objective`]).
    L1Relative,
}

impl Loss {
    /// The name `FromStr` reads: `mse`, `relative`, `l1-relative`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Relative => "relative",
            Loss::L1Relative => "l1-relative",
        }
    }
}

impl std::str::FromStr for Loss {
    type Err = L0Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mse" => Ok(Loss::Mse),
            "relative" => Ok(Loss::Relative),
            "l1-relative" => Ok(Loss::L1Relative),
            _ => Err(L0Error::config(format!(
                "unknown loss '{s}': expected 'mse', 'relative' or 'l1-relative'"
            ))),
        }
    }
}

/// Model options (the reference's constructor arguments).
///
/// | field | default | valid |
/// |---|---|---|
/// | `gate.beta` | 2/3 | > 0 |
/// | `gate.gamma` | -0.1 | < 0 |
/// | `gate.zeta` | 1.1 | > 1 |
/// | `init_keep_prob` | 0.5 | scalar in (0, 1); array in [0, 1], clipped to [1e-6, 1-1e-6] |
/// | `init_weights` | None (= 1) | >= 0, finite |
/// | `log_weight_jitter_sd` | 0 | >= 0 |
/// | `log_alpha_jitter_sd` | 0.01 | >= 0 |
/// | `use_gates` | true | |
/// | `seed` | None (drawn, then kept in the model) | |
/// | `test_gate` | temperature | temperature, paper |
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationParams {
    /// Gate distribution.
    pub gate: GateParams,
    /// Initial probability that each gate is open.
    pub init_keep_prob: Init,
    /// Initial weights (None: all 1).
    pub init_weights: Option<Init>,
    /// Standard deviation of the noise added to the log-weights before the first step.
    pub log_weight_jitter_sd: f64,
    /// Standard deviation of the noise added to the gate logits at construction.
    pub log_alpha_jitter_sd: f64,
    /// Whether gates are used (false: plain positive weights).
    pub use_gates: bool,
    /// Seed of every random draw (init jitter and gate noise).
    pub seed: Option<u64>,
    /// Deterministic gate used for results and reports.
    pub test_gate: TestGate,
}

impl Default for CalibrationParams {
    fn default() -> Self {
        CalibrationParams {
            gate: GateParams::default(),
            init_keep_prob: Init::Scalar(0.5),
            init_weights: None,
            log_weight_jitter_sd: 0.0,
            log_alpha_jitter_sd: 0.01,
            use_gates: true,
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
/// | `loss` | mse | mse, relative (no target may equal -1) |
/// | `target_groups` | None | one id per target |
/// | `normalize_groups` | true | |
/// | `group_multipliers` | empty | ids present in the groups, factors >= 0 |
/// | `excluded_targets` | empty | target indices |
/// | `holdout_targets` | empty | target indices (see [`crate::holdout`]) |
/// | `target_weights` | None | one factor >= 0 per target |
/// | `max_weight` | None | > 0 |
/// | `max_weight_ratio` | None | > 0; >= 1 with gates |
/// | `device` | auto | auto, cpu, cuda:N |
/// | `threads` | all cores | >= 1 |
/// | `report_every` | None (last epoch only) | >= 1 |
#[derive(Clone, Debug, PartialEq)]
pub struct FitParams {
    /// L0 strength.
    pub lambda_l0: f64,
    /// L2 strength on the positive weights.
    pub lambda_l2: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Epochs to run.
    pub epochs: u64,
    /// Data loss.
    pub loss: Loss,
    /// Group id of each target.
    pub target_groups: Option<Vec<i64>>,
    /// Whether each group's targets share one unit of loss weight.
    pub normalize_groups: bool,
    /// Loss factor per group id, applied after normalisation.
    pub group_multipliers: BTreeMap<i64, f64>,
    /// Targets left out of the loss (still reported).
    pub excluded_targets: Vec<usize>,
    /// Validation targets: left out of the loss like excluded ones, and
    /// reported apart ([`Progress::holdout_mean_rel_err`]); chosen by
    /// [`crate::holdout::holdout_targets`] or by hand.
    pub holdout_targets: Vec<usize>,
    /// A factor per target (>= 0) on its loss weight, applied after group
    /// normalisation and group multipliers (0 leaves the target out).
    pub target_weights: Option<Vec<f64>>,
    /// Every weight stays at most this (see [`weight_caps`]).
    pub max_weight: Option<f64>,
    /// Every weight stays at most this times its record's initial (design)
    /// weight, `init_weights` (see [`weight_caps`]).
    pub max_weight_ratio: Option<f64>,
    /// A tolerance band around each target: no loss while its relative
    /// error (as reported, `(yhat - y) / (y + 1)`) is at most `t` in size,
    /// and outside the loss of the distance to the band's edge
    /// ([`crate::objective`]). One value for every target, or one per
    /// target (each finite, >= 0). None: no band.
    pub target_tolerance: Option<Vec<f64>>,
    /// The most one target's `l1-relative` loss term can be (before its
    /// weight `g_q`); > 0. None: no cap. Only with [`Loss::L1Relative`].
    pub loss_cap: Option<f64>,
    /// Where to run.
    pub device: Device,
    /// CPU threads.
    pub threads: Option<usize>,
    /// Progress whenever the model's step count is a multiple of this (and
    /// after the last epoch).
    pub report_every: Option<u64>,
}

impl Default for FitParams {
    fn default() -> Self {
        FitParams {
            lambda_l0: 0.01,
            lambda_l2: 0.0,
            lr: 0.01,
            epochs: 1000,
            loss: Loss::Mse,
            target_groups: None,
            normalize_groups: true,
            group_multipliers: BTreeMap::new(),
            excluded_targets: Vec::new(),
            holdout_targets: Vec::new(),
            target_weights: None,
            max_weight: None,
            max_weight_ratio: None,
            target_tolerance: None,
            loss_cap: None,
            device: Device::Auto,
            threads: None,
            report_every: None,
        }
    }
}

impl FitParams {
    fn check(&self) -> Result<()> {
        model::check_lr(self.lr)?;
        model::check_non_negative("lambda_l0", self.lambda_l0)?;
        model::check_non_negative("lambda_l2", self.lambda_l2)?;
        if self.report_every == Some(0) {
            return Err(L0Error::config("report_every must be at least 1"));
        }
        if let Some(cap) = self.loss_cap {
            if self.loss != Loss::L1Relative {
                return Err(L0Error::config(format!(
                    "loss_cap applies to the l1-relative loss only, not to {}",
                    self.loss.name()
                )));
            }
            objective::check_loss_cap(cap)?;
        }
        for (name, v) in [
            ("max_weight", self.max_weight),
            ("max_weight_ratio", self.max_weight_ratio),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(L0Error::config(format!(
                        "{name} must be a finite number > 0, got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Per-target loss weights `g_q`, error scales `d_q`, tolerance bands and
/// the loss's shape: what the backends need to form each target's term
/// ([`crate::objective::target_term`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetWeights {
    /// `g_q` (0 for excluded targets).
    pub weight: Vec<f64>,
    /// `d_q`.
    pub denom: Vec<f64>,
    /// Band half-widths `b_q` ([`FitParams::target_tolerance`]); None: no band.
    pub band: Option<Vec<f64>>,
    /// Squared, or absolute with its cap.
    pub shape: Shape,
}

impl TargetWeights {
    /// Target `q`'s loss term and its derivative in the estimate `yhat`.
    pub fn term(&self, q: usize, y: f64, yhat: f64) -> (f64, f64) {
        let band = self.band.as_ref().map_or(0.0, |b| b[q]);
        objective::target_term(y, yhat, self.weight[q], self.denom[q], band, self.shape)
    }
}

/// Computes `g` and `d` for targets `y` under `opts`, validating groups,
/// multipliers and the relative-loss denominators.
pub fn target_weights(y: &[f64], opts: &FitParams) -> Result<TargetWeights> {
    let q = y.len();
    let mut weight = vec![1.0f64; q];
    match &opts.target_groups {
        None if !opts.group_multipliers.is_empty() => {
            return Err(L0Error::config(
                "group_multipliers requires target_groups to be set",
            ))
        }
        None => {}
        Some(groups) => {
            if groups.len() != q {
                return Err(L0Error::shape(
                    "target_groups (one per target)",
                    q,
                    groups.len(),
                ));
            }
            let mut size: BTreeMap<i64, usize> = BTreeMap::new();
            for &g in groups {
                *size.entry(g).or_default() += 1;
            }
            if opts.normalize_groups {
                for (w, g) in weight.iter_mut().zip(groups) {
                    *w = 1.0 / size[g] as f64;
                }
            }
            for (&gid, &mult) in &opts.group_multipliers {
                check_finite_scalar(&format!("group multiplier of group {gid}"), mult)?;
                if mult < 0.0 {
                    return Err(L0Error::config(format!(
                        "group multiplier of group {gid} must be >= 0, got {mult}"
                    )));
                }
                if !size.contains_key(&gid) {
                    return Err(L0Error::config(format!(
                        "group_multipliers key {gid} not found in target_groups"
                    )));
                }
                for (w, _) in weight.iter_mut().zip(groups).filter(|(_, &g)| g == gid) {
                    *w *= mult;
                }
            }
        }
    }
    if let Some(factors) = &opts.target_weights {
        if factors.len() != q {
            return Err(L0Error::shape(
                "target weights (one per target)",
                q,
                factors.len(),
            ));
        }
        for (k, (w, &f)) in weight.iter_mut().zip(factors).enumerate() {
            if !(f.is_finite() && f >= 0.0) {
                return Err(L0Error::config(format!(
                    "target weight {k} must be a finite number >= 0, got {f}"
                )));
            }
            *w *= f;
        }
    }
    check_target_lists(q, opts)?;
    for &t in opts.excluded_targets.iter().chain(&opts.holdout_targets) {
        weight[t] = 0.0;
    }
    let denom = match opts.loss {
        Loss::Mse => vec![1.0; q],
        Loss::Relative => {
            if let Some(k) = y.iter().position(|&v| v + 1.0 == 0.0) {
                return Err(L0Error::config(format!(
                    "relative loss divides by y + 1, but target {k} equals -1"
                )));
            }
            y.iter().map(|v| v + 1.0).collect()
        }
        Loss::L1Relative => y.iter().map(|&v| objective::l1_scale(v)).collect(),
    };
    let band = match &opts.target_tolerance {
        Some(t) => Some(objective::band_widths(y, t)?),
        None => None,
    };
    let shape = match opts.loss {
        Loss::L1Relative => Shape::Abs {
            cap: opts.loss_cap.unwrap_or(f64::INFINITY),
        },
        Loss::Mse | Loss::Relative => Shape::Square,
    };
    Ok(TargetWeights {
        weight,
        denom,
        band,
        shape,
    })
}

/// The cap on each record's weight under `opts` (None when neither cap is
/// set): the smaller of `max_weight` and `max_weight_ratio` times the
/// record's design weight `d_i` (`init_weights`). With gates a ratio below 1
/// is refused: the gates' own pull toward zero already shrinks weights, and
/// a record could not even keep its design weight.
///
/// How the caps hold: after every Adam step the log-weight is projected,
/// `p_i = min(p_i, ln cap_i)` (and the initial state likewise), so the
/// magnitude `exp(p_i)` never exceeds the cap and neither does
/// `w_i = exp(p_i) z_i` with `z_i <= 1`, for the sampled weights during
/// training and the deterministic ones reported. The projection is the
/// Euclidean projection onto the box `p <= ln cap`: the Adam moments keep
/// seeing the unconstrained gradient, a weight sits at its cap while the
/// data push it up and leaves it at once when they stop, and no penalty or
/// reparameterisation changes the gradient's scale or the reference's math
/// below the cap. `ln cap_i` is rounded down with a margin of 2^-20 relative
/// so that both backends' f32 `exp` (a few ulps apart) stay below the cap.
pub fn weight_caps(opts: &FitParams, design: &[f64], use_gates: bool) -> Result<Option<Vec<f64>>> {
    if let Some(r) = opts.max_weight_ratio {
        if use_gates && r < 1.0 {
            return Err(L0Error::config(format!(
                "max_weight_ratio must be >= 1 with gates, got {r}"
            )));
        }
    }
    Ok(match (opts.max_weight, opts.max_weight_ratio) {
        (None, None) => None,
        (x, r) => Some(
            design
                .iter()
                .map(|&d| {
                    let by_ratio = r.map_or(f64::INFINITY, |r| r * d);
                    x.unwrap_or(f64::INFINITY).min(by_ratio)
                })
                .collect(),
        ),
    })
}

/// The largest f32 log-weight whose weight stays at most `cap` on either
/// backend (see [`weight_caps`]); `-inf` for a cap of 0.
fn log_weight_bound(cap: f64) -> f32 {
    let x = (cap * (1.0 - (-20f64).exp2())).ln();
    let p = x as f32;
    if p as f64 > x {
        p.next_down()
    } else {
        p
    }
}

/// Refuses a fit in which no target counts: each one is excluded, weighs
/// 0 or has an all-zero matrix row, so the data would not move a weight.
fn check_target_left(m: &SparseMatrix, weight: &[f64]) -> Result<()> {
    let empty = m.empty_rows();
    let counts = |q: usize| weight[q] != 0.0 && empty.binary_search(&q).is_err();
    if weight.is_empty() || (0..weight.len()).any(counts) {
        Ok(())
    } else {
        Err(L0Error::config(
            "no target is left in the loss: each one is excluded, has a loss weight of 0 or an all-zero matrix row",
        ))
    }
}

/// Progress of a fit, as the reference prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// 1-based epoch within this fit.
    pub epoch: u64,
    /// Epochs of this fit.
    pub epochs: u64,
    /// The epoch's total (stochastic) loss.
    pub total_loss: f64,
    /// Its data part.
    pub data_loss: f64,
    /// Its L0 penalty (expected open gates).
    pub l0_penalty: f64,
    /// Mean of `|y - yhat| / (y + 1)` over the targets in the loss, with
    /// deterministic weights.
    pub mean_rel_err: f64,
    /// Maximum of the same.
    pub max_rel_err: f64,
    /// Mean over groups of the per-group mean (with groups).
    pub mean_group_rel_err: Option<f64>,
    /// Mean of `|y - yhat| / (y + 1)` over the holdout targets (None
    /// without a holdout).
    pub holdout_mean_rel_err: Option<f64>,
    /// Maximum of the same.
    pub holdout_max_rel_err: Option<f64>,
    /// Nonzero deterministic weights.
    pub active: u64,
    /// Columns.
    pub n: usize,
    /// Active weights by size: <0.01, 0.01-0.1, 0.1-1, 1-10, 10-1000, >=1000.
    pub buckets: [u64; 6],
}

impl Progress {
    /// Share of weights that are zero.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.active as f64 / self.n as f64
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, err) = match self.mean_group_rel_err {
            Some(g) => ("mean_group_mare", g),
            None => ("mean_error", self.mean_rel_err),
        };
        write!(
            f,
            "Epoch {:4}: {label}={:.4}%, max_error={:.1}%, total_loss={:.3}, active={:4}/{} ({:.1}% sparse)",
            self.epoch,
            100.0 * err + 0.0, // + 0.0: -0 prints as 0
            100.0 * self.max_rel_err + 0.0,
            self.total_loss + 0.0,
            self.active,
            self.n,
            100.0 * self.sparsity() + 0.0
        )?;
        if let (Some(mean), Some(max)) = (self.holdout_mean_rel_err, self.holdout_max_rel_err) {
            write!(
                f,
                ", holdout_mean_error={:.4}%, holdout_max_error={:.1}%",
                100.0 * mean + 0.0,
                100.0 * max + 0.0
            )?;
        }
        if self.active == 0 {
            return write!(f, "\n         Weight dist: [no active weights]");
        }
        let labels = ["<0.01", "0.01-0.1", "0.1-1", "1-10", "10-1000", ">1000"];
        let parts: Vec<String> = labels
            .iter()
            .zip(self.buckets)
            .map(|(l, c)| format!("{l}: {:.1}%", 100.0 * c as f64 / self.active as f64))
            .collect();
        write!(f, "\n         Weight dist: [{}]", parts.join(", "))
    }
}

/// The outcome of one fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitReport {
    /// The backend used, in words.
    pub device: String,
    /// Epochs run: those asked for, or fewer when the observer stopped the
    /// fit ([`CalibrationObserver::stop_requested`]).
    pub epochs: u64,
    /// Wall time of the epoch loop.
    pub seconds: f64,
    /// Metrics after the last report (None when no epoch reported; after a
    /// stop, those of the last report before it).
    pub last: Option<Progress>,
    /// Why the models of this fit's batch ([`Calibration::fit_together`])
    /// trained one after another instead of together in one pass, in one
    /// line; None when they trained together or the fit was a single one.
    pub fallback: Option<String>,
}

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

    /// The general form: any [`Observer`] (progress, checkpoints).
    pub fn fit_observed(
        &mut self,
        m: &SparseMatrix,
        y: &[f64],
        opts: &FitParams,
        observer: &mut dyn CalibrationObserver,
    ) -> Result<FitReport> {
        let inputs = self.fit_inputs(m, y, opts)?;
        let problem = inputs.problem(m, y, self.hyper(opts));
        let mut backend = make_backend(opts.device, opts.threads, problem)?;
        let device = backend.describe();
        let jitter = self.jitter(opts)?;
        let start = self.state.clone();
        let mut state = Self::start_state(start, jitter.as_deref(), inputs.max_p.as_deref());
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
    /// are fitted one after another. More than [`model::MAX_BATCH`] models
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
        model::check_one_per_model(models.len(), lambdas.len())?;
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
        model::in_batches(models, lambdas, |first, models, lambdas| {
            let f = &mut |k, p: &Progress| on_progress(first + k, p);
            Self::fit_batch(models, lambdas, prepared, backends, opts, f)
        })
    }

    /// [`Calibration::fit_together_on`] for at most [`model::MAX_BATCH`] models.
    fn fit_batch(
        models: &mut [&mut Calibration],
        lambdas: &[f64],
        prepared: &Prepared,
        backends: &mut BatchBackends<'_>,
        opts: &FitParams,
        on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
    ) -> Result<Vec<FitReport>> {
        let (m, y) = (backends.problem().matrix, backends.problem().targets);
        // The fallback: each model's own fit, in turn, saying why.
        let mut one_by_one = |models: &mut [&mut Calibration], why: Option<String>| {
            models
                .iter_mut()
                .zip(lambdas)
                .enumerate()
                .map(|(k, (c, &lambda_l0))| {
                    let opts = FitParams {
                        lambda_l0,
                        ..opts.clone()
                    };
                    let r = c.fit_with(m, y, &opts, &mut |p| on_progress(k, p))?;
                    Ok(FitReport {
                        fallback: why.clone(),
                        ..r
                    })
                })
                .collect()
        };
        let together = model::batchable(models, lambdas)? || models.len() == 1;
        if !together || !models.iter().all(|c| prepared.takes(c, opts)) {
            let why = format!(
                "the {} models differ in seed, options or step, so they train one after another",
                models.len()
            );
            return one_by_one(models, Some(why));
        }
        let backend = match backends.get(lambdas)? {
            Ok(b) => b,
            Err(why) => return one_by_one(models, Some(why)),
        };
        let device = backend.describe();
        let first = &models[0];
        let jitter = first.jitter(opts)?;
        let max_p = prepared.inputs.max_p.as_deref();
        let start = |s| Self::start_state(s, jitter.as_deref(), max_p);
        let mut observer = TogetherObserver {
            metrics: TargetMetrics::new(y, opts)?,
            every: opts.report_every,
            n: first.n_features(),
            hypers: model::hypers(prepared.hyper, lambdas),
            last: vec![None; lambdas.len()],
            f: on_progress,
        };
        let test_gate = first.params.test_gate;
        let (epochs, seconds) = model::train_together(
            models,
            backend,
            start,
            opts.epochs,
            test_gate,
            &mut observer,
        )?;
        Ok(observer
            .last
            .into_iter()
            .map(|last| FitReport {
                device: device.clone(),
                epochs,
                seconds,
                last,
                fallback: None,
            })
            .collect())
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
            inputs: self.fit_inputs(m, y, opts)?,
            params: self.params.clone(),
            hyper: self.hyper(opts),
        })
    }

    /// Checks the options and the problem, and builds the per-target loss
    /// weights and the caps' log-weight bounds of a fit.
    fn fit_inputs(&self, m: &SparseMatrix, y: &[f64], opts: &FitParams) -> Result<FitInputs> {
        opts.check()?;
        self.check_problem(m, y)?;
        let tw = target_weights(y, opts)?;
        check_target_left(m, &tw.weight)?;
        let max_p = self
            .caps(opts)?
            .map(|caps| caps.into_iter().map(log_weight_bound).collect());
        Ok(FitInputs { tw, max_p })
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
    /// log-weight `jitter` ([`Calibration::jitter`]) added and the weight
    /// caps applied.
    fn start_state(
        mut state: ParamState,
        jitter: Option<&[f64]>,
        max_p: Option<&[f32]>,
    ) -> ParamState {
        if let Some(j) = jitter {
            state.p.iter_mut().zip(j).for_each(|(p, j)| *p += *j as f32);
        }
        if let Some(bound) = max_p {
            state
                .p
                .iter_mut()
                .zip(bound)
                .for_each(|(p, &b)| *p = p.min(b));
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
        match &self.params.init_weights {
            None => Ok(vec![1.0; self.n_features()]),
            Some(init) => model::expand(init, self.n_features(), "init_weights"),
        }
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
        let max_p = model.fit_inputs(&sub, y, &opts)?.max_p;
        model.state = Self::start_state(model.state, None, max_p.as_deref());
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
        let report = model.fit_observed(&sub, y, &opts, &mut best)?;
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
        Ok(crate::diagnostics::Diagnostics::of(m, &self.weights(true)))
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

model::impl_batchable!(Calibration, CalibrationParams);

/// A fit's per-target loss weights and the caps' log-weight bounds.
struct FitInputs {
    tw: TargetWeights,
    max_p: Option<Vec<f32>>,
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
            band: self.tw.band.as_deref(),
            shape: self.tw.shape,
            ..Problem::new(m, y, &self.tw.weight, &self.tw.denom, hyper)
        }
    }
}

/// The observer of [`Calibration::fit_together`]: each model's progress,
/// its total loss with its own L0 strength.
struct TogetherObserver<'a, 'f> {
    metrics: TargetMetrics<'a>,
    every: Option<u64>,
    n: usize,
    hypers: Vec<Hyper>,
    last: Vec<Option<Progress>>,
    f: &'f mut dyn FnMut(usize, &Progress) -> Result<()>,
}

impl Observer for TogetherObserver<'_, '_> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn report(&mut self, s: &Snapshot) -> Result<()> {
        let p = self
            .metrics
            .progress(s, s.losses.total(&self.hypers[s.model]), self.n);
        (self.f)(s.model, &p)?;
        self.last[s.model] = Some(p);
        Ok(())
    }
}

/// An [`Observer`] for calibration fits: receives model-level progress.
pub trait CalibrationObserver {
    /// Report whenever the model's step count is a multiple of this, and at
    /// the last epoch (None: only the last).
    fn report_every(&self) -> Option<u64>;
    /// Receives the raw snapshot of a report epoch (the model's step count
    /// and the deterministic predictions `yhat`), just before
    /// [`CalibrationObserver::progress`] receives its summary. Does nothing
    /// unless overridden.
    fn snapshot(&mut self, _s: &Snapshot) -> Result<()> {
        Ok(())
    }
    /// Receives progress.
    fn progress(&mut self, p: &Progress) -> Result<()>;
    /// Checkpoint whenever the model's step count is a multiple of this (None: never).
    fn checkpoint_every(&self) -> Option<u64> {
        None
    }
    /// Receives the state to checkpoint.
    fn checkpoint(&mut self, _state: &ParamState) -> Result<()> {
        Ok(())
    }
    /// Turns a raw snapshot into progress (the metrics need y and the groups).
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress;
    /// Asked after every epoch: true ends the fit after it, with the model
    /// holding that epoch's state (for a checkpoint; `fit` continues from
    /// it bit for bit). Never, unless overridden.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// Computes [`Progress`] from snapshots and hands it to a closure.
pub struct ProgressObserver<'a, 'f> {
    metrics: TargetMetrics<'a>,
    every: Option<u64>,
    n: usize,
    f: &'f mut dyn FnMut(&Progress) -> Result<()>,
}

impl<'a, 'f> ProgressObserver<'a, 'f> {
    /// An observer for targets `y` under `opts`, over `n` columns.
    pub fn new(
        y: &'a [f64],
        opts: &FitParams,
        n: usize,
        f: &'f mut dyn FnMut(&Progress) -> Result<()>,
    ) -> Result<Self> {
        Ok(ProgressObserver {
            metrics: TargetMetrics::new(y, opts)?,
            every: opts.report_every,
            n,
            f,
        })
    }
}

impl CalibrationObserver for ProgressObserver<'_, '_> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn progress(&mut self, p: &Progress) -> Result<()> {
        (self.f)(p)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
}

/// The part a target plays in a fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetRole {
    /// In the loss and in the training metrics.
    Train,
    /// Out of the loss, reported as validation.
    Holdout,
    /// Out of the loss and out of every metric (still listed).
    Excluded,
}

/// Refuses an excluded or holdout target index that is not below `q`
/// (the number of targets).
pub fn check_target_lists(q: usize, opts: &FitParams) -> Result<()> {
    for (what, list) in [
        ("excluded targets", &opts.excluded_targets),
        ("holdout targets", &opts.holdout_targets),
    ] {
        if let Some(position) = list.iter().position(|&t| t >= q) {
            return Err(L0Error::IndexOutOfRange {
                what: what.into(),
                index: list[position] as u64,
                position,
                bound: q as u64,
            });
        }
    }
    Ok(())
}

/// Each target's role under `opts` (an excluded target that is also in the
/// holdout counts as excluded).
pub fn target_roles(q: usize, opts: &FitParams) -> Vec<TargetRole> {
    let mut role = vec![TargetRole::Train; q];
    for (list, r) in [
        (&opts.holdout_targets, TargetRole::Holdout),
        (&opts.excluded_targets, TargetRole::Excluded),
    ] {
        for &t in list {
            if let Some(x) = role.get_mut(t) {
                *x = r;
            }
        }
    }
    role
}

/// Mean and max of `rel[q]` over the targets `qs` (0 and 0 when empty).
fn mean_max(rel: &[f64], qs: &[usize]) -> (f64, f64) {
    let mean = qs.iter().map(|&q| rel[q]).sum::<f64>() / qs.len().max(1) as f64;
    let max = qs.iter().map(|&q| rel[q]).fold(0.0, f64::max);
    (mean, max)
}

/// What the progress line needs to know about the targets.
#[derive(Clone, Debug)]
pub struct TargetMetrics<'a> {
    y: &'a [f64],
    /// The targets in the loss.
    train: Vec<usize>,
    /// The holdout targets.
    held: Vec<usize>,
    groups: Option<Vec<i64>>,
}

impl<'a> TargetMetrics<'a> {
    /// Metrics for targets `y`, groups, exclusions and holdout from `opts`.
    pub fn new(y: &'a [f64], opts: &FitParams) -> Result<Self> {
        let role = target_roles(y.len(), opts);
        let with_role = |r: TargetRole| (0..role.len()).filter(|&q| role[q] == r).collect();
        Ok(TargetMetrics {
            y,
            train: with_role(TargetRole::Train),
            held: with_role(TargetRole::Holdout),
            groups: opts.target_groups.clone(),
        })
    }

    /// Progress from a snapshot.
    pub fn progress(&self, s: &Snapshot, total_loss: f64, n: usize) -> Progress {
        let rel: Vec<f64> = self
            .y
            .iter()
            .zip(s.yhat)
            .map(|(y, yh)| ((y - yh) / crate::report::rel_scale(*y)).abs())
            .collect();
        let qs = &self.train;
        let (mean, max) = mean_max(&rel, qs);
        let holdout = (!self.held.is_empty()).then(|| mean_max(&rel, &self.held));
        let group_mean = self.groups.as_ref().map(|g| {
            let mut acc: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
            for &q in qs {
                let e = acc.entry(g[q]).or_default();
                e.0 += rel[q];
                e.1 += 1;
            }
            acc.values().map(|(s, c)| s / *c as f64).sum::<f64>() / acc.len().max(1) as f64
        });
        Progress {
            epoch: s.epoch,
            epochs: s.epochs,
            total_loss,
            data_loss: s.losses.data,
            l0_penalty: s.losses.l0,
            mean_rel_err: mean,
            max_rel_err: max,
            mean_group_rel_err: group_mean,
            holdout_mean_rel_err: holdout.map(|h| h.0),
            holdout_max_rel_err: holdout.map(|h| h.1),
            active: s.weights.active,
            n,
            buckets: s.weights.buckets,
        }
    }
}

struct Adapter<'o> {
    inner: &'o mut dyn CalibrationObserver,
    hyper: Hyper,
    last: Option<Progress>,
}

impl Observer for Adapter<'_> {
    fn report_every(&self) -> Option<u64> {
        self.inner.report_every()
    }
    fn report(&mut self, s: &Snapshot) -> Result<()> {
        self.inner.snapshot(s)?;
        let p = self.inner.summarize(s, s.losses.total(&self.hyper));
        self.inner.progress(&p)?;
        self.last = Some(p);
        Ok(())
    }
    fn checkpoint_every(&self) -> Option<u64> {
        self.inner.checkpoint_every()
    }
    fn checkpoint(&mut self, state: &ParamState) -> Result<()> {
        self.inner.checkpoint(state)
    }
    fn stop_requested(&mut self) -> bool {
        self.inner.stop_requested()
    }
}
