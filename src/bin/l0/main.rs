//! `l0`: the command line over the `l0` library.
//!
//! * `l0 calibrate`: sparse survey calibration weights (with no input
//!   files: the built-in demo problem);
//! * `l0 regress`: L0-regularized sparse linear regression;
//! * `l0 predict`: `M w` for a matrix and a weight vector.
//!
//! Input problems are reported as one line on stderr, `error: <path>: ...`,
//! with exit code 2 (other failures: 1; an interrupted calibration: 130).
//! Outputs are written only after a successful fit, together. See
//! README.md for the files written.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use l0::calibration::{
    Calibration, CalibrationObserver, CalibrationParams, FitParams, Init, Loss, Progress,
    TargetMetrics, TargetRole,
};
use l0::checkpoint::{changed_settings, problem_fingerprint, Checkpoint};
use l0::diagnostics::{concentration_warnings, unreachable_targets, TargetCarrier};
use l0::engine::Snapshot;
use l0::io::{self, csv::read_names, npy::write_npy_f64};
use l0::report::{self, Accuracy, Json, LogWriter, Summary};
use l0::{
    backend::ParamState, Device, GateParams, L0Error, Regression, RegressionFitParams,
    RegressionParams, SparseMatrix, TestGate,
};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod calibrate;
mod inputs;
mod interrupt;
mod outdir;
mod predict;
mod regress;
mod sweep;

use calibrate::{calibrate, CalibrateArgs};
use inputs::flag_error;
use predict::{predict, PredictArgs};
use regress::{regress, RegressArgs};
use sweep::{sweep, SweepArgs};

#[derive(Parser)]
#[command(
    name = "l0",
    version,
    about = "L0-regularized sparse survey calibration and sparse regression (Hard Concrete gates + Adam)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit sparse non-negative calibration weights w with M w ≈ y (no input
    /// files: the built-in demo problem).
    Calibrate(Box<CalibrateArgs>),
    /// Fit an L0-regularized sparse linear regression y ≈ X b + c.
    Regress(Box<RegressArgs>),
    /// Compute M w for a matrix and a weight vector.
    Predict(PredictArgs),
    /// Train one calibration model per L0 strength (--lambda-l0 A,B,... or
    /// --lambda-grid LO:HI:N), with the inputs and flags of calibrate.
    Sweep(Box<SweepArgs>),
}

/// Options shared by both models' fits.
#[derive(Args, Clone)]
struct CommonFit {
    /// Total epochs (Adam steps) [default: 1000]. After --resume, the run
    /// continues until the model has trained this many.
    #[arg(long)]
    epochs: Option<u64>,
    /// Adam learning rate [default: 0.01; the calibrate demo: 0.2].
    #[arg(long)]
    lr: Option<f64>,
    /// L0 penalty strength [default: 0.01; the calibrate demo: 4e-6]; `l0
    /// sweep` takes a comma-separated list.
    #[arg(long, value_delimiter = ',', value_name = "L")]
    lambda_l0: Vec<f64>,
    /// L2 penalty strength [default: 0].
    #[arg(long)]
    lambda_l2: Option<f64>,
    /// Gate temperature [default: 2/3].
    #[arg(long)]
    beta: Option<f64>,
    /// Lower stretch bound of the gates [default: -0.1].
    #[arg(long)]
    gamma: Option<f64>,
    /// Upper stretch bound of the gates [default: 1.1].
    #[arg(long)]
    zeta: Option<f64>,
    /// Standard deviation of the noise added to the gate logits at the start [default: 0.01].
    #[arg(long)]
    log_alpha_jitter_sd: Option<f64>,
    /// Seed of every random draw [default: drawn at random, then reported;
    /// the calibrate demo: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Where to run: auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    device: Option<String>,
    /// CPU threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Deterministic gate for results: temperature (sigmoid(a/beta)) or paper (sigmoid(a)) [default: temperature].
    #[arg(long)]
    test_gate: Option<String>,
    /// Print progress every this many epochs [default: 1/50 of the epochs
    /// with a progress bar, 1/10 without].
    #[arg(long)]
    progress_every: Option<u64>,
}

/// The L0 strengths of a --lambda-l0 list or a --lambda-grid LO:HI:N (one
/// of the two; None when neither is given), checked.
fn lambda_values(list: &[f64], grid: Option<&str>) -> CliResult<Option<Vec<f64>>> {
    let values = match (grid, list.is_empty()) {
        (Some(_), false) => {
            return Err(input_error(
                "--lambda-l0 and --lambda-grid exclude each other: give one",
            ))
        }
        (None, true) => return Ok(None),
        (None, false) => list.to_vec(),
        (Some(g), true) => {
            let bad = || {
                input_error(format!(
                    "--lambda-grid: expected LO:HI:N (two numbers and a count), got '{g}'"
                ))
            };
            let parts: Vec<&str> = g.split(':').collect();
            let [lo, hi, n] = parts[..] else {
                return Err(bad());
            };
            let (lo, hi) = (
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            );
            let n: usize = match n.parse() {
                Ok(n) => n,
                // More digits than a usize holds: beyond any grid's bound.
                Err(_) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => usize::MAX,
                Err(_) => return Err(bad()),
            };
            l0::sweep::check_grid_count(n).map_err(|_| {
                input_error(format!(
                    "--lambda-grid: a lambda grid holds at most {} values (one model each), got {}",
                    l0::sweep::MAX_GRID,
                    parts[2]
                ))
            })?;
            l0::sweep::lambda_grid(lo, hi, n).map_err(|e| flag_error("lambda-grid", e))?
        }
    };
    l0::sweep::check_lambdas(&values).map_err(|e| flag_error("lambda-l0", e))?;
    Ok(Some(values))
}

impl CommonFit {
    /// Refuses a --threads of 0 or above [`l0::limits::max_threads`],
    /// before anything is read or built.
    fn check_threads(&self) -> CliResult<()> {
        l0::limits::check_threads(self.threads).map_err(|e| flag_error("threads", e))?;
        // Every loop of the run (reading, reports), not only the fit's.
        l0::par::Par::bound_global(self.threads);
        Ok(())
    }

    /// The one --lambda-l0 of a single fit (None: not given); a list is
    /// refused.
    fn single_lambda(&self, command: &str) -> CliResult<Option<f64>> {
        match self.lambda_l0[..] {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(input_error(format!(
                "--lambda-l0: l0 {command} fits one value; l0 sweep trains one model per value of a list"
            ))),
        }
    }
}

/// A failure to report: one line and an exit code (2: bad input, 1: other;
/// an empty message for an exit already explained, such as 130 after Ctrl-C).
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

type CliResult<T> = Result<T, Failure>;

fn input_error(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

impl From<L0Error> for Failure {
    fn from(e: L0Error) -> Self {
        let code = match e {
            L0Error::Io { .. } | L0Error::Diverged { .. } | L0Error::Cuda(_) => 1,
            _ => 2,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// Turns an error about the file `path` into "path: message", dropping
/// the other places the library already names the path.
fn about_file(path: &Path, e: L0Error) -> Failure {
    let p = path.display().to_string();
    let msg = e
        .to_string()
        .replace(&format!("{p}: "), "")
        .replace(&format!(" ({p})"), "");
    input_error(format!("{p}: {msg}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Calibrate(a) => calibrate(*a),
        Command::Regress(a) => regress(*a),
        Command::Predict(a) => predict(a),
        Command::Sweep(a) => sweep(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
