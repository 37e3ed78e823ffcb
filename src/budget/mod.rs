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
//! More than [`MAX_BATCH`](crate::limits::MAX_BATCH) models train as several passes, each costed.
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
//!
//! The files: `cost.rs` (the cost model), `schedule.rs` (the options and
//! their schedule), `outcome.rs` (what a search returns), `counts.rs`
//! (where K is expected); the search itself is here.

mod cost;
mod counts;
mod outcome;
mod schedule;
#[cfg(test)]
mod tests;

pub use cost::{batch_cost, batch_cost_on, BATCH_COST_FIXED, BATCH_COST_PER_MODEL, GPU_BATCH_OF_8};
pub use counts::SHORT_COUNT_SLACK;
use counts::{
    active_of, by_miss, first_interval, points, refine_lambdas, settled, survivors, Points,
};
pub use outcome::{Batch, BudgetFit, Trial};
pub use schedule::{Budget, Leg, SlowSchedule, Stage};
use std::time::Instant;

use crate::backend::BatchBackends;
use crate::calibration::{CalibrationParams, FitParams, Prepared, Progress};
use crate::error::{L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::sweep::{self, SweepModel};

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
