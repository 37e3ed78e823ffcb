//! A report epoch on the CPU computes what the report reads (penalties
//! before the update, deterministic weights, their counts and predictions)
//! inside the step's own pass over the matrix
//! (`CpuBackend::step_reported`). Its reports are the bits of the separate
//! passes (`l0::backend::step_then_report`, what every other backend
//! does), and reports never change the training: the final state is the
//! same bits whatever the report schedule.

mod common;

use common::{random_matrix, Rng};
use l0::backend::cpu::CpuBackend;
use l0::backend::{Backend, Hyper, Losses, ParamState, Problem, WeightSummary};
use l0::engine::{train, Observer, Snapshot};
use l0::hard_concrete::TestGate;
use l0::Result;

/// The CPU backend with the trait's default `step_reported`: separate
/// passes for the losses, the step, the deterministic weights and their
/// forward product.
struct Separate<'a>(CpuBackend<'a>);

impl Backend for Separate<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn rows(&self) -> usize {
        self.0.rows()
    }
    fn models(&self) -> usize {
        self.0.models()
    }
    fn select(&mut self, k: usize) -> Result<()> {
        self.0.select(k)
    }
    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        self.0.load_state(s)
    }
    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        self.0.store_state(s)
    }
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        self.0.sample_weights(step)
    }
    fn deterministic_weights(&mut self, rule: TestGate) -> Result<()> {
        self.0.deterministic_weights(rule)
    }
    fn forward(&mut self) -> Result<()> {
        self.0.forward()
    }
    fn residual(&mut self, step: u64) -> Result<()> {
        self.0.residual(step)
    }
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        self.0.step(step, sample_next)
    }
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        self.0.gradients()
    }
    fn losses(&mut self) -> Result<Losses> {
        self.0.losses()
    }
    fn first_bad_step(&mut self) -> Result<Option<u64>> {
        self.0.first_bad_step()
    }
    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()> {
        self.0.read_yhat(out)
    }
    fn read_weights(&mut self, out: &mut [f32]) -> Result<()> {
        self.0.read_weights(out)
    }
    fn weight_summary(&mut self) -> Result<WeightSummary> {
        self.0.weight_summary()
    }
}

/// Every report as bits: epoch, losses, predictions and weight counts.
struct Reports {
    every: Option<u64>,
    bits: Vec<u64>,
}

impl Observer for Reports {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn report(&mut self, s: &Snapshot) -> Result<()> {
        let l = s.losses;
        self.bits.push(s.epoch);
        self.bits
            .extend([l.data, l.l0, l.l2].iter().map(|x| x.to_bits()));
        self.bits.extend(s.yhat.iter().map(|y| y.to_bits()));
        self.bits.push(s.weights.active);
        self.bits.extend(s.weights.buckets);
        Ok(())
    }
}

/// 40,000 columns (forward accumulators), an L2 term and weight caps, so
/// that every penalty and the projection take part.
fn problem_parts() -> (l0::SparseMatrix, Vec<f64>, Vec<f32>) {
    let m = random_matrix(&mut Rng(4), 30, 40_000, 0.05, 0.0, 2.0);
    let y: Vec<f64> = (0..30).map(|q| 800.0 + 10.0 * q as f64).collect();
    let caps: Vec<f32> = (0..40_000).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
    (m, y, caps)
}

/// Trains 10 epochs from a fixed start; returns the final state's bits
/// and the reports.
fn run(b: &mut dyn Backend, every: Option<u64>) -> (Vec<u32>, Vec<u64>) {
    let n = 40_000;
    let mut state = ParamState::new(
        (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect(),
        (0..n).map(|i| ((i % 11) as f32 - 5.0) * 0.3).collect(),
        None,
    );
    let mut obs = Reports {
        every,
        bits: Vec::new(),
    };
    assert_eq!(
        train(b, &mut state, 10, TestGate::Temperature, &mut obs).unwrap(),
        10
    );
    let bits = [
        &state.p, &state.a, &state.m_p, &state.v_p, &state.m_a, &state.v_a,
    ]
    .into_iter()
    .flatten()
    .map(|x| x.to_bits())
    .collect();
    (bits, obs.bits)
}

#[test]
fn fused_reports_are_the_separate_passes_bit_for_bit() {
    let (m, y, caps) = problem_parts();
    let (weight, denom) = (vec![1.0; 30], y.clone());
    let hyper = Hyper {
        lambda_l0: 1e-3,
        lambda_l2: 1e-4,
        lr: 0.1,
        seed: 7,
        ..Default::default()
    };
    let problem = Problem {
        max_p: Some(&caps),
        ..Problem::new(&m, &y, &weight, &denom, hyper)
    };
    for every in [Some(1), Some(3)] {
        let fused = run(&mut CpuBackend::new(problem, Some(2)).unwrap(), every);
        let separate = run(
            &mut Separate(CpuBackend::new(problem, Some(3)).unwrap()),
            every,
        );
        assert!(fused.1.len() > 100, "reports were taken");
        assert!(fused == separate, "report every {every:?}");
    }
    // Reports do not change the training.
    let quiet = run(&mut CpuBackend::new(problem, Some(2)).unwrap(), None);
    let busy = run(&mut CpuBackend::new(problem, Some(2)).unwrap(), Some(1));
    assert_eq!(quiet.0, busy.0);
}
