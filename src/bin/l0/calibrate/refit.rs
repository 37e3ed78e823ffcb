//! `--refit`: the gate-free refit of the records an L0 fit kept.

use super::*;

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
