//! What a calibration run writes: per-target accuracy, weights, a JSON
//! summary and the long-format training log.
//!
//! # Definitions
//!
//! For target `q` with value `y_q` and estimate `yhat_q = (M w)_q`, where `w`
//! are the deterministic (test-time) weights:
//!
//! | quantity | definition |
//! |---|---|
//! | `error` | `yhat_q - y_q` |
//! | `rel_error` | `error / (y_q + 1)` (the relative loss's scale, defined for a zero target; divided by 1 when `y_q = -1`) |
//! | `abs_error` | `|error|` |
//! | `rel_abs_error` | `|rel_error|` |
//!
//! `targets.csv` ([`TARGET_COLUMNS`]) and `log.csv` ([`LOG_COLUMNS`]) name
//! these quantities alike and in the same order. Numbers are written so
//! that they read back to the same `f64`, with `-0` written as `0`.
//!
//! The same `rel_error` underlies the progress line's mean and max error
//! ([`crate::calibration::Progress`]). Summary statistics are taken over the
//! targets in the loss; excluded targets are still listed, marked.
//!
//! Every file goes through [`crate::io::write_atomic`] except the log,
//! which grows during training ([`LogWriter`]).

use crate::budget::Batch;
use crate::calibration::{rel_scale, TargetRole};
use crate::diagnostics::{TargetCarrier, WeightDiagnostics};
use crate::error::{L0Error, Result};
use crate::io::{
    csv::{csv_field, write_csv},
    write_atomic,
};
use crate::par::Par;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One target's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    /// The target's name.
    pub name: String,
    /// Its value `y_q`.
    pub target: f64,
    /// The estimate `(M w)_q` with deterministic weights.
    pub estimate: f64,
    /// Whether it was left out of the loss.
    pub excluded: bool,
    /// Whether it was held out of the loss for validation.
    pub holdout: bool,
    /// The half-width of its tolerance band (None without one;
    /// [`crate::calibration::FitParams::target_tolerance`]).
    pub band: Option<f64>,
}

impl TargetRow {
    /// Whether the estimate is inside the target's tolerance band (None
    /// without a band).
    pub fn within_tolerance(&self) -> Option<bool> {
        self.band
            .map(|b| crate::objective::within_band(self.target, self.estimate, b))
    }

    /// `estimate - target`.
    pub fn error(&self) -> f64 {
        self.estimate - self.target
    }
    /// `error / (target + 1)` (see [`rel_scale`]).
    pub fn rel_error(&self) -> f64 {
        self.error() / rel_scale(self.target)
    }
    /// `|error|`.
    pub fn abs_error(&self) -> f64 {
        self.error().abs()
    }
    /// `|rel_error|`.
    pub fn rel_abs_error(&self) -> f64 {
        self.rel_error().abs()
    }
    /// `error, rel_error, abs_error, rel_abs_error` as text, the columns
    /// that `targets.csv` and `log.csv` share after the estimate.
    fn error_fields(&self) -> [String; 4] {
        [
            num(self.error()),
            num(self.rel_error()),
            num(self.abs_error()),
            num(self.rel_abs_error()),
        ]
    }
}

/// Builds the rows from names, targets, estimates and roles (all one per
/// target).
pub fn target_rows(
    names: &[String],
    y: &[f64],
    yhat: &[f64],
    roles: &[TargetRole],
) -> Vec<TargetRow> {
    names
        .iter()
        .zip(y)
        .zip(yhat)
        .zip(roles)
        .map(|(((name, &target), &estimate), &role)| TargetRow {
            name: name.clone(),
            target,
            estimate,
            excluded: role == TargetRole::Excluded,
            holdout: role == TargetRole::Holdout,
            band: None,
        })
        .collect()
}

/// How many rows in the loss (neither excluded nor held out) end inside
/// their tolerance band (None when the rows have no bands).
pub fn within_tolerance(rows: &[TargetRow]) -> Option<usize> {
    rows.iter().any(|r| r.band.is_some()).then(|| {
        rows.iter()
            .filter(|r| !r.excluded && !r.holdout && r.within_tolerance() == Some(true))
            .count()
    })
}

/// Gives each row its tolerance band's half-width (`bands`: one per row,
/// as [`crate::calibration::TargetWeights::band`]; None leaves the rows
/// without bands).
pub fn set_bands(rows: &mut [TargetRow], bands: Option<&[f64]>) {
    if let Some(bands) = bands {
        for (r, &b) in rows.iter_mut().zip(bands) {
            r.band = Some(b);
        }
    }
}

