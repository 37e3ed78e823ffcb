//! One batch of a λ sweep (at most [`MAX_BATCH`] models trained together)
//! that saves a checkpoint every K epochs and, run again, resumes from the
//! last one: what each Ray task of `l0_rs.calibration.sweep(...,
//! executor="ray")` runs ([`sweep_batch`]). A resumed batch ends bit for
//! bit as the uninterrupted one ([`l0::sweep::advance_with_stops`]).
//!
//! The batch's folder holds `latest` (the step of the last complete
//! checkpoint, as text) and `step-<STEP>/model-<k>.l0ck`: one file per
//! model in [`l0::checkpoint`]'s format, whose settings name the batch (λ,
//! the model's place in it, epochs, the model and fit options) so that a
//! folder of another sweep is refused. A checkpoint is written in full
//! before `latest` names it and the one before is removed only then, so a
//! task killed at any moment leaves a complete checkpoint behind.

use super::{guard, interrupted, report_dict, slice, FitOptions, Matrix, PyCalibration, PyLink};
use l0::calibration::{CalibrationParams, Progress};
use l0::checkpoint::{changed_settings, problem_fingerprint, Checkpoint};
use l0::model::MAX_BATCH;
use l0::sweep::{self, SweepModel};
use l0::{FitParams, L0Error};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// The file naming the step of the last complete checkpoint.
const LATEST: &str = "latest";

/// The folder of the checkpoint at `step`.
fn step_dir(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:010}"))
}

/// Model `k`'s checkpoint file at `step`.
fn model_file(dir: &Path, step: u64, k: usize) -> PathBuf {
    step_dir(dir, step).join(format!("model-{k}.l0ck"))
}

/// What identifies one batch of a sweep, recorded in every checkpoint.
struct Batch<'a> {
    params: &'a CalibrationParams,
    opts: &'a FitParams,
    lambdas: &'a [f64],
    seed: u64,
    fingerprint: u64,
}

