//! Record budgets: find the L0 strength whose trained model keeps a given
//! number of records ([`fit_to_budget`]), for `l0 calibrate
//! --target-records K`.
//!
//! The search trains models in batches of the [`crate::sweep`] API: every
//! batch is started together ([`sweep::start`]) and trained together in
//! one [`sweep::advance`] call, the form that trains K models in one pass
//! over the matrix per epoch. It has two steps:
//!
//! 1. **Bracket**: one batch of `bracket` values log-spaced over
//!    `lambda_range`, trained for a short share of the epochs. Their
//!    counts only locate the target roughly: a short count may be above
//!    its full-length count (gates close under the L0 pull) or below it
//!    (gates that start closed open as the weights learn), so they are
//!    trusted in λ order only.
//! 2. **Refine**: a batch of `refine` values log-spaced over the interval
//!    where the short counts cross K or come within a factor
//!    [`SHORT_COUNT_SLACK`] of it, widened by one bracket step on each side
//!    (none cross: the top two steps when every count is above K, the
//!    whole range when every count is below), trained from scratch to the
//!    full epochs. When no full-length count is within the tolerance, a
//!    further batch (at most `max_batches` in all) fills the interval
//!    between the nearest full-length counts above and below K, or, when
//!    all are on one side, the bracket step beyond the last λ on that side.
//!
//! The model returned is the full-length one nearest to K in `ln active`
//! (ties: the larger λ), bit for bit the model `Calibration::fit` gives
//! with its `lambda_l0`, seed and options. [`BudgetFit::batches`] lists
//! what was trained: `bracket x share` epochs of the bracket batch plus
//! one full-length batch of `refine` models per refining step.

use std::time::Instant;

use crate::calibration::{CalibrationParams, FitParams, Progress};
use crate::error::{L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::sweep::{self, SweepModel};

/// How far (as a factor either way) a bracket model's short count may be
/// from the target while its full-length count still crosses it: short
/// counts on small problems have been seen at 0.5-0.6 of the full ones.
pub const SHORT_COUNT_SLACK: f64 = 2.0;

/// A record budget and how to search for it.
///
/// | field | default | valid |
/// |---|---|---|
/// | `target_records` | (required) | 1 ..= columns |
/// | `tolerance` | 0.05 | (0, 1): met when `|active - K| <= tolerance K` |
/// | `lambda_range` | (1e-9, 1e-1) | 0 < lo < hi, finite |
/// | `bracket` | 9 | >= 2: models of the bracketing batch |
/// | `bracket_share` | 0.05 | (0, 1]: share of the epochs of a bracket model |
/// | `refine` | 8 | >= 1: models of each refining batch |
/// | `max_batches` | 2 | >= 1: refining batches at most |
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
    /// Models in each refining batch (full-length, trained together).
    pub refine: usize,
    /// Refining batches at most.
    pub max_batches: usize,
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
            refine: 8,
            max_batches: 2,
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
        if self.refine == 0 || self.max_batches == 0 {
            return Err(L0Error::config(format!(
                "a record budget needs at least 1 refining batch of at least 1 model, got {} of {}",
                self.max_batches, self.refine
            )));
        }
        let s = self.bracket_share;
        if !(s > 0.0 && s <= 1.0) {
            return Err(L0Error::config(format!(
                "the bracket share must be in (0, 1], got {s}"
            )));
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
        let epochs = epochs.max(1);
        ((epochs as f64 * self.bracket_share).ceil() as u64).clamp(1, epochs)
    }

    /// How far `active` is from the target, `|ln active - ln K|`.
    fn miss(&self, active: usize) -> f64 {
        (log_count(active) - (self.target_records as f64).ln()).abs()
    }

    /// The ratio of neighbouring bracket λ.
    fn step(&self) -> f64 {
        let (lo, hi) = self.lambda_range;
        (hi / lo).powf(1.0 / (self.bracket - 1) as f64)
    }
}

/// Which step of the search a model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A short model of the bracketing batch.
    Bracket,
    /// A full-length model of a refining batch.
    Refine,
}

impl Stage {
    /// "bracket" or "refine".
    pub fn name(self) -> &'static str {
        match self {
            Stage::Bracket => "bracket",
            Stage::Refine => "refine",
        }
    }
}

/// One model the search trained.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Its step.
    pub stage: Stage,
    /// Its L0 strength.
    pub lambda_l0: f64,
    /// Epochs it trained.
    pub epochs: u64,
    /// Its active count after them.
    pub active: usize,
}

