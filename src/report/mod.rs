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
//!
//! Here: the target rows, their accuracy and the targets.csv / weights.csv
//! writers; `json.rs` summary.json's values and writer, `summary.rs` what
//! summary.json holds, `log.rs` the training log.

mod json;
mod log;
mod summary;
pub use json::*;
pub use log::*;
pub use summary::*;

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

#[cfg(test)]
mod tests {
    use super::log::log_line_epoch;
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
