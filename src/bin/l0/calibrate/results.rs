//! What `l0 calibrate` prints and writes: the header, the result files,
//! the summary lines and the time taken.

use super::*;

/// The lines before the fit: the problem, the settings, what is left out
/// or held out, where a resumed run starts.
pub(super) fn print_header(
    problem: &Problem,
    out: &Path,
    settings: &Settings,
    plan: &Plan,
    start: u64,
) {
    let m = &problem.m;
    eprintln!(
        "l0 calibrate: {}\n  {} targets x {} columns, {} nonzeros; output folder {}",
        problem.description,
        m.rows(),
        m.cols(),
        m.nnz(),
        out.display()
    );
    let shown: Vec<String> = settings
        .pairs()
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!("  settings: {}", shown.join(" "));
    if problem.groups.is_none() {
        eprintln!(
            "  no --groups: every target weighs 1 in the loss (normalize_groups does not apply)"
        );
    }
    if !plan.excluded_names.is_empty() {
        eprintln!(
            "  {} target(s) left out of the loss (still reported)",
            plan.excluded_names.len()
        );
    }
    if !plan.fit.holdout_targets.is_empty() {
        eprintln!(
            "  {} target(s) held out of the loss as validation",
            plan.fit.holdout_targets.len()
        );
    }
    if start > 0 {
        eprintln!(
            "  resuming at epoch {start}: {} epoch(s) to go of {}",
            plan.epochs - start,
            plan.epochs
        );
    }
}

/// Where a run's wall time went, in seconds: reading and checking the
/// inputs (`load`), building the backend (on a GPU: opening the device,
/// compiling or loading the kernels and uploading the problem) and
/// everything else around the epochs (`setup`), the epoch loops of the fit
/// and any refit (`training`), and the results computed and written
/// (`outputs`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timing {
    pub(super) load: f64,
    pub(super) setup: f64,
    pub(super) training: f64,
    pub(super) outputs: f64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "time: load {:.2} s, setup {:.2} s, training {:.2} s, outputs {:.2} s",
            self.load, self.setup, self.training, self.outputs
        )
    }
}

/// Writes the four result files into `dir`: `weights` (the L0 fit's or,
/// after --refit, the refit's) and the L0 model's deterministic gates.
pub(super) fn write_results(
    dir: &Path,
    weights: &[f64],
    model: &Calibration,
    rows: &[report::TargetRow],
    carriers: &[TargetCarrier],
    summary: &Summary,
) -> CliResult<()> {
    let gates = model.deterministic_gates();
    write_npy_f64(&dir.join("weights.npy"), weights)?;
    report::write_weights_csv(
        &dir.join("weights.csv"),
        weights,
        &gates,
        l0::par::Par::current(),
    )?;
    report::write_targets_csv(&dir.join("targets.csv"), rows, carriers)?;
    report::write_json(&dir.join("summary.json"), &summary.to_json())?;
    Ok(())
}

pub(super) fn print_results(summary: &Summary, out: &Path, files: &[&str]) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v + 0.0);
    let a = &summary.accuracy;
    println!(
        "done: {} epochs in {:.1} s ({:.4} s/epoch) on {}",
        summary.epochs_run,
        summary.seconds,
        summary.seconds_per_epoch(),
        summary.device
    );
    println!(
        "targets: mean |rel err| {:.3}%, max {:.2}%; within 1/5/10/25%: {} / {} / {} / {} of {}",
        100.0 * a.mean_abs_rel_err + 0.0,
        100.0 * a.max_abs_rel_err + 0.0,
        pct(a.within[0]),
        pct(a.within[1]),
        pct(a.within[2]),
        pct(a.within[3]),
        a.included
    );
    if let Some(n) = summary.within_tolerance {
        println!(
            "tolerance: {n} of {} targets within their bands",
            a.included
        );
    }
    if let Some(b) = &summary.before_refit {
        println!(
            "before refit: mean |rel err| {:.3}%, max {:.2}%, {} nonzero; refit {} epochs in {:.1} s",
            100.0 * b.accuracy.mean_abs_rel_err + 0.0,
            100.0 * b.accuracy.max_abs_rel_err + 0.0,
            b.active,
            b.refit_epochs,
            b.refit_seconds
        );
    }
    if let Some(h) = &summary.holdout {
        println!(
            "holdout: mean |rel err| {:.3}%, max {:.2}% over {} held-out target(s)",
            100.0 * h.mean_abs_rel_err + 0.0,
            100.0 * h.max_abs_rel_err + 0.0,
            h.included
        );
    }
    println!(
        "weights: {} of {} nonzero ({} sparse); seed {}",
        summary.active,
        summary.cols,
        pct(summary.sparsity()),
        summary.seed
    );
    let d = &summary.weights;
    println!(
        "concentration: effective sample size {:.1}, design effect {:.2}, max weight {:.4}, top 1% carry {}",
        d.ess,
        d.design_effect,
        d.max_weight,
        pct(d.top1pct_share)
    );
    println!("outputs in {}: {}", out.display(), files.join(", "));
}
