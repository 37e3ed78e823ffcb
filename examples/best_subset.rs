//! Best-subset benchmark: `l0` against abess (scripts/best_subset_abess.py).
//!
//! Data per seed: n = 500, p = 1000, AR(1) features with correlation
//! 0.7^|i-j| (x_j = 0.7 x_{j-1} + sqrt(1 - 0.49) e_j), k = 10 coefficients
//! equal to 1 at columns 0, 100, ..., 900, signal-to-noise ratio 5 (noise
//! sd = sqrt(beta' Sigma beta / 5)), no intercept in the truth.
//!
//! `l0`: a lambda path on the first 400 rows, each support refitted by least
//! squares and scored on the last 100 rows; the lambda is chosen by the
//! one-standard-error rule (the sparsest support within one standard error
//! of the lowest validation error); the chosen support is then
//! refitted by least squares on all 500 rows. Reports true and false
//! positives, F1, ||b_hat - b||_2 and wall time, averaged over the seeds, and
//! writes each seed's X.npy (500 x 1000, f64, C order), y.npy and beta.npy to
//! OUT_DIR/seed_<s>/ for the abess script.
//!
//!     cargo run --release --example best_subset -- OUT_DIR [--seeds 10] \
//!         [--epochs 1000] [--lr 0.1] [--lambdas 0.03,0.06,0.1,0.15,0.2,0.3] \
//!         [--select one-se|min-error|gic]

use l0::{
    fit_path, refit_least_squares, Device, PathParams, RegressionFitParams, RegressionParams,
    Selection, SparseMatrix,
};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::path::Path;
use std::time::Instant;

const N: usize = 500;
const P: usize = 1000;
const K: usize = 10;
const RHO: f64 = 0.7;
const SNR: f64 = 5.0;
const N_TRAIN: usize = 400;

struct Data {
    x: Vec<f64>,
    y: Vec<f64>,
    beta: Vec<f64>,
}

fn generate(seed: u64) -> Data {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let e = Normal::new(0.0, 1.0).unwrap();
    let s = (1.0 - RHO * RHO).sqrt();
    let mut x = vec![0.0; N * P];
    for row in x.chunks_mut(P) {
        row[0] = e.sample(&mut rng);
        for j in 1..P {
            row[j] = RHO * row[j - 1] + s * e.sample(&mut rng);
        }
    }
    let support: Vec<usize> = (0..K).map(|i| i * P / K).collect();
    let mut beta = vec![0.0; P];
    support.iter().for_each(|&j| beta[j] = 1.0);
    let signal_var: f64 = support
        .iter()
        .flat_map(|&a| {
            support
                .iter()
                .map(move |&b| RHO.powi((a as i32 - b as i32).abs()))
        })
        .sum();
    let sd = (signal_var / SNR).sqrt();
    let y = x
        .chunks(P)
        .map(|row| support.iter().map(|&j| row[j]).sum::<f64>() + sd * e.sample(&mut rng))
        .collect();
    Data { x, y, beta }
}

#[derive(Default, Clone, Copy)]
struct Metrics {
    tp: f64,
    fp: f64,
    f1: f64,
    err: f64,
    secs: f64,
}

