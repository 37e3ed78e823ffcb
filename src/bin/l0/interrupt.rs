//! Ctrl-C and SIGTERM during `l0 calibrate`.
//!
//! The first signal sets a flag that the fit reads after every epoch: the
//! run then stops, writes a checkpoint, prints the command that resumes it
//! and exits with [`EXIT_CODE`]. A second signal, for a run that does not
//! stop soon enough, exits at once with the same code. Both are
//! signal-hook's safe registrations; nothing here runs in the handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit code of an interrupted run (128 + SIGINT, as shells report it).
pub(super) const EXIT_CODE: u8 = 130;

/// Whether a stop has been asked for.
#[derive(Clone)]
pub(super) struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the handlers for SIGINT and SIGTERM. Where they cannot be
    /// installed the run goes on without them (a signal then ends it at
    /// once, as it would have before).
    pub(super) fn install() -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            // The shutdown must be registered first: it acts only when an
            // earlier signal has already set the flag.
            let _ = signal_hook::flag::register_conditional_shutdown(
                sig,
                EXIT_CODE as i32,
                Arc::clone(&flag),
            );
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        Interrupt { flag }
    }

    /// True once SIGINT or SIGTERM has arrived.
    pub(super) fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
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
