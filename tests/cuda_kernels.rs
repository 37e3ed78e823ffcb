//! The CUDA backend: its kernels compile with NVRTC (no GPU needed), and on
//! a machine with a GPU it computes what the CPU backend computes.
//!
//! * `kernels_compile_to_ptx_for_all_targets` needs only libnvrtc. Without
//!   it the test prints a skip message and passes, unless
//!   `L0_REQUIRE_NVRTC=1` (set by CI after `scripts/install-nvrtc.sh`).
//! * The `gpu_*` tests need a CUDA device and skip with a message without
//!   one (`L0_REQUIRE_GPU=1` turns the skip into a failure, for
//!   `scripts/gpu-check.sh`).
//! * The `backend_*` tests run one generic body on every backend present.
#![cfg(feature = "cuda")]

mod common;

use common::{assert_close, f64s, random_matrix, Rng};
use l0::backend::cpu::CpuBackend;
use l0::backend::cuda::{
    compile_kernels, compile_source, nvrtc_present, nvrtc_supported_archs, nvrtc_version, CodeKind,
    CudaBackend,
};
use l0::backend::{make_backend, Backend, Device, Hyper, Noise, ParamState, Problem};
use l0::engine::{self, Silent};
use l0::hard_concrete::TestGate;
use l0::objective::Shape;
use l0::{L0Error, SparseMatrix};

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Every kernel of the three files, by file (the dot products once per
/// batch width, `_l1` to `_l8`).
const KERNELS: [(&str, &str); 27] = [
    ("gates.cu", "sample_weights"),
    ("gates.cu", "deterministic_weights"),
    ("gates.cu", "take_lane"),
    ("gates.cu", "penalties_partial"),
    ("gates.cu", "penalties_finalize"),
    ("gates.cu", "weight_summary"),
    ("spmv.cu", "spmv_segments_l1"),
    ("spmv.cu", "spmtv_segments_l1"),
    ("spmv.cu", "combine_segments_l1"),
    ("spmv.cu", "spmv_segments_l2"),
    ("spmv.cu", "spmtv_segments_l2"),
    ("spmv.cu", "combine_segments_l2"),
    ("spmv.cu", "spmv_segments_l4"),
    ("spmv.cu", "spmtv_segments_l4"),
    ("spmv.cu", "combine_segments_l4"),
    ("spmv.cu", "spmv_segments_l8"),
    ("spmv.cu", "spmtv_segments_l8"),
    ("spmv.cu", "combine_segments_l8"),
    ("step.cu", "residual"),
    ("step.cu", "residual_finalize"),
    ("step.cu", "intercept_adam"),
    ("step.cu", "column_dots_l1"),
    ("step.cu", "column_dots_l2"),
    ("step.cu", "column_dots_l4"),
    ("step.cu", "column_dots_l8"),
    ("step.cu", "step_columns"),
    ("step.cu", "gradient_columns"),
];

/// True when NVRTC is loadable; otherwise prints why the test skips (and
/// fails under `L0_REQUIRE_NVRTC=1`).
fn have_nvrtc() -> bool {
    if nvrtc_present() {
        return true;
    }
    assert!(
        !flag("L0_REQUIRE_NVRTC"),
        "L0_REQUIRE_NVRTC=1 but NVRTC cannot be loaded (run scripts/install-nvrtc.sh and \
         export its folder in LD_LIBRARY_PATH)"
    );
    eprintln!("skipped: NVRTC (libnvrtc.so.13/.so.12) is not loadable");
    false
}

/// The architectures of `want` that the loaded NVRTC targets (CUDA 13's
/// NVRTC no longer targets sm_70).
fn supported(want: &[i32]) -> Vec<i32> {
    let archs = nvrtc_supported_archs();
    want.iter()
        .copied()
        .filter(|a| archs.is_empty() || archs.contains(a))
        .collect()
}

#[test]
fn kernels_compile_to_cubins_for_all_targets() {
    if !have_nvrtc() {
        return;
    }
    eprintln!("NVRTC {}", nvrtc_version());
    let archs = supported(&[70, 80, 90]);
    assert!(archs.contains(&90), "NVRTC cannot target sm_90: {archs:?}");
    for arch in archs {
        let code =
            compile_kernels(&format!("sm_{arch}")).unwrap_or_else(|e| panic!("sm_{arch}: {e}"));
        assert_eq!(code.len(), 3);
        for (file, c) in &code {
            assert_eq!(c.kind, CodeKind::Cubin, "{file}");
            // An ELF file (a cubin), 64-bit, whose e_flags name the arch.
            assert_eq!(
                &c.image[..5],
                b"\x7fELF\x02",
                "{file} for sm_{arch}: not an ELF image"
            );
            let flags = u32::from_le_bytes(c.image[48..52].try_into().unwrap());
            assert!(
                flags & 0xff == arch as u32 || (flags >> 8) & 0xff == arch as u32,
                "{file} for sm_{arch}: e_flags {flags:#x}"
            );
        }
        for (file, kernel) in KERNELS {
            let (_, c) = code.iter().find(|(name, _)| *name == file).unwrap();
            let symbol = format!("\0{kernel}\0");
            assert!(
                c.image
                    .windows(symbol.len())
                    .any(|w| w == symbol.as_bytes()),
                "{file} for sm_{arch}: no symbol {kernel}"
            );
        }
    }
}

#[test]
fn kernels_compile_to_ptx_for_devices_nvrtc_does_not_know() {
    if !have_nvrtc() {
        return;
    }
    for arch in supported(&[80, 90]) {
        let code = compile_kernels(&format!("compute_{arch}")).unwrap();
        for (file, kernel) in KERNELS {
            let (_, c) = code.iter().find(|(name, _)| *name == file).unwrap();
            assert_eq!(c.kind, CodeKind::Ptx);
            let src = String::from_utf8_lossy(&c.image);
            assert!(
                src.contains(&format!(".target sm_{arch}")),
                "{file}: no .target sm_{arch}"
            );
            assert!(
                src.contains(&format!(".entry {kernel}(")),
                "{file}: no entry {kernel}"
            );
        }
    }
}

#[test]
fn compiler_errors_carry_the_nvrtc_log() {
    if !have_nvrtc() {
        return;
    }
    let src = "extern \"C\" __global__ void k(float* x) { x[0] = no_such_function(); }";
    let e = compile_source("broken.cu", src, "sm_80").unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, L0Error::Cuda(_)), "{text}");
    assert!(text.contains("broken.cu"), "{text}");
    assert!(text.contains("no_such_function"), "{text}");
}