fn metrics(beta: &[f64], b_hat: &[f64], secs: f64) -> Metrics {
    let tp = (0..P)
        .filter(|&j| beta[j] != 0.0 && b_hat[j] != 0.0)
        .count() as f64;
    let fp = (0..P)
        .filter(|&j| beta[j] == 0.0 && b_hat[j] != 0.0)
        .count() as f64;
    let selected = (0..P).filter(|&j| b_hat[j] != 0.0).count() as f64;
    let f1 = if selected == 0.0 {
        0.0
    } else {
        2.0 * tp / (selected + K as f64)
    };
    let err = beta
        .iter()
        .zip(b_hat)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    Metrics {
        tp,
        fp,
        f1,
        err,
        secs,
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .expect("usage: best_subset OUT_DIR [--seeds N] [--epochs E] [--lr LR] [--lambdas a,b,c]")
        .clone();
    let seeds: u64 = arg(&args, "--seeds", 10);
    let epochs: u64 = arg(&args, "--epochs", 1000);
    let lr: f64 = arg(&args, "--lr", 0.1);
    let lambdas: Vec<f64> = arg(&args, "--lambdas", "0.03,0.06,0.1,0.15,0.2,0.3".to_string())
        .split(',')
        .map(|v| v.parse().expect("bad lambda"))
        .collect();
    let fit = RegressionFitParams {
        lr,
        epochs,
        device: Device::Cpu,
        ..Default::default()
    };
    let rule: String = arg(&args, "--select", "one-se".to_string());
    let selection = match rule.as_str() {
        "one-se" => Selection::OneStandardError,
        "min-error" => Selection::MinError,
        "gic" => Selection::Gic,
        other => panic!("--select: expected one-se, min-error or gic, got '{other}'"),
    };
    let path = PathParams {
        lambdas,
        selection,
        ..Default::default()
    };
    println!(
        "l0: n={N} p={P} k={K} rho={RHO} snr={SNR}; lambdas {:?}, {epochs} epochs, lr {lr}, \
         train {N_TRAIN} / validation {} (selection: {rule})",
        path.lambdas,
        N - N_TRAIN
    );
    println!(
        "{:>4} {:>7} {:>4} {:>4} {:>6} {:>8} {:>8}",
        "seed", "lambda", "TP", "FP", "F1", "coef_err", "time_s"
    );
    let mut sum = Metrics::default();
    for seed in 0..seeds {
        let d = generate(seed);
        let dir = Path::new(&out).join(format!("seed_{seed}"));
        std::fs::create_dir_all(&dir).map_err(|e| l0::L0Error::Io {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        for (name, shape, data) in [
            ("X.npy", vec![N, P], &d.x),
            ("y.npy", vec![N], &d.y),
            ("beta.npy", vec![P], &d.beta),
        ] {
            l0::io::npy::write_npy_f64_shaped(&dir.join(name), &shape, data)?;
        }
        let start = Instant::now();
        let x_train = SparseMatrix::from_dense(N_TRAIN, P, &d.x[..N_TRAIN * P])?;
        let x_val = SparseMatrix::from_dense(N - N_TRAIN, P, &d.x[N_TRAIN * P..])?;
        let params = RegressionParams {
            seed: Some(seed),
            ..Default::default()
        };
        let r = fit_path(
            &params,
            &fit,
            &path,
            &x_train,
            &d.y[..N_TRAIN],
            &x_val,
            &d.y[N_TRAIN..],
        )?;
        let x_all = SparseMatrix::from_dense(N, P, &d.x)?;
        let support = &r.points[r.best].support;
        let ls = refit_least_squares(&x_all, &d.y, support, true)?;
        let m = metrics(&d.beta, &ls.coefficients, start.elapsed().as_secs_f64());
        let sizes: Vec<usize> = r.points.iter().map(|p| p.support.len()).collect();
        println!(
            "{seed:>4} {:>7} {:>4} {:>4} {:>6.3} {:>8.4} {:>8.2}   path sizes {sizes:?}",
            r.lambda, m.tp, m.fp, m.f1, m.err, m.secs
        );
        sum.tp += m.tp;
        sum.fp += m.fp;
        sum.f1 += m.f1;
        sum.err += m.err;
        sum.secs += m.secs;
    }
    let s = seeds as f64;
    println!(
        "mean {:>7} {:>4.1} {:>4.1} {:>6.3} {:>8.4} {:>8.2}",
        "",
        sum.tp / s,
        sum.fp / s,
        sum.f1 / s,
        sum.err / s,
        sum.secs / s
    );
    Ok(())
}
