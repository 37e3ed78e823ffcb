//! What a budget search returns ([`BudgetFit`]): the model nearest the
//! budget, and every batch and trial on the way ([`Batch`], [`Trial`]).

use super::schedule::{Budget, Stage};

use crate::naming::Naming;
use crate::sweep::SweepModel;

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
/// [`sweep::advance`](crate::sweep::advance) call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Its stage of the search.
    pub stage: Stage,
    /// Models in it.
    pub models: usize,
    /// Epochs each trained in it.
    pub epochs: u64,
}

/// The outcome of [`fit_to_budget`](super::fit_to_budget).
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
    /// summed over the batches ([`batch_cost_on`](super::batch_cost_on): what a batch costs on the
    /// device that ran it).
    pub cost_fits: f64,
    /// The adaptive decision ([`SlowSchedule`](super::SlowSchedule)): `Some(true)` when the
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
