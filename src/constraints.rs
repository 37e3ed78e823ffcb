//! The weight constraints beyond the caps, from the survey toolbox:
//!
//! * a **lower bound** on every kept record's weight,
//!   `w_i >= lo_i = R d_i` for `min_weight_ratio = R` and design weight
//!   `d_i` (zeros stay allowed: the bound is on the records whose
//!   deterministic gate is open). Training holds `p_i >= ln lo_i` after
//!   every Adam step (as the caps hold `p_i <= ln cap_i`); the deterministic
//!   weight of a kept record is `max(exp(p_i) z_i, lo_i)`
//!   ([`crate::hard_concrete::kept_weight`]), as a partly open gate could
//!   otherwise take it below its bound.
//! * a **conserved total** `X`. Training holds the weights' mean over the
//!   gate noise, `W = sum_i exp(p_i) E[z_i]` (what the training loss sees
//!   on average; [`crate::hard_concrete::Gate::expected`], read from a
//!   table, [`crate::hard_concrete::GateMeans`]), at `X` after every step.
//!   Two parts, because Adam and a constraint do not mix by projection
//!   alone:
//!   - the step follows the gradient of the Lagrangian `L + mu sum_i w_i`:
//!     every column gradient `g_w,i` gets the multiplier
//!     `mu = -sum_i w_i^2 g_w,i / sum_i w_i^2` of its sampled weights `w`
//!     (the least-squares fit of the common part of `g_w`), so that a pull
//!     on the total, which the shift would undo, does not reach Adam. Without
//!     it Adam's per-coordinate steps and the shift settle where the
//!     records that pull hardest take the weight: on the demo a total of
//!     142,842 (the unconstrained fit's) ended at 13% mean error with the
//!     weight on a few records; with it, 1.5% (3.9% unconstrained);
//!   - then the projection: every log-weight shifts by one `c` (every weight
//!     scales by `e^c`), held to its bounds,
//!     `p_i <- clamp(p_i + c, ln lo_i, ln cap_i)`, with `c` the root of
//!     `W(c) = X`, found by [`solve_shift`] (`W` is continuous and
//!     non-decreasing in `c`).
//!
//!   Without gates (a refit) `W` is the weights' own sum. The deterministic
//!   gates are sharper than their means while training (0 where the mean is
//!   still 0.1-0.3), so the reported (deterministic) weights are projected
//!   once more, in f64, by the same kind of shift ([`ReportBounds::apply`]):
//!   their sum is `X` to f64 rounding.
//!
//! When the bounds leave no room (`X` above what the caps allow, a lower
//! bound above a cap, `X` below every record's lower bound), the fit is
//! refused before it starts with one line saying which
//! ([`check_conflicts`]). During training the kept records may still be
//! unable to reach `X` (the L0 penalty closed too many gates for the caps
//! left): the weights then stop at their bounds and [`ReportBounds::apply`]
//! says by how much the total is missed ([`TotalMiss`]).

use crate::error::{L0Error, Result};
use crate::naming::Naming;

/// How near the training's f32 weights come to a conserved total after a
/// step (relative): a few times the f32 rounding of one weight.
pub const CONSERVE_TOLERANCE: f64 = 1e-6;

/// Iterations [`solve_shift`] takes at most.
const MAX_ITERATIONS: usize = 100;

/// The largest shift [`solve_shift`] tries (weights scale by `e^200`, past
/// the f32 range either way: every weight is then at one of its bounds).
const MAX_SHIFT: f64 = 200.0;

/// `W(c)` and its slope at one shift, as the records' weights add up:
/// `sum` = `sum_i W_i(c)`, `free` = the part of it from records at neither
/// bound (whose weight grows as `e^c`, the slope `dW/dc`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShiftSums {
    /// `sum_i W_i(c)`.
    pub sum: f64,
    /// The sum over the records at neither bound.
    pub free: f64,
}

impl ShiftSums {
    /// The sums of one record's weight `w`, `free` when at neither bound.
    #[inline(always)]
    pub fn of(w: f64, free: bool) -> Self {
        ShiftSums {
            sum: w,
            free: if free { w } else { 0.0 },
        }
    }

    /// Adds two sums.
    #[inline(always)]
    pub fn merge(self, o: Self) -> Self {
        ShiftSums {
            sum: self.sum + o.sum,
            free: self.free + o.free,
        }
    }
}

