//! Errors at the border: the crate's errors as Python exceptions (one
//! mapping, [`to_py`]), panics as `RuntimeError` ([`guard`]), argument
//! conversions that name the argument ([`arg`]).

use super::*;

/// The one mapping from the crate's errors to Python exceptions: files to
/// `OSError`, sizes beyond memory to `MemoryError`, CUDA failures and divergence to `RuntimeError`, everything a
/// caller's input or options can cause to `ValueError`; the message is the
/// engine's.
pub(crate) fn to_py(e: L0Error) -> PyErr {
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
pub(crate) fn guard<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
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
pub(crate) fn named(what: &str, value: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
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
pub(crate) fn arg<'a, 'py, T: FromPyObject<'a, 'py>>(
    what: &str,
    value: &'a Bound<'py, PyAny>,
) -> PyResult<T> {
    value
        .extract::<T>()
        .map_err(|e: T::Error| named(what, value, e.into()))
}

pub(crate) trait OrPy<T> {
    fn or_py(self) -> PyResult<T>;
}

impl<T> OrPy<T> for l0::Result<T> {
    fn or_py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// Panics with `message` inside [`guard`]: lets the tests check that a
/// panic reaches Python as a `RuntimeError` (no other use).
#[pyfunction]
pub(crate) fn _panic_for_tests(message: &str) -> PyResult<()> {
    guard(|| panic!("{message}"))
}
