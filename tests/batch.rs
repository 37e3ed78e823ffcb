//! Models trained together on one CPU backend
//! ([`l0::backend::cpu::CpuBackend::with_models`], [`l0::engine::train_models`])
//! against the same models trained alone: every state bit and every report
//! (losses, predictions, active counts) equal, on both forward-product
//! shapes, with 2 to 16 models (one and two groups of lanes), intercepts,
//! weight caps, long columns, signed values, replayed noise, no gates, tiny
//! problems, an early stop and the gradients after it; and the batch's
//! refusals (a bad λ) and divergence (named model) as a single fit's.
//!
//! The `gpu_*` tests run the same comparisons on a GPU
//! (`l0::backend::cuda::CudaBackend::with_models` against its single fits,
//! 1 to 8 models at each batch width) and skip with a message without one
//! (`L0_REQUIRE_GPU=1` turns the skip into a failure).

mod common;

use common::{column_matrix, state_bits, Rng};
use l0::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use l0::backend::cuda::CudaBackend;
use l0::backend::{Backend, Hyper, Noise, ParamState, Problem};
use l0::calibration::{Calibration, CalibrationParams, FitParams};
use l0::engine::{self, Observer, Snapshot};
use l0::hard_concrete::{Magnitude, TestGate};
use l0::{Device, Regression, RegressionFitParams, RegressionParams, SparseMatrix};

/// One report: model, step, loss bits, prediction bits, active count.
type Report = (usize, u64, [u64; 3], Vec<u64>, u64);

/// Records every report's bits.
#[derive(Default)]
struct Recorder {
    every: Option<u64>,
    log: Vec<Report>,
}

impl Observer for Recorder {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn report(&mut self, s: &Snapshot) -> l0::Result<()> {
        let l = s.losses;
        self.log.push((
            s.model,
            s.step,
            [l.data.to_bits(), l.l0.to_bits(), l.l2.to_bits()],
            s.yhat.iter().map(|y| y.to_bits()).collect(),
            s.weights.active,
        ));
        Ok(())
    }
}

/// `rows x cols` with about `per_col` nonzeros per column (columns in
/// `long` filled in every row), values in [0.5, 1.5), negated at random
/// when `signed`.
fn matrix(rows: usize, cols: usize, per_col: usize, long: &[usize], signed: bool) -> SparseMatrix {
    let mut rng = Rng(rows as u64 * 31 + cols as u64);
    column_matrix(&mut rng, (rows, cols), per_col, long, signed)
}

/// 0, then 3e-4, 9e-4, ...: `k` strengths.
fn lambdas(k: usize) -> Vec<f64> {
    (0..k)
        .map(|i| match i {
            0 => 0.0,
            _ => 1e-4 * 3f64.powi(i as i32),
        })
        .collect()
}

/// How a comparison is set up.
#[derive(Clone, Copy)]
struct Case<'a> {
    hyper: Hyper,
    intercept: bool,
    caps: Option<&'a [f32]>,
    noise: Noise<'a>,
    epochs: u64,
    every: Option<u64>,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            hyper: Hyper::default(),
            intercept: false,
            caps: None,
            noise: Noise::Philox,
            epochs: 6,
            every: None,
        }
    }
}

/// Where a comparison trains.
#[derive(Clone, Copy, Debug)]
enum On {
    /// The batch on 3 threads, each model alone on 1.
    Cpu,
    /// cuda:0.
    #[cfg(feature = "cuda")]
    Gpu,
}

/// The backend of `lambdas.len()` models trained together on `on`.
fn batch_on<'a>(on: On, problem: Problem<'a>, lambdas: &[f64]) -> Box<dyn Backend + 'a> {
    match on {
        On::Cpu => Box::new(CpuBackend::with_models(problem, lambdas, Some(3)).unwrap()),
        #[cfg(feature = "cuda")]
        On::Gpu => Box::new(CudaBackend::with_models(problem, lambdas, 0).unwrap()),
    }
}

