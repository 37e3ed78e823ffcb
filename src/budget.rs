//! Record budgets: find the L0 strength whose trained model keeps a given
//! number of records ([`fit_to_budget`]), for `l0 calibrate
//! --target-records K`.
//!
//! The search trains batches of the [`crate::sweep`] API: the models of a
//! batch are at the same step and trained together in one
//! [`sweep::advance`] call, the form that trains them in one pass over the
//! matrix per epoch. A model is continued exactly (advanced by `a` then `b`
//! epochs it is the single fit of `a + b`), so the search narrows down by
//! dropping models part-way and continuing the others:
//!
//! 1. **Bracket**: `bracket` λ log-spaced over `lambda_range`, trained for
//!    `bracket_share` of the epochs. Short counts only locate K roughly (a
//!    short count may be above its full-length count, gates closing under
//!    the L0 pull, or below it, gates that start closed opening), so they
//!    are trusted in λ order only: the narrowing interval is the hull of
//!    the bracket steps where the counts cross K or come within a factor
//!    [`SHORT_COUNT_SLACK`] of it, widened by one step on each side (none
//!    cross: the top two steps when every count is above K, the whole range
//!    when every count is below).
//! 2. **Narrow**: `narrow` λ log-spaced over that interval, trained from
//!    step 0 together to `narrow_share` of the epochs.
//!    **Adaptive** ([`Budget::slow`], on by default): the batch stops at
//!    the bracket's step on the way (no model changes by it), and the
//!    counts are taken as settled when, at the λ where these early counts
//!    cross K, the counts at `narrow_share` are within a factor 2
//!    ([`SlowSchedule::factor`]) of K. When they are not, or the early
//!    counts do not cross K at all, gates are still closing (or opening)
//!    fast: the batch goes on to the slow schedule's `narrow_share` (20%),
//!    the second drop is at its `second_share` (60%) and the refining
//!    batches may spend `extra_cost` (0.5) fits more ([`Budget::slowed`]);
//!    the first drop's previous look is then the counts at the budget's
//!    `narrow_share`, not the bracket's.
//! 3. **Continue**: the `keep` models nearest (in `ln λ`) to where K is
//!    expected at the full length are continued together to `second_share`
//!    of the epochs, then the `finalists` nearest of those to the full
//!    length; the others are dropped. Where K is expected: the λ at which
//!    the latest counts cross K (interpolated in `ln λ` vs `ln active`),
//!    moved by the drift of that crossing since the previous look (the
//!    bracket's counts for the first drop, the kept models' own for the
//!    second), extrapolated linearly in `ln epochs` to the full length.
//!    When the previous look has no crossing (all its counts above K: the
//!    crossing came down from beyond its range, by an unknown amount), the
//!    models from the crossing on in the drift's direction are kept.
//!    Counts keep drifting until the end (the demo's counts at 25% of the
//!    epochs are about twice the final ones), which is why the drops keep
//!    a margin and the end is checked, never assumed.
//! 4. **Refine**: when no full-length count is within the tolerance, a
//!    batch of `refine` new λ trained from scratch to the full length,
//!    placed where the full-length counts are expected to cross K: between
//!    the counts that straddle K, on the quadratic in `ln λ` through them
//!    and the next nearest count (else the straight line); with all counts
//!    on one side, from the nearest along the slope of the full-length
//!    counts, or with a single finalist along the slope of the counts at
//!    the last drop (a Newton step), at most one narrowing step beyond.
//!    Refining batches are trained as long as the estimated cost stays
//!    within `max_cost` fits.
//!
//! The model returned is the full-length one nearest to K in `ln active`
//! (ties: the larger λ), bit for bit the model `Calibration::fit` gives
//! with its `lambda_l0`, seed and options.
//!
//! ## Cost model and defaults
//!
//! A batch of `k` models trained together costs [`batch_cost`]`(k)` fits of
//! the same epochs: 1 for one model, `1.55 + 0.26 k` for more. On the CPU
//! a batch's time per epoch stays about flat through training, while a
//! single fit's falls as its gates close. Timed on the demo (250,000
//! columns, 2 cores, models near λ = 5.5e-6 where its 30,000-record budget
//! lies), per 250 epochs against a whole 1000-epoch fit, batches of 2, 3,
//! 4, 6 and 8 cost about 2.0, 2.3, 2.6, 3.1 and 3.6 fits of their epochs
//! (over epochs 500-1000 against the same epochs of the fit: 2.3, 2.7,
//! 3.0, 3.6, 4.3). `examples/sweep_bench` gives less against a denser fit
//! (λ = 1e-6): 1.5, 1.9, 2.1, 2.45, 2.95 over 60 epochs and 1.75, 2.1,
//! 2.2, 2.5, 2.8 over 1000. Two models together cost about two fits (a
//! pair at 5.5e-6 and 6e-6 on the demo: 2.1 fits over 1000 epochs), so
//! the search ends with one finalist: a second finalist costs as much as
//! a refining model, and the narrowing λ are about one step in `ln λ`
//! apart, too far for any of them to be likely within 5% of K.
//! More than [`MAX_BATCH`] models train as several passes, each costed.
//! [`BudgetFit::cost_fits`] sums `batch_cost(models) x epochs / E` over the
//! batches. With the defaults:
//!
//! | batch | models | share of the epochs | fits |
//! |---|---|---|---|
//! | bracket | 9 (8 + 1) | 0.05 | 0.23 |
//! | narrow | 8 | 0.1 | 0.36 |
//! | continue | 4 | 0.3 | 0.78 |
//! | continue | 1 | 0.6 | 0.60 |
//! | refine (when needed) | 1 | 1 | 1.00 |
//!
//! that is 1.97 fits when the finalist meets the budget and 2.97 when one
//! refining model is needed, within `max_cost` = 3, which leaves room for
//! exactly one refining batch (the cap is on the cost at exact shares: the
//! epochs that rounding the drops up to whole epochs adds, at most one per
//! batch, do not count against it). The slow schedule (and the earlier defaults:
//! drops at 20% and 60%, `max_cost` 3.5) costs 2.39 and 3.39.
//!
//! The adaptive rule, replayed as below (76 targets), took the slow
//! schedule for 23 and met 80% of the targets at 2.95 fits on average (at
//! most 3.39), against 79% at 3.25 for the earlier defaults and 72% at 2.83
//! for the fast schedule alone; on the demo it keeps the fast schedule for
//! 30000 and 10000 records (at 30000 the count at 10% is 1.97 times
//! under K at the early crossing's λ: close to the factor 2), and the tests'
//! 60 x 600 sparse truth, where no gate has closed by 5% of the epochs,
//! takes the slow one and meets its 150 (145 records).
//!
//! The fast schedule alone (`slow: None`), replayed on recorded count
//! trajectories (`examples/budget_record`: the demo, `geo:3000:60:20:30`,
//! `readme` and `geo:300:20:10:10` with gates starting at keep
//! probability 0.1; 19 targets each from 2% to 45% of the columns)
//! met a 5% tolerance for 72% of the targets at 2.8 fits on
//! average (at most 2.97), the earlier ones 79% at 3.25: the drops come
//! earlier, so the finalist, chosen on counts that drift more afterwards,
//! is further off, and the refining step from it misses more often
//! (mostly on `readme`, whose counts fall steeply in λ, and on problems
//! where few gates have closed by the first drop: the tests' 60 x 600
//! sparse truth keeps 108 records for a target of 150). The nearest model
//! is returned with `met = false`. Refining from scratch where the counts
//! at the second drop predict K, without continuing a finalist, met 69% at
//! 2.96 fits; two or three finalists without a refining model 11% on the
//! demo.

