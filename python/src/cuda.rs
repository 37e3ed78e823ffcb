//! What the package reports about CUDA on this machine: which of the
//! driver and NVRTC load, NVRTC's version, and a kernel compilation that
//! checks NVRTC works without a GPU. `l0_rs/_cuda.py` builds the public
//! `cuda_available` and `cuda_status` on these.

use super::{guard, OrPy};
use l0::backend::cuda::{self, CudaBackend};
use pyo3::prelude::*;

/// The CUDA libraries as this process loads them: whether the driver
/// (libcuda) loads, NVRTC's version ("major.minor", None when NVRTC does
/// not load) and the architectures it compiles for (as `10 major + minor`).
/// Loads nothing else and never fails.
#[pyfunction]
pub fn cuda_libraries() -> (bool, Option<String>, Vec<i32>) {
    let nvrtc = cuda::nvrtc_present().then(cuda::nvrtc_version);
    (cuda::driver_present(), nvrtc, cuda::nvrtc_supported_archs())
}

/// Why CUDA device `ordinal` cannot be used (no driver, no NVRTC, no
/// device), or None when it can.
#[pyfunction]
pub fn cuda_unavailable(ordinal: usize) -> PyResult<Option<String>> {
    guard(|| Ok(CudaBackend::available(ordinal).err().map(|e| e.to_string())))
}

/// Compiles every kernel for `arch` with NVRTC (`sm_XY`: cubins,
/// `compute_XY`: PTX), which needs NVRTC but no GPU, with the GIL
/// released. Returns `(file, "cubin" or "PTX", bytes)` per kernel file;
/// a missing NVRTC or a compiler error is a `RuntimeError`.
#[pyfunction]
pub fn compile_kernels(py: Python<'_>, arch: &str) -> PyResult<Vec<(String, String, usize)>> {
    guard(|| {
        let compiled = py.detach(|| cuda::compile_kernels(arch)).or_py()?;
        Ok(compiled
            .into_iter()
            .map(|(name, c)| (name.to_string(), c.kind.to_string(), c.image.len()))
            .collect())
    })
}
