//! λ sweeps: one calibration model per L0 strength, all from the same
//! initial state, seed and options, so that model `k` is exactly the model
//! a single [`Calibration::fit`] with `lambda_l0 = lambdas[k]` gives.
//! [`sweep`] returns the K models with their reports; [`start`] and
//! [`advance`] do the same in steps (training a batch further, exactly as
//! one longer fit); [`lambda_grid`] makes a log-spaced list. The command line's `l0 sweep` and the record budget
//! are built on it.
//!
//! The K models train together ([`Calibration::fit_together`]): on the CPU
//! and on a GPU every pass over the matrix serves all of them
//! (`M [w_1..w_K]` and `M^T [r_1..r_K]`, each model's sums in the single
//! fit's exact order), so K models cost far less than K fits (in batches of
//! at most [`crate::limits::MAX_BATCH`]); a GPU batch that does not fit in
//! device memory trains one model after the other, and its reports say why
//! ([`FitReport::fallback`]). Model `k` is bit for bit
//! the single fit on the same device either way. A
//! model's report `seconds` is the time of its batch (shared by the
//! models trained together).

use crate::backend::BatchBackends;
use crate::calibration::{
    Calibration, CalibrationParams, FitParams, FitReport, Prepared, Progress, WeightBounds,
};
use crate::error::{L0Error, Result};
use crate::matrix::SparseMatrix;

/// One trained model of a sweep.
#[derive(Clone, Debug)]
pub struct SweepModel {
    /// Its L0 strength.
    pub lambda_l0: f64,
    /// The trained model.
    pub model: Calibration,
    /// Its fit's report.
    pub report: FitReport,
}

/// The most values a [`lambda_grid`] holds: each is a model to train, and a
/// million models are far beyond any sweep (a grid of 200 already spaces
/// six decades 7% apart).
pub const MAX_GRID: usize = 1_000_000;

/// `n` values from `lo` to `hi` (both included), evenly spaced in log
/// scale; `n = 1` gives `[lo]`. Needs `0 < lo <= hi`, finite,
/// `1 <= n <=` [`MAX_GRID`].
pub fn lambda_grid(lo: f64, hi: f64, n: usize) -> Result<Vec<f64>> {
    check_grid_count(n)?;
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
        return Err(L0Error::config(format!(
            "a lambda grid needs 0 < LO <= HI, got {lo} and {hi}"
        )));
    }
    let (a, b) = (lo.ln(), hi.ln());
    Ok((0..n)
        .map(|k| match k {
            0 => lo,
            k if k + 1 == n => hi,
            k => (a + (b - a) * k as f64 / (n - 1) as f64).exp(),
        })
        .collect())
}

/// Refuses a grid count outside `1..=`[`MAX_GRID`], before any value is
/// made.
pub fn check_grid_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(L0Error::config("a lambda grid needs at least one value"));
    }
    if n > MAX_GRID {
        return Err(L0Error::config(format!(
            "a lambda grid holds at most {MAX_GRID} values (one model each), got {n}"
        )));
    }
    Ok(())
}

/// Refuses `models` models of `n_features` columns that do not fit in
/// memory together (a sweep returns every model, so all are held at
/// once).
pub fn check_models(models: usize, n_features: usize) -> Result<()> {
    crate::limits::check_memory(
        &format!("a sweep of {models} models x {n_features} columns"),
        crate::limits::models_bytes(models, n_features),
    )
}

/// Checks a list of L0 strengths: at least one, each finite and >= 0.
pub fn check_lambdas(lambdas: &[f64]) -> Result<()> {
    if lambdas.is_empty() {
        return Err(L0Error::config("a sweep needs at least one lambda_l0"));
    }
    if let Some(l) = lambdas.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
        return Err(L0Error::config(format!(
            "every lambda_l0 must be a finite number >= 0, got {l}"
        )));
    }
    Ok(())
}

/// Trains one model per `lambdas[k]` for `n_features` columns with model
/// options `params` (give a seed, or each model draws its own) and fit
/// options `opts` (its `lambda_l0` is replaced), calling
/// `on_progress(k, progress)` at each model's reports.
pub fn sweep(
    m: &SparseMatrix,
    y: &[f64],
    params: &CalibrationParams,
    opts: &FitParams,
    lambdas: &[f64],
    on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
) -> Result<Vec<SweepModel>> {
    let mut models = start(m.cols(), params, lambdas)?;
    advance(&mut models, m, y, opts, opts.epochs, on_progress)?;
    Ok(models)
}

/// Untrained models, one per `lambdas[k]`, for `n_features` columns with
/// model options `params`; [`advance`] trains them.
pub fn start(
    n_features: usize,
    params: &CalibrationParams,
    lambdas: &[f64],
) -> Result<Vec<SweepModel>> {
    check_lambdas(lambdas)?;
    check_models(lambdas.len(), n_features)?;
    // One model, cloned: with a seed every model starts the same, and the
    // initial draws (millions at production scale) are made once.
    let first = match params.seed {
        Some(_) => Some(Calibration::new(n_features, params.clone())?),
        None => None,
    };
    lambdas
        .iter()
        .map(|&lambda_l0| {
            let model = match &first {
                Some(m) => m.clone(),
                None => Calibration::new(n_features, params.clone())?,
            };
            Ok(SweepModel {
                lambda_l0,
                model,
                report: FitReport {
                    device: String::new(),
                    epochs: 0,
                    seconds: 0.0,
                    last: None,
                    fallback: None,
                },
            })
        })
        .collect()
}