/// The backend of one model on `on`.
fn single_on<'a>(on: On, problem: Problem<'a>) -> Box<dyn Backend + 'a> {
    match on {
        On::Cpu => Box::new(CpuBackend::new(problem, Some(1)).unwrap()),
        #[cfg(feature = "cuda")]
        On::Gpu => Box::new(CudaBackend::new(problem, 0).unwrap()),
    }
}

/// True when cuda:0 can train; otherwise says why the test skips (a
/// failure under `L0_REQUIRE_GPU=1`).
#[cfg(feature = "cuda")]
fn have_gpu() -> bool {
    match CudaBackend::available(0) {
        Ok(()) => true,
        Err(e) => {
            let required = std::env::var("L0_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "L0_REQUIRE_GPU=1 but: {e}");
            common::notice(&format!("skipped, no GPU: {e}"));
            false
        }
    }
}

/// Trains `lambdas.len()` models together on 3 threads and each alone on
/// 1, and compares states and reports bit for bit.
fn together_equals_alone(m: &SparseMatrix, lambdas: &[f64], case: Case) {
    together_equals_alone_on(On::Cpu, m, lambdas, case);
}

/// [`together_equals_alone`] on `on`.
/// The per-row vectors of a case on `m` (targets, loss weights, error
/// scales) and the state every model starts from.
fn case_inputs(m: &SparseMatrix, case: &Case) -> ([Vec<f64>; 3], ParamState) {
    let (q, n) = (m.rows(), m.cols());
    let mut rng = Rng(5);
    let y: Vec<f64> = (0..q).map(|_| 3.0 + 10.0 * rng.uniform()).collect();
    let (w, d) = (vec![1.0 / q as f64; q], vec![1.0; q]);
    let p0: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
    let a0: Vec<f32> = (0..n).map(|_| (rng.uniform() * 4.0 - 2.0) as f32).collect();
    let start = ParamState::new(p0, a0, case.intercept.then_some(4.0));
    ([y, w, d], start)
}

fn together_equals_alone_on(on: On, m: &SparseMatrix, lambdas: &[f64], case: Case) {
    let n = m.cols();
    let ([y, w, d], start) = case_inputs(m, &case);
    let problem = Problem {
        noise: case.noise,
        max_p: case.caps,
        ..Problem::new(m, &y, &w, &d, case.hyper)
    };
    let mut batch = batch_on(on, problem, lambdas);
    assert_eq!(batch.models(), lambdas.len());
    let mut states = vec![start.clone(); lambdas.len()];
    let mut together = Recorder {
        every: case.every,
        ..Default::default()
    };
    let (epochs, test) = (case.epochs, TestGate::Temperature);
    engine::train_models(&mut *batch, &mut states, epochs, test, &mut together).unwrap();
    for (k, &lambda_l0) in lambdas.iter().enumerate() {
        let hyper = Hyper {
            lambda_l0,
            ..case.hyper
        };
        let mut single = single_on(on, Problem { hyper, ..problem });
        let mut state = start.clone();
        let mut alone = Recorder {
            every: case.every,
            ..Default::default()
        };
        engine::train(&mut *single, &mut state, epochs, test, &mut alone).unwrap();
        assert_eq!(
            state_bits(&state),
            state_bits(&states[k]),
            "{on:?} model {k}"
        );
        // The weights each backend holds after its last report.
        let (mut w_batch, mut w_alone) = (vec![0.0f32; n], vec![0.0f32; n]);
        batch.select(k).unwrap();
        batch.read_weights(&mut w_batch).unwrap();
        single.read_weights(&mut w_alone).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&w_batch), bits(&w_alone), "{on:?} model {k}: weights");
        let mine: Vec<&Report> = together.log.iter().filter(|r| r.0 == k).collect();
        let theirs: Vec<&Report> = alone.log.iter().collect();
        assert_eq!(mine.len(), theirs.len(), "model {k}: reports");
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(
                (a.1, &a.2, &a.3, a.4),
                (b.1, &b.2, &b.3, b.4),
                "{on:?} model {k}"
            );
        }
    }
}

