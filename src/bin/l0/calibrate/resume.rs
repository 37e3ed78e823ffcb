//! `--resume`: the checkpoint read, the seed and settings it carries, and
//! the stop after Ctrl-C that writes one.

use super::*;

/// The checkpoint named by --resume, read and verified.
pub(super) fn read_checkpoint(dir: &Path) -> CliResult<Checkpoint> {
    let path = dir.join(l0::checkpoint::FILE_NAME);
    if !path.exists() {
        return Err(input_error(format!(
            "{}: no checkpoint to resume from (write one with --checkpoint-every)",
            path.display()
        )));
    }
    Checkpoint::read(&path).map_err(|e| about_file(&path, e))
}

/// Warns about each setting that differs from the checkpoint's (its
/// stored text read as its type, so that a number written differently by
/// an older version is not a change).
pub(super) fn warn_changed_settings(c: &Checkpoint, settings: &Settings) -> CliResult<()> {
    let then = stored::read(&c.settings, settings)?.pairs();
    let stored: Vec<(String, String)> = c
        .settings
        .iter()
        .filter(|(n, _)| !n.starts_with(INPUT_PREFIX))
        .map(|(n, t)| {
            let typed = then.iter().find(|(m, _)| m == n).map(|(_, t)| t);
            (n.clone(), typed.unwrap_or(t).clone())
        })
        .collect();
    for ch in changed_settings(&stored, &settings.pairs()) {
        eprintln!(
            "warning: {} changed since the checkpoint: {} -> {}",
            ch.name, ch.old, ch.new
        );
    }
    Ok(())
}

/// The command that resumes the run in `out`, with the flags that are not
/// kept in the checkpoint.
pub(super) fn resume_command(a: &CalibrateArgs, out: &Path) -> String {
    let mut cmd = format!(
        "l0 calibrate --resume {}",
        shell_quote(&out.display().to_string())
    );
    if let Some(d) = &a.fit.device {
        cmd.push_str(&format!(" --device {}", shell_quote(d)));
    }
    if let Some(t) = a.fit.threads {
        cmd.push_str(&format!(" --threads {t}"));
    }
    cmd
}

/// After SIGINT/SIGTERM: the model holds the last finished epoch; save it
/// and say how to continue.
pub(super) fn stop_interrupted(
    a: &CalibrateArgs,
    outdir: outdir::OutDir,
    out: &Path,
    sink: &CheckpointSink,
    model: &Calibration,
    total: u64,
) -> CliResult<()> {
    sink.write(model.state())?;
    // The checkpoint and log are this run's results: put in place (after
    // --overwrite, in place of the earlier run's files).
    outdir.commit(|_| Ok(()))?;
    eprintln!(
        "interrupted: stopped after epoch {} of {total}; checkpoint written to {}\nresume with: {}",
        model.state().step,
        out.join(l0::checkpoint::FILE_NAME).display(),
        resume_command(a, out)
    );
    Err(Failure {
        code: EXIT_CODE,
        message: String::new(),
    })
}
