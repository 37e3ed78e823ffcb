//! What summary.json holds: a run's [`Summary`], a record budget's [`BudgetSummary`], the fit before a refit ([`BeforeRefit`]) and the field lists they share.

use super::*;

/// Everything `summary.json` reports about a calibration run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Targets (matrix rows).
    pub rows: usize,
    /// Columns (records).
    pub cols: usize,
    /// Stored nonzeros.
    pub nnz: usize,
    /// The backend, in words.
    pub device: String,
    /// Epochs the model has trained in total.
    pub epochs: u64,
    /// Epochs this invocation ran (fewer after a resume).
    pub epochs_run: u64,
    /// The step a resumed run started from (None: fresh run).
    pub resumed_from: Option<u64>,
    /// Wall time of this invocation's epoch loop.
    pub seconds: f64,
    /// The model seed.
    pub seed: u64,
    /// The last epoch's total training loss (None when no epoch ran).
    pub loss: Option<f64>,
    /// Its data part, without the penalties (None when no epoch ran).
    pub data_loss: Option<f64>,
    /// Accuracy with deterministic weights.
    pub accuracy: Accuracy,
    /// Accuracy over the holdout targets (None without a holdout).
    pub holdout: Option<Accuracy>,
    /// With tolerance bands: how many of the targets in the loss end inside
    /// their band (None without bands).
    pub within_tolerance: Option<usize>,
    /// With a refit: the L0 fit's figures before it (the others are the
    /// refit's).
    pub before_refit: Option<BeforeRefit>,
    /// The L0 strength the model was trained with.
    pub lambda_l0: f64,
    /// With `--target-records`: the record budget's search.
    pub budget: Option<BudgetSummary>,
    /// Targets left out of the loss.
    pub excluded: usize,
    /// Nonzero deterministic weights.
    pub active: usize,
    /// How concentrated the deterministic weights are.
    pub weights: WeightDiagnostics,
    /// The run's settings, each as its JSON type (numbers, booleans,
    /// strings, lists; null when unset).
    pub settings: Vec<(String, Json)>,
}

impl Summary {
    /// Share of zero weights.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.active as f64 / self.cols.max(1) as f64
    }

    /// Seconds per epoch of this invocation (0 when none ran).
    pub fn seconds_per_epoch(&self) -> f64 {
        if self.epochs_run == 0 {
            0.0
        } else {
            self.seconds / self.epochs_run as f64
        }
    }

    /// The summary as a JSON object. Keys: rows, cols, nnz, device, epochs,
    /// epochs_run, resumed_from, seconds, seconds_per_epoch, seed, loss,
    /// data_loss, rel_loss, mean_abs_rel_err, max_abs_rel_err, within_1pct,
    /// within_5pct, within_10pct, within_25pct, targets_included,
    /// targets_excluded, active, sparsity, (with a holdout) targets_holdout,
    /// holdout_mean_abs_rel_err, holdout_max_abs_rel_err, (with a refit)
    /// before_refit ([`BeforeRefit::to_json`]), lambda_l0, (with a record
    /// budget) budget ([`BudgetSummary::to_json`]), ess, design_effect, max_weight,
    /// top1pct_share, weight_quantiles (min, p01, p25, p50, p75, p99, max),
    /// settings.
    pub fn to_json(&self) -> Json {
        let a = &self.accuracy;
        let mut f: Vec<(String, Json)> = vec![
            ("rows".into(), Json::Int(self.rows as i128)),
            ("cols".into(), Json::Int(self.cols as i128)),
            ("nnz".into(), Json::Int(self.nnz as i128)),
            ("device".into(), Json::Str(self.device.clone())),
            ("epochs".into(), Json::Int(self.epochs as i128)),
            ("epochs_run".into(), Json::Int(self.epochs_run as i128)),
            (
                "resumed_from".into(),
                self.resumed_from
                    .map_or(Json::Null, |s| Json::Int(s as i128)),
            ),
            ("seconds".into(), Json::Num(self.seconds)),
            (
                "seconds_per_epoch".into(),
                Json::Num(self.seconds_per_epoch()),
            ),
            ("seed".into(), Json::Int(self.seed as i128)),
            ("loss".into(), self.loss.map_or(Json::Null, Json::Num)),
            (
                "data_loss".into(),
                self.data_loss.map_or(Json::Null, Json::Num),
            ),
            ("rel_loss".into(), Json::Num(a.rel_loss)),
            ("mean_abs_rel_err".into(), Json::Num(a.mean_abs_rel_err)),
            ("max_abs_rel_err".into(), Json::Num(a.max_abs_rel_err)),
        ];
        for (t, share) in WITHIN.iter().zip(a.within) {
            f.push((
                format!("within_{}pct", (t * 100.0).round()),
                Json::Num(share),
            ));
        }
        f.extend([
            ("targets_included".into(), Json::Int(a.included as i128)),
            ("targets_excluded".into(), Json::Int(self.excluded as i128)),
            ("active".into(), Json::Int(self.active as i128)),
            ("sparsity".into(), Json::Num(self.sparsity())),
        ]);
        if let Some(n) = self.within_tolerance {
            f.push(("targets_within_tolerance".into(), Json::Int(n as i128)));
        }
        f.extend(holdout_fields(self.holdout.as_ref()));
        if let Some(b) = &self.before_refit {
            f.push(("before_refit".into(), b.to_json()));
        }
        f.push(("lambda_l0".into(), Json::Num(self.lambda_l0)));
        if let Some(b) = &self.budget {
            f.push(("budget".into(), b.to_json()));
        }
        f.extend(weight_fields(&self.weights));
        f.push(("settings".into(), Json::Object(self.settings.clone())));
        Json::Object(f)
    }
}

