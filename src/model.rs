//! What the calibration and regression models share: the gate options, their
//! validation, and host-side evaluation of weights and penalties from a
//! [`ParamState`] (the same formulas the backends run).

use crate::backend::{Backend, Hyper, ParamState};
use crate::calibration::Init;
use crate::engine::{self, Observer};
use crate::error::{check_finite, check_finite_scalar, L0Error, Result};
use crate::hard_concrete::{ColumnRule, TestGate};
use crate::philox::gate_uniform;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Most models trained together in one batch: a larger sweep runs in
/// batches of this many. One batch of 16 cost the same as two of 8 (5.3x
/// one fit on the 250k-column geo problem, 2 cores), while its per-row
/// buffers (the CPU backend's forward accumulators: 64 slabs x rows x
/// models x 8 bytes) double.
pub const MAX_BATCH: usize = 8;

/// A model that can be trained together with others of its kind
/// ([`crate::calibration::Calibration::fit_together`],
/// [`crate::regression::Regression::fit_together`]).
pub(crate) trait Batchable {
    /// The model's options.
    type Params: PartialEq;
    /// The seed in use.
    fn seed(&self) -> u64;
    /// The model's options.
    fn params(&self) -> &Self::Params;
    /// The trainable state.
    fn state(&self) -> &ParamState;
    /// Takes a trained state.
    fn set_trained(&mut self, state: ParamState);
    /// Moves the state out (leaving an empty one until `set_trained`).
    fn take_state(&mut self) -> ParamState;
}

/// Implements [`Batchable`] for a model type with fields `seed`, `params`
/// (of type `$params`) and `state`.
macro_rules! impl_batchable {
    ($model:ty, $params:ty) => {
        impl $crate::model::Batchable for $model {
            type Params = $params;
            fn seed(&self) -> u64 {
                self.seed
            }
            fn params(&self) -> &$params {
                &self.params
            }
            fn state(&self) -> &ParamState {
                &self.state
            }
            fn set_trained(&mut self, state: ParamState) {
                self.state = state;
            }
            fn take_state(&mut self) -> ParamState {
                std::mem::take(&mut self.state)
            }
        }
    };
}
pub(crate) use impl_batchable;

/// Runs `batch(first, models, lambdas)` on consecutive batches of at most
/// [`MAX_BATCH`] of `models` (one per `lambdas[k]`, else an error), `first`
/// being the index of the batch's first model, and returns the results in
/// order.
pub(crate) fn in_batches<M, R>(
    models: &mut [&mut M],
    lambdas: &[f64],
    mut batch: impl FnMut(usize, &mut [&mut M], &[f64]) -> Result<Vec<R>>,
) -> Result<Vec<R>> {
    check_one_per_model(models.len(), lambdas.len())?;
    let mut out = Vec::with_capacity(models.len());
    let batches = models.chunks_mut(MAX_BATCH).zip(lambdas.chunks(MAX_BATCH));
    for (b, (models, lambdas)) in batches.enumerate() {
        out.extend(batch(b * MAX_BATCH, models, lambdas)?);
    }
    Ok(out)
}

/// Refuses `lambdas` L0 strengths for `models` models unless one each.
pub(crate) fn check_one_per_model(models: usize, lambdas: usize) -> Result<()> {
    if models != lambdas {
        return Err(L0Error::shape(
            "L0 strengths (one per model)",
            models,
            lambdas,
        ));
    }
    Ok(())
}

/// Whether `models` (each λ finite and >= 0, else an error) can train
/// together: more than one, all with
/// the same options, seed and number of columns, at the same step (so the
/// same gate noise serves all).
pub(crate) fn batchable<M: Batchable>(models: &[&mut M], lambdas: &[f64]) -> Result<bool> {
    for &l in lambdas {
        check_non_negative("lambda_l0", l)?;
    }
    Ok(models.len() > 1
        && models.windows(2).all(|p| {
            p[0].seed() == p[1].seed()
                && p[0].state().step == p[1].state().step
                && p[0].state().len() == p[1].state().len()
                && p[0].params() == p[1].params()
        }))
}

/// `hyper` with each L0 strength of `lambdas`.
pub(crate) fn hypers(hyper: Hyper, lambdas: &[f64]) -> Vec<Hyper> {
    lambdas
        .iter()
        .map(|&lambda_l0| Hyper { lambda_l0, ..hyper })
        .collect()
}

/// Trains the models of a batch backend for `epochs` epochs from their
/// states as `start` prepares them (a fit's start jitter, cap projection
/// or intercept), and hands each model its trained state; returns the
/// epochs run and the seconds taken. The states are moved, not copied
/// (at 5.2M columns a copy is 125 MB per model): on error each model gets
/// its prepared start state back, which is its own state unless `start`
/// changed it.
pub(crate) fn train_together<M: Batchable>(
    models: &mut [&mut M],
    backend: &mut (dyn Backend + '_),
    start: impl Fn(ParamState) -> ParamState,
    epochs: u64,
    test_gate: TestGate,
    observer: &mut dyn Observer,
) -> Result<(u64, f64)> {
    let clock = std::time::Instant::now();
    let mut states: Vec<ParamState> = models.iter_mut().map(|m| start(m.take_state())).collect();
    let run = engine::train_models(backend, &mut states, epochs, test_gate, observer);
    for (m, s) in models.iter_mut().zip(states) {
        m.set_trained(s);
    }
    Ok((run?, clock.elapsed().as_secs_f64()))
}

/// Seed stream of the gate-logit jitter, derived from the model seed.
pub(crate) const LOG_ALPHA_STREAM: u64 = 0x6c6f_675f_616c_7068;

/// `n` draws from `N(0, sd^2)` of a `StdRng` seeded by `seed ^ stream`.
pub(crate) fn normal_draws(seed: u64, stream: u64, sd: f64, n: usize) -> Result<Vec<f64>> {
    let dist = Normal::new(0.0, sd).map_err(|e| L0Error::config(format!("jitter sd {sd}: {e}")))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ stream);
    Ok((0..n).map(|_| dist.sample(&mut rng)).collect())
}