use std::time::Instant;

use crate::backend::BatchBackends;
use crate::calibration::{CalibrationParams, FitParams, Prepared, Progress};
use crate::error::{L0Error, Result};
use crate::limits::MAX_BATCH;
use crate::matrix::SparseMatrix;
use crate::naming::Naming;
use crate::sweep::{self, SweepModel};

/// How far (as a factor either way) a bracket model's short count may be
/// from the target while its full-length count still crosses it: short
/// counts on small problems have been seen at 0.5-0.6 of the full ones.
pub const SHORT_COUNT_SLACK: f64 = 2.0;

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

/// A record budget and how to search for it.
///
/// | field | default | valid |
/// |---|---|---|
/// | `target_records` | (required) | 1 ..= columns |
/// | `tolerance` | 0.05 | (0, 1): met when `|active - K| <= tolerance K` |
/// | `lambda_range` | (1e-9, 1e-1) | 0 < lo < hi, finite |
/// | `bracket` | 9 | >= 2: models of the bracketing batch |
/// | `bracket_share` | 0.05 | (0, 1]: share of the epochs of a bracket model |
/// | `narrow` | 8 | >= 1: models of the narrowing batch |
/// | `narrow_share` | 0.1 | (0, 1]: share of the epochs the narrowing batch trains |
/// | `keep` | 4 | 1 ..= `narrow`: models continued after it |
/// | `second_share` | 0.4 | [`narrow_share`, 1]: where the second drop is |
/// | `finalists` | 1 | 1 ..= `keep`: models continued to the full length |
/// | `refine` | 1 | >= 0: new full-length models per refining batch |
/// | `max_cost` | 3.0 | > 0: a refining batch starts only while the estimated cost stays within this many fits |
/// | `slow` | `Some(SlowSchedule::DEFAULT)` | the adaptive switch to later drops ([`SlowSchedule`]); None: never |
///
/// [`narrow_share`]: Budget::narrow_share
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Records to keep, `K`.
    pub target_records: usize,
    /// Relative tolerance on the active count.
    pub tolerance: f64,
    /// The L0 strengths searched, `(lo, hi)`.
    pub lambda_range: (f64, f64),
    /// Models in the bracketing batch.
    pub bracket: usize,
    /// Share of the epochs a bracket model trains.
    pub bracket_share: f64,
    /// Models in the narrowing batch.
    pub narrow: usize,
    /// Share of the epochs the narrowing batch trains before the first drop.
    pub narrow_share: f64,
    /// Models continued after the first drop.
    pub keep: usize,
    /// Share of the epochs at the second drop (none when it equals
    /// `narrow_share` or 1, or `finalists == keep`).
    pub second_share: f64,
    /// Models continued to the full length.
    pub finalists: usize,
    /// New full-length models per refining batch (0: none).
    pub refine: usize,
    /// The estimated cost, in fits ([`batch_cost`]), that a refining batch
    /// may bring the search up to.
    pub max_cost: f64,
    /// The adaptive switch to a slower schedule when the counts are still
    /// moving at the first drop (None: always this budget's schedule).
    pub slow: Option<SlowSchedule>,
}

/// The schedule an adaptive search ([`Budget::slow`]) switches to when its
/// counts have not settled by the first drop (the rule below): the narrowing
/// models are continued to `narrow_share`, the drops and the cost cap are
/// these instead of the budget's.
///
/// The rule: the narrowing batch is trained to the bracket's step first
/// (`bracket_share` of the epochs; splitting a batch changes no model);
/// where its counts there cross K (`ln λ` vs `ln active`), the counts at
/// the budget's first drop (`narrow_share`), interpolated at that λ, must
/// be within a factor `factor` of K. When they are not (or the early
/// counts do not cross K at all), gates are still closing or opening fast
/// and the drops are taken later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowSchedule {
    /// The largest ratio (either way) of the count at the first drop to K
    /// at the early crossing's λ that counts as settled (> 1).
    pub factor: f64,
    /// Share of the epochs the narrowing batch trains before the first
    /// drop (at least the budget's `narrow_share`).
    pub narrow_share: f64,
    /// Share of the epochs at the second drop.
    pub second_share: f64,
    /// Fits added to the budget's `max_cost` for the refining batches (the
    /// later drops cost more: 0.42 fits on the defaults).
    pub extra_cost: f64,
}

impl SlowSchedule {
    /// The default: a factor 2, drops at 20% and 60% of the epochs and
    /// half a fit more (with the default `max_cost`, 3.5 fits: the
    /// schedule of the earlier defaults).
    pub const DEFAULT: SlowSchedule = SlowSchedule {
        factor: 2.0,
        narrow_share: 0.2,
        second_share: 0.6,
        extra_cost: 0.5,
    };
}

/// One leg of the schedule: the models trained together up to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    /// [`Stage::Narrow`] for the first leg, [`Stage::Continue`] after.
    pub stage: Stage,
    /// Models in it.
    pub models: usize,
    /// The step (epochs since the start) it ends at.
    pub until: u64,
}

impl Budget {
    /// A budget of `target_records` with the default search.
    pub fn new(target_records: usize) -> Self {
        Budget {
            target_records,
            tolerance: 0.05,
            lambda_range: (1e-9, 1e-1),
            bracket: 9,
            bracket_share: 0.05,
            narrow: 8,
            narrow_share: 0.1,
            keep: 4,
            second_share: 0.4,
            finalists: 1,
            refine: 1,
            max_cost: 3.0,
            slow: Some(SlowSchedule::DEFAULT),
        }
    }

    /// The budget as it runs when its counts have not settled: the slow
    /// schedule's shares, `max_cost + extra_cost`, no further switch
    /// (itself without [`Budget::slow`]).
    pub fn slowed(&self) -> Budget {
        match self.slow {
            None => self.clone(),
            Some(s) => Budget {
                narrow_share: s.narrow_share,
                second_share: s.second_share,
                max_cost: self.max_cost + s.extra_cost,
                slow: None,
                ..self.clone()
            },
        }
    }

