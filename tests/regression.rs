//! Sparse regression: recovery of a known truth, gradients against a dense
//! f64 evaluation of the loss, input errors, dense = sparse input,
//! continuing fits, the least-squares refit and the lambda path.

mod common;

use common::Rng;
use l0::backend::cpu::CpuBackend;
use l0::backend::{Backend, Hyper, Noise, ParamState, Problem};
use l0::hard_concrete::{Magnitude, TestGate};
use l0::{
    fit_path, fit_path_all_rows, refit_least_squares, Device, GateParams, Init, PathParams,
    Regression, RegressionFitParams, RegressionParams, Selection, SparseMatrix,
};

const TRUTH: [f64; 4] = [1.0, 0.0, -2.0, 0.0];

/// The README demo's data: four features with pairwise correlation 0.5,
/// coefficients [1, 0, -2, 0], intercept 30, noise sd 1.5.
/// The README demo's data (l0::synth::correlated_regression).
fn demo_data(seed: u64, n: usize) -> (Vec<f64>, Vec<f64>) {
    l0::synth::correlated_regression(n, &TRUTH, 0.5, 30.0, 1.5, seed)
}

fn demo_fit() -> RegressionFitParams {
    RegressionFitParams {
        lambda_l0: 0.2,
        lr: 0.01,
        epochs: 5000,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    }
}

fn seeded(seed: u64) -> RegressionParams {
    RegressionParams {
        seed: Some(seed),
        ..Default::default()
    }
}

#[test]
fn demo_problem_recovers_support_and_coefficients() {
    // (data seed, model seed); data seed 42 is the README demo's. The data
    // sets' least-squares estimates on the true support are within 0.15 of
    // the truth (data seed 105's estimate of the first coefficient is 1.16:
    // sampling noise, sd about 0.09).
    for (data, seed) in [(42u64, 1u64), (101, 2), (103, 3)] {
        let (x, y) = demo_data(data, 500);
        let mut m = Regression::new(4, seeded(seed)).unwrap();
        let r = m.fit_dense(&x, &y, &demo_fit()).unwrap();
        assert_eq!(m.selected_features(0.01), vec![0, 2], "seed {seed}");
        let coef = m.coefficients(0.01);
        for (j, (c, t)) in coef.iter().zip(TRUTH).enumerate() {
            assert!(
                (c - t).abs() < 0.15,
                "seed {seed}: coef {j} = {c}, want {t}"
            );
        }
        assert_eq!(coef[1], 0.0);
        assert_eq!(coef[3], 0.0);
        assert!((m.intercept().unwrap() - 30.0).abs() < 0.3, "seed {seed}");
        // The gated fit is close to least squares on the selected support.
        let xs = SparseMatrix::from_dense(500, 4, &x).unwrap();
        let ls = refit_least_squares(&xs, &y, &[0, 2], true).unwrap();
        for j in [0, 2] {
            assert!(
                (coef[j] - ls.coefficients[j]).abs() < 0.02,
                "seed {seed}: {j}"
            );
        }
        assert_eq!(m.sparsity(), 0.5);
        let last = r.last.unwrap();
        assert_eq!(last.active, 2);
        // The noise variance is 2.25; the fitted model's error is close to it.
        assert!(last.deterministic_mse < 2.6, "{}", last.deterministic_mse);
        // Predictions = X coef + b with deterministic gates.
        let pred = m.predict_dense(&x[..8]).unwrap();
        let b = m.intercept().unwrap();
        let w = m.weights(true);
        for (q, p) in pred.iter().enumerate() {
            let want: f64 = b
                + (0..4)
                    .map(|j| x[q * 4 + j] as f32 as f64 * w[j])
                    .sum::<f64>();
            assert!((p - want).abs() < 1e-9);
        }
        // The paper estimator sigmoid(a) also selects {0, 2} here.
        let paper = m.coefficients_with(TestGate::Paper, 0.01);
        assert_eq!(paper[1], 0.0);
        assert!((paper[2] + 2.0).abs() < 0.15, "{paper:?}");
    }
}

#[test]
fn paper_and_temperature_gates_follow_their_formulas() {
    let mut m = Regression::new(3, seeded(5)).unwrap();
    let mut s = m.state().clone();
    s.a = vec![0.4, -2.0, 9.0];
    s.p = vec![2.0, -1.0, 0.5];
    m.set_state(s).unwrap();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let stretch = |s: f64| (s * 1.2 - 0.1).clamp(0.0, 1.0);
    let beta = 2.0 / 3.0;
    let t = m.gates(TestGate::Temperature);
    let p = m.gates(TestGate::Paper);
    for (i, a) in [0.4f64, -2.0, 9.0].iter().enumerate() {
        let a = *a as f32 as f64;
        assert!((t[i] - stretch(sig(a / beta))).abs() < 1e-6);
        assert!((p[i] - stretch(sig(a))).abs() < 1e-6);
    }
    // Temperature gate for a = -2 is below 0.01 (exactly 0), paper's is not.
    assert_eq!(t[1], 0.0);
    assert!(p[1] > 0.0);
    assert_eq!(m.coefficients(0.01)[1], 0.0);
    assert!(m.coefficients_with(TestGate::Paper, 0.01)[1] < 0.0);
    assert!((m.coefficients(0.01)[2] - 0.5).abs() < 1e-7);
    // A threshold above a gate zeroes its coefficient exactly.
    assert_eq!(m.coefficients(0.99)[0], 0.0);
    assert_eq!(m.selected_features(0.01), vec![0, 2]);
    assert_eq!(m.raw_coefficients(), vec![2.0, -1.0, 0.5]);
}

/// Loss of the regression at f64, from the generic per-column functions.
fn dense_loss(x: &[f64], y: &[f64], h: &Hyper, p: &[f64], a: &[f64], b: f64, u: &[f32]) -> f64 {
    let rule = h.rule::<f64>();
    let k = p.len();
    let w: Vec<f64> = (0..k)
        .map(|i| rule.forward(p[i], a[i], u[i] as f64).w)
        .collect();
    let n = y.len();
    let mse = (0..n)
        .map(|q| {
            let yh = b + (0..k).map(|i| x[q * k + i] * w[i]).sum::<f64>();
            (y[q] - yh) * (y[q] - yh)
        })
        .sum::<f64>()
        / n as f64;
    let (l0, l2) = (0..k).fold((0.0, 0.0), |acc, i| {
        let (pi, m2) = rule.penalties(p[i], a[i]);
        (acc.0 + pi, acc.1 + m2)
    });
    mse + h.lambda_l0 * l0 + h.lambda_l2 * l2
}

