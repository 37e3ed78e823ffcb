//! The observer of the fit: progress lines or bar, log, checkpoints, Ctrl-C.

use super::*;

/// Receives the fit's reports and checkpoints: prints progress (a bar on a
/// terminal, plain lines otherwise), appends the log, writes checkpoints,
/// and stops the fit after the epoch in which SIGINT or SIGTERM arrived.
pub(crate) struct RunObserver<'a> {
    pub(super) metrics: TargetMetrics<'a>,
    pub(super) n: usize,
    pub(super) y: &'a [f64],
    pub(super) names: &'a [String],
    /// Whether each target is a holdout target (marked in the log).
    pub(super) holdout: Vec<bool>,
    pub(super) report_every: u64,
    pub(super) progress_every: u64,
    pub(super) total: u64,
    pub(super) log: Option<(u64, LogWriter)>,
    pub(super) checkpoint: CheckpointSink,
    pub(super) step: u64,
    pub(super) yhat: Vec<f64>,
    pub(super) bar: Option<ProgressBar>,
    pub(super) interrupt: Interrupt,
}

/// Where and with what the run's checkpoints are written.
pub(crate) struct CheckpointSink {
    /// The periodic interval (--checkpoint-every), if any.
    pub(super) every: Option<u64>,
    pub(super) path: PathBuf,
    pub(super) seed: u64,
    pub(super) fingerprint: u64,
    /// The resolved settings followed by the input files.
    pub(super) settings: Vec<(String, String)>,
}

impl CheckpointSink {
    pub(super) fn write(&self, state: &ParamState) -> l0::Result<()> {
        Checkpoint {
            seed: self.seed,
            fingerprint: self.fingerprint,
            state: state.clone(),
            settings: self.settings.clone(),
        }
        .write(&self.path)
    }
}

impl CalibrationObserver for RunObserver<'_> {
    fn report_every(&self) -> Option<u64> {
        Some(self.report_every)
    }
    fn snapshot(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.step = s.step;
        self.yhat.clear();
        self.yhat.extend_from_slice(s.yhat);
        Ok(())
    }
    fn progress(&mut self, p: &Progress) -> l0::Result<()> {
        let step = self.step;
        if let Some((k, log)) = self.log.as_mut() {
            if step.is_multiple_of(*k) {
                log.append(
                    step,
                    self.names,
                    self.y,
                    &self.yhat,
                    p.total_loss,
                    &self.holdout,
                )?;
            }
        }
        let mut g = p.clone();
        g.epoch = step;
        g.epochs = self.total;
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                let err = g.mean_group_rel_err.unwrap_or(g.mean_rel_err);
                bar.set_message(format!(
                    "loss {:.4} err {:.2}% max {:.1}% active {} ({:.1}% sparse)",
                    g.total_loss,
                    100.0 * err + 0.0,
                    100.0 * g.max_rel_err + 0.0,
                    g.active,
                    100.0 * g.sparsity() + 0.0
                ));
            }
            None => {
                if step.is_multiple_of(self.progress_every) || step == self.total {
                    eprintln!("{g}");
                }
            }
        }
        Ok(())
    }
    fn checkpoint_every(&self) -> Option<u64> {
        self.checkpoint.every
    }
    fn checkpoint(&mut self, state: &ParamState) -> l0::Result<()> {
        self.checkpoint.write(state)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
    fn stop_requested(&mut self) -> bool {
        self.interrupt.requested()
    }
}

pub(super) fn progress_bar(total: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:25}] {pos}/{len} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(start);
    bar
}
