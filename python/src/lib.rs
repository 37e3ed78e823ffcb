//! `l0_rs._native`: the PyO3 layer between the `l0` crate and the Python
//! package `l0_rs` (python/l0_rs/), which wraps these classes in the
//! reference's names and signatures.
//!
//! It converts numpy arrays at the border ([`Matrix`] from scipy's arrays,
//! vectors from numpy), maps [`L0Error`] to Python exceptions in one place
//! ([`to_py`]), turns a panic into a `RuntimeError` ([`guard`], around
//! every function Python calls that does more than read a field), and runs fits with the GIL released. While a fit runs, the
//! observer takes the GIL back only to print a progress line and, every
//! [`SIGNAL_CHECK`], to let Python handle signals: a pending
//! KeyboardInterrupt stops the fit after the current epoch, the model keeps
//! that epoch's state, and the exception is raised once the fit returned.

use l0::backend::ParamState;
use l0::calibration::{ActiveWeights, CalibrationObserver, FitReport, Progress, TargetMetrics};
use l0::diagnostics::QUANTILES;
use l0::engine::Snapshot;
use l0::holdout::Holdout;
use l0::{
    Calibration, CalibrationParams, Device, FitParams, GateParams, Init, L0Error, Loss, Regression,
    RegressionFitParams, RegressionParams, RegressionProgress, SparseMatrix, TestGate,
};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{
    PyMemoryError, PyOSError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::RefCell;
use std::time::{Duration, Instant};

mod cuda;

/// How often a running fit lets Python look at pending signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The one mapping from the crate's errors to Python exceptions: files to
/// `OSError`, sizes beyond memory to `MemoryError`, CUDA failures and divergence to `RuntimeError`, everything a
/// caller's input or options can cause to `ValueError`; the message is the
/// engine's.
fn to_py(e: L0Error) -> PyErr {
    let msg = e.to_string();
    match e {
        L0Error::Io { .. } => PyOSError::new_err(msg),
        L0Error::TooLarge { .. } => PyMemoryError::new_err(msg),
        L0Error::Cuda(_) | L0Error::Diverged { .. } => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// Runs the body of a function that Python calls, turning a panic (a bug
/// in `l0`) into a `RuntimeError` with its message, so that it never
/// reaches the user as pyo3's `PanicException` (which `except Exception`
/// does not catch).
fn guard<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(PyRuntimeError::new_err(format!(
            "internal error in l0 (please report it): {message}"
        )))
    })
}

/// An argument's conversion error with the argument named: an integer
/// out of range (`OverflowError`) becomes a `ValueError`, a wrong type
/// stays a `TypeError`.
fn named(what: &str, value: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
    let py = value.py();
    let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
    if e.is_instance_of::<PyOverflowError>(py) {
        PyValueError::new_err(format!("{what} is out of range: {shown}"))
    } else if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(format!("{what}: {}", e.value(py)))
    } else {
        e
    }
}

/// `value` converted to `T`, or an error naming `what` ([`named`]).
fn arg<'a, 'py, T: FromPyObject<'a, 'py>>(what: &str, value: &'a Bound<'py, PyAny>) -> PyResult<T> {
    value
        .extract::<T>()
        .map_err(|e: T::Error| named(what, value, e.into()))
}

trait OrPy<T> {
    fn or_py(self) -> PyResult<T>;
}

impl<T> OrPy<T> for l0::Result<T> {
    fn or_py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A contiguous 1-D view of a numpy array, or a `TypeError` naming `what`.
fn slice<'a, T: numpy::Element>(what: &str, a: &'a PyReadonlyArray1<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{what}: the array must be contiguous")))
}

/// The dtype of a numpy array, in words, for messages.
fn dtype_of(a: &Bound<'_, PyAny>) -> String {
    a.getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| a.get_type().to_string())
}