/// A synthetic calibration problem: the targets are reached exactly by a
/// sparse set of true weights, the matrix has one dense "national" row.
struct Synthetic {
    m: SparseMatrix,
    y: Vec<f64>,
    weight: Vec<f64>,
    denom: Vec<f64>,
}

fn synthetic(rows: usize, cols: usize, seed: u64) -> Synthetic {
    let mut rng = Rng(seed);
    let sparse = random_matrix(&mut rng, rows - 1, cols, 0.2, 0.5, 3.0);
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    let (ptr, idx, val) = (
        sparse.csr().indptr().raw_storage().to_vec(),
        sparse.csr().indices(),
        sparse.csr().data(),
    );
    for q in 0..rows - 1 {
        for k in ptr[q]..ptr[q + 1] {
            r.push(q as u64 + 1);
            c.push(idx[k] as u64);
            v.push(val[k] as f64);
        }
    }
    for j in 0..cols {
        r.push(0);
        c.push(j as u64);
        v.push(1.0);
    }
    let m = SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap();
    let truth: Vec<f64> = (0..cols)
        .map(|_| {
            if rng.uniform() < 0.3 {
                10.0 * rng.uniform() + 1.0
            } else {
                0.0
            }
        })
        .collect();
    let y = m.mul_vec(&truth).unwrap();
    let denom = y.iter().map(|v| v + 1.0).collect();
    Synthetic {
        m,
        weight: vec![1.0 / rows as f64; rows],
        y,
        denom,
    }
}

fn hyper(intercept: bool, lambda_l2: f64) -> Hyper {
    Hyper {
        lambda_l0: 1e-3,
        lambda_l2,
        lr: 0.05,
        fit_intercept: intercept,
        seed: 1234,
        ..Default::default()
    }
}

impl Synthetic {
    fn problem(&self, hyper: Hyper) -> Problem<'_> {
        Problem::new(&self.m, &self.y, &self.weight, &self.denom, hyper)
    }

    fn state(&self, intercept: bool) -> ParamState {
        let n = self.m.cols();
        let p = (0..n).map(|i| (1.0 + (i % 7) as f32 * 0.3).ln()).collect();
        let a = (0..n).map(|i| 2.0 - (i % 5) as f32 * 0.4).collect();
        ParamState::new(p, a, intercept.then_some(0.5))
    }
}

