//! A calibration fit's progress ([`Progress`]): the metrics over the
//! targets made from the engine's snapshots ([`TargetMetrics`]) and the
//! observers that receive them ([`CalibrationObserver`]).

use super::params::FitParams;
use super::targets::{rel_scale, target_roles, TargetRole};
use crate::backend::{Hyper, ParamState};
use crate::engine::{Observer, Snapshot};
use crate::error::Result;
use std::collections::BTreeMap;
use std::fmt;

/// Progress of a fit, as the reference prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// 1-based epoch within this fit.
    pub epoch: u64,
    /// Epochs of this fit.
    pub epochs: u64,
    /// The epoch's total (stochastic) loss.
    pub total_loss: f64,
    /// Its data part.
    pub data_loss: f64,
    /// Its L0 penalty (expected open gates).
    pub l0_penalty: f64,
    /// Mean of `|y - yhat| / (y + 1)` over the targets in the loss, with
    /// deterministic weights.
    pub mean_rel_err: f64,
    /// Maximum of the same.
    pub max_rel_err: f64,
    /// Mean over groups of the per-group mean (with groups).
    pub mean_group_rel_err: Option<f64>,
    /// Mean of `|y - yhat| / (y + 1)` over the holdout targets (None
    /// without a holdout).
    pub holdout_mean_rel_err: Option<f64>,
    /// Maximum of the same.
    pub holdout_max_rel_err: Option<f64>,
    /// Nonzero deterministic weights.
    pub active: u64,
    /// Columns.
    pub n: usize,
    /// Active weights by size: <0.01, 0.01-0.1, 0.1-1, 1-10, 10-1000, >=1000.
    pub buckets: [u64; 6],
}

impl Progress {
    /// Share of weights that are zero.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.active as f64 / self.n as f64
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, err) = match self.mean_group_rel_err {
            Some(g) => ("mean_group_mare", g),
            None => ("mean_error", self.mean_rel_err),
        };
        write!(
            f,
            "Epoch {:4}: {label}={:.4}%, max_error={:.1}%, total_loss={:.3}, active={:4}/{} ({:.1}% sparse)",
            self.epoch,
            100.0 * err + 0.0, // + 0.0: -0 prints as 0
            100.0 * self.max_rel_err + 0.0,
            self.total_loss + 0.0,
            self.active,
            self.n,
            100.0 * self.sparsity() + 0.0
        )?;
        if let (Some(mean), Some(max)) = (self.holdout_mean_rel_err, self.holdout_max_rel_err) {
            write!(
                f,
                ", holdout_mean_error={:.4}%, holdout_max_error={:.1}%",
                100.0 * mean + 0.0,
                100.0 * max + 0.0
            )?;
        }
        if self.active == 0 {
            return write!(f, "\n         Weight dist: [no active weights]");
        }
        let labels = ["<0.01", "0.01-0.1", "0.1-1", "1-10", "10-1000", ">1000"];
        let parts: Vec<String> = labels
            .iter()
            .zip(self.buckets)
            .map(|(l, c)| format!("{l}: {:.1}%", 100.0 * c as f64 / self.active as f64))
            .collect();
        write!(f, "\n         Weight dist: [{}]", parts.join(", "))
    }
}