    /// Checks the budget against a matrix of `cols` columns.
    pub fn check(&self, cols: usize) -> Result<()> {
        let k = self.target_records;
        if k == 0 {
            return Err(L0Error::config(
                "a record budget must keep at least 1 record, got 0",
            ));
        }
        if k > cols {
            return Err(L0Error::config(format!(
                "cannot keep {k} records: the matrix has only {cols} columns"
            )));
        }
        let t = self.tolerance;
        if !(t.is_finite() && t > 0.0 && t < 1.0) {
            return Err(L0Error::config(format!(
                "the records tolerance must be a number between 0 and 1 (exclusive), got {t}"
            )));
        }
        let (lo, hi) = self.lambda_range;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi) {
            return Err(L0Error::config(format!(
                "a record budget's lambda range needs 0 < lo < hi, got {lo} and {hi}"
            )));
        }
        if self.bracket < 2 {
            return Err(L0Error::config(format!(
                "a record budget needs a bracket of at least 2 models, got {}",
                self.bracket
            )));
        }
        self.check_narrowing()?;
        let c = self.max_cost;
        if !(c.is_finite() && c > 0.0) {
            return Err(L0Error::config(format!(
                "a record budget's max cost must be a positive number of fits, got {c}"
            )));
        }
        if let Some(s) = self.slow {
            if !(s.factor.is_finite() && s.factor > 1.0) {
                return Err(L0Error::config(format!(
                    "a record budget's settling factor must be a number above 1, got {}",
                    s.factor
                )));
            }
            if !(s.extra_cost.is_finite() && s.extra_cost >= 0.0) {
                return Err(L0Error::config(format!(
                    "the slow schedule's extra cost must be a number of fits >= 0, got {}",
                    s.extra_cost
                )));
            }
            if s.narrow_share < self.narrow_share {
                return Err(L0Error::config(format!(
                    "the slow schedule's narrow share must be at least the narrow share {}, got {}",
                    self.narrow_share, s.narrow_share
                )));
            }
            self.slowed().check(cols).map_err(|e| match e {
                L0Error::InvalidConfig(m) => L0Error::config(format!("the slow schedule: {m}")),
                e => e,
            })?;
        }
        Ok(())
    }

    /// The models and shares of the narrowing and the drops.
    fn check_narrowing(&self) -> Result<()> {
        let (n, k, f) = (self.narrow, self.keep, self.finalists);
        if !(1 <= f && f <= k && k <= n) {
            return Err(L0Error::config(format!(
                "a record budget needs 1 <= finalists <= keep <= narrow models, got {f}, {k} and {n}"
            )));
        }
        let shares = [
            ("bracket", self.bracket_share, 0.0),
            ("narrow", self.narrow_share, 0.0),
            ("second drop", self.second_share, self.narrow_share),
        ];
        for (what, s, floor) in shares {
            let ok = if floor > 0.0 { s >= floor } else { s > 0.0 };
            if !(ok && s <= 1.0) {
                let low = if floor > 0.0 { "[narrow share" } else { "(0" };
                return Err(L0Error::config(format!(
                    "the {what} share must be in {low}, 1], got {s}"
                )));
            }
        }
        Ok(())
    }

    /// Whether `active` records meet the budget.
    pub fn met_by(&self, active: usize) -> bool {
        let k = self.target_records as f64;
        (active as f64 - k).abs() <= self.tolerance * k
    }

    /// Epochs of a bracket model when a full fit has `epochs` (at least 1).
    pub fn short_epochs(&self, epochs: u64) -> u64 {
        share_of(epochs, self.bracket_share)
    }

    /// The narrowing and continuing legs for fits of `epochs` epochs, in
    /// order; the last ends at the full length. A leg that would not
    /// advance (tiny `epochs`) is left out.
    pub fn plan(&self, epochs: u64) -> Vec<Leg> {
        let epochs = epochs.max(1);
        let first = share_of(epochs, self.narrow_share);
        let second = share_of(epochs, self.second_share);
        let mut legs = vec![Leg {
            stage: Stage::Narrow,
            models: self.narrow,
            until: first,
        }];
        let drops = [(second, self.keep), (epochs, self.finalists)];
        for (until, models) in drops {
            let last = legs[legs.len() - 1];
            if until > last.until {
                legs.push(Leg {
                    stage: Stage::Continue,
                    models: models.min(last.models),
                    until,
                });
            }
        }
        legs
    }

    /// How far `active` is from the target, `|ln active - ln K|`.
    fn miss(&self, active: usize) -> f64 {
        (log_count(active) - self.log_target()).abs()
    }

    fn log_target(&self) -> f64 {
        (self.target_records as f64).ln()
    }
}

/// `ceil(epochs x share)`, at least 1 and at most `epochs`.
fn share_of(epochs: u64, share: f64) -> u64 {
    let epochs = epochs.max(1);
    ((epochs as f64 * share).ceil() as u64).clamp(1, epochs)
}

/// Which step of the search a batch belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The short bracketing batch.
    Bracket,
    /// The narrowing batch, trained from scratch to the first drop.
    Narrow,
    /// Models kept at a drop, continued to the next drop or the end.
    Continue,
    /// New models trained from scratch to the full length.
    Refine,
}

impl Stage {
    /// "bracket", "narrow", "continue" or "refine".
    pub fn name(self) -> &'static str {
        match self {
            Stage::Bracket => "bracket",
            Stage::Narrow => "narrow",
            Stage::Continue => "continue",
            Stage::Refine => "refine",
        }
    }
}

/// A model at the end of one batch it was trained in.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// The stage of the batch.
    pub stage: Stage,
    /// Its L0 strength.
    pub lambda_l0: f64,
    /// Epochs it has trained in all (its step).
    pub epochs: u64,
    /// Its active count after them.
    pub active: usize,
}

/// One batch: models at the same step trained together in one
/// [`sweep::advance`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Its stage of the search.
    pub stage: Stage,
    /// Models in it.
    pub models: usize,
    /// Epochs each trained in it.
    pub epochs: u64,
}

/// The outcome of [`fit_to_budget`].
#[derive(Clone, Debug)]
pub struct BudgetFit {
    /// The full-length model whose count is nearest the target (in ratio).
    pub chosen: SweepModel,
    /// Its active count.
    pub active: usize,
    /// Whether it is within the tolerance.
    pub met: bool,
    /// Every model at the end of every batch it was in, in order.
    pub trials: Vec<Trial>,
    /// The batches, in order.
    pub batches: Vec<Batch>,
    /// Distinct models trained (bracket, narrowing and refining ones).
    pub models_trained: usize,
    /// Epochs trained, summed over the models.
    pub epochs_total: u64,
    /// Epochs of a full-length model.
    pub epochs: u64,
    /// Wall time of all the training.
    pub seconds: f64,
    /// The estimated cost in fits: `batch_cost_on(gpu, models) x epochs / E`
    /// summed over the batches ([`batch_cost_on`]: what a batch costs on the
    /// device that ran it).
    pub cost_fits: f64,
    /// The adaptive decision ([`SlowSchedule`]): `Some(true)` when the
    /// counts had settled by the first drop (the budget's own schedule),
    /// `Some(false)` when the slow schedule was taken, None when no
    /// decision was made (no [`Budget::slow`], or the bracket's step is not
    /// before the first drop).
    pub settled: Option<bool>,
    /// Backends built for the batches: 1 on a GPU, which keeps one for the
    /// whole search (the matrix uploaded once); on the CPU one per batch
    /// (its backend borrows the matrix: nothing of its size is copied).
    pub backends_built: usize,
    /// Seconds of `seconds` spent building backends and handing them
    /// batches (on a GPU: opening the device and uploading the problem).
    pub setup_seconds: f64,
    /// Why batches trained one model after another instead of in one pass
    /// ([`crate::calibration::FitReport::fallback`]), each reason once, in
    /// order; empty when every batch ran as one pass.
    pub fallbacks: Vec<String>,
}