/// The CUDA backend for `problem`, or None (with a message) without a GPU.
fn gpu<'a>(problem: Problem<'a>) -> Option<CudaBackend> {
    match CudaBackend::available(0) {
        Ok(()) => Some(CudaBackend::new(problem, 0).expect("CUDA backend on cuda:0")),
        Err(e) => {
            assert!(
                !flag("L0_REQUIRE_GPU"),
                "L0_REQUIRE_GPU=1 but no usable GPU: {e}"
            );
            eprintln!("skipped: no usable CUDA device ({e})");
            None
        }
    }
}

fn cpu(problem: Problem<'_>) -> CpuBackend<'_> {
    CpuBackend::new(problem, Some(2)).unwrap()
}

fn train(b: &mut dyn Backend, state: &mut ParamState, epochs: u64) {
    engine::train(b, state, epochs, TestGate::Temperature, &mut Silent).unwrap();
}

fn assert_states_close(got: &ParamState, want: &ParamState, rtol: f64, atol: f64) {
    for (what, g, w) in [
        ("p", &got.p, &want.p),
        ("a", &got.a, &want.a),
        ("m_p", &got.m_p, &want.m_p),
        ("v_p", &got.v_p, &want.v_p),
        ("m_a", &got.m_a, &want.m_a),
        ("v_a", &got.v_a, &want.v_a),
    ] {
        assert_close(what, &f64s(g), &f64s(w), rtol, atol);
    }
    assert_eq!(got.step, want.step);
    match (got.intercept, want.intercept) {
        (Some(g), Some(w)) => assert_close(
            "intercept",
            &[g.value as f64, g.m as f64, g.v as f64],
            &[w.value as f64, w.m as f64, w.v as f64],
            rtol,
            atol,
        ),
        (None, None) => {}
        _ => panic!("intercept present on one backend only"),
    }
}

#[test]
fn gpu_one_epoch_matches_cpu() {
    for intercept in [false, true] {
        let s = synthetic(40, 300, 7);
        let h = hyper(intercept, 1e-4);
        let Some(mut g) = gpu(s.problem(h)) else {
            return;
        };
        let mut c = cpu(s.problem(h));
        let (mut sg, mut sc) = (s.state(intercept), s.state(intercept));
        train(&mut g, &mut sg, 1);
        train(&mut c, &mut sc, 1);
        assert_states_close(&sg, &sc, 1e-5, 1e-9);
    }
}

#[test]
fn gpu_500_epochs_match_cpu_loss_and_sparsity() {
    let s = synthetic(60, 2000, 11);
    let h = hyper(false, 0.0);
    let Some(mut g) = gpu(s.problem(h)) else {
        return;
    };
    let mut c = cpu(s.problem(h));
    let mut summary = Vec::new();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        let mut st = s.state(false);
        train(b, &mut st, 500);
        b.load_state(&st).unwrap();
        b.deterministic_weights(TestGate::Temperature).unwrap();
        b.forward().unwrap();
        b.residual(st.step).unwrap();
        let total = b.losses().unwrap().total(&h);
        summary.push((total, b.weight_summary().unwrap().active as f64));
    }
    let ((lg, ag), (lc, ac)) = (summary[0], summary[1]);
    assert!((lg - lc).abs() <= 0.01 * lc.abs(), "loss gpu {lg} cpu {lc}");
    // 1%, but at least one column: a small model may keep only a few dozen.
    assert!(
        (ag - ac).abs() <= (0.01 * ac).max(1.0),
        "active gpu {ag} cpu {ac}"
    );
}

/// Predictions and gradients (dL/dp, dL/da, dL/db) after sampling at
/// `step` from the problem's state, on one backend.
type Sampled = (Vec<f64>, (Vec<f32>, Vec<f32>, Option<f64>));

fn predictions_and_gradients(b: &mut dyn Backend, s: &Synthetic, icpt: bool, step: u64) -> Sampled {
    b.load_state(&s.state(icpt)).unwrap();
    b.sample_weights(step).unwrap();
    b.forward().unwrap();
    let mut yhat = vec![0.0; s.m.rows()];
    b.read_yhat(&mut yhat).unwrap();
    b.residual(step).unwrap();
    (yhat, b.gradients().unwrap())
}