/// Accuracy over a set of targets (those in the loss, or the holdout).
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// Targets counted.
    pub included: usize,
    /// Mean of `rel_error^2`.
    pub rel_loss: f64,
    /// Mean of `|rel_error|`.
    pub mean_abs_rel_err: f64,
    /// Max of `|rel_error|`.
    pub max_abs_rel_err: f64,
    /// Shares of targets with `|rel_error| <= ` 1%, 5%, 10% and 25%.
    pub within: [f64; 4],
}

/// The thresholds of [`Accuracy::within`].
pub const WITHIN: [f64; 4] = [0.01, 0.05, 0.10, 0.25];

impl Accuracy {
    /// The accuracy over the targets of `rows` in the loss (excluded and
    /// holdout rows are skipped; with none left every figure is 0).
    pub fn of(rows: &[TargetRow]) -> Self {
        Self::over(rows, |r| !r.excluded && !r.holdout)
    }

    /// The accuracy over the holdout rows (None when there are none).
    pub fn holdout(rows: &[TargetRow]) -> Option<Self> {
        rows.iter()
            .any(|r| r.holdout)
            .then(|| Self::over(rows, |r| r.holdout))
    }

    fn over(rows: &[TargetRow], keep: impl Fn(&TargetRow) -> bool) -> Self {
        let errs: Vec<f64> = rows
            .iter()
            .filter(|r| keep(r))
            .map(TargetRow::rel_abs_error)
            .collect();
        let n = errs.len().max(1) as f64;
        let mut within = [0.0; 4];
        for (w, t) in within.iter_mut().zip(WITHIN) {
            *w = errs.iter().filter(|&&e| e <= t).count() as f64 / n;
        }
        Accuracy {
            included: errs.len(),
            rel_loss: errs.iter().map(|e| e * e).sum::<f64>() / n,
            mean_abs_rel_err: errs.iter().sum::<f64>() / n,
            max_abs_rel_err: errs.iter().copied().fold(0.0, f64::max),
            within,
        }
    }
}

/// The columns of `targets.csv`: those of [`LOG_COLUMNS`] without the
/// epoch and loss, whether the target was left out of the loss, whether it
/// was held out for validation, then who
/// carries it ([`TargetCarrier`]: the top record, empty when none, its share
/// of the estimate, and the count of contributing records).
pub const TARGET_COLUMNS: [&str; 12] = [
    "target_name",
    "estimate",
    "target",
    "error",
    "rel_error",
    "abs_error",
    "rel_abs_error",
    "excluded",
    "holdout",
    "top_record",
    "top_record_share",
    "records_contributing",
];

/// Writes `targets.csv`, one line per target with the [`TARGET_COLUMNS`],
/// and `within_tolerance` after them when the rows have tolerance bands
/// (`carriers` has one entry per row).
pub fn write_targets_csv(
    path: &Path,
    rows: &[TargetRow],
    carriers: &[TargetCarrier],
) -> Result<()> {
    let banded = rows.iter().any(|r| r.band.is_some());
    let mut header = TARGET_COLUMNS.to_vec();
    if banded {
        header.push("within_tolerance");
    }
    write_csv(
        path,
        &header,
        rows.iter().zip(carriers).map(|(r, c)| {
            let mut fields = vec![r.name.clone(), num(r.estimate), num(r.target)];
            fields.extend(r.error_fields());
            fields.push(r.excluded.to_string());
            fields.push(r.holdout.to_string());
            fields.push(c.top_record.map_or(String::new(), |i| i.to_string()));
            fields.push(num(c.top_record_share));
            fields.push(c.records_contributing.to_string());
            if banded {
                fields.push(r.within_tolerance().unwrap_or(false).to_string());
            }
            fields
        }),
    )
}

/// Writes `weights.csv`: `column,weight,gate` (0-based column, deterministic
/// weight and deterministic gate), one line per column, numbers as
/// [`write_csv`] formats them (`{:?}`; numbers never need quoting). Blocks
/// of lines are formatted in parallel and written in order, so millions of
/// columns take a fraction of a second per core (`par`: the parallelism;
/// the bytes do not depend on it).
pub fn write_weights_csv(path: &Path, weights: &[f64], gates: &[f64], par: Par) -> Result<()> {
    use std::io::Write;
    const BLOCK: usize = 1 << 15;
    let n = weights.len().min(gates.len());
    write_atomic(path, |out| {
        out.write_all(b"column,weight,gate\n")?;
        // 32 blocks at a time bounds the formatted text held in memory.
        for group in (0..n).step_by(32 * BLOCK) {
            let count = (n - group).min(32 * BLOCK).div_ceil(BLOCK);
            let blocks: Vec<Vec<u8>> = par.map(count, |b| {
                let start = group + b * BLOCK;
                let mut text = Vec::with_capacity(BLOCK * 40);
                for i in start..n.min(start + BLOCK) {
                    // Writing into a Vec cannot fail.
                    let _ = writeln!(text, "{i},{:?},{:?}", weights[i], gates[i]);
                }
                text
            });
            for b in blocks {
                out.write_all(&b)?;
            }
        }
        Ok(())
    })
}

