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

mod batch;
mod calibration;
mod convert;
mod cuda;
mod dicts;
mod errors;
mod link;
mod matrix;
mod options;
mod regression;
mod sweep_batch;

use batch::*;
use calibration::*;
use convert::*;
use dicts::*;
use errors::*;
use link::*;
use matrix::*;
use options::*;
use regression::*;

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
    m.add_function(wrap_pyfunction!(sweep_batch::sweep_batch, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_class::<Matrix>()?;
    m.add_class::<PyCalibration>()?;
    m.add_class::<PyRegression>()?;
    Ok(())
}
