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

use crate::error::{check_finite_scalar, L0Error, Result};
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

impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// At `f32` the exponential and logarithm are the branch-free polynomial
/// forms of [`exp_f32`] and [`ln_f32`] (within 2 ulp of the correctly
/// rounded result), so the per-column loops vectorise; the CUDA kernels use
/// `expf`/`logf`, which are within 2 ulp as well.
impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        ln_f32(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

/// `e^x` in f32 without branches: `x = n ln2 + r` (ln2 split in two parts),
/// `e^r` by a degree-6 polynomial on `|r| <= ln2/2` (Cephes `expf`), times
/// `2^n` built from the exponent bits. Overflows to `inf` above 88.72 and
/// flushes to 0 below -87.33 (where the result would be subnormal).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let xc = x.clamp(-87.336_54, 88.722_84);
    // Round to nearest by the 1.5 * 2^23 trick: no SSE4.1 `round` needed.
    // `t` lies in [2^23, 2^24), where the f32 spacing is 1, so its low
    // mantissa bits hold the integer `n` itself: reading it from the bits
    // (not `n as i32`, a saturating conversion that AVX2 has no vector
    // instruction for, which left the loops calling this scalar) gives
    // the same integer.
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n in two factors, so n = 128 (near the overflow bound) stays representable.
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let y =
        e * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
    let y = if x > 88.722_84 { f32::INFINITY } else { y };
    let y = if x < -87.336_54 { 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `ln x` in f32 without branches for positive normal `x`: `x = m 2^e` with
/// `m` in `[sqrt(1/2), sqrt(2))`, `ln(m)` by the Cephes `logf` polynomial,
/// plus `e ln2` (split in two parts). Zero gives `-inf`, negatives and NaN
/// give NaN, `+inf` gives `+inf`.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // Subnormals are scaled into the normal range first.
    let subnormal = x > 0.0 && x.to_bits() >> 23 == 0;
    let bits = (if subnormal { x * 8_388_608.0 } else { x }).to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126 - if subnormal { 23 } else { 0 };
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    let small = m < SQRTHF;
    e -= small as i32;
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut p = 7.037_683_6e-2_f32;
    p = p * m - 1.151_461e-1;
    p = p * m + 1.167_699_9e-1;
    p = p * m - 1.242_014_1e-1;
    p = p * m + 1.424_932_3e-1;
    p = p * m - 1.666_805_8e-1;
    p = p * m + 2.000_071_4e-1;
    p = p * m - 2.499_999_4e-1;
    p = p * m + 0.333_333_33;
    let ef = e as f32;
    let mut y = m * z * p;
    y += -2.121_944_4e-4 * ef;
    y += -0.5 * z;
    let mut r = m + y;
    r += 0.693_359_4 * ef;
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        r
    }
}

