//! λ sweeps trained together: on the CPU every pass over the matrix serves
//! all K models, and model `k` must still be bit for bit the single fit
//! with `lambda_l0 = lambdas[k]`, on both of the CPU backend's shapes (the
//! forward product scattered from the column passes, or gathered over row
//! segments), with long columns, weight caps, a holdout, reports in the
//! middle of the fit, more models than one group of lanes, and any number
//! of threads.

mod common;

use common::{column_matrix, state_bits, Rng};
use l0::calibration::{Calibration, CalibrationParams, FitParams, Loss};
use l0::sweep::{self, SweepModel};
use l0::{Device, SparseMatrix};

/// `rows x cols` with about `per_col` nonzeros in each column, plus column
/// 3 filled in every row (longer than the 4,096 nonzeros a column is summed
/// in whole), and targets from a truth with every third weight zero.
fn problem(rows: usize, cols: usize, per_col: usize, seed: u64) -> (SparseMatrix, Vec<f64>) {
    let mut rng = Rng(seed);
    let m = column_matrix(&mut rng, (rows, cols), per_col, &[3], false);
    let w: Vec<f64> = (0..cols)
        .map(|i| if i % 3 == 0 { 0.0 } else { 0.5 + rng.uniform() })
        .collect();
    let y = m.mul_vec(&w).unwrap();
    (m, y)
}

fn params() -> CalibrationParams {
    CalibrationParams {
        seed: Some(11),
        init_keep_prob: l0::calibration::Init::Scalar(0.6),
        log_weight_jitter_sd: 0.05,
        ..Default::default()
    }
}

fn opts(threads: usize, rows: usize) -> FitParams {
    FitParams {
        device: Device::Cpu,
        threads: Some(threads),
        loss: Loss::Relative,
        epochs: 12,
        lr: 0.05,
        report_every: Some(5),
        holdout_targets: vec![1, rows - 2],
        max_weight: Some(1.4),
        ..Default::default()
    }
}

/// Sweeps `lambdas` on 3 threads, fits each λ alone on 1 thread, and
/// compares the states bit for bit; returns the sweep.
fn sweep_equals_single_fits(m: &SparseMatrix, y: &[f64], lambdas: &[f64]) -> Vec<SweepModel> {
    let rows = m.rows();
    let mut reports = vec![0; lambdas.len()];
    let models = sweep::sweep(m, y, &params(), &opts(3, rows), lambdas, &mut |k, p| {
        assert_eq!(p.n, m.cols());
        reports[k] += 1;
        Ok(())
    })
    .unwrap();
    // Reports at steps 5 and 10 and at the last epoch, for every model.
    assert_eq!(reports, vec![3; lambdas.len()]);
    // Trained in batches of at most 8: the models of a batch share its time.
    let batch = l0::model::MAX_BATCH;
    for (k, s) in models.iter().enumerate() {
        assert_eq!(s.report.seconds, models[k / batch * batch].report.seconds);
    }
    for (k, s) in models.iter().enumerate() {
        let mut single = Calibration::new(m.cols(), params()).unwrap();
        let o = FitParams {
            lambda_l0: lambdas[k],
            ..opts(1, rows)
        };
        let r = single.fit(m, y, &o).unwrap();
        assert_eq!(s.lambda_l0, lambdas[k]);
        let (a, b) = (s.model.state(), single.state());
        assert_eq!(state_bits(a), state_bits(b), "model {k}");
        let (a, b) = (s.report.last.as_ref().unwrap(), r.last.as_ref().unwrap());
        assert_eq!(a.total_loss.to_bits(), b.total_loss.to_bits(), "model {k}");
        assert_eq!(a.active, b.active, "model {k}");
        assert!(s.report.device.starts_with("cpu (3 threads"));
        assert_eq!(s.report.fallback, None, "model {k}");
    }
    models
}