#[test]
fn gradients_match_finite_differences_of_the_loss() {
    let (n, k) = (7usize, 4usize);
    let mut rng = Rng(9);
    // Values exactly representable in f32 (the matrix stores f32).
    let x: Vec<f64> = (0..n * k)
        .map(|_| ((rng.normal() * 64.0).round() / 64.0) as f32 as f64)
        .collect();
    let y: Vec<f64> = (0..n).map(|_| 3.0 + rng.normal()).collect();
    let m = SparseMatrix::from_dense(n, k, &x).unwrap();
    let hyper = Hyper {
        lambda_l0: 0.05,
        lambda_l2: 0.01,
        magnitude: Magnitude::Linear,
        fit_intercept: true,
        ..Default::default()
    };
    let u = vec![vec![0.3f32, 0.55, 0.8, 0.45]];
    let p = vec![0.7f32, -1.3, 0.2, 2.1];
    let a = vec![0.1f32, -0.4, 0.9, -0.2];
    let b = 2.5f32;
    let weight = vec![1.0 / n as f64; n];
    let denom = vec![1.0; n];
    let problem = Problem {
        noise: Noise::Replay(&u),
        ..Problem::new(&m, &y, &weight, &denom, hyper)
    };
    let mut be = CpuBackend::new(problem, Some(1)).unwrap();
    be.load_state(&ParamState::new(p.clone(), a.clone(), Some(b)))
        .unwrap();
    be.sample_weights(0).unwrap();
    be.forward().unwrap();
    be.residual(0).unwrap();
    let (gp, ga, gb) = be.gradients().unwrap();
    let l = be.losses().unwrap();

    let p64: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let f = |p: &[f64], a: &[f64], b: f64| dense_loss(&x, &y, &hyper, p, a, b, &u[0]);
    let base = f(&p64, &a64, b as f64);
    assert!((l.total(&hyper) - base).abs() < 1e-5 * base.abs(), "loss");
    let eps = 1e-6;
    let check = |what: &str, got: f64, fd: f64| {
        assert!(
            (got - fd).abs() < 1e-3 * fd.abs() + 1e-5,
            "{what}: backend {got}, finite difference {fd}"
        );
    };
    for i in 0..k {
        let (mut pp, mut pm) = (p64.clone(), p64.clone());
        pp[i] += eps;
        pm[i] -= eps;
        let fd = (f(&pp, &a64, b as f64) - f(&pm, &a64, b as f64)) / (2.0 * eps);
        check(&format!("dL/dp[{i}]"), gp[i] as f64, fd);
        let (mut ap, mut am) = (a64.clone(), a64.clone());
        ap[i] += eps;
        am[i] -= eps;
        let fd = (f(&p64, &ap, b as f64) - f(&p64, &am, b as f64)) / (2.0 * eps);
        check(&format!("dL/da[{i}]"), ga[i] as f64, fd);
    }
    let fd = (f(&p64, &a64, b as f64 + eps) - f(&p64, &a64, b as f64 - eps)) / (2.0 * eps);
    check("dL/db", gb.unwrap(), fd);
}