/// Asserts that the GPU's predictions and gradients (`got`) agree with the
/// CPU's (`want`).
fn assert_sampled_close(got: &Sampled, want: &Sampled) {
    let ((yg, gg), (yc, gc)) = (got, want);
    // The sampled weights agree to about an ulp (see gate_floor).
    assert_close("yhat", yg, yc, 1e-6, 1e-6);
    assert_close("dL/dp", &f64s(&gg.0), &f64s(&gc.0), 1e-5, 1e-9);
    assert_close("dL/da", &f64s(&gg.1), &f64s(&gc.1), 1e-5, 1e-9);
    match (gg.2, gc.2) {
        // The sum of the residuals: the sampled weights agree to about an
        // ulp, so the sum to about 1e-7.
        (Some(x), Some(y)) => assert_close("dL/db", &[x], &[y], 1e-6, 1e-12),
        (None, None) => {}
        _ => panic!("intercept gradient on one backend only"),
    }
}

#[test]
fn gpu_gradients_match_cpu() {
    for intercept in [false, true] {
        let s = synthetic(30, 500, 3);
        let h = hyper(intercept, 1e-3);
        let Some(mut g) = gpu(s.problem(h)) else {
            return;
        };
        let mut c = cpu(s.problem(h));
        let got = predictions_and_gradients(&mut g, &s, intercept, 5);
        let want = predictions_and_gradients(&mut c, &s, intercept, 5);
        assert_eq!(got.1 .2.is_some(), intercept);
        assert_sampled_close(&got, &want);
    }
}

/// How far a sampled weight w = m z may differ between the backends beyond
/// f32 rounding of the product: z = clamp(s (zeta - gamma) + gamma, 0, 1),
/// s = sigmoid((ln u - ln(1 - u) + a) / beta), and CUDA's logf and expf may
/// differ from Rust's by an ulp or two. |ln u| and |ln(1 - u)| are at most
/// 13.9 (u is clamped to [1e-6, 1 - 1e-6]) and |a| at most 20, so the logit's
/// error is at most 4 ulp(48) / beta; s moves by at most a quarter of that,
/// plus 4 ulps of its own expf, and z by (zeta - gamma) times that. Where z
/// is small this absolute error is a large relative one (logf(0.06750426)
/// differs by one ulp), so the comparison needs this floor, scaled by m(p).
fn gate_floor(m: f64, h: &Hyper) -> f64 {
    let ulp48 = (48.0f32.next_up() - 48.0) as f64;
    let eps = f32::EPSILON as f64;
    m * (h.zeta - h.gamma) * (0.25 * 4.0 * ulp48 / h.beta + 4.0 * eps)
}

#[test]
fn gpu_forward_predictions_and_summary_match_cpu() {
    let s = synthetic(50, 1000, 5);
    let h = hyper(true, 0.0);
    let Some(mut g) = gpu(s.problem(h)) else {
        return;
    };
    let mut c = cpu(s.problem(h));
    let mut out = Vec::new();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        b.load_state(&s.state(true)).unwrap();
        b.sample_weights(0).unwrap();
        let mut w = vec![0.0f32; s.m.cols()];
        b.read_weights(&mut w).unwrap();
        b.forward().unwrap();
        let mut yhat = vec![0.0; s.m.rows()];
        b.read_yhat(&mut yhat).unwrap();
        b.residual(0).unwrap();
        let l = b.losses().unwrap();
        b.deterministic_weights(TestGate::Paper).unwrap();
        out.push((w, yhat, l, b.weight_summary().unwrap()));
    }
    let ((wg, yg, lg, sg), (wc, yc, lc, sc)) = (&out[0], &out[1]);
    let st = s.state(true);
    for (i, (g, c)) in wg.iter().zip(wc).enumerate() {
        let (g, c) = (*g as f64, *c as f64);
        let floor = gate_floor((st.p[i] as f64).exp(), &h);
        assert!(
            (g - c).abs() <= 1e-6 * c.abs() + floor,
            "w[{i}]: gpu {g}, cpu {c} (floor {floor:.3e})"
        );
    }
    assert_close("yhat", yg, yc, 1e-6, 1e-9);
    assert_close(
        "losses",
        &[lg.data, lg.l0, lg.l2],
        &[lc.data, lc.l0, lc.l2],
        1e-5,
        1e-12,
    );
    assert_eq!(sg, sc);
}

