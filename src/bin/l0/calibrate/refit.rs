//! `--refit`: the gate-free refit of the records an L0 fit kept.

use super::*;
use l0::report::BeforeRefit;
use std::time::Instant;

/// `every` epochs on lines that start with `label` ("refit").
pub(crate) fn run_refit(
    model: &Calibration,
    m: &SparseMatrix,
    y: &[f64],
    opts: &FitParams,
    (epochs, every): (u64, u64),
    label: &str,
) -> CliResult<l0::calibration::Refit> {
    let active = model.active_weights().count;
    eprintln!(
        "{label}: {active} record(s) kept, gates dropped, {epochs} epoch(s) with lambda_l0 = 0"
    );
    let opts = FitParams {
        report_every: Some(every.min(epochs)),
        ..opts.clone()
    };
    let refit = model.refit_with(m, y, &opts, epochs, &mut |p| {
        eprintln!("{label} {p}");
        Ok(())
    })?;
    eprintln!(
        "{label}: loss {:.4e} -> {:.4e}, the lowest checked (start, every {} epochs, end): kept epoch {} of {}",
        refit.start_loss,
        refit.loss,
        l0::calibration::REFIT_CHECK_EVERY,
        refit.best_epoch,
        refit.report.epochs
    );
    Ok(refit)
}

/// `l0 calibrate --refit`: the refit of the L0 fit `model` for `epochs`
/// (progress every `every`), its weights, and the L0 fit's figures before
/// it; the refit's training and setup seconds go to `time`, out of its
/// outputs.
pub(super) fn refit_of_run(
    model: &Calibration,
    p: &Problem,
    opts: &FitParams,
    roles: &[TargetRole],
    (epochs, every): (u64, u64),
    time: &mut Timing,
) -> CliResult<(Vec<f64>, BeforeRefit)> {
    let l0_weights = model.weights(true);
    let clock = Instant::now();
    let refit = run_refit(model, &p.m, &p.y, opts, (epochs, every), "refit")?;
    let wall = clock.elapsed().as_secs_f64();
    time.training += refit.report.seconds;
    time.setup += wall - refit.report.seconds;
    time.outputs -= wall;
    let rows = report::target_rows(&p.names, &p.y, &p.m.mul_vec(&l0_weights)?, roles);
    let before = BeforeRefit {
        accuracy: Accuracy::of(&rows),
        holdout: Accuracy::holdout(&rows),
        active: l0_weights.iter().filter(|&&w| w > 0.0).count(),
        refit_epochs: epochs,
        refit_seconds: refit.report.seconds,
    };
    Ok((refit.weights(), before))
}
