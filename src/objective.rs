//! One target's term of the calibration data loss, written once: the
//! squared scaled error of `mse` and `relative`, the capped absolute
//! relative error of `l1-relative`, and the tolerance band (a dead zone)
//! that any of them may have around each target.
//!
//! For target `q` with value `y`, estimate `ŷ = (M w)_q`, loss weight `g`,
//! error scale `d` and band half-width `b >= 0`:
//!
//! ```text
//! x = y - ŷ - b   if y - ŷ >  b
//!     y - ŷ + b   if y - ŷ < -b
//!     0           otherwise          (b = 0: x = y - ŷ)
//! e = x / d
//! Square:     l = g e^2               r = dl/dŷ = -2 g e / d
//! Abs(cap):   l = g min(|e|, cap)     r = -g sign(e) / d while |e| < cap, else 0
//! ```
//!
//! (`r` at `e = 0` is 0, the subgradient of `|e|` there.) The CPU residual,
//! the deterministic loss and the GPU kernel `residual`
//! (kernels/step.cu, its `target_term`) compute exactly this.

use crate::error::{L0Error, Result};

/// How a target's scaled error `e` becomes loss (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// `g e^2` (the `mse` and `relative` losses).
    Square,
    /// `g min(|e|, cap)` (`l1-relative`; `cap` is infinite without a cap).
    Abs {
        /// The most one target can cost before its weight `g`.
        cap: f64,
    },
}

/// Target `y`'s term `(l, r)`: its loss and the loss's derivative with
/// respect to the estimate `yhat`, for loss weight `g`, error scale `d` and
/// band half-width `band` (see the module's formulas).
#[inline]
pub fn target_term(y: f64, yhat: f64, g: f64, d: f64, band: f64, shape: Shape) -> (f64, f64) {
    let diff = y - yhat;
    let x = if band > 0.0 {
        dead_zone(diff, band)
    } else {
        diff
    };
    let e = x / d;
    match shape {
        Shape::Square => (g * e * e, -2.0 * g * e / d),
        Shape::Abs { cap } => {
            let a = e.abs();
            // A NaN e fails both tests and gives a NaN loss, which the
            // fit reports as divergence.
            let r = if e > 0.0 {
                -g / d
            } else if e < 0.0 {
                g / d
            } else {
                0.0
            };
            if a >= cap {
                (g * cap, 0.0)
            } else {
                (g * a, r)
            }
        }
    }
}

/// `diff` moved toward 0 by `band`, and 0 inside it (NaN stays NaN, so a
/// diverged estimate is still seen).
#[inline]
fn dead_zone(diff: f64, band: f64) -> f64 {
    if diff > band {
        diff - band
    } else if diff < -band {
        diff + band
    } else {
        diff * 0.0
    }
}

/// The scale of a target's reported relative error, `(yhat - y) / scale`:
/// `y + 1`, or 1 when that is 0.
pub fn rel_scale(target: f64) -> f64 {
    if target + 1.0 == 0.0 {
        1.0
    } else {
        target + 1.0
    }
}

/// The error scale `d` of `l1-relative`: `max(|y|, 1)`.
pub fn l1_scale(y: f64) -> f64 {
    y.abs().max(1.0)
}

/// The band half-widths `b_q = t_q |y_q + 1|` (`|y_q + 1|` is the scale of
/// a target's reported relative error, [`rel_scale`]), so
/// that a target is inside its band exactly when its reported relative
/// error is at most `t_q` in size; `tolerance` has one value per target, or
/// one for all. Refuses a tolerance that is negative or not finite, and a
/// list of the wrong length.
pub fn band_widths(y: &[f64], tolerance: &[f64]) -> Result<Vec<f64>> {
    let t_of = |q: usize| {
        if tolerance.len() == 1 {
            tolerance[0]
        } else {
            tolerance[q]
        }
    };
    if tolerance.len() != 1 && tolerance.len() != y.len() {
        return Err(L0Error::shape(
            "target tolerances (one per target, or one for all)",
            y.len(),
            tolerance.len(),
        ));
    }
    check_tolerances(tolerance, "target_tolerance")?;
    Ok(y.iter()
        .enumerate()
        .map(|(q, &v)| t_of(q) * rel_scale(v).abs())
        .collect())
}

/// Whether an estimate is inside its target's band of half-width `band`
/// (reported in targets.csv as `within_tolerance`).
pub fn within_band(y: f64, yhat: f64, band: f64) -> bool {
    (y - yhat).abs() <= band
}