/// One batch: models started together and trained together in one
/// [`sweep::advance`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Its step.
    pub stage: Stage,
    /// Models in it.
    pub models: usize,
    /// Epochs each trained.
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
    /// Every model trained, in order.
    pub trials: Vec<Trial>,
    /// The batches, in order: the bracket, then the refining ones.
    pub batches: Vec<Batch>,
    /// Models trained (over all batches).
    pub models_trained: usize,
    /// Epochs trained, summed over the models.
    pub epochs_total: u64,
    /// Wall time of all the training.
    pub seconds: f64,
}

impl BudgetFit {
    /// When the budget was not met, one line saying so and naming the
    /// nearest count reached (None when met).
    pub fn shortfall(&self, budget: &Budget) -> Option<String> {
        if self.met {
            return None;
        }
        let (lo, hi) = budget.lambda_range;
        Some(format!(
            "no lambda_l0 in {lo:e}..{hi:e} tried in {} full fit(s) keeps {} records within {}%; nearest achievable: {} records at lambda_l0 {:e}",
            self.full_fits(),
            budget.target_records,
            100.0 * budget.tolerance,
            self.active,
            self.chosen.lambda_l0
        ))
    }

    /// Full-length models trained (those of the refining batches).
    pub fn full_fits(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.stage == Stage::Refine)
            .map(|b| b.models)
            .sum()
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

/// The first refining interval from the bracket's `(λ, short count)`
/// points, λ ascending: the hull of the steps where the counts cross K and
/// of the counts within [`SHORT_COUNT_SLACK`] of K, widened by one step on
/// each side; with none, the top two steps (all counts above K) or the
/// whole range (all below).
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

/// The next refining interval from the full-length `(λ, count)` points,
/// none within the tolerance: between the nearest count above K and the
/// nearest below; with all on one side, the bracket step beyond the last
/// λ on that side (None when it is the range's end).
fn next_interval(points: &[(f64, usize)], budget: &Budget) -> Option<(f64, f64)> {
    let k = budget.target_records;
    let (lo, hi) = budget.lambda_range;
    // Nearest first; among equal counts the λ nearer the crossing.
    let above = points
        .iter()
        .filter(|p| p.1 > k)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)));
    let below = points
        .iter()
        .filter(|p| p.1 < k)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)));
    let lambdas = points.iter().map(|p| p.0);
    match (above, below) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.0.max(b.0))).filter(|(a, b)| a < b),
        (Some(_), None) => {
            let top = lambdas.fold(lo, f64::max);
            (top < hi).then(|| (top, (top * budget.step()).min(hi)))
        }
        (None, Some(_)) => {
            let bottom = lambdas.fold(hi, f64::min);
            (bottom > lo).then(|| ((bottom / budget.step()).max(lo), bottom))
        }
        (None, None) => None,
    }
}

/// `n` λ log-spaced over `lo..=hi`, leaving out the ends already in
/// `trained` (the grid then has as many more points, so `n` are new).
fn fresh_grid(lo: f64, hi: f64, n: usize, trained: &[(f64, usize)]) -> Result<Vec<f64>> {
    let done = |l: f64| trained.iter().any(|p| p.0 == l);
    let ends = usize::from(done(lo)) + usize::from(done(hi));
    Ok(sweep::lambda_grid(lo, hi, n + ends)?
        .into_iter()
        .filter(|&l| !done(l))
        .collect())
}

fn active_of(s: &SweepModel) -> usize {
    s.model.active_weights().count
}

/// The batches trained so far, and a way to train one more.
struct Ledger<'a> {
    m: &'a SparseMatrix,
    y: &'a [f64],
    params: &'a CalibrationParams,
    opts: &'a FitParams,
    trials: Vec<Trial>,
    batches: Vec<Batch>,
    seconds: f64,
}

impl Ledger<'_> {
    /// Starts one model per `lambdas[k]` and trains them together for
    /// `epochs` in one [`sweep::advance`] call.
    fn batch(
        &mut self,
        stage: Stage,
        lambdas: &[f64],
        epochs: u64,
        on_progress: &mut dyn FnMut(Stage, f64, &Progress) -> Result<()>,
    ) -> Result<Vec<SweepModel>> {
        let mut models = sweep::start(self.m.cols(), self.params, lambdas)?;
        let clock = Instant::now();
        sweep::advance(
            &mut models,
            self.m,
            self.y,
            self.opts,
            epochs,
            &mut |k, p| on_progress(stage, lambdas[k], p),
        )?;
        self.seconds += clock.elapsed().as_secs_f64();
        self.batches.push(Batch {
            stage,
            models: models.len(),
            epochs,
        });
        self.trials.extend(models.iter().map(|s| Trial {
            stage,
            lambda_l0: s.lambda_l0,
            epochs,
            active: active_of(s),
        }));
        Ok(models)
    }

    /// `(λ, active)` of the models of `stage`.
    fn points(&self, stage: Stage) -> Vec<(f64, usize)> {
        self.trials
            .iter()
            .filter(|t| t.stage == stage)
            .map(|t| (t.lambda_l0, t.active))
            .collect()
    }
}