/// Index arrays as scipy stores them.
enum Indices<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl<'py> Indices<'py> {
    fn extract(what: &str, a: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(x) = a.extract::<PyReadonlyArray1<i32>>() {
            return Ok(Indices::I32(x));
        }
        if let Ok(x) = a.extract::<PyReadonlyArray1<i64>>() {
            return Ok(Indices::I64(x));
        }
        Err(PyTypeError::new_err(format!(
            "{what}: expected a 1-D int32 or int64 array, got {}",
            dtype_of(a)
        )))
    }
}

/// Matrix values: float32 (kept as they are) or float64.
enum Values<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

impl<'py> Values<'py> {
    fn extract(a: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(x) = a.extract::<PyReadonlyArray1<f32>>() {
            return Ok(Values::F32(x));
        }
        if let Ok(x) = a.extract::<PyReadonlyArray1<f64>>() {
            return Ok(Values::F64(x));
        }
        Err(PyTypeError::new_err(format!(
            "matrix data: expected a 1-D float32 or float64 array, got {}",
            dtype_of(a)
        )))
    }
}

/// A validated sparse matrix in the engine's layout (CSR and CSC, `f32`
/// values, `u32` indices), built once from scipy's arrays and reusable
/// across fits and predictions.
#[pyclass(module = "l0_rs._native", name = "Matrix", frozen)]
pub struct Matrix {
    m: SparseMatrix,
}

fn compressed<P: l0::SparseIndex, J: l0::SparseIndex, V: Copy + Into<f64>>(
    by_column: bool,
    shape: (usize, usize),
    indptr: &[P],
    indices: &[J],
    data: &[V],
) -> l0::Result<SparseMatrix> {
    if by_column {
        SparseMatrix::from_csc(shape.0, shape.1, indptr, indices, data)
    } else {
        SparseMatrix::from_csr(shape.0, shape.1, indptr, indices, data)
    }
}

/// [`compressed`] for either type of matrix values.
fn with_values<J: l0::SparseIndex>(
    by_column: bool,
    shape: (usize, usize),
    indptr: &[i64],
    indices: &[J],
    data: &Values,
) -> PyResult<l0::Result<SparseMatrix>> {
    Ok(match data {
        Values::F32(v) => compressed(by_column, shape, indptr, indices, slice("data", v)?),
        Values::F64(v) => compressed(by_column, shape, indptr, indices, slice("data", v)?),
    })
}

/// `u64` coordinates from scipy's coo indices (negative ones refused).
fn coordinates(what: &str, ix: &Indices) -> PyResult<Vec<u64>> {
    fn conv<T: Copy + std::fmt::Display + TryInto<u64>>(what: &str, s: &[T]) -> PyResult<Vec<u64>> {
        s.iter()
            .enumerate()
            .map(|(k, &v)| {
                v.try_into().map_err(|_| {
                    to_py(L0Error::config(format!(
                        "{what}: negative index {v} at position {k}"
                    )))
                })
            })
            .collect()
    }
    match ix {
        Indices::I32(a) => conv(what, slice(what, a)?),
        Indices::I64(a) => conv(what, slice(what, a)?),
    }
}

