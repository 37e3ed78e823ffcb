//! Says, in a plain `cargo test`, which tests pass here without checking
//! what they are for, and why.
//!
//! The tests of `tests/cuda_kernels.rs` return early without NVRTC or a
//! GPU; the harness captures their `eprintln!` and shows it only when a
//! test fails. `say_which_tests_skip_here` probes the same conditions and
//! writes one line per missing piece straight to stderr
//! ([`common::notice`]), which the harness does not capture.
//! `L0_REQUIRE_NVRTC=1` (CI) and `L0_REQUIRE_GPU=1` (`scripts/gpu-check.sh`)
//! turn those skips into failures.

mod common;

use std::process::Command;

#[test]
fn say_which_tests_skip_here() {
    for line in skipped_here() {
        common::notice(&line);
    }
}

#[cfg(feature = "cuda")]
fn skipped_here() -> Vec<String> {
    use l0::backend::cuda::{nvrtc_present, CudaBackend};
    let mut out = Vec::new();
    if !nvrtc_present() {
        out.push(
            "skipped here: NVRTC (libnvrtc.so.13/.so.12) is not loadable, so tests/cuda_kernels.rs \
             compiles no kernel (scripts/install-nvrtc.sh installs it; L0_REQUIRE_NVRTC=1 makes \
             this a failure)"
                .to_string(),
        );
    }
    if let Err(e) = CudaBackend::available(0) {
        out.push(format!(
            "skipped here: no usable CUDA device ({e}), so the gpu_* tests of \
             tests/cuda_kernels.rs compare nothing (L0_REQUIRE_GPU=1 makes this a failure)"
        ));
    }
    out
}

#[cfg(not(feature = "cuda"))]
fn skipped_here() -> Vec<String> {
    vec!["skipped here: built without the cuda feature, so tests/cuda_kernels.rs is empty".into()]
}

/// Writes a notice and a captured line when run as the child of
/// `notices_reach_the_terminal`; otherwise does nothing.
#[test]
fn write_a_notice() {
    if std::env::var_os("L0_NOTICE_PROBE").is_some() {
        common::notice("notice from a test");
        eprintln!("captured by the harness");
    }
}

#[test]
fn notices_reach_the_terminal() {
    let exe = std::env::current_exe().unwrap();
    let o = Command::new(exe)
        .args(["--exact", "write_a_notice", "--test-threads=1"])
        .env("L0_NOTICE_PROBE", "1")
        .output()
        .unwrap();
    assert!(o.status.success());
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(err, "notice from a test\n", "stdout: {out}");
    assert!(!out.contains("captured by the harness"), "{out}");
}