fn err<T: std::fmt::Debug>(r: l0::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_input_gives_clear_errors() {
    let (x, y) = demo_data(1, 10);
    let fit = RegressionFitParams {
        epochs: 3,
        device: Device::Cpu,
        ..Default::default()
    };
    let mut m = Regression::new(4, seeded(1)).unwrap();
    assert_eq!(
        err(m.fit_dense(&x, &y[..9], &fit)),
        "shape mismatch: dense matrix (rows x cols values): expected 9 x 4 = 36, got 40"
    );
    let xs = SparseMatrix::from_dense(10, 4, &x).unwrap();
    assert_eq!(
        err(m.fit(&xs, &y[..9], &fit)),
        "shape mismatch: y (one value per row of X): expected 10, got 9"
    );
    let x3 = SparseMatrix::from_dense(10, 3, &x[..30]).unwrap();
    assert_eq!(
        err(m.fit(&x3, &y, &fit)),
        "shape mismatch: X columns (one per feature): expected 4, got 3"
    );
    assert_eq!(
        err(m.predict(&x3)),
        "shape mismatch: X columns (one per feature): expected 4, got 3"
    );
    assert_eq!(
        err(m.predict_dense(&x[..7])),
        "shape mismatch: dense X (a multiple of n_features values): expected a multiple of 4, got 7"
    );
    let mut ybad = y.clone();
    ybad[3] = f64::NAN;
    assert_eq!(
        err(m.fit(&xs, &ybad, &fit)),
        "non-finite value in y at index 3: NaN"
    );
    let mut xbad = x.clone();
    xbad[5] = f64::INFINITY;
    assert_eq!(
        err(m.fit_dense(&xbad, &y, &fit)),
        "non-finite value in dense matrix values at index 5: inf"
    );
    for (opts, msg) in [
        (
            RegressionFitParams {
                lr: 0.0,
                ..fit.clone()
            },
            "invalid configuration: lr must be > 0, got 0",
        ),
        (
            RegressionFitParams {
                lr: f64::NAN,
                ..fit.clone()
            },
            "non-finite value in lr at index 0: NaN",
        ),
        (
            RegressionFitParams {
                lambda_l0: -1.0,
                ..fit.clone()
            },
            "invalid configuration: lambda_l0 must be >= 0, got -1",
        ),
        (
            RegressionFitParams {
                lambda_l2: -0.5,
                ..fit.clone()
            },
            "invalid configuration: lambda_l2 must be >= 0, got -0.5",
        ),
        (
            RegressionFitParams {
                lambda_l0: f64::INFINITY,
                ..fit.clone()
            },
            "non-finite value in lambda_l0 at index 0: inf",
        ),
    ] {
        assert_eq!(err(m.fit(&xs, &y, &opts)), msg);
    }
    // Nothing was trained by the failed calls.
    assert_eq!(m.state().step, 0);
    let gate = |beta, gamma, zeta| RegressionParams {
        gate: GateParams { beta, gamma, zeta },
        ..Default::default()
    };
    for (params, msg) in [
        (
            gate(0.0, -0.1, 1.1),
            "invalid configuration: beta must be > 0, got 0",
        ),
        (
            gate(0.5, 0.0, 1.1),
            "invalid configuration: gamma must be < 0, got 0",
        ),
        (
            gate(0.5, -0.1, 1.0),
            "invalid configuration: zeta must be > 1, got 1",
        ),
        (
            gate(f64::NAN, -0.1, 1.1),
            "non-finite value in beta at index 0: NaN",
        ),
        (
            RegressionParams {
                init_keep_prob: Init::Scalar(1.0),
                ..Default::default()
            },
            "invalid configuration: init_keep_prob must be in (0, 1), got 1",
        ),
        (
            RegressionParams {
                init_keep_prob: Init::Scalar(0.0),
                ..Default::default()
            },
            "invalid configuration: init_keep_prob must be in (0, 1), got 0",
        ),
        (
            RegressionParams {
                coef_init_sd: -0.1,
                ..Default::default()
            },
            "invalid configuration: coef_init_sd must be >= 0, got -0.1",
        ),
        (
            RegressionParams {
                init_coefficients: Some(Init::PerColumn(vec![1.0, 2.0])),
                ..Default::default()
            },
            "shape mismatch: init_coefficients (one per column): expected 4, got 2",
        ),
    ] {
        assert_eq!(err(Regression::new(4, params)), msg);
    }
    assert_eq!(
        err(Regression::new(0, RegressionParams::default())),
        "invalid configuration: n_features must be at least 1"
    );
}

#[test]
fn dense_and_sparse_input_give_identical_fits() {
    let (mut x, y) = demo_data(7, 120);
    // Some exact zeros, which the sparse layout drops.
    for v in x.iter_mut().step_by(3) {
        *v = 0.0;
    }
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for (k, &val) in x.iter().enumerate() {
        if val != 0.0 {
            r.push((k / 4) as u64);
            c.push((k % 4) as u64);
            v.push(val);
        }
    }
    let xs = SparseMatrix::from_triplets(120, 4, &r, &c, &v).unwrap();
    let fit = RegressionFitParams {
        epochs: 400,
        device: Device::Cpu,
        ..demo_fit()
    };
    let mut a = Regression::new(4, seeded(3)).unwrap();
    let mut b = Regression::new(4, seeded(3)).unwrap();
    a.fit_dense(&x, &y, &fit).unwrap();
    b.fit(&xs, &y, &fit).unwrap();
    assert_eq!(a.state(), b.state());
    assert_eq!(a.predict_dense(&x).unwrap(), b.predict(&xs).unwrap());
}

#[test]
fn continuing_fits_equal_one_long_fit() {
    let (x, y) = demo_data(11, 200);
    let xs = SparseMatrix::from_dense(200, 4, &x).unwrap();
    let fit = |epochs| RegressionFitParams {
        epochs,
        lambda_l2: 0.001,
        device: Device::Cpu,
        threads: Some(2),
        ..demo_fit()
    };
    let mut one = Regression::new(4, seeded(4)).unwrap();
    one.fit(&xs, &y, &fit(700)).unwrap();
    let mut two = Regression::new(4, seeded(4)).unwrap();
    two.fit(&xs, &y, &fit(300)).unwrap();
    two.fit(&xs, &y, &fit(0)).unwrap();
    two.fit(&xs, &y, &fit(400)).unwrap();
    assert_eq!(one.state(), two.state());
    assert_eq!(two.state().step, 700);
    // The intercept starts at mean(y), set before the first step only.
    let mut m = Regression::new(4, seeded(4)).unwrap();
    assert_eq!(m.intercept(), Some(0.0));
    m.fit(&xs, &y, &fit(0)).unwrap();
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    assert_eq!(m.intercept(), Some(mean as f32 as f64));
    // Without an intercept as well.
    let params = RegressionParams {
        fit_intercept: false,
        ..seeded(4)
    };
    let mut one = Regression::new(4, params.clone()).unwrap();
    one.fit(&xs, &y, &fit(500)).unwrap();
    let mut two = Regression::new(4, params).unwrap();
    two.fit(&xs, &y, &fit(250)).unwrap();
    two.fit(&xs, &y, &fit(250)).unwrap();
    assert_eq!(one.state(), two.state());
    assert_eq!(one.intercept(), None);
}

#[test]
fn least_squares_refit_is_exact_on_noiseless_data() {
    let (n, k) = (40usize, 6usize);
    let mut rng = Rng(21);
    let x: Vec<f64> = (0..n * k).map(|_| rng.normal() as f32 as f64).collect();
    let beta = [0.0, 1.5, 0.0, -0.75, 2.0, 0.0];
    let y: Vec<f64> = (0..n)
        .map(|q| 4.0 + (0..k).map(|j| beta[j] * x[q * k + j]).sum::<f64>())
        .collect();
    let xs = SparseMatrix::from_dense(n, k, &x).unwrap();
    let ls = refit_least_squares(&xs, &y, &[4, 1, 3], true).unwrap();
    assert_eq!(ls.support, vec![1, 3, 4]);
    for (j, (c, b)) in ls.coefficients.iter().zip(beta).enumerate() {
        assert!((c - b).abs() < 1e-9, "{j}");
    }
    assert!((ls.intercept - 4.0).abs() < 1e-9);
    let pred = ls.predict(&xs).unwrap();
    assert!(pred.iter().zip(&y).all(|(p, y)| (p - y).abs() < 1e-9));
    // Without intercept and with the empty support.
    let none = refit_least_squares(&xs, &y, &[], true).unwrap();
    assert!((none.intercept - y.iter().sum::<f64>() / n as f64).abs() < 1e-12);
    assert!(none.coefficients.iter().all(|&c| c == 0.0));
    // Errors.
    let mut xdup = x.clone();
    for q in 0..n {
        xdup[q * k + 2] = 2.0 * xdup[q * k + 1];
    }
    let xd = SparseMatrix::from_dense(n, k, &xdup).unwrap();
    assert_eq!(
        err(refit_least_squares(&xd, &y, &[1, 2], false)),
        "invalid configuration: least-squares refit: the selected columns are linearly dependent"
    );
    assert_eq!(
        err(refit_least_squares(&xs, &y, &[1, 6], false)),
        "index out of range in support: 6 at position 1, but the bound is 6"
    );
    let small = SparseMatrix::from_dense(3, k, &x[..3 * k]).unwrap();
    assert_eq!(
        err(refit_least_squares(&small, &y[..3], &[0, 1, 2], true)),
        "invalid configuration: least-squares refit: 4 unknowns but only 3 rows"
    );
}

#[test]
fn lambda_path_picks_the_true_support_on_validation_data() {
    let (x, y) = demo_data(31, 500);
    let xt = SparseMatrix::from_dense(400, 4, &x[..1600]).unwrap();
    let xv = SparseMatrix::from_dense(100, 4, &x[1600..]).unwrap();
    let fit = RegressionFitParams {
        epochs: 3000,
        lr: 0.02,
        ..demo_fit()
    };
    // Lowest validation error over the gated supports' refits, all epochs.
    let path = PathParams {
        lambdas: vec![20.0, 0.2],
        selection: Selection::MinError,
        splice: false,
        early_stop: None,
        ..Default::default()
    };
    let r = fit_path(&seeded(2), &fit, &path, &xt, &y[..400], &xv, &y[400..]).unwrap();
    assert_eq!(r.epochs, 3000);
    assert_eq!(r.points.len(), 2);
    assert!(r.points[0].support.is_empty(), "{:?}", r.points[0]);
    assert_eq!(r.points[1].support, vec![0, 2]);
    assert!(r.points.iter().all(|p| p.refitted));
    assert_eq!(r.best, 1);
    assert_eq!(r.lambda, 0.2);
    let ls = r.refit.unwrap();
    assert_eq!(ls.support, vec![0, 2]);
    assert!((ls.coefficients[0] - 1.0).abs() < 0.2 && (ls.coefficients[2] + 2.0).abs() < 0.2);
    let mse = |k: usize| r.points[k].val_mse.unwrap();
    assert!(mse(1) < 3.0 && mse(0) > 4.0);
    // One-standard-error rule: lambda = 0 keeps (nearly) every feature, with
    // a validation error close to the true support's; the rule takes the
    // sparsest support within one standard error of the lowest error.
    let path = PathParams {
        lambdas: vec![0.0, 0.2],
        selection: Selection::OneStandardError,
        ..Default::default()
    };
    let r = fit_path(&seeded(2), &fit, &path, &xt, &y[..400], &xv, &y[400..]).unwrap();
    let min = r
        .points
        .iter()
        .map(|p| p.val_mse.unwrap())
        .fold(f64::INFINITY, f64::min);
    let at_min = r.points.iter().find(|p| p.val_mse == Some(min)).unwrap();
    assert!(r.points[0].support.len() > 2, "{:?}", r.points[0]);
    assert_eq!(r.points[r.best].support, vec![0, 2]);
    assert!(r.points[r.best].val_mse.unwrap() <= min + at_min.val_se.unwrap());
    assert!(at_min.val_se.unwrap() > 0.0);
    // GIC (abess's criterion) on the training refits: each point's value is
    // n ln(RSS/n) + s ln(p) ln(ln n) of its refit, and the lowest wins.
    let path = PathParams {
        selection: Selection::Gic,
        ..path
    };
    let g = fit_path(&seeded(2), &fit, &path, &xt, &y[..400], &xv, &y[400..]).unwrap();
    for p in &g.points {
        let ls = l0::refit_least_squares(&xt, &y[..400], &p.support, true).unwrap();
        let rss: f64 = ls
            .predict(&xt)
            .unwrap()
            .iter()
            .zip(&y[..400])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let want =
            400.0 * (rss / 400.0).ln() + p.support.len() as f64 * 4f64.ln() * 400f64.ln().ln();
        assert!(
            (p.gic.unwrap() - want).abs() < 1e-9 * want.abs(),
            "{p:?} vs {want}"
        );
        let s = p.support.len() as f64;
        let want = 400.0 * (rss / 400.0).ln() + s * (400f64.ln() + 2.0 * 4f64.ln());
        assert!(
            (p.ebic.unwrap() - want).abs() < 1e-9 * want.abs(),
            "{p:?} vs {want}"
        );
    }
    assert_eq!(g.points[g.best].support, vec![0, 2]);
    assert!(g.points[g.best].gic < g.points[1 - g.best].gic);
    assert_eq!(l0::selection::gic(400.0, 400, 0, 4), 0.0);
    // 100 ln(0.5) + 3 ln(20) ln(ln 100) and 100 ln(0.5) + 3 (ln 100 + 2 ln 20).
    let g = l0::selection::gic(50.0, 100, 3, 20);
    assert!((g - (-69.314_718_056 + 3.0 * 2.995_732_274 * 1.527_179_626)).abs() < 1e-6);
    let e = l0::selection::ebic(50.0, 100, 3, 20);
    assert!((e - (-69.314_718_056 + 3.0 * (4.605_170_186 + 2.0 * 2.995_732_274))).abs() < 1e-6);
    assert_eq!(
        err(fit_path(
            &seeded(2),
            &fit,
            &PathParams {
                lambdas: vec![],
                ..Default::default()
            },
            &xt,
            &y[..400],
            &xv,
            &y[400..]
        )),
        "invalid configuration: the lambda path is empty"
    );
}

/// Twenty features of 10,000 rows: every column is longer than one segment
/// (`l0::matrix::SEGMENT_NNZ` = 4096 nonzeros), so the transpose product
/// splits each into three pieces summed on any thread. The gradient equals
/// the dense f64 `X^T r`, and a fit is the same bits for 1, 2 and 3 threads.
#[test]
fn long_columns_are_split_across_threads_with_the_same_result() {
    let (n, k) = (10_000usize, 20usize);
    let mut rng = Rng(21);
    let x: Vec<f64> = (0..n * k).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n)
        .map(|q| x[q * k] - 2.0 * x[q * k + 3] + rng.normal())
        .collect();
    let m = SparseMatrix::from_dense(n, k, &x).unwrap();
    let long = m.long_columns();
    assert_eq!(long.cols, (0..k as u32).collect::<Vec<_>>());
    assert_eq!(long.seg_ptr.last(), Some(&(3 * k)));

    // Without gates or penalties, dL/dp_i is exactly g_w,i = (X^T r)_i.
    let hyper = Hyper {
        lambda_l0: 0.0,
        magnitude: Magnitude::Linear,
        use_gates: false,
        ..Default::default()
    };
    let (weight, denom) = (vec![1.0 / n as f64; n], vec![1.0; n]);
    let problem = Problem::new(&m, &y, &weight, &denom, hyper);
    let p: Vec<f32> = (0..k).map(|i| 0.1 * i as f32 - 1.0).collect();
    for threads in [1, 3] {
        let mut be = CpuBackend::new(problem, Some(threads)).unwrap();
        be.load_state(&ParamState::new(p.clone(), vec![0.0; k], None))
            .unwrap();
        be.sample_weights(0).unwrap();
        be.forward().unwrap();
        be.residual(0).unwrap();
        let (gp, _, _) = be.gradients().unwrap();
        let mut yhat = vec![0.0; n];
        be.read_yhat(&mut yhat).unwrap();
        for i in 0..k {
            let want: f64 = (0..n)
                .map(|q| x[q * k + i] as f32 as f64 * -2.0 * (y[q] - yhat[q]) / n as f64)
                .sum();
            let got = gp[i] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "threads {threads}, column {i}: {got} vs {want}"
            );
        }
    }

    let fit = |threads| {
        let mut r = Regression::new(k, seeded(5)).unwrap();
        let opts = RegressionFitParams {
            epochs: 40,
            threads: Some(threads),
            ..demo_fit()
        };
        r.fit(&m, &y, &opts).unwrap();
        r.state().clone()
    };
    let one = fit(1);
    assert_eq!(one, fit(2));
    assert_eq!(one, fit(3));
}

