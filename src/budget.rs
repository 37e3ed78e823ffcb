//! Record budgets: find the L0 strength whose trained model keeps a given
//! number of records ([`fit_to_budget`]), for `l0 calibrate
//! --target-records K`.
//!
//! The search runs on the batch API of [`crate::sweep`] ([`sweep::start`]
//! and [`sweep::advance`]), so it gets cheaper as soon as a batch of models
//! trains in one pass. It has three steps:
//!
//! 1. **Bracket**: `bracket` values log-spaced over `lambda_range`, each
//!    trained for a short share of the epochs. Active counts only fall as
//!    training goes on (gates close under the L0 pull), so a short model's
//!    count is an upper bound on its full-length count: the largest
//!    bracket λ still above the target is the pilot.
//! 2. **Pilot**: that bracket model is continued to the full epochs, which
//!    is exactly the single fit with its λ (continuation is exact), so the
//!    bracket's epochs are not lost.
//! 3. **Refine**: from the full-length counts, the next λ is interpolated
//!    in `ln λ` against `ln active` (a secant; between a count above and
//!    one below the target when there are both, else through the nearest
//!    two; with one point, along `active ∝ λ^-1/2`), clamped to the range,
//!    and trained as a fresh full fit; until a count is within the
//!    tolerance or `max_fits` full-length models are trained.
//!
//! The model returned is always a full-length fit with its λ, bit for bit
//! the model `Calibration::fit` gives with that `lambda_l0`, seed and
//! options. Cost, in single fits: `bracket x share` for the bracket,
//! `1 - share` for the pilot and 1 per refining fit.

use crate::calibration::{CalibrationParams, FitParams, Progress};
use crate::error::{L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::sweep::{self, SweepModel};

/// A record budget and how to search for it.
///
/// | field | default | valid |
/// |---|---|---|
/// | `target_records` | (required) | 1 ..= columns |
/// | `tolerance` | 0.05 | (0, 1): met when `|active - K| <= tolerance K` |
/// | `lambda_range` | (1e-9, 1e-1) | 0 < lo < hi, finite |
/// | `bracket` | 9 | >= 2 |
/// | `bracket_share` | 0.05 | (0, 1]: share of the epochs of a bracket model |
/// | `max_fits` | 4 | >= 1: full-length models, the pilot included |
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
    /// Full-length models at most (the pilot and the refining fits).
    pub max_fits: usize,
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
            max_fits: 4,
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
        if self.bracket < 2 || self.max_fits == 0 {
            return Err(L0Error::config(
                "a record budget needs a bracket of at least 2 models and at least 1 full fit",
            ));
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
}

/// Which step of the search a model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A short model of the bracketing batch.
    Bracket,
    /// A full-length model (the continued pilot or a refining fit).
    Full,
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

/// The outcome of [`fit_to_budget`].
#[derive(Clone, Debug)]
pub struct BudgetFit {
    /// The full-length model whose count is nearest the target (in ratio).
    pub chosen: SweepModel,
    /// Its active count.
    pub active: usize,
    /// Whether it is within the tolerance.
    pub met: bool,
    /// Every model trained, in order (a continued pilot appears as its
    /// bracket trial and again as a full one).
    pub trials: Vec<Trial>,
    /// Distinct models trained.
    pub models_trained: usize,
    /// Epochs trained over all of them.
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

    /// Full-length models trained.
    pub fn full_fits(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.stage == Stage::Full)
            .count()
    }
}

/// `ln(active)`, with 0 records counted as half a record so that the log
/// stays finite.
fn log_count(active: usize) -> f64 {
    (active as f64).max(0.5).ln()
}

