//! The kernels: their sources (embedded in the binary), compiled by NVRTC
//! into a cubin for the device's architecture (PTX for one NVRTC does not
//! know, [`target_arch`]), loaded once per device and process (a cache).

use super::driver::{driver_err, guard, nvrtc_present};
use crate::error::{L0Error, Result};
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::ffi::CString;
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex, OnceLock};

/// The shared device code, pasted into each kernel source in place of its
/// `#include "common.cuh"` line.
pub const COMMON_SOURCE: &str = include_str!("../../../kernels/common.cuh");

/// The kernel sources by file name, as embedded in the binary (each still
/// carries its `#include "common.cuh"`; see [`kernel_source`]).
pub const KERNEL_SOURCES: [(&str, &str); 3] = [
    ("gates.cu", include_str!("../../../kernels/gates.cu")),
    ("spmv.cu", include_str!("../../../kernels/spmv.cu")),
    ("step.cu", include_str!("../../../kernels/step.cu")),
];

/// The complete translation unit NVRTC compiles for a kernel file: its
/// source with `#include "common.cuh"` replaced by the shared code.
pub fn kernel_source(source: &str) -> String {
    source.replace("#include \"common.cuh\"", COMMON_SOURCE)
}

/// The compute architectures the loaded NVRTC can target, as
/// `10 major + minor` (e.g. 90); empty when NVRTC is missing or cannot say.
pub fn nvrtc_supported_archs() -> Vec<i32> {
    if !nvrtc_present() {
        return Vec::new();
    }
    catch_unwind(nvrtc_archs).unwrap_or_default()
}

pub(super) fn nvrtc_archs() -> Vec<i32> {
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
pub(super) fn nvrtc_options(arch: &str) -> Vec<String> {
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
pub(super) struct Kernels {
    /// What was loaded, e.g. "sm_90 cubin from NVRTC 13.0".
    pub(super) code: String,
    pub(super) sample_weights: CudaFunction,
    pub(super) deterministic_weights: CudaFunction,
    pub(super) expected_gates: CudaFunction,
    pub(super) multiplier_sums: CudaFunction,
    pub(super) multiplier_finalize: CudaFunction,
    pub(super) conserve_sums: CudaFunction,
    pub(super) conserve_shift: CudaFunction,
    pub(super) penalties_partial: CudaFunction,
    pub(super) penalties_finalize: CudaFunction,
    pub(super) weight_summary: CudaFunction,
    pub(super) take_lane: CudaFunction,
    pub(super) residual: CudaFunction,
    pub(super) residual_finalize: CudaFunction,
    pub(super) intercept_adam: CudaFunction,
    pub(super) step_columns: CudaFunction,
    pub(super) gradient_columns: CudaFunction,
    /// The kernels compiled for each batch width, in the order of [`LANES`].
    pub(super) dots: Vec<DotKernels>,
}

/// The kernels `spmv.cu` and `step.cu` compile for one batch width `L`
/// (their names end in `_lL`).
pub(super) struct DotKernels {
    pub(super) spmv_segments: CudaFunction,
    pub(super) spmtv_segments: CudaFunction,
    pub(super) combine_segments: CudaFunction,
    pub(super) column_dots: CudaFunction,
}

/// The batch widths the dot-product kernels are compiled for
/// (`L0_FOR_LANES` in `kernels/common.cuh`): a batch of K models runs at the
/// least of them that is at least K, its extra lanes idle.
pub const LANES: [usize; 4] = [1, 2, 4, 8];

/// Most models one CUDA backend trains together (the widest of [`LANES`]).
pub const MAX_MODELS: usize = LANES[LANES.len() - 1];

// A batch of `limits::MAX_BATCH` models must fit one CUDA backend, or every
// GPU batch would train one model after another.
const _: () = assert!(MAX_MODELS >= crate::limits::MAX_BATCH);

/// Kernels compiled so far, by device ordinal: NVRTC runs once per device
/// (primary context) and process.
pub(super) fn kernel_cache() -> &'static Mutex<HashMap<usize, Arc<Kernels>>> {
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

pub(super) fn load_kernels(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<Arc<Kernels>> {
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
        expected_gates: f("gates.cu", "expected_gates")?,
        multiplier_sums: f("step.cu", "multiplier_sums")?,
        multiplier_finalize: f("step.cu", "multiplier_finalize")?,
        conserve_sums: f("gates.cu", "conserve_sums")?,
        conserve_shift: f("gates.cu", "conserve_shift")?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_a_cubin_for_known_archs_and_ptx_below_unknown_ones() {
        assert_eq!(target_arch((9, 0), &[75, 80, 86, 89, 90]), "sm_90");
        assert_eq!(target_arch((8, 6), &[]), "sm_86");
        assert_eq!(target_arch((12, 0), &[75, 80, 90]), "compute_90");
        assert_eq!(target_arch((6, 0), &[75, 80]), "compute_60");
    }

    /// The kernels' copies of the host's constants are the host's.
    #[test]
    fn the_kernels_constants_are_the_hosts() {
        let defined = |name: &str| {
            COMMON_SOURCE
                .lines()
                .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
                .map(|v| v.trim().trim_end_matches('f').to_string())
        };
        assert_eq!(
            defined("L0_GATE_MEAN_POINTS"),
            Some(crate::hard_concrete::GATE_MEAN_POINTS.to_string())
        );
        assert_eq!(
            defined("L0_LOG_ALPHA_BOUND").map(|v| v.parse::<f64>().ok()),
            Some(Some(crate::hard_concrete::LOG_ALPHA_BOUND))
        );
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
}
