//! [`PyRegression`]: the engine's regression model as the Python class
//! `l0_rs._native.Regression`.

use super::*;

/// The engine's regression model ([`Regression`]); `l0_rs.sparse.
/// SparseL0Linear` wraps it.
#[pyclass(module = "l0_rs._native", name = "Regression")]
pub(crate) struct PyRegression {
    pub(crate) model: Regression,
}

#[pymethods]
impl PyRegression {
    #[new]
    #[pyo3(signature = (n_features, fit_intercept, beta, gamma, zeta, init_keep_prob, init_coefficients, coef_init_sd, log_alpha_jitter_sd, seed, test_gate))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_features: &Bound<'_, PyAny>,
        fit_intercept: bool,
        beta: f64,
        gamma: f64,
        zeta: f64,
        init_keep_prob: InitArg<'_>,
        init_coefficients: Option<InitArg<'_>>,
        coef_init_sd: f64,
        log_alpha_jitter_sd: f64,
        seed: Option<&Bound<'_, PyAny>>,
        test_gate: &str,
    ) -> PyResult<Self> {
        guard(|| {
            let params = RegressionParams {
                gate: GateParams { beta, gamma, zeta },
                fit_intercept,
                init_keep_prob: init_keep_prob.to_init("init_keep_prob")?,
                init_coefficients: init_coefficients
                    .map(|w| w.to_init("init_coefficients"))
                    .transpose()?,
                coef_init_sd,
                log_alpha_jitter_sd,
                seed: self::seed(seed)?,
                test_gate: self::test_gate(test_gate)?,
            };
            let model = Regression::new(
                arg::<i64>("n_features", n_features)?.max(0) as usize,
                params,
            )
            .or_py()?;
            Ok(PyRegression { model })
        })
    }

    /// Fits (continuing from the current state) with the GIL released.
    #[allow(clippy::needless_update)]
    #[pyo3(signature = (x, y, lambda_l0, lambda_l2, lr, epochs, device, threads, report_every, printer))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        x: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        lambda_l0: f64,
        lambda_l2: f64,
        lr: f64,
        epochs: u64,
        device: &str,
        threads: Option<usize>,
        report_every: Option<u64>,
        printer: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let y = slice("y", &y)?;
            let opts = RegressionFitParams {
                lambda_l0,
                lambda_l2,
                lr,
                epochs,
                device: self::device(device)?,
                threads,
                report_every,
                // Options the crate adds later take their defaults here.
                ..RegressionFitParams::default()
            };
            let link = PyLink::new(printer, report_every);
            let model = &mut self.model;
            let step0 = model.state().step;
            let (r, link) = py.detach(move || {
                // Progress and stop both reach the link, one at a time.
                let cell = RefCell::new(link);
                let r = model.fit_until(
                    &x.m,
                    y,
                    &opts,
                    &mut |p| {
                        let mut l = cell.borrow_mut();
                        l.step = step0 + p.epoch;
                        l.print(p)
                    },
                    &mut || cell.borrow_mut().stop(),
                );
                (r, cell.into_inner())
            });
            let report = link.finish(r)?;
            let d = PyDict::new(py);
            d.set_item("device", &report.device)?;
            d.set_item("epochs", report.epochs)?;
            d.set_item("seconds", report.seconds)?;
            match &report.last {
                Some(p) => d.set_item("last", regression_progress_dict(py, p)?)?,
                None => d.set_item("last", py.None())?,
            }
            Ok(d)
        })
    }

    fn coefficients<'py>(
        &self,
        py: Python<'py>,
        threshold: f64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.model.coefficients(threshold))))
    }

    fn raw_coefficients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.model.raw_coefficients())))
    }

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

    fn selected_features<'py>(
        &self,
        py: Python<'py>,
        threshold: f64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        guard(|| {
            Ok({
                let s: Vec<i64> = self
                    .model
                    .selected_features(threshold)
                    .into_iter()
                    .map(|i| i as i64)
                    .collect();
                PyArray1::from_vec(py, s)
            })
        })
    }

    /// Ordinary least squares on the selected features (gate above
    /// `threshold`), with the model's intercept setting.
    fn refit<'py>(
        &self,
        py: Python<'py>,
        x: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        threshold: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            if x.m.cols() != self.model.n_features() {
                return Err(to_py(L0Error::shape(
                    "X columns (one per feature)",
                    self.model.n_features(),
                    x.m.cols(),
                )));
            }
            let support = self.model.selected_features(threshold);
            let fit_intercept = self.model.params().fit_intercept;
            let ls =
                l0::refit_least_squares(&x.m, slice("y", &y)?, &support, fit_intercept).or_py()?;
            let d = PyDict::new(py);
            let s: Vec<i64> = ls.support.iter().map(|&i| i as i64).collect();
            d.set_item("support", PyArray1::from_vec(py, s))?;
            d.set_item("coefficients", f64_array(py, ls.coefficients))?;
            d.set_item("intercept", ls.intercept)?;
            Ok(d)
        })
    }

    fn intercept(&self) -> Option<f64> {
        self.model.intercept()
    }

    fn sparsity(&self) -> PyResult<f64> {
        guard(|| Ok(self.model.sparsity()))
    }

    fn l0_penalty(&self) -> PyResult<f64> {
        guard(|| Ok(self.model.l0_penalty()))
    }

    fn predict<'py>(&self, py: Python<'py>, x: &Matrix) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.model.predict(&x.m).or_py()?)))
    }

    #[getter]
    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.model.seed()
    }

    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| state_dict(py, self.model.state(), "weight", self.model.seed()))
    }

    fn load_state_dict(&mut self, d: &Bound<'_, PyDict>) -> PyResult<()> {
        guard(|| {
            let fit_intercept = self.model.params().fit_intercept;
            let (state, seed) = state_from(d, "weight", fit_intercept)?;
            let mut model = if seed == self.model.seed() {
                self.model.clone()
            } else {
                let params = RegressionParams {
                    seed: Some(seed),
                    ..self.model.params().clone()
                };
                Regression::new(self.model.n_features(), params).or_py()?
            };
            model.set_state(state).or_py()?;
            self.model = model;
            Ok(())
        })
    }
}