/// A lambda path's models train together (one pass over `X` per epoch for
/// all of them, [`Regression::fit_together`]), each bit for bit the model
/// its own fit gives: here with an intercept, long columns (10,000 rows),
/// nine lambdas (more than one group of lanes), 3 threads against 1.
#[test]
fn models_trained_together_are_their_single_fits() {
    let (n, k) = (10_000usize, 12usize);
    let mut rng = Rng(22);
    let x: Vec<f64> = (0..n * k).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n)
        .map(|q| 5.0 + x[q * k] - 2.0 * x[q * k + 3] + rng.normal())
        .collect();
    let m = SparseMatrix::from_dense(n, k, &x).unwrap();
    assert_eq!(m.long_columns().cols.len(), k);
    let lambdas = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0];
    let opts = RegressionFitParams {
        epochs: 30,
        lr: 0.05,
        report_every: Some(7),
        threads: Some(3),
        ..demo_fit()
    };
    let mut models: Vec<Regression> = lambdas
        .iter()
        .map(|_| Regression::new(k, seeded(8)).unwrap())
        .collect();
    let mut refs: Vec<&mut Regression> = models.iter_mut().collect();
    let reports = Regression::fit_together(&mut refs, &lambdas, &m, &y, &opts).unwrap();
    for (i, (model, report)) in models.iter().zip(&reports).enumerate() {
        let mut single = Regression::new(k, seeded(8)).unwrap();
        let o = RegressionFitParams {
            lambda_l0: lambdas[i],
            threads: Some(1),
            ..opts.clone()
        };
        let r = single.fit(&m, &y, &o).unwrap();
        let (a, b) = (
            common::state_bits(model.state()),
            common::state_bits(single.state()),
        );
        assert_eq!(a, b, "lambda {}", lambdas[i]);
        assert!(model.state().intercept.is_some());
        let (a, b) = (report.last.as_ref().unwrap(), r.last.as_ref().unwrap());
        assert_eq!(a.total_loss.to_bits(), b.total_loss.to_bits());
        assert_eq!(a.deterministic_mse.to_bits(), b.deterministic_mse.to_bits());
        // Batches of at most 8: models 0..8 share their batch's time.
        if i < l0::model::MAX_BATCH {
            assert_eq!(report.seconds, reports[0].seconds, "one batch");
        }
    }
    // The strengths differ per model: the expected open gates fall with lambda.
    let open = |r: &Regression| r.l0_penalty();
    assert!(open(&models[8]) < open(&models[1]));
}