#[test]
fn gpu_records_the_first_non_finite_step() {
    let mut s = synthetic(10, 50, 1);
    s.weight[3] = f64::INFINITY;
    let h = hyper(false, 0.0);
    let Some(mut g) = gpu(s.problem(h)) else {
        return;
    };
    g.load_state(&s.state(false)).unwrap();
    assert_eq!(g.first_bad_step().unwrap(), None);
    for step in [4, 5] {
        g.sample_weights(step).unwrap();
        g.forward().unwrap();
        g.residual(step).unwrap();
    }
    assert_eq!(g.first_bad_step().unwrap(), Some(4));
}

#[test]
fn replayed_noise_is_refused_by_the_cuda_backend() {
    let s = synthetic(10, 50, 1);
    let table = vec![vec![0.5f32; 50]];
    let mut p = s.problem(hyper(false, 0.0));
    p.noise = Noise::Replay(&table);
    let e = CudaBackend::new(p, 0).err().expect("an error");
    assert!(e.to_string().contains("CPU backend only"), "{e}");
    // Auto keeps replayed noise on the CPU.
    let b = make_backend(Device::Auto, Some(1), p).unwrap();
    assert!(b.describe().starts_with("cpu"), "{}", b.describe());
}

#[test]
fn auto_falls_back_to_cpu_and_explicit_cuda_names_the_problem() {
    let s = synthetic(10, 50, 1);
    let p = s.problem(hyper(false, 0.0));
    let auto = make_backend(Device::Auto, Some(1), p).unwrap();
    match CudaBackend::available(0) {
        Ok(()) => assert!(
            auto.describe().starts_with("cuda:0 ("),
            "{}",
            auto.describe()
        ),
        Err(why) => {
            assert!(auto.describe().starts_with("cpu"), "{}", auto.describe());
            let e = make_backend(Device::Cuda(0), Some(1), p).err().unwrap();
            assert!(matches!(e, L0Error::Cuda(_)));
            assert_eq!(e.to_string(), why.to_string());
        }
    }
    let e = make_backend(Device::Cuda(4096), Some(1), p).err().unwrap();
    assert!(matches!(e, L0Error::Cuda(_)), "{e}");
}

/// Backends to run a generic test body on: the CPU, and cuda:0 when present.
fn backends<'a>(problem: Problem<'a>) -> Vec<Box<dyn Backend + 'a>> {
    let mut v: Vec<Box<dyn Backend + 'a>> = vec![Box::new(cpu(problem))];
    if CudaBackend::available(0).is_ok() {
        v.push(Box::new(CudaBackend::new(problem, 0).unwrap()));
    }
    v
}

#[test]
fn backend_predictions_counts_and_penalties_are_consistent() {
    let s = synthetic(30, 400, 9);
    let h = hyper(true, 1e-3);
    for mut b in backends(s.problem(h)) {
        let who = b.describe();
        let mut st = s.state(true);
        train(b.as_mut(), &mut st, 50);
        assert_eq!(st.step, 50, "{who}");
        b.load_state(&st).unwrap();
        b.deterministic_weights(TestGate::Temperature).unwrap();
        let mut w = vec![0.0f32; s.m.cols()];
        b.read_weights(&mut w).unwrap();
        b.forward().unwrap();
        let mut yhat = vec![0.0; s.m.rows()];
        b.read_yhat(&mut yhat).unwrap();
        let bias = st.intercept.unwrap().value as f64;
        let want: Vec<f64> =
            s.m.mul_vec(&f64s(&w))
                .unwrap()
                .iter()
                .map(|v| v + bias)
                .collect();
        assert_close(&format!("{who}: yhat"), &yhat, &want, 1e-12, 1e-9);
        let summary = b.weight_summary().unwrap();
        let active = w.iter().filter(|&&x| x != 0.0).count() as u64;
        assert_eq!(summary.active, active, "{who}");
        assert_eq!(summary.buckets.iter().sum::<u64>(), active, "{who}");
        let rule = h.rule::<f64>();
        let (l0, l2) = st.p.iter().zip(&st.a).fold((0.0, 0.0), |acc, (&p, &a)| {
            let (pi, m2) = rule.penalties(p as f64, a as f64);
            (acc.0 + pi, acc.1 + m2)
        });
        b.residual(st.step).unwrap();
        let l = b.losses().unwrap();
        assert_close(
            &format!("{who}: penalties"),
            &[l.l0, l.l2],
            &[l0, l2],
            1e-5,
            0.0,
        );
        assert_eq!(b.first_bad_step().unwrap(), None, "{who}");
    }
}