#[test]
fn models_trained_in_one_pass_are_the_single_fits_scattered_shape() {
    // 40,000 columns (20 chunks) and 4,200 rows: the forward product is
    // scattered from the column passes; column 3 has 4,200 nonzeros.
    let (m, y) = problem(4_200, 40_000, 6, 1);
    assert_eq!(m.long_columns().cols, vec![3]);
    // Nine models: two groups of lanes, the second nearly empty.
    let lambdas = sweep::lambda_grid(1e-6, 1e-1, 9).unwrap();
    let models = sweep_equals_single_fits(&m, &y, &lambdas);
    // Each model has its own strength: the expected open gates fall with λ.
    for pair in models.windows(2) {
        assert!(pair[1].model.l0_penalty() < pair[0].model.l0_penalty());
    }
    // The caps hold in every model.
    for s in &models {
        assert!(s.model.weights(true).iter().all(|&w| w <= 1.4));
    }
}

#[test]
fn models_trained_in_one_pass_are_the_single_fits_gathered_shape() {
    // 3,000 columns (2 chunks): the forward product is gathered over rows.
    let (m, y) = problem(4_500, 3_000, 20, 2);
    assert_eq!(m.long_columns().cols, vec![3]);
    let lambdas = [0.0, 3e-3, 1e-4];
    sweep_equals_single_fits(&m, &y, &lambdas);
}

#[test]
fn models_at_different_steps_are_fitted_one_after_another() {
    let (m, y) = problem(50, 400, 8, 3);
    let o = FitParams {
        holdout_targets: vec![],
        ..opts(2, 50)
    };
    let mut models = sweep::start(m.cols(), &params(), &[1e-3, 1e-2]).unwrap();
    // Model 1 trains 4 epochs ahead; advancing both then is not a batch,
    // but each still ends as its single fit of its total epochs.
    sweep::advance(&mut models[1..], &m, &y, &o, 4, &mut |_, _| Ok(())).unwrap();
    sweep::advance(&mut models, &m, &y, &o, 6, &mut |_, _| Ok(())).unwrap();
    // Each report says why the two did not train in one pass.
    for s in &models {
        assert_eq!(
            s.report.fallback.as_deref(),
            Some("the 2 models differ in seed, options or step, so they train one after another")
        );
    }
    for (s, epochs) in models.iter().zip([6, 10]) {
        let mut single = Calibration::new(m.cols(), params()).unwrap();
        let opts = FitParams {
            lambda_l0: s.lambda_l0,
            epochs,
            ..o.clone()
        };
        single.fit(&m, &y, &opts).unwrap();
        assert_eq!(state_bits(s.model.state()), state_bits(single.state()));
        assert_eq!(s.model.state().step, epochs);
    }
}