/// A best-subset problem like examples/best_subset.rs's: `n` rows of `p`
/// AR(1) features (correlation 0.7^|i-j|), coefficients 1 at columns
/// `i p / k`, signal-to-noise ratio 5. Returns X (row-major), y, the truth.
fn best_subset_data(seed: u64, n: usize, p: usize, k: usize) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    ar_subset_data(seed, n, p, k, 0.7)
}

/// The same with AR(1) correlation `rho`.
fn ar_subset_data(
    seed: u64,
    n: usize,
    p: usize,
    k: usize,
    rho: f64,
) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    noisy_subset_data(seed, n, p, k, rho, 5.0)
}

/// The same with signal-to-noise ratio `snr`.
fn noisy_subset_data(
    seed: u64,
    n: usize,
    p: usize,
    k: usize,
    rho: f64,
    snr: f64,
) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let mut rng = Rng(seed);
    let mut x = vec![0.0; n * p];
    for row in x.chunks_mut(p) {
        row[0] = rng.normal();
        for j in 1..p {
            row[j] = rho * row[j - 1] + (1.0 - rho * rho).sqrt() * rng.normal();
        }
    }
    // f32-representable values, as the engine stores them.
    x.iter_mut().for_each(|v| *v = *v as f32 as f64);
    let truth: Vec<usize> = (0..k).map(|i| i * p / k).collect();
    let signal: f64 = truth
        .iter()
        .flat_map(|&a| {
            truth
                .iter()
                .map(move |&b| rho.powi((a as i32 - b as i32).abs()))
        })
        .sum();
    let sd = (signal / snr).sqrt();
    let y = x
        .chunks(p)
        .map(|row| truth.iter().map(|&j| row[j]).sum::<f64>() + sd * rng.normal())
        .collect();
    (x, y, truth)
}

