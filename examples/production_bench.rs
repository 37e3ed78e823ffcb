//! Production-shape benchmark: a geo-stacked calibration problem shaped like
//! the US congressional-district one (12,000 households cloned into 436
//! areas = 5,232,000 columns; 40 national + 436 x 30 area targets = 13,120
//! rows; ~146M nonzeros), saved as a scipy `.npz` and loaded back as the
//! command line does, then trained.
//!
//! ```text
//! cargo run --release --example production_bench -- [--shape geo:H:G:NAT:PER]
//!     [--epochs N] [--threads T] [--device cpu|cuda|auto] [--dir DIR]
//!     [--conserve-total X]
//! ```
//!
//! `--shape geo:12000:436:80:64` is the ~300M-nonzero variant for a GPU
//! (27,984 x 5,232,000, 300.6M nonzeros, as in the README's GPU table).
//! Prints, in order:
//!
//! * a STREAM-style measured memory bandwidth on the same threads: `read`
//!   (sum of a 512 MiB array) and `copy` (counted as bytes read + written);
//! * load time (`l0::io::read_matrix`: read, validate, build both layouts)
//!   and peak resident memory during the load against the in-memory matrix;
//! * steady-state seconds per epoch: the difference of two run lengths, so
//!   setup and the final report are not counted as epochs; also CPU seconds
//!   per epoch (all threads; robust when other work shares the machine);
//! * achieved bandwidth: the minimal bytes an epoch must move over its time,
//!   and that as a share of the measured read bandwidth. Minimal bytes: CSR
//!   and CSC at 8 bytes per nonzero each (u32 index + f32 value), plus 64
//!   bytes per column (the seven f32 column arrays the backward pass reads,
//!   the weight the forward product reads, and the eight it writes);
//! * time to write the outputs of the fit (`weights.npy`, `weights.csv`);
//! * one JSON line with all of the above.

#[path = "common/problems.rs"]
mod problems;
#[path = "common/process.rs"]
mod process;

use l0::calibration::{Calibration, FitParams};
use l0::io::npz::write_npz_csr;
use l0::synth::{geo_stacked, GeoSpec};
use l0::{Device, L0Error, Result};
use process::{cpu_seconds, peak_rss, reset_peak_rss};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

/// Command-line options.
struct Args {
    spec: GeoSpec,
    shape: String,
    epochs: u64,
    threads: Option<usize>,
    device: Device,
    dir: PathBuf,
    /// `--conserve-total X`: train with that conserved total.
    conserve_total: Option<f64>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        spec: GeoSpec::default(),
        shape: "geo:12000:436:40:30".into(),
        epochs: 20,
        threads: None,
        device: Device::Cpu,
        dir: std::env::temp_dir().join("l0-production-bench"),
        conserve_total: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bad = |what: &str| L0Error::config(format!("bad value for {what}"));
    for pair in args.chunks(2) {
        let value = pair.get(1).ok_or_else(|| bad(&pair[0]))?;
        match pair[0].as_str() {
            "--shape" => a.shape = value.clone(),
            "--epochs" => a.epochs = value.parse().map_err(|_| bad("--epochs"))?,
            "--threads" => a.threads = Some(value.parse().map_err(|_| bad("--threads"))?),
            "--device" => a.device = value.parse()?,
            "--dir" => a.dir = value.into(),
            "--conserve-total" => {
                a.conserve_total = Some(value.parse().map_err(|_| bad("--conserve-total"))?)
            }
            other => return Err(L0Error::config(format!("unknown option {other}"))),
        }
    }
    let n: Vec<usize> = a
        .shape
        .strip_prefix("geo:")
        .ok_or_else(|| bad("--shape"))?
        .split(':')
        .map(|x| x.parse().map_err(|_| bad("--shape")))
        .collect::<Result<_>>()?;
    let [h, g, nat, per] = n[..] else {
        return Err(bad("--shape (geo:H:G:NAT:PER)"));
    };
    (
        a.spec.households,
        a.spec.areas,
        a.spec.national,
        a.spec.per_area,
    ) = (h, g, nat, per);
    if a.epochs < 4 {
        return Err(bad("--epochs (at least 4)"));
    }
    Ok(a)
}

