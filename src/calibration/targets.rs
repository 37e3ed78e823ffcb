//! What a fit makes of its targets: their loss weights and error scales
//! ([`target_weights`]), their roles (in the loss, excluded, held out:
//! [`target_roles`]), the weight caps ([`weight_caps`]) and the scale of a
//! relative error ([`rel_scale`]).

use super::params::{FitParams, Loss};
use crate::error::{check_finite_scalar, L0Error, Result};
use crate::matrix::SparseMatrix;
pub use crate::objective::rel_scale;
use crate::objective::{self, Shape};
use std::collections::BTreeMap;

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
    opts.check_bounds(use_gates, crate::naming::Naming::Python)?;
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

/// The kept records' lower bounds under `opts`: `min_weight_ratio` times
/// each design weight `design` ([`crate::constraints`]); None: no bound.
pub fn weight_floors(opts: &FitParams, design: &[f64]) -> Option<Vec<f64>> {
    opts.min_weight_ratio
        .map(|r| design.iter().map(|&d| r * d).collect())
}

/// The largest f32 log-weight whose weight stays at most `cap` on either
/// backend (see [`weight_caps`]); `-inf` for a cap of 0.
pub(super) fn log_weight_bound(cap: f64) -> f32 {
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
pub(super) fn check_target_left(m: &SparseMatrix, weight: &[f64]) -> Result<()> {
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