/// 4,200 x 33,000 (17 chunks: the CPU's forward product is scattered) with
/// long columns 5 and 32,999 and signed values, and caps of 0 on every
/// fifth column and 0.7 elsewhere.
fn scattered_with_caps() -> (SparseMatrix, Vec<f32>) {
    let m = matrix(4200, 33_000, 3, &[5, 32_999], true);
    assert_eq!(m.long_columns().cols, vec![5, 32_999]);
    let caps = (0..m.cols())
        .map(|i| if i % 5 == 0 { 0.0 } else { 0.7 })
        .collect();
    (m, caps)
}

/// Linear magnitudes, intercepts, `caps`, 7 epochs reported every 3.
fn full_case(caps: &[f32]) -> Case<'_> {
    Case {
        hyper: Hyper {
            magnitude: Magnitude::Linear,
            lr: 0.05,
            seed: 3,
            fit_intercept: true,
            ..Default::default()
        },
        intercept: true,
        caps: Some(caps),
        epochs: 7,
        every: Some(3),
        ..Default::default()
    }
}

#[test]
fn sixteen_models_scattered_with_intercepts_caps_long_columns_and_signs() {
    let (m, caps) = scattered_with_caps();
    together_equals_alone(&m, &lambdas(16), full_case(&caps));
}

#[test]
fn thirteen_models_scattered_with_caps() {
    let m = matrix(300, 33_000, 4, &[], false);
    let caps: Vec<f32> = (0..m.cols())
        .map(|i| if i % 3 == 0 { 0.0 } else { 0.3 })
        .collect();
    let hyper = Hyper {
        lr: 0.1,
        seed: 4,
        ..Default::default()
    };
    let case = Case {
        hyper,
        caps: Some(&caps),
        every: Some(2),
        ..Default::default()
    };
    together_equals_alone(&m, &lambdas(13), case);
}

#[test]
fn gathered_shape_with_replayed_noise_no_gates_and_intercepts() {
    // 300 columns: the forward product is gathered over row segments.
    let m = matrix(5000, 300, 30, &[7], true);
    let table: Vec<Vec<f32>> = (0..3)
        .map(|t| {
            (0..m.cols())
                .map(|i| ((i * 7 + t * 13) % 97) as f32 / 97.0)
                .collect()
        })
        .collect();
    let hyper = Hyper {
        magnitude: Magnitude::Linear,
        lr: 0.05,
        seed: 5,
        ..Default::default()
    };
    let replay = Case {
        hyper,
        intercept: true,
        noise: Noise::Replay(&table),
        every: Some(2),
        ..Default::default()
    };
    together_equals_alone(&m, &lambdas(8), replay);
    together_equals_alone(
        &m,
        &lambdas(9),
        Case {
            every: Some(4),
            ..replay
        },
    );
    let no_gates = Case {
        hyper: Hyper {
            use_gates: false,
            ..hyper
        },
        noise: Noise::Philox,
        every: Some(4),
        ..replay
    };
    together_equals_alone(&m, &lambdas(5), no_gates);
}

#[test]
fn tiny_problems() {
    let linear = Hyper {
        magnitude: Magnitude::Linear,
        lr: 0.05,
        seed: 5,
        ..Default::default()
    };
    let case = Case {
        hyper: linear,
        intercept: true,
        epochs: 5,
        every: Some(1),
        ..Default::default()
    };
    together_equals_alone(&matrix(1, 1, 1, &[], true), &lambdas(9), case);
    let plain = Case {
        epochs: 5,
        ..Default::default()
    };
    together_equals_alone(&matrix(1, 3, 1, &[], false), &lambdas(3), plain);
    together_equals_alone(&matrix(40, 1, 10, &[], false), &lambdas(2), plain);
}

/// Asks to stop after `at` epochs.
struct StopAt(u64, u64);
impl Observer for StopAt {
    fn report_every(&self) -> Option<u64> {
        Some(2)
    }
    fn stop_requested(&mut self) -> bool {
        self.1 += 1;
        self.1 >= self.0
    }
}

#[test]
fn an_early_stop_and_the_gradients_after_it_are_each_models_own() {
    early_stop_and_gradients(On::Cpu, 10);
}