#[pymethods]
impl Matrix {
    /// From compressed arrays (scipy's csr or csc: `indptr`, `indices`,
    /// `data`), int32 or int64 indices, float32 or float64 data.
    #[staticmethod]
    fn compressed<'py>(
        by_column: bool,
        shape: (usize, usize),
        indptr: &Bound<'py, PyAny>,
        indices: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        guard(|| {
            let p = Indices::extract("indptr", indptr)?;
            let j = Indices::extract("indices", indices)?;
            let v = Values::extract(data)?;
            // indptr is short (one per row or column): one i64 copy keeps the
            // dispatch to the index and value types that matter for memory.
            let p: Vec<i64> = match &p {
                Indices::I32(a) => slice("indptr", a)?.iter().map(|&x| x as i64).collect(),
                Indices::I64(a) => slice("indptr", a)?.to_vec(),
            };
            let m = match &j {
                Indices::I32(j) => with_values(by_column, shape, &p, slice("indices", j)?, &v)?,
                Indices::I64(j) => with_values(by_column, shape, &p, slice("indices", j)?, &v)?,
            }
            .or_py()?;
            Ok(Matrix { m })
        })
    }

    /// From coordinates (scipy's coo: `row`, `col`, `data`); duplicates are summed.
    #[staticmethod]
    fn coo<'py>(
        shape: (usize, usize),
        row: &Bound<'py, PyAny>,
        col: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        guard(|| {
            let r = coordinates("row", &Indices::extract("row", row)?)?;
            let c = coordinates("col", &Indices::extract("col", col)?)?;
            let v: Vec<f64> = match Values::extract(data)? {
                Values::F32(a) => slice("data", &a)?.iter().map(|&x| x as f64).collect(),
                Values::F64(a) => slice("data", &a)?.to_vec(),
            };
            let m = SparseMatrix::from_triplets(shape.0, shape.1, &r, &c, &v).or_py()?;
            Ok(Matrix { m })
        })
    }

    /// From a dense 2-D float64 array (its nonzero entries).
    #[staticmethod]
    fn dense(a: PyReadonlyArray2<'_, f64>) -> PyResult<Self> {
        guard(|| {
            let (rows, cols) = (a.shape()[0], a.shape()[1]);
            let values = a.as_slice().map_err(|_| {
                PyTypeError::new_err("dense matrix: the array must be C-contiguous")
            })?;
            let m = SparseMatrix::from_dense(rows, cols, values).or_py()?;
            Ok(Matrix { m })
        })
    }

    /// `(rows, columns)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.m.rows(), self.m.cols())
    }

    /// Stored entries (after summing duplicates).
    #[getter]
    fn nnz(&self) -> usize {
        self.m.nnz()
    }

    fn __repr__(&self) -> String {
        format!(
            "l0_rs.Matrix({} x {}, {} nonzeros)",
            self.m.rows(),
            self.m.cols(),
            self.m.nnz()
        )
    }
}

/// A per-column option from Python: a number or a float64 array.
#[derive(FromPyObject)]
enum InitArg<'py> {
    Scalar(f64),
    Array(PyReadonlyArray1<'py, f64>),
}

impl InitArg<'_> {
    fn to_init(&self, what: &str) -> PyResult<Init> {
        Ok(match self {
            InitArg::Scalar(v) => Init::Scalar(*v),
            InitArg::Array(a) => Init::PerColumn(slice(what, a)?.to_vec()),
        })
    }
}

fn test_gate(text: &str) -> PyResult<TestGate> {
    match text {
        "temperature" => Ok(TestGate::Temperature),
        "paper" => Ok(TestGate::Paper),
        _ => Err(to_py(L0Error::config(format!(
            "unknown test gate '{text}': expected 'temperature' or 'paper'"
        )))),
    }
}

fn test_gate_name(t: TestGate) -> &'static str {
    match t {
        TestGate::Temperature => "temperature",
        TestGate::Paper => "paper",
    }
}

fn device(text: &str) -> PyResult<Device> {
    text.parse::<Device>().or_py()
}

fn seed(s: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    s.map(|s| {
        s.extract::<u64>().map_err(|_| {
            PyValueError::new_err(format!(
                "seed must be an integer in [0, 2^64), got {}",
                s.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })
    })
    .transpose()
}

fn f64_array<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v)
}

fn f32_array<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyArray1<f32>> {
    PyArray1::from_slice(py, v)
}

/// What a running fit shares with Python: progress lines to print (with
/// the GIL taken back), signals to check, and the Python error that
/// stopped it.
struct PyLink {
    printer: Option<Py<PyAny>>,
    print_every: u64,
    step: u64,
    last_check: Instant,
    pending: Option<PyErr>,
}

impl PyLink {
    fn new(printer: Option<Py<PyAny>>, print_every: Option<u64>) -> Self {
        PyLink {
            printer,
            print_every: print_every.unwrap_or(0),
            step: 0,
            last_check: Instant::now(),
            pending: None,
        }
    }