#[test]
fn backend_training_reduces_the_loss() {
    let s = synthetic(40, 600, 21);
    let h = hyper(false, 0.0);
    for mut b in backends(s.problem(h)) {
        let who = b.describe();
        let mut st = s.state(false);
        let mut loss = Vec::new();
        for _ in 0..2 {
            b.load_state(&st).unwrap();
            b.sample_weights(st.step).unwrap();
            b.forward().unwrap();
            b.residual(st.step).unwrap();
            loss.push(b.losses().unwrap().data);
            train(b.as_mut(), &mut st, 300);
        }
        assert!(loss[1] < 0.5 * loss[0], "{who}: loss {loss:?}");
    }
}

/// A regression-shaped matrix: 9,000 short rows (about four nonzeros each)
/// and three dense columns of 9,000 nonzeros, longer than
/// `LONG_COLUMN_NNZ`, so the backward pass sums them over segments and the
/// forward pass packs several rows into a warp.
fn long_columns_problem() -> Synthetic {
    let (rows, cols) = (9000, 60);
    let mut rng = Rng(17);
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for q in 0..rows {
        for j in 0..cols {
            if j < 3 || rng.uniform() < 0.02 {
                r.push(q as u64);
                c.push(j as u64);
                v.push(rng.normal());
            }
        }
    }
    let m = SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap();
    let truth: Vec<f64> = (0..cols)
        .map(|j| if j % 4 == 0 { 1.5 } else { 0.0 })
        .collect();
    let y = m.mul_vec(&truth).unwrap();
    Synthetic {
        m,
        weight: vec![1.0 / rows as f64; rows],
        y,
        denom: vec![1.0; rows],
    }
}

#[test]
fn gpu_long_columns_and_short_rows_match_cpu() {
    let s = long_columns_problem();
    assert!(s.m.csc().indptr().raw_storage()[1] > l0::backend::cuda::LONG_COLUMN_NNZ);
    let h = Hyper {
        magnitude: l0::hard_concrete::Magnitude::Linear,
        ..hyper(true, 1e-3)
    };
    let Some(mut g) = gpu(s.problem(h)) else {
        return;
    };
    let mut c = cpu(s.problem(h));
    let got = predictions_and_gradients(&mut g, &s, true, 3);
    let want = predictions_and_gradients(&mut c, &s, true, 3);
    assert_sampled_close(&got, &want);
    let (mut sg, mut sc) = (s.state(true), s.state(true));
    train(&mut g, &mut sg, 1);
    train(&mut c, &mut sc, 1);
    assert_states_close(&sg, &sc, 1e-5, 1e-9);
}

#[test]
fn gpu_weight_bounds_match_cpu_and_hold() {
    let s = synthetic(40, 300, 13);
    let h = hyper(false, 0.0);
    // Bounds that bind: the state starts at p up to ln(2.8), the bound is
    // ln(1.5) for even columns and ln(2.5) for odd ones.
    let bound: Vec<f32> = (0..300)
        .map(|i| if i % 2 == 0 { 1.5f32.ln() } else { 2.5f32.ln() })
        .collect();
    let mut p = s.problem(h);
    p.max_p = Some(&bound);
    let Some(mut g) = gpu(p) else {
        return;
    };
    let mut c = cpu(p);
    let start = {
        let mut st = s.state(false);
        st.p.iter_mut()
            .zip(&bound)
            .for_each(|(p, &b)| *p = p.min(b));
        st
    };
    let (mut sg, mut sc) = (start.clone(), start.clone());
    train(&mut g, &mut sg, 1);
    train(&mut c, &mut sc, 1);
    assert_states_close(&sg, &sc, 1e-5, 1e-9);
    train(&mut g, &mut sg, 60);
    for (i, (&pg, &b)) in sg.p.iter().zip(&bound).enumerate() {
        assert!(pg <= b, "column {i}: p {pg} above its bound {b}");
    }
    assert!(
        sg.p.iter().zip(&bound).any(|(p, b)| p == b),
        "no bound binds"
    );
}