impl BudgetFit {
    /// When the budget was not met, one line saying so, naming the
    /// nearest count among the models tried and what to change (None when
    /// met): the range's top when even its largest lambda_l0 keeps too many
    /// records, its bottom when its smallest keeps too few, else the
    /// epochs or the tolerance (the count jumps past K between strengths).
    /// Settings are named as `naming` spells them.
    pub fn shortfall(&self, budget: &Budget, naming: Naming) -> Option<String> {
        if self.met {
            return None;
        }
        let (lo, hi) = budget.lambda_range;
        let (k, lambda) = (budget.target_records, self.chosen.lambda_l0);
        let range = match naming {
            Naming::Cli => "--lambda-range LO:HI".to_string(),
            Naming::Python => "lambda_range=(lo, hi)".to_string(),
        };
        let epochs = naming.setting("epochs");
        let change = if self.active > k && lambda >= hi {
            format!("even the range's largest lambda_l0 keeps too many records: raise its top ({range}) or {epochs}")
        } else if self.active < k && lambda <= lo {
            format!("even the range's smallest lambda_l0 keeps too few records: lower its bottom ({range})")
        } else {
            format!(
                "the count jumps past {k} between the strengths tried: raise {epochs} (the counts settle as the gates train) or widen {}",
                naming.setting("records_tolerance")
            )
        };
        Some(format!(
            "no lambda_l0 in {lo:e}..{hi:e} tried in {} full fit(s) keeps {k} records within {}%; nearest tried: {} records at lambda_l0 {lambda:e}; {change}",
            self.full_fits(),
            100.0 * budget.tolerance,
            self.active,
        ))
    }

    /// Models trained to the full length (finalists and refining ones).
    pub fn full_fits(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.epochs == self.epochs && t.stage != Stage::Bracket)
            .count()
    }

    /// The batches' epochs summed, over the epochs of one fit: the search's
    /// passes over the matrix in fits, its cost when every batch trains in
    /// one pass per epoch (before the work per model).
    pub fn passes(&self, epochs: u64) -> f64 {
        let sum: u64 = self.batches.iter().map(|b| b.epochs).sum();
        sum as f64 / epochs.max(1) as f64
    }
}

/// `ln(active)`, with 0 records counted as half a record so that the log
/// stays finite.
fn log_count(active: usize) -> f64 {
    (active as f64).max(0.5).ln()
}

/// The narrowing interval from the bracket's `(λ, short count)` points, λ
/// ascending: the hull of the steps where the counts cross K and of the
/// counts within [`SHORT_COUNT_SLACK`] of K, widened by one step on each
/// side; with none, the top two steps (all counts above K) or the whole
/// range (all below).
fn first_interval(points: &[(f64, usize)], budget: &Budget) -> (f64, f64) {
    let k = budget.target_records;
    let near = |c: usize| budget.miss(c) <= SHORT_COUNT_SLACK.ln();
    let crosses = |i: usize| (points[i].1 > k) != (points[i + 1].1 > k);
    let last = points.len() - 1;
    let marked: Vec<usize> = (0..=last)
        .filter(|&i| near(points[i].1) || (i < last && crosses(i)) || (i > 0 && crosses(i - 1)))
        .collect();
    let (a, b) = match (marked.first(), marked.last()) {
        (Some(&a), Some(&b)) => (a.saturating_sub(1), (b + 1).min(last)),
        _ if points[0].1 > k => (last.saturating_sub(2), last),
        _ => (0, last),
    };
    (points[a].0, points[b].0)
}

/// `ln λ` where the counts of `points` (λ ascending) first cross K, by
/// straight-line interpolation of `ln active` in `ln λ`; None when every
/// count is on one side.
fn crossing(points: &[(f64, usize)], budget: &Budget) -> Option<f64> {
    let k = budget.target_records;
    if let Some(p) = points.iter().find(|p| p.1 == k) {
        return Some(p.0.ln());
    }
    points
        .windows(2)
        .find(|w| (w[0].1 > k) != (w[1].1 > k))
        .map(|w| line_root(w[0], w[1], budget.log_target()))
}

/// `ln active` of `points` (λ ascending) at `ln λ = x`, interpolated in
/// `ln λ`, held at the ends.
fn log_count_at(points: &[(f64, usize)], x: f64) -> f64 {
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return f64::NAN,
    };
    if x <= first.0.ln() {
        return log_count(first.1);
    }
    if x >= last.0.ln() {
        return log_count(last.1);
    }
    let i = points
        .iter()
        .position(|p| p.0.ln() >= x)
        .unwrap_or(points.len() - 1);
    let (a, b) = (points[i - 1], points[i]);
    let (xa, xb) = (a.0.ln(), b.0.ln());
    let f = (x - xa) / (xb - xa);
    log_count(a.1) + f * (log_count(b.1) - log_count(a.1))
}

/// The adaptive rule ([`SlowSchedule`]): whether the counts `now` (at the
/// first drop) at the λ where `early` (the same models earlier) crossed K
/// are within a factor `factor` of K. Not settled when `early` does not
/// cross K.
fn settled(early: &[(f64, usize)], now: &[(f64, usize)], budget: &Budget, factor: f64) -> bool {
    crossing(early, budget)
        .is_some_and(|x| (log_count_at(now, x) - budget.log_target()).abs() <= factor.ln())
}

/// Where the straight line through `(ln λ, ln active)` of `a` and `b` reaches
/// `ln K = target` (`a`'s λ when the counts are equal).
fn line_root(a: (f64, usize), b: (f64, usize), target: f64) -> f64 {
    let (xa, xb) = (a.0.ln(), b.0.ln());
    let (ya, yb) = (log_count(a.1), log_count(b.1));
    if ya == yb {
        return xa;
    }
    xa + (ya - target) / (ya - yb) * (xb - xa)
}