    /// Prints `line` when the model's step is on the print schedule (the
    /// reference prints when `(epoch + 1) % verbose_freq == 0`, not at a
    /// last epoch off it).
    fn print(&mut self, line: &dyn std::fmt::Display) -> l0::Result<()> {
        let Some(printer) = &self.printer else {
            return Ok(());
        };
        if self.print_every == 0 || !self.step.is_multiple_of(self.print_every) {
            return Ok(());
        }
        let text = line.to_string();
        // An exception (KeyboardInterrupt during the print, a closed
        // stdout) stops the fit after this epoch, as a signal does.
        if let Err(e) = Python::attach(|py| printer.call1(py, (text,)).map(|_| ())) {
            self.pending = Some(e);
        }
        Ok(())
    }

    /// True once Python has a pending exception from a signal handler
    /// (KeyboardInterrupt), checked at most every [`SIGNAL_CHECK`].
    fn stop(&mut self) -> bool {
        if self.pending.is_some() {
            return true;
        }
        if self.last_check.elapsed() < SIGNAL_CHECK {
            return false;
        }
        self.last_check = Instant::now();
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            self.pending = Some(e);
            return true;
        }
        false
    }

    /// After the fit: the Python error that stopped it, else its own result.
    fn finish<T>(mut self, r: l0::Result<T>) -> PyResult<T> {
        match self.pending.take() {
            Some(e) => Err(e),
            None => r.or_py(),
        }
    }
}

struct CalibrationLink<'a> {
    metrics: TargetMetrics<'a>,
    every: Option<u64>,
    n: usize,
    link: &'a mut PyLink,
}

impl CalibrationObserver for CalibrationLink<'_> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn snapshot(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.link.step = s.step;
        Ok(())
    }
    fn progress(&mut self, p: &Progress) -> l0::Result<()> {
        self.link.print(p)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
    fn stop_requested(&mut self) -> bool {
        self.link.stop()
    }
}

fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", p.epoch)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("total_loss", p.total_loss)?;
    d.set_item("data_loss", p.data_loss)?;
    d.set_item("l0_penalty", p.l0_penalty)?;
    d.set_item("mean_rel_err", p.mean_rel_err)?;
    d.set_item("max_rel_err", p.max_rel_err)?;
    d.set_item("mean_group_rel_err", p.mean_group_rel_err)?;
    d.set_item("holdout_mean_rel_err", p.holdout_mean_rel_err)?;
    d.set_item("holdout_max_rel_err", p.holdout_max_rel_err)?;
    d.set_item("active", p.active)?;
    d.set_item("sparsity", p.sparsity())?;
    d.set_item("weight_buckets", p.buckets.to_vec())?;
    d.set_item("line", p.to_string())?;
    Ok(d)
}

fn report_dict<'py>(py: Python<'py>, r: &FitReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("device", &r.device)?;
    d.set_item("epochs", r.epochs)?;
    d.set_item("seconds", r.seconds)?;
    match &r.last {
        Some(p) => d.set_item("last", progress_dict(py, p)?)?,
        None => d.set_item("last", py.None())?,
    }
    d.set_item("fallback", &r.fallback)?;
    Ok(d)
}