/// `x` clamped to `[lo, hi]`, and whether it was strictly inside, which is
/// where torch (2.x) lets the gradient through: at exactly `lo` or `hi` the
/// gradient is zero.
#[inline(always)]
pub fn clamp_mask<T: Real>(x: T, lo: T, hi: T) -> (T, bool) {
    // Selects and a non-short-circuit `&`, no branches, so that loops
    // calling this vectorise (a NaN stays NaN, outside).
    let c = if x < lo { lo } else { x };
    let c = if c > hi { hi } else { c };
    (c, (x > lo) & (x < hi))
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestGate {
    /// `sigmoid(a / beta)`: the reference's choice (sharper 0/1 decisions).
    #[default]
    Temperature,
    /// `sigmoid(a)`: the estimator of Louizos et al.
    Paper,
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
        self.s_from_logit(a, self.noise_logit(u))
    }

    /// The part of [`Gate::noisy_s`] that depends on the draw alone,
    /// `ln u_c - ln(1 - u_c)`: models that share the noise (a λ sweep)
    /// compute it once per column.
    #[inline(always)]
    pub fn noise_logit(&self, u: T) -> T {
        let (uc, _) = clamp_mask(u, T::of(U_EPS), T::of(1.0 - U_EPS));
        uc.ln() - (T::of(1.0) - uc).ln()
    }

    /// [`Gate::noisy_s`] from the draw's [`Gate::noise_logit`]:
    /// `sigmoid((logit + a_c) / beta)`.
    #[inline(always)]
    pub fn s_from_logit(&self, a: T, logit: T) -> T {
        let bound = T::of(LOG_ALPHA_BOUND);
        let (ac, _) = clamp_mask(a, -bound, bound);
        sigmoid((logit + ac) / self.beta)
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

    /// The mean `E[z]` of the training gate at logit `a` (in f64): the
    /// chance it is fully open, `1 - u1`, plus the integral of the
    /// stretched gate over the draws `u0 < u < u1` that leave it strictly
    /// between 0 and 1, where it is smooth (8-point Gauss-Legendre; within
    /// 1e-7 of the exact mean). The conserved total's weights during
    /// training ([`crate::constraints`]). GPU twin: `gate_expected`
    /// (kernels/common.cuh).
    pub fn expected(&self, a: T) -> f64 {
        const NODES: [f64; 4] = [
            0.18343464249564978,
            0.525532409916329,
            0.7966664774136267,
            0.9602898564975362,
        ];
        const WEIGHTS: [f64; 4] = [
            0.36268378337836166,
            0.3137066458778869,
            0.22238103445337443,
            0.10122853629037706,
        ];
        let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
        let logit = |u: f64| (u / (1.0 - u)).ln();
        let bound = LOG_ALPHA_BOUND;
        let a = a.to_f64().clamp(-bound, bound);
        let (beta, gamma, width) = (self.beta.to_f64(), self.gamma.to_f64(), self.width.to_f64());
        // The draws where the stretched gate crosses 0 and 1.
        let u_at = |z: f64| sig(beta * logit((z - gamma) / width) - a);
        let (u0, u1) = (u_at(0.0), u_at(1.0));
        let (mid, half) = ((u1 + u0) / 2.0, (u1 - u0) / 2.0);
        let z = |u: f64| sig((logit(u) + a) / beta) * width + gamma;
        let inner: f64 = NODES
            .iter()
            .zip(WEIGHTS)
            .map(|(&x, w)| w * (z(mid + half * x) + z(mid - half * x)))
            .sum();
        (1.0 - u1) + half * inner
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
        let (gp, ga, _) = self.gradient_and_pi(f, a, g_w);
        (gp, ga)
    }

    /// [`ColumnRule::gradient`] and the column's L0 term `pi` (that of
    /// [`ColumnRule::penalties`]), which it computes on the way.
    #[inline(always)]
    pub fn gradient_and_pi(&self, f: &ColumnForward<T>, a: T, g_w: T) -> (T, T, T) {
        let gp = g_w * f.gate.z * f.dm;
        // A select, not a branch: the loops calling this vectorise.
        let gp_l2 = gp + self.lambda_l2 * (T::of(2.0) * f.m) * f.dm;
        let gp = if self.lambda_l2 != T::of(0.0) {
            gp_l2
        } else {
            gp
        };
        let (pi, dpi) = self.gate.l0_term(a);
        let ga = g_w * f.m * f.gate.dz_da + self.lambda_l0 * dpi;
        (gp, ga, pi)
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

/// The gate means `E[z](a)` ([`Gate::expected`]) tabulated on
/// [`GATE_MEAN_POINTS`] evenly spaced logits over `[-LOG_ALPHA_BOUND,
/// LOG_ALPHA_BOUND]` and read by linear interpolation in f32 (within 1e-6
/// of the exact mean): the conserved total's weights in training, at one
/// table read per column instead of sixteen logarithms and exponentials.
/// GPU twin: `gate_mean` (kernels/common.cuh), reading the same table.
#[derive(Clone, Debug, PartialEq)]
pub struct GateMeans {
    /// `E[z]` at the table's logits.
    pub values: Vec<f32>,
}

/// Points of [`GateMeans`]' table.
pub const GATE_MEAN_POINTS: usize = 16385;

impl GateMeans {
    /// The table of `gate`.
    pub fn new(gate: &Gate<f32>) -> Self {
        let h = 2.0 * LOG_ALPHA_BOUND / (GATE_MEAN_POINTS - 1) as f64;
        GateMeans {
            values: (0..GATE_MEAN_POINTS)
                .map(|k| gate.expected((-LOG_ALPHA_BOUND + k as f64 * h) as f32) as f32)
                .collect(),
        }
    }

    /// `E[z]` at logit `a` (clamped to the table), interpolated.
    #[inline(always)]
    pub fn at(&self, a: f32) -> f32 {
        let last = (GATE_MEAN_POINTS - 1) as f32;
        let bound = LOG_ALPHA_BOUND as f32;
        let x = ((a.clamp(-bound, bound) + bound) * (last / (2.0 * bound))).clamp(0.0, last);
        let k = (x as usize).min(GATE_MEAN_POINTS - 2);
        let t = x - k as f32;
        self.values[k] + t * (self.values[k + 1] - self.values[k])
    }
}

/// A kept record's weight held to its lower bound (`min_weight_ratio`,
/// [`crate::constraints`]): `max(w, floor)` when `w > 0`, else `w` (a
/// dropped record's 0; a signed coefficient, whose floor is 0, unchanged).
/// GPU twin: `kept_weight` (kernels/common.cuh).
#[inline(always)]
pub fn kept_weight<T: Real>(w: T, floor: T) -> T {
    if w > T::of(0.0) && w < floor {
        floor
    } else {
        w
    }
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

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn polynomial_exp_and_ln_are_within_two_ulp() {
        let mut worst = (0u32, 0u32);
        let mut x = -87.0f32;
        while x < 88.5 {
            let want = (x as f64).exp() as f32;
            worst.0 = worst.0.max(ulps(exp_f32(x), want));
            x += 0.0137;
        }
        // Every 997th bit pattern from the smallest subnormal to f32::MAX.
        for bits in (1u32..0x7f80_0000).step_by(997) {
            let x = f32::from_bits(bits);
            let want = (x as f64).ln() as f32;
            worst.1 = worst.1.max(ulps(ln_f32(x), want));
        }
        for u in [1e-6f32, 0.5, 1.0 - 1e-6, 0.999_999_9, 1.0] {
            assert!(ulps(ln_f32(u), (u as f64).ln() as f32) <= 2, "ln {u}");
        }
        assert!(
            worst.0 <= 2 && worst.1 <= 2,
            "worst ulps exp {} ln {}",
            worst.0,
            worst.1
        );
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert!(ln_f32(-1.0).is_nan());
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln_f32(1.0), 0.0);
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