/// The best-subset path's options: the benchmark's lambdas, 300 epochs at
/// most (lr 0.1), one thread.
fn subset_path(selection: Selection) -> (RegressionFitParams, PathParams) {
    let fit = RegressionFitParams {
        lr: 0.1,
        epochs: 300,
        device: Device::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let path = PathParams {
        lambdas: vec![0.03, 0.06, 0.1, 0.15, 0.2, 0.3],
        selection,
        ..Default::default()
    };
    (fit, path)
}

/// Seed 16 of a 250 x 80 best-subset problem (4 true features): the old
/// default (lowest validation error over the gated supports' refits, all
/// epochs, no splicing) keeps three false positives; the default (abess's
/// EBIC over the refits, early stop, splicing of the chosen support) keeps
/// exactly the true support, and so does GIC here.
#[test]
fn default_selection_finds_the_true_support_where_min_error_had_false_positives() {
    assert_eq!(PathParams::default().selection, Selection::Ebic);
    let (x, y, truth) = best_subset_data(16, 250, 80, 4);
    let xt = SparseMatrix::from_dense(200, 80, &x[..200 * 80]).unwrap();
    let xv = SparseMatrix::from_dense(50, 80, &x[200 * 80..]).unwrap();
    let run = |path: &PathParams, fit: &RegressionFitParams| {
        fit_path(&seeded(16), fit, path, &xt, &y[..200], &xv, &y[200..]).unwrap()
    };
    let (fit, old) = subset_path(Selection::MinError);
    let old = PathParams {
        splice: false,
        early_stop: None,
        ..old
    };
    let r = run(&old, &fit);
    let chosen = &r.points[r.best].support;
    let false_positives = chosen.iter().filter(|j| !truth.contains(j)).count();
    assert!(truth.iter().all(|j| chosen.contains(j)), "{chosen:?}");
    assert_eq!(false_positives, 3, "{chosen:?}");
    assert_eq!(r.epochs, 300);
    for selection in [Selection::Ebic, Selection::Gic] {
        let (fit, path) = subset_path(selection);
        let r = run(&path, &fit);
        assert_eq!(r.points[r.best].support, truth, "{selection:?}");
        assert_eq!(r.refit.as_ref().unwrap().support, truth);
        assert!(r.epochs < 300 && r.epochs % 25 == 0, "{}", r.epochs);
    }
}

/// An early-stopped path holds exactly the models, points and refits of a
/// path trained for the epochs it ran, with no early stop: the chunks of
/// 25 epochs (span 2.5 at lr 0.1) continue each other bit for bit, and the
/// looks change nothing.
#[test]
fn early_stopped_path_is_the_path_trained_that_long() {
    let (x, y, _) = best_subset_data(16, 250, 80, 4);
    let xt = SparseMatrix::from_dense(200, 80, &x[..200 * 80]).unwrap();
    let xv = SparseMatrix::from_dense(50, 80, &x[200 * 80..]).unwrap();
    let (fit, path) = subset_path(Selection::Ebic);
    let early = fit_path(&seeded(3), &fit, &path, &xt, &y[..200], &xv, &y[200..]).unwrap();
    assert!(early.epochs < fit.epochs, "{}", early.epochs);
    let full_path = PathParams {
        early_stop: None,
        ..path.clone()
    };
    let full_fit = RegressionFitParams {
        epochs: early.epochs,
        ..fit.clone()
    };
    let full = fit_path(
        &seeded(3),
        &full_fit,
        &full_path,
        &xt,
        &y[..200],
        &xv,
        &y[200..],
    )
    .unwrap();
    assert_eq!(full.epochs, early.epochs);
    assert_eq!(full.points, early.points);
    assert_eq!(full.best, early.best);
    assert_eq!(full.refit, early.refit);
    assert_eq!(full.model.state(), early.model.state());
    // A stop that never comes runs every epoch, as a path without one.
    let patient = PathParams {
        early_stop: Some(l0::EarlyStop {
            span: 4.0,
            patience: 1000,
        }),
        ..path.clone()
    };
    let short = RegressionFitParams {
        epochs: 100,
        ..fit.clone()
    };
    let a = fit_path(&seeded(3), &short, &patient, &xt, &y[..200], &xv, &y[200..]).unwrap();
    let b = fit_path(
        &seeded(3),
        &short,
        &full_path,
        &xt,
        &y[..200],
        &xv,
        &y[200..],
    )
    .unwrap();
    assert_eq!((a.epochs, b.epochs), (100, 100));
    assert_eq!(a.points, b.points);
    assert_eq!(a.model.state(), b.model.state());
    // Bad early-stop options.
    for (span, patience) in [(0.0, 1), (f64::INFINITY, 1), (2.5, 0)] {
        let bad = PathParams {
            early_stop: Some(l0::EarlyStop { span, patience }),
            ..path.clone()
        };
        assert_eq!(
            err(fit_path(&seeded(3), &short, &bad, &xt, &y[..200], &xv, &y[200..])),
            format!("invalid configuration: early stop: span must be positive and finite and patience at least 1, got span={span} patience={patience}")
        );
    }
}

/// Seed 6 of the strongly correlated best-subset problem (examples/
/// best_subset.rs's rho 0.9 design: n 500, the first 400 rows train, p
/// 1000 AR(1) features with correlation 0.9^|i-j|, 10 true at 0, 100, ...,
/// 900). The gates' supports alone (no splice) hold six neighbours of true
/// features and miss three; spliced (abess's exchanges and the best swap)
/// but without the path over sizes, the choice keeps x901, x900's
/// neighbour, in its place; abess's warm-started path over sizes (the
/// default) finds the exact support, at a lower EBIC.
#[test]
fn size_path_recovers_the_true_support_on_a_strongly_correlated_design() {
    let (n, p, k) = (500, 1000, 10);
    let (x, y, truth) = ar_subset_data(6, n, p, k, 0.9);
    let xt = SparseMatrix::from_dense(400, p, &x[..400 * p]).unwrap();
    let xv = SparseMatrix::from_dense(100, p, &x[400 * p..]).unwrap();
    let (fit, path) = subset_path(Selection::Ebic);
    assert!(path.size_path && path.splice);
    let run = |path: &PathParams| {
        fit_path(&seeded(6), &fit, path, &xt, &y[..400], &xv, &y[400..]).unwrap()
    };
    let default = run(&path);
    let chosen = &default.points[default.best];
    assert_eq!(chosen.support, truth);
    assert_eq!(default.refit.as_ref().unwrap().support, truth);
    let spliced = run(&PathParams {
        size_path: false,
        ..path.clone()
    });
    let mut near = truth.clone();
    near[9] = 901;
    assert_eq!(spliced.points[spliced.best].support, near);
    assert!(chosen.ebic.unwrap() < spliced.points[spliced.best].ebic.unwrap());
    let gated = run(&PathParams {
        size_path: false,
        splice: false,
        ..path
    });
    assert_eq!(
        gated.points[gated.best].support,
        [0, 99, 199, 300, 400, 499, 500, 600, 601, 701, 799, 900]
    );
}

/// Ordinary least squares of `y` on `[1, X_S]` (`x` row-major with `p`
/// columns, `S` = `support`) by Gaussian elimination with partial pivoting
/// on the uncentred normal equations: independent of the library's
/// centred Cholesky. Returns (intercept, coefficients on `support`, RSS).
fn plain_least_squares(x: &[f64], p: usize, y: &[f64], support: &[usize]) -> (f64, Vec<f64>, f64) {
    let m = support.len() + 1;
    let row = |q: usize| -> Vec<f64> {
        std::iter::once(1.0)
            .chain(support.iter().map(|&j| x[q * p + j]))
            .collect()
    };
    // [X'X | X'y], m x (m + 1).
    let mut a = vec![vec![0.0; m + 1]; m];
    for (q, &yq) in y.iter().enumerate() {
        let r = row(q);
        for i in 0..m {
            for j in 0..m {
                a[i][j] += r[i] * r[j];
            }
            a[i][m] += r[i] * yq;
        }
    }
    for c in 0..m {
        let pivot = (c..m)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, pivot);
        let top = a[c].clone();
        for r in a.iter_mut().skip(c + 1) {
            let f = r[c] / top[c];
            for (v, t) in r[c..].iter_mut().zip(&top[c..]) {
                *v -= f * t;
            }
        }
    }
    let mut b = vec![0.0; m];
    for i in (0..m).rev() {
        let tail: f64 = (i + 1..m).map(|j| a[i][j] * b[j]).sum();
        b[i] = (a[i][m] - tail) / a[i][i];
    }
    let rss = y
        .iter()
        .enumerate()
        .map(|(q, yq)| {
            let fit: f64 = row(q).iter().zip(&b).map(|(r, b)| r * b).sum();
            (yq - fit) * (yq - fit)
        })
        .sum();
    (b[0], b[1..].to_vec(), rss)
}