/// [`FitParams`] from the dict that `l0_rs.calibration` builds: one key per
/// field (`loss` and `device` as text, `target_groups` an int64 array or
/// None, `target_weights` a float64 array or None, the target lists as
/// lists of ints).
fn fit_params(d: &Bound<'_, PyDict>) -> PyResult<FitParams> {
    let item = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?
            .ok_or_else(|| PyValueError::new_err(format!("fit options lack '{k}'")))
    };
    let target_groups = match item("target_groups")? {
        g if g.is_none() => None,
        g => Some(slice("target_groups", &g.extract::<PyReadonlyArray1<i64>>()?)?.to_vec()),
    };
    let target_weights = match item("target_weights")? {
        t if t.is_none() => None,
        t => Some(slice("target_weights", &t.extract::<PyReadonlyArray1<f64>>()?)?.to_vec()),
    };
    Ok(FitParams {
        lambda_l0: arg("lambda_l0", &item("lambda_l0")?)?,
        lambda_l2: arg("lambda_l2", &item("lambda_l2")?)?,
        lr: arg("lr", &item("lr")?)?,
        epochs: arg("epochs", &item("epochs")?)?,
        loss: item("loss")?.extract::<String>()?.parse::<Loss>().or_py()?,
        target_groups,
        normalize_groups: arg("normalize_groups", &item("normalize_groups")?)?,
        group_multipliers: arg("group_multipliers", &item("group_multipliers")?)?,
        excluded_targets: arg("excluded_targets", &item("excluded_targets")?)?,
        holdout_targets: arg("holdout_targets", &item("holdout_targets")?)?,
        target_weights,
        max_weight: arg("max_weight", &item("max_weight")?)?,
        max_weight_ratio: arg("max_weight_ratio", &item("max_weight_ratio")?)?,
        device: device(&item("device")?.extract::<String>()?)?,
        threads: arg("threads", &item("threads")?)?,
        report_every: arg("report_every", &item("report_every")?)?,
    })
}

/// The figures of an [`l0::report::Accuracy`].
fn accuracy_dict<'py>(py: Python<'py>, a: &l0::report::Accuracy) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("included", a.included)?;
    d.set_item("rel_loss", a.rel_loss)?;
    d.set_item("mean_abs_rel_err", a.mean_abs_rel_err)?;
    d.set_item("max_abs_rel_err", a.max_abs_rel_err)?;
    let within = PyDict::new(py);
    for (t, share) in l0::report::WITHIN.iter().zip(a.within) {
        within.set_item(*t, share)?;
    }
    d.set_item("within", within)?;
    Ok(d)
}

/// Between reports of a refit or sweep: an error (which the pending
/// KeyboardInterrupt replaces) once Python has a pending signal.
fn interrupted(link: &mut PyLink) -> l0::Result<()> {
    if link.stop() {
        return Err(L0Error::config("interrupted"));
    }
    Ok(())
}

/// The six state vectors and the step of a [`ParamState`], as numpy arrays
/// (float32, exactly the engine's) in a dict under `names[0..2]` for the
/// parameters and `<name>_exp_avg` / `<name>_exp_avg_sq` (torch's Adam
/// names) for the moments.
fn state_dict<'py>(
    py: Python<'py>,
    s: &ParamState,
    p_name: &str,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(p_name, f32_array(py, &s.p))?;
    d.set_item("log_alpha", f32_array(py, &s.a))?;
    d.set_item(format!("{p_name}_exp_avg"), f32_array(py, &s.m_p))?;
    d.set_item(format!("{p_name}_exp_avg_sq"), f32_array(py, &s.v_p))?;
    d.set_item("log_alpha_exp_avg", f32_array(py, &s.m_a))?;
    d.set_item("log_alpha_exp_avg_sq", f32_array(py, &s.v_a))?;
    if let Some(b) = s.intercept {
        d.set_item("bias", b.value)?;
        d.set_item("bias_exp_avg", b.m)?;
        d.set_item("bias_exp_avg_sq", b.v)?;
    }
    d.set_item("step", s.step)?;
    d.set_item("seed", seed)?;
    Ok(d)
}

