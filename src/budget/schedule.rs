//! A record budget and its schedule: the search's options ([`Budget`]),
//! its stages ([`Stage`]), the legs a model trains through
//! ([`Budget::plan`]) and the later drops of the slow schedule
//! ([`SlowSchedule`]).

use crate::error::{L0Error, Result};

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
    /// The estimated cost, in fits ([`batch_cost`](super::batch_cost)), that a refining batch
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
    pub(super) fn miss(&self, active: usize) -> f64 {
        (log_count(active) - self.log_target()).abs()
    }

    pub(super) fn log_target(&self) -> f64 {
        (self.target_records as f64).ln()
    }
}

/// `ceil(epochs x share)`, at least 1 and at most `epochs`.
pub(super) fn share_of(epochs: u64, share: f64) -> u64 {
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

/// `ln(active)`, with 0 records counted as half a record so that the log
/// stays finite.
pub(super) fn log_count(active: usize) -> f64 {
    (active as f64).max(0.5).ln()
}