/// Best of five runs of `f`, as bytes per second for `bytes` per run.
fn best_rate(bytes: f64, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            bytes / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// STREAM-style read and copy bandwidth (bytes/s) over 512 MiB arrays.
fn stream(pool: &rayon::ThreadPool) -> (f64, f64) {
    let n = 64 << 20; // f64s
    let a: Vec<f64> = (0..n).into_par_iter().map(|i| i as f64).collect();
    let mut b = vec![0.0f64; n];
    let bytes = (n * 8) as f64;
    let chunk = 1 << 16;
    pool.install(|| {
        let read = best_rate(bytes, || {
            // Integer sums of the bits vectorise; an f64 sum would be one
            // dependent add per element, slower than memory.
            let bits = |c: &[f64]| c.iter().fold(0u64, |s, x| s.wrapping_add(x.to_bits()));
            let s: u64 = a
                .par_chunks(chunk)
                .map(bits)
                .reduce(|| 0, u64::wrapping_add);
            std::hint::black_box(s);
        });
        let copy = best_rate(2.0 * bytes, || {
            b.par_chunks_mut(chunk)
                .zip(a.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&b);
        });
        (read, copy)
    })
}

fn gb(x: f64) -> f64 {
    x / 1e9
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let threads = a.threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| L0Error::config(e.to_string()))?;
    let (read_bw, copy_bw) = stream(&pool);
    println!(
        "memory bandwidth ({threads} threads): read {:.1} GB/s, copy {:.1} GB/s",
        gb(read_bw),
        gb(copy_bw)
    );

    let t = Instant::now();
    let problem = pool.install(|| geo_stacked(&a.spec))?;
    std::fs::create_dir_all(&a.dir).map_err(|e| L0Error::Io {
        path: a.dir.clone(),
        message: e.to_string(),
    })?;
    let file = a.dir.join("matrix.npz");
    write_npz_csr(&file, &problem.matrix)?;
    let (y, groups) = (problem.targets, problem.groups);
    drop(problem.matrix);
    println!(
        "generated {} and wrote {} in {:.1} s",
        a.shape,
        file.display(),
        t.elapsed().as_secs_f64()
    );

    reset_peak_rss();
    let base_rss = peak_rss();
    let t = Instant::now();
    let m = pool.install(|| l0::io::read_matrix(&file))?;
    let load_s = t.elapsed().as_secs_f64();
    let load_peak = peak_rss().saturating_sub(base_rss);
    let matrix_bytes = m.storage_bytes() as f64;
    println!(
        "{} x {}, {} nonzeros: loaded in {load_s:.2} s; peak memory during the load {:.2} GB = {:.2}x the in-memory matrix ({:.2} GB)",
        m.rows(),
        m.cols(),
        m.nnz(),
        gb(load_peak as f64),
        load_peak as f64 / matrix_bytes,
        gb(matrix_bytes)
    );

    let mut model = Calibration::new(m.cols(), problems::bench_params())?;
    let opts = |epochs| FitParams {
        threads: a.threads,
        conserve_total: a.conserve_total,
        ..problems::bench_opts(groups.clone(), epochs, a.device)
    };
    let timed = |model: &mut Calibration, epochs: u64| -> Result<(f64, f64, String)> {
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = model.fit(&m, &y, &opts(epochs))?;
        Ok((t.elapsed().as_secs_f64(), cpu_seconds() - c, r.device))
    };
    timed(&mut model, 2)?; // warm-up: page faults, thread pool, GPU context
    let short = a.epochs / 4;
    let (t_short, c_short, _) = timed(&mut model, short)?;
    let (t_long, c_long, device) = timed(&mut model, a.epochs)?;
    let per_epoch = (t_long - t_short) / (a.epochs - short) as f64;
    let cpu_per_epoch = (c_long - c_short) / (a.epochs - short) as f64;
    let min_bytes = 16.0 * m.nnz() as f64 + 64.0 * m.cols() as f64;
    let achieved = min_bytes / per_epoch;
    println!(
        "{device}: {per_epoch:.4} s/epoch steady state ({short} and {} epochs: {t_short:.2} s, {t_long:.2} s), {cpu_per_epoch:.3} CPU s/epoch",
        a.epochs
    );
    println!(
        "minimal bytes per epoch {:.2} GB -> achieved {:.1} GB/s = {:.0}% of the measured read bandwidth",
        gb(min_bytes),
        gb(achieved),
        100.0 * achieved / read_bw
    );

    let t = Instant::now();
    let w = model.weights(true);
    let gates = model.deterministic_gates();
    l0::io::npy::write_npy_f64(&a.dir.join("weights.npy"), &w)?;
    let npy_s = t.elapsed().as_secs_f64();
    l0::report::write_weights_csv(
        &a.dir.join("weights.csv"),
        &w,
        &gates,
        l0::par::Par::current(),
    )?;
    let out_s = t.elapsed().as_secs_f64();
    println!("outputs: weights.npy in {npy_s:.2} s, with weights.csv {out_s:.2} s");
    println!(
        "peak resident memory {:.2} GB (the generator's copy included)",
        gb(peak_rss() as f64)
    );
    println!(
        "{{\"shape\": \"{}\", \"rows\": {}, \"cols\": {}, \"nnz\": {}, \"device\": \"{device}\", \"seconds_per_epoch\": {per_epoch:.6}, \"cpu_seconds_per_epoch\": {cpu_per_epoch:.4}, \"min_bytes_per_epoch\": {min_bytes:.0}, \"achieved_gb_per_s\": {:.2}, \"read_gb_per_s\": {:.2}, \"copy_gb_per_s\": {:.2}, \"load_seconds\": {load_s:.3}, \"load_peak_bytes\": {load_peak}, \"matrix_bytes\": {matrix_bytes:.0}, \"write_outputs_seconds\": {out_s:.3}}}",
        a.shape,
        m.rows(),
        m.cols(),
        m.nnz(),
        gb(achieved),
        gb(read_bw),
        gb(copy_bw)
    );
    Ok(())
}
