//! Best-subset benchmark: `l0` against abess (scripts/best_subset_abess.py).
//!
//! Data per seed (defaults): n = 500, p = 1000, AR(1) features with
//! correlation rho^|i-j| (x_j = rho x_{j-1} + sqrt(1 - rho^2) e_j, rho 0.7),
//! k = 10 coefficients equal to 1 at columns 0, p/k, 2p/k, ..., signal-to-
//! noise ratio 5 (noise sd = sqrt(beta' Sigma beta / 5)), no intercept in
//! the truth.
//!
//! `l0`: a lambda path; the support is chosen by --select (default ebic,
//! the library's default: the lowest extended BIC of the least-squares
//! refits on the training rows, spliced, and abess's path over support
//! sizes), then refitted by least squares on all rows (its columns only).
//! With ebic or gic the path trains and chooses on all rows
//! (`l0::fit_path_all_rows`, as `l0 regress` does); with min-error or
//! one-se, or with --validation F > 0, on the first rows, the last share F
//! (default 0.2 for those rules) held out for validation (`l0::fit_path`). Reports true and false positives, F1, ||b_hat - b||_2,
//! wall and CPU time per fit (from the dense array, conversion included),
//! averaged over the seeds, and writes each seed's X.npy (n x p, f64, C
//! order), y.npy and beta.npy to OUT_DIR/seed_<s>/ for the abess script.
//!
//!     cargo run --release --example best_subset -- OUT_DIR [--n 500] \
//!         [--p 1000] [--k 10] [--rho 0.7] [--snr 5] [--seeds 10] \
//!         [--first-seed 0] [--epochs 1000] [--lr 0.1] \
//!         [--lambdas 0.03,0.06,0.1,0.15,0.2,0.3] \
//!         [--select ebic|gic|min-error|one-se] [--threads T] [--splice 0|1] \
//!         [--size-path 0|1] [--span 2.5] [--patience 1] [--validation F]

use l0::{
    fit_path, fit_path_all_rows, refit_least_squares, Device, EarlyStop, PathParams,
    RegressionFitParams, RegressionParams, Selection, SparseMatrix,
};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::path::Path;
use std::time::Instant;

/// The problem's shape: rows, features, true features, AR(1) correlation,
/// signal-to-noise ratio.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    p: usize,
    k: usize,
    rho: f64,
    snr: f64,
}

struct Data {
    x: Vec<f64>,
    y: Vec<f64>,
    beta: Vec<f64>,
}

fn generate(shape: Shape, seed: u64) -> Data {
    let Shape { n, p, k, rho, snr } = shape;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let e = Normal::new(0.0, 1.0).unwrap();
    let s = (1.0 - rho * rho).sqrt();
    let mut x = vec![0.0; n * p];
    for row in x.chunks_mut(p) {
        row[0] = e.sample(&mut rng);
        for j in 1..p {
            row[j] = rho * row[j - 1] + s * e.sample(&mut rng);
        }
    }
    let support: Vec<usize> = (0..k).map(|i| i * p / k).collect();
    let mut beta = vec![0.0; p];
    support.iter().for_each(|&j| beta[j] = 1.0);
    let signal_var: f64 = support
        .iter()
        .flat_map(|&a| {
            support
                .iter()
                .map(move |&b| rho.powi((a as i32 - b as i32).abs()))
        })
        .sum();
    let sd = (signal_var / snr).sqrt();
    let y = x
        .chunks(p)
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
    cpu: f64,
}

/// CPU seconds (user + system, all threads) this process has used so far,
/// from /proc/self/stat (Linux; clock ticks of 10 ms); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

fn metrics(beta: &[f64], b_hat: &[f64], secs: f64, cpu: f64) -> Metrics {
    let tp = beta
        .iter()
        .zip(b_hat)
        .filter(|(b, h)| **b != 0.0 && **h != 0.0)
        .count() as f64;
    let fp = beta
        .iter()
        .zip(b_hat)
        .filter(|(b, h)| **b == 0.0 && **h != 0.0)
        .count() as f64;
    let selected = b_hat.iter().filter(|h| **h != 0.0).count() as f64;
    let truth = beta.iter().filter(|b| **b != 0.0).count() as f64;
    let f1 = if selected == 0.0 {
        0.0
    } else {
        2.0 * tp / (selected + truth)
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
        cpu,
    }
}

