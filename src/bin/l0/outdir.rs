//! The output folder of `l0 calibrate` and `l0 regress`, which one run owns.
//!
//! A folder holds the files of at most one run ([`RESULT_FILES`],
//! [`TRAINING_FILES`], [`REGRESS_FILES`]). A new run
//! refuses a folder holding another run's files unless `--overwrite` is
//! given, and then moves them away in one rename before deleting them; a
//! folder holding anything else is always refused, since `l0` deletes only
//! what it wrote. A resumed run continues in its own folder.
//!
//! The result files are written into a fresh sibling folder
//! (`.NAME.l0-new-PID`, next to `--out`, so on the same file system) with
//! hard links to the run's log and checkpoint, which then takes the
//! folder's place in one step: `renameat2(RENAME_EXCHANGE)` on Linux, a
//! plain rename when the folder does not exist yet. A kill at any instant
//! leaves either the old folder or the complete new one under `--out`.

use super::{CliResult, Failure};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// The files a run writes after training.
pub(super) const RESULT_FILES: [&str; 4] =
    ["weights.npy", "weights.csv", "targets.csv", "summary.json"];
/// The files a run writes while training.
pub(super) const TRAINING_FILES: [&str; 2] = ["log.csv", l0::checkpoint::FILE_NAME];
/// The files `l0 regress` writes (path.csv only for a lambda path).
pub(super) const REGRESS_FILES: [&str; 4] = [
    "coefficients.npy",
    "selected.csv",
    "summary.json",
    "path.csv",
];

/// The files `l0 sweep` writes, besides `weights_<k>.npy`.
pub(super) const SWEEP_FILES: [&str; 3] = ["sweep.csv", "sweep.svg", "summary.json"];

/// Whether `name` is `weights_<k>.npy`, a model's weights in a sweep.
fn is_sweep_weights(name: &str) -> bool {
    name.strip_prefix("weights_")
        .and_then(|n| n.strip_suffix(".npy"))
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a file a run writes, or the temporary file of one
/// (`.NAME.tmp-...`, left by a killed atomic write).
fn is_run_file(name: &str) -> bool {
    let own = |n: &str| {
        RESULT_FILES.contains(&n)
            || TRAINING_FILES.contains(&n)
            || REGRESS_FILES.contains(&n)
            || SWEEP_FILES.contains(&n)
            || is_sweep_weights(n)
    };
    own(name)
        || name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(".tmp-"))
            .is_some_and(|(n, _)| own(n))
}

fn io_failure(path: &Path, what: &str, e: std::io::Error) -> Failure {
    Failure {
        code: 1,
        message: format!("{}: {what}: {e}", path.display()),
    }
}

/// The folder as an absolute path with a file name, and its parent.
fn locate(out: &Path) -> CliResult<(PathBuf, PathBuf, OsString)> {
    let abs = if out.exists() {
        fs::canonicalize(out)
    } else {
        std::path::absolute(out)
    }
    .map_err(|e| io_failure(out, "cannot resolve the output folder", e))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok((abs.clone(), parent.to_path_buf(), name.to_owned())),
        _ => Err(super::input_error(format!(
            "{}: cannot be an output folder (it has no parent)",
            out.display()
        ))),
    }
}

/// A sibling of the folder: `.NAME.l0-KIND-PID`.
fn sibling(parent: &Path, name: &OsString, kind: &str) -> PathBuf {
    let mut n = OsString::from(".");
    n.push(name);
    n.push(format!(".l0-{kind}-{}", std::process::id()));
    parent.join(n)
}

