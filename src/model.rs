//! What the calibration and regression models share: their initial values
//! ([`Init`]), the checks of their options, the outcome of a fit
//! ([`FitReport`]), and host-side evaluation of weights and penalties from
//! a [`ParamState`] (the same formulas the backends run).

use crate::backend::ParamState;
use crate::error::{check_finite, check_finite_scalar, L0Error, Result};
use crate::hard_concrete::{ColumnRule, TestGate};
use crate::philox::gate_uniform;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

pub use crate::limits::MAX_BATCH;

/// A per-column initial value: one number for all columns, or one each.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Init {
    /// The same value for every column.
    Scalar(f64),
    /// One value per column.
    PerColumn(Vec<f64>),
}

/// The outcome of one fit, with `P` the model's progress
/// ([`crate::calibration::FitReport`], [`crate::regression::RegressionReport`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FitReport<P> {
    /// The backend used, in words.
    pub device: String,
    /// Epochs run: those asked for, or fewer when a stop was requested
    /// ([`crate::engine::Observer::stop_requested`]).
    pub epochs: u64,
    /// Wall time of the epoch loop.
    pub seconds: f64,
    /// Metrics after the last report (None when no epoch reported; after a
    /// stop, those of the last report before it).
    pub last: Option<P>,
    /// Why the models of this fit's batch (`fit_together`) trained one
    /// after another instead of together in one pass, in one line; None
    /// when they trained together or the fit was a single one.
    pub fallback: Option<String>,
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
