//! What the calibration and regression models share: the gate options, their
//! validation, and host-side evaluation of weights and penalties from a
//! [`ParamState`] (the same formulas the backends run).

use crate::backend::ParamState;
use crate::error::{check_finite_scalar, L0Error, Result};
use crate::hard_concrete::{ColumnRule, TestGate};
use crate::philox::gate_uniform;

/// The Hard Concrete distribution's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
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