/// The least-squares refit of `support` on every row of the row-major
/// `x` (`p` columns), over all `p` features: only the support's columns
/// are converted.
fn refit_all_rows(x: &[f64], p: usize, y: &[f64], support: &[usize]) -> l0::Result<Vec<f64>> {
    let n = y.len();
    let cols: Vec<f64> = x
        .chunks(p)
        .flat_map(|row| support.iter().map(move |&j| row[j]))
        .collect();
    let on_support = SparseMatrix::from_dense(n, support.len(), &cols)?;
    let all: Vec<usize> = (0..support.len()).collect();
    let ls = refit_least_squares(&on_support, y, &all, true)?;
    let mut coefficients = vec![0.0; p];
    for (k, &j) in support.iter().enumerate() {
        coefficients[j] = ls.coefficients[k];
    }
    Ok(coefficients)
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
        .expect("usage: best_subset OUT_DIR [--n N] [--p P] [--k K] [--rho R] [--snr S] [--seeds N] [--first-seed S] [--epochs E] [--lr LR] [--lambdas a,b,c] [--select RULE] [--threads T] [--validation F]")
        .clone();
    let shape = Shape {
        n: arg(&args, "--n", 500),
        p: arg(&args, "--p", 1000),
        k: arg(&args, "--k", 10),
        rho: arg(&args, "--rho", 0.7),
        snr: arg(&args, "--snr", 5.0),
    };
    let (n, p) = (shape.n, shape.p);
    let seeds: u64 = arg(&args, "--seeds", 10);
    let first_seed: u64 = arg(&args, "--first-seed", 0);
    let epochs: u64 = arg(&args, "--epochs", 1000);
    let lr: f64 = arg(&args, "--lr", 0.1);
    let threads: usize = arg(&args, "--threads", 0);
    let lambdas: Vec<f64> = arg(&args, "--lambdas", "0.03,0.06,0.1,0.15,0.2,0.3".to_string())
        .split(',')
        .map(|v| v.parse().expect("bad lambda"))
        .collect();
    let fit = RegressionFitParams {
        lr,
        epochs,
        device: Device::Cpu,
        threads: (threads > 0).then_some(threads),
        ..Default::default()
    };
    let rule: String = arg(&args, "--select", "ebic".to_string());
    let (selection, held_out) = match rule.as_str() {
        "one-se" => (Selection::OneStandardError, 0.2),
        "min-error" => (Selection::MinError, 0.2),
        "gic" => (Selection::Gic, 0.0),
        "ebic" => (Selection::Ebic, 0.0),
        other => panic!("--select: expected one-se, min-error, gic or ebic, got '{other}'"),
    };
    let validation: f64 = arg(&args, "--validation", held_out);
    // The training rows: all, or the first n - ceil(n F) (as `l0 regress`).
    let n_train = n - (n as f64 * validation).ceil() as usize;
    let span: f64 = arg(&args, "--span", EarlyStop::default().span);
    let patience: u64 = arg(&args, "--patience", EarlyStop::default().patience);
    let path = PathParams {
        lambdas,
        selection,
        splice: arg(&args, "--splice", 1) == 1,
        size_path: arg(&args, "--size-path", 1) == 1,
        early_stop: (patience > 0).then_some(EarlyStop { span, patience }),
        ..Default::default()
    };
    println!(
        "l0: n={n} p={p} k={} rho={} snr={}; lambdas {:?}, {epochs} epochs, lr {lr}, \
         train {n_train} / validation {} (selection: {rule})",
        shape.k,
        shape.rho,
        shape.snr,
        path.lambdas,
        n - n_train
    );
    println!(
        "{:>4} {:>7} {:>4} {:>4} {:>6} {:>8} {:>8} {:>8}",
        "seed", "lambda", "TP", "FP", "F1", "coef_err", "time_s", "cpu_s"
    );
    let mut sum = Metrics::default();
    for seed in first_seed..first_seed + seeds {
        let d = generate(shape, seed);
        let dir = Path::new(&out).join(format!("seed_{seed}"));
        std::fs::create_dir_all(&dir).map_err(|e| l0::L0Error::Io {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        for (name, dims, data) in [
            ("X.npy", vec![n, p], &d.x),
            ("y.npy", vec![n], &d.y),
            ("beta.npy", vec![p], &d.beta),
        ] {
            l0::io::npy::write_npy_f64_shaped(&dir.join(name), &dims, data)?;
        }
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        let params = RegressionParams {
            seed: Some(seed),
            ..Default::default()
        };
        let x_train = SparseMatrix::from_dense(n_train, p, &d.x[..n_train * p])?;
        let r = if n_train < n {
            let x_val = SparseMatrix::from_dense(n - n_train, p, &d.x[n_train * p..])?;
            let y_train = &d.y[..n_train];
            fit_path(
                &params,
                &fit,
                &path,
                &x_train,
                y_train,
                &x_val,
                &d.y[n_train..],
            )?
        } else {
            fit_path_all_rows(&params, &fit, &path, &x_train, &d.y)?
        };
        let ls = refit_all_rows(&d.x, p, &d.y, &r.points[r.best].support)?;
        let secs = start.elapsed().as_secs_f64();
        let m = metrics(&d.beta, &ls, secs, cpu_seconds() - cpu0);
        let sizes: Vec<usize> = r.points.iter().map(|p| p.support.len()).collect();
        println!(
            "{seed:>4} {:>7} {:>4} {:>4} {:>6.3} {:>8.4} {:>8.3} {:>8.2}   path sizes {sizes:?}, {} epochs, {} changed",
            r.lambda, m.tp, m.fp, m.f1, m.err, m.secs, m.cpu, r.epochs,
            r.points.iter().map(|p| p.changed).sum::<usize>()
        );
        sum.tp += m.tp;
        sum.fp += m.fp;
        sum.f1 += m.f1;
        sum.err += m.err;
        sum.secs += m.secs;
        sum.cpu += m.cpu;
    }
    let s = seeds as f64;
    println!(
        "mean {:>7} {:>4.1} {:>4.1} {:>6.3} {:>8.4} {:>8.3} {:>8.3}",
        "",
        sum.tp / s,
        sum.fp / s,
        sum.f1 / s,
        sum.err / s,
        sum.secs / s,
        sum.cpu / s
    );
    Ok(())
}