/// The next λ from the full-length points `(λ, active)`: a secant in
/// `ln λ` against `ln active` through the nearest point above the target
/// and the nearest below when there are both (else through the two
/// nearest), or, with one point or a secant that does not fall, a step
/// from the nearest point along `active ∝ λ^-1/2`; clamped to the range.
fn next_lambda(points: &[(f64, usize)], budget: &Budget) -> f64 {
    let target = (budget.target_records as f64).ln();
    let dist = |p: &&(f64, usize)| (log_count(p.1) - target).abs();
    let mut sorted: Vec<&(f64, usize)> = points.iter().collect();
    sorted.sort_by(|a, b| dist(a).total_cmp(&dist(b)));
    let nearest = sorted[0];
    let other = sorted[1..]
        .iter()
        .find(|p| (log_count(p.1) > target) != (log_count(nearest.1) > target))
        .or(sorted.get(1));
    let (la, ca) = (nearest.0.ln(), log_count(nearest.1));
    let slope = other.map_or(0.0, |b| (log_count(b.1) - ca) / (b.0.ln() - la));
    let guess = if slope < 0.0 && slope.is_finite() {
        la + (target - ca) / slope
    } else {
        la + (ca - target) * 2.0
    };
    let (lo, hi) = budget.lambda_range;
    guess.exp().clamp(lo, hi)
}

/// The bracket model to continue as the pilot: the largest λ whose short
/// count is still above the target (the smallest λ when none is).
fn pilot_index(bracket: &[SweepModel], budget: &Budget) -> usize {
    bracket
        .iter()
        .rposition(|s| active_of(s) > budget.target_records)
        .unwrap_or(0)
}

fn active_of(s: &SweepModel) -> usize {
    s.model.active_weights().count
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
    let short = ((epochs as f64 * budget.bracket_share).ceil() as u64).clamp(1, epochs);
    let (lo, hi) = budget.lambda_range;
    let lambdas = sweep::lambda_grid(lo, hi, budget.bracket)?;
    let mut bracket = sweep::start(m.cols(), params, &lambdas)?;
    sweep::advance(&mut bracket, m, y, opts, short, &mut |k, p| {
        on_progress(Stage::Bracket, lambdas[k], p)
    })?;
    let mut trials: Vec<Trial> = bracket
        .iter()
        .map(|s| Trial {
            stage: Stage::Bracket,
            lambda_l0: s.lambda_l0,
            epochs: short,
            active: active_of(s),
        })
        .collect();
    let mut seconds: f64 = bracket.iter().map(|s| s.report.seconds).sum();
    let mut models_trained = bracket.len();
    let mut epochs_total = bracket.len() as u64 * short;
    let mut pilot = bracket.swap_remove(pilot_index(&bracket, budget));
    drop(bracket);
    let (lambda, before) = (pilot.lambda_l0, pilot.report.seconds);
    sweep::advance(
        std::slice::from_mut(&mut pilot),
        m,
        y,
        opts,
        epochs - short,
        &mut |_, p| on_progress(Stage::Full, lambda, p),
    )?;
    seconds += pilot.report.seconds - before;
    epochs_total += epochs - short;
    let mut full = vec![pilot];
    loop {
        let active = full.last().map_or(0, active_of);
        let lambda_l0 = full.last().map_or(0.0, |s| s.lambda_l0);
        trials.push(Trial {
            stage: Stage::Full,
            lambda_l0,
            epochs,
            active,
        });
        if budget.met_by(active) || full.len() >= budget.max_fits {
            break;
        }
        let points: Vec<(f64, usize)> = full.iter().map(|s| (s.lambda_l0, active_of(s))).collect();
        let next = next_lambda(&points, budget);
        if points.iter().any(|p| p.0 == next) {
            break; // clamped onto a λ already trained: nothing new to learn
        }
        let mut batch = sweep::start(m.cols(), params, &[next])?;
        sweep::advance(&mut batch, m, y, opts, epochs, &mut |_, p| {
            on_progress(Stage::Full, next, p)
        })?;
        seconds += batch[0].report.seconds;
        models_trained += 1;
        epochs_total += epochs;
        full.extend(batch);
    }
    let target = (budget.target_records as f64).ln();
    let off = |s: &SweepModel| (log_count(active_of(s)) - target).abs();
    let best = (0..full.len())
        .min_by(|&a, &b| off(&full[a]).total_cmp(&off(&full[b])))
        .unwrap_or(0);
    let chosen = full.swap_remove(best);
    let active = active_of(&chosen);
    Ok(BudgetFit {
        met: budget.met_by(active),
        active,
        chosen,
        trials,
        models_trained,
        epochs_total,
        seconds,
    })
}