/// An [`Observer`] for calibration fits: receives model-level progress.
pub trait CalibrationObserver {
    /// Report whenever the model's step count is a multiple of this, and at
    /// the last epoch (None: only the last).
    fn report_every(&self) -> Option<u64>;
    /// Receives the raw snapshot of a report epoch (the model's step count
    /// and the deterministic predictions `yhat`), just before
    /// [`CalibrationObserver::progress`] receives its summary. Does nothing
    /// unless overridden.
    fn snapshot(&mut self, _s: &Snapshot) -> Result<()> {
        Ok(())
    }
    /// Receives progress.
    fn progress(&mut self, p: &Progress) -> Result<()>;
    /// Checkpoint whenever the model's step count is a multiple of this (None: never).
    fn checkpoint_every(&self) -> Option<u64> {
        None
    }
    /// Receives the state to checkpoint.
    fn checkpoint(&mut self, _state: &ParamState) -> Result<()> {
        Ok(())
    }
    /// Turns a raw snapshot into progress (the metrics need y and the groups).
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress;
    /// Asked after every epoch: true ends the fit after it, with the model
    /// holding that epoch's state (for a checkpoint; `fit` continues from
    /// it bit for bit). Never, unless overridden.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// Computes [`Progress`] from snapshots and hands it to a closure.
pub struct ProgressObserver<'a, 'f> {
    metrics: TargetMetrics<'a>,
    every: Option<u64>,
    n: usize,
    f: &'f mut dyn FnMut(&Progress) -> Result<()>,
}

impl<'a, 'f> ProgressObserver<'a, 'f> {
    /// An observer for targets `y` under `opts`, over `n` columns.
    pub fn new(
        y: &'a [f64],
        opts: &FitParams,
        n: usize,
        f: &'f mut dyn FnMut(&Progress) -> Result<()>,
    ) -> Result<Self> {
        Ok(ProgressObserver {
            metrics: TargetMetrics::new(y, opts)?,
            every: opts.report_every,
            n,
            f,
        })
    }
}

impl CalibrationObserver for ProgressObserver<'_, '_> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn progress(&mut self, p: &Progress) -> Result<()> {
        (self.f)(p)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
}

/// Mean and max of `rel[q]` over the targets `qs` (0 and 0 when empty).
fn mean_max(rel: &[f64], qs: &[usize]) -> (f64, f64) {
    let mean = qs.iter().map(|&q| rel[q]).sum::<f64>() / qs.len().max(1) as f64;
    let max = qs.iter().map(|&q| rel[q]).fold(0.0, f64::max);
    (mean, max)
}

/// What the progress line needs to know about the targets.
#[derive(Clone, Debug)]
pub struct TargetMetrics<'a> {
    y: &'a [f64],
    /// The targets in the loss.
    train: Vec<usize>,
    /// The holdout targets.
    held: Vec<usize>,
    groups: Option<Vec<i64>>,
}

impl<'a> TargetMetrics<'a> {
    /// Metrics for targets `y`, groups, exclusions and holdout from `opts`.
    pub fn new(y: &'a [f64], opts: &FitParams) -> Result<Self> {
        let role = target_roles(y.len(), opts);
        let with_role = |r: TargetRole| (0..role.len()).filter(|&q| role[q] == r).collect();
        Ok(TargetMetrics {
            y,
            train: with_role(TargetRole::Train),
            held: with_role(TargetRole::Holdout),
            groups: opts.target_groups.clone(),
        })
    }

    /// Progress from a snapshot.
    pub fn progress(&self, s: &Snapshot, total_loss: f64, n: usize) -> Progress {
        let rel: Vec<f64> = self
            .y
            .iter()
            .zip(s.yhat)
            .map(|(y, yh)| ((y - yh) / rel_scale(*y)).abs())
            .collect();
        let qs = &self.train;
        let (mean, max) = mean_max(&rel, qs);
        let holdout = (!self.held.is_empty()).then(|| mean_max(&rel, &self.held));
        let group_mean = self.groups.as_ref().map(|g| {
            let mut acc: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
            for &q in qs {
                let e = acc.entry(g[q]).or_default();
                e.0 += rel[q];
                e.1 += 1;
            }
            acc.values().map(|(s, c)| s / *c as f64).sum::<f64>() / acc.len().max(1) as f64
        });
        Progress {
            epoch: s.epoch,
            epochs: s.epochs,
            total_loss,
            data_loss: s.losses.data,
            l0_penalty: s.losses.l0,
            mean_rel_err: mean,
            max_rel_err: max,
            mean_group_rel_err: group_mean,
            holdout_mean_rel_err: holdout.map(|h| h.0),
            holdout_max_rel_err: holdout.map(|h| h.1),
            active: s.weights.active,
            n,
            buckets: s.weights.buckets,
        }
    }
}

pub(super) struct Adapter<'o> {
    pub(super) inner: &'o mut dyn CalibrationObserver,
    pub(super) hyper: Hyper,
    pub(super) last: Option<Progress>,
}

impl Observer for Adapter<'_> {
    fn report_every(&self) -> Option<u64> {
        self.inner.report_every()
    }
    fn report(&mut self, s: &Snapshot) -> Result<()> {
        self.inner.snapshot(s)?;
        let p = self.inner.summarize(s, s.losses.total(&self.hyper));
        self.inner.progress(&p)?;
        self.last = Some(p);
        Ok(())
    }
    fn checkpoint_every(&self) -> Option<u64> {
        self.inner.checkpoint_every()
    }
    fn checkpoint(&mut self, state: &ParamState) -> Result<()> {
        self.inner.checkpoint(state)
    }
    fn stop_requested(&mut self) -> bool {
        self.inner.stop_requested()
    }
}
