//! Small conversions between Python values and the crate's: contiguous
//! array views, per-column initial values, test gates, devices, seeds,
//! numpy results.

use super::*;

/// A contiguous 1-D view of a numpy array, or a `TypeError` naming `what`.
pub(crate) fn slice<'a, T: numpy::Element>(
    what: &str,
    a: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{what}: the array must be contiguous")))
}

/// The dtype of a numpy array, in words, for messages.
pub(crate) fn dtype_of(a: &Bound<'_, PyAny>) -> String {
    a.getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| a.get_type().to_string())
}

/// A per-column option from Python: a number or a float64 array.
#[derive(FromPyObject)]
pub(crate) enum InitArg<'py> {
    Scalar(f64),
    Array(PyReadonlyArray1<'py, f64>),
}

impl InitArg<'_> {
    pub(crate) fn to_init(&self, what: &str) -> PyResult<Init> {
        Ok(match self {
            InitArg::Scalar(v) => Init::Scalar(*v),
            InitArg::Array(a) => Init::PerColumn(slice(what, a)?.to_vec()),
        })
    }
}

pub(crate) fn test_gate(text: &str) -> PyResult<TestGate> {
    match text {
        "temperature" => Ok(TestGate::Temperature),
        "paper" => Ok(TestGate::Paper),
        _ => Err(to_py(L0Error::config(format!(
            "unknown test gate '{text}': expected 'temperature' or 'paper'"
        )))),
    }
}

pub(crate) fn test_gate_name(t: TestGate) -> &'static str {
    match t {
        TestGate::Temperature => "temperature",
        TestGate::Paper => "paper",
    }
}

pub(crate) fn device(text: &str) -> PyResult<Device> {
    text.parse::<Device>().or_py()
}

pub(crate) fn seed(s: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
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

pub(crate) fn f64_array<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v)
}

pub(crate) fn f32_array<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyArray1<f32>> {
    PyArray1::from_slice(py, v)
}

/// Checks a device name ("auto", "cpu", "cuda", "cuda:N"); returns it.
#[pyfunction]
pub(crate) fn check_device(text: &str) -> PyResult<String> {
    device(text).map(|_| text.to_string())
}
