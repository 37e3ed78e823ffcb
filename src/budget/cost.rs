//! The search's cost model: what a batch of models trained together costs,
//! in fits of the same epochs ([`batch_cost`], [`batch_cost_on`]).

use crate::limits::MAX_BATCH;

/// The fixed part of [`batch_cost`] for two or more models, in fits.
pub const BATCH_COST_FIXED: f64 = 1.55;

/// What each model adds to [`batch_cost`] for two or more models, in fits.
pub const BATCH_COST_PER_MODEL: f64 = 0.26;

/// A GPU batch of 8 models per epoch, in single-fit epochs: 3.7 (H200,
/// 146M nonzeros, sweep_bench at commit ad0bdd3; README's GPU section).
pub const GPU_BATCH_OF_8: f64 = 3.7;

/// [`batch_cost`] on the device that ran the batch: on the CPU as measured
/// there; on a GPU ([`crate::backend::Backend::on_gpu`]) a batch of `k`
/// models runs in one pass at the least of 1, 2, 4 or 8 lanes that holds
/// them, costed `1 + (GPU_BATCH_OF_8 - 1) (lanes - 1) / 7` fits (the
/// batch of 8 measured, narrower ones interpolated in lanes until measured),
/// more than [`MAX_BATCH`] models as several such passes.
pub fn batch_cost_on(gpu: bool, models: usize) -> f64 {
    if !gpu {
        return batch_cost(models);
    }
    let one = |k: usize| match k {
        0 => 0.0,
        k => {
            let lanes = k.next_power_of_two() as f64;
            1.0 + (GPU_BATCH_OF_8 - 1.0) * (lanes - 1.0) / 7.0
        }
    };
    (models / MAX_BATCH) as f64 * one(MAX_BATCH) + one(models % MAX_BATCH)
}

/// The estimated cost of training `models` models together, in fits of the
/// same epochs: 0, 1, then `BATCH_COST_FIXED + BATCH_COST_PER_MODEL x
/// models` (measured on the CPU; see the module docs). More than
/// [`MAX_BATCH`] models train as several passes of at most that many (the
/// default bracket of 9 as 8 + 1), each costed so.
pub fn batch_cost(models: usize) -> f64 {
    let one = |k: usize| match k {
        0 | 1 => k as f64,
        k => BATCH_COST_FIXED + BATCH_COST_PER_MODEL * k as f64,
    };
    let full = models / MAX_BATCH;
    full as f64 * one(MAX_BATCH) + one(models % MAX_BATCH)
}