/// Seed 11 of a low-noise-ratio problem (n 200, p 100 AR(1) features at
/// correlation 0.7, 5 true at 0, 20, ..., 80, SNR 1). EBIC on the path's
/// training rows (the first 160, 40 held out) keeps two of the five true
/// features and x22 for x20, missing x60 and x80; trained, refitted and chosen on all 200 rows
/// ([`l0::fit_path_all_rows`], the CLI's default for ebic and gic), it
/// finds exactly the true support. GIC, whose penalty per feature is about
/// half of EBIC's here (7.7 against 14.5), keeps seven features on all
/// rows.
#[test]
fn all_rows_ebic_recovers_the_support_the_split_missed() {
    let (n, p) = (200, 100);
    let (x, y, truth) = noisy_subset_data(11, n, p, 5, 0.7, 1.0);
    assert_eq!(truth, [0, 20, 40, 60, 80]);
    let xt = SparseMatrix::from_dense(160, p, &x[..160 * p]).unwrap();
    let xv = SparseMatrix::from_dense(40, p, &x[160 * p..]).unwrap();
    let xa = SparseMatrix::from_dense(n, p, &x).unwrap();
    let (fit, path) = subset_path(Selection::Ebic);
    let split = fit_path(&seeded(11), &fit, &path, &xt, &y[..160], &xv, &y[160..]).unwrap();
    assert_eq!(split.points[split.best].support, [0, 22, 40]);
    let all = fit_path_all_rows(&seeded(11), &fit, &path, &xa, &y).unwrap();
    assert_eq!(all.points[all.best].support, truth);
    assert_eq!(all.refit.as_ref().unwrap().support, truth);
    let (fit, gic_path) = subset_path(Selection::Gic);
    let gic = fit_path_all_rows(&seeded(11), &fit, &gic_path, &xa, &y).unwrap();
    assert_eq!(gic.points[gic.best].support, [0, 18, 22, 29, 40, 60, 81]);
}

/// A path without held-out rows fits, scores and refits on every row: each
/// point's EBIC and GIC are those of an independent least-squares fit of
/// its support on all `n` rows (with `n` in the formula), the returned
/// refit is that fit, and no point has a validation error. Given the same
/// rows as validation ([`fit_path`]), the path is the same but for those
/// errors: the criteria never look at the held-out rows. Selection by
/// validation error is refused.
#[test]
fn all_rows_path_scores_and_refits_on_every_row() {
    let (n, p) = (200, 100);
    let (x, y, _) = noisy_subset_data(11, n, p, 5, 0.7, 1.0);
    let xa = SparseMatrix::from_dense(n, p, &x).unwrap();
    let (fit, path) = subset_path(Selection::Ebic);
    let r = fit_path_all_rows(&seeded(11), &fit, &path, &xa, &y).unwrap();
    let nf = n as f64;
    for pt in &r.points {
        assert_eq!((pt.val_mse, pt.val_se), (None, None), "{pt:?}");
        let (_, _, rss) = plain_least_squares(&x, p, &y, &pt.support);
        let s = pt.support.len() as f64;
        let ebic = nf * (rss / nf).ln() + s * (nf.ln() + 2.0 * (p as f64).ln());
        let gic = nf * (rss / nf).ln() + s * (p as f64).ln() * nf.ln().ln();
        assert!(
            (pt.ebic.unwrap() - ebic).abs() < 1e-9 * ebic.abs(),
            "{pt:?} vs {ebic}"
        );
        assert!(
            (pt.gic.unwrap() - gic).abs() < 1e-9 * gic.abs(),
            "{pt:?} vs {gic}"
        );
    }
    let ls = r.refit.as_ref().unwrap();
    let (b0, b, _) = plain_least_squares(&x, p, &y, &ls.support);
    assert!(
        (ls.intercept - b0).abs() < 1e-10,
        "{} vs {b0}",
        ls.intercept
    );
    for (&j, want) in ls.support.iter().zip(&b) {
        assert!(
            (ls.coefficients[j] - want).abs() < 1e-10,
            "{j}: {} vs {want}",
            ls.coefficients[j]
        );
    }
    assert_eq!(
        ls.coefficients.iter().filter(|c| **c != 0.0).count(),
        ls.support.len()
    );
    // The same rows given again as validation change only the errors.
    let v = fit_path(&seeded(11), &fit, &path, &xa, &y, &xa, &y).unwrap();
    assert_eq!((v.best, v.epochs, &v.refit), (r.best, r.epochs, &r.refit));
    assert_eq!(v.model.state(), r.model.state());
    for (a, b) in v.points.iter().zip(&r.points) {
        assert!(a.val_mse.is_some() && a.val_se.is_some());
        let without = l0::PathPoint {
            val_mse: None,
            val_se: None,
            ..a.clone()
        };
        assert_eq!(&without, b);
    }
    for selection in [Selection::MinError, Selection::OneStandardError] {
        let path = PathParams {
            selection,
            ..path.clone()
        };
        assert_eq!(
            err(fit_path_all_rows(&seeded(11), &fit, &path, &xa, &y)),
            format!("invalid configuration: selection {selection:?} chooses by validation error and needs held-out rows: use fit_path with a validation split")
        );
    }
    assert_eq!(
        err(fit_path_all_rows(&seeded(11), &fit, &path, &xa, &y[1..])),
        "shape mismatch: y (one value per row of X): expected 200, got 199"
    );
}