/// Trains `models` models together on `on` until an observer stops them,
/// then compares states and gradients with each model's single fit.
fn early_stop_and_gradients(on: On, models: usize) {
    for (rows, cols) in [(300usize, 33_000usize), (5000, 200)] {
        let m = matrix(rows, cols, 3, &[], true);
        let y: Vec<f64> = (0..rows).map(|i| (i % 7) as f64).collect();
        let (w, d) = (vec![1.0; rows], vec![1.0; rows]);
        let hyper = Hyper {
            magnitude: Magnitude::Linear,
            lr: 0.05,
            seed: 5,
            ..Default::default()
        };
        let problem = Problem::new(&m, &y, &w, &d, hyper);
        let lam = lambdas(models);
        let start = ParamState::new(vec![0.3; cols], vec![0.1; cols], Some(1.0));
        let mut batch = batch_on(on, problem, &lam);
        let mut states = vec![start.clone(); lam.len()];
        let test = TestGate::Temperature;
        let run = engine::train_models(&mut *batch, &mut states, 10, test, &mut StopAt(3, 0));
        assert_eq!(run.unwrap(), 3);
        batch.sample_weights(3).unwrap();
        batch.forward().unwrap();
        batch.residual(3).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (k, &lambda_l0) in lam.iter().enumerate() {
            let alone = Problem {
                hyper: Hyper { lambda_l0, ..hyper },
                ..problem
            };
            let mut single = single_on(on, alone);
            let mut state = start.clone();
            engine::train(&mut *single, &mut state, 10, test, &mut StopAt(3, 0)).unwrap();
            assert_eq!(
                state_bits(&state),
                state_bits(&states[k]),
                "{on:?} model {k}"
            );
            single.load_state(&state).unwrap();
            single.sample_weights(3).unwrap();
            single.forward().unwrap();
            single.residual(3).unwrap();
            batch.select(k).unwrap();
            let (g1, g2) = (batch.gradients().unwrap(), single.gradients().unwrap());
            assert_eq!(bits(&g1.0), bits(&g2.0), "model {k}: dL/dp");
            assert_eq!(bits(&g1.1), bits(&g2.1), "model {k}: dL/da");
            assert_eq!(
                g1.2.map(f64::to_bits),
                g2.2.map(f64::to_bits),
                "model {k}: dL/db"
            );
        }
    }
}

/// A 50 x 4 regression problem.
fn small() -> (SparseMatrix, Vec<f64>) {
    let (n, k) = (50usize, 4usize);
    let x: Vec<f64> = (0..n * k)
        .map(|i| ((i * 37 % 11) as f64) / 5.0 - 1.0)
        .collect();
    let y: Vec<f64> = (0..n).map(|q| 1.0 + x[q * k] + (q % 3) as f64).collect();
    (SparseMatrix::from_dense(n, k, &x).unwrap(), y)
}

