//! The weight constraints of src/constraints.rs in whole fits: the kept
//! records' lower bound (`min_weight_ratio`) against an independent
//! bounded least-squares answer and as an exact bound on every reported
//! weight, and the conserved total (`conserve_total`) after every step and
//! exactly in the result, with the conflicts named.

mod common;

use common::{cpu_fit, dense, state_bits};
use l0::hard_concrete::{Gate, GateMeans};
use l0::{Calibration, CalibrationParams, FitParams, Init, SparseMatrix};

fn cpu() -> FitParams {
    cpu_fit(1)
}

/// 8 targets, 4 records, dense and well conditioned, made from `truth`.
fn small(truth: &[f64; 4]) -> (Vec<Vec<f64>>, SparseMatrix, Vec<f64>) {
    let rows: Vec<Vec<f64>> = (0..8)
        .map(|q| (0..4).map(|j| 1.0 + ((q * 7 + j * 3) % 5) as f64).collect())
        .collect();
    let y = rows
        .iter()
        .map(|r| r.iter().zip(truth).map(|(a, b)| a * b).sum())
        .collect();
    let m = dense(&rows);
    (rows, m, y)
}

/// min ||M w - y||^2 over a convex set by projected gradient descent in
/// f64 from `start` (`project`: the Euclidean projection onto the set; step
/// 1 / (2 ||M||_F^2), enough iterations to converge on a tiny problem): the
/// independent answers for fits with bounds or a total.
fn projected_least_squares(
    rows: &[Vec<f64>],
    y: &[f64],
    start: Vec<f64>,
    project: impl Fn(Vec<f64>) -> Vec<f64>,
) -> Vec<f64> {
    let frob: f64 = rows.iter().flatten().map(|v| v * v).sum();
    let step = 1.0 / (2.0 * frob);
    let mut w = start;
    for _ in 0..200_000 {
        let r: Vec<f64> = rows
            .iter()
            .zip(y)
            .map(|(row, y)| y - row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>())
            .collect();
        let u = (0..w.len())
            .map(|j| {
                let g: f64 = -2.0 * rows.iter().zip(&r).map(|(row, r)| row[j] * r).sum::<f64>();
                w[j] - step * g
            })
            .collect();
        w = project(u);
    }
    w
}

/// The weights of a fit without gates of `m`, `y` under `opts`.
fn fitted_without_gates(m: &SparseMatrix, y: &[f64], opts: &FitParams) -> Vec<f64> {
    let params = CalibrationParams {
        use_gates: false,
        seed: Some(3),
        ..Default::default()
    };
    let mut model = Calibration::new(m.cols(), params).unwrap();
    model.fit(m, y, opts).unwrap();
    model.weights(true)
}

#[test]
fn a_lower_bounded_fit_is_the_best_bounded_fit() {
    // The truth's first two weights (1, 2) are below the bound 2.5, so it
    // binds and the others move to compensate.
    let (rows, m, y) = small(&[1.0, 2.0, 5.0, 3.0]);
    let want = projected_least_squares(&rows, &y, vec![3.5; 4], |u| {
        u.into_iter().map(|x| x.max(2.5)).collect()
    });
    assert!((want[0] - 2.5).abs() < 1e-9, "{want:?}");
    let opts = FitParams {
        epochs: 6000,
        lr: 0.002,
        lambda_l0: 0.0,
        min_weight_ratio: Some(2.5),
        ..cpu()
    };
    let got = fitted_without_gates(&m, &y, &opts);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 5e-3 * w, "{got:?} vs {want:?}");
    }
    assert!(got.iter().all(|&x| x >= 2.5), "{got:?}");
}

/// The Euclidean projection of `u` onto `{w >= 0, sum w = total}`.
fn onto_simplex(u: &[f64], total: f64) -> Vec<f64> {
    let mut s = u.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let (mut sum, mut theta) = (0.0, 0.0);
    for (j, &x) in s.iter().enumerate() {
        sum += x;
        let t = (sum - total) / (j + 1) as f64;
        if x - t > 0.0 {
            theta = t;
        }
    }
    u.iter().map(|&x| (x - theta).max(0.0)).collect()
}

