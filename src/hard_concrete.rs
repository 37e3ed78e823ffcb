//! The per-column math of the Hard Concrete L0 relaxation, written once.
//!
//! Every backend evaluates exactly these formulas: the CPU backend calls the
//! functions below at `f32`, the CUDA kernels in `kernels/common.cuh`
//! transcribe them line by line, and the gradient tests call them at `f64`.
//!
//! # Model (Louizos, Welling & Kingma 2017; l0-python 0.6.2)
//!
//! Column `i` has a magnitude parameter `p` and a gate logit `a`:
//!
//! ```text
//! a_c  = clamp(a, -20, 20)                                  (LOG_ALPHA_BOUND)
//! u_c  = clamp(u, 1e-6, 1 - 1e-6),  u ~ U(0,1)              (training only)
//! s    = sigmoid((ln u_c - ln(1 - u_c) + a_c) / beta)       (training)
//! s    = sigmoid(a_c / beta)        temperature test gate   (inference, reference)
//! s    = sigmoid(a_c)               paper test gate         (inference, optional)
//! z    = clamp(s (zeta - gamma) + gamma, 0, 1)
//! m(p) = exp(p)  (calibration: weights >= 0)  |  p  (regression: either sign)
//! w    = m(p) z                                             (m(p) alone without gates)
//! L0   = sum_i sigmoid(a_c - beta ln(-gamma / zeta))        (expected active count)
//! L2   = sum_i m(p)^2
//! ```
//!
//! # Gradients
//!
//! With `g_w = dL_data/dw` (the backward SpMV `M^T r`) and the clamps
//! differentiated as torch does (gradient passes where `lo < x < hi`,
//! strictly, and is zero at the bounds and outside):
//!
//! ```text
//! dz/da  = [0 < s(zeta-gamma)+gamma < 1] [|a| < 20] (zeta - gamma) s (1 - s) / beta
//! dL/dp  = g_w z m'(p) + lambda_l2 2 m(p) m'(p)
//! dL/da  = g_w m(p) dz/da + lambda_l0 [|a| < 20] pi (1 - pi),   pi = sigmoid(a_c - beta ln(-gamma/zeta))
//! ```
//!
//! # Adam (torch.optim.Adam defaults, single-tensor path)
//!
//! ```text
//! m  <- m + (1 - b1)(g - m)           v <- v b2 + (1 - b2) g^2
//! bc1 = 1 - b1^t,  bc2 = 1 - b2^t     (in f64, as Python floats)
//! p  <- p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
//! ```

use std::ops::{Add, Div, Mul, Neg, Sub};

/// Bound applied to the gate logit before use (`LOG_ALPHA_BOUND`).
pub const LOG_ALPHA_BOUND: f64 = 20.0;
/// The uniform noise is clamped to `[U_EPS, 1 - U_EPS]`.
pub const U_EPS: f64 = 1e-6;
/// Adam's first-moment decay (torch default).
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay (torch default).
pub const ADAM_BETA2: f64 = 0.999;
/// Adam's denominator epsilon (torch default).
pub const ADAM_EPS: f64 = 1e-8;

/// The floating-point operations the formulas need, for `f32` and `f64`.
pub trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
    + 'static
{
    /// Converts (rounds) an `f64` constant.
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            #[inline(always)]
            fn of(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// `x` clamped to `[lo, hi]`, and whether it was strictly inside, which is
/// where torch (2.x) lets the gradient through: at exactly `lo` or `hi` the
/// gradient is zero.
#[inline(always)]
pub fn clamp_mask<T: Real>(x: T, lo: T, hi: T) -> (T, bool) {
    if x < lo {
        (lo, false)
    } else if x > hi {
        (hi, false)
    } else {
        (x, x > lo && x < hi)
    }
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::of(1.0) / (T::of(1.0) + (-x).exp())
}

/// How weights are built from the magnitude parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magnitude {
    /// `m(p) = exp(p)`: non-negative calibration weights (`p` is the log-weight).
    Exp,
    /// `m(p) = p`: signed regression coefficients.
    Linear,
}

impl Magnitude {
    /// `(m(p), m'(p))`.
    #[inline(always)]
    pub fn eval<T: Real>(self, p: T) -> (T, T) {
        match self {
            Magnitude::Exp => {
                let e = p.exp();
                (e, e)
            }
            Magnitude::Linear => (p, T::of(1.0)),
        }
    }
}

/// Which deterministic gate is used at test time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TestGate {
    /// `sigmoid(a / beta)`: the reference's choice (sharper 0/1 decisions).
    #[default]
    Temperature,
    /// `sigmoid(a)`: the estimator of Louizos et al.
    Paper,
}

/// The distribution's shape: temperature and stretch interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate<T> {
    /// Temperature `beta` (> 0).
    pub beta: T,
    /// Lower end of the stretch interval (< 0).
    pub gamma: T,
    /// Upper end of the stretch interval (> 1).
    pub zeta: T,
    /// `zeta - gamma`, formed in f64 and rounded once, as the reference does.
    pub width: T,
    /// `-beta ln(-gamma / zeta)`, the shift inside the L0 penalty.
    pub l0_shift: T,
}