/// Which of the models `now` (`(λ, active)` at step `t`, λ ascending) to
/// keep: the `keep` nearest in `ln λ` (ties: the larger λ) to where K is
/// expected at step `epochs`. That is where `now` crosses K, moved by the
/// drift since `before` (points at step `t0`) extrapolated linearly in
/// `ln step`. When `before` does not cross K (all its counts on one side),
/// the drift has a known direction but no size: the models from the
/// crossing on in that direction come first. With no crossing in `now`:
/// the λ of the count nearest K.
fn survivors(
    now: &[(f64, usize)],
    t: u64,
    before: (&[(f64, usize)], u64),
    epochs: u64,
    keep: usize,
    budget: &Budget,
) -> Vec<usize> {
    let (points, t0) = before;
    let (centre, side) = match (crossing(now, budget), crossing(points, budget)) {
        (Some(x), Some(x0)) if t > t0 => {
            let rate = (x - x0) / (t as f64 / t0 as f64).ln();
            (x + rate * (epochs as f64 / t as f64).ln(), None)
        }
        (Some(x), None) => {
            // All counts above K before: they fell, K moves to smaller λ.
            let k = budget.target_records;
            let towards = points.first().map(|p| if p.1 > k { -1.0 } else { 1.0 });
            (x, towards)
        }
        (Some(x), _) => (x, None),
        (None, _) => (nearest(now, budget).map_or(0.0, |p| p.0.ln()), None),
    };
    // (off the drift's side, distance): kept in that order.
    let key = |p: &(f64, usize)| {
        let d = p.0.ln() - centre;
        (side.is_some_and(|s: f64| s * d < 0.0), d.abs())
    };
    let mut order: Vec<usize> = (0..now.len()).collect();
    order.sort_by(|&i, &j| {
        let ((oi, di), (oj, dj)) = (key(&now[i]), key(&now[j]));
        oi.cmp(&oj)
            .then(di.total_cmp(&dj))
            .then(now[j].0.total_cmp(&now[i].0))
    });
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// The order of `(λ, active)` points by nearness to K: by `|ln active -
/// ln K|`, ties to the larger λ.
fn by_miss(budget: &Budget, a: &(f64, usize), b: &(f64, usize)) -> std::cmp::Ordering {
    let (ma, mb) = (budget.miss(a.1), budget.miss(b.1));
    ma.total_cmp(&mb).then(b.0.total_cmp(&a.0))
}

/// The point whose count is nearest K ([`by_miss`]).
fn nearest<'a>(points: &'a [(f64, usize)], budget: &Budget) -> Option<&'a (f64, usize)> {
    points.iter().min_by(|a, b| by_miss(budget, a, b))
}

/// Where the full-length counts `full` (`(λ, active)`) are expected to cross
/// K, as `ln λ`: between the nearest counts above and below K, on the
/// quadratic through them and the next nearest count (the straight line
/// when that has no root between them); with all counts on one side,
/// [`beyond`] (`earlier`: the counts at the last drop).
fn refine_centre(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
) -> Option<f64> {
    let k = budget.target_records;
    let target = budget.log_target();
    let by_miss = |a: &&(f64, usize), b: &&(f64, usize)| by_miss(budget, a, b);
    let above = full.iter().filter(|p| p.1 > k).min_by(by_miss);
    let below = full.iter().filter(|p| p.1 < k).min_by(by_miss);
    let (Some(&a), Some(&b)) = (above, below) else {
        return beyond(full, earlier, budget, ln_step);
    };
    let line = line_root(a, b, target);
    let third = full
        .iter()
        .filter(|p| p.0 != a.0 && p.0 != b.0)
        .min_by(by_miss);
    Some(
        third
            .and_then(|&c| quadratic_root(a, b, c, target, line))
            .unwrap_or(line),
    )
}

/// Where K is expected when every count of `full` is on one side of it:
/// from the full-length count nearest K along the slope of `ln active` in
/// `ln λ` ([`falling_slope`]) of `full` when it has two counts or more,
/// else of `earlier` (the counts at the last drop), at most `ln step`
/// beyond the λ tried; `ln step` beyond them towards K (larger λ when the
/// counts are above) when there is no falling slope.
fn beyond(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
) -> Option<f64> {
    let anchor = *nearest(full, budget)?;
    let source = if full.len() >= 2 { full } else { earlier };
    let (lo, hi) = full
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0.ln()), hi.max(p.0.ln()))
        });
    let x = match falling_slope(source, budget) {
        Some(slope) => anchor.0.ln() + (budget.log_target() - log_count(anchor.1)) / slope,
        None if anchor.1 > budget.target_records => hi + ln_step,
        None => lo - ln_step,
    };
    Some(x.clamp(lo - ln_step, hi + ln_step))
}

/// The slope of `ln active` in `ln λ` between the first neighbours of
/// `points` (λ ascending) whose counts cross K, else between the two counts
/// nearest K; None unless it is negative (counts falling with λ).
fn falling_slope(points: &[(f64, usize)], budget: &Budget) -> Option<f64> {
    let k = budget.target_records;
    let pair = match points.windows(2).find(|w| (w[0].1 > k) != (w[1].1 > k)) {
        Some(w) => (w[0], w[1]),
        None => {
            let mut sorted = points.to_vec();
            sorted.sort_by(|a, b| by_miss(budget, a, b));
            (*sorted.first()?, *sorted.get(1)?)
        }
    };
    let (a, b) = pair;
    let slope = (log_count(b.1) - log_count(a.1)) / (b.0.ln() - a.0.ln());
    (slope < 0.0).then_some(slope)
}

/// The root between `a` and `b` (in `ln λ`) of the quadratic through the
/// `(ln λ, ln active)` of `a`, `b` and `c` reaching `target`, the one
/// nearest `guess`; None when it has none there.
fn quadratic_root(
    a: (f64, usize),
    b: (f64, usize),
    c: (f64, usize),
    target: f64,
    guess: f64,
) -> Option<f64> {
    let [(x0, y0), (x1, y1), (x2, y2)] = [a, b, c].map(|p| (p.0.ln(), log_count(p.1)));
    // Newton form: y = y0 + d01 (x - x0) + q (x - x0)(x - x1).
    let d01 = (y1 - y0) / (x1 - x0);
    let q = ((y2 - y1) / (x2 - x1) - d01) / (x2 - x0);
    let (qa, qb, qc) = (q, d01 - q * (x0 + x1), y0 - d01 * x0 + q * x0 * x1 - target);
    let roots = if qa.abs() < 1e-12 {
        vec![-qc / qb]
    } else {
        let disc = qb * qb - 4.0 * qa * qc;
        if disc < 0.0 {
            return None;
        }
        let r = disc.sqrt();
        vec![(-qb + r) / (2.0 * qa), (-qb - r) / (2.0 * qa)]
    };
    let (lo, hi) = (x0.min(x1), x0.max(x1));
    roots
        .into_iter()
        .filter(|r| r.is_finite() && (lo..=hi).contains(r))
        .min_by(|r, s| (r - guess).abs().total_cmp(&(s - guess).abs()))
}

/// `n` new λ for a refining batch: centred on [`refine_centre`], `ln_step /
/// (n + 1)` apart in `ln λ`, inside the budget's range and none already in
/// `full`.
fn refine_lambdas(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
    n: usize,
) -> Vec<f64> {
    let Some(centre) = refine_centre(full, earlier, budget, ln_step) else {
        return Vec::new();
    };
    let gap = ln_step / (n + 1) as f64;
    let (lo, hi) = budget.lambda_range;
    let mut out: Vec<f64> = (0..n)
        .map(|j| (centre + (j as f64 - (n - 1) as f64 / 2.0) * gap).exp())
        .map(|l| l.clamp(lo, hi))
        .filter(|l| full.iter().all(|p| p.0 != *l))
        .collect();
    out.dedup();
    out
}

fn active_of(s: &SweepModel) -> usize {
    s.model.active_weights().count
}

