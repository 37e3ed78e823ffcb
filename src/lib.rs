//! `l0`: L0-regularized sparse calibration and sparse regression.
//!
//! See README.md for the math, the options and the command line.

#![warn(missing_docs)]

pub mod error;
pub mod hard_concrete;
pub mod io;
pub mod philox;

pub use error::{L0Error, Result};