/// The shift `c` with `W(c) = total` (to `rel_tol` relative), given
/// `eval(c)` = [`ShiftSums`] at `c`, `W` continuous and non-decreasing.
/// Newton's step in `ln W` (`c + ln((X - fixed) / free)`, exact once no
/// record changes bound) inside a bracket that every evaluation narrows,
/// bisecting when the step leaves it; from `c = 0`, which is the root to
/// within the last step's change, two or three evaluations in training.
/// When no shift reaches `total` (every record at a bound, or none kept)
/// it returns the shift that comes nearest (`±`[`MAX_SHIFT`], or 0 when
/// nothing is kept).
pub fn solve_shift(total: f64, rel_tol: f64, mut eval: impl FnMut(f64) -> ShiftSums) -> f64 {
    let (mut lo, mut hi) = (-MAX_SHIFT, MAX_SHIFT);
    let mut c = 0.0;
    for k in 0..MAX_ITERATIONS {
        let s = eval(c);
        if (s.sum - total).abs() <= rel_tol * total || (k == 0 && s.sum == 0.0) {
            return c; // At the total, or nothing kept: no shift changes anything.
        }
        if s.sum < total {
            lo = c;
        } else {
            hi = c;
        }
        if s.free == 0.0 {
            // Flat here: the far end tells whether the total is in reach.
            let end = if s.sum < total { MAX_SHIFT } else { -MAX_SHIFT };
            if (eval(end).sum < total) == (s.sum < total) {
                return end;
            }
        }
        let fixed = s.sum - s.free;
        let newton = c + ((total - fixed) / s.free).ln();
        if newton == c {
            return c; // As near as rounding lets the sum come.
        }
        c = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo <= 1e-12 * (1.0 + c.abs()) {
            break;
        }
    }
    c
}

/// What a model's reported (deterministic) weights are held to, in f64,
/// after the fit that set them ([`crate::calibration::Calibration::weights`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportBounds {
    /// Each kept record's lower bound `lo_i`.
    pub floor: Option<Vec<f64>>,
    /// Each record's cap.
    pub cap: Option<Vec<f64>>,
    /// The conserved total.
    pub total: Option<f64>,
}

/// By how much the kept records' weights miss a conserved total when their
/// bounds do not let them reach it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TotalMiss {
    /// The total asked for.
    pub total: f64,
    /// The weights' sum.
    pub sum: f64,
    /// Records kept.
    pub kept: usize,
}

impl TotalMiss {
    /// The miss of reported weights `w` against a conserved `total`
    /// (beyond f64 rounding, 1e-9 relative); None without a total or
    /// when they meet it.
    pub fn of(total: Option<f64>, w: &[f64]) -> Option<TotalMiss> {
        let total = total?;
        let sum: f64 = w.iter().sum();
        ((sum - total).abs() > 1e-9 * total).then(|| TotalMiss {
            total,
            sum,
            kept: w.iter().filter(|&&x| x > 0.0).count(),
        })
    }
}

impl std::fmt::Display for TotalMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kept == 0 {
            return write!(
                f,
                "the conserved total {} is out of reach: no record is kept (every gate closed)",
                self.total
            );
        }
        let side = if self.sum < self.total {
            "at their caps"
        } else {
            "at their lower bounds"
        };
        write!(
            f,
            "the conserved total {} is out of reach: the {} kept records sum to {} with every weight {side}",
            self.total, self.kept, self.sum
        )
    }
}

impl ReportBounds {
    /// What lower bounds `floor`, caps `cap` and a `total` hold reported
    /// weights to: nothing beyond the training's own (the default) unless
    /// there is a floor or a total.
    pub fn new(floor: Option<Vec<f64>>, cap: Option<Vec<f64>>, total: Option<f64>) -> Self {
        match floor.is_some() || total.is_some() {
            true => ReportBounds { floor, cap, total },
            false => ReportBounds::default(),
        }
    }

    /// Whether the weights need anything beyond the training's own.
    pub fn is_active(&self) -> bool {
        self.floor.is_some() || self.total.is_some()
    }

