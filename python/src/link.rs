//! What a running fit shares with Python while the GIL is released:
//! progress lines, signal checks (Ctrl-C) and the error that stopped it.

use super::*;

/// How often a running fit lets Python look at pending signals (Ctrl-C).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// What a running fit shares with Python: progress lines to print (with
/// the GIL taken back), signals to check, and the Python error that
/// stopped it.
pub(crate) struct PyLink {
    pub(crate) printer: Option<Py<PyAny>>,
    pub(crate) print_every: u64,
    pub(crate) step: u64,
    pub(crate) last_check: Instant,
    pub(crate) pending: Option<PyErr>,
}

impl PyLink {
    pub(crate) fn new(printer: Option<Py<PyAny>>, print_every: Option<u64>) -> Self {
        PyLink {
            printer,
            print_every: print_every.unwrap_or(0),
            step: 0,
            last_check: Instant::now(),
            pending: None,
        }
    }

    /// Prints `line` when the model's step is on the print schedule (the
    /// reference prints when `(epoch + 1) % verbose_freq == 0`, not at a
    /// last epoch off it).
    pub(crate) fn print(&mut self, line: &dyn std::fmt::Display) -> l0::Result<()> {
        let Some(printer) = &self.printer else {
            return Ok(());
        };
        if self.print_every == 0 || !self.step.is_multiple_of(self.print_every) {
            return Ok(());
        }
        let text = line.to_string();
        // An exception (KeyboardInterrupt during the print, a closed
        // stdout) stops the fit after this epoch, as a signal does.
        if let Err(e) = Python::attach(|py| printer.call1(py, (text,)).map(|_| ())) {
            self.pending = Some(e);
        }
        Ok(())
    }

    /// True once Python has a pending exception from a signal handler
    /// (KeyboardInterrupt), checked at most every [`SIGNAL_CHECK`].
    pub(crate) fn stop(&mut self) -> bool {
        if self.pending.is_some() {
            return true;
        }
        if self.last_check.elapsed() < SIGNAL_CHECK {
            return false;
        }
        self.last_check = Instant::now();
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            self.pending = Some(e);
            return true;
        }
        false
    }

    /// After the fit: the Python error that stopped it, else its own result.
    pub(crate) fn finish<T>(mut self, r: l0::Result<T>) -> PyResult<T> {
        match self.pending.take() {
            Some(e) => Err(e),
            None => r.or_py(),
        }
    }
}

pub(crate) struct CalibrationLink<'a> {
    pub(crate) metrics: TargetMetrics<'a>,
    pub(crate) every: Option<u64>,
    pub(crate) n: usize,
    pub(crate) link: &'a mut PyLink,
}

impl CalibrationObserver for CalibrationLink<'_> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn snapshot(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.link.step = s.step;
        Ok(())
    }
    fn progress(&mut self, p: &Progress) -> l0::Result<()> {
        self.link.print(p)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
    fn stop_requested(&mut self) -> bool {
        self.link.stop()
    }
}

/// Between reports of a refit or sweep: an error (which the pending
/// KeyboardInterrupt replaces) once Python has a pending signal.
pub(crate) fn interrupted(link: &mut PyLink) -> l0::Result<()> {
    if link.stop() {
        return Err(L0Error::config("interrupted"));
    }
    Ok(())
}