/// One value per column from an [`Init`], checked finite.
pub(crate) fn expand(init: &Init, n: usize, what: &str) -> Result<Vec<f64>> {
    match init {
        Init::Scalar(v) => {
            check_finite_scalar(what, *v)?;
            Ok(vec![*v; n])
        }
        Init::PerColumn(v) => {
            if v.len() != n {
                return Err(L0Error::shape(
                    format!("{what} (one per column)"),
                    n,
                    v.len(),
                ));
            }
            check_finite(what, v)?;
            Ok(v.clone())
        }
    }
}

/// Initial gate logits `logit(keep) + N(0, jitter_sd^2)`: a scalar keep
/// probability must lie in (0, 1); per-column ones in [0, 1], clipped to
/// `[1e-6, 1 - 1e-6]`.
pub(crate) fn initial_log_alpha(
    init_keep_prob: &Init,
    n: usize,
    jitter_sd: f64,
    seed: u64,
) -> Result<Vec<f32>> {
    let keep = match init_keep_prob {
        Init::Scalar(k) => {
            check_finite_scalar("init_keep_prob", *k)?;
            if !(*k > 0.0 && *k < 1.0) {
                return Err(L0Error::config(format!(
                    "init_keep_prob must be in (0, 1), got {k}"
                )));
            }
            vec![*k as f32; n]
        }
        Init::PerColumn(_) => {
            let k = expand(init_keep_prob, n, "init_keep_prob")?;
            if let Some(i) = k.iter().position(|&v| !(0.0..=1.0).contains(&v)) {
                return Err(L0Error::config(format!(
                    "init_keep_prob must be in [0, 1], got {} at column {i}",
                    k[i]
                )));
            }
            k.iter()
                .map(|&v| (v as f32).clamp(1e-6, 1.0 - 1e-6))
                .collect()
        }
    };
    let mut a: Vec<f32> = keep.iter().map(|&k| (k / (1.0 - k)).ln()).collect();
    if jitter_sd > 0.0 {
        let j = normal_draws(seed, LOG_ALPHA_STREAM, jitter_sd, n)?;
        a.iter_mut().zip(j).for_each(|(a, j)| *a += j as f32);
    }
    Ok(a)
}

/// The Hard Concrete distribution's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateParams {
    /// Temperature (> 0). Default 2/3.
    pub beta: f64,
    /// Lower stretch bound (< 0). Default -0.1.
    pub gamma: f64,
    /// Upper stretch bound (> 1). Default 1.1.
    pub zeta: f64,
}

impl Default for GateParams {
    fn default() -> Self {
        GateParams {
            beta: 2.0 / 3.0,
            gamma: -0.1,
            zeta: 1.1,
        }
    }
}

impl GateParams {
    /// Checks `beta > 0`, `gamma < 0`, `zeta > 1`, all finite.
    pub fn check(&self) -> Result<()> {
        check_finite_scalar("beta", self.beta)?;
        check_finite_scalar("gamma", self.gamma)?;
        check_finite_scalar("zeta", self.zeta)?;
        if self.beta <= 0.0 {
            return Err(L0Error::config(format!(
                "beta must be > 0, got {}",
                self.beta
            )));
        }
        if self.gamma >= 0.0 {
            return Err(L0Error::config(format!(
                "gamma must be < 0, got {}",
                self.gamma
            )));
        }
        if self.zeta <= 1.0 {
            return Err(L0Error::config(format!(
                "zeta must be > 1, got {}",
                self.zeta
            )));
        }
        Ok(())
    }
}

/// Checks a learning rate: finite and > 0.
pub fn check_lr(lr: f64) -> Result<()> {
    check_finite_scalar("lr", lr)?;
    if lr <= 0.0 {
        return Err(L0Error::config(format!("lr must be > 0, got {lr}")));
    }
    Ok(())
}

/// Checks a strength or standard deviation: finite and >= 0.
pub fn check_non_negative(name: &str, v: f64) -> Result<()> {
    check_finite_scalar(name, v)?;
    if v < 0.0 {
        return Err(L0Error::config(format!("{name} must be >= 0, got {v}")));
    }
    if (v as f32).is_infinite() {
        return Err(L0Error::config(format!(
            "{name} = {v} is beyond the f32 range the training runs in"
        )));
    }
    Ok(())
}

/// Weights of a state: deterministic, or sampled with the noise of the next step.
pub fn weights(
    s: &ParamState,
    rule: &ColumnRule<f32>,
    seed: u64,
    deterministic: bool,
    test: TestGate,
) -> Vec<f64> {
    s.p.iter()
        .zip(&s.a)
        .enumerate()
        .map(|(i, (&p, &a))| {
            if deterministic {
                rule.deterministic_weight(p, a, test) as f64
            } else {
                rule.forward(p, a, gate_uniform(seed, s.step, i as u64)).w as f64
            }
        })
        .collect()
}

/// `(L0, L2)` penalties of a state.
pub fn penalties(s: &ParamState, rule: &ColumnRule<f32>) -> (f64, f64) {
    s.p.iter().zip(&s.a).fold((0.0, 0.0), |acc, (&p, &a)| {
        let (pi, m2) = rule.penalties(p, a);
        (acc.0 + pi as f64, acc.1 + m2 as f64)
    })
}