/// Trains models with `params` and `opts` (its `lambda_l0` is ignored,
/// `opts.epochs` is the full length) until one keeps `budget` records
/// within its tolerance, as laid out in the module docs, calling
/// `on_progress(stage, lambda_l0, progress)` at each model's reports. A
/// budget that no λ in the range meets is not an error: the result is the
/// nearest model with `met = false` ([`BudgetFit::shortfall`] words it).
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
    let mut ledger = Ledger {
        m,
        y,
        params,
        opts,
        trials: Vec::new(),
        batches: Vec::new(),
        seconds: 0.0,
    };
    let (lo, hi) = budget.lambda_range;
    let grid = sweep::lambda_grid(lo, hi, budget.bracket)?;
    ledger.batch(
        Stage::Bracket,
        &grid,
        budget.short_epochs(epochs),
        on_progress,
    )?;
    let mut interval = Some(first_interval(&ledger.points(Stage::Bracket), budget));
    let mut best: Option<SweepModel> = None;
    while let Some((a, b)) = interval {
        let full = ledger.points(Stage::Refine);
        let lambdas = fresh_grid(a, b, budget.refine, &full)?;
        let batch = ledger.batch(Stage::Refine, &lambdas, epochs, on_progress)?;
        // Nearest to K first; among equal misses the larger λ.
        let better = |s: &SweepModel, than: &SweepModel| {
            let (ms, mt) = (budget.miss(active_of(s)), budget.miss(active_of(than)));
            ms < mt || (ms == mt && s.lambda_l0 > than.lambda_l0)
        };
        for s in batch {
            if best.as_ref().is_none_or(|t| better(&s, t)) {
                best = Some(s);
            }
        }
        let met = best.as_ref().is_some_and(|s| budget.met_by(active_of(s)));
        let refined = ledger.batches.len() - 1;
        interval = if met || refined >= budget.max_batches {
            None
        } else {
            next_interval(&ledger.points(Stage::Refine), budget)
        };
    }
    let chosen = best.ok_or_else(|| L0Error::config("a record budget trained no full model"))?;
    let active = active_of(&chosen);
    Ok(BudgetFit {
        met: budget.met_by(active),
        active,
        chosen,
        models_trained: ledger.trials.len(),
        epochs_total: ledger.trials.iter().map(|t| t.epochs).sum(),
        trials: ledger.trials,
        batches: ledger.batches,
        seconds: ledger.seconds,
    })
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
    fn the_next_interval_lies_between_the_nearest_counts_or_one_step_beyond() {
        let b = budget(100);
        let p = [(1e-4, 300), (1e-3, 180), (1e-2, 60), (1e-1, 10)];
        assert_eq!(next_interval(&p, &b), Some((1e-3, 1e-2)));
        let above = [(1e-4, 300), (1e-3, 180)];
        let (a, z) = next_interval(&above, &b).unwrap();
        assert_eq!(a, 1e-3);
        assert!((z / 1e-2 - 1.0).abs() < 1e-12, "{z}");
        assert_eq!(next_interval(&[(1e-1, 300)], &b), None);
        assert_eq!(next_interval(&[(1e-9, 30)], &b), None);
        let (a, z) = next_interval(&[(1e-7, 30)], &b).unwrap();
        assert!((a / 1e-8 - 1.0).abs() < 1e-12, "{a}");
        assert_eq!(z, 1e-7);
    }

    #[test]
    fn a_fresh_grid_leaves_out_trained_ends_and_keeps_its_size() {
        let g = fresh_grid(1e-3, 1e-2, 4, &[(1e-3, 5), (1e-2, 1)]).unwrap();
        assert_eq!(g.len(), 4);
        assert!(g.iter().all(|&l| l > 1e-3 && l < 1e-2), "{g:?}");
        let g = fresh_grid(1e-3, 1e-2, 4, &[]).unwrap();
        assert_eq!((g.len(), g[0], g[3]), (4, 1e-3, 1e-2));
    }
}
