//! [`PyCalibration`]: the engine's calibration model as the Python class
//! `l0_rs._native.Calibration`.

use super::*;

/// The engine's calibration model ([`Calibration`]); `l0_rs.calibration.
/// SparseCalibrationWeights` wraps it.
#[pyclass(module = "l0_rs._native", name = "Calibration")]
pub(crate) struct PyCalibration {
    pub(crate) model: Calibration,
}

#[pymethods]
impl PyCalibration {
    #[new]
    #[pyo3(signature = (n_features, beta, gamma, zeta, init_keep_prob, init_weights, log_weight_jitter_sd, log_alpha_jitter_sd, use_gates, seed, test_gate))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_features: &Bound<'_, PyAny>,
        beta: f64,
        gamma: f64,
        zeta: f64,
        init_keep_prob: InitArg<'_>,
        init_weights: Option<InitArg<'_>>,
        log_weight_jitter_sd: f64,
        log_alpha_jitter_sd: f64,
        use_gates: bool,
        seed: Option<&Bound<'_, PyAny>>,
        test_gate: &str,
    ) -> PyResult<Self> {
        guard(|| {
            let params = CalibrationParams {
                gate: GateParams { beta, gamma, zeta },
                init_keep_prob: init_keep_prob.to_init("init_keep_prob")?,
                init_weights: init_weights
                    .map(|w| w.to_init("init_weights"))
                    .transpose()?,
                log_weight_jitter_sd,
                log_alpha_jitter_sd,
                use_gates,
                seed: self::seed(seed)?,
                test_gate: self::test_gate(test_gate)?,
            };
            let model = Calibration::new(
                arg::<i64>("n_features", n_features)?.max(0) as usize,
                params,
            )
            .or_py()?;
            Ok(PyCalibration { model })
        })
    }

    /// Fits (continuing from the current state) with the GIL released;
    /// `opts` holds [`FitParams`]' fields ([`FitOptions`]); returns the fit
    /// report as a dict.
    #[pyo3(signature = (m, y, opts, printer))]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        m: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        opts: FitOptions,
        printer: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let y = slice("y", &y)?;
            let FitOptions(opts) = opts;
            let mut link = PyLink::new(printer, opts.report_every);
            let model = &mut self.model;
            let n = model.n_features();
            let r = py.detach(|| {
                let mut obs = CalibrationLink {
                    metrics: TargetMetrics::new(y, &opts)?,
                    every: opts.report_every,
                    n,
                    link: &mut link,
                };
                model.fit_observed(&m.m, y, &opts, &mut obs)
            });
            let report = link.finish(r)?;
            let last = report.last.as_ref();
            let warnings = l0::advice::after_fit(
                &self.model,
                &m.m,
                y,
                &opts,
                last,
                l0::advice::Naming::Python,
            )
            .or_py()?;
            let d = report_dict(py, &report)?;
            d.set_item("warnings", warnings)?;
            Ok(d)
        })
    }

    /// Select, then refit ([`Calibration::refit`]): trains the weights of
    /// the records with a non-zero deterministic weight, without gates, for
    /// `opts.epochs` epochs under `opts` (its `lambda_l0` is ignored).
    /// Returns `(model over the kept columns, kept columns,
    /// report)`.
    #[pyo3(signature = (m, y, opts, printer))]
    fn refit<'py>(
        &self,
        py: Python<'py>,
        m: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        opts: FitOptions,
        printer: Option<Py<PyAny>>,
    ) -> PyResult<(PyCalibration, Bound<'py, PyArray1<i64>>, Bound<'py, PyDict>)> {
        guard(|| {
            let y = slice("y", &y)?;
            let FitOptions(opts) = opts;
            let mut link = PyLink::new(printer, opts.report_every);
            let model = &self.model;
            let r = py.detach(|| {
                model.refit_with(&m.m, y, &opts, opts.epochs, &mut |p| {
                    link.step = p.epoch;
                    link.print(p)?;
                    interrupted(&mut link)
                })
            });
            let refit = link.finish(r)?;
            let columns: Vec<i64> = refit.columns.iter().map(|&c| c as i64).collect();
            let report = report_dict(py, &refit.report)?;
            Ok((
                PyCalibration { model: refit.model },
                PyArray1::from_vec(py, columns),
                report,
            ))
        })
    }

    /// How concentrated the deterministic weights are and who carries each
    /// target of `m` ([`Calibration::diagnostics`]), as a dict of floats
    /// and numpy arrays (`top_record` is -1 where no contribution is
    /// positive).
    fn diagnostics<'py>(&self, py: Python<'py>, m: &Matrix) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let model = &self.model;
            let dg = py.detach(|| model.diagnostics(&m.m)).or_py()?;
            let w = &dg.weights;
            let d = PyDict::new(py);
            d.set_item("active", w.active)?;
            d.set_item("ess", w.ess)?;
            d.set_item("design_effect", w.design_effect)?;
            d.set_item("max_weight", w.max_weight)?;
            d.set_item("top1pct_share", w.top1pct_share)?;
            d.set_item("quantile_levels", f64_array(py, QUANTILES.to_vec()))?;
            d.set_item("quantiles", f64_array(py, w.quantiles.to_vec()))?;
            let top: Vec<i64> = dg
                .targets
                .iter()
                .map(|c| c.top_record.map_or(-1, |i| i as i64))
                .collect();
            let share: Vec<f64> = dg.targets.iter().map(|c| c.top_record_share).collect();
            let count: Vec<i64> = dg
                .targets
                .iter()
                .map(|c| c.records_contributing as i64)
                .collect();
            d.set_item("top_record", PyArray1::from_vec(py, top))?;
            d.set_item("top_record_share", f64_array(py, share))?;
            d.set_item("records_contributing", PyArray1::from_vec(py, count))?;
            Ok(d)
        })
    }

    /// Deterministic weights, or weights with the next step's sampled gates.
    fn weights<'py>(
        &self,
        py: Python<'py>,
        deterministic: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.model.weights(deterministic))))
    }

    fn deterministic_gates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.model.deterministic_gates())))
    }

    fn l0_penalty(&self) -> PyResult<f64> {
        guard(|| Ok(self.model.l0_penalty()))
    }

    fn l2_penalty(&self) -> PyResult<f64> {
        guard(|| Ok(self.model.l2_penalty()))
    }

    fn sparsity(&self) -> PyResult<f64> {
        guard(|| Ok(self.model.sparsity()))
    }

    /// The sum of the initial (design) weights: `conserve_total=True`.
    fn design_total(&self) -> PyResult<f64> {
        guard(|| self.model.design_total().or_py())
    }

    fn active_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| active_dict(py, self.model.active_weights()))
    }

    fn predict<'py>(&self, py: Python<'py>, m: &Matrix) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.predict_vec(m)?)))
    }

    /// Per-target estimates and accuracy with deterministic weights, as
    /// `l0 calibrate` reports them; `csv_path` also writes its targets.csv.
    #[pyo3(signature = (m, y, target_names, excluded_targets, holdout_targets, csv_path, target_tolerance))]
    #[allow(clippy::too_many_arguments)]
    fn target_report<'py>(
        &self,
        py: Python<'py>,
        m: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        target_names: Option<Vec<String>>,
        excluded_targets: Vec<usize>,
        holdout_targets: Vec<usize>,
        csv_path: Option<std::path::PathBuf>,
        target_tolerance: Option<Vec<f64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let y = slice("y", &y)?;
            let q = m.m.rows();
            if y.len() != q {
                return Err(to_py(L0Error::shape(
                    "y (one target per matrix row)",
                    q,
                    y.len(),
                )));
            }
            let names =
                target_names.unwrap_or_else(|| (0..q).map(|k| format!("target_{k}")).collect());
            if names.len() != q {
                return Err(to_py(L0Error::shape(
                    "target_names (one per target)",
                    q,
                    names.len(),
                )));
            }
            let lists = FitParams {
                excluded_targets,
                holdout_targets,
                ..Default::default()
            };
            l0::calibration::check_target_lists(q, &lists).or_py()?;
            let roles = l0::calibration::target_roles(q, &lists);
            let yhat = self.predict_vec(m)?;
            let mut rows = l0::report::target_rows(&names, y, &yhat, &roles);
            if let Some(t) = &target_tolerance {
                let bands = l0::objective::band_widths(y, t).or_py()?;
                l0::report::set_bands(&mut rows, Some(&bands));
            }
            if let Some(path) = csv_path {
                let carriers = l0::diagnostics::target_carriers(
                    &m.m,
                    &self.model.weights(true),
                    l0::par::Par::current(),
                );
                l0::report::write_targets_csv(&path, &rows, &carriers).or_py()?;
            }
            let d = accuracy_dict(py, &l0::report::Accuracy::of(&rows))?;
            d.set_item("estimate", f64_array(py, yhat))?;
            let rel: Vec<f64> = rows.iter().map(|r| r.rel_error()).collect();
            d.set_item("rel_error", f64_array(py, rel))?;
            match l0::report::within_tolerance(&rows) {
                Some(n) => d.set_item("within_tolerance", n)?,
                None => d.set_item("within_tolerance", py.None())?,
            }
            match l0::report::Accuracy::holdout(&rows) {
                Some(h) => d.set_item("holdout", accuracy_dict(py, &h)?)?,
                None => d.set_item("holdout", py.None())?,
            }
            Ok(d)
        })
    }

    #[getter]
    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.model.seed()
    }

    #[getter]
    fn test_gate(&self) -> &'static str {
        test_gate_name(self.model.params().test_gate)
    }

    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let d = state_dict(py, self.model.state(), "log_weight", self.model.seed())?;
            // The bounds the reported weights are held to travel with the
            // state (pickle, Ray), when there are any beyond the caps.
            let b = self.model.weight_bounds();
            if b.hold_reports() {
                for (key, v) in bound_items(&b) {
                    d.set_item(key, v)?;
                }
            }
            Ok(d)
        })
    }

    /// Writes the engine's checkpoint file (`l0 calibrate`'s
    /// checkpoint.l0ck format): state, seed and the fingerprint of the
    /// problem `(m, y, groups)`.
    #[pyo3(signature = (path, m, y, groups))]
    fn save_checkpoint(
        &self,
        path: std::path::PathBuf,
        m: &Matrix,
        y: PyReadonlyArray1<'_, f64>,
        groups: Option<Vec<i64>>,
    ) -> PyResult<()> {
        guard(|| {
            let c = l0::checkpoint::Checkpoint {
                seed: self.model.seed(),
                fingerprint: l0::checkpoint::problem_fingerprint(
                    &m.m,
                    y.as_slice()?,
                    groups.as_deref(),
                ),
                state: self.model.state().clone(),
                settings: vec![("seed".into(), self.model.seed().to_string())],
            };
            c.write(&path).or_py()
        })
    }

    /// Replaces the state and seed with those of a checkpoint file (written
    /// by `save_checkpoint` or by `l0 calibrate --checkpoint-every`), after
    /// checking that it was written for the problem `(m, y, groups)`.
    #[pyo3(signature = (path, m, y, groups))]
    fn load_checkpoint(
        &mut self,
        path: std::path::PathBuf,
        m: &Matrix,
        y: PyReadonlyArray1<'_, f64>,
        groups: Option<Vec<i64>>,
    ) -> PyResult<()> {
        guard(|| {
            let c = l0::checkpoint::Checkpoint::read(&path).or_py()?;
            let want = l0::checkpoint::problem_fingerprint(&m.m, y.as_slice()?, groups.as_deref());
            if c.fingerprint != want {
                return Err(PyValueError::new_err(format!(
                "{}: the checkpoint was written for another problem (its matrix, targets or groups differ)",
                path.display()
            )));
            }
            self.take_state(c.state, c.seed)
        })
    }

    /// Replaces parameters, Adam moments, step and seed.
    fn load_state_dict(&mut self, d: &Bound<'_, PyDict>) -> PyResult<()> {
        guard(|| {
            let (state, seed) = state_from(d, "log_weight", false)?;
            let bound = |k: &str| -> PyResult<Option<f64>> {
                match d.get_item(k)? {
                    Some(v) if !v.is_none() => Ok(Some(v.extract::<f64>()?)),
                    _ => Ok(None),
                }
            };
            let bounds = l0::calibration::WeightBounds {
                max_weight: bound("max_weight")?,
                max_weight_ratio: bound("max_weight_ratio")?,
                min_weight_ratio: bound("min_weight_ratio")?,
                conserve_total: bound("conserve_total")?,
            };
            self.take_state(state, seed)?;
            self.model.set_weight_bounds(bounds).or_py()
        })
    }
}