/// The inverse of [`state_dict`]; returns the state and the seed.
fn state_from(d: &Bound<'_, PyDict>, p_name: &str, intercept: bool) -> PyResult<(ParamState, u64)> {
    let item = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?
            .ok_or_else(|| PyValueError::new_err(format!("state_dict lacks '{k}'")))
    };
    let vec = |k: &str| -> PyResult<Vec<f32>> {
        let a = item(k)?;
        let a = a.extract::<PyReadonlyArray1<f32>>().map_err(|_| {
            PyTypeError::new_err(format!(
                "state_dict['{k}']: expected a 1-D float32 array, got {}",
                dtype_of(&a)
            ))
        })?;
        Ok(slice(k, &a)?.to_vec())
    };
    let scalar = |k: &str| -> PyResult<f32> { item(k)?.extract::<f32>() };
    let mut s = ParamState {
        p: vec(p_name)?,
        a: vec("log_alpha")?,
        m_p: vec(&format!("{p_name}_exp_avg"))?,
        v_p: vec(&format!("{p_name}_exp_avg_sq"))?,
        m_a: vec("log_alpha_exp_avg")?,
        v_a: vec("log_alpha_exp_avg_sq")?,
        intercept: None,
        step: item("step")?.extract::<u64>()?,
    };
    if intercept && d.contains("bias")? {
        s.intercept = Some(l0::backend::ScalarState {
            value: scalar("bias")?,
            m: scalar("bias_exp_avg")?,
            v: scalar("bias_exp_avg_sq")?,
        });
    }
    let seed = item("seed")?.extract::<u64>()?;
    Ok((s, seed))
}

fn active_dict<'py>(py: Python<'py>, a: ActiveWeights) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let idx: Vec<i64> = a.indices.iter().map(|&i| i as i64).collect();
    d.set_item("indices", PyArray1::from_vec(py, idx))?;
    d.set_item("values", f64_array(py, a.values))?;
    d.set_item("count", a.count)?;
    Ok(d)
}

impl PyCalibration {
    /// Refuses a matrix whose columns are not one per weight.
    fn check_columns(&self, m: &Matrix) -> PyResult<()> {
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
    fn params_with_seed(&self, seed: u64) -> CalibrationParams {
        CalibrationParams {
            seed: Some(seed),
            ..self.model.params().clone()
        }
    }

    /// Takes `state` and `seed` (a fresh model of the same options when the
    /// seed differs).
    fn take_state(&mut self, state: ParamState, seed: u64) -> PyResult<()> {
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
    fn predict_vec(&self, m: &Matrix) -> PyResult<Vec<f64>> {
        self.check_columns(m)?;
        self.model.predict(&m.m).or_py()
    }
}

/// The engine's calibration model ([`Calibration`]); `l0_rs.calibration.
/// SparseCalibrationWeights` wraps it.
#[pyclass(module = "l0_rs._native", name = "Calibration")]
pub struct PyCalibration {
    model: Calibration,
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
    /// `opts` holds [`FitParams`]' fields ([`fit_params`]); returns the fit
    /// report as a dict.
    #[pyo3(signature = (m, y, opts, printer))]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        m: &Matrix,
        y: PyReadonlyArray1<'py, f64>,
        opts: &Bound<'py, PyDict>,
        printer: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let y = slice("y", &y)?;
            let opts = fit_params(opts)?;
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
        opts: &Bound<'py, PyDict>,
        printer: Option<Py<PyAny>>,
    ) -> PyResult<(PyCalibration, Bound<'py, PyArray1<i64>>, Bound<'py, PyDict>)> {
        guard(|| {
            let y = slice("y", &y)?;
            let opts = fit_params(opts)?;
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

    fn active_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| active_dict(py, self.model.active_weights()))
    }

    fn predict<'py>(&self, py: Python<'py>, m: &Matrix) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guard(|| Ok(f64_array(py, self.predict_vec(m)?)))
    }

    /// Per-target estimates and accuracy with deterministic weights, as
    /// `l0 calibrate` reports them; `csv_path` also writes its targets.csv.
    #[pyo3(signature = (m, y, target_names, excluded_targets, holdout_targets, csv_path))]
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
            let rows = l0::report::target_rows(&names, y, &yhat, &roles);
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
        guard(|| state_dict(py, self.model.state(), "log_weight", self.model.seed()))
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
            self.take_state(state, seed)
        })
    }
}

