//! A calibration's options: the model's ([`CalibrationParams`]) and a
//! fit's ([`FitParams`], with its data [`Loss`]).

use crate::backend::Device;
use crate::error::{L0Error, Result};
use crate::hard_concrete::{GateParams, TestGate};
use crate::model::{self, Init};
use crate::naming::Naming;
use std::collections::BTreeMap;

/// The data loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Squared error `(y - yhat)^2`.
    #[default]
    Mse,
    /// Squared relative error `((y - yhat) / (y + 1))^2`.
    Relative,
    /// Absolute relative error `|y - yhat| / max(|y|, 1)`, at most
    /// [`FitParams::loss_cap`] per target ([`crate::objective`]).
    #[serde(rename = "l1-relative")]
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
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl CalibrationParams {
    /// The design weights of `n` records: `init_weights`, 1 each when
    /// unset (checked: one per record, finite).
    pub fn design_weights(&self, n: usize) -> Result<Vec<f64>> {
        match &self.init_weights {
            None => Ok(vec![1.0; n]),
            Some(init) => model::expand(init, n, "init_weights"),
        }
    }
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
/// | `min_weight_ratio` | None | > 0, at most each record's cap |
/// | `conserve_total` | None | > 0, within what the bounds allow |
/// | `device` | auto | auto, cpu, cuda:N |
/// | `threads` | all cores | >= 1 |
/// | `report_every` | None (last epoch only) | >= 1 |
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// reported apart ([`Progress::holdout_mean_rel_err`](super::Progress::holdout_mean_rel_err)); chosen by
    /// [`crate::holdout::holdout_targets`] or by hand.
    pub holdout_targets: Vec<usize>,
    /// A factor per target (>= 0) on its loss weight, applied after group
    /// normalisation and group multipliers (0 leaves the target out).
    pub target_weights: Option<Vec<f64>>,
    /// Every weight stays at most this (see [`weight_caps`](super::weight_caps)).
    pub max_weight: Option<f64>,
    /// Every weight stays at most this times its record's initial (design)
    /// weight, `init_weights` (see [`weight_caps`](super::weight_caps)).
    pub max_weight_ratio: Option<f64>,
    /// Every kept (non-zero) weight stays at least this times its record's
    /// design weight; zeros stay allowed ([`crate::constraints`]).
    #[serde(default)]
    pub min_weight_ratio: Option<f64>,
    /// The weights sum to this: in training their mean over the gate
    /// noise after every step, in the result the reported (deterministic)
    /// weights exactly ([`crate::constraints`]; the sum of the design
    /// weights is [`super::Calibration::design_total`]).
    #[serde(default)]
    pub conserve_total: Option<f64>,
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
            min_weight_ratio: None,
            conserve_total: None,
            target_tolerance: None,
            loss_cap: None,
            device: Device::Auto,
            threads: None,
            report_every: None,
        }
    }
}

impl FitParams {
    pub(crate) fn check(&self, use_gates: bool) -> Result<()> {
        model::check_lr(self.lr)?;
        model::check_non_negative("lambda_l0", self.lambda_l0)?;
        model::check_non_negative("lambda_l2", self.lambda_l2)?;
        if self.report_every == Some(0) {
            return Err(L0Error::config("report_every must be at least 1"));
        }
        self.check_bounds(use_gates, Naming::Python)
    }

    /// The rules of the weight caps, the tolerances and the loss cap,
    /// written once for the library, Python and the command line, which
    /// checks its flags with them before anything runs (`naming` spells the
    /// settings as each side does; `use_gates`: the model's).
    pub fn check_bounds(&self, use_gates: bool, naming: Naming) -> Result<()> {
        let name = |n: &str| naming.setting(n);
        for (setting, v) in [
            ("max_weight", self.max_weight),
            ("max_weight_ratio", self.max_weight_ratio),
            ("min_weight_ratio", self.min_weight_ratio),
            ("conserve_total", self.conserve_total),
        ] {
            match v {
                Some(v) if !(v.is_finite() && v > 0.0) => {
                    return Err(L0Error::config(format!(
                        "{} must be a finite number > 0, got {v}",
                        name(setting)
                    )))
                }
                _ => {}
            }
        }
        match self.max_weight_ratio {
            Some(r) if use_gates && r < 1.0 => {
                return Err(L0Error::config(format!(
                    "{} must be >= 1 with gates, got {r}",
                    name("max_weight_ratio")
                )))
            }
            _ => {}
        }
        if let Some(t) = &self.target_tolerance {
            crate::objective::check_tolerances(t, &name("target_tolerance"))?;
        }
        if let Some(cap) = self.loss_cap {
            if self.loss != Loss::L1Relative {
                return Err(L0Error::config(format!(
                    "{} applies to {} only, not to {}",
                    name("loss_cap"),
                    naming.choice("loss", Loss::L1Relative.name()),
                    self.loss.name()
                )));
            }
            if cap.is_nan() || cap <= 0.0 {
                return Err(L0Error::config(format!(
                    "{} must be a number > 0, got {cap}",
                    name("loss_cap")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;

    /// One rule, spelled for each side: the command line's flags and
    /// Python's (and the library's) keyword arguments.
    #[test]
    fn each_bound_is_one_rule_named_as_each_side_spells_it() {
        let err = |p: FitParams, gates: bool, n: Naming| {
            p.check_bounds(gates, n).unwrap_err().to_string()
        };
        let ratio = FitParams {
            max_weight_ratio: Some(0.5),
            ..FitParams::default()
        };
        assert_eq!(
            err(ratio.clone(), true, Naming::Cli),
            "invalid configuration: --max-weight-ratio must be >= 1 with gates, got 0.5"
        );
        assert_eq!(
            err(ratio.clone(), true, Naming::Python),
            "invalid configuration: max_weight_ratio must be >= 1 with gates, got 0.5"
        );
        assert!(ratio.check_bounds(false, Naming::Cli).is_ok());
        let cap = FitParams {
            loss: Loss::Relative,
            loss_cap: Some(1.0),
            ..FitParams::default()
        };
        assert_eq!(
            err(cap.clone(), true, Naming::Cli),
            "invalid configuration: --loss-cap applies to --loss l1-relative only, not to relative"
        );
        assert_eq!(
            err(cap, true, Naming::Python),
            "invalid configuration: loss_cap applies to loss_type=\"l1-relative\" only, not to relative"
        );
        let tol = FitParams {
            target_tolerance: Some(vec![0.1, f64::INFINITY]),
            ..FitParams::default()
        };
        assert_eq!(
            err(tol, false, Naming::Cli),
            "invalid configuration: --target-tolerance of target 1 must be a finite number >= 0, got inf"
        );
    }
}