    /// Projects the deterministic weights `w` (0 = dropped): each kept
    /// weight onto `[lo_i, cap_i]`, then, with a total, every kept weight
    /// scaled by one factor `e^c` and held to its bounds
    /// (`clamp(w_i e^c, lo_i, cap_i)`) so that they sum to the total, to
    /// f64 rounding. Dropped records stay 0. Returns the miss when the
    /// bounds do not let the kept records reach the total.
    pub fn apply(&self, w: &mut [f64]) -> Option<TotalMiss> {
        let lo = |i: usize| self.floor.as_ref().map_or(0.0, |f| f[i]);
        let hi = |i: usize| self.cap.as_ref().map_or(f64::INFINITY, |c| c[i]);
        let kept: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0.0).collect();
        for &i in &kept {
            w[i] = w[i].max(lo(i)).min(hi(i));
        }
        let total = self.total?;
        let eval = |c: f64| {
            let scale = c.exp();
            kept.iter().fold(ShiftSums::default(), |s, &i| {
                let v = w[i] * scale;
                let (l, h) = (lo(i), hi(i));
                let b = v.min(h).max(l);
                s.merge(ShiftSums::of(b, b == v && v > l && v < h))
            })
        };
        let c = solve_shift(total, 4.0 * f64::EPSILON, eval);
        let scale = c.exp();
        for &i in &kept {
            w[i] = (w[i] * scale).min(hi(i)).max(lo(i));
        }
        TotalMiss::of(Some(total), w)
    }
}

/// `lo` rounded up to f32 (so the f32 floor is never below it) and the
/// smallest f32 log-weight whose weight is at least that floor on either
/// backend (the mirror of the caps' bound, with the same margin).
pub fn floor_bounds(lo: f64) -> (f32, f32) {
    let up = |x: f64| {
        let v = x as f32;
        if (v as f64) < x {
            v.next_up()
        } else {
            v
        }
    };
    let floor = up(lo);
    (floor, up((floor as f64 * (1.0 + (-20f64).exp2())).ln()))
}