/// The weight bounds as `state_dict` keys (None for an option not set).
fn bound_items(b: &l0::calibration::WeightBounds) -> [(&'static str, Option<f64>); 4] {
    [
        ("max_weight", b.max_weight),
        ("max_weight_ratio", b.max_weight_ratio),
        ("min_weight_ratio", b.min_weight_ratio),
        ("conserve_total", b.conserve_total),
    ]
}

impl PyCalibration {
    /// Refuses a matrix whose columns are not one per weight.
    pub(crate) fn check_columns(&self, m: &Matrix) -> PyResult<()> {
        if m.m.cols() != self.model.n_features() {
            return Err(to_py(L0Error::shape(
                "matrix columns (one per weight)",
                self.model.n_features(),
                m.m.cols(),
            )));
        }
        Ok(())
    }

    /// This model's options with `seed`.
    pub(crate) fn params_with_seed(&self, seed: u64) -> CalibrationParams {
        CalibrationParams {
            seed: Some(seed),
            ..self.model.params().clone()
        }
    }

    /// Takes `state` and `seed` (a fresh model of the same options when the
    /// seed differs).
    pub(crate) fn take_state(&mut self, state: ParamState, seed: u64) -> PyResult<()> {
        let mut model = if seed == self.model.seed() {
            self.model.clone()
        } else {
            Calibration::new(self.model.n_features(), self.params_with_seed(seed)).or_py()?
        };
        model.set_state(state).or_py()?;
        self.model = model;
        Ok(())
    }

    /// `M w` with deterministic weights, after checking `M`'s columns.
    pub(crate) fn predict_vec(&self, m: &Matrix) -> PyResult<Vec<f64>> {
        self.check_columns(m)?;
        self.model.predict(&m.m).or_py()
    }
}
