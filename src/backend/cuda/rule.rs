//! The per-column rule as the kernels take it: the f32 constants of one
//! model's gate, penalties and Adam step, one [`GpuRule`] per model.

use crate::backend::interface::Hyper;
use crate::hard_concrete::Magnitude;
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

/// The per-column rule as the kernels take it (`struct Rule` in
/// `kernels/common.cuh`): the f32 constants of
/// [`crate::hard_concrete::ColumnRule<f32>`], formed on the host exactly as
/// the CPU backend forms them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct GpuRule {
    beta: f32,
    gamma: f32,
    zeta: f32,
    width: f32,
    l0_shift: f32,
    lambda_l0: f32,
    lambda_l2: f32,
    magnitude: i32,
    use_gates: i32,
}

// SAFETY: plain old data with the C layout of `struct Rule`; all-zero bits
// are a valid value.
unsafe impl DeviceRepr for GpuRule {}
unsafe impl ValidAsZeroBits for GpuRule {}

impl GpuRule {
    /// The rule of `hyper`, formed as [`crate::backend::Hyper::rule`] forms
    /// the CPU's.
    fn of(hyper: &Hyper) -> Self {
        let rule = hyper.rule::<f32>();
        GpuRule {
            beta: rule.gate.beta,
            gamma: rule.gate.gamma,
            zeta: rule.gate.zeta,
            width: rule.gate.width,
            l0_shift: rule.gate.l0_shift,
            lambda_l0: rule.lambda_l0,
            lambda_l2: rule.lambda_l2,
            magnitude: match rule.magnitude {
                Magnitude::Exp => 0,
                Magnitude::Linear => 1,
            },
            use_gates: rule.use_gates as i32,
        }
    }
}

/// Each model's rule: `hyper` with L0 strength `lambdas[k]`.
pub(super) fn gpu_rules(hyper: &Hyper, lambdas: &[f64]) -> Vec<GpuRule> {
    lambdas
        .iter()
        .map(|&lambda_l0| {
            GpuRule::of(&Hyper {
                lambda_l0,
                ..*hyper
            })
        })
        .collect()
}