/// Refuses bounds that leave no room, in one line naming the settings as
/// `naming` spells them: a lower bound above a record's cap, a conserved
/// total above the sum of every record's cap, or below the smallest
/// lower bound (no record could then be kept).
pub fn check_conflicts(
    floor: Option<&[f64]>,
    cap: Option<&[f64]>,
    total: Option<f64>,
    naming: Naming,
) -> Result<()> {
    let name = |n: &str| naming.setting(n);
    if let (Some(lo), Some(hi)) = (floor, cap) {
        if let Some(i) = (0..lo.len()).find(|&i| lo[i] > hi[i]) {
            return Err(L0Error::config(format!(
                "{} puts record {i}'s lower bound {} above its cap {} ({} / {})",
                name("min_weight_ratio"),
                lo[i],
                hi[i],
                name("max_weight"),
                name("max_weight_ratio")
            )));
        }
    }
    let Some(x) = total else { return Ok(()) };
    if let Some(hi) = cap {
        let most: f64 = hi.iter().sum();
        if x > most {
            return Err(L0Error::config(format!(
                "{} {x} is above what the weight caps allow: the {} records' caps sum to {most}",
                name("conserve_total"),
                hi.len()
            )));
        }
    }
    if let Some(lo) = floor {
        let least = lo.iter().copied().fold(f64::INFINITY, f64::min);
        if x < least {
            return Err(L0Error::config(format!(
                "{} {x} is below every record's lower bound (the smallest is {least}), so no record could be kept",
                name("conserve_total")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shift of weights without bounds is `ln(X / sum)`, found in one
    /// Newton step; with bounds the root of the clamped sum, checked
    /// against bisection of the same function.
    #[test]
    fn the_shift_is_the_root_of_the_clamped_sum() {
        let w = [1.0, 2.0, 3.0, 4.0];
        let plain = |c: f64| {
            w.iter().fold(ShiftSums::default(), |s, &v| {
                s.merge(ShiftSums::of(v * c.exp(), true))
            })
        };
        let c = solve_shift(20.0, 1e-14, plain);
        assert!((c - 2f64.ln()).abs() < 1e-12, "{c}");
        let (lo, hi) = ([1.5, 0.0, 0.0, 0.0], [10.0, 2.5, 10.0, 5.0]);
        let clamped = |c: f64| {
            (0..4).fold(ShiftSums::default(), |s, i| {
                let v = w[i] * c.exp();
                let b = v.min(hi[i]).max(lo[i]);
                s.merge(ShiftSums::of(b, b == v && v > lo[i] && v < hi[i]))
            })
        };
        let c = solve_shift(15.0, 1e-14, clamped);
        let (mut a, mut b) = (-10.0f64, 10.0f64);
        for _ in 0..200 {
            let m = 0.5 * (a + b);
            if clamped(m).sum < 15.0 {
                a = m
            } else {
                b = m
            }
        }
        assert!((c - a).abs() < 1e-12, "{c} vs bisection {a}");
        assert!((clamped(c).sum - 15.0).abs() < 1e-12);
        // Out of reach above (caps sum to 27.5) and below (nothing under 1.5).
        assert_eq!(solve_shift(30.0, 1e-14, clamped), MAX_SHIFT);
        // (Below: the free records' weights only tend to 0, so the shift
        // ends at the bracket's end, not on a flat stretch.)
        assert!((solve_shift(1.0, 1e-14, clamped) + MAX_SHIFT).abs() < 1e-6);
        // Nothing kept: no shift.
        assert_eq!(solve_shift(1.0, 1e-14, |_| ShiftSums::default()), 0.0);
    }

    /// The reported weights: dropped ones stay 0, kept ones are raised to
    /// their floor and held to their cap, then all kept ones scale to sum
    /// to the total exactly; a total out of reach is said.
    #[test]
    fn reported_weights_keep_their_bounds_and_sum_to_the_total() {
        let b = ReportBounds {
            floor: Some(vec![1.0, 1.0, 2.0, 1.0]),
            cap: Some(vec![5.0, 5.0, 5.0, 3.0]),
            total: Some(10.0),
        };
        let mut w = vec![0.5, 0.0, 2.5, 2.0];
        assert_eq!(b.apply(&mut w), None);
        assert_eq!(w[1], 0.0);
        // Floors then one scale: (1, 2.5, 2) -> e^c (1, 2.5, 2) held to
        // [lo, cap]; 10 needs e^c = 10/5.5, putting record 3 over its cap
        // of 3, so e^c = (10 - 3)/3.5 = 2 for the others.
        assert!(
            (w[0] - 2.0).abs() < 1e-12 && (w[2] - 5.0).abs() < 1e-12,
            "{w:?}"
        );
        assert_eq!(w[3], 3.0);
        assert!((w.iter().sum::<f64>() - 10.0).abs() < 1e-12);
        let far = ReportBounds {
            total: Some(100.0),
            ..b.clone()
        };
        let mut w = vec![0.5, 0.0, 2.5, 2.0];
        let miss = far.apply(&mut w).unwrap();
        assert_eq!(w, vec![5.0, 0.0, 5.0, 3.0]);
        assert_eq!(
            miss.to_string(),
            "the conserved total 100 is out of reach: the 3 kept records sum to 13 with every weight at their caps"
        );
    }

    #[test]
    fn floors_round_up_and_their_log_bound_reaches_them() {
        for lo in [1e-3, 0.1, 1.0, 3.7, 1234.5678, 1e6] {
            let (f, p) = floor_bounds(lo);
            assert!(f as f64 >= lo);
            assert!(p.exp() >= f, "{lo}: exp({p}) = {} < {f}", p.exp());
            assert!(p.next_down().exp() < f * 1.0001);
        }
    }

    #[test]
    fn conflicts_are_refused_in_one_line() {
        let err = |f: Option<&[f64]>, c: Option<&[f64]>, t, n| {
            check_conflicts(f, c, t, n).unwrap_err().to_string()
        };
        assert_eq!(
            err(Some(&[1.0, 3.0]), Some(&[2.0, 2.0]), None, Naming::Cli),
            "invalid configuration: --min-weight-ratio puts record 1's lower bound 3 above its cap 2 (--max-weight / --max-weight-ratio)"
        );
        assert_eq!(
            err(None, Some(&[2.0, 2.5]), Some(5.0), Naming::Python),
            "invalid configuration: conserve_total 5 is above what the weight caps allow: the 2 records' caps sum to 4.5"
        );
        assert_eq!(
            err(Some(&[2.0, 3.0]), None, Some(1.5), Naming::Cli),
            "invalid configuration: --conserve-total 1.5 is below every record's lower bound (the smallest is 2), so no record could be kept"
        );
        assert!(check_conflicts(Some(&[1.0]), Some(&[2.0]), Some(2.0), Naming::Cli).is_ok());
    }
}