/// Trains every model `epochs` more epochs with its own `lambda_l0` and the
/// fit options `opts` (its `lambda_l0` and `epochs` are replaced),
/// continuing exactly where each stopped (a model advanced by `a` then `b`
/// epochs is the single fit of `a + b`). Each report's `epochs` and
/// `seconds` add up over the calls; `last` is the latest.
pub fn advance(
    models: &mut [SweepModel],
    m: &SparseMatrix,
    y: &[f64],
    opts: &FitParams,
    epochs: u64,
    on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
) -> Result<()> {
    let Some(first) = models.first() else {
        return Ok(());
    };
    let prepared = first.model.prepare(m, y, opts)?;
    let mut backends = prepared.backends(m, y, opts);
    advance_on(models, &prepared, &mut backends, opts, epochs, on_progress)
}

/// [`advance`] with a stop whenever the models' step count reaches a
/// multiple of `every` (> 0) before the end: `at_stop(models)` sees them
/// there (to save them; an error ends the training), then training goes on
/// on the same backend. The models end bit for bit as one [`advance`] of
/// `epochs` leaves them, and their progress (`on_progress` and each
/// report's `last`) counts epochs within the whole call, as one
/// [`advance`]'s would. All models must be at the same step.
#[allow(clippy::too_many_arguments)]
pub fn advance_with_stops(
    models: &mut [SweepModel],
    m: &SparseMatrix,
    y: &[f64],
    opts: &FitParams,
    epochs: u64,
    every: u64,
    on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
    at_stop: &mut dyn FnMut(&[SweepModel]) -> Result<()>,
) -> Result<()> {
    if every == 0 {
        return Err(L0Error::config("checkpoint_every must be at least 1"));
    }
    let Some(first) = models.first() else {
        return Ok(());
    };
    let prepared = first.model.prepare(m, y, opts)?;
    let mut backends = prepared.backends(m, y, opts);
    // Held to the options' bounds even when resumed at the end (no epoch
    // left to train, which would set them).
    for s in models.iter_mut() {
        s.model.set_weight_bounds(WeightBounds::of(opts))?;
    }
    let mut done = 0;
    while done < epochs {
        let step = models[0].model.state().step;
        let leg = (every - step % every).min(epochs - done);
        let whole = |p: &Progress| Progress {
            epoch: p.epoch + done,
            epochs,
            ..p.clone()
        };
        let f = &mut |k, p: &Progress| on_progress(k, &whole(p));
        advance_on(models, &prepared, &mut backends, opts, leg, f)?;
        for s in models.iter_mut() {
            s.report.last = s.report.last.as_ref().map(whole);
        }
        done += leg;
        if done < epochs {
            at_stop(models)?;
        }
    }
    Ok(())
}

/// [`advance`] on inputs checked once and a backend kept between calls
/// ([`Calibration::fit_together_on`]): the record budget's batches.
pub(crate) fn advance_on(
    models: &mut [SweepModel],
    prepared: &Prepared,
    backends: &mut BatchBackends<'_>,
    opts: &FitParams,
    epochs: u64,
    on_progress: &mut dyn FnMut(usize, &Progress) -> Result<()>,
) -> Result<()> {
    let opts = FitParams {
        epochs,
        ..opts.clone()
    };
    let lambdas: Vec<f64> = models.iter().map(|s| s.lambda_l0).collect();
    let mut refs: Vec<&mut Calibration> = models.iter_mut().map(|s| &mut s.model).collect();
    let reports =
        Calibration::fit_together_on(&mut refs, &lambdas, prepared, backends, &opts, on_progress)?;
    for (s, r) in models.iter_mut().zip(reports) {
        s.report = FitReport {
            epochs: s.report.epochs + r.epochs,
            seconds: s.report.seconds + r.seconds,
            last: r.last.or(s.report.last.take()),
            device: r.device,
            fallback: r.fallback.or(s.report.fallback.take()),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_log_spaced_with_exact_ends() {
        let g = lambda_grid(1e-6, 1e-2, 5).unwrap();
        assert_eq!(g[0], 1e-6);
        assert_eq!(g[4], 1e-2);
        for (k, v) in g.iter().enumerate() {
            let want = 10f64.powi(k as i32 - 6);
            assert!((v / want - 1.0).abs() < 1e-12, "{k}: {v}");
        }
        assert_eq!(lambda_grid(0.1, 0.1, 1).unwrap(), vec![0.1]);
        assert!(lambda_grid(0.0, 1.0, 3).is_err());
        assert!(lambda_grid(1.0, 0.1, 3).is_err());
        assert!(lambda_grid(0.1, 1.0, 0).is_err());
        assert_eq!(
            lambda_grid(0.1, 1.0, usize::MAX).unwrap_err().to_string(),
            format!("invalid configuration: a lambda grid holds at most 1000000 values (one model each), got {}", usize::MAX)
        );
        assert_eq!(lambda_grid(0.1, 1.0, MAX_GRID).unwrap().len(), MAX_GRID);
        assert!(check_lambdas(&[]).is_err());
        assert!(check_lambdas(&[0.1, -1.0]).is_err());
    }

    #[test]
    fn sweeps_beyond_memory_are_refused_before_any_model() {
        let lambdas = vec![1e-4; 10_000];
        let e = start(1 << 40, &CalibrationParams::default(), &lambdas).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a sweep of 10000 models x 1099511627776 columns needs 703687.4 TB of memory, more than the "),
            "{e}"
        );
        assert!(matches!(e, L0Error::TooLarge { .. }));
    }
}
