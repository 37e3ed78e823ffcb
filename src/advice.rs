//! Warnings about a finished calibration fit that would otherwise look
//! fine while being a bad one, each naming the likely cause and the setting
//! to change: written once for `l0 calibrate` (flags, `--lambda-l0`) and
//! for Python's `fit` (keyword arguments, `lambda_l0`), see [`Naming`].
//!
//! The rules:
//! - far from its targets: the mean |rel err| over the targets in the loss
//!   is above [`FAR_FROM_TARGETS`]; the cause named is the first that
//!   holds of: a penalty above the data loss, estimates mostly short of
//!   their targets (> 90%) under a penalty that zeroed most weights (or any
//!   L2), mse loss over targets that span more than a factor 100, else not
//!   converged;
//! - a penalty dominates: not far, but more than 5% off with a penalty
//!   above [`PENALTY_DOMINATES`] times the data loss;
//! - a few targets dominate a fit without groups: with at least
//!   [`FEW_TARGETS_MIN`] targets in the loss and some target more than 1%
//!   off, the top [`FEW_TARGETS_SHARE`] of them (at least one) carry more
//!   than [`DOMINATED_SHARE`] of the data loss.

use crate::calibration::{target_roles, Calibration, FitParams, Loss, Progress};
use crate::error::Result;
use crate::matrix::SparseMatrix;
pub use crate::naming::Naming;
use crate::report::{target_rows, TargetRow};

/// Mean |rel err| above which a fit is "far from its targets".
pub const FAR_FROM_TARGETS: f64 = 0.25;
/// How many times the data loss a penalty must be to "dominate" a fit
/// that is not far from its targets but more than 5% off.
pub const PENALTY_DOMINATES: f64 = 10.0;
/// The share of the targets in the loss that counts as "a few".
pub const FEW_TARGETS_SHARE: f64 = 0.1;
/// The share of the data loss above which a few targets "dominate".
pub const DOMINATED_SHARE: f64 = 0.5;
/// Fewer targets in the loss than this are never "dominated by a few".
pub const FEW_TARGETS_MIN: usize = 10;

/// What the warnings look at: the settings of the fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitSettings {
    /// L0 strength.
    pub lambda_l0: f64,
    /// L2 strength.
    pub lambda_l2: f64,
    /// Learning rate.
    pub lr: f64,
    /// Epochs.
    pub epochs: u64,
    /// Data loss.
    pub loss: Loss,
    /// Whether target groups were given.
    pub groups: bool,
}

/// The warnings of a fit, one line each starting with `warning: `:
/// `rows` are the targets with deterministic estimates, `last` the last
/// progress report (None: no epoch ran, no warning), `sparsity` the share
/// of zero weights. See the module documentation for the rules.
pub fn fit_warnings(
    rows: &[TargetRow],
    last: Option<&Progress>,
    sparsity: f64,
    s: &FitSettings,
    naming: Naming,
) -> Vec<String> {
    let Some(p) = last else {
        return Vec::new();
    };
    let mut out: Vec<String> = far_or_penalized(rows, p, sparsity, s, naming)
        .into_iter()
        .collect();
    if !s.groups {
        out.extend(dominated_by_few(rows, s.loss, naming));
    }
    out.into_iter().map(|w| format!("warning: {w}")).collect()
}

/// The warnings of `model` just fitted on `m`, `y` with `opts` ([`fit_warnings`]
/// over its deterministic estimates and `last`, the fit's last progress),
/// for Python's `fit`.
pub fn after_fit(
    model: &Calibration,
    m: &SparseMatrix,
    y: &[f64],
    opts: &FitParams,
    last: Option<&Progress>,
    naming: Naming,
) -> Result<Vec<String>> {
    let yhat = model.predict(m)?;
    let names = vec![String::new(); y.len()];
    let rows = target_rows(&names, y, &yhat, &target_roles(y.len(), opts));
    let settings = FitSettings {
        lambda_l0: opts.lambda_l0,
        lambda_l2: opts.lambda_l2,
        lr: opts.lr,
        epochs: opts.epochs,
        loss: opts.loss,
        groups: opts.target_groups.is_some(),
    };
    let mut warnings = fit_warnings(&rows, last, model.sparsity(), &settings, naming);
    warnings.extend(model.total_miss().map(|miss| format!("warning: {miss}")));
    Ok(warnings)
}

/// The targets in the loss (neither excluded nor held out).
fn counted(rows: &[TargetRow]) -> Vec<&TargetRow> {
    rows.iter().filter(|t| !t.excluded && !t.holdout).collect()
}