/// The validation rules keep their hold-out and choose exactly as before
/// the criteria moved to all rows: on the best-subset problem of seed 16
/// (250 x 80, the last 50 rows held out; splice and early stop on), each
/// point's support, validation error and standard error, the chosen index,
/// the epochs run and the refit's intercept are the values the path gave
/// before that change (recorded from commit 89fb1a7), bit for bit.
#[test]
fn validation_rules_choose_exactly_as_before() {
    let (x, y, _) = best_subset_data(16, 250, 80, 4);
    let xt = SparseMatrix::from_dense(200, 80, &x[..200 * 80]).unwrap();
    let xv = SparseMatrix::from_dense(50, 80, &x[200 * 80..]).unwrap();
    type Golden = (
        Selection,
        usize,
        u64,
        Vec<(&'static [usize], f64, f64)>,
        f64,
    );
    let golden: [Golden; 2] = [
        (
            Selection::MinError,
            0,
            150,
            vec![
                (
                    &[0, 16, 20, 29, 40, 50, 53, 60][..],
                    0.9294876201994485,
                    0.200211893360411,
                ),
                (
                    &[0, 20, 39, 40, 50, 60][..],
                    0.9133022118346759,
                    0.17840188980705213,
                ),
                (
                    &[0, 20, 39, 40, 60][..],
                    0.9181492484276201,
                    0.16856159238862403,
                ),
                (
                    &[0, 20, 39, 40, 60][..],
                    0.9181492484276201,
                    0.16856159238862403,
                ),
                (
                    &[0, 20, 39, 40, 60][..],
                    0.9181492484276201,
                    0.16856159238862403,
                ),
                (
                    &[0, 20, 40, 60][..],
                    0.9090968466603064,
                    0.17368876401715394,
                ),
            ],
            -0.014254001673050937,
        ),
        (
            Selection::OneStandardError,
            3,
            75,
            vec![
                (
                    &[0, 1, 19, 20, 21, 39, 40, 41, 43, 50, 54, 55, 58, 60, 61][..],
                    0.8576430585607896,
                    0.16608325290626771,
                ),
                (
                    &[0, 20, 21, 39, 40, 50, 60, 61][..],
                    0.9170028486280261,
                    0.18239697988781192,
                ),
                (
                    &[0, 20, 39, 40, 50, 60][..],
                    0.9133022118346759,
                    0.17840188980705213,
                ),
                (
                    &[0, 20, 29, 40, 60][..],
                    0.8634051374631169,
                    0.16593828695309548,
                ),
                (
                    &[0, 20, 39, 40, 60][..],
                    0.9181492484276201,
                    0.16856159238862403,
                ),
                (
                    &[0, 20, 39, 40, 60][..],
                    0.9181492484276201,
                    0.16856159238862403,
                ),
            ],
            -0.01508269384781924,
        ),
    ];
    for (selection, best, epochs, points, intercept) in golden {
        let (fit, path) = subset_path(selection);
        let r = fit_path(&seeded(16), &fit, &path, &xt, &y[..200], &xv, &y[200..]).unwrap();
        assert_eq!((r.best, r.epochs), (best, epochs), "{selection:?}");
        for (pt, (support, mse, se)) in r.points.iter().zip(points) {
            assert_eq!(pt.support, support, "{selection:?}");
            assert_eq!(
                (pt.val_mse, pt.val_se),
                (Some(mse), Some(se)),
                "{selection:?}"
            );
        }
        assert_eq!(r.refit.unwrap().intercept, intercept, "{selection:?}");
    }
}

/// `l0 regress` with a lambda path: by default (ebic) it trains and
/// chooses on all rows, writing the path's own refit, empty validation
/// cells in path.csv and a null validation fraction; `--select one-se`
/// holds out the last 20% as before, and its coefficients are those of
/// the library's path on that split, refitted on all rows.
#[test]
fn regress_cli_chooses_on_all_rows_with_a_criterion() {
    use l0::io::npy::{read_npy, write_npy_f64_shaped};
    let (n, p) = (200, 100);
    let (x, y, truth) = noisy_subset_data(11, n, p, 5, 0.7, 1.0);
    let dir = std::env::temp_dir().join(format!("l0-regression-allrows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (xp, yp) = (dir.join("X.npy"), dir.join("y.npy"));
    write_npy_f64_shaped(&xp, &[n, p], &x).unwrap();
    write_npy_f64_shaped(&yp, &[n], &y).unwrap();
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "regress",
            "--x",
            xp.to_str().unwrap(),
            "--y",
            yp.to_str().unwrap(),
        ];
        args.extend([
            "--out",
            out.to_str().unwrap(),
            "--lambda-l0",
            "0.03,0.06,0.1,0.15,0.2,0.3",
        ]);
        args.extend([
            "--lr", "0.1", "--epochs", "300", "--seed", "11", "--device", "cpu",
        ]);
        args.extend(["--threads", "1"]);
        args.extend_from_slice(extra);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_l0"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let coef = read_npy(&out.join("coefficients.npy"))
            .unwrap()
            .to_f64_vec("c")
            .unwrap();
        let rows: Vec<Vec<String>> = std::fs::read_to_string(out.join("path.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        (summary, coef, rows)
    };
    let (fit, path) = subset_path(Selection::Ebic);
    let fit = RegressionFitParams {
        report_every: Some(30),
        ..fit
    };
    let xa = SparseMatrix::from_dense(n, p, &x).unwrap();
    let r = fit_path_all_rows(&seeded(11), &fit, &path, &xa, &y).unwrap();
    let (s, coef, rows) = run(&dir.join("ebic"), &[]);
    assert_eq!(coef, r.refit.as_ref().unwrap().coefficients);
    assert_eq!(r.points[r.best].support, truth);
    assert_eq!(s["selected"], 5);
    assert_eq!(s["epochs"].as_u64().unwrap(), r.epochs);
    assert_eq!(s["path"]["select"], "ebic");
    assert_eq!(s["path"]["validation_fraction"], serde_json::Value::Null);
    assert_eq!(
        s["device"],
        "a path of 6 lambdas (all 200 rows, none held out, device Cpu)"
    );
    assert_eq!(rows.len(), 6);
    for (row, pt) in rows.iter().zip(&r.points) {
        assert_eq!((row[2].as_str(), row[3].as_str()), ("", ""));
        assert_eq!(row[7].parse::<f64>().unwrap(), pt.ebic.unwrap());
    }
    // one-se: the last 40 rows validate.
    let (fit, path) = subset_path(Selection::OneStandardError);
    let fit = RegressionFitParams {
        report_every: Some(30),
        ..fit
    };
    let xt = SparseMatrix::from_dense(160, p, &x[..160 * p]).unwrap();
    let xv = SparseMatrix::from_dense(40, p, &x[160 * p..]).unwrap();
    let r = fit_path(&seeded(11), &fit, &path, &xt, &y[..160], &xv, &y[160..]).unwrap();
    let (s, coef, rows) = run(&dir.join("one-se"), &["--select", "one-se"]);
    let ls = refit_least_squares(&xa, &y, &r.points[r.best].support, true).unwrap();
    assert_eq!(coef, ls.coefficients);
    assert_eq!(s["path"]["validation_fraction"], 0.2);
    assert_eq!(
        s["device"],
        "a path of 6 lambdas (160 training rows, 40 validation, device Cpu)"
    );
    for (row, pt) in rows.iter().zip(&r.points) {
        assert_eq!(row[2].parse::<f64>().ok(), pt.val_mse);
        assert_eq!(row[3].parse::<f64>().ok(), pt.val_se);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