/// Whether two paths name the same existing folder.
pub(super) fn same_folder(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The names in `dir`, split into run files and the rest, each sorted.
fn contents(dir: &Path) -> CliResult<(Vec<String>, Vec<String>)> {
    let entries = fs::read_dir(dir).map_err(|e| io_failure(dir, "cannot list", e))?;
    let (mut ours, mut other) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| io_failure(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_run_file(&name) {
            ours.push(name);
        } else {
            other.push(name);
        }
    }
    ours.sort();
    other.sort();
    Ok((ours, other))
}

/// Checks that `out` may take a run, changing nothing: `continuing` is
/// true for a run resumed in its own folder. Refuses (exit code 2) a
/// folder with files `l0` did not write, and one with another run's files
/// unless `overwrite`. Returns whether that run's files must go
/// ([`clear`]) before this run writes.
pub(super) fn check(out: &Path, overwrite: bool, continuing: bool) -> CliResult<bool> {
    if !out.exists() {
        return Ok(false);
    }
    if !out.is_dir() {
        return Err(super::input_error(format!(
            "{}: --out must be a folder, and this is a file",
            out.display()
        )));
    }
    let (ours, other) = contents(out)?;
    if !other.is_empty() {
        return Err(super::input_error(format!(
            "{}: holds files that l0 did not write ({}): give --out an empty or new folder",
            out.display(),
            other.join(", ")
        )));
    }
    if continuing || ours.is_empty() {
        return Ok(false);
    }
    if !overwrite {
        return Err(super::input_error(format!(
            "{}: holds the files of an earlier run ({}): give --overwrite to replace them, or another --out",
            out.display(),
            ours.join(", ")
        )));
    }
    Ok(true)
}

/// Removes the earlier run's files from `out` (after [`check`]): the
/// folder is moved away in one rename, then emptied and removed.
pub(super) fn clear(out: &Path) -> CliResult<()> {
    let (abs, parent, name) = locate(out)?;
    let old = sibling(&parent, &name, "old");
    fs::rename(&abs, &old).map_err(|e| io_failure(out, "cannot move the earlier run away", e))?;
    remove_run_folder(&old);
    Ok(())
}

/// Removes what killed runs left beside the folder (`.NAME.l0-new-*`,
/// `.NAME.l0-old-*`), as far as [`remove_run_folder`] removes.
fn sweep(parent: &Path, name: &OsString) {
    let prefix = format!(".{}.l0-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        let rest = n.strip_prefix(&prefix).unwrap_or_default();
        if rest.starts_with("new-") || rest.starts_with("old-") {
            remove_run_folder(&entry.path());
        }
    }
}

/// Removes a folder that held a run: its run files, then the folder if
/// that left it empty (anything else stays, and so does the folder).
fn remove_run_folder(dir: &Path) {
    if let Ok((ours, _)) = contents(dir) {
        for f in ours {
            let _ = fs::remove_file(dir.join(f));
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Writes the run's results with `write` (given the folder to write them
/// into) and puts them in place together with the log and checkpoint now
/// in `out`, in one step (see the module docs).
pub(super) fn commit(out: &Path, write: impl FnOnce(&Path) -> CliResult<()>) -> CliResult<()> {
    let (abs, parent, name) = locate(out)?;
    sweep(&parent, &name);
    let new = sibling(&parent, &name, "new");
    fs::create_dir(&new).map_err(|e| io_failure(&new, "cannot create a folder", e))?;
    let result = (|| {
        for f in TRAINING_FILES {
            let from = abs.join(f);
            if from.exists() {
                fs::hard_link(&from, new.join(f))
                    .or_else(|_| fs::copy(&from, new.join(f)).map(|_| ()))
                    .map_err(|e| io_failure(&from, "cannot link into the new output folder", e))?;
            }
        }
        write(&new)?;
        if let Ok(d) = fs::File::open(&new) {
            let _ = d.sync_all();
        }
        if abs.exists() {
            exchange(&new, &abs)?;
        } else {
            fs::rename(&new, &abs).map_err(|e| io_failure(out, "cannot move into place", e))?;
        }
        Ok(())
    })();
    // After an exchange `new` holds the old folder; after a failure, the
    // partial new one. Either way it goes.
    remove_run_folder(&new);
    result
}

/// Swaps two folders in one step (falling back to [`swap_by_renames`] on a
/// file system without the exchange).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> CliResult<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)
        .or_else(|_| swap_by_renames(a, b))
        .map_err(|e| io_failure(b, "cannot move the new output folder into place", e))
}

/// Swaps two folders with [`swap_by_renames`].
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> CliResult<()> {
    swap_by_renames(a, b)
        .map_err(|e| io_failure(b, "cannot move the new output folder into place", e))
}

/// Swaps two folders with three renames: a kill between them leaves `b`
/// missing, with both versions beside it (`a` and `b.l0-swap`).
fn swap_by_renames(a: &Path, b: &Path) -> std::io::Result<()> {
    let mut aside = b.as_os_str().to_owned();
    aside.push(".l0-swap");
    let aside = PathBuf::from(aside);
    fs::rename(b, &aside)?;
    fs::rename(a, b)?;
    fs::rename(&aside, a)
}
