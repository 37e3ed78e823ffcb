//! CUDA backend (placeholder until the kernels land).

use super::{Backend, Problem};
use crate::error::{L0Error, Result};

/// The CUDA implementation of [`Backend`].
pub struct CudaBackend;

impl CudaBackend {
    /// Whether device `ordinal` can be used.
    pub fn available(_ordinal: usize) -> Result<()> {
        Err(L0Error::Cuda("the CUDA backend is not built yet".into()))
    }

    /// Opens device `ordinal` and uploads the problem.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(_problem: Problem<'_>, _ordinal: usize) -> Result<Box<dyn Backend>> {
        Err(L0Error::Cuda("the CUDA backend is not built yet".into()))
    }
}