fn regression_progress_dict<'py>(
    py: Python<'py>,
    p: &RegressionProgress,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", p.epoch)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("total_loss", p.total_loss)?;
    d.set_item("mse", p.mse)?;
    d.set_item("l0_penalty", p.l0_penalty)?;
    d.set_item("deterministic_mse", p.deterministic_mse)?;
    d.set_item("active", p.active)?;
    d.set_item("line", p.to_string())?;
    Ok(d)
}

/// The engine's regression model ([`Regression`]); `l0_rs.sparse.
/// SparseL0Linear` wraps it.
#[pyclass(module = "l0_rs._native", name = "Regression")]
pub struct PyRegression {
    model: Regression,
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

/// Checks a device name ("auto", "cpu", "cuda", "cuda:N"); returns it.
#[pyfunction]
fn check_device(text: &str) -> PyResult<String> {
    device(text).map(|_| text.to_string())
}

/// The sorted target indices a holdout leaves out of `q` targets
/// ([`l0::holdout::holdout_targets`]): every target of the group ids
/// `groups`, or a share `fraction` drawn within each group by `seed`.
#[pyfunction]
#[pyo3(signature = (q, target_groups, groups, fraction, seed))]
fn holdout_targets<'py>(
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
fn lambda_grid(lo: f64, hi: f64, n: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    guard(|| l0::sweep::lambda_grid(lo, hi, arg("n", n)?).or_py())
}

/// `M w` as the engine computes it.
#[pyfunction]
fn mul_vec<'py>(
    py: Python<'py>,
    m: &Matrix,
    w: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    guard(|| Ok(f64_array(py, m.m.mul_vec(slice("w", &w)?).or_py()?)))
}

/// A λ sweep ([`l0::sweep::sweep`]): one model per `lambdas[k]`, each
/// from `template`'s options and seed (its state is not used) and fitted
/// under `opts` with `lambda_l0 = lambdas[k]`, with the GIL released.
/// Returns one `(lambda_l0, model, report)` per λ.
#[pyfunction]
#[pyo3(signature = (template, m, y, opts, lambdas, printer))]
fn sweep<'py>(
    py: Python<'py>,
    template: &PyCalibration,
    m: &Matrix,
    y: PyReadonlyArray1<'py, f64>,
    opts: &Bound<'py, PyDict>,
    lambdas: Vec<f64>,
    printer: Option<Py<PyAny>>,
) -> PyResult<Vec<(f64, PyCalibration, Bound<'py, PyDict>)>> {
    guard(|| {
        let y = slice("y", &y)?;
        let opts = fit_params(opts)?;
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
fn fit_to_budget<'py>(
    py: Python<'py>,
    template: &PyCalibration,
    m: &Matrix,
    y: PyReadonlyArray1<'py, f64>,
    opts: &Bound<'py, PyDict>,
    target_records: usize,
    records_tolerance: f64,
    lambda_range: (f64, f64),
    printer: Option<Py<PyAny>>,
) -> PyResult<(PyCalibration, Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    guard(|| {
        use l0::budget::Budget;
        let y = slice("y", &y)?;
        let opts = fit_params(opts)?;
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

/// Panics with `message` inside [`guard`]: lets the tests check that a
/// panic reaches Python as a `RuntimeError` (no other use).
#[pyfunction]
fn _panic_for_tests(message: &str) -> PyResult<()> {
    guard(|| panic!("{message}"))
}

/// The extension module `l0_rs._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_device, m)?)?;
    m.add_function(wrap_pyfunction!(fit_to_budget, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::compile_kernels, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_libraries, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_unavailable, m)?)?;
    m.add_function(wrap_pyfunction!(holdout_targets, m)?)?;
    m.add_function(wrap_pyfunction!(lambda_grid, m)?)?;
    m.add_function(wrap_pyfunction!(mul_vec, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_class::<Matrix>()?;
    m.add_class::<PyCalibration>()?;
    m.add_class::<PyRegression>()?;
    Ok(())
}