#[test]
fn a_batch_stopped_every_k_epochs_ends_as_the_uninterrupted_sweep() {
    let (m, y) = problem(60, 500, 8, 4);
    let o = FitParams {
        epochs: 17,
        ..opts(2, 60)
    };
    let lambdas = [1e-4, 1e-3, 1e-2];
    let whole = sweep::sweep(&m, &y, &params(), &o, &lambdas, &mut |_, _| Ok(())).unwrap();
    // Three epochs first, then the rest with a stop at every multiple of 5
    // of the models' step count (5, 10, 15), never at the end (17).
    let mut models = sweep::start(m.cols(), &params(), &lambdas).unwrap();
    sweep::advance(&mut models, &m, &y, &o, 3, &mut |_, _| Ok(())).unwrap();
    let (mut stops, mut printed) = (vec![], vec![]);
    sweep::advance_with_stops(
        &mut models,
        &m,
        &y,
        &o,
        14,
        5,
        &mut |k, p| {
            if k == 0 {
                printed.push((p.epoch, p.epochs));
            }
            Ok(())
        },
        &mut |models| {
            stops.push(models[0].model.state().step);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(stops, vec![5, 10, 15]);
    // Reports at steps 5, 10, 15 and 17, counted within the call's 14 epochs.
    assert_eq!(printed, vec![(2, 14), (7, 14), (12, 14), (14, 14)]);
    for (a, b) in models.iter().zip(&whole) {
        assert_eq!(state_bits(a.model.state()), state_bits(b.model.state()));
        assert_eq!(a.report.epochs, 17);
        let (pa, pb) = (
            a.report.last.as_ref().unwrap(),
            b.report.last.as_ref().unwrap(),
        );
        assert_eq!(pa.total_loss.to_bits(), pb.total_loss.to_bits());
        assert_eq!(pa.mean_rel_err.to_bits(), pb.mean_rel_err.to_bits());
        assert_eq!((pa.active, pa.epoch, pa.epochs), (pb.active, 14, 14));
    }
    // An error at a stop ends the training there.
    let mut models = sweep::start(m.cols(), &params(), &lambdas).unwrap();
    let e = sweep::advance_with_stops(
        &mut models,
        &m,
        &y,
        &o,
        17,
        5,
        &mut |_, _| Ok(()),
        &mut |_| Err(l0::L0Error::config("stop here")),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "invalid configuration: stop here");
    assert_eq!(models[0].model.state().step, 5);
    let e = sweep::advance_with_stops(
        &mut models,
        &m,
        &y,
        &o,
        1,
        0,
        &mut |_, _| Ok(()),
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: checkpoint_every must be at least 1"
    );
}

/// On a GPU the models of a sweep are trained one after another, each its
/// single GPU fit; without one, the sweep fails with the single fit's
/// message (this machine's case is noted).
#[test]
fn a_cuda_sweep_is_its_single_cuda_fits() {
    let (m, y) = problem(60, 500, 8, 4);
    let o = FitParams {
        device: Device::Cuda(0),
        holdout_targets: vec![],
        ..opts(1, 60)
    };
    let lambdas = [1e-4, 1e-2];
    let swept = sweep::sweep(&m, &y, &params(), &o, &lambdas, &mut |_, _| Ok(()));
    let singles: Vec<_> = lambdas
        .iter()
        .map(|&lambda_l0| {
            let mut c = Calibration::new(m.cols(), params()).unwrap();
            let opts = FitParams {
                lambda_l0,
                ..o.clone()
            };
            c.fit(&m, &y, &opts).map(|_| c)
        })
        .collect();
    match (swept, &singles[0]) {
        (Ok(models), Ok(_)) => {
            for (s, c) in models.iter().zip(&singles) {
                let single = c.as_ref().unwrap().state();
                assert_eq!(state_bits(s.model.state()), state_bits(single));
                assert!(s.report.device.starts_with("cuda"));
            }
        }
        (Err(e), Err(single)) => {
            assert_eq!(e.to_string(), single.to_string());
            let required = std::env::var("L0_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "L0_REQUIRE_GPU=1 but: {e}");
            common::notice(&format!(
                "no GPU here: a cuda sweep fails as its fits do: {e}"
            ));
        }
        (a, b) => panic!(
            "sweep {:?} but single fit {:?}",
            a.map(|_| ()),
            b.as_ref().map(|_| ())
        ),
    }
}

/// A batch that cannot be built on the GPU says why, in one line naming
/// the device and the reason; the models then train one after another
/// (`FitReport::fallback`). Here (no usable GPU) the reason is the one
/// `CudaBackend::available` gives; with a GPU the batch is built.
#[cfg(feature = "cuda")]
#[test]
fn a_batch_the_gpu_cannot_take_says_why() {
    use l0::backend::{cuda::CudaBackend, make_batch_backend, Hyper, Problem};
    let (m, y) = problem(40, 300, 6, 5);
    let ones = vec![1.0; y.len()];
    let problem = Problem::new(&m, &y, &ones, &ones, Hyper::default());
    let built = make_batch_backend(Device::Cuda(0), None, problem, &[1e-3, 1e-2, 1e-1]).unwrap();
    match (CudaBackend::available(0), built) {
        (Err(e), Err(why)) => {
            assert_eq!(
                why,
                format!(
                    "the 3 models could not train together in one pass on cuda:0, so they train one after another: {e}"
                )
            );
            common::notice(&format!("no GPU here: {why}"));
        }
        (Ok(()), Ok(b)) => {
            assert_eq!(b.models(), 3);
            assert!(b.on_gpu());
        }
        (available, built) => panic!(
            "GPU available: {:?}, batch built: {:?}",
            available.map_err(|e| e.to_string()),
            built.map(|b| b.describe())
        ),
    };
}