/// A gate value and its derivative with respect to the gate logit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateValue<T> {
    /// The gate z in [0, 1].
    pub z: T,
    /// dz/da, zero where a clamp is active.
    pub dz_da: T,
}

impl<T: Real> Gate<T> {
    /// Builds the gate from `f64` hyperparameters, computing the L0 shift in
    /// the working precision as the reference does (`torch.tensor` is f32).
    pub fn new(beta: f64, gamma: f64, zeta: f64) -> Self {
        let (b, g, z) = (T::of(beta), T::of(gamma), T::of(zeta));
        Gate {
            beta: b,
            gamma: g,
            zeta: z,
            width: T::of(zeta - gamma),
            l0_shift: -b * (T::of(-gamma / zeta)).ln(),
        }
    }

    #[inline(always)]
    fn stretch(&self, s: T, pre_mask: bool) -> GateValue<T> {
        let sbar = s * self.width + self.gamma;
        let (z, inside) = clamp_mask(sbar, T::of(0.0), T::of(1.0));
        let dz_ds = if inside && pre_mask {
            self.width
        } else {
            T::of(0.0)
        };
        GateValue {
            z,
            dz_da: dz_ds * s * (T::of(1.0) - s),
        }
    }

    /// The training gate's pre-stretch value
    /// `s = sigmoid((ln u_c - ln(1 - u_c) + a_c) / beta)`.
    #[inline(always)]
    pub fn noisy_s(&self, a: T, u: T) -> T {
        let bound = T::of(LOG_ALPHA_BOUND);
        let (ac, _) = clamp_mask(a, -bound, bound);
        let (uc, _) = clamp_mask(u, T::of(U_EPS), T::of(1.0 - U_EPS));
        sigmoid((uc.ln() - (T::of(1.0) - uc).ln() + ac) / self.beta)
    }

    /// The training gate and `dz/da` from its pre-stretch value `s`
    /// ([`Gate::noisy_s`]) and the logit `a`.
    #[inline(always)]
    pub fn from_s(&self, a: T, s: T) -> GateValue<T> {
        let bound = T::of(LOG_ALPHA_BOUND);
        let (_, a_in) = clamp_mask(a, -bound, bound);
        let mut g = self.stretch(s, a_in);
        g.dz_da = g.dz_da / self.beta;
        g
    }

    /// The training gate for logit `a` and raw uniform draw `u`.
    #[inline(always)]
    pub fn sample(&self, a: T, u: T) -> GateValue<T> {
        self.from_s(a, self.noisy_s(a, u))
    }

    /// The deterministic test-time gate.
    #[inline(always)]
    pub fn deterministic(&self, a: T, rule: TestGate) -> T {
        let bound = T::of(LOG_ALPHA_BOUND);
        let (ac, _) = clamp_mask(a, -bound, bound);
        let s = match rule {
            TestGate::Temperature => sigmoid(ac / self.beta),
            TestGate::Paper => sigmoid(ac),
        };
        self.stretch(s, true).z
    }

    /// One column's L0 penalty term `pi` and `dpi/da`.
    #[inline(always)]
    pub fn l0_term(&self, a: T) -> (T, T) {
        let bound = T::of(LOG_ALPHA_BOUND);
        let (ac, a_in) = clamp_mask(a, -bound, bound);
        let pi = sigmoid(ac + self.l0_shift);
        let d = if a_in {
            pi * (T::of(1.0) - pi)
        } else {
            T::of(0.0)
        };
        (pi, d)
    }
}

/// The per-column regularisation strengths and switches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnRule<T> {
    /// The gate distribution.
    pub gate: Gate<T>,
    /// How the weight is built from its parameter.
    pub magnitude: Magnitude,
    /// Whether gates multiply the weights at all.
    pub use_gates: bool,
    /// L0 strength.
    pub lambda_l0: T,
    /// L2 strength (the term is left out entirely when zero, as the reference does).
    pub lambda_l2: T,
}

/// A column's training weight and what its gradient needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnForward<T> {
    /// w = m(p) z.
    pub w: T,
    /// m(p).
    pub m: T,
    /// m'(p).
    pub dm: T,
    /// The gate and its derivative (z = 1, dz/da = 0 without gates).
    pub gate: GateValue<T>,
}

impl<T: Real> ColumnRule<T> {
    /// The training weight of one column for parameters `(p, a)` and noise `u`.
    #[inline(always)]
    pub fn forward(&self, p: T, a: T, u: T) -> ColumnForward<T> {
        self.forward_s(p, a, self.gate.noisy_s(a, u))
    }

    /// As [`ColumnRule::forward`], from the gate's pre-stretch value `s`
    /// (ignored without gates).
    #[inline(always)]
    pub fn forward_s(&self, p: T, a: T, s: T) -> ColumnForward<T> {
        let (m, dm) = self.magnitude.eval(p);
        let gate = if self.use_gates {
            self.gate.from_s(a, s)
        } else {
            GateValue {
                z: T::of(1.0),
                dz_da: T::of(0.0),
            }
        };
        ColumnForward {
            w: m * gate.z,
            m,
            dm,
            gate,
        }
    }

