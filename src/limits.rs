//! Upper bounds on the sizes a user controls, checked before anything is
//! allocated: the memory a number of columns or models will take against
//! the memory this process can still get ([`available_memory`]), the
//! number of CPU threads ([`max_threads`]), and the most models trained
//! together in one batch ([`MAX_BATCH`]).
//!
//! A size beyond them is refused with [`L0Error::TooLarge`] (memory) or
//! [`L0Error::InvalidConfig`] (threads) naming the argument, instead of an
//! allocation failure that aborts the process.

use crate::error::{L0Error, Result};

/// Bytes one calibration or regression model holds per column: its six
/// `f32` state arrays (parameters, gate logits, two Adam moments of each:
/// 24 bytes) plus the `f64` initial values built beside them (16 bytes) and
/// a margin for the fit's per-column buffers.
pub const MODEL_BYTES_PER_COLUMN: u64 = 64;

/// Bytes one model holds besides its columns (its struct, report, the
/// vectors' headers), counted generously.
pub const MODEL_BYTES_FIXED: u64 = 1024;

/// The threads one CPU fit may use per logical CPU: more only share the
/// same cores and cost memory and start-up time.
pub const THREADS_PER_CPU: usize = 4;

/// Most models trained together in one batch: a larger sweep runs in
/// batches of this many. One batch of 16 cost the same as two of 8 (5.3x
/// one fit on the 250k-column geo problem, 2 cores), while its per-row
/// buffers (the CPU backend's forward accumulators: 64 slabs x rows x
/// models x 8 bytes) double.
pub const MAX_BATCH: usize = 8;

/// The memory this process can still allocate, in bytes: the smaller of
/// the system's `MemAvailable` and what is left under an address-space
/// limit (`ulimit -v`). None where neither is known (not Linux): sizes are
/// then only checked for overflow.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo
        .as_deref()
        .and_then(|t| kib_field(t, "MemAvailable:"));
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| address_space_limit(&t));
    let used = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| kib_field(&t, "VmSize:"))
        .unwrap_or(0);
    let left = limit.map(|l| l.saturating_sub(used));
    match (available, left) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// A `NAME: N kB` line of /proc/meminfo or /proc/self/status, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft address-space limit of /proc/self/limits, in bytes (None when
/// unlimited).
fn address_space_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `bytes` in words: "1.5 GB", "12.0 MB", "512 bytes".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    for (unit, size) in UNITS {
        if bytes as f64 >= size {
            return format!("{:.1} {unit}", bytes as f64 / size);
        }
    }
    format!("{bytes} bytes")
}

/// Refuses `needed` bytes (None: more than a `u64` holds) for `what` when
/// they exceed [`available_memory`].
pub fn check_memory(what: &str, needed: Option<u64>) -> Result<()> {
    let available = available_memory();
    let fits = match (needed, available) {
        (None, _) => false,
        (Some(n), Some(a)) => n <= a,
        (Some(_), None) => true,
    };
    if fits {
        return Ok(());
    }
    Err(L0Error::TooLarge {
        what: what.to_string(),
        needed: needed.map_or("more than 18 EB".into(), human_bytes),
        available: available.map_or("the address space".into(), human_bytes),
    })
}

/// The memory of `models` models of `columns` columns each, in bytes (None
/// on overflow).
pub fn models_bytes(models: usize, columns: usize) -> Option<u64> {
    let per_model = (columns as u64)
        .checked_mul(MODEL_BYTES_PER_COLUMN)?
        .checked_add(MODEL_BYTES_FIXED)?;
    per_model.checked_mul(models as u64)
}

/// Refuses `n_features` columns of one model that do not fit in memory.
pub fn check_columns(n_features: usize) -> Result<()> {
    check_memory(
        &format!("n_features = {n_features}"),
        models_bytes(1, n_features),
    )
}

/// The most CPU threads a fit may ask for: [`THREADS_PER_CPU`] per
/// logical CPU.
pub fn max_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    THREADS_PER_CPU * cpus
}

/// Refuses a thread count of 0 or above [`max_threads`] (None: all cores).
pub fn check_threads(threads: Option<usize>) -> Result<()> {
    let Some(t) = threads else {
        return Ok(());
    };
    let most = max_threads();
    if t == 0 {
        return Err(L0Error::config("threads must be at least 1"));
    }
    if t > most {
        return Err(L0Error::config(format!(
            "threads must be at most {most} ({THREADS_PER_CPU} x the {} logical CPUs: more threads only share the same cores), got {t}",
            most / THREADS_PER_CPU
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let meminfo = "MemTotal:       16000000 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(kib_field(meminfo, "MemAvailable:"), Some(2048 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax address space         1073741824           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(1 << 30));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
    }

    #[test]
    fn sizes_beyond_memory_are_refused() {
        assert_eq!(models_bytes(2, 10), Some(2 * (640 + 1024)));
        assert_eq!(models_bytes(usize::MAX, 2), None);
        let e = check_columns(1 << 50).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "n_features = 1125899906842624 needs 72057.6 TB of memory, more than the "
            ),
            "{e}"
        );
        assert!(check_columns(1000).is_ok());
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(512), "512 bytes");
    }

    #[test]
    fn threads_are_bounded() {
        let most = max_threads();
        assert!(check_threads(Some(most)).is_ok());
        assert!(check_threads(None).is_ok());
        let e = check_threads(Some(most + 1)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "invalid configuration: threads must be at most {most} (4 x the {} logical CPUs: more threads only share the same cores), got {}",
                most / 4,
                most + 1
            )
        );
        assert_eq!(
            check_threads(Some(0)).unwrap_err().to_string(),
            "invalid configuration: threads must be at least 1"
        );
    }
}
