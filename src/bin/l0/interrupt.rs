//! Ctrl-C and SIGTERM during a run of `l0`.
//!
//! The handlers are installed first thing. Outside training (reading the
//! inputs, building the thread pool, refits, writing the results) a signal
//! exits at once with [`EXIT_CODE`]: nothing half-written stays in the
//! output folder, whose results are put in place in one step. From the
//! first epoch a fit polls ([`Interrupt::requested`]) until
//! [`Interrupt::at_once`], the first signal only sets a flag that the fit
//! reads after every epoch: the run then stops, writes a checkpoint,
//! prints the command that resumes it and exits with [`EXIT_CODE`]. A
//! second signal, for a run that does not stop soon enough, exits at once
//! with the same code. All are signal-hook's safe registrations; nothing
//! here runs in the handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit code of an interrupted run (128 + SIGINT, as shells report it).
pub(super) const EXIT_CODE: u8 = 130;

/// Whether a stop has been asked for, and whether a signal ends the run at
/// once.
#[derive(Clone)]
pub(super) struct Interrupt {
    flag: Arc<AtomicBool>,
    at_once: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the handlers for SIGINT and SIGTERM, a signal exiting at
    /// once. Where they cannot be installed the run goes on without them
    /// (a signal then ends it at once, as it would have before).
    pub(super) fn install() -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        let at_once = Arc::new(AtomicBool::new(true));
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            // The shutdowns must be registered first: they act on the
            // flags as they were before this signal (outside training, or
            // an earlier signal already set the flag).
            for cond in [&at_once, &flag] {
                let _ = signal_hook::flag::register_conditional_shutdown(
                    sig,
                    EXIT_CODE as i32,
                    Arc::clone(cond),
                );
            }
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        Interrupt { flag, at_once }
    }

    /// True once SIGINT or SIGTERM has arrived; called by a fit after each
    /// epoch, from which on a signal only asks the fit to stop.
    pub(super) fn requested(&self) -> bool {
        self.at_once.store(false, Ordering::SeqCst);
        self.flag.load(Ordering::SeqCst)
    }

    /// After a fit: a signal exits at once again.
    pub(super) fn at_once(&self) {
        self.at_once.store(true, Ordering::SeqCst);
    }
}

/// `text` quoted for a POSIX shell where it needs it.
pub(super) fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
