//! The output folder of `l0 calibrate`, `l0 sweep` and `l0 regress`, which
//! one run owns ([`OutDir`]).
//!
//! A folder holds the files of at most one run ([`RESULT_FILES`],
//! [`TRAINING_FILES`], [`REGRESS_FILES`], [`SWEEP_FILES`]). A run holds an
//! exclusive `flock` on the folder's [`LOCK_FILE`] from before it loads
//! its inputs to after its results are in place, so a second run into the
//! same folder is refused at once. A new run refuses a folder holding
//! another run's files unless `--overwrite` is given; those files then
//! stay until the new run's results replace them (a run that fails leaves
//! them whole). A folder holding anything else is always refused, since
//! `l0` deletes only what it wrote. A resumed run continues in its own
//! folder.
//!
//! The result files are written into a fresh sibling folder
//! (`.NAME.l0-new-PID`, next to `--out`, so on the same file system,
//! created when the folder is claimed, which checks that both can be
//! written) with hard links to the run's log and checkpoint (or, replacing
//! an earlier run, the log and checkpoint written there from the start),
//! which then takes the folder's place in one step:
//! `renameat2(RENAME_EXCHANGE)` on Linux (the folder exists from the
//! claim on). A kill at any instant leaves either the old folder or the
//! complete new one under `--out`.

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
        || name == LOCK_FILE
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

/// The lock file a run holds (`flock`, exclusive) in its output folder
/// from start to end: a second run into the folder is refused at once.
pub(super) const LOCK_FILE: &str = ".l0.lock";

/// An output folder owned by this run (see the module docs): locked, its
/// writability and that of its parent checked, with the staging folder
/// where the results are assembled. Dropped without [`OutDir::commit`]
/// (a failed run), it removes the staging folder and the lock, leaving an
/// earlier run's files as they were.
pub(super) struct OutDir {
    abs: PathBuf,
    parent: PathBuf,
    name: OsString,
    /// The open lock file, whose `flock` is held while this exists.
    _lock: fs::File,
    /// `.NAME.l0-new-PID`, beside the folder.
    staging: PathBuf,
    /// Whether the training files go to the staging folder: an earlier
    /// run's files stay in the folder until the commit (--overwrite).
    staged: bool,
    /// Whether this run created the folder.
    created: bool,
    committed: bool,
}

/// A failure to write where the run must write: exit code 2 (the user's
/// choice of --out), one line.
fn unwritable(path: &Path, what: &str, e: std::io::Error) -> Failure {
    super::input_error(format!("{}: {what}: {e}", path.display()))
}

/// The refusal of a folder another run holds.
fn in_use(dir: &Path) -> Failure {
    super::input_error(format!(
        "{}: another l0 run is writing to this output folder: wait for it to finish, or give another --out",
        dir.display()
    ))
}

/// Refuses a path that is not a folder, and a folder holding files that
/// `l0` did not write; returns the run files it holds (the lock aside).
fn own_files(out: &Path) -> CliResult<Vec<String>> {
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
    Ok(ours.into_iter().filter(|f| f != LOCK_FILE).collect())
}

/// Opens (creating it) `dir`'s lock file.
fn open_lock(dir: &Path) -> CliResult<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| unwritable(dir, "cannot write to the output folder", e))
}

/// Opens and locks `dir`'s lock file (exclusive, without waiting); a lock
/// file replaced while this took it (its last owner removed it) is tried
/// again.
#[cfg(target_os = "linux")]
fn lock(dir: &Path) -> CliResult<fs::File> {
    use rustix::fs::{flock, fstat, stat, FlockOperation};
    let path = dir.join(LOCK_FILE);
    for _ in 0..8 {
        let file = open_lock(dir)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(in_use(dir)),
            Err(e) => return Err(io_failure(&path, "cannot lock", e.into())),
        }
        let same = match (fstat(&file), stat(&path)) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        };
        if same {
            return Ok(file);
        }
    }
    Err(in_use(dir))
}

/// Creates the lock file (no `flock` outside Linux: the folder's
/// ownership is then only checked, not held).
#[cfg(not(target_os = "linux"))]
fn lock(dir: &Path) -> CliResult<fs::File> {
    open_lock(dir)
}

impl OutDir {
    /// Claims `out` for this run, before anything is trained: `continuing`
    /// is true for a run resumed in its own folder. Refuses (exit code 2)
    /// a folder with files `l0` did not write, one with another run's
    /// files unless `overwrite`, one another run holds, and a folder (or
    /// its parent) this run cannot write to.
    pub(super) fn claim(out: &Path, overwrite: bool, continuing: bool) -> CliResult<Self> {
        let existed = out.exists();
        if existed {
            own_files(out)?;
        }
        fs::create_dir_all(out)
            .map_err(|e| unwritable(out, "cannot create the output folder", e))?;
        let (abs, parent, name) = locate(out)?;
        let lock = lock(out)?;
        let mut dir = OutDir {
            staging: sibling(&parent, &name, "new"),
            abs,
            parent,
            name,
            _lock: lock,
            staged: false,
            created: !existed,
            committed: false,
        };
        let ours = own_files(out)?;
        if !(continuing || ours.is_empty() || overwrite) {
            return Err(super::input_error(format!(
                "{}: holds the files of an earlier run ({}): give --overwrite to replace them, or another --out",
                out.display(),
                ours.join(", ")
            )));
        }
        dir.staged = !continuing && !ours.is_empty();
        sweep(&dir.parent, &dir.name);
        fs::create_dir(&dir.staging).map_err(|e| {
            unwritable(
                &dir.parent,
                "cannot write beside the output folder (where the results are assembled)",
                e,
            )
        })?;
        Ok(dir)
    }

    /// Where the run writes its log and checkpoints while it trains: the
    /// folder, or (replacing an earlier run) the staging folder.
    pub(super) fn work(&self) -> &Path {
        if self.staged {
            &self.staging
        } else {
            &self.abs
        }
    }

    /// Writes the run's results with `write` (given the folder to write
    /// them into) and puts them in place together with the run's log and
    /// checkpoint, in one step (see the module docs); an earlier run's
    /// files go only now.
    pub(super) fn commit(mut self, write: impl FnOnce(&Path) -> CliResult<()>) -> CliResult<()> {
        let new = self.staging.clone();
        if !self.staged {
            for f in TRAINING_FILES {
                let from = self.abs.join(f);
                if from.exists() {
                    fs::hard_link(&from, new.join(f))
                        .or_else(|_| fs::copy(&from, new.join(f)).map(|_| ()))
                        .map_err(|e| {
                            io_failure(&from, "cannot link into the new output folder", e)
                        })?;
                }
            }
        }
        // The lock moves with the folder: a run that opens it after the
        // swap finds it held.
        let _ = fs::hard_link(self.abs.join(LOCK_FILE), new.join(LOCK_FILE));
        write(&new)?;
        if let Ok(d) = fs::File::open(&new) {
            let _ = d.sync_all();
        }
        exchange(&new, &self.abs)?;
        self.committed = true;
        // `new` now holds the earlier folder.
        let _ = fs::remove_file(self.abs.join(LOCK_FILE));
        remove_run_folder(&new);
        Ok(())
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        remove_run_folder(&self.staging);
        // Removed while still held: a run waiting on it finds it replaced
        // and takes a fresh one ([`lock`]).
        let _ = fs::remove_file(self.abs.join(LOCK_FILE));
        if self.created {
            let _ = fs::remove_dir(&self.abs);
        }
    }
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
