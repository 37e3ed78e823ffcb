//! What a λ sweep costs against one fit: K models trained together
//! (`l0::sweep::sweep`, one pass over the matrix per epoch for all of
//! them on the CPU) against one `Calibration::fit` of the same epochs and
//! options, timed in the same run.
//!
//! `cargo run --release --example sweep_bench -- [PROBLEM] [--epochs E] [--models K] [--device D]`
//!
//! PROBLEM as in `examples/epoch_time.rs` (default `geo`); E = 100 and
//! K = 8 by default, the λ log-spaced from 1e-7 to 1e-4. After a one-epoch
//! warm-up, the fit and the sweep are each timed twice, alternating, and
//! the faster time of each is kept. Prints one JSON line with both times,
//! wall and CPU (all threads), `ratio` = sweep / fit, and the peak resident
//! memory of the process during each (the matrix included; Linux).

#[path = "common/problems.rs"]
mod problems;
#[path = "common/process.rs"]
mod process;

use l0::calibration::{Calibration, FitParams};
use l0::sweep::{lambda_grid, sweep};
use l0::Device;

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = problems::name_arg(&args);
    let epochs: u64 = problems::flag(&args, "--epochs", 100)?;
    let k: usize = problems::flag(&args, "--models", 8)?;
    let device: Device = problems::flag(&args, "--device", Device::Auto)?;
    let (m, y, groups) = problems::load(which)?;
    let params = problems::bench_params();
    let opts = problems::bench_opts(groups, epochs, device);
    let lambdas = lambda_grid(1e-7, 1e-4, k)?;
    let mut fit = || -> l0::Result<String> {
        let mut model = Calibration::new(m.cols(), params.clone())?;
        Ok(model.fit(&m, &y, &opts)?.device)
    };
    let mut run_sweep = || -> l0::Result<String> {
        let models = sweep(&m, &y, &params, &opts, &lambdas, &mut |_, _| Ok(()))?;
        Ok(models[0].report.device.clone())
    };
    // Warm-up: page faults, the thread pool.
    Calibration::new(m.cols(), params.clone())?.fit(
        &m,
        &y,
        &FitParams {
            epochs: 1,
            ..opts.clone()
        },
    )?;
    let mut best = [(f64::INFINITY, f64::INFINITY); 2];
    let mut peak = [0u64; 2];
    let mut device = String::new();
    for _ in 0..2 {
        for (slot, run) in [
            &mut fit as &mut dyn FnMut() -> l0::Result<String>,
            &mut run_sweep,
        ]
        .into_iter()
        .enumerate()
        {
            process::reset_peak_rss();
            let (t, c) = (std::time::Instant::now(), process::cpu_seconds());
            device = run()?;
            let (t, c) = (t.elapsed().as_secs_f64(), process::cpu_seconds() - c);
            best[slot] = (best[slot].0.min(t), best[slot].1.min(c));
            peak[slot] = peak[slot].max(process::peak_rss());
        }
    }
    let [(fit_s, fit_cpu), (sweep_s, sweep_cpu)] = best;
    let gb = |b: u64| b as f64 / 1e9;
    println!(
        "{{\"problem\": \"{which}\", \"rows\": {}, \"cols\": {}, \"nnz\": {}, \"device\": \"{device}\", \"epochs\": {epochs}, \"models\": {k}, \"fit_seconds\": {fit_s:.3}, \"sweep_seconds\": {sweep_s:.3}, \"ratio\": {:.2}, \"fit_cpu_seconds\": {fit_cpu:.3}, \"sweep_cpu_seconds\": {sweep_cpu:.3}, \"cpu_ratio\": {:.2}, \"fit_peak_gb\": {:.2}, \"sweep_peak_gb\": {:.2}}}",
        m.rows(),
        m.cols(),
        m.nnz(),
        sweep_s / fit_s,
        sweep_cpu / fit_cpu,
        gb(peak[0]),
        gb(peak[1])
    );
    Ok(())
}
