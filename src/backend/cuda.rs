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
//! few scalars of [`Backend::losses`], [`Backend::first_bad_step`] and
//! [`Backend::weight_summary`] and the vectors the caller asks for
//! ([`Backend::read_yhat`], [`Backend::read_weights`], [`Backend::gradients`]).
//!
//! Sums are deterministic for a given problem: no floating-point atomics;
//! every reduction is a fixed tree inside a block or warp followed by a
//! single-thread pass over the block partials in order. The summation order
//! differs from the CPU's, so sums agree with it to rounding (about 1e-15
//! relative), and the f32 transcendental functions (`expf`, `logf`) may
//! differ from Rust's by an ulp or two.

use super::{Backend, Losses, Noise, ParamState, Problem, ScalarState, WeightSummary};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{AdamStep, Magnitude, TestGate};
use crate::matrix::{LongColumns, RowSegments, SparseMatrix, SEGMENT_NNZ};
use crate::objective::Shape;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads per block of every kernel (`L0_BLOCK` in `kernels/common.cuh`).
const BLOCK: u32 = 256;
/// Most blocks a grid-stride reduction uses (sizes its partials buffer).
const MAX_REDUCE_BLOCKS: usize = 1024;

/// The shared device code, pasted into each kernel source in place of its
/// `#include "common.cuh"` line.
pub const COMMON_SOURCE: &str = include_str!("../../kernels/common.cuh");

/// The kernel sources by file name, as embedded in the binary (each still
/// carries its `#include "common.cuh"`; see [`kernel_source`]).
pub const KERNEL_SOURCES: [(&str, &str); 3] = [
    ("gates.cu", include_str!("../../kernels/gates.cu")),
    ("spmv.cu", include_str!("../../kernels/spmv.cu")),
    ("step.cu", include_str!("../../kernels/step.cu")),
];

/// The complete translation unit NVRTC compiles for a kernel file: its
/// source with `#include "common.cuh"` replaced by the shared code.
pub fn kernel_source(source: &str) -> String {
    source.replace("#include \"common.cuh\"", COMMON_SOURCE)
}

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
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs `f`, turning a panic inside cudarc into an [`L0Error::Cuda`].
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(L0Error::Cuda(format!(
            "{what}: the CUDA library failed: {}",
            panic_text(p)
        )))
    })
}

/// Wraps a driver error with what was being done.
fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> L0Error + '_ {
    move |e| L0Error::Cuda(format!("{what}: {e}"))
}

/// The compute architectures the loaded NVRTC can target, as
/// `10 major + minor` (e.g. 90); empty when NVRTC is missing or cannot say.
pub fn nvrtc_supported_archs() -> Vec<i32> {
    if !nvrtc_present() {
        return Vec::new();
    }
    catch_unwind(nvrtc_archs).unwrap_or_default()
}

fn nvrtc_archs() -> Vec<i32> {
    use cudarc::nvrtc::sys;
    let mut n: std::ffi::c_int = 0;
    unsafe {
        if sys::nvrtcGetNumSupportedArchs(&mut n) != sys::nvrtcResult::NVRTC_SUCCESS || n <= 0 {
            return Vec::new();
        }
        let mut v = vec![0 as std::ffi::c_int; n as usize];
        if sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) != sys::nvrtcResult::NVRTC_SUCCESS {
            return Vec::new();
        }
        v
    }
}

/// The loaded NVRTC's version as "major.minor" ("unknown" if it cannot say).
pub fn nvrtc_version() -> String {
    use cudarc::nvrtc::sys;
    if !nvrtc_present() {
        return "unknown".into();
    }
    catch_unwind(|| {
        let (mut major, mut minor): (std::ffi::c_int, std::ffi::c_int) = (0, 0);
        match unsafe { sys::nvrtcVersion(&mut major, &mut minor) } {
            sys::nvrtcResult::NVRTC_SUCCESS => format!("{major}.{minor}"),
            _ => "unknown".into(),
        }
    })
    .unwrap_or_else(|_| "unknown".into())
}

/// What NVRTC produced for a device: machine code for its exact
/// architecture, or PTX that the driver compiles when it loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// A cubin for `sm_XY`: loads on any driver that supports the device,
    /// whatever NVRTC's version.
    Cubin,
    /// PTX for `compute_XY`: only for a device NVRTC does not know; the
    /// driver must be at least as new as NVRTC (CUDA's minor-version
    /// compatibility does not cover PTX).
    Ptx,
}

impl std::fmt::Display for CodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CodeKind::Cubin => "cubin",
            CodeKind::Ptx => "PTX",
        })
    }
}

/// One compiled kernel file: a cubin or PTX image, ready for the driver.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Which kind of image [`Compiled::image`] holds.
    pub kind: CodeKind,
    /// The image: a cubin (an ELF file) or PTX text.
    pub image: Vec<u8>,
}

impl Compiled {
    /// The image as cudarc loads it.
    fn module_image(&self) -> Ptx {
        match self.kind {
            CodeKind::Cubin => Ptx::from_binary(self.image.clone()),
            CodeKind::Ptx => Ptx::from_src(String::from_utf8_lossy(self.image.trim_ascii_end())),
        }
    }
}

/// NVRTC's options of the backend for `arch`: `sm_XY` asks for a cubin,
/// `compute_XY` for PTX; no multiply-add contraction, IEEE division and
/// square root, no flush to zero (the CPU's f32 rounding).
fn nvrtc_options(arch: &str) -> Vec<String> {
    [
        "--fmad=false",
        "--prec-div=true",
        "--prec-sqrt=true",
        "--ftz=false",
        "--std=c++17",
    ]
    .iter()
    .map(|o| o.to_string())
    .chain([format!("--gpu-architecture={arch}")])
    .collect()
}

