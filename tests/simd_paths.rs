//! Every vector path of the CPU backend (`L0_SIMD`: AVX-512, AVX2, the
//! baseline) trains the same bits, for every thread count: a fit's state,
//! its reported predictions and weights, with the forward product both
//! scattered from the column passes and gathered over rows, for the
//! calibration switches (exp magnitude, gates) and the regression ones
//! (linear magnitude, with and without gates), alone and as a batch of
//! models side by side. Each path this machine has is run (the test names
//! them); paths it lacks are refused by `SimdPath::parse`, tested in
//! `src/backend/simd.rs`.

mod common;

use common::{random_matrix, Rng};
use l0::backend::cpu::CpuBackend;
use l0::backend::simd::SimdPath;
use l0::backend::{Backend, Hyper, ParamState, Problem};
use l0::engine::{train_models, Observer, Snapshot};
use l0::hard_concrete::{Magnitude, TestGate};
use l0::SparseMatrix;

/// Collects every report's predictions and weight counts as bits.
#[derive(Default)]
struct Reports(Vec<u64>);

impl Observer for Reports {
    fn report_every(&self) -> Option<u64> {
        Some(3)
    }
    fn report(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.0.extend(s.yhat.iter().map(|y| y.to_bits()));
        self.0.push(s.losses.data.to_bits());
        self.0.push(s.losses.l0.to_bits());
        self.0.push(s.weights.active);
        self.0.extend(s.weights.buckets);
        Ok(())
    }
}

/// The states, final weights and reports (all as bits) of `lambdas.len()`
/// models trained together for 7 epochs on `path` with `threads` threads.
fn train(
    problem: Problem,
    lambdas: &[f64],
    path: SimdPath,
    threads: usize,
) -> (Vec<u32>, Vec<u32>, Vec<u64>) {
    let n = problem.matrix.cols();
    let mut b = CpuBackend::with_models(problem, lambdas, Some(threads)).unwrap();
    b.set_simd(path).unwrap();
    assert_eq!(b.simd(), path);
    let mut rng = Rng(5);
    let init = |rng: &mut Rng, lo: f64, hi: f64| -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (hi - lo) * rng.uniform()) as f32)
            .collect()
    };
    let mut states: Vec<ParamState> = lambdas
        .iter()
        .map(|_| {
            let intercept = problem.hyper.fit_intercept.then_some(0.5);
            ParamState::new(
                init(&mut rng, -1.0, 1.0),
                init(&mut rng, -3.0, 3.0),
                intercept,
            )
        })
        .collect();
    let mut reports = Reports::default();
    train_models(&mut b, &mut states, 7, TestGate::Temperature, &mut reports).unwrap();
    let mut weights = Vec::new();
    for k in 0..lambdas.len() {
        let mut w = vec![0.0f32; n];
        b.select(k).unwrap();
        b.read_weights(&mut w).unwrap();
        weights.extend(w.iter().map(|x| x.to_bits()));
    }
    (
        states.iter().flat_map(state_bits).collect(),
        weights,
        reports.0,
    )
}

/// A state's parameters, moments and intercept as bits (+0 and -0 differ).
fn state_bits(s: &ParamState) -> Vec<u32> {
    let vecs = [&s.p, &s.a, &s.m_p, &s.v_p, &s.m_a, &s.v_a];
    let scalars = s.intercept.map(|b| [b.value, b.m, b.v]);
    vecs.into_iter()
        .flatten()
        .chain(scalars.iter().flatten())
        .map(|x| x.to_bits())
        .collect()
}

/// Asserts that every available path and 1, 2 and 3 threads give the bits
/// of the best path with one thread.
fn same_bits_on_every_path(m: &SparseMatrix, hyper: Hyper, lambdas: &[f64]) {
    let q = m.rows();
    let mut rng = Rng(9);
    let y: Vec<f64> = (0..q).map(|_| 10.0 + 50.0 * rng.uniform()).collect();
    let (weight, denom) = (vec![1.0; q], y.clone());
    let problem = Problem::new(m, &y, &weight, &denom, hyper);
    let paths = SimdPath::available();
    let want = train(problem, lambdas, paths[0], 1);
    for &path in &paths {
        for threads in [1, 2, 3] {
            let got = train(problem, lambdas, path, threads);
            assert!(
                got == want,
                "{} with {threads} threads differs from {} with 1",
                path.name(),
                paths[0].name()
            );
        }
    }
    eprintln!(
        "simd paths compared: {}",
        paths
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// 40,000 columns (more than 16 chunks of 2048): the forward product is
/// scattered from the column passes.
fn scattered() -> SparseMatrix {
    random_matrix(&mut Rng(1), 40, 40_000, 0.05, 0.0, 2.0)
}

/// 5,000 columns: the forward product gathers over CSR row segments.
fn gathered() -> SparseMatrix {
    random_matrix(&mut Rng(2), 60, 5_000, 0.2, 0.0, 2.0)
}

fn calibration() -> Hyper {
    Hyper {
        lambda_l0: 1e-3,
        lr: 0.1,
        seed: 3,
        ..Default::default()
    }
}

#[test]
fn calibration_scattered_same_bits_on_every_path() {
    same_bits_on_every_path(&scattered(), calibration(), &[1e-3]);
}

#[test]
fn calibration_gathered_same_bits_on_every_path() {
    same_bits_on_every_path(&gathered(), calibration(), &[1e-3]);
}

#[test]
fn sweep_batches_same_bits_on_every_path() {
    // Nine models: one full group of eight lanes and one more.
    let lambdas: Vec<f64> = (0..9).map(|k| 1e-4 * (k + 1) as f64).collect();
    same_bits_on_every_path(&scattered(), calibration(), &lambdas);
    same_bits_on_every_path(&gathered(), calibration(), &lambdas[..3]);
}

#[test]
fn regression_switches_same_bits_on_every_path() {
    for use_gates in [true, false] {
        let hyper = Hyper {
            magnitude: Magnitude::Linear,
            use_gates,
            fit_intercept: true,
            lambda_l2: 1e-3,
            ..calibration()
        };
        same_bits_on_every_path(&gathered(), hyper, &[1e-3, 2e-3]);
        same_bits_on_every_path(&scattered(), hyper, &[1e-3]);
    }
}
