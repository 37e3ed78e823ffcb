//! How concentrated calibrated weights are, and who carries each target.
//!
//! Weights that hit every target can still be unusable: a few records with
//! huge weights carry a total, and the sample behaves as a much smaller one.
//! Survey practice reads that off a few numbers, computed here from the
//! deterministic weights `w` (zeros are records dropped by the gates):
//!
//! | quantity | formula |
//! |---|---|
//! | `ess` | Kish's effective sample size `(sum w)^2 / sum w^2` |
//! | `design_effect` | `active / ess` (1 when all active weights are equal) |
//! | `max_weight` | `max w` |
//! | `top1pct_share` | share of `sum w` carried by the largest `ceil(active / 100)` weights |
//! | `weight_quantiles` | min, 1%, 25%, 50%, 75%, 99%, max of the active weights (linear interpolation, as numpy's default) |
//!
//! and, for each target `q` with the contributions `c_i = M_qi w_i`:
//! `top_record` (the `i` with the largest `c_i`, the lowest index on a tie),
//! `top_record_share` (`c_top / sum_i c_i`) and `records_contributing` (how
//! many `c_i` are non-zero). A target carried by one or two records shows at
//! a glance.

use crate::matrix::SparseMatrix;
use crate::par::Par;

/// The probabilities of [`WeightDiagnostics::quantiles`].
pub const QUANTILES: [f64; 7] = [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0];

/// Concentration of a weight vector (see the module docs). With no active
/// weight every figure is 0.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightDiagnostics {
    /// Non-zero weights.
    pub active: usize,
    /// Kish effective sample size.
    pub ess: f64,
    /// `active / ess`.
    pub design_effect: f64,
    /// The largest weight.
    pub max_weight: f64,
    /// Share of the weight total carried by the top 1% of active records.
    pub top1pct_share: f64,
    /// The active weights' quantiles at [`QUANTILES`].
    pub quantiles: [f64; 7],
}

/// Who carries one target (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetCarrier {
    /// The column contributing most to the estimate (None: no contribution
    /// is positive).
    pub top_record: Option<usize>,
    /// Its share of the estimate (0 when the estimate is 0 or no
    /// contribution is positive).
    pub top_record_share: f64,
    /// Columns whose contribution is non-zero.
    pub records_contributing: usize,
}

/// Both views of one weight vector: its concentration and, per target, who
/// carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostics {
    /// Concentration of the weights.
    pub weights: WeightDiagnostics,
    /// One per target (matrix row).
    pub targets: Vec<TargetCarrier>,
}

impl Diagnostics {
    /// The diagnostics of weights `w` (one per column of `m`), the targets
    /// with parallelism `par`.
    pub fn of(m: &SparseMatrix, w: &[f64], par: Par) -> Self {
        Diagnostics {
            weights: weight_diagnostics(w),
            targets: target_carriers(m, w, par),
        }
    }
}

/// Concentration figures of `w` (non-negative weights).
pub fn weight_diagnostics(w: &[f64]) -> WeightDiagnostics {
    let mut active: Vec<f64> = w.iter().copied().filter(|&x| x != 0.0).collect();
    if active.is_empty() {
        return WeightDiagnostics {
            active: 0,
            ess: 0.0,
            design_effect: 0.0,
            max_weight: 0.0,
            top1pct_share: 0.0,
            quantiles: [0.0; 7],
        };
    }
    active.sort_by(f64::total_cmp);
    let n = active.len();
    let sum: f64 = active.iter().sum();
    let sum2: f64 = active.iter().map(|x| x * x).sum();
    let ess = sum * sum / sum2;
    let top: f64 = active[n - n.div_ceil(100)..].iter().sum();
    WeightDiagnostics {
        active: n,
        ess,
        design_effect: n as f64 / ess,
        max_weight: active[n - 1],
        top1pct_share: top / sum,
        quantiles: QUANTILES.map(|p| quantile(&active, p)),
    }
}