    /// The deterministic (test-time) weight of one column.
    #[inline(always)]
    pub fn deterministic_weight(&self, p: T, a: T, rule: TestGate) -> T {
        let (m, _) = self.magnitude.eval(p);
        if self.use_gates {
            m * self.gate.deterministic(a, rule)
        } else {
            m
        }
    }

    /// `(dL/dp, dL/da)` for one column given `g_w = dL_data/dw`.
    #[inline(always)]
    pub fn gradient(&self, f: &ColumnForward<T>, a: T, g_w: T) -> (T, T) {
        let mut gp = g_w * f.gate.z * f.dm;
        if self.lambda_l2 != T::of(0.0) {
            gp = gp + self.lambda_l2 * (T::of(2.0) * f.m) * f.dm;
        }
        let (_, dpi) = self.gate.l0_term(a);
        let ga = g_w * f.m * f.gate.dz_da + self.lambda_l0 * dpi;
        (gp, ga)
    }

    /// The column's penalty terms `(pi, m(p)^2)`.
    #[inline(always)]
    pub fn penalties(&self, p: T, a: T) -> (T, T) {
        let (m, _) = self.magnitude.eval(p);
        (self.gate.l0_term(a).0, m * m)
    }
}

/// Adam's per-step scalars, computed once per step in f64 as torch does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// `lr / (1 - b1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - b2^t)`.
    pub bc2_sqrt: f64,
}

impl AdamStep {
    /// The scalars for 1-based step `t` at learning rate `lr`.
    pub fn new(lr: f64, t: u64) -> Self {
        let t = t as f64;
        AdamStep {
            step_size: lr / (1.0 - ADAM_BETA1.powf(t)),
            bc2_sqrt: (1.0 - ADAM_BETA2.powf(t)).sqrt(),
        }
    }
}

/// One Adam update of a parameter `p` with moments `(m, v)` and gradient `g`.
#[inline(always)]
pub fn adam_update<T: Real>(p: &mut T, m: &mut T, v: &mut T, g: T, s: AdamStep) {
    *m = *m + T::of(1.0 - ADAM_BETA1) * (g - *m);
    *v = *v * T::of(ADAM_BETA2) + T::of(1.0 - ADAM_BETA2) * g * g;
    let denom = v.sqrt() / T::of(s.bc2_sqrt) + T::of(ADAM_EPS);
    *p = *p + T::of(-s.step_size) * *m / denom;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate<f64> {
        Gate::new(2.0 / 3.0, -0.1, 1.1)
    }

    #[test]
    fn l0_shift_matches_closed_form() {
        let g = gate();
        let want = -(2.0f64 / 3.0) * (0.1f64 / 1.1).ln();
        assert!((g.l0_shift - want).abs() < 1e-15);
        assert!((g.l0_shift - 1.598_597_0).abs() < 1e-6);
    }

    #[test]
    fn gate_derivative_matches_finite_difference() {
        let g = gate();
        for &(a, u) in &[(0.3, 0.4), (-1.2, 0.7), (2.5, 0.05), (0.0, 0.5)] {
            let h = 1e-6;
            let fd = (g.sample(a + h, u).z - g.sample(a - h, u).z) / (2.0 * h);
            let an = g.sample(a, u).dz_da;
            assert!((fd - an).abs() < 1e-7, "a={a} u={u}: fd {fd} vs {an}");
        }
        // Saturated gate (z clamped to 1) and clamped logit pass no gradient.
        assert_eq!(g.sample(8.0, 0.9).z, 1.0);
        assert_eq!(g.sample(8.0, 0.9).dz_da, 0.0);
        assert_eq!(g.sample(25.0, 1e-9).dz_da, 0.0);
        let (_, d) = g.l0_term(25.0);
        assert_eq!(d, 0.0);
    }

    #[test]
    fn deterministic_gates_for_both_rules() {
        let g = gate();
        let s: f64 = 1.0 / (1.0 + (-(0.5f64 / (2.0 / 3.0))).exp());
        assert!((g.deterministic(0.5, TestGate::Temperature) - (s * 1.2 - 0.1)).abs() < 1e-15);
        let s: f64 = 1.0 / (1.0 + (-0.5f64).exp());
        assert!((g.deterministic(0.5, TestGate::Paper) - (s * 1.2 - 0.1)).abs() < 1e-15);
        assert_eq!(g.deterministic(-30.0, TestGate::Temperature), 0.0);
        assert_eq!(g.deterministic(30.0, TestGate::Temperature), 1.0);
    }

    #[test]
    fn adam_first_step_moves_by_lr_times_sign() {
        let (mut p, mut m, mut v) = (1.0f64, 0.0, 0.0);
        adam_update(&mut p, &mut m, &mut v, 3.0, AdamStep::new(0.1, 1));
        assert!((p - 0.9).abs() < 1e-8);
        assert!((m - 0.3).abs() < 1e-15);
        assert!((v - 0.009).abs() < 1e-15);
    }
}