/// The far-from-targets and penalty-dominates rules.
fn far_or_penalized(
    rows: &[TargetRow],
    p: &Progress,
    sparsity: f64,
    s: &FitSettings,
    naming: Naming,
) -> Option<String> {
    let l0_term = s.lambda_l0 * p.l0_penalty;
    let l2_term = (p.total_loss - p.data_loss - l0_term).max(0.0);
    let l2_on = s.lambda_l2 > 0.0;
    let (name, value, pen) = if l2_on && l2_term > l0_term {
        ("lambda_l2", s.lambda_l2, l2_term)
    } else {
        ("lambda_l0", s.lambda_l0, l0_term)
    };
    let flag = naming.setting(name);
    let lower = format!("lower {flag} (now {value:?})");
    let outweighs = format!(
        "the {flag} penalty ({pen:.4}) outweighs the data loss ({:.4}): {lower}",
        p.data_loss
    );
    let counted = counted(rows);
    let err = counted.iter().map(|t| t.rel_abs_error()).sum::<f64>() / counted.len().max(1) as f64;
    if counted.is_empty() || err <= FAR_FROM_TARGETS {
        return (pen > PENALTY_DOMINATES * p.data_loss && err > 0.05).then_some(outweighs);
    }
    let short =
        counted.iter().filter(|t| t.estimate < t.target).count() as f64 / counted.len() as f64;
    let (lo, hi) = counted
        .iter()
        .map(|t| t.target.abs())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let cause = if pen > p.data_loss {
        outweighs
    } else if short > 0.9 && (l2_on || sparsity > 0.5) {
        format!(
            "{:.0}% of the estimates fall short of their targets and {:.0}% of the weights are zero: the {flag} penalty holds them down; {lower}",
            100.0 * short,
            100.0 * sparsity
        )
    } else if s.loss == Loss::Mse && hi > 100.0 * lo.max(1.0) {
        format!(
            "{} lets the largest targets dominate (these span more than a factor 100): use {}",
            naming.choice("loss", "mse"),
            naming.choice("loss", "relative")
        )
    } else {
        format!(
            "the fit has not converged: raise {} (now {}) or {} (now {:?})",
            naming.setting("epochs"),
            s.epochs,
            naming.setting("lr"),
            s.lr
        )
    };
    Some(format!(
        "the fit is far from its targets (mean |rel err| {:.1}% > {:.0}%): {cause}",
        100.0 * err,
        100.0 * FAR_FROM_TARGETS
    ))
}

/// The few-targets rule of a fit without groups: each target's share of
/// the data loss is its squared error under `loss` (relative: over `y + 1`).
fn dominated_by_few(rows: &[TargetRow], loss: Loss, naming: Naming) -> Option<String> {
    let counted = counted(rows);
    let worst = counted
        .iter()
        .map(|t| t.rel_abs_error())
        .fold(0.0, f64::max);
    if counted.len() < FEW_TARGETS_MIN || worst <= 0.01 {
        return None;
    }
    let mut parts: Vec<f64> = counted
        .iter()
        .map(|t| match loss {
            Loss::Relative => t.rel_error().powi(2),
            Loss::L1Relative => (t.error() / crate::objective::l1_scale(t.target)).abs(),
            Loss::Mse => t.error().powi(2),
        })
        .collect();
    let total: f64 = parts.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    parts.sort_by(|a, b| b.total_cmp(a));
    let k = ((FEW_TARGETS_SHARE * counted.len() as f64).ceil() as usize).max(1);
    let share = parts[..k].iter().sum::<f64>() / total;
    (share > DOMINATED_SHARE).then(|| {
        let groups = naming.setting("groups");
        format!(
            "without {groups} the fit is dominated by a few targets: the {k} of {} with the largest errors (the top {:.0}%) carry {:.1}% of the loss (more than {:.0}%); give {groups} (one group id per target, e.g. the kind of total) so that each group of targets shares one unit of loss",
            counted.len(),
            100.0 * FEW_TARGETS_SHARE,
            100.0 * share,
            100.0 * DOMINATED_SHARE
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: f64, estimate: f64) -> TargetRow {
        TargetRow {
            name: String::new(),
            target,
            estimate,
            excluded: false,
            holdout: false,
            band: None,
        }
    }

    #[test]
    fn a_few_targets_with_most_of_the_loss_dominate() {
        // 20 targets, two 9% and 11% off and the rest 0.5% off: the top 2
        // carry 0.0202 / (0.0202 + 18 * 0.000025) = 97.8% of the loss.
        let mut rows: Vec<TargetRow> = (0..18).map(|_| row(99.0, 98.5)).collect();
        rows.extend([row(99.0, 90.0), row(99.0, 110.0)]);
        let w = dominated_by_few(&rows, Loss::Relative, Naming::Cli).unwrap();
        assert_eq!(
            w,
            "without --groups the fit is dominated by a few targets: the 2 of 20 with the largest errors (the top 10%) carry 97.8% of the loss (more than 50%); give --groups (one group id per target, e.g. the kind of total) so that each group of targets shares one unit of loss"
        );
        // Spread evenly: no warning; all within 1%: none either.
        let even: Vec<TargetRow> = (0..20).map(|_| row(99.0, 95.0)).collect();
        assert_eq!(dominated_by_few(&even, Loss::Relative, Naming::Cli), None);
        let close: Vec<TargetRow> = (0..19)
            .map(|_| row(99.0, 99.0))
            .chain([row(99.0, 99.5)])
            .collect();
        assert_eq!(dominated_by_few(&close, Loss::Relative, Naming::Cli), None);
        // Fewer than ten targets: never.
        assert_eq!(
            dominated_by_few(&rows[11..], Loss::Relative, Naming::Cli),
            None
        );
    }
}
