//! The warnings `l0 calibrate` prints about the problem and the fit.

use super::*;

/// The names of targets `which`: the first ten, then how many more.
pub(super) fn name_list(names: &[String], which: &[usize]) -> String {
    let shown: Vec<&str> = which.iter().take(10).map(|&q| names[q].as_str()).collect();
    match which.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Under relative loss each error is divided by `y + 1`: a warning naming
/// the targets below -1, whose relative errors change sign.
pub(super) fn warn_negative_targets(p: &Problem, loss: Loss) {
    if loss != Loss::Relative {
        return;
    }
    let below: Vec<usize> = (0..p.y.len()).filter(|&q| p.y[q] < -1.0).collect();
    if !below.is_empty() {
        eprintln!(
            "warning: --loss relative divides each error by y + 1, which is negative for {} target(s) below -1, so their rel_error has the opposite sign: {}",
            below.len(),
            name_list(&p.names, &below)
        );
    }
}

/// The warnings of the fit ([`l0::advice::fit_warnings`], in flags).
pub(super) fn fit_warnings(
    summary: &Summary,
    rows: &[report::TargetRow],
    last: Option<&Progress>,
    fit: &FitParams,
    groups: bool,
) -> Vec<String> {
    let settings = l0::advice::FitSettings {
        lambda_l0: summary.lambda_l0,
        lambda_l2: fit.lambda_l2,
        lr: fit.lr,
        epochs: fit.epochs,
        loss: fit.loss,
        groups,
    };
    l0::advice::fit_warnings(
        rows,
        last,
        summary.sparsity(),
        &settings,
        l0::advice::Naming::Cli,
    )
}

/// One stderr line per distinct reason why a batch of models trained one
/// after another instead of in one pass.
pub(crate) fn warn_fallbacks<'a>(reasons: impl Iterator<Item = &'a str>) {
    let mut said: Vec<&str> = Vec::new();
    for why in reasons {
        if !said.contains(&why) {
            eprintln!("warning: {why}");
            said.push(why);
        }
    }
}

/// A warning naming the trained targets (`included`) that the weight caps
/// put out of reach, even with every record at its cap.
pub(super) fn warn_unreachable(
    p: &Problem,
    model: &Calibration,
    opts: &FitParams,
    included: &[bool],
) -> CliResult<()> {
    let Some(caps) = model.caps(opts)? else {
        return Ok(());
    };
    let blocked: Vec<usize> = unreachable_targets(&p.m, &p.y, &caps)
        .into_iter()
        .filter(|&q| included[q])
        .collect();
    if !blocked.is_empty() {
        eprintln!(
            "warning: the weight caps make {} target(s) unreachable (even with every record at its cap the estimate cannot get there), so the fit is the best capped one: {}",
            blocked.len(),
            name_list(&p.names, &blocked)
        );
    }
    Ok(())
}
