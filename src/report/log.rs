//! The long-format training log, log.csv: one row per target at each logged epoch ([`LogWriter`]).

use super::*;

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
pub(super) fn log_line_epoch(line: &str) -> Option<u64> {
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