/// `(λ, active)` of some models.
type Points = Vec<(f64, usize)>;

fn points(models: &[SweepModel]) -> Points {
    models.iter().map(|s| (s.lambda_l0, active_of(s))).collect()
}

/// The batches trained so far, and a way to train one more: on inputs
/// checked once and one backend kept for all of them where the device
/// allows ([`BatchBackends`]: on a GPU the matrix is uploaded once).
struct Ledger<'a> {
    m: &'a SparseMatrix,
    params: &'a CalibrationParams,
    opts: &'a FitParams,
    prepared: &'a Prepared,
    backends: BatchBackends<'a>,
    /// Why batches did not run as one pass, each reason once.
    fallbacks: Vec<String>,
    epochs: u64,
    trials: Vec<Trial>,
    batches: Vec<Batch>,
    seconds: f64,
    cost_fits: f64,
    /// How much `cost_fits` may exceed the schedule's cost at exact shares:
    /// each batch's epochs are a difference of drops rounded up to whole
    /// epochs, so each may run one epoch more than its share.
    rounding: f64,
}

impl Ledger<'_> {
    /// Starts one model per `lambdas[k]` and trains them together for
    /// `epochs`.
    fn start(
        &mut self,
        stage: Stage,
        lambdas: &[f64],
        epochs: u64,
        on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
    ) -> Result<Vec<SweepModel>> {
        let models = sweep::start(self.m.cols(), self.params, lambdas)?;
        self.train(stage, models, epochs, on_progress)
    }

    /// Trains `models` (all at the same step) together `epochs` more in
    /// one [`sweep::advance`] call; progress reports count each model's
    /// epochs from its start.
    fn train(
        &mut self,
        stage: Stage,
        mut models: Vec<SweepModel>,
        epochs: u64,
        on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
    ) -> Result<Vec<SweepModel>> {
        let lambdas: Vec<f64> = models.iter().map(|s| s.lambda_l0).collect();
        let done = models.first().map_or(0, |s| s.report.epochs);
        let clock = Instant::now();
        sweep::advance_on(
            &mut models,
            self.prepared,
            &mut self.backends,
            self.opts,
            epochs,
            &mut |k, p| {
                let p = Progress {
                    epoch: done + p.epoch,
                    epochs: done + p.epochs,
                    ..p.clone()
                };
                on_progress(stage, lambdas[k], &p)
            },
        )?;
        self.seconds += clock.elapsed().as_secs_f64();
        let cost = batch_cost_on(self.backends.on_gpu, models.len()) / self.epochs as f64;
        self.cost_fits += cost * epochs as f64;
        self.rounding += cost;
        for why in models.iter().filter_map(|s| s.report.fallback.as_ref()) {
            if !self.fallbacks.contains(why) {
                self.fallbacks.push(why.clone());
            }
        }
        self.batches.push(Batch {
            stage,
            models: models.len(),
            epochs,
        });
        self.trials.extend(models.iter().map(|s| Trial {
            stage,
            lambda_l0: s.lambda_l0,
            epochs: s.report.epochs,
            active: active_of(s),
        }));
        Ok(models)
    }
}

/// Trains models with `params` and `opts` (its `lambda_l0` is ignored,
/// `opts.epochs` is the full length) until one keeps `budget` records
/// within its tolerance, as laid out in the module docs, calling
/// `on_progress(stage, lambda_l0, progress)` at each model's reports (its
/// `epoch` and `epochs` count from the model's start). A budget that no λ
/// tried meets is not an error: the result is the nearest model with `met
/// = false` ([`BudgetFit::shortfall`] words it).
pub fn fit_to_budget(
    m: &SparseMatrix,
    y: &[f64],
    params: &CalibrationParams,
    opts: &FitParams,
    budget: &Budget,
    on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
) -> Result<BudgetFit> {
    budget.check(m.cols())?;
    if !params.use_gates {
        return Err(L0Error::config(
            "a record budget needs gates: without them every record keeps a weight",
        ));
    }
    let epochs = opts.epochs.max(1);
    let (lo, hi) = budget.lambda_range;
    let grid = sweep::lambda_grid(lo, hi, budget.bracket)?;
    let bracket = sweep::start(m.cols(), params, &grid)?;
    let prepared = bracket[0].model.prepare(m, y, opts)?;
    let mut ledger = Ledger {
        m,
        params,
        opts,
        prepared: &prepared,
        backends: prepared.backends(m, y, opts),
        fallbacks: Vec::new(),
        epochs,
        trials: Vec::new(),
        batches: Vec::new(),
        seconds: 0.0,
        cost_fits: 0.0,
        rounding: 0.0,
    };
    let short = budget.short_epochs(epochs);
    let bracket = ledger.train(Stage::Bracket, bracket, short, on_progress)?;
    let (a, b) = first_interval(&points(&bracket), budget);
    let ln_step = match budget.narrow {
        1 => (hi / lo).ln() / (budget.bracket - 1) as f64,
        n => (b / a).ln() / (n - 1) as f64,
    };
    let lambdas = sweep::lambda_grid(a, b, budget.narrow)?;
    let narrowed = narrow(
        &mut ledger,
        &lambdas,
        (points(&bracket), short),
        budget,
        on_progress,
    )?;
    let settled = narrowed.settled;
    let schedule = narrowed.schedule.clone();
    let (full, earlier) = continue_survivors(&mut ledger, narrowed, on_progress)?;
    let full = refine(&mut ledger, full, &earlier, &schedule, ln_step, on_progress)?;
    let chosen = full
        .into_iter()
        .min_by(|s, t| {
            let (ps, pt) = ((s.lambda_l0, active_of(s)), (t.lambda_l0, active_of(t)));
            by_miss(budget, &ps, &pt)
        })
        .ok_or_else(|| L0Error::config("a record budget trained no full model"))?;
    let active = active_of(&chosen);
    let refined = ledger.batches.iter().filter(|b| b.stage == Stage::Refine);
    Ok(BudgetFit {
        met: budget.met_by(active),
        active,
        chosen,
        models_trained: budget.bracket + budget.narrow + refined.map(|b| b.models).sum::<usize>(),
        epochs_total: ledger
            .batches
            .iter()
            .map(|b| b.models as u64 * b.epochs)
            .sum(),
        epochs,
        trials: ledger.trials,
        batches: ledger.batches,
        seconds: ledger.seconds,
        cost_fits: ledger.cost_fits,
        settled,
        backends_built: ledger.backends.built,
        setup_seconds: ledger.backends.setup_seconds,
        fallbacks: ledger.fallbacks,
    })
}

/// The narrowing models at the first drop, with the schedule that goes on
/// from there.
struct Narrowed {
    models: Vec<SweepModel>,
    /// The step they are at.
    t: u64,
    /// The previous look at the drift: points and their step.
    before: (Points, u64),
    /// The budget's schedule, or its slow one ([`Budget::slowed`]).
    schedule: Budget,
    settled: Option<bool>,
}