/// The `p` quantile of sorted, non-empty `v` with linear interpolation
/// between order statistics (numpy's default method).
fn quantile(v: &[f64], p: f64) -> f64 {
    let pos = p * (v.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    match v.get(lo + 1) {
        Some(&hi) if frac > 0.0 => v[lo] + frac * (hi - v[lo]),
        _ => v[lo],
    }
}

/// Who carries each target of `m` under the weights `w` (one per column),
/// targets in parallel with `par` (each target's sums in order: the same
/// bits with any `par`).
pub fn target_carriers(m: &SparseMatrix, w: &[f64], par: Par) -> Vec<TargetCarrier> {
    let csr = m.csr();
    par.map(m.rows(), |q| {
        let row = csr.outer_view(q).expect("row index below the row count");
        let (mut estimate, mut count) = (0.0, 0);
        let mut top: Option<(usize, f64)> = None;
        for (i, &v) in row.iter() {
            let c = v as f64 * w[i];
            estimate += c;
            if c != 0.0 {
                count += 1;
            }
            if c > 0.0 && top.is_none_or(|(_, t)| c > t) {
                top = Some((i, c));
            }
        }
        TargetCarrier {
            top_record: top.map(|(i, _)| i),
            top_record_share: match top {
                Some((_, c)) if estimate != 0.0 => c / estimate,
                _ => 0.0,
            },
            records_contributing: count,
        }
    })
}

/// The targets that no weights within `caps` (one per column, `0 <= w_i <=
/// cap_i`) can reach: `y_q` above the largest estimate
/// `sum_i max(M_qi, 0) cap_i` or below the smallest `sum_i min(M_qi, 0)
/// cap_i`. A capped fit then falls short of them whatever it does.
pub fn unreachable_targets(m: &SparseMatrix, y: &[f64], caps: &[f64]) -> Vec<usize> {
    let csr = m.csr();
    (0..m.rows())
        .filter(|&q| {
            let row = csr.outer_view(q).expect("row index below the row count");
            let (mut lo, mut hi) = (0.0, 0.0);
            for (i, &v) in row.iter() {
                let c = v as f64 * caps[i];
                if c > 0.0 {
                    hi += c;
                } else {
                    lo += c;
                }
            }
            y[q] > hi || y[q] < lo
        })
        .collect()
}

/// The warnings the figures call for, one line each: targets whose top
/// record carries more than half of the estimate (up to five named, with
/// the count), and a top 1% of the records carrying more than
/// `warn_top1pct` of the weight total. `names` has one name per target;
/// `included[q]` says whether target q is in the loss (only those are
/// checked).
pub fn concentration_warnings(
    d: &WeightDiagnostics,
    carriers: &[TargetCarrier],
    names: &[String],
    included: &[bool],
    warn_top1pct: f64,
) -> Vec<String> {
    let mut out = Vec::new();
    let carried: Vec<usize> = (0..carriers.len())
        .filter(|&q| included[q] && carriers[q].top_record_share > 0.5)
        .collect();
    if !carried.is_empty() {
        let shown: Vec<String> = carried
            .iter()
            .take(5)
            .map(|&q| {
                let c = &carriers[q];
                format!(
                    "{} ({:.0}% from record {})",
                    names[q],
                    100.0 * c.top_record_share,
                    c.top_record.unwrap_or(0)
                )
            })
            .collect();
        let more = if carried.len() > 5 {
            format!(" and {} more", carried.len() - 5)
        } else {
            String::new()
        };
        out.push(format!(
            "warning: {} target(s) get more than half of their estimate from a single record: {}{more}; \
             see top_record in targets.csv, and --max-weight or --max-weight-ratio to cap the weights",
            carried.len(),
            shown.join(", ")
        ));
    }
    if d.active > 0 && d.top1pct_share > warn_top1pct {
        out.push(format!(
            "warning: the top 1% of the {} active records carry {:.1}% of the weight total \
             (more than --warn-top1pct {}); effective sample size {:.1}, design effect {:.2}",
            d.active,
            100.0 * d.top1pct_share,
            warn_top1pct,
            d.ess,
            d.design_effect
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_as_numpy_does() {
        let v = [1.0, 2.0, 4.0, 8.0, 16.0];
        // numpy.quantile(v, [0, .01, .25, .5, .75, .99, 1])
        let want = [1.0, 1.04, 2.0, 4.0, 8.0, 15.68, 16.0];
        for (p, w) in QUANTILES.iter().zip(want) {
            assert!(
                (quantile(&v, *p) - w).abs() < 1e-12,
                "{p}: {}",
                quantile(&v, *p)
            );
        }
        assert_eq!(quantile(&[3.0], 0.5), 3.0);
    }
}