impl Batch<'_> {
    /// The settings of model `k`'s checkpoints: all must match on resume.
    /// The thread count and report schedule do not change the bits, so
    /// they are left out; the seed is the checkpoint's own field.
    fn settings(&self, k: usize) -> Vec<(String, String)> {
        let params = CalibrationParams {
            seed: None,
            ..self.params.clone()
        };
        let opts = FitParams {
            lambda_l0: 0.0,
            threads: None,
            report_every: None,
            ..self.opts.clone()
        };
        [
            ("lambda_l0", format!("{:?}", self.lambdas[k])),
            ("model", format!("{k} of {}", self.lambdas.len())),
            ("epochs", self.opts.epochs.to_string()),
            ("model_options", format!("{params:?}")),
            ("fit_options", format!("{opts:?}")),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
    }

    /// Writes the models' checkpoint under `dir`, then names it in
    /// `latest` and removes the one before (a folder that cannot be
    /// removed is left; it is never read again).
    fn save(&self, dir: &Path, models: &[SweepModel]) -> l0::Result<()> {
        let step = models.first().map_or(0, |s| s.model.state().step);
        let folder = step_dir(dir, step);
        std::fs::create_dir_all(&folder).map_err(|e| L0Error::Io {
            path: folder.clone(),
            message: format!("cannot create the checkpoint folder: {e}"),
        })?;
        for (k, s) in models.iter().enumerate() {
            let mut settings = self.settings(k);
            settings.push(("seconds".into(), format!("{:?}", s.report.seconds)));
            let c = Checkpoint {
                seed: self.seed,
                fingerprint: self.fingerprint,
                state: s.model.state().clone(),
                settings,
            };
            c.write(&model_file(dir, step, k))?;
        }
        let previous = latest(dir)?;
        l0::io::write_atomic(&dir.join(LATEST), |w| writeln!(w, "{step}"))?;
        if let Some(p) = previous.filter(|&p| p != step) {
            std::fs::remove_dir_all(step_dir(dir, p)).ok();
        }
        Ok(())
    }

    /// Loads the last checkpoint under `dir` into `models` (fresh, at step
    /// 0), with each report's epochs and seconds so far; returns its step,
    /// 0 when there is none.
    fn resume(&self, dir: &Path, models: &mut [SweepModel]) -> l0::Result<u64> {
        let Some(step) = latest(dir)? else {
            return Ok(0);
        };
        for (k, s) in models.iter_mut().enumerate() {
            let path = model_file(dir, step, k);
            let c = Checkpoint::read(&path)?;
            self.check(&path, &c, k)?;
            if c.state.step != step {
                return Err(L0Error::Format {
                    path,
                    message: format!(
                        "holds step {}, not the step {step} that latest names",
                        c.state.step
                    ),
                });
            }
            s.report.seconds = c
                .setting("seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            s.report.epochs = step;
            s.model.set_state(c.state)?;
        }
        Ok(step)
    }

    /// Refuses a checkpoint of another problem or another batch, naming
    /// the settings that differ.
    fn check(&self, path: &Path, c: &Checkpoint, k: usize) -> l0::Result<()> {
        if c.fingerprint != self.fingerprint {
            return Err(L0Error::config(format!(
                "{}: the checkpoint was written for another problem (its matrix, targets or groups differ)",
                path.display()
            )));
        }
        let mut differ: Vec<String> = changed_settings(&c.settings, &self.settings(k))
            .into_iter()
            .map(|c| c.name)
            .filter(|n| n != "seconds")
            .collect();
        if c.seed != self.seed {
            differ.insert(0, "seed".into());
        }
        if !differ.is_empty() {
            return Err(L0Error::config(format!(
                "{}: the checkpoint is of another sweep batch (its {} differ); give another checkpoint_dir or empty this one",
                path.display(),
                differ.join(", ")
            )));
        }
        Ok(())
    }
}

/// The step that `dir`'s `latest` names; None when there is no such file.
fn latest(dir: &Path) -> l0::Result<Option<u64>> {
    let path = dir.join(LATEST);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| L0Error::Format {
            message: format!(
                "expected the step of the last checkpoint, got {:?}",
                text.trim()
            ),
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(L0Error::Io {
            path,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// `p` counted from step `from` instead of the resumed fit's start.
fn from_start(p: &Progress, from: u64) -> Progress {
    Progress {
        epoch: p.epoch + from,
        epochs: p.epochs + from,
        ..p.clone()
    }
}

/// A batch of a λ sweep ([`l0::sweep`]): one model per `lambdas[k]` (at
/// most [`MAX_BATCH`]), from `template`'s options and seed, fitted together
/// under `opts` with the GIL released, resuming from the last checkpoint in
/// `checkpoint_dir` if there is one, and saving one there every
/// `checkpoint_every` epochs of the models' step count (not at the end),
/// after which `on_checkpoint(step)` is called when given. Returns `(step
/// resumed from (0 for a fresh start), one (lambda_l0, model, report) per
/// λ)`: exactly what `sweep` returns for these λ, the reports' `seconds`
/// aside.
#[pyfunction]
#[pyo3(signature = (template, m, y, opts, lambdas, checkpoint_dir, checkpoint_every, printer, on_checkpoint))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn sweep_batch<'py>(
    py: Python<'py>,
    template: &PyCalibration,
    m: &Matrix,
    y: PyReadonlyArray1<'py, f64>,
    opts: FitOptions,
    lambdas: Vec<f64>,
    checkpoint_dir: PathBuf,
    checkpoint_every: u64,
    printer: Option<Py<PyAny>>,
    on_checkpoint: Option<Py<PyAny>>,
) -> PyResult<(u64, Vec<(f64, PyCalibration, Bound<'py, PyDict>)>)> {
    guard(|| {
        let y = slice("y", &y)?;
        let FitOptions(opts) = opts;
        template.check_columns(m)?;
        if lambdas.len() > MAX_BATCH {
            return Err(PyValueError::new_err(format!(
                "a checkpointed batch trains at most {MAX_BATCH} models, got {} lambda_l0 values",
                lambdas.len()
            )));
        }
        let params = template.params_with_seed(template.model.seed());
        let batch = Batch {
            params: &params,
            opts: &opts,
            lambdas: &lambdas,
            seed: template.model.seed(),
            fingerprint: problem_fingerprint(&m.m, y, opts.target_groups.as_deref()),
        };
        let mut link = PyLink::new(printer, opts.report_every);
        let mut hook_error = None;
        let r = py.detach(|| {
            let mut models = sweep::start(m.m.cols(), &params, &lambdas)?;
            let from = batch.resume(&checkpoint_dir, &mut models)?;
            sweep::advance_with_stops(
                &mut models,
                &m.m,
                y,
                &opts,
                opts.epochs.saturating_sub(from),
                checkpoint_every,
                &mut |k, p| {
                    let p = from_start(p, from);
                    link.step = p.epoch;
                    link.print(&format!("[lambda_l0={}] {p}", lambdas[k]))?;
                    interrupted(&mut link)
                },
                &mut |models| {
                    batch.save(&checkpoint_dir, models)?;
                    let Some(hook) = &on_checkpoint else {
                        return Ok(());
                    };
                    let step = models.first().map_or(0, |s| s.model.state().step);
                    Python::attach(|py| hook.call1(py, (step,)).map(|_| ())).map_err(|e| {
                        hook_error = Some(e);
                        L0Error::config("on_checkpoint failed")
                    })
                },
            )?;
            for s in &mut models {
                s.report.last = s.report.last.as_ref().map(|p| from_start(p, from));
            }
            Ok((from, models))
        });
        if let Some(e) = hook_error {
            return Err(e);
        }
        let (from, models) = link.finish(r)?;
        let out = models
            .into_iter()
            .map(|s| {
                let report = report_dict(py, &s.report)?;
                Ok((s.lambda_l0, PyCalibration { model: s.model }, report))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((from, out))
    })
}
