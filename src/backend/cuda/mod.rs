//! The CUDA backend: hand-written kernels (`kernels/*.cu`) computing exactly
//! what [`super::cpu::CpuBackend`] computes, on one stream of one device.
//!
//! The CUDA driver and NVRTC are loaded at run time (cudarc's dynamic
//! loading), so the crate builds and runs on machines without either:
//! [`CudaBackend::available`] checks that both libraries can be loaded
//! *before* calling anything else in cudarc (whose loader panics when a
//! library is missing), and every call into cudarc is additionally run under
//! [`std::panic::catch_unwind`] so that no panic reaches a user.
//!
//! The kernel sources are embedded in the binary and compiled once per
//! device and process with NVRTC into a cubin for the device's own
//! architecture (`--gpu-architecture=sm_XY`; PTX only for a device NVRTC does
//! not know, see [`target_arch`]), with `--fmad=false` so no multiply-add is
//! contracted where the CPU rounds twice. Every buffer is allocated by
//! [`CudaBackend::new`]; the epoch methods only launch kernels, and the only
//! host-device copies outside `new`, `load_state` and `store_state` are the
//! few scalars of [`Backend::losses`](crate::backend::Backend::losses), [`Backend::first_bad_step`](crate::backend::Backend::first_bad_step) and
//! [`Backend::weight_summary`](crate::backend::Backend::weight_summary) and the vectors the caller asks for
//! ([`Backend::read_yhat`](crate::backend::Backend::read_yhat), [`Backend::read_weights`](crate::backend::Backend::read_weights), [`Backend::gradients`](crate::backend::Backend::gradients)).
//!
//! Sums are deterministic for a given problem: no floating-point atomics;
//! every reduction is a fixed tree inside a block or warp followed by a
//! single-thread pass over the block partials in order. The summation order
//! differs from the CPU's, so sums agree with it to rounding (about 1e-15
//! relative), and the f32 transcendental functions (`expf`, `logf`) may
//! differ from Rust's by an ulp or two.
//!
//! The files: `driver.rs` (loading the libraries safely), `compile.rs` (NVRTC
//! and the kernel cache), `launch.rs` (launch geometry, buffers), `plan.rs`
//! (the device memory plan), `rule.rs` (each model's constants as the
//! kernels take them) and `backend.rs` (the backend).

mod backend;
mod compile;
mod driver;
mod launch;
mod plan;
mod rule;

pub use backend::{peak_bandwidth, CudaBackend};
pub use compile::{
    compile_kernels, compile_source, kernel_source, nvrtc_supported_archs, nvrtc_version,
    target_arch, CodeKind, Compiled, COMMON_SOURCE, KERNEL_SOURCES, LANES, MAX_MODELS,
};
pub use driver::{driver_present, nvrtc_present};
pub use plan::{device_bytes, SegmentPlan, LONG_COLUMN_NNZ};