/// A record budget's search (summary.json `budget`).
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetSummary {
    /// Records asked for.
    pub target_records: usize,
    /// Relative tolerance.
    pub tolerance: f64,
    /// The L0 strength found (the model's).
    pub lambda_l0: f64,
    /// Whether the model's count is within the tolerance.
    pub met: bool,
    /// Distinct models the search trained.
    pub models_trained: usize,
    /// Epochs trained over all of them.
    pub epochs_total: u64,
    /// `epochs_total` over the epochs of one fit: the search's cost in fits
    /// when its models train one after another.
    pub fits: f64,
    /// The batches (models started and trained together), in order.
    pub batches: Vec<Batch>,
    /// The batches' epochs over the epochs of one fit: its passes over the
    /// matrix, in fits, when each batch trains in one pass per epoch.
    pub passes: f64,
    /// Wall time of all the training.
    pub seconds: f64,
    /// The estimated cost in fits (`l0::budget::batch_cost` summed over the
    /// batches).
    pub cost_fits: f64,
    /// Which schedule the search took (`l0::budget::BudgetFit::settled`):
    /// true when the counts had settled by the first drop (the fast one),
    /// false for the slow one, None when it did not decide.
    pub settled: Option<bool>,
}

impl BudgetSummary {
    /// Keys: target_records, tolerance, lambda_l0, met, models_trained,
    /// epochs_total, fits, batches (each `{stage, models, epochs}`), passes,
    /// seconds, cost_fits, settled (null when no decision was made).
    pub fn to_json(&self) -> Json {
        Json::Object(vec![
            (
                "target_records".into(),
                Json::Int(self.target_records as i128),
            ),
            ("tolerance".into(), Json::Num(self.tolerance)),
            ("lambda_l0".into(), Json::Num(self.lambda_l0)),
            ("met".into(), Json::Bool(self.met)),
            (
                "models_trained".into(),
                Json::Int(self.models_trained as i128),
            ),
            ("epochs_total".into(), Json::Int(self.epochs_total as i128)),
            ("fits".into(), Json::Num(self.fits)),
            (
                "batches".into(),
                Json::Array(self.batches.iter().map(batch_json).collect()),
            ),
            ("passes".into(), Json::Num(self.passes)),
            ("seconds".into(), Json::Num(self.seconds)),
            ("cost_fits".into(), Json::Num(self.cost_fits)),
            (
                "settled".into(),
                self.settled.map_or(Json::Null, Json::Bool),
            ),
        ])
    }
}

/// One batch of a record budget's search: `{stage, models, epochs}`.
fn batch_json(b: &Batch) -> Json {
    Json::Object(vec![
        ("stage".into(), Json::Str(b.stage.name().into())),
        ("models".into(), Json::Int(b.models as i128)),
        ("epochs".into(), Json::Int(b.epochs as i128)),
    ])
}

/// The L0 fit's figures before a refit (summary.json `before_refit`).
#[derive(Clone, Debug, PartialEq)]
pub struct BeforeRefit {
    /// Accuracy over the targets in the loss.
    pub accuracy: Accuracy,
    /// Accuracy over the holdout targets (None without a holdout).
    pub holdout: Option<Accuracy>,
    /// Nonzero weights.
    pub active: usize,
    /// Epochs the refit ran.
    pub refit_epochs: u64,
    /// Wall time of the refit's epoch loop.
    pub refit_seconds: f64,
}

impl BeforeRefit {
    /// Keys: mean_abs_rel_err, max_abs_rel_err, rel_loss, active, (with a
    /// holdout) the [`holdout_fields`], refit_epochs, refit_seconds.
    pub fn to_json(&self) -> Json {
        let a = &self.accuracy;
        let mut f: Vec<(String, Json)> = vec![
            ("mean_abs_rel_err".into(), Json::Num(a.mean_abs_rel_err)),
            ("max_abs_rel_err".into(), Json::Num(a.max_abs_rel_err)),
            ("rel_loss".into(), Json::Num(a.rel_loss)),
            ("active".into(), Json::Int(self.active as i128)),
        ];
        f.extend(holdout_fields(self.holdout.as_ref()));
        f.push(("refit_epochs".into(), Json::Int(self.refit_epochs as i128)));
        f.push(("refit_seconds".into(), Json::Num(self.refit_seconds)));
        Json::Object(f)
    }
}

/// The summary.json fields of a holdout's accuracy: targets_holdout,
/// holdout_mean_abs_rel_err and holdout_max_abs_rel_err (none without one).
pub fn holdout_fields(h: Option<&Accuracy>) -> Vec<(String, Json)> {
    h.map_or_else(Vec::new, |h| {
        vec![
            ("targets_holdout".into(), Json::Int(h.included as i128)),
            (
                "holdout_mean_abs_rel_err".into(),
                Json::Num(h.mean_abs_rel_err),
            ),
            (
                "holdout_max_abs_rel_err".into(),
                Json::Num(h.max_abs_rel_err),
            ),
        ]
    })
}

/// The summary.json fields of [`WeightDiagnostics`].
pub fn weight_fields(d: &WeightDiagnostics) -> Vec<(String, Json)> {
    let names = ["min", "p01", "p25", "p50", "p75", "p99", "max"];
    vec![
        ("ess".into(), Json::Num(d.ess)),
        ("design_effect".into(), Json::Num(d.design_effect)),
        ("max_weight".into(), Json::Num(d.max_weight)),
        ("top1pct_share".into(), Json::Num(d.top1pct_share)),
        (
            "weight_quantiles".into(),
            Json::Object(
                names
                    .iter()
                    .zip(d.quantiles)
                    .map(|(n, v)| (n.to_string(), Json::Num(v)))
                    .collect(),
            ),
        ),
    ]
}
