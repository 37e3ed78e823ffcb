//! Loading the CUDA libraries at run time without a panic: whether the
//! driver and NVRTC can be loaded at all, checked before cudarc touches
//! them, and every call into cudarc run under [`catch_unwind`] ([`guard`]).

use crate::error::{L0Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Whether the CUDA driver library (libcuda) can be loaded. Loads nothing
/// else and never panics.
pub fn driver_present() -> bool {
    catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// Whether NVRTC (libnvrtc.so, .so.13 or .so.12) can be loaded. Needs no
/// GPU and never panics.
pub fn nvrtc_present() -> bool {
    catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// The text of a caught panic.
pub(super) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs `f`, turning a panic inside cudarc into an [`L0Error::Cuda`].
pub(super) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(L0Error::Cuda(format!(
            "{what}: the CUDA library failed: {}",
            panic_text(p)
        )))
    })
}

/// Wraps a driver error with what was being done.
pub(super) fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> L0Error + '_ {
    move |e| L0Error::Cuda(format!("{what}: {e}"))
}