/// The narrowing batch at `lambdas`, trained to the first drop. With
/// [`Budget::slow`] (and the bracket's step before the first drop), it is
/// trained to the bracket's step first; when its counts have not
/// [`settled`] by the first drop, it goes on to the slow schedule's first
/// drop, and that schedule is the one returned. `bracket`: the bracket's
/// points and step, the first look at the drift.
fn narrow(
    ledger: &mut Ledger,
    lambdas: &[f64],
    bracket: (Points, u64),
    budget: &Budget,
    on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
) -> Result<Narrowed> {
    let first = budget.plan(ledger.epochs)[0].until;
    let look = bracket.1;
    let Some(slow) = budget.slow.filter(|_| look < first) else {
        let models = ledger.start(Stage::Narrow, lambdas, first, on_progress)?;
        return Ok(Narrowed {
            models,
            t: first,
            before: bracket,
            schedule: Budget {
                slow: None,
                ..budget.clone()
            },
            settled: None,
        });
    };
    let models = ledger.start(Stage::Narrow, lambdas, look, on_progress)?;
    let early = points(&models);
    let models = ledger.train(Stage::Narrow, models, first - look, on_progress)?;
    let now = points(&models);
    if settled(&early, &now, budget, slow.factor) {
        return Ok(Narrowed {
            models,
            t: first,
            before: bracket,
            schedule: Budget {
                slow: None,
                ..budget.clone()
            },
            settled: Some(true),
        });
    }
    let schedule = budget.slowed();
    let until = schedule.plan(ledger.epochs)[0].until;
    // The drift is read between the last two looks (when the slow first
    // drop rounds to the fast one, those at the bracket's step and now).
    let (models, before) = if until > first {
        let models = ledger.train(Stage::Narrow, models, until - first, on_progress)?;
        (models, (now, first))
    } else {
        (models, (early, look))
    };
    Ok(Narrowed {
        models,
        t: until,
        before,
        schedule,
        settled: Some(false),
    })
}

/// The survivors of the narrowed models continued through the drops of
/// their schedule ([`Budget::plan`]); returns the models at the full length
/// and the counts of all the models at the last drop (none without a drop).
fn continue_survivors(
    ledger: &mut Ledger,
    narrowed: Narrowed,
    on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
) -> Result<(Vec<SweepModel>, Points)> {
    let Narrowed {
        mut models,
        mut t,
        before: (mut before, mut t0),
        schedule,
        ..
    } = narrowed;
    let mut now = Vec::new();
    for leg in schedule.plan(ledger.epochs).iter().skip(1) {
        if leg.until <= t {
            continue;
        }
        now = points(&models);
        let keep = survivors(&now, t, (&before, t0), ledger.epochs, leg.models, &schedule);
        models = models
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, s)| s)
            .collect();
        (before, t0) = (points(&models), t);
        models = ledger.train(Stage::Continue, models, leg.until - t, on_progress)?;
        t = leg.until;
    }
    Ok((models, now))
}