#[test]
fn gpu_tolerance_bands_and_l1_loss_match_cpu() {
    // Half the targets get a band wide enough to hold them at the start, the
    // others none; under l1 a cap binds on the targets furthest off.
    let s = synthetic(40, 300, 17);
    let band: Vec<f64> =
        s.y.iter()
            .enumerate()
            .map(|(q, y)| if q % 2 == 0 { 0.3 * y.abs() } else { 0.0 })
            .collect();
    for shape in [
        Shape::Square,
        Shape::Abs { cap: f64::INFINITY },
        Shape::Abs { cap: 0.2 },
    ] {
        let mut p = s.problem(hyper(true, 0.0));
        p.band = Some(&band);
        p.shape = shape;
        let Some(mut g) = gpu(p) else {
            return;
        };
        let mut c = cpu(p);
        let got = predictions_and_gradients(&mut g, &s, true, 3);
        let want = predictions_and_gradients(&mut c, &s, true, 3);
        assert_sampled_close(&got, &want);
        let (mut sg, mut sc) = (s.state(true), s.state(true));
        train(&mut g, &mut sg, 20);
        train(&mut c, &mut sc, 20);
        assert_states_close(&sg, &sc, 1e-4, 1e-8);
        let (lg, lc) = (g.losses().unwrap(), c.losses().unwrap());
        assert!(
            (lg.data - lc.data).abs() <= 1e-9 * lc.data.abs().max(1e-12),
            "{shape:?}: {lg:?} vs {lc:?}"
        );
    }
}

#[test]
fn gpu_lower_bounds_floors_and_a_conserved_total_match_cpu() {
    // Lower bounds that bind (ln 0.9 and ln 1.2 by parity), their floors,
    // and a total the shift restores after every step (kernels
    // expected_gates, conserve_sums, conserve_shift; the floor in
    // deterministic_weights).
    let s = synthetic(40, 300, 19);
    let h = hyper(false, 0.0);
    let floor: Vec<f32> = (0..300)
        .map(|i| if i % 2 == 0 { 0.9 } else { 1.2 })
        .collect();
    let min_p: Vec<f32> = floor
        .iter()
        .map(|&f| l0::constraints::floor_bounds(f as f64).1)
        .collect();
    let mut p = s.problem(h);
    p.min_p = Some(&min_p);
    p.floor = Some(&floor);
    p.total = Some(400.0);
    let Some(mut g) = gpu(p) else {
        return;
    };
    let mut c = cpu(p);
    let start = s.state(false);
    let (mut sg, mut sc) = (start.clone(), start.clone());
    train(&mut g, &mut sg, 1);
    train(&mut c, &mut sc, 1);
    assert_states_close(&sg, &sc, 1e-5, 1e-9);
    train(&mut g, &mut sg, 30);
    train(&mut c, &mut sc, 30);
    assert_states_close(&sg, &sc, 1e-3, 1e-6);
    for (i, (&pg, &b)) in sg.p.iter().zip(&min_p).enumerate() {
        assert!(pg >= b, "column {i}: p {pg} below its bound {b}");
    }
    g.deterministic_weights(l0::TestGate::Temperature).unwrap();
    let mut w = vec![0.0f32; 300];
    g.read_weights(&mut w).unwrap();
    for (i, (&x, &f)) in w.iter().zip(&floor).enumerate() {
        assert!(
            x == 0.0 || x >= f,
            "column {i}: weight {x} below its floor {f}"
        );
    }
    // Two models trained together (each its own multiplier and shift, the
    // batch's per-model slices): as on the CPU, each holding the total.
    let lambdas = [0.001, 0.05];
    let mut gb = CudaBackend::with_models(p, &lambdas, 0).unwrap();
    let mut cb = CpuBackend::with_models(p, &lambdas, Some(2)).unwrap();
    let (mut sg, mut sc) = (vec![start.clone(); 2], vec![start.clone(); 2]);
    engine::train_models(&mut gb, &mut sg, 20, TestGate::Temperature, &mut Silent).unwrap();
    engine::train_models(&mut cb, &mut sc, 20, TestGate::Temperature, &mut Silent).unwrap();
    let means = l0::hard_concrete::GateMeans::new(&h.rule::<f32>().gate);
    for (g, c) in sg.iter().zip(&sc) {
        assert_states_close(g, c, 1e-3, 1e-6);
        let total: f64 =
            g.p.iter()
                .zip(&g.a)
                .map(|(&p, &a)| (p as f64).exp() * means.at(a) as f64)
                .sum();
        assert!((total - 400.0).abs() < 1e-4 * 400.0, "{total}");
    }
}