/// A number as text that reads back to the same `f64` (`{:?}`), `-0`
/// written as `0`.
fn num(v: f64) -> String {
    format!("{:?}", v + 0.0)
}

/// A JSON value, for the flat summaries written here.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A number; non-finite values are written as `null`.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, keys in order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Pretty JSON text (two-space indent; arrays on one line), written
    /// by `serde_json` through [`SummaryFormatter`].
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, SummaryFormatter::default());
        // Writing into a Vec cannot fail, and every Json value serializes.
        let _ = serde::Serialize::serialize(self, &mut ser);
        out.push(b'\n');
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Int(i) => s.serialize_i128(*i),
            // serde_json writes a non-finite number as null.
            Json::Num(v) => s.serialize_f64(*v),
            Json::Str(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Json::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// The layout of `summary.json`: serde_json's pretty printing (objects one
/// key a line, two-space indent) with arrays on one line (`[a, b]`),
/// numbers as [`num`] writes them (`{:?}`, which reads back to the same
/// `f64`; `-0` as `0.0`), and control characters other than `\n`, `\r`,
/// `\t` as `\u00XX`: the bytes the files have always had.
#[derive(Default)]
pub struct SummaryFormatter {
    indent: usize,
    has_value: bool,
}

impl SummaryFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.indent {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for SummaryFormatter {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f64) -> std::io::Result<()> {
        w.write_all(num(v).as_bytes())
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        match escape {
            CharEscape::Quote => w.write_all(b"\\\""),
            CharEscape::ReverseSolidus => w.write_all(b"\\\\"),
            CharEscape::LineFeed => w.write_all(b"\\n"),
            CharEscape::CarriageReturn => w.write_all(b"\\r"),
            CharEscape::Tab => w.write_all(b"\\t"),
            CharEscape::Backspace => w.write_all(b"\\u0008"),
            CharEscape::FormFeed => w.write_all(b"\\u000c"),
            CharEscape::AsciiControl(c) => write!(w, "\\u{c:04x}"),
            CharEscape::Solidus => w.write_all(b"\\/"),
        }
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

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

/// Writes a JSON value to `path` atomically.
pub fn write_json(path: &Path, value: &Json) -> Result<()> {
    let text = value.to_text();
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}

/// The columns of `log.csv` (see [`LogWriter`]).
pub const LOG_COLUMNS: [&str; 10] = [
    "target_name",
    "estimate",
    "target",
    "epoch",
    "error",
    "rel_error",
    "abs_error",
    "rel_abs_error",
    "loss",
    "holdout",
];

/// The header of `log.csv`: [`LOG_COLUMNS`] joined by commas.
pub const LOG_HEADER: &str =
    "target_name,estimate,target,epoch,error,rel_error,abs_error,rel_abs_error,loss,holdout";

/// Appends the long-format training log, `log.csv`: at each logged epoch,
/// one row per target with the columns of [`LOG_HEADER`]:
///
/// * `target_name`: the target's name;
/// * `estimate`: `(M w)_q` with the deterministic weights after the epoch's update;
/// * `target`: `y_q`;
/// * `epoch`: the model's total epochs trained at that point (1-based; it
///   continues across a resume);
/// * `error`, `rel_error`, `abs_error`, `rel_abs_error`: as in the module docs;
/// * `loss`: that epoch's total training loss (data loss with sampled gates
///   plus penalties), the same on every row of the epoch;
/// * `holdout`: whether the target is a holdout (validation) target.
///
/// Each epoch's rows are appended with one write, so a killed run leaves
/// at most one partial epoch at the end; [`LogWriter::resume`] drops it
/// (and any epoch after the checkpoint) before appending again.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
}

fn log_io(path: &Path, e: impl std::fmt::Display) -> L0Error {
    L0Error::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The epoch of a log line, read from the right (names may contain commas).
fn log_line_epoch(line: &str) -> Option<u64> {
    let fields: Vec<&str> = line.rsplitn(10, ',').collect();
    let numbers = fields.get(1..9)?;
    if fields.len() != 10 || numbers.iter().any(|f| f.parse::<f64>().is_err()) {
        return None;
    }
    fields[6].parse().ok()
}

impl LogWriter {
    /// Starts a new log at `path` (replacing any old one) with its header.
    pub fn create(path: &Path) -> Result<Self> {
        write_atomic(path, |w| writeln!(w, "{LOG_HEADER}"))?;
        Self::open_append(path)
    }

    /// Continues the log at `path` for a run resumed at `step`: keeps the
    /// rows of epochs up to `step` (dropping later or partial ones, which
    /// the resumed run writes again) and appends after them. Without a log
    /// file, starts a new one.
    pub fn resume(path: &Path, step: u64) -> Result<Self> {
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::create(path),
            Err(e) => return Err(log_io(path, format!("cannot read log: {e}"))),
        };
        let mut keep = String::with_capacity(text.len());
        keep.push_str(LOG_HEADER);
        keep.push('\n');
        for line in text.split_inclusive('\n').skip(1) {
            if !line.ends_with('\n') {
                break; // a partial line from a killed run
            }
            match log_line_epoch(line.trim_end_matches(['\n', '\r'])) {
                Some(e) if e <= step => keep.push_str(line),
                _ => {}
            }
        }
        write_atomic(path, |w| w.write_all(keep.as_bytes()))?;
        Self::open_append(path)
    }

    fn open_append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| log_io(path, format!("cannot open log: {e}")))?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends the rows of one epoch (`holdout`: one flag per target).
    pub fn append(
        &mut self,
        epoch: u64,
        names: &[String],
        y: &[f64],
        yhat: &[f64],
        loss: f64,
        holdout: &[bool],
    ) -> Result<()> {
        let mut out = String::with_capacity(names.len() * 120);
        for (((name, &target), &estimate), &held) in names.iter().zip(y).zip(yhat).zip(holdout) {
            let row = TargetRow {
                name: String::new(),
                target,
                estimate,
                excluded: false,
                holdout: held,
                band: None,
            };
            let [err, rel, abs, rel_abs] = row.error_fields();
            out.push_str(&format!(
                "{},{},{},{epoch},{err},{rel},{abs},{rel_abs},{},{held}\n",
                csv_field(name),
                num(estimate),
                num(target),
                num(loss)
            ));
        }
        self.file
            .write_all(out.as_bytes())
            .map_err(|e| log_io(&self.path, format!("cannot append to log: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel writer gives the bytes of the general CSV writer, across
    /// several blocks and groups of blocks.
    #[test]
    fn weights_csv_equals_the_general_writer() {
        let n = 33 * (1 << 15) + 17;
        let w: Vec<f64> = (0..n)
            .map(|i| (i as f64 * 0.37).sin().max(0.0) * 1e3)
            .collect();
        let g: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 / (i as f64) })
            .collect();
        let dir = std::env::temp_dir().join(format!("l0-weights-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (fast, general) = (dir.join("fast.csv"), dir.join("general.csv"));
        let rows = (0..n).map(|i| vec![i.to_string(), num(w[i]), num(g[i])]);
        write_csv(&general, &["column", "weight", "gate"], rows).unwrap();
        for par in [Par::Seq, Par::new(Some(3)), Par::current()] {
            write_weights_csv(&fast, &w, &g, par).unwrap();
            assert_eq!(
                std::fs::read(&fast).unwrap(),
                std::fs::read(&general).unwrap(),
                "{par:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rows() -> Vec<TargetRow> {
        target_rows(
            &["a".into(), "b".into(), "c".into()],
            &[99.0, 0.0, 9.0],
            &[100.0, 0.5, 0.0],
            &[TargetRole::Train, TargetRole::Train, TargetRole::Excluded],
        )
    }

    #[test]
    fn targets_csv_says_which_targets_are_within_their_bands_only_when_there_are_bands() {
        let dir = std::env::temp_dir().join(format!("l0-targets-bands-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("targets.csv");
        let carriers = vec![
            TargetCarrier {
                top_record: None,
                top_record_share: 0.0,
                records_contributing: 0,
            };
            3
        ];
        let mut r = rows();
        write_targets_csv(&path, &r, &carriers).unwrap();
        let plain = std::fs::read_to_string(&path).unwrap();
        assert!(plain.starts_with("target_name,estimate,target,error,rel_error,abs_error,rel_abs_error,excluded,holdout,top_record,top_record_share,records_contributing\n"));
        // Bands of 1% of |y + 1|: a (99 -> 100, off by 1 = 1%) is inside,
        // b (0 -> 0.5, 50%) and c (9 -> 0) are not.
        let bands: Vec<f64> = [99.0f64, 0.0, 9.0]
            .iter()
            .map(|y| 0.01 * (y + 1.0))
            .collect();
        set_bands(&mut r, Some(&bands));
        assert_eq!(
            r.iter()
                .map(TargetRow::within_tolerance)
                .collect::<Vec<_>>(),
            [Some(true), Some(false), Some(false)]
        );
        write_targets_csv(&path, &r, &carriers).unwrap();
        let banded = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = banded.lines().collect();
        assert!(
            lines[0].ends_with(",records_contributing,within_tolerance"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(",true")
                && lines[2].ends_with(",false")
                && lines[3].ends_with(",false")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accuracy_skips_excluded_targets() {
        let r = rows();
        assert_eq!(r[0].rel_error(), 0.01);
        assert_eq!(r[1].rel_error(), 0.5);
        let a = Accuracy::of(&r);
        assert_eq!(a.included, 2);
        assert_eq!(a.max_abs_rel_err, 0.5);
        assert!((a.mean_abs_rel_err - 0.255).abs() < 1e-15);
        assert_eq!(a.within, [0.5, 0.5, 0.5, 0.5]);
        assert!((a.rel_loss - (0.0001 + 0.25) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn json_text() {
        let j = Json::Object(vec![
            ("a".into(), Json::Int(3)),
            ("b".into(), Json::Num(0.5)),
            ("c".into(), Json::Str("x\"y\n".into())),
            ("d".into(), Json::Num(f64::NAN)),
            ("e".into(), Json::Object(vec![])),
            ("f".into(), Json::Num(-0.0)),
            (
                "g".into(),
                Json::Array(vec![Json::Bool(true), Json::Str("t".into())]),
            ),
        ]);
        assert_eq!(
            j.to_text(),
            "{\n  \"a\": 3,\n  \"b\": 0.5,\n  \"c\": \"x\\\"y\\n\",\n  \"d\": null,\n  \"e\": {},\n  \"f\": 0.0,\n  \"g\": [true, \"t\"]\n}\n"
        );
        // Objects inside arrays, control characters, numbers as `{:?}`:
        // the bytes of the writer before serde_json.
        let j = Json::Object(vec![
            (
                "h".into(),
                Json::Array(vec![
                    Json::Object(vec![("x".into(), Json::Int(-1))]),
                    Json::Num(1e-7),
                    Json::Num(1e16),
                ]),
            ),
            ("s".into(), Json::Str("\u{8}\u{c}\u{1f}\\/".into())),
            ("t".into(), Json::Array(vec![])),
        ]);
        assert_eq!(
            j.to_text(),
            "{\n  \"h\": [{\n    \"x\": -1\n  }, 1e-7, 1e16],\n  \"s\": \"\\u0008\\u000c\\u001f\\\\/\",\n  \"t\": []\n}\n"
        );
    }

    #[test]
    fn targets_and_log_share_column_names() {
        assert_eq!(LOG_HEADER, LOG_COLUMNS.join(","));
        let shared: Vec<&str> = LOG_COLUMNS
            .iter()
            .copied()
            .filter(|c| *c != "epoch" && *c != "loss")
            .collect();
        assert_eq!(TARGET_COLUMNS[..7], shared[..7]);
        assert_eq!(TARGET_COLUMNS[8], shared[7]);
        assert_eq!(num(-0.0), "0.0");
        assert_eq!(num(-1.5), "-1.5");
    }

    #[test]
    fn log_resume_drops_later_and_partial_rows() {
        let d = std::env::temp_dir().join(format!("l0-report-log-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("log.csv");
        let names = vec!["x,1".to_string(), "y".to_string()];
        let mut w = LogWriter::create(&p).unwrap();
        for epoch in [10, 20, 30] {
            w.append(
                epoch,
                &names,
                &[1.0, 2.0],
                &[1.5, 2.0],
                0.25,
                &[false, true],
            )
            .unwrap();
        }
        drop(w);
        // A partial line, as a kill mid-write would leave.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"y,1.0,2.0,4").unwrap();
        drop(f);
        let mut w = LogWriter::resume(&p, 20).unwrap();
        w.append(21, &names, &[1.0, 2.0], &[1.0, 2.0], 0.5, &[false, true])
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 3 * 2);
        assert_eq!(lines[0], LOG_HEADER);
        assert_eq!(lines[1], "\"x,1\",1.5,1.0,10,0.5,0.25,0.5,0.25,0.25,false");
        assert!(lines[2].ends_with(",true"));
        assert_eq!(log_line_epoch(lines[4]), Some(20));
        assert_eq!(log_line_epoch(lines[6]), Some(21));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