/// Refining batches while no model of `full` meets the budget, a new λ is
/// left to try and the estimated cost stays within `max_cost`; returns
/// `full` with the new models. `earlier`: the counts at the last drop.
fn refine(
    ledger: &mut Ledger,
    mut full: Vec<SweepModel>,
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
    on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
) -> Result<Vec<SweepModel>> {
    let n = budget.refine;
    while n > 0 && !full.iter().any(|s| budget.met_by(active_of(s))) {
        // The cap is on the schedule's cost at exact shares: a refining
        // batch is not refused for the epochs that rounding added.
        if ledger.cost_fits + batch_cost_on(ledger.backends.on_gpu, n)
            > budget.max_cost + ledger.rounding + 1e-9
        {
            break;
        }
        let lambdas = refine_lambdas(&points(&full), earlier, budget, ln_step, n);
        if lambdas.is_empty() {
            break;
        }
        let epochs = ledger.epochs;
        full.extend(ledger.start(Stage::Refine, &lambdas, epochs, on_progress)?);
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(k: usize) -> Budget {
        Budget::new(k)
    }

    fn bracket(counts: &[usize]) -> Vec<(f64, usize)> {
        let grid = sweep::lambda_grid(1e-9, 1e-1, counts.len()).unwrap();
        grid.into_iter().zip(counts.iter().copied()).collect()
    }

    #[test]
    fn the_first_interval_widens_the_crossing_by_a_step_each_side() {
        // The demo's bracket: 30000 is crossed between 1e-5 and 1e-4.
        let c = [237690, 236625, 231424, 217010, 155313, 15853, 703, 2, 0];
        let (a, b) = first_interval(&bracket(&c), &budget(30000));
        assert_eq!((a, b), (bracket(&c)[3].0, bracket(&c)[6].0));
        // Flat counts within a factor 2 of K widen the interval to them.
        let c = [204, 197, 176, 171, 171, 171, 171, 155, 54];
        let (a, b) = first_interval(&bracket(&c), &budget(200));
        assert_eq!((a, b), (1e-9, 1e-1));
        // None cross: the top two steps, or everything.
        let c = [600; 9];
        let top = (bracket(&c)[6].0, 1e-1);
        assert_eq!(first_interval(&bracket(&c), &budget(150)), top);
        let c = [0; 9];
        assert_eq!(first_interval(&bracket(&c), &budget(150)), (1e-9, 1e-1));
    }

    #[test]
    fn the_default_plan_drops_at_a_tenth_and_two_fifths() {
        let leg = |stage, models, until| Leg {
            stage,
            models,
            until,
        };
        assert_eq!(
            Budget::new(10).plan(1000),
            [
                leg(Stage::Narrow, 8, 100),
                leg(Stage::Continue, 4, 400),
                leg(Stage::Continue, 1, 1000)
            ]
        );
        // Two epochs: the second drop falls on the first (both round up to
        // 1), so the finalist goes on from there; one: no drop.
        assert_eq!(
            Budget::new(10).plan(2),
            [leg(Stage::Narrow, 8, 1), leg(Stage::Continue, 1, 2)]
        );
        assert_eq!(Budget::new(10).plan(1), [leg(Stage::Narrow, 8, 1)]);
    }

    #[test]
    fn counts_are_settled_when_the_early_crossing_keeps_k_within_a_factor() {
        let b = budget(100);
        // Early counts cross 100 halfway (in ln λ) between 1e-4 and 1e-2.
        let early = [(1e-4, 1000), (1e-2, 10)];
        // Later counts at 1e-3 (interpolated): 1e-4 -> 400, 1e-2 -> 10:
        // sqrt(4000) = 63.2, a factor 1.58: settled.
        assert!(settled(&early, &[(1e-4, 400), (1e-2, 10)], &b, 2.0));
        // 1e-4 -> 100, 1e-2 -> 10: sqrt(1000) = 31.6, a factor 3.2: not.
        assert!(!settled(&early, &[(1e-4, 100), (1e-2, 10)], &b, 2.0));
        // The factor is the threshold either way.
        assert!(settled(&early, &[(1e-4, 100), (1e-2, 10)], &b, 3.2));
        // Counts that grew past 2K: not settled either.
        assert!(!settled(&early, &[(1e-4, 4000), (1e-2, 100)], &b, 2.0));
        // No early crossing (every count above K): not settled.
        assert!(!settled(
            &[(1e-4, 600), (1e-2, 600)],
            &[(1e-4, 100), (1e-2, 99)],
            &b,
            2.0
        ));
        // Beyond the points the count is held at the end.
        assert_eq!(
            log_count_at(&[(1e-4, 50), (1e-2, 10)], 1e-6f64.ln()),
            50f64.ln()
        );
    }

    #[test]
    fn the_slow_schedule_drops_later_and_may_cost_half_a_fit_more() {
        let b = budget(100);
        let slow = b.slowed();
        assert_eq!(slow.slow, None);
        assert_eq!((slow.narrow_share, slow.second_share), (0.2, 0.6));
        assert_eq!(slow.max_cost, 3.5);
        let until: Vec<u64> = slow.plan(1000).iter().map(|l| l.until).collect();
        assert_eq!(until, [200, 600, 1000]);
        let fast = Budget {
            slow: None,
            ..b.clone()
        };
        assert_eq!(fast.slowed(), fast);
    }

    #[test]
    fn the_cost_model_is_one_fit_alone_and_affine_in_batches() {
        assert_eq!(batch_cost(1), 1.0);
        assert!((batch_cost(2) - 2.07).abs() < 1e-12);
        assert!((batch_cost(8) - 3.63).abs() < 1e-12);
        // Past 8 models, passes of at most 8.
        assert!((batch_cost(9) - 4.63).abs() < 1e-12);
        assert!((batch_cost(18) - 2.0 * 3.63 - 2.07).abs() < 1e-12);
        // The default search without and with its refining model.
        let cost = |b: &[(usize, f64)]| -> f64 { b.iter().map(|&(k, s)| batch_cost(k) * s).sum() };
        let base = cost(&[(9, 0.05), (8, 0.1), (4, 0.3), (1, 0.6)]);
        assert!((base - 1.9715).abs() < 1e-9, "{base}");
        assert!(base + batch_cost(1) <= Budget::new(1).max_cost);
    }

    #[test]
    fn survivors_sit_where_the_drift_carries_the_crossing() {
        // Counts like the demo's: at 250 of 1000 epochs they cross 30000
        // near 1.49e-5, at 50 epochs (the bracket) near 5.26e-5: the
        // crossing moves -0.78 in ln λ per unit of ln epochs, so at 1000
        // epochs it is expected near 5.0e-6 (the demo's is 5.8e-6).
        let b = budget(30000);
        let now = [
            (1e-6, 146054),
            (2.683e-6, 97000),
            (7.197e-6, 50000),
            (1.931e-5, 25000),
            (5.179e-5, 13800),
            (1.389e-4, 6700),
            (3.728e-4, 3000),
            (1e-3, 164),
        ];
        let before = [(1e-5, 155313), (1e-4, 15853)];
        let keep = survivors(&now, 250, (&before, 50), 1000, 4, &b);
        assert_eq!(keep, [0, 1, 2, 3]);
        // Without drift (same step), the crossing itself.
        let keep = survivors(&now, 250, (&before, 250), 1000, 2, &b);
        assert_eq!(keep, [2, 3]);
        // The tests' sparse truth at 50 of 200 epochs: no gate had closed at
        // 10 (the bracket, all 600 above K), so the crossing (7.2e-2 now)
        // moves down by an unknown amount: the four below it are kept (the
        // full-length crossing is at 1.25e-2).
        let now = [
            (1e-3, 600),
            (1.931e-3, 600),
            (3.728e-3, 600),
            (7.197e-3, 596),
            (1.389e-2, 577),
            (2.683e-2, 496),
            (5.179e-2, 263),
            (1e-1, 88),
        ];
        let before = [(1e-3, 600), (1e-2, 600), (1e-1, 600)];
        let keep = survivors(&now, 50, (&before, 10), 200, 4, &budget(150));
        assert_eq!(keep, [3, 4, 5, 6]);
        // No crossing now: the count nearest K and its neighbours.
        let all_above = [(1e-3, 600), (1e-2, 590), (1e-1, 400)];
        let keep = survivors(&all_above, 10, (&all_above, 5), 20, 2, &budget(150));
        assert_eq!(keep, [1, 2]);
    }

    #[test]
    fn refining_interpolates_the_full_length_counts() {
        let b = budget(100);
        // A straight line in ln-ln: exact.
        let p = [(1e-3, 400), (1e-2, 25)];
        let x = refine_centre(&p, &[], &b, 1.0).unwrap();
        let line = 1e-5f64.sqrt().ln();
        assert!((x - line).abs() < 1e-12, "{}", x.exp());
        // A third count bends the curve: the root moves off the line.
        let p = [(1e-3, 400), (1e-2, 25), (1e-1, 20)];
        let x = refine_centre(&p, &[], &b, 1.0).unwrap();
        assert!(x < line && x > 1e-3f64.ln(), "{}", x.exp());
        // All above K: on the line beyond them, at most one step further.
        let p = [(1e-3, 400), (2e-3, 200)];
        let x = refine_centre(&p, &[], &b, 0.5).unwrap();
        assert!((x - (2e-3f64.ln() + 0.5)).abs() < 1e-12, "{}", x.exp());
        // Counts that do not fall with λ: one step towards K.
        let p = [(1e-3, 200), (2e-3, 200)];
        let x = refine_centre(&p, &[], &b, 0.5).unwrap();
        assert!((x - (2e-3f64.ln() + 0.5)).abs() < 1e-12, "{}", x.exp());
        let x = refine_centre(&[(1e-3, 50)], &[], &b, 0.5).unwrap();
        assert!((x - (1e-3f64.ln() - 0.5)).abs() < 1e-12, "{}", x.exp());
        // Two new λ straddle the centre; a λ already trained is not repeated.
        let l = refine_lambdas(&[(1e-3, 400), (1e-2, 25)], &[], &b, 0.9, 2);
        assert_eq!(l.len(), 2);
        assert!((l[0] * l[1] / 1e-5 - 1.0).abs() < 1e-9, "{l:?}");
        assert!(refine_lambdas(&[(1e-1, 400), (1e-1, 400)], &[], &b, 0.5, 1).is_empty());
        // One finalist (130 records at 1e-2, target 150): a Newton step
        // along the slope of the counts at the last drop (-1 between the
        // pair crossing 150), ln(150 / 130) below 1e-2.
        let earlier = [(5e-3, 400), (1e-2, 200), (2e-2, 100), (4e-2, 40)];
        let x = refine_centre(&[(1e-2, 130)], &earlier, &budget(150), 1.0).unwrap();
        let want = 1e-2f64.ln() - (150.0f64 / 130.0).ln();
        assert!((x - want).abs() < 1e-12, "{}", x.exp());
        // Without a falling slope there, one step towards K.
        let flat = [(5e-3, 200), (1e-2, 200)];
        let x = refine_centre(&[(1e-2, 130)], &flat, &budget(150), 0.5).unwrap();
        assert!((x - (1e-2f64.ln() - 0.5)).abs() < 1e-12, "{}", x.exp());
    }
}