/// Refuses a tolerance that is negative or not finite (`name`: the
/// setting as the caller spells it; one value stands for every target).
pub fn check_tolerances(tolerance: &[f64], name: &str) -> Result<()> {
    match tolerance.iter().position(|t| !(t.is_finite() && *t >= 0.0)) {
        None => Ok(()),
        Some(k) => {
            let which = match tolerance.len() {
                1 => String::new(),
                _ => format!(" of target {k}"),
            };
            Err(L0Error::config(format!(
                "{name}{which} must be a finite number >= 0, got {}",
                tolerance[k]
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss by its definition, computed apart: the distance from `yhat`
    /// to the band `[y - b, y + b]`, scaled, squared or capped.
    fn by_definition(y: f64, yhat: f64, g: f64, d: f64, b: f64, shape: Shape) -> f64 {
        let dist = if yhat < y - b {
            (y - b) - yhat
        } else if yhat > y + b {
            yhat - (y + b)
        } else {
            0.0
        };
        let e = dist / d;
        match shape {
            Shape::Square => g * e * e,
            Shape::Abs { cap } => g * e.min(cap),
        }
    }

    const SHAPES: [Shape; 3] = [
        Shape::Square,
        Shape::Abs { cap: f64::INFINITY },
        Shape::Abs { cap: 0.3 },
    ];

    #[test]
    fn the_term_is_the_definition_and_r_its_derivative() {
        let (y, g, d) = (100.0, 0.7, 101.0);
        for shape in SHAPES {
            for b in [0.0, 5.0] {
                for yhat in [40.0, 80.0, 94.0, 97.0, 103.0, 107.0, 130.0, 160.0] {
                    let (l, r) = target_term(y, yhat, g, d, b, shape);
                    let want = by_definition(y, yhat, g, d, b, shape);
                    assert!(
                        (l - want).abs() <= 1e-15 * want.max(1.0),
                        "{shape:?} {b} {yhat}"
                    );
                    let h = 1e-4;
                    let fd = (by_definition(y, yhat + h, g, d, b, shape)
                        - by_definition(y, yhat - h, g, d, b, shape))
                        / (2.0 * h);
                    assert!(
                        (r - fd).abs() <= 1e-9,
                        "{shape:?} b={b} yhat={yhat}: r {r} fd {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn inside_the_band_nothing_is_lost_or_pulled() {
        for shape in SHAPES {
            for yhat in [95.0, 99.0, 100.0, 104.999] {
                assert_eq!(target_term(100.0, yhat, 1.0, 101.0, 5.0, shape), (0.0, 0.0));
                assert!(within_band(100.0, yhat, 5.0));
            }
        }
        assert!(!within_band(100.0, 105.5, 5.0));
    }

    #[test]
    fn without_a_band_square_is_the_reference_formula_bit_for_bit() {
        for (y, yhat, g, d) in [
            (3.0, 2.2, 0.5, 4.0),
            (-0.3, 7.1, 1.0, 1.0),
            (1e9, 1.1e9, 0.25, 1e9 + 1.0),
        ] {
            let e = (y - yhat) / d;
            let (l, r) = target_term(y, yhat, g, d, 0.0, Shape::Square);
            assert_eq!(l.to_bits(), (g * e * e).to_bits());
            assert_eq!(r.to_bits(), (-2.0 * g * e / d).to_bits());
        }
    }

    #[test]
    fn a_nan_estimate_gives_a_nan_loss_with_or_without_a_band() {
        for shape in SHAPES {
            for b in [0.0, 5.0] {
                assert!(
                    target_term(1.0, f64::NAN, 1.0, 2.0, b, shape).0.is_nan(),
                    "{shape:?} {b}"
                );
            }
        }
    }

    #[test]
    fn capped_targets_cost_the_cap_and_pull_nothing() {
        let (l, r) = target_term(100.0, 200.0, 2.0, 100.0, 0.0, Shape::Abs { cap: 0.5 });
        assert_eq!((l, r), (1.0, 0.0));
        let (l, r) = target_term(100.0, 120.0, 2.0, 100.0, 0.0, Shape::Abs { cap: 0.5 });
        assert!((l - 0.4).abs() < 1e-15);
        assert_eq!(r, 0.02);
    }

    #[test]
    fn band_widths_follow_the_reported_relative_error() {
        assert_eq!(
            band_widths(&[99.0, -3.0, -1.0], &[0.1]).unwrap(),
            vec![10.0, 0.2, 0.1]
        );
        assert_eq!(
            band_widths(&[9.0, 19.0], &[0.5, 0.0]).unwrap(),
            vec![5.0, 0.0]
        );
        assert_eq!(
            band_widths(&[1.0, 2.0, 3.0], &[0.1, 0.2])
                .unwrap_err()
                .to_string(),
            "shape mismatch: target tolerances (one per target, or one for all): expected 3, got 2"
        );
        assert_eq!(
            band_widths(&[1.0, 2.0], &[0.1, -0.2]).unwrap_err().to_string(),
            "invalid configuration: target_tolerance of target 1 must be a finite number >= 0, got -0.2"
        );
        assert_eq!(
            band_widths(&[1.0], &[f64::NAN]).unwrap_err().to_string(),
            "invalid configuration: target_tolerance must be a finite number >= 0, got NaN"
        );
        assert_eq!(l1_scale(-0.5), 1.0);
        assert_eq!(l1_scale(-250.0), 250.0);
    }
}
