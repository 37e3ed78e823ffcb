//! `l0`: L0-regularized sparse calibration and sparse regression.
//!
//! Survey calibration: find non-negative weights `w`, mostly exactly zero,
//! with `M w ≈ y` ([`calibration::Calibration`]). Sparse regression: signed
//! coefficients with L0 selection. Both train Hard Concrete gates
//! ([`hard_concrete`]) with Adam, on the CPU ([`backend::cpu`]) or a CUDA
//! GPU, through one fit loop ([`engine`]). See README.md for the math, the
//! options and the command line.

#![warn(missing_docs)]

pub mod advice;
pub mod backend;
mod batch;
pub mod budget;
pub mod calibration;
pub mod checkpoint;
pub mod constraints;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod hard_concrete;
pub mod hash;
pub mod holdout;
pub mod io;
pub mod limits;
pub mod matrix;
pub mod model;
pub mod naming;
pub mod objective;
pub mod par;
pub mod philox;
pub mod plot;
pub mod regression;
pub mod report;
pub mod selection;
pub mod sweep;
pub mod synth;

pub use backend::Device;
pub use calibration::{Calibration, CalibrationParams, FitParams, Loss};
pub use error::{L0Error, Result};
pub use hard_concrete::{GateParams, TestGate};
pub use matrix::{SparseIndex, SparseMatrix};
pub use model::Init;
pub use regression::{
    Regression, RegressionFitParams, RegressionParams, RegressionProgress, RegressionReport,
};
pub use selection::{
    fit_path, fit_path_all_rows, refit_least_squares, EarlyStop, LeastSquares, PathFit, PathParams,
    PathPoint, Selection,
};
