//! Fits of many calibration models in one call: a λ sweep, a record
//! budget search, and their helpers (holdout targets, λ grids).

use super::*;

/// The sorted target indices a holdout leaves out of `q` targets
/// ([`l0::holdout::holdout_targets`]): every target of the group ids
/// `groups`, or a share `fraction` drawn within each group by `seed`.
#[pyfunction]
#[pyo3(signature = (q, target_groups, groups, fraction, seed))]
pub(crate) fn holdout_targets<'py>(
    py: Python<'py>,
    q: usize,
    target_groups: Option<PyReadonlyArray1<'py, i64>>,
    groups: Option<Vec<i64>>,
    fraction: Option<f64>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    guard(|| {
        let spec = match (groups, fraction) {
            (Some(g), None) => Holdout::Groups(g),
            (None, Some(fraction)) => Holdout::Fraction { fraction, seed },
            _ => {
                return Err(to_py(L0Error::config(
                    "a holdout takes either groups or a fraction",
                )))
            }
        };
        let tg = match &target_groups {
            Some(g) => Some(slice("target_groups", g)?),
            None => None,
        };
        let h = l0::holdout::holdout_targets(q, tg, &spec).or_py()?;
        Ok(PyArray1::from_vec(
            py,
            h.into_iter().map(|t| t as i64).collect(),
        ))
    })
}

/// `n` L0 strengths from `lo` to `hi`, log-spaced ([`l0::sweep::lambda_grid`]).
#[pyfunction]
pub(crate) fn lambda_grid(lo: f64, hi: f64, n: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    guard(|| l0::sweep::lambda_grid(lo, hi, arg("n", n)?).or_py())
}

/// A λ sweep ([`l0::sweep::sweep`]): one model per `lambdas[k]`, each
/// from `template`'s options and seed (its state is not used) and fitted
/// under `opts` with `lambda_l0 = lambdas[k]`, with the GIL released.
/// Returns one `(lambda_l0, model, report)` per λ.
#[pyfunction]
#[pyo3(signature = (template, m, y, opts, lambdas, printer))]
pub(crate) fn sweep<'py>(
    py: Python<'py>,
    template: &PyCalibration,
    m: &Matrix,
    y: PyReadonlyArray1<'py, f64>,
    opts: FitOptions,
    lambdas: Vec<f64>,
    printer: Option<Py<PyAny>>,
) -> PyResult<Vec<(f64, PyCalibration, Bound<'py, PyDict>)>> {
    guard(|| {
        let y = slice("y", &y)?;
        let FitOptions(opts) = opts;
        let params = template.params_with_seed(template.model.seed());
        template.check_columns(m)?;
        let mut link = PyLink::new(printer, opts.report_every);
        let r = py.detach(|| {
            l0::sweep::sweep(&m.m, y, &params, &opts, &lambdas, &mut |k, p| {
                link.step = p.epoch;
                link.print(&format!("[lambda_l0={}] {p}", lambdas[k]))?;
                interrupted(&mut link)
            })
        });
        let models = link.finish(r)?;
        models
            .into_iter()
            .map(|s| {
                let report = report_dict(py, &s.report)?;
                Ok((s.lambda_l0, PyCalibration { model: s.model }, report))
            })
            .collect()
    })
}

/// A record budget ([`l0::budget::fit_to_budget`]): searches the
/// `lambda_l0` whose model keeps `target_records` records within
/// `records_tolerance`, every model from `template`'s options and seed (its
/// state is not used) and fitted under `opts` (its `lambda_l0` is ignored),
/// with the GIL released. Returns `(chosen model, its fit report, the
/// search's report)`.
#[pyfunction]
#[pyo3(signature = (template, m, y, opts, target_records, records_tolerance, lambda_range, printer))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_to_budget<'py>(
    py: Python<'py>,
    template: &PyCalibration,
    m: &Matrix,
    y: PyReadonlyArray1<'py, f64>,
    opts: FitOptions,
    target_records: usize,
    records_tolerance: f64,
    lambda_range: (f64, f64),
    printer: Option<Py<PyAny>>,
) -> PyResult<(PyCalibration, Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    guard(|| {
        use l0::budget::Budget;
        let y = slice("y", &y)?;
        let FitOptions(opts) = opts;
        let params = template.params_with_seed(template.model.seed());
        template.check_columns(m)?;
        let budget = Budget {
            tolerance: records_tolerance,
            lambda_range,
            ..Budget::new(target_records)
        };
        let mut link = PyLink::new(printer, opts.report_every);
        let r = py.detach(|| {
            l0::budget::fit_to_budget(&m.m, y, &params, &opts, &budget, &mut |stage, lambda, p| {
                link.step = p.epoch;
                link.print(&format!("[{} lambda_l0={lambda}] {p}", stage.name()))?;
                interrupted(&mut link)
            })
        });
        let fit = link.finish(r)?;
        let d = PyDict::new(py);
        d.set_item("target_records", budget.target_records)?;
        d.set_item("tolerance", budget.tolerance)?;
        d.set_item("lambda_l0", fit.chosen.lambda_l0)?;
        d.set_item("active", fit.active)?;
        d.set_item("met", fit.met)?;
        d.set_item("models_trained", fit.models_trained)?;
        d.set_item("epochs_total", fit.epochs_total)?;
        d.set_item("fits", fit.epochs_total as f64 / opts.epochs.max(1) as f64)?;
        d.set_item("seconds", fit.seconds)?;
        d.set_item(
            "shortfall",
            fit.shortfall(&budget, l0::advice::Naming::Python),
        )?;
        let trials = fit
            .trials
            .iter()
            .map(|t| {
                let e = PyDict::new(py);
                e.set_item("stage", t.stage.name())?;
                e.set_item("lambda_l0", t.lambda_l0)?;
                e.set_item("epochs", t.epochs)?;
                e.set_item("active", t.active)?;
                Ok(e)
            })
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("trials", trials)?;
        let batches = fit
            .batches
            .iter()
            .map(|b| {
                let e = PyDict::new(py);
                e.set_item("stage", b.stage.name())?;
                e.set_item("models", b.models)?;
                e.set_item("epochs", b.epochs)?;
                Ok(e)
            })
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("batches", batches)?;
        d.set_item("passes", fit.passes(opts.epochs))?;
        d.set_item("cost_fits", fit.cost_fits)?;
        d.set_item("settled", fit.settled)?;
        d.set_item("backends_built", fit.backends_built)?;
        d.set_item("setup_seconds", fit.setup_seconds)?;
        d.set_item("fallbacks", &fit.fallbacks)?;
        let report = report_dict(py, &fit.chosen.report)?;
        Ok((
            PyCalibration {
                model: fit.chosen.model,
            },
            report,
            d,
        ))
    })
}