/// Compiles one CUDA source (a complete translation unit) for `arch`: a
/// cubin for `"sm_90"`, PTX for `"compute_90"`. Needs NVRTC but no GPU. A
/// compiler error comes back as [`L0Error::Cuda`] with NVRTC's full log.
pub fn compile_source(name: &str, source: &str, arch: &str) -> Result<Compiled> {
    if !nvrtc_present() {
        return Err(L0Error::Cuda(
            "NVRTC (libnvrtc.so.13 or libnvrtc.so.12) cannot be loaded; install the CUDA \
             toolkit's NVRTC or the nvidia-cuda-nvrtc-cu12 wheel (scripts/install-nvrtc.sh) \
             and put its lib folder on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let kind = if arch.starts_with("sm_") {
        CodeKind::Cubin
    } else {
        CodeKind::Ptx
    };
    let (c_src, c_name) = match (CString::new(source), CString::new(name)) {
        (Ok(s), Ok(n)) => (s, n),
        _ => {
            return Err(L0Error::Cuda(format!(
                "{name}: the source holds a NUL byte"
            )))
        }
    };
    let options = nvrtc_options(arch);
    guard("compiling the kernels with NVRTC", || {
        use cudarc::nvrtc::result;
        let fail = |e: result::NvrtcError| L0Error::Cuda(format!("NVRTC failed on {name}: {e}"));
        let prog = result::create_program(&c_src, Some(&c_name)).map_err(fail)?;
        // SAFETY: `prog` was just created and is destroyed once, below.
        let out = unsafe {
            match result::compile_program(prog, &options) {
                Ok(()) => program_image(prog, kind).map_err(fail),
                Err(e) => Err(L0Error::Cuda(format!(
                    "NVRTC failed to compile {name} ({}): {e}\n{}",
                    options.join(" "),
                    program_log(prog)
                ))),
            }
        };
        // SAFETY: as above; a failure to free is not worth an error.
        let _ = unsafe { result::destroy_program(prog) };
        out.map(|image| Compiled { kind, image })
    })
}

/// NVRTC's log of a compiled program, as text.
///
/// # Safety
/// `prog` must be a live NVRTC program.
unsafe fn program_log(prog: cudarc::nvrtc::sys::nvrtcProgram) -> String {
    match cudarc::nvrtc::result::get_program_log(prog) {
        Ok(log) => {
            let bytes: Vec<u8> = log
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// The cubin or PTX of a compiled program.
///
/// # Safety
/// `prog` must be a live, successfully compiled NVRTC program.
unsafe fn program_image(
    prog: cudarc::nvrtc::sys::nvrtcProgram,
    kind: CodeKind,
) -> std::result::Result<Vec<u8>, cudarc::nvrtc::result::NvrtcError> {
    use cudarc::nvrtc::sys;
    match kind {
        CodeKind::Ptx => Ok(cudarc::nvrtc::result::get_ptx(prog)?
            .into_iter()
            .map(|c| c as u8)
            .collect()),
        CodeKind::Cubin => {
            let mut size = 0usize;
            sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
            let mut image = vec![0u8; size];
            sys::nvrtcGetCUBIN(prog, image.as_mut_ptr().cast()).result()?;
            Ok(image)
        }
    }
}

/// Compiles every kernel source ([`KERNEL_SOURCES`]) for `arch` (`sm_XY`:
/// cubins, `compute_XY`: PTX).
pub fn compile_kernels(arch: &str) -> Result<Vec<(&'static str, Compiled)>> {
    KERNEL_SOURCES
        .iter()
        .map(|&(name, src)| {
            compile_source(&format!("kernels/{name}"), &kernel_source(src), arch).map(|c| (name, c))
        })
        .collect()
}

/// The loaded kernels of one device.
struct Kernels {
    /// What was loaded, e.g. "sm_90 cubin from NVRTC 13.0".
    code: String,
    sample_weights: CudaFunction,
    deterministic_weights: CudaFunction,
    penalties_partial: CudaFunction,
    penalties_finalize: CudaFunction,
    weight_summary: CudaFunction,
    take_lane: CudaFunction,
    residual: CudaFunction,
    residual_finalize: CudaFunction,
    intercept_adam: CudaFunction,
    step_columns: CudaFunction,
    gradient_columns: CudaFunction,
    /// The kernels compiled for each batch width, in the order of [`LANES`].
    dots: Vec<DotKernels>,
}

/// The kernels `spmv.cu` and `step.cu` compile for one batch width `L`
/// (their names end in `_lL`).
struct DotKernels {
    spmv_segments: CudaFunction,
    spmtv_segments: CudaFunction,
    combine_segments: CudaFunction,
    column_dots: CudaFunction,
}

/// The batch widths the dot-product kernels are compiled for
/// (`L0_FOR_LANES` in `kernels/common.cuh`): a batch of K models runs at the
/// least of them that is at least K, its extra lanes idle.
pub const LANES: [usize; 4] = [1, 2, 4, 8];

/// Most models one CUDA backend trains together (the widest of [`LANES`]).
pub const MAX_MODELS: usize = LANES[LANES.len() - 1];

// A batch of `model::MAX_BATCH` models must fit one CUDA backend, or every
// GPU batch would train one model after another.
const _: () = assert!(MAX_MODELS >= crate::model::MAX_BATCH);

/// Kernels compiled so far, by device ordinal: NVRTC runs once per device
/// (primary context) and process.
fn kernel_cache() -> &'static Mutex<HashMap<usize, Arc<Kernels>>> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<Kernels>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What to compile for a device of compute capability `cc`, given the
/// architectures NVRTC supports (`archs`, e.g. `[75, 80, 90]`; empty when
/// NVRTC cannot say): a cubin for the device's own `sm_XY` when NVRTC knows
/// it (or cannot say), else PTX for the newest `compute_XY` below it, which
/// the driver compiles for the newer device.
pub fn target_arch(cc: (i32, i32), archs: &[i32]) -> String {
    let want = cc.0 * 10 + cc.1;
    if archs.is_empty() || archs.contains(&want) {
        return format!("sm_{want}");
    }
    let below = archs.iter().copied().filter(|&a| a <= want).max();
    format!("compute_{}", below.unwrap_or(want))
}

fn load_kernels(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<Arc<Kernels>> {
    let ordinal = ctx.ordinal();
    // A panic elsewhere while the lock was held leaves the map intact.
    let mut cache = kernel_cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cache.get(&ordinal) {
        return Ok(k.clone());
    }
    let arch = target_arch(cc, &nvrtc_supported_archs());
    let mut modules = HashMap::new();
    let mut kind = CodeKind::Cubin;
    for (name, code) in compile_kernels(&arch)? {
        kind = code.kind;
        let m = ctx.load_module(code.module_image()).map_err(|e| {
            L0Error::Cuda(match code.kind {
                CodeKind::Ptx => format!(
                    "loading the PTX ({arch}) of kernels/{name} from NVRTC {}: {e}; a driver \
                     older than NVRTC cannot load its PTX, so put an NVRTC no newer than the \
                     driver first on LD_LIBRARY_PATH",
                    nvrtc_version()
                ),
                CodeKind::Cubin => format!(
                    "loading the cubin ({arch}) of kernels/{name} from NVRTC {}: {e}",
                    nvrtc_version()
                ),
            })
        })?;
        modules.insert(name, m);
    }
    let f = |file: &str, name: &str| -> Result<CudaFunction> {
        modules[file]
            .load_function(name)
            .map_err(driver_err(&format!(
                "finding kernel {name} in kernels/{file}"
            )))
    };
    let k = Arc::new(Kernels {
        code: format!("{arch} {kind} from NVRTC {}", nvrtc_version()),
        sample_weights: f("gates.cu", "sample_weights")?,
        deterministic_weights: f("gates.cu", "deterministic_weights")?,
        penalties_partial: f("gates.cu", "penalties_partial")?,
        penalties_finalize: f("gates.cu", "penalties_finalize")?,
        weight_summary: f("gates.cu", "weight_summary")?,
        take_lane: f("gates.cu", "take_lane")?,
        residual: f("step.cu", "residual")?,
        residual_finalize: f("step.cu", "residual_finalize")?,
        intercept_adam: f("step.cu", "intercept_adam")?,
        step_columns: f("step.cu", "step_columns")?,
        gradient_columns: f("step.cu", "gradient_columns")?,
        dots: LANES
            .iter()
            .map(|l| {
                Ok(DotKernels {
                    spmv_segments: f("spmv.cu", &format!("spmv_segments_l{l}"))?,
                    spmtv_segments: f("spmv.cu", &format!("spmtv_segments_l{l}"))?,
                    combine_segments: f("spmv.cu", &format!("combine_segments_l{l}"))?,
                    column_dots: f("step.cu", &format!("column_dots_l{l}"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    });
    cache.insert(ordinal, k.clone());
    Ok(k)
}

/// The per-column rule as the kernels take it (`struct Rule` in
/// `kernels/common.cuh`): the f32 constants of
/// [`crate::hard_concrete::ColumnRule<f32>`], formed on the host exactly as
/// the CPU backend forms them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GpuRule {
    beta: f32,
    gamma: f32,
    zeta: f32,
    width: f32,
    l0_shift: f32,
    lambda_l0: f32,
    lambda_l2: f32,
    magnitude: i32,
    use_gates: i32,
}

// SAFETY: plain old data with the C layout of `struct Rule`; all-zero bits
// are a valid value.
unsafe impl DeviceRepr for GpuRule {}
unsafe impl ValidAsZeroBits for GpuRule {}

impl GpuRule {
    /// The rule of `hyper`, formed as [`crate::backend::Hyper::rule`] forms
    /// the CPU's.
    fn of(hyper: &super::Hyper) -> Self {
        let rule = hyper.rule::<f32>();
        GpuRule {
            beta: rule.gate.beta,
            gamma: rule.gate.gamma,
            zeta: rule.gate.zeta,
            width: rule.gate.width,
            l0_shift: rule.gate.l0_shift,
            lambda_l0: rule.lambda_l0,
            lambda_l2: rule.lambda_l2,
            magnitude: match rule.magnitude {
                Magnitude::Exp => 0,
                Magnitude::Linear => 1,
            },
            use_gates: rule.use_gates as i32,
        }
    }
}

/// Columns with more nonzeros than this are summed over fixed segments
/// before the fused step (the matrix's [`LongColumns`], as on the CPU), so
/// that one long column does not hold a warp for its whole length.
pub const LONG_COLUMN_NNZ: usize = SEGMENT_NNZ;
const LONG_COLUMN_NNZ_U64: u64 = LONG_COLUMN_NNZ as u64;

/// A plan of segmented sums as the kernels `spmv_segments`/`spmtv_segments`
/// and `combine_segments` take it: segment `s` covers the nonzeros
/// `bounds[2 s] .. bounds[2 s + 1]`, output `k` sums segments
/// `ptr[k] .. ptr[k + 1]`. Rows of the forward product, and the long columns
/// of the backward product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentPlan {
    /// Two entries per segment: its first nonzero and one past its last.
    pub bounds: Vec<u64>,
    /// The order in which the kernel's groups take the segments (group `g`
    /// sums segment `order[g]`; the sums do not depend on it, only which
    /// segments run at the same time do).
    pub order: Vec<u64>,
    /// First segment of each output, plus a final entry (the segment count).
    pub ptr: Vec<u64>,
    /// Which column each output is (long-column plans only; sorted).
    pub cols: Vec<u32>,
}

impl SegmentPlan {
    /// The forward product's plan: the matrix's CSR row segments (`seg`,
    /// over the CSR column indices `cols`), taken in the order of their
    /// first column, so that the segments of different rows over the same
    /// columns (a national target's and an area's, say) run together and
    /// share the gathered weights in cache (the weights of a batch of 8
    /// models do not fit in the L2 cache of a GPU, so each row's sweep over
    /// them would otherwise read them from memory again).
    pub fn rows(seg: &RowSegments, cols: &[u32]) -> Self {
        let segments = seg.start.len().saturating_sub(1);
        let mut order: Vec<u64> = (0..segments as u64).collect();
        order.sort_by_key(|&s| cols.get(seg.start[s as usize]).copied());
        SegmentPlan {
            bounds: seg
                .start
                .windows(2)
                .flat_map(|w| [w[0] as u64, w[1] as u64])
                .collect(),
            order,
            ptr: seg.row_ptr.iter().map(|&x| x as u64).collect(),
            cols: Vec::new(),
        }
    }

    /// The backward product's plan for the long columns: the matrix's
    /// [`LongColumns`] (the CPU backend's split, columns of more than
    /// [`LONG_COLUMN_NNZ`] nonzeros cut into pieces of at most that many).
    pub fn long_columns(long: &LongColumns) -> Self {
        SegmentPlan {
            bounds: long
                .ranges
                .iter()
                .flat_map(|r| [r.start as u64, r.end as u64])
                .collect(),
            order: (0..long.ranges.len() as u64).collect(),
            ptr: long.seg_ptr.iter().map(|&x| x as u64).collect(),
            cols: long.cols.clone(),
        }
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.bounds.len() / 2
    }

    /// Number of outputs (rows or long columns).
    pub fn outputs(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Device bytes of the plan, its partial sums and (for long columns) the
    /// column list and sums, at `lanes` models side by side.
    fn device_bytes(&self, lanes: usize) -> usize {
        let segs = self.segments();
        segs * 24 + self.ptr.len() * 8 + segs * 8 * lanes + self.cols.len() * (4 + 8 * lanes)
    }
}

/// Device memory in bytes the backend allocates for `m` with the row and
/// long-column plans `plans`, training `models` models at `lanes` lanes
/// (1 and 1 for one model): both layouts (values, indices, CSC column
/// pointers), the two segment plans and their partial sums, per-column state
/// (per model six f32 parameters and moments, the gate's pre-stretch value
/// and M^T r; per lane the weight; two gradient outputs, the caps' bound and,
/// for a batch, one model's weights) and the per-row f64 vectors (targets,
/// weights, scales; per lane predictions and residuals).
pub fn device_bytes(
    m: &SparseMatrix,
    plans: [&SegmentPlan; 2],
    models: usize,
    lanes: usize,
) -> usize {
    let (nnz, rows, cols) = (m.nnz(), m.rows(), m.cols());
    let layouts = 2 * nnz * (4 + 4) + (cols + 1) * 8;
    let plans: usize = plans.iter().map(|p| p.device_bytes(lanes)).sum();
    let columns = cols * 4 * (8 * models + lanes + 3 + usize::from(lanes > 1));
    let row_vectors = rows * 8 * (3 + 2 * lanes);
    let scalars = (2 * MAX_REDUCE_BLOCKS + 4 + 1 + 3) * 8 * models + 2 * 8 + 7 * 8;
    layouts + plans + columns + row_vectors + scalars
}

/// Free and total memory of the device, read after the stream-ordered pool
/// has handed back what earlier fits in this process freed (a
/// synchronisation, then a trim of the device's default pool), so that a
/// second fit sees the memory the first one released.
fn free_memory(ctx: &Arc<CudaContext>) -> Result<(usize, usize)> {
    use cudarc::driver::sys;
    ctx.synchronize()
        .map_err(driver_err("waiting for the device"))?;
    // SAFETY: plain driver calls on the current context's device; a
    // failure (no pool support) leaves nothing to trim.
    unsafe {
        let mut pool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let _ = sys::cuMemPoolTrimTo(pool, 0);
        }
    }
    ctx.mem_get_info()
        .map_err(driver_err("reading free device memory"))
}

/// Device memory kept free beyond what the problem needs: allocations are
/// rounded up to the allocator's granularity (2 MiB pages, some 30 buffers)
/// and the context and kernels take their share; 256 MiB or 1% of the card.
fn memory_margin(total: usize) -> usize {
    (256usize << 20).max(total / 100)
}

/// The memory bandwidth device `ordinal` is rated for, in bytes per second:
/// twice (double data rate) its memory clock times its bus width, from the
/// device attributes; `None` when the driver does not report them.
pub fn peak_bandwidth(ordinal: usize) -> Result<Option<f64>> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    CudaBackend::available(ordinal)?;
    guard("reading the device attributes", || {
        let ctx = CudaContext::new(ordinal)
            .map_err(driver_err(&format!("cannot open device cuda:{ordinal}")))?;
        let clock_khz = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            .map_err(driver_err("reading the memory clock"))?;
        let bus_bits = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            .map_err(driver_err("reading the memory bus width"))?;
        Ok((clock_khz > 0 && bus_bits > 0)
            .then(|| 2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0))
    })
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Blocks for one thread per item (`items` threads, at least one block).
fn blocks_for(items: usize) -> Result<u32> {
    let b = items.div_ceil(BLOCK as usize).max(1);
    // gridDim.x is limited to 2^31 - 1 blocks.
    u32::try_from(b)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| L0Error::Cuda(format!("{items} threads exceed one grid")))
}

fn cfg(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Products per lane that `group_dot` keeps in flight for one model
/// (`L0_DOT_UNROLL` in `kernels/common.cuh`; half as many for a batch).
const DOT_UNROLL: usize = 8;

/// Lanes per item as a shift (2^shift lanes, shift 0 to 5): enough lanes
/// that each has about [`DOT_UNROLL`] of the mean item's `total / items`
/// entries (one unrolled pass of `group_dot`), a power of two from 1 to 32.
/// Short items share a warp; long ones get all of it.
fn shift_for(total: usize, items: usize) -> u32 {
    let mean = total.div_ceil(items.max(1));
    let lanes = mean.div_ceil(DOT_UNROLL).next_power_of_two().clamp(1, 32);
    lanes.trailing_zeros()
}

/// A zeroed device buffer of `len` elements (at least one, so that empty
/// inputs still get a valid pointer).
fn zeros<T: DeviceRepr + ValidAsZeroBits>(s: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>> {
    s.alloc_zeros(len.max(1))
        .map_err(driver_err("allocating device memory"))
}

/// A device copy of `data` (at least one element long).
fn upload<T: DeviceRepr + ValidAsZeroBits>(
    s: &Arc<CudaStream>,
    data: &[T],
) -> Result<CudaSlice<T>> {
    let mut d = zeros(s, data.len())?;
    if !data.is_empty() {
        s.memcpy_htod(data, &mut d)
            .map_err(driver_err("copying the problem to the device"))?;
    }
    Ok(d)
}

/// A [`SegmentPlan`] on the device, with its partial sums and the threads
/// per segment and per output (as shifts; not to be confused with `lanes`,
/// the models side by side).
struct DevicePlan {
    segments: u64,
    outputs: u64,
    seg_shift: u32,
    out_shift: u32,
    /// Models side by side in the gathered vector, the partials and the sums.
    lanes: usize,
    order: CudaSlice<u64>,
    bounds: CudaSlice<u64>,
    ptr: CudaSlice<u64>,
    partials: CudaSlice<f64>,
    /// The long columns, sorted (long-column plans only).
    cols: CudaSlice<u32>,
    /// Their sums (long-column plans only).
    sums: CudaSlice<f64>,
}

impl DevicePlan {
    /// Launches the segmented dot products (`kernel`: `spmv_segments` or
    /// `spmtv_segments`, for the gathered vector of `(idx, val, x)`) and then
    /// `combine` (`combine_segments` of the same width) into `out`, or into
    /// the plan's own sums when `None`; `icpt` = (the intercept states,
    /// whether to add them).
    fn run<T: DeviceRepr>(
        &mut self,
        stream: &Arc<CudaStream>,
        (kernel, combine): (&CudaFunction, &CudaFunction),
        (idx, val, x): (&CudaSlice<u32>, &CudaSlice<f32>, &CudaSlice<T>),
        (icpt, has_icpt): (&CudaSlice<f32>, i32),
        out: Option<&mut CudaSlice<f64>>,
    ) -> Result<()> {
        if self.segments > 0 {
            let threads = (self.segments as usize) << self.seg_shift;
            let mut b = stream.launch_builder(kernel);
            b.arg(&self.segments)
                .arg(&self.seg_shift)
                .arg(&self.order)
                .arg(&self.bounds)
                .arg(idx)
                .arg(val)
                .arg(x)
                .arg(&mut self.partials);
            // SAFETY: the arguments match spmv_segments/spmtv_segments in
            // kernels/spmv.cu; the plan's buffers are sized for its segments.
            unsafe { b.launch(cfg(blocks_for(threads)?)) }
                .map_err(driver_err("launching the segmented dot products"))?;
        }
        if self.outputs == 0 {
            return Ok(());
        }
        let threads = ((self.outputs as usize) << self.out_shift) * self.lanes;
        let out = match out {
            Some(o) => o,
            None => &mut self.sums,
        };
        let mut b = stream.launch_builder(combine);
        b.arg(&self.outputs)
            .arg(&self.out_shift)
            .arg(&self.ptr)
            .arg(&self.partials)
            .arg(icpt)
            .arg(&has_icpt)
            .arg(out);
        // SAFETY: the arguments match combine_segments in kernels/spmv.cu;
        // `out` holds `lanes` values per output.
        unsafe { b.launch(cfg(blocks_for(threads)?)) }
            .map(|_| ())
            .map_err(driver_err("launching combine_segments"))
    }

    /// The plan run for `lanes` models side by side (at most the lanes its
    /// buffers were sized for).
    fn at(mut self, lanes: usize) -> Self {
        self.lanes = lanes;
        self
    }

    /// The plan on the device, its sums sized for `lanes` models side by
    /// side.
    fn new(s: &Arc<CudaStream>, plan: &SegmentPlan, nnz: usize, lanes: usize) -> Result<Self> {
        let (segs, outs) = (plan.segments(), plan.outputs());
        Ok(DevicePlan {
            segments: segs as u64,
            outputs: outs as u64,
            seg_shift: shift_for(nnz, segs),
            out_shift: shift_for(segs, outs),
            lanes,
            order: upload(s, &plan.order)?,
            bounds: upload(s, &plan.bounds)?,
            ptr: upload(s, &plan.ptr)?,
            partials: zeros(s, segs * lanes)?,
            cols: upload(s, &plan.cols)?,
            sums: zeros(s, plan.cols.len() * lanes)?,
        })
    }
}

/// The CUDA implementation of [`Backend`]: the problem and all working
/// buffers live on one device from [`CudaBackend::new`] to drop.
///
/// One backend trains one model ([`CudaBackend::new`]) or a batch of up to
/// [`MAX_MODELS`] models that differ in λ alone
/// ([`CudaBackend::with_models`]): every pass over the matrix then serves
/// all of them (the forward product gathers the models' weights of a column
/// side by side, the backward product their residuals of a row), and each
/// model's sums are formed in the order of its single fit, so a model of a
/// batch is bit for bit the model trained alone on the same device. The
/// layouts are in `kernels/step.cu`.
pub struct CudaBackend {
    ordinal: usize,
    name: String,
    cc: (i32, i32),
    stream: Arc<CudaStream>,
    k: Arc<Kernels>,
    /// Each model's rule, on the host and on the device.
    rules: Vec<GpuRule>,
    rules_dev: CudaSlice<GpuRule>,
    /// The hyperparameters, `lambda_l0` aside (each model's is in `rules`).
    hyper: super::Hyper,
    /// Models trained together, the lanes they take (the least of [`LANES`]
    /// that holds them), its position in [`LANES`], and the model the
    /// per-model methods act on.
    models: usize,
    lanes: usize,
    width: usize,
    /// Models the buffers are sized for, at their lanes (a later batch of
    /// up to `room` models takes the backend over, [`Backend::rebatch`]).
    room: usize,
    selected: usize,
    lr: f64,
    seed: u64,
    /// Noise counter of the last sampling (what `gradients` differentiates).
    sampled_step: u64,
    n: usize,
    rows: usize,
    /// Lanes per short column in the backward pass, as a shift.
    col_shift: u32,
    reduce_cols: u32,
    reduce_rows: u32,
    /// Which models' states have been loaded with an intercept
    /// (`Some(true)`) or without one: all or none of a batch have one
    /// ([`CudaBackend::has_icpt`]).
    icpt_loaded: Vec<Option<bool>>,
    // The problem.
    rows_plan: DevicePlan,
    long_plan: DevicePlan,
    csr_col: CudaSlice<u32>,
    csr_val: CudaSlice<f32>,
    csc_ptr: CudaSlice<u64>,
    csc_row: CudaSlice<u32>,
    csc_val: CudaSlice<f32>,
    y: CudaSlice<f64>,
    g: CudaSlice<f64>,
    d: CudaSlice<f64>,
    // Tolerance band half-widths (empty and has_band 0 without a band);
    // abs_cap: the l1 cap (infinite for none), or -1 for the squared loss.
    band: CudaSlice<f64>,
    has_band: i32,
    abs_cap: f64,
    // Per-column state, model k's at [k n, (k + 1) n).
    p: CudaSlice<f32>,
    a: CudaSlice<f32>,
    m_p: CudaSlice<f32>,
    v_p: CudaSlice<f32>,
    m_a: CudaSlice<f32>,
    v_a: CudaSlice<f32>,
    /// The gates' pre-stretch values of the last sampling.
    s: CudaSlice<f32>,
    /// g_w = M^T r of the last residual, rounded to f32.
    gw: CudaSlice<f32>,
    /// The weights, model k of column i at `i lanes + k`.
    w: CudaSlice<f32>,
    /// The selected model's weights of a batch (`take_lane`; unused for one
    /// model, whose `w` they are).
    w_one: CudaSlice<f32>,
    /// The weight caps' bound on p (one per column, shared by the models;
    /// one unused element when there is none) and whether there is one.
    max_p: CudaSlice<f32>,
    has_max_p: i32,
    gp: CudaSlice<f32>,
    ga: CudaSlice<f32>,
    /// Intercept states (value, m, v), three per lane.
    icpt: CudaSlice<f32>,
    // Per-row (model k of row q at `q lanes + k`) and scratch.
    yhat: CudaSlice<f64>,
    r: CudaSlice<f64>,
    /// The predictions of all lanes on the host (`read_yhat` of a batch
    /// copies them all and keeps the selected model's).
    yhat_host: Vec<f64>,
    red_partials: CudaSlice<f64>,
    /// Data loss and sum of residuals, two per model.
    loss_scalars: CudaSlice<f64>,
    pen_scalars: CudaSlice<f64>,
    /// First non-finite step, one per model.
    bad_step: CudaSlice<u64>,
    counts: CudaSlice<u64>,
}

/// Launches kernel `$f` of `$self.k` (or, after `fn`, the function `$func`
/// named `$name`) on `$self.stream` with the given config and arguments.
macro_rules! launch {
    ($self:ident, $f:ident, $cfg:expr, $($arg:expr),* $(,)?) => {
        launch!($self, fn &$self.k.$f, stringify!($f), $cfg, $($arg),*)
    };
    ($self:ident, fn $func:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let mut b = $self.stream.launch_builder($func);
        $( b.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in
        // kernels/*.cu, and every buffer is sized for the launch.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(driver_err(&format!("launching kernel {}", $name)))
    }};
}

/// The selected model's weights after [`CudaBackend::model_weights`]: `w`
/// for one model, `w_one` for a batch.
fn lane_weights<'a>(
    lanes: usize,
    w: &'a CudaSlice<f32>,
    w_one: &'a CudaSlice<f32>,
) -> &'a CudaSlice<f32> {
    if lanes == 1 {
        w
    } else {
        w_one
    }
}

/// The position in [`LANES`] of the least width that holds `models` models.
fn width_for(models: usize) -> usize {
    LANES
        .iter()
        .position(|&l| l >= models)
        .unwrap_or(LANES.len() - 1)
}

/// Each model's rule: `hyper` with L0 strength `lambdas[k]`.
fn gpu_rules(hyper: &super::Hyper, lambdas: &[f64]) -> Vec<GpuRule> {
    lambdas
        .iter()
        .map(|&lambda_l0| {
            GpuRule::of(&super::Hyper {
                lambda_l0,
                ..*hyper
            })
        })
        .collect()
}

/// A grid of `blocks` blocks for each of `models` models (`blockIdx.y`).
fn cfg_models(blocks: u32, models: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, models as u32, 1),
        ..cfg(blocks)
    }
}

impl CudaBackend {
    /// Whether device `ordinal` can be used: the driver and NVRTC libraries
    /// load (checked before anything else in cudarc is touched), the driver
    /// initialises and the device exists. The error says which failed.
    pub fn available(ordinal: usize) -> Result<()> {
        if !driver_present() {
            return Err(L0Error::Cuda(
                "the CUDA driver (libcuda.so) cannot be loaded: no NVIDIA driver on this machine"
                    .into(),
            ));
        }
        if !nvrtc_present() {
            return Err(L0Error::Cuda(
                "NVRTC (libnvrtc.so.13 or libnvrtc.so.12) cannot be loaded; the CUDA backend \
                 compiles its kernels at run time and needs it (install the CUDA toolkit or \
                 the nvidia-cuda-nvrtc-cu12 wheel and add its lib folder to LD_LIBRARY_PATH)"
                    .into(),
            ));
        }
        guard("probing CUDA devices", || {
            let count = CudaContext::device_count()
                .map_err(driver_err("the CUDA driver did not initialise"))?;
            if count <= 0 {
                return Err(L0Error::Cuda("no CUDA device found".into()));
            }
            if ordinal >= count as usize {
                return Err(L0Error::Cuda(format!(
                    "device cuda:{ordinal} does not exist ({count} device(s) found)"
                )));
            }
            Ok(())
        })
    }

    /// Opens device `ordinal`, compiles the kernels (once per device and
    /// process), checks that the problem fits in free device memory and
    /// uploads it. [`Noise::Replay`] is refused: recorded noise is CPU-only.
    pub fn new(problem: Problem<'_>, ordinal: usize) -> Result<Self> {
        Self::with_models(problem, &[problem.hyper.lambda_l0], ordinal)
    }

    /// [`CudaBackend::new`] for `lambdas.len()` models (1 to
    /// [`MAX_MODELS`]) trained together, model k with L0 strength
    /// `lambdas[k]` and otherwise `problem.hyper` (the caller checks each λ
    /// as a single fit does).
    pub fn with_models(problem: Problem<'_>, lambdas: &[f64], ordinal: usize) -> Result<Self> {
        Self::with_capacity(problem, lambdas, lambdas.len(), ordinal)
    }

    /// [`CudaBackend::with_models`] with buffers for `capacity` models (from
    /// `lambdas.len()` to [`MAX_MODELS`]), so that later batches of up to
    /// that many models on the same problem can take it over
    /// ([`Backend::rebatch`]) without uploading the matrix again.
    pub fn with_capacity(
        problem: Problem<'_>,
        lambdas: &[f64],
        capacity: usize,
        ordinal: usize,
    ) -> Result<Self> {
        if let Noise::Replay(_) = problem.noise {
            return Err(L0Error::config(
                "replayed gate noise (Noise::Replay) is supported by the CPU backend only",
            ));
        }
        if lambdas.is_empty() || lambdas.len() > MAX_MODELS {
            return Err(L0Error::config(format!(
                "a CUDA backend trains 1 to {MAX_MODELS} models together, not {}",
                lambdas.len()
            )));
        }
        let capacity = capacity.clamp(lambdas.len(), MAX_MODELS);
        Self::available(ordinal)?;
        guard("opening the CUDA backend", || {
            Self::open(problem, lambdas, capacity, ordinal)
        })
    }

    fn open(
        problem: Problem<'_>,
        lambdas: &[f64],
        capacity: usize,
        ordinal: usize,
    ) -> Result<Self> {
        let m = problem.matrix;
        let (rows, n) = (m.rows(), m.cols());
        problem.check_lengths()?;
        let (models, width) = (lambdas.len(), width_for(lambdas.len()));
        let lanes = LANES[width];
        // The buffers are sized for `capacity` models at their lanes.
        let (room, room_lanes) = (capacity, LANES[width_for(capacity)]);
        let ctx = CudaContext::new(ordinal)
            .map_err(driver_err(&format!("cannot open device cuda:{ordinal}")))?;
        // One stream only: cudarc's cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(driver_err("reading the device name"))?;
        let cc = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability"))?;
        let k = load_kernels(&ctx, cc)?;
        let (csr, csc) = (m.csr(), m.csc());
        let row_plan = SegmentPlan::rows(m.segments(), csr.indices());
        let long = SegmentPlan::long_columns(m.long_columns());
        let need = device_bytes(m, [&row_plan, &long], room, room_lanes);
        let (free, total) = free_memory(&ctx)?;
        if need + memory_margin(total) > free {
            return Err(L0Error::Cuda(format!(
                "the problem needs {:.2} GiB of device memory (plus a {:.2} GiB margin), device \
                 cuda:{ordinal} ({name}) has {:.2} GiB free of {:.2} GiB",
                gib(need),
                gib(memory_margin(total)),
                gib(free),
                gib(total)
            )));
        }
        let s = ctx.default_stream();
        let to_u64 = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
        let rules = gpu_rules(&problem.hyper, lambdas);
        let per_model = n * room;
        let b = CudaBackend {
            ordinal,
            name,
            cc,
            k,
            rules_dev: upload(&s, &rules)?,
            rules,
            hyper: problem.hyper,
            models,
            lanes,
            width,
            room,
            selected: 0,
            lr: problem.hyper.lr,
            seed: problem.hyper.seed,
            sampled_step: 0,
            n,
            rows,
            col_shift: shift_for(m.nnz(), n),
            reduce_cols: blocks_for(n)?.min(MAX_REDUCE_BLOCKS as u32),
            reduce_rows: blocks_for(rows)?.min(MAX_REDUCE_BLOCKS as u32),
            icpt_loaded: vec![None; models],
            rows_plan: DevicePlan::new(&s, &row_plan, m.nnz(), room_lanes)?.at(lanes),
            long_plan: DevicePlan::new(&s, &long, m.nnz(), room_lanes)?.at(lanes),
            csr_col: upload(&s, csr.indices())?,
            csr_val: upload(&s, csr.data())?,
            csc_ptr: upload(&s, &to_u64(csc.indptr().raw_storage()))?,
            csc_row: upload(&s, csc.indices())?,
            csc_val: upload(&s, csc.data())?,
            y: upload(&s, problem.targets)?,
            g: upload(&s, problem.target_weight)?,
            d: upload(&s, problem.denom)?,
            band: upload(&s, problem.band.unwrap_or(&[]))?,
            has_band: problem.band.is_some() as i32,
            abs_cap: match problem.shape {
                Shape::Square => -1.0,
                Shape::Abs { cap } => cap,
            },
            p: zeros(&s, per_model)?,
            a: zeros(&s, per_model)?,
            m_p: zeros(&s, per_model)?,
            v_p: zeros(&s, per_model)?,
            m_a: zeros(&s, per_model)?,
            v_a: zeros(&s, per_model)?,
            s: zeros(&s, per_model)?,
            gw: zeros(&s, per_model)?,
            w: zeros(&s, n * room_lanes)?,
            w_one: zeros(&s, if room_lanes > 1 { n } else { 0 })?,
            max_p: upload(&s, problem.max_p.unwrap_or(&[]))?,
            has_max_p: problem.max_p.is_some() as i32,
            gp: zeros(&s, n)?,
            ga: zeros(&s, n)?,
            icpt: zeros(&s, 3 * room_lanes)?,
            yhat: zeros(&s, rows * room_lanes)?,
            r: zeros(&s, rows * room_lanes)?,
            yhat_host: vec![0.0; if lanes > 1 { rows * lanes } else { 0 }],
            red_partials: zeros(&s, 2 * MAX_REDUCE_BLOCKS * room)?,
            loss_scalars: zeros(&s, 2 * room)?,
            pen_scalars: zeros(&s, 2)?,
            bad_step: upload(&s, &vec![u64::MAX; room])?,
            counts: zeros(&s, 7)?,
            stream: s,
        };
        b.sync()?;
        Ok(b)
    }

    /// [`Backend::rebatch`] for a batch that fits the buffers.
    fn take_batch(&mut self, lambdas: &[f64]) -> Result<()> {
        let (models, width) = (lambdas.len(), width_for(lambdas.len()));
        let lanes = LANES[width];
        self.rules = gpu_rules(&self.hyper, lambdas);
        self.rules_dev = upload(&self.stream, &self.rules)?;
        (self.models, self.lanes, self.width) = (models, lanes, width);
        (self.selected, self.sampled_step) = (0, 0);
        self.icpt_loaded = vec![None; models];
        self.rows_plan.lanes = lanes;
        self.long_plan.lanes = lanes;
        self.yhat_host = vec![0.0; if lanes > 1 { self.rows * lanes } else { 0 }];
        let st = self.stream.clone();
        let clear = driver_err("clearing the buffers of a new batch");
        for buf in [
            &mut self.p,
            &mut self.a,
            &mut self.m_p,
            &mut self.v_p,
            &mut self.m_a,
            &mut self.v_a,
            &mut self.s,
            &mut self.gw,
            &mut self.w,
            &mut self.w_one,
            &mut self.icpt,
        ] {
            st.memset_zeros(buf).map_err(&clear)?;
        }
        for buf in [
            &mut self.yhat,
            &mut self.r,
            &mut self.red_partials,
            &mut self.loss_scalars,
            &mut self.rows_plan.partials,
            &mut self.rows_plan.sums,
            &mut self.long_plan.partials,
            &mut self.long_plan.sums,
        ] {
            st.memset_zeros(buf).map_err(&clear)?;
        }
        st.memcpy_htod(vec![u64::MAX; self.room].as_slice(), &mut self.bad_step)
            .map_err(driver_err("clearing the divergence flags"))?;
        self.sync()
    }

    /// Whether the models have an intercept (the loaded states agree).
    fn has_icpt(&self) -> bool {
        self.icpt_loaded.contains(&Some(true))
    }

    /// What runs the kernels, e.g. "sm_90 cubin from NVRTC 13.0".
    pub fn code(&self) -> &str {
        &self.k.code
    }

    /// The selected model's part of a per-column buffer.
    fn model(&self) -> std::ops::Range<usize> {
        self.selected * self.n..(self.selected + 1) * self.n
    }

    /// g_w = M^T r into `gw` for every model: the long columns' segmented
    /// sums first, then kernel `column_dots` (kernels/step.cu).
    fn column_dots(&mut self) -> Result<()> {
        let dots = &self.k.dots[self.width];
        self.long_plan.run(
            &self.stream,
            (&dots.spmtv_segments, &dots.combine_segments),
            (&self.csc_row, &self.csc_val, &self.r),
            (&self.icpt, 0),
            None,
        )?;
        let (n, n_long) = (self.n64(), self.long_plan.outputs as u32);
        let models = self.models as u32;
        // gw holds n values per model, the long columns' sums `lanes` each.
        launch!(
            self,
            fn &dots.column_dots,
            "column_dots",
            cfg(blocks_for(self.n << self.col_shift)?),
            &n,
            &self.col_shift,
            &models,
            &self.csc_ptr,
            &self.csc_row,
            &self.csc_val,
            &self.r,
            &LONG_COLUMN_NNZ_U64,
            &n_long,
            &self.long_plan.cols,
            &self.long_plan.sums,
            &mut self.gw
        )
    }

    /// Makes `w_one` the selected model's weights when they share `w` with
    /// other models (kernel `take_lane`); for one model they are `w`.
    fn model_weights(&mut self) -> Result<()> {
        if self.lanes == 1 {
            return Ok(());
        }
        let (n, lanes, k) = (self.n64(), self.lanes as u32, self.selected as u32);
        launch!(
            self,
            take_lane,
            cfg(blocks_for(self.n)?),
            &n,
            &lanes,
            &k,
            &self.w,
            &mut self.w_one
        )
    }

    fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_err("waiting for the device"))
    }

    /// Adam's scalars for 0-based `step`, rounded to f32 as the CPU does.
    fn adam(&self, step: u64) -> (f32, f32) {
        let s = AdamStep::new(self.lr, step + 1);
        ((-s.step_size) as f32, s.bc2_sqrt as f32)
    }

    fn n64(&self) -> u64 {
        self.n as u64
    }

    /// Copies `out.len()` values of `src` from `at` into `out` and waits.
    fn download<T: DeviceRepr>(
        &self,
        src: &CudaSlice<T>,
        at: usize,
        out: &mut [T],
        what: &str,
    ) -> Result<()> {
        self.stream
            .memcpy_dtoh(&src.slice(at..at + out.len()), out)
            .map_err(driver_err(what))?;
        self.sync()
    }

    fn check_len(&self, what: &str, want: usize, got: usize) -> Result<()> {
        if want == got {
            Ok(())
        } else {
            Err(L0Error::shape(what, want, got))
        }
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        format!(
            "cuda:{} ({}, compute capability {}.{}, {})",
            self.ordinal, self.name, self.cc.0, self.cc.1, self.k.code
        )
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn models(&self) -> usize {
        self.models
    }

    fn on_gpu(&self) -> bool {
        true
    }

    /// Takes a batch of up to the `room` models the buffers were sized for
    /// (else false): the rules of its λ are uploaded and every per-model and
    /// per-lane buffer is cleared, as a backend opened for the batch would
    /// have it; the matrix, the targets and the plans stay.
    fn rebatch(&mut self, lambdas: &[f64]) -> Result<bool> {
        if lambdas.is_empty() || lambdas.len() > self.room {
            return Ok(false);
        }
        guard("taking a new batch of models", || self.take_batch(lambdas))?;
        Ok(true)
    }

    fn select(&mut self, k: usize) -> Result<()> {
        if k >= self.models {
            return Err(L0Error::config(format!(
                "model {k} selected on a backend that trains {}",
                self.models
            )));
        }
        self.selected = k;
        Ok(())
    }

    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        if s.len() != self.n {
            return Err(L0Error::shape(
                "parameter vectors (one per matrix column)",
                self.n,
                s.len(),
            ));
        }
        let with = s.intercept.is_some();
        let others = self.icpt_loaded.iter().enumerate();
        if others
            .filter(|&(k, _)| k != self.selected)
            .any(|(_, &l)| l == Some(!with))
        {
            return Err(L0Error::config(
                "the models trained together must all have an intercept or none",
            ));
        }
        guard("loading the parameters", || {
            let st = self.stream.clone();
            let at = self.model();
            for (src, dst) in [
                (&s.p, &mut self.p),
                (&s.a, &mut self.a),
                (&s.m_p, &mut self.m_p),
                (&s.v_p, &mut self.v_p),
                (&s.m_a, &mut self.m_a),
                (&s.v_a, &mut self.v_a),
            ] {
                if src.len() != self.n {
                    return Err(L0Error::shape(
                        "Adam moments (one per matrix column)",
                        self.n,
                        src.len(),
                    ));
                }
                if self.n > 0 {
                    st.memcpy_htod(src.as_slice(), &mut dst.slice_mut(at.clone()))
                        .map_err(driver_err("copying parameters to the device"))?;
                }
            }
            self.icpt_loaded[self.selected] = Some(with);
            if let Some(b) = s.intercept {
                let k = 3 * self.selected;
                st.memcpy_htod(&[b.value, b.m, b.v], &mut self.icpt.slice_mut(k..k + 3))
                    .map_err(driver_err("copying the intercept to the device"))?;
            }
            self.sync()
        })
    }

    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        guard("reading the parameters", || {
            let (n, at) = (self.n, self.model().start);
            for (dst, src) in [
                (&mut s.p, &self.p),
                (&mut s.a, &self.a),
                (&mut s.m_p, &self.m_p),
                (&mut s.v_p, &self.v_p),
                (&mut s.m_a, &self.m_a),
                (&mut s.v_a, &self.v_a),
            ] {
                dst.resize(n, 0.0);
                self.download(src, at, dst, "copying parameters from the device")?;
            }
            s.intercept = if self.has_icpt() {
                let mut v = [0.0f32; 3];
                let k = 3 * self.selected;
                self.download(
                    &self.icpt,
                    k,
                    &mut v,
                    "copying the intercept from the device",
                )?;
                Some(ScalarState {
                    value: v[0],
                    m: v[1],
                    v: v[2],
                })
            } else {
                None
            };
            Ok(())
        })
    }

    /// Kernel `sample_weights` (kernels/gates.cu), all models.
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        self.sampled_step = step;
        guard("sampling weights", || {
            let (n, models, lanes) = (self.n64(), self.models as u32, self.lanes as u32);
            launch!(
                self,
                sample_weights,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.p,
                &self.a,
                &mut self.w,
                &mut self.s,
                &self.rules_dev,
                &self.seed,
                &step
            )
        })
    }

    /// Kernel `deterministic_weights` (kernels/gates.cu), all models.
    fn deterministic_weights(&mut self, rule: TestGate) -> Result<()> {
        let test: i32 = match rule {
            TestGate::Temperature => 0,
            TestGate::Paper => 1,
        };
        guard("computing deterministic weights", || {
            let (n, models, lanes) = (self.n64(), self.models as u32, self.lanes as u32);
            launch!(
                self,
                deterministic_weights,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.p,
                &self.a,
                &mut self.w,
                &self.rules_dev,
                &test
            )
        })
    }

    /// Kernels `spmv_segments` then `combine_segments` (kernels/spmv.cu),
    /// all models.
    fn forward(&mut self) -> Result<()> {
        let icpt = self.has_icpt() as i32;
        guard("the forward product", || {
            let dots = &self.k.dots[self.width];
            self.rows_plan.run(
                &self.stream,
                (&dots.spmv_segments, &dots.combine_segments),
                (&self.csr_col, &self.csr_val, &self.w),
                (&self.icpt, icpt),
                Some(&mut self.yhat),
            )
        })
    }

    /// Kernels `residual` then `residual_finalize` (kernels/step.cu), all
    /// models.
    fn residual(&mut self, step: u64) -> Result<()> {
        guard("the residual", || {
            let (rows, lanes) = (self.rows as u64, self.lanes as u32);
            launch!(
                self,
                residual,
                cfg_models(self.reduce_rows, self.models),
                &rows,
                &lanes,
                &self.y,
                &self.g,
                &self.d,
                &self.band,
                &self.has_band,
                &self.abs_cap,
                &self.yhat,
                &mut self.r,
                &mut self.red_partials
            )?;
            let blocks = self.reduce_rows;
            launch!(
                self,
                residual_finalize,
                cfg_models(1, self.models),
                &blocks,
                &self.red_partials,
                &mut self.loss_scalars,
                &mut self.bad_step,
                &step
            )
        })
    }

    /// Kernels `intercept_adam` (when fitted), the long columns' segmented
    /// sums, `column_dots` and `step_columns` (kernels/step.cu), all models.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        // The kernel uses the gate values s kept by the last sampling; the
        // contract is that it was at `step`.
        if step != self.sampled_step {
            return Err(L0Error::config(format!(
                "step({step}) must follow sample_weights({step}); the last sampling was at step {}",
                self.sampled_step
            )));
        }
        let (neg_step, bc2) = self.adam(step);
        if sample_next {
            self.sampled_step = step + 1;
        }
        guard("the backward step", || {
            if self.has_icpt() {
                launch!(
                    self,
                    intercept_adam,
                    cfg_models(1, self.models),
                    &mut self.icpt,
                    &self.loss_scalars,
                    &neg_step,
                    &bc2
                )?;
            }
            self.column_dots()?;
            let (n, next) = (self.n64(), sample_next as i32);
            let (models, lanes) = (self.models as u32, self.lanes as u32);
            launch!(
                self,
                step_columns,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.gw,
                &mut self.p,
                &mut self.a,
                &mut self.m_p,
                &mut self.v_p,
                &mut self.m_a,
                &mut self.v_a,
                &mut self.w,
                &mut self.s,
                &self.max_p,
                &self.has_max_p,
                &self.rules_dev,
                &self.seed,
                &step,
                &neg_step,
                &bc2,
                &next
            )
        })
    }

    /// Kernels `column_dots` and `gradient_columns` (kernels/step.cu) for
    /// the selected model; the intercept's gradient is the sum of its
    /// residuals kept by `residual_finalize`.
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        guard("the gradients", || {
            self.column_dots()?;
            let (n, at) = (self.n64(), self.model());
            let rule = self.rules[self.selected];
            let (gw, p) = (self.gw.slice(at.clone()), self.p.slice(at.clone()));
            let (a, s) = (self.a.slice(at.clone()), self.s.slice(at));
            launch!(
                self,
                gradient_columns,
                cfg(blocks_for(self.n)?),
                &n,
                &gw,
                &p,
                &a,
                &s,
                &rule,
                &mut self.gp,
                &mut self.ga
            )?;
            let (mut gp, mut ga) = (vec![0.0f32; self.n], vec![0.0f32; self.n]);
            self.download(&self.gp, 0, &mut gp, "copying gradients from the device")?;
            self.download(&self.ga, 0, &mut ga, "copying gradients from the device")?;
            let gb = if self.has_icpt() {
                let mut s = [0.0f64; 2];
                let k = 2 * self.selected;
                self.download(&self.loss_scalars, k, &mut s, "copying the loss")?;
                Some(s[1])
            } else {
                None
            };
            Ok((gp, ga, gb))
        })
    }

    /// Kernels `penalties_partial` then `penalties_finalize`
    /// (kernels/gates.cu) for the selected model; reads four scalars.
    fn losses(&mut self) -> Result<Losses> {
        guard("the losses", || {
            let (n, at) = (self.n64(), self.model());
            let rule = self.rules[self.selected];
            let (p, a) = (self.p.slice(at.clone()), self.a.slice(at));
            launch!(
                self,
                penalties_partial,
                cfg(self.reduce_cols),
                &n,
                &p,
                &a,
                &rule,
                &mut self.red_partials
            )?;
            let blocks = self.reduce_cols;
            launch!(
                self,
                penalties_finalize,
                cfg(1),
                &blocks,
                &self.red_partials,
                &mut self.pen_scalars
            )?;
            let (mut loss, mut pen) = ([0.0f64; 2], [0.0f64; 2]);
            let k = 2 * self.selected;
            self.download(&self.loss_scalars, k, &mut loss, "copying the loss")?;
            self.download(&self.pen_scalars, 0, &mut pen, "copying the penalties")?;
            Ok(Losses {
                data: loss[0],
                l0: pen[0],
                l2: pen[1],
            })
        })
    }

    fn first_bad_step(&mut self) -> Result<Option<u64>> {
        guard("reading the divergence flag", || {
            let mut s = [0u64; 1];
            let k = self.selected;
            self.download(&self.bad_step, k, &mut s, "copying the divergence flag")?;
            Ok((s[0] != u64::MAX).then_some(s[0]))
        })
    }

    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()> {
        self.check_len("predictions (one per matrix row)", self.rows, out.len())?;
        guard("reading predictions", || {
            if self.lanes == 1 {
                return self.download(&self.yhat, 0, out, "copying predictions");
            }
            let mut all = std::mem::take(&mut self.yhat_host);
            let read = self.download(&self.yhat, 0, &mut all, "copying predictions");
            if read.is_ok() {
                let lane = all.iter().skip(self.selected).step_by(self.lanes);
                out.iter_mut().zip(lane).for_each(|(o, &y)| *o = y);
            }
            self.yhat_host = all;
            read
        })
    }

    fn read_weights(&mut self, out: &mut [f32]) -> Result<()> {
        self.check_len("weights (one per matrix column)", self.n, out.len())?;
        guard("reading weights", || {
            self.model_weights()?;
            let w = lane_weights(self.lanes, &self.w, &self.w_one);
            self.download(w, 0, out, "copying weights")
        })
    }

    /// Kernel `weight_summary` (kernels/gates.cu) for the selected model;
    /// reads seven counters.
    fn weight_summary(&mut self) -> Result<WeightSummary> {
        guard("the weight summary", || {
            self.model_weights()?;
            self.stream
                .memset_zeros(&mut self.counts)
                .map_err(driver_err("clearing counters"))?;
            let n = self.n64();
            let w = lane_weights(self.lanes, &self.w, &self.w_one);
            launch!(
                self,
                weight_summary,
                cfg(self.reduce_cols),
                &n,
                w,
                &mut self.counts
            )?;
            let mut c = [0u64; 7];
            self.download(&self.counts, 0, &mut c, "copying the weight counts")?;
            let mut buckets = [0u64; 6];
            buckets.copy_from_slice(&c[1..]);
            Ok(WeightSummary {
                active: c[0],
                buckets,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_powers_of_two_up_to_a_warp() {
        assert_eq!(shift_for(80, 10), 0);
        assert_eq!(shift_for(90, 10), 1);
        assert_eq!(shift_for(280, 10), 2);
        assert_eq!(shift_for(330, 10), 3);
        assert_eq!(shift_for(10_000, 10), 5);
        assert_eq!(shift_for(0, 10), 0);
    }

    #[test]
    fn target_is_a_cubin_for_known_archs_and_ptx_below_unknown_ones() {
        assert_eq!(target_arch((9, 0), &[75, 80, 86, 89, 90]), "sm_90");
        assert_eq!(target_arch((8, 6), &[]), "sm_86");
        assert_eq!(target_arch((12, 0), &[75, 80, 90]), "compute_90");
        assert_eq!(target_arch((6, 0), &[75, 80]), "compute_60");
    }

    #[test]
    fn row_plan_takes_segments_in_the_order_of_their_first_column() {
        // Row 0 touches all 2 SEGMENT_NNZ + 2 columns (three segments, from
        // columns 0, SEGMENT_NNZ and 2 SEGMENT_NNZ); row 1 only the last
        // two columns, row 2 only column 1.
        let s = SEGMENT_NNZ;
        let n = 2 * s + 2;
        let mut rows = vec![0u64; n];
        let mut cols: Vec<u64> = (0..n as u64).collect();
        rows.extend([1, 1, 2]);
        cols.extend([n as u64 - 2, n as u64 - 1, 1]);
        let m = SparseMatrix::from_triplets(3, n, &rows, &cols, &vec![1.0; n + 3]).unwrap();
        let plan = SegmentPlan::rows(m.segments(), m.csr().indices());
        assert_eq!(plan.ptr, vec![0, 3, 4, 5]);
        // Segments 0, 1, 2 (row 0) start at columns 0, s, 2 s; segment 3
        // (row 1) at 2 s, segment 4 (row 2) at 1.
        assert_eq!(plan.order, vec![0, 4, 1, 2, 3]);
        let long = SegmentPlan::long_columns(m.long_columns());
        assert_eq!(long.order, Vec::<u64>::new());
    }

    #[test]
    fn long_columns_plan_is_the_matrixs_split() {
        // Column 1 has 2 * SEGMENT_NNZ + 3 nonzeros, columns 0 and 2 one each.
        let s = SEGMENT_NNZ;
        let n = 2 * s + 3;
        let mut rows: Vec<u64> = (0..n as u64).collect();
        let mut cols = vec![1u64; n];
        rows.extend([0, 5]);
        cols.extend([0, 2]);
        let m = SparseMatrix::from_triplets(n, 3, &rows, &cols, &vec![1.0; n + 2]).unwrap();
        let plan = SegmentPlan::long_columns(m.long_columns());
        assert_eq!(plan.cols, vec![1]);
        let b = |x: usize| x as u64;
        assert_eq!(
            plan.bounds,
            vec![
                b(1),
                b(1 + s),
                b(1 + s),
                b(1 + 2 * s),
                b(1 + 2 * s),
                b(n + 1)
            ]
        );
        assert_eq!(plan.ptr, vec![0, 3]);
        assert_eq!(plan.order, vec![0, 1, 2]);
        assert_eq!((plan.segments(), plan.outputs()), (3, 1));
    }

    #[test]
    fn sources_are_self_contained() {
        for (name, src) in KERNEL_SOURCES {
            let full = kernel_source(src);
            assert!(
                !full.lines().any(|l| l.trim_start().starts_with("#include")),
                "{name} still includes a file"
            );
            assert!(
                full.contains("gate_uniform"),
                "{name} lacks the common code"
            );
        }
    }

    #[test]
    fn unavailable_device_is_an_error_not_a_panic() {
        // On a machine without a driver this names the missing library; on
        // one with a GPU, ordinal 4096 does not exist. Either way: an error.
        let e = CudaBackend::available(4096).unwrap_err();
        assert!(matches!(e, L0Error::Cuda(_)), "{e}");
    }
}