#[test]
fn a_conserved_total_fit_is_the_best_fit_with_that_total() {
    // The truth sums to 11; a total of 9.5 binds, and the optimum keeps
    // every record (so weights without gates, all > 0, can reach it).
    let (rows, m, y) = small(&[1.0, 2.0, 5.0, 3.0]);
    let want = projected_least_squares(&rows, &y, vec![9.5 / 4.0; 4], |u| onto_simplex(&u, 9.5));
    assert!(want.iter().all(|&w| w > 0.1), "{want:?}");
    assert!((want.iter().sum::<f64>() - 9.5).abs() < 1e-9);
    let opts = FitParams {
        epochs: 6000,
        lr: 0.002,
        lambda_l0: 0.0,
        conserve_total: Some(9.5),
        ..cpu()
    };
    let got = fitted_without_gates(&m, &y, &opts);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 5e-3 * w, "{got:?} vs {want:?}");
    }
    assert!((got.iter().sum::<f64>() - 9.5).abs() <= 1e-12 * 9.5);
}

/// 30 targets x 300 records from sparse weights, with design weights that
/// differ by record.
fn survey() -> (SparseMatrix, Vec<f64>, Vec<f64>) {
    let rows: Vec<Vec<f64>> = (0..30)
        .map(|q| {
            (0..300)
                .map(|j| match (q * 13 + j * 7) % 9 {
                    0..=2 => 1.0 + ((q + j) % 3) as f64,
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    let truth: Vec<f64> = (0..300)
        .map(|j| {
            if j % 4 == 0 {
                3.0 + (j % 7) as f64
            } else {
                0.0
            }
        })
        .collect();
    let design: Vec<f64> = (0..300).map(|j| 1.0 + (j % 5) as f64 * 0.5).collect();
    let m = dense(&rows);
    let y = m.mul_vec(&truth).unwrap();
    (m, y, design)
}

fn survey_model(design: &[f64]) -> Calibration {
    Calibration::new(
        design.len(),
        CalibrationParams {
            init_weights: Some(Init::PerColumn(design.to_vec())),
            seed: Some(7),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn every_kept_weight_keeps_its_lower_bound_with_gates() {
    let (m, y, design) = survey();
    let mut model = survey_model(&design);
    let opts = FitParams {
        epochs: 400,
        lr: 0.1,
        lambda_l0: 0.02,
        loss: l0::Loss::Relative,
        min_weight_ratio: Some(1.5),
        ..cpu()
    };
    model.fit(&m, &y, &opts).unwrap();
    let w = model.weights(true);
    let kept = w.iter().filter(|&&x| x > 0.0).count();
    assert!(kept > 10 && kept < 300, "{kept} kept");
    for (i, (&x, &d)) in w.iter().zip(&design).enumerate() {
        assert!(x == 0.0 || x >= 1.5 * d, "record {i}: {x} < 1.5 x {d}");
    }
    // Training held every log-weight at its bound too.
    for (i, (&p, &d)) in model.state().p.iter().zip(&design).enumerate() {
        assert!(
            p.exp() as f64 >= 1.5 * d,
            "record {i}: exp({p}) < 1.5 x {d}"
        );
    }
}

/// `E[z]` of the training gate by the midpoint rule over `n` draws: an
/// answer independent of the Gauss-Legendre one the engine uses.
fn gate_mean(a: f32, n: usize) -> f64 {
    let rule = l0::backend::Hyper::default().rule::<f32>();
    (0..n)
        .map(|k| rule.forward(0.0, a, (k as f32 + 0.5) / n as f32).w as f64)
        .sum::<f64>()
        / n as f64
}

#[test]
fn the_gate_mean_is_the_mean_over_the_draws() {
    let gate = Gate::<f32>::new(2.0 / 3.0, -0.1, 1.1);
    for a in [-8.0f32, -3.0, -1.0, 0.0, 0.7, 2.5, 9.0] {
        let (got, want) = (gate.expected(a), gate_mean(a, 200_000));
        assert!((got - want).abs() < 2e-5, "a = {a}: {got} vs {want}");
    }
    // The table training reads: within 1e-6 of the mean between its points,
    // the ends beyond the logits' bound.
    let table = GateMeans::new(&gate);
    for k in -2500..=2500 {
        let a = k as f32 * 0.00937;
        let (got, want) = (table.at(a) as f64, gate.expected(a));
        assert!((got - want).abs() < 1e-6, "a = {a}: {got} vs {want}");
    }
    assert_eq!(table.at(-50.0), table.values[0]);
    assert_eq!(table.at(50.0), *table.values.last().unwrap());
}

#[test]
fn a_conserved_total_holds_after_every_step_and_exactly_in_the_result() {
    let (m, y, design) = survey();
    // Near what the targets ask for (the truth sums to 447): a total far
    // from it closes gates: the kept records then carry it.
    let total = 450.0;
    let mut model = survey_model(&design);
    let opts = FitParams {
        epochs: 1,
        lr: 0.1,
        lambda_l0: 0.02,
        loss: l0::Loss::Relative,
        conserve_total: Some(total),
        ..cpu()
    };
    for step in 0..40 {
        model.fit(&m, &y, &opts).unwrap();
        if step % 8 != 7 {
            continue;
        }
        // The weights' mean over the gate noise, independently summed.
        let s = model.state();
        let mean: f64 =
            s.p.iter()
                .zip(&s.a)
                .map(|(&p, &a)| (p as f64).exp() * gate_mean(a, 20_000))
                .sum();
        assert!((mean - total).abs() < 1e-4 * total, "step {step}: {mean}");
    }
    let w = model.weights(true);
    let sum: f64 = w.iter().sum();
    assert!((sum - total).abs() <= 1e-12 * total, "{sum}");
    assert_eq!(model.total_miss(), None);
    // The design total is the default the command line and Python use.
    assert_eq!(model.design_total().unwrap(), design.iter().sum::<f64>());
}

#[test]
fn a_refit_conserves_the_total_of_its_records() {
    let (m, y, design) = survey();
    let mut model = survey_model(&design);
    let opts = FitParams {
        epochs: 200,
        lr: 0.1,
        lambda_l0: 0.02,
        loss: l0::Loss::Relative,
        conserve_total: Some(450.0),
        min_weight_ratio: Some(0.5),
        ..cpu()
    };
    model.fit(&m, &y, &opts).unwrap();
    let refit = model.refit(&m, &y, &opts, 100).unwrap();
    let w = refit.weights();
    assert!((w.iter().sum::<f64>() - 450.0).abs() <= 1e-12 * 450.0);
    for (i, (&x, &d)) in w.iter().zip(&design).enumerate() {
        assert!(x == 0.0 || x >= 0.5 * d, "record {i}: {x}");
    }
}

/// Model `k` of a batch trained together is bit for bit the model trained
/// alone with its L0 strength, bounds and total included (each model's
/// multiplier and shift are its own).
#[test]
fn models_trained_together_keep_their_own_bounds_and_totals() {
    let (m, y, design) = survey();
    let opts = FitParams {
        epochs: 60,
        lr: 0.1,
        loss: l0::Loss::Relative,
        conserve_total: Some(450.0),
        min_weight_ratio: Some(0.5),
        ..cpu()
    };
    let lambdas = [0.005, 0.05];
    let (mut a, mut b) = (survey_model(&design), survey_model(&design));
    Calibration::fit_together(
        &mut [&mut a, &mut b],
        &lambdas,
        &m,
        &y,
        &opts,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    for (model, lambda_l0) in [(&a, lambdas[0]), (&b, lambdas[1])] {
        let mut alone = survey_model(&design);
        alone
            .fit(
                &m,
                &y,
                &FitParams {
                    lambda_l0,
                    ..opts.clone()
                },
            )
            .unwrap();
        assert_eq!(state_bits(model.state()), state_bits(alone.state()));
        let w = model.weights(true);
        assert!((w.iter().sum::<f64>() - 450.0).abs() <= 1e-12 * 450.0);
    }
}

#[test]
fn conflicting_bounds_are_refused_in_one_line() {
    let (m, y, design) = survey();
    let err = |opts: FitParams| {
        survey_model(&design)
            .fit(&m, &y, &opts)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(FitParams {
            conserve_total: Some(1e6),
            max_weight: Some(2.0),
            ..cpu()
        }),
        "invalid configuration: conserve_total 1000000 is above what the weight caps allow: the 300 records' caps sum to 600"
    );
    assert_eq!(
        err(FitParams {
            min_weight_ratio: Some(3.0),
            max_weight_ratio: Some(2.0),
            ..cpu()
        }),
        "invalid configuration: min_weight_ratio puts record 0's lower bound 3 above its cap 2 (max_weight / max_weight_ratio)"
    );
    assert_eq!(
        err(FitParams {
            conserve_total: Some(-1.0),
            ..cpu()
        }),
        "invalid configuration: conserve_total must be a finite number > 0, got -1"
    );
    assert_eq!(
        err(FitParams {
            min_weight_ratio: Some(f64::NAN),
            ..cpu()
        }),
        "invalid configuration: min_weight_ratio must be a finite number > 0, got NaN"
    );
}
