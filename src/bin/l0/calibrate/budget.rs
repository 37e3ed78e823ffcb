//! `l0 calibrate --target-records K`: the flags of a record budget, and the
//! search ([`l0::budget::fit_to_budget`]) with its progress lines.

use super::*;
use l0::budget::{fit_to_budget, Budget, BudgetFit};
use l0::report::BudgetSummary;

/// The record budget of the flags (None without --target-records), checked
/// against a matrix of `cols` columns; refuses the flags it excludes.
pub(crate) fn budget_of(a: &CalibrateArgs, cols: usize) -> CliResult<Option<Budget>> {
    let Some(k) = a.target_records else {
        return match (a.records_tolerance, &a.lambda_range) {
            (Some(_), _) => Err(input_error("--records-tolerance needs --target-records")),
            (_, Some(_)) => Err(input_error("--lambda-range needs --target-records")),
            (None, None) => Ok(None),
        };
    };
    for (flag, given) in [
        ("--lambda-l0", !a.fit.lambda_l0.is_empty()),
        ("--resume", a.resume.is_some()),
        ("--checkpoint-every", a.checkpoint_every.is_some()),
        ("--log-every", a.log_every.is_some()),
    ] {
        if given {
            return Err(input_error(format!(
                "--target-records searches lambda_l0 itself and does not take {flag}"
            )));
        }
    }
    let defaults = Budget::new(k);
    let budget = Budget {
        tolerance: a.records_tolerance.unwrap_or(defaults.tolerance),
        lambda_range: match &a.lambda_range {
            None => defaults.lambda_range,
            Some(text) => lambda_range(text)?,
        },
        ..defaults
    };
    if let Err(e) = budget.check(cols) {
        let flag = if k == 0 || k > cols {
            "target-records"
        } else {
            "records-tolerance"
        };
        return Err(flag_error(flag, e));
    }
    Ok(Some(budget))
}

/// `--lambda-range LO:HI`: two numbers with 0 < LO < HI.
fn lambda_range(text: &str) -> CliResult<(f64, f64)> {
    let bad = || {
        input_error(format!(
            "--lambda-range: expected LO:HI, two numbers with 0 < LO < HI (e.g. 1e-9:1e-1), got '{text}'"
        ))
    };
    let (lo, hi) = text.split_once(':').ok_or_else(bad)?;
    let (lo, hi) = (
        lo.trim().parse::<f64>().map_err(|_| bad())?,
        hi.trim().parse::<f64>().map_err(|_| bad())?,
    );
    if lo > 0.0 && lo < hi && hi.is_finite() {
        Ok((lo, hi))
    } else {
        Err(bad())
    }
}

/// Runs the search, printing one line per model trained.
pub(crate) fn search(
    m: &SparseMatrix,
    y: &[f64],
    params: &CalibrationParams,
    opts: &FitParams,
    budget: &Budget,
) -> l0::Result<BudgetFit> {
    let legs = |b: &Budget| -> String {
        let legs: Vec<String> = b
            .plan(opts.epochs)
            .iter()
            .map(|l| format!("{} {} to epoch {}", l.stage.name(), l.models, l.until))
            .collect();
        legs.join(", ")
    };
    let first = budget.plan(opts.epochs)[0].until;
    let slow = match budget.slow.filter(|_| budget.short_epochs(opts.epochs) < first) {
        Some(s) => format!(
            " (adaptive: when the counts at epoch {} are more than {}x off K where those at epoch {} cross it: {}, refining within {} fits)",
            first,
            s.factor,
            budget.short_epochs(opts.epochs),
            legs(&budget.slowed()),
            budget.slowed().max_cost
        ),
        None => String::new(),
    };
    eprintln!(
        "record budget: {} records within {}%: bracket {} models x {} epoch(s) over lambda_l0 {:e}..{:e}; {}; then refining batches of {} model(s) x {} epochs while the estimated cost stays within {} fits{slow}",
        budget.target_records,
        100.0 * budget.tolerance,
        budget.bracket,
        budget.short_epochs(opts.epochs),
        budget.lambda_range.0,
        budget.lambda_range.1,
        legs(budget),
        budget.refine,
        opts.epochs,
        budget.max_cost
    );
    let opts = FitParams {
        report_every: None,
        ..opts.clone()
    };
    let fit = fit_to_budget(m, y, params, &opts, budget, &mut |stage, lambda, p| {
        eprintln!(
            "  {} lambda_l0={lambda:.3e}: active={} after {} epoch(s), mean_error={:.4}%",
            stage.name(),
            p.active,
            p.epochs,
            100.0 * p.mean_rel_err
        );
        Ok(())
    })?;
    super::warn_fallbacks(fit.fallbacks.iter().map(String::as_str));
    Ok(fit)
}

/// summary.json's `budget` for a search over fits of `epochs` epochs.
pub(crate) fn summary(fit: &BudgetFit, budget: &Budget, epochs: u64) -> BudgetSummary {
    BudgetSummary {
        target_records: budget.target_records,
        tolerance: budget.tolerance,
        lambda_l0: fit.chosen.lambda_l0,
        met: fit.met,
        models_trained: fit.models_trained,
        epochs_total: fit.epochs_total,
        fits: fit.epochs_total as f64 / epochs.max(1) as f64,
        batches: fit.batches.clone(),
        passes: fit.passes(epochs),
        seconds: fit.seconds,
        cost_fits: fit.cost_fits,
        settled: fit.settled,
    }
}

/// The lines printed after the results: what was found and what it cost,
/// and a warning when the budget was not met.
pub(crate) fn print(fit: &BudgetFit, s: &BudgetSummary, budget: &Budget) {
    let batches: Vec<String> = s
        .batches
        .iter()
        .map(|b| format!("{} {}x{}", b.stage.name(), b.models, b.epochs))
        .collect();
    println!(
        "record budget: lambda_l0 {:e} keeps {} records (target {} within {}%); search: {} models in {} batches (models x epochs: {}) = {} model-epochs ({:.2} fits), {} batch epochs ({:.2} fits), estimated cost {:.2} fits, {:.1} s",
        s.lambda_l0,
        fit.active,
        s.target_records,
        100.0 * s.tolerance,
        s.models_trained,
        s.batches.len(),
        batches.join(", "),
        s.epochs_total,
        s.fits,
        s.batches.iter().map(|b| b.epochs).sum::<u64>(),
        s.passes,
        s.cost_fits,
        s.seconds
    );
    match fit.settled {
        Some(true) => {
            println!("record budget: the counts had settled by the first drop: fast schedule")
        }
        Some(false) => {
            println!("record budget: the counts were still moving at the first drop: slow schedule")
        }
        None => {}
    }
    if let Some(w) = fit.shortfall(budget, l0::advice::Naming::Cli) {
        eprintln!("warning: --target-records {}: {w}", budget.target_records);
    }
}