#[test]
fn a_lambda_a_single_fit_refuses_is_refused_by_a_batch_with_the_same_message() {
    let (m, y) = small();
    let opts = RegressionFitParams {
        epochs: 5,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let params = RegressionParams {
        seed: Some(3),
        ..Default::default()
    };
    let cal_opts = FitParams {
        epochs: 5,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let cal_params = CalibrationParams {
        seed: Some(3),
        ..Default::default()
    };
    let y_pos: Vec<f64> = y.iter().map(|v| v.abs() + 1.0).collect();
    for bad in [-1.0, f64::NAN, 1e39] {
        let mut single = Regression::new(4, params.clone()).unwrap();
        let o = RegressionFitParams {
            lambda_l0: bad,
            ..opts.clone()
        };
        let want = single.fit(&m, &y, &o).unwrap_err().to_string();
        let mut models: Vec<Regression> = (0..2)
            .map(|_| Regression::new(4, params.clone()).unwrap())
            .collect();
        let mut refs: Vec<&mut Regression> = models.iter_mut().collect();
        let got = Regression::fit_together(&mut refs, &[0.01, bad], &m, &y, &opts);
        assert_eq!(got.unwrap_err().to_string(), want, "lambda {bad}");
        assert_eq!(models[0].state().step, 0, "nothing trained");

        let mut single = Calibration::new(4, cal_params.clone()).unwrap();
        let o = FitParams {
            lambda_l0: bad,
            ..cal_opts.clone()
        };
        let want = single.fit(&m, &y_pos, &o).unwrap_err().to_string();
        let mut models: Vec<Calibration> = (0..2)
            .map(|_| Calibration::new(4, cal_params.clone()).unwrap())
            .collect();
        let mut refs: Vec<&mut Calibration> = models.iter_mut().collect();
        let got = Calibration::fit_together(
            &mut refs,
            &[0.01, bad],
            &m,
            &y_pos,
            &cal_opts,
            &mut |_, _| Ok(()),
        );
        assert_eq!(got.unwrap_err().to_string(), want, "lambda {bad}");
    }
}

#[test]
fn a_diverging_batch_stops_and_names_the_first_model_that_diverged() {
    diverging_batch(On::Cpu);
}

/// A batch of two on `on` whose first model diverges at once.
fn diverging_batch(on: On) {
    let m = matrix(20, 200, 5, &[], false);
    let mut y = vec![10.0; 20];
    y[0] = 1e300; // the squared error overflows at the first epoch
    let (w, d) = (vec![1.0; 20], vec![1.0; 20]);
    let problem = Problem::new(&m, &y, &w, &d, Hyper::default());
    let start = ParamState::new(vec![0.0; 200], vec![0.0; 200], None);
    let test = TestGate::Temperature;
    let mut single = single_on(on, problem);
    let mut s = start.clone();
    let alone = engine::train(&mut *single, &mut s, 10, test, &mut Recorder::default());
    let alone = alone.unwrap_err().to_string();
    assert_eq!(
        alone,
        "training diverged at epoch 1: the loss is not finite"
    );
    let mut batch = batch_on(on, problem, &[0.01, 0.0]);
    let mut states = vec![start.clone(); 2];
    let got = engine::train_models(&mut *batch, &mut states, 10, test, &mut Recorder::default());
    assert_eq!(
        got.unwrap_err().to_string(),
        "training diverged at epoch 1: the loss of model 1 of 2 is not finite"
    );
    assert_eq!(
        states,
        vec![start; 2],
        "a failed batch leaves the states unchanged"
    );
}

#[test]
fn a_failed_batch_leaves_each_model_its_state() {
    let m = matrix(20, 200, 5, &[], false);
    let mut y = vec![10.0; 20];
    y[0] = 1e300; // the squared error overflows at the first epoch
    let params = CalibrationParams {
        seed: Some(2),
        ..Default::default()
    };
    let opts = FitParams {
        epochs: 5,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let mut models: Vec<Calibration> = (0..3)
        .map(|_| Calibration::new(200, params.clone()).unwrap())
        .collect();
    let before: Vec<Vec<u32>> = models.iter().map(|c| state_bits(c.state())).collect();
    let mut refs: Vec<&mut Calibration> = models.iter_mut().collect();
    let got =
        Calibration::fit_together(&mut refs, &[1e-3, 1e-2, 0.1], &m, &y, &opts, &mut |_, _| {
            Ok(())
        });
    assert_eq!(
        got.unwrap_err().to_string(),
        "training diverged at epoch 1: the loss of model 1 of 3 is not finite"
    );
    let after: Vec<Vec<u32>> = models.iter().map(|c| state_bits(c.state())).collect();
    assert_eq!(after, before);
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_batches_at_every_width_are_their_single_fits() {
    if !have_gpu() {
        return;
    }
    // Long columns (summed over segments first), intercepts, caps, signs.
    let (m, caps) = scattered_with_caps();
    let full = full_case(&caps);
    // 8, 3 (4 lanes, one idle), 2 and 5 (8 lanes, three idle) models.
    for k in [8, 3, 2, 5] {
        together_equals_alone_on(On::Gpu, &m, &lambdas(k), full);
    }
    let no_gates = Case {
        hyper: Hyper {
            use_gates: false,
            ..full.hyper
        },
        caps: None,
        ..full
    };
    together_equals_alone_on(On::Gpu, &m, &lambdas(4), no_gates);
    // Exp magnitudes; a long column among short ones, then rows of many
    // segments each.
    let plain = Case {
        epochs: 9,
        every: Some(2),
        ..Default::default()
    };
    let tall = matrix(5000, 300, 30, &[7], false);
    together_equals_alone_on(On::Gpu, &tall, &lambdas(8), plain);
    let wide = matrix(3, 20_000, 2, &[], false);
    assert!(wide.segments().len() > 6, "rows split into segments");
    together_equals_alone_on(On::Gpu, &wide, &lambdas(6), plain);
    let tiny = Case { caps: None, ..full };
    together_equals_alone_on(On::Gpu, &matrix(1, 1, 1, &[], true), &lambdas(8), tiny);
    together_equals_alone_on(On::Gpu, &matrix(1, 3, 1, &[], false), &lambdas(3), plain);
    together_equals_alone_on(On::Gpu, &matrix(40, 1, 10, &[], false), &lambdas(2), plain);
}

/// A GPU backend built with room for 8 models and handed later batches of
/// other sizes and strengths (`Backend::rebatch`, as the record budget
/// does) trains each batch bit for bit as a backend opened for it; a batch
/// beyond its room is refused.
#[cfg(feature = "cuda")]
#[test]
fn gpu_a_kept_backend_trains_later_batches_as_a_fresh_one() {
    if !have_gpu() {
        return;
    }
    let (m, caps) = scattered_with_caps();
    let case = full_case(&caps);
    let ([y, w, d], start) = case_inputs(&m, &case);
    let problem = Problem {
        max_p: case.caps,
        ..Problem::new(&m, &y, &w, &d, case.hyper)
    };
    let mut kept = CudaBackend::with_capacity(problem, &lambdas(8), 8, 0).unwrap();
    let test = TestGate::Temperature;
    for k in [8, 3, 1, 5, 2, 8] {
        // Strengths that differ from one batch to the next.
        let ls: Vec<f64> = lambdas(k).iter().map(|l| l * (1.0 + k as f64)).collect();
        assert!(kept.rebatch(&ls).unwrap());
        assert_eq!(kept.models(), k);
        let mut a = vec![start.clone(); k];
        let mut b = a.clone();
        let silent = &mut l0::engine::Silent;
        engine::train_models(&mut kept, &mut a, case.epochs, test, silent).unwrap();
        let mut fresh = CudaBackend::with_models(problem, &ls, 0).unwrap();
        engine::train_models(&mut fresh, &mut b, case.epochs, test, silent).unwrap();
        for j in 0..k {
            assert_eq!(
                state_bits(&a[j]),
                state_bits(&b[j]),
                "batch of {k}, model {j}"
            );
        }
    }
    assert!(!kept.rebatch(&lambdas(9)).unwrap());
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_early_stop_gradients_and_divergence_are_each_models_own() {
    if !have_gpu() {
        return;
    }
    early_stop_and_gradients(On::Gpu, 7);
    diverging_batch(On::Gpu);
    // The models of a GPU batch share one intercept switch.
    let m = matrix(20, 200, 5, &[], false);
    let (y, w, d) = (vec![1.0; 20], vec![1.0; 20], vec![1.0; 20]);
    let problem = Problem::new(&m, &y, &w, &d, Hyper::default());
    let mut batch = batch_on(On::Gpu, problem, &[0.0, 1e-3]);
    let with = ParamState::new(vec![0.0; 200], vec![0.0; 200], Some(1.0));
    batch.load_state(&with).unwrap();
    batch.select(1).unwrap();
    let without = ParamState::new(vec![0.0; 200], vec![0.0; 200], None);
    assert_eq!(
        batch.load_state(&without).unwrap_err().to_string(),
        "invalid configuration: the models trained together must all have an intercept or none"
    );
}

#[cfg(feature = "cuda")]
#[test]
fn a_cuda_batch_takes_one_to_eight_models() {
    let m = matrix(20, 200, 5, &[], false);
    let (y, w, d) = (vec![1.0; 20], vec![1.0; 20], vec![1.0; 20]);
    let problem = Problem::new(&m, &y, &w, &d, Hyper::default());
    for k in [0, 9] {
        let e = CudaBackend::with_models(problem, &lambdas(k), 0).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(format!(
                "invalid configuration: a CUDA backend trains 1 to 8 models together, not {k}"
            ))
        );
    }
}
