//! Seconds per training epoch on a built-in problem, for side-by-side runs
//! with the reference (scripts/compare_reference.py drives it).
//!
//! `cargo run --release --example epoch_time -- PROBLEM EPOCHS [DUMP_DIR] [--device D]`
//!
//! PROBLEM is `readme`, `geo` (the default geo-stacked survey, ~7M
//! nonzeros) or `geo:H:G:NAT:PER` (H households x G areas, NAT national and
//! PER per-area targets; e.g. `geo:100000:100:10:20` has ~300M nonzeros).
//!
//! With DUMP_DIR, the problem is also written there (matrix.npz as
//! `scipy.sparse.save_npz` writes it, int32 indices and float32 data; y.npy,
//! groups.npy) so that another implementation can time the very same
//! problem.
//!
//! `seconds_per_epoch` is the steady state: after a one-epoch warm-up, fits
//! of `EPOCHS / 4` (at least 1) and `EPOCHS` epochs are timed, and the
//! difference of their times is divided by the difference of their epochs,
//! so per-fit setup and the final report are not counted as epochs
//! (`seconds_per_epoch_with_setup` is the long fit's time over its epochs;
//! `cpu_seconds_per_epoch` is the steady state in CPU time of all threads,
//! which other work on the machine hardly changes).
//! `seconds_per_report` is what a progress report (deterministic weights,
//! predictions, penalties and weight counts, as `--log-every` and the
//! progress lines take them) adds to a fit: the long fit run again with a
//! report every epoch, its extra time over its extra reports (in CPU time
//! as `cpu_seconds_per_report`).
//! Prints one JSON line.

#[path = "common/problems.rs"]
mod problems;
#[path = "common/process.rs"]
mod process;

use l0::calibration::{Calibration, FitParams};
use l0::io::npy::{write_npy_f64, write_npy_i64};
use l0::io::npz::write_npz_csr;
use l0::{Device, SparseMatrix};
use std::path::Path;

fn dump(dir: &Path, m: &SparseMatrix, y: &[f64], groups: &[i64]) -> l0::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| l0::L0Error::Io {
        path: dir.into(),
        message: e.to_string(),
    })?;
    write_npz_csr(&dir.join("matrix.npz"), m)?;
    write_npy_f64(&dir.join("y.npy"), y)?;
    write_npy_i64(&dir.join("groups.npy"), groups)
}

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("geo");
    let epochs: u64 = args.get(1).and_then(|e| e.parse().ok()).unwrap_or(20);
    let device: Device = problems::flag(&args, "--device", Device::Auto)?;
    let dump_dir = args.get(2).filter(|a| !a.starts_with("--"));
    let (m, y, groups) = problems::load(which)?;
    if let Some(d) = dump_dir {
        dump(Path::new(d), &m, &y, &groups)?;
    }
    let mut model = Calibration::new(m.cols(), problems::bench_params())?;
    let opts = problems::bench_opts(groups, 0, device);
    // One warm-up epoch (page faults, thread pool start), then two timed runs.
    // The whole `fit` call is timed, as on the reference's side.
    // CPU time (all threads) is timed too: it hardly changes when other
    // work shares the machine, while wall time does.
    let mut timed = |epochs: u64, report_every: Option<u64>| -> l0::Result<(f64, f64, String)> {
        let (t, c) = (std::time::Instant::now(), process::cpu_seconds());
        let opts = FitParams {
            epochs,
            report_every,
            ..opts.clone()
        };
        let r = model.fit(&m, &y, &opts)?;
        let cpu = process::cpu_seconds() - c;
        Ok((t.elapsed().as_secs_f64(), cpu, r.device))
    };
    timed(1, None)?;
    let short = (epochs / 4).max(1);
    let (t_short, c_short, _) = timed(short, None)?;
    let (t_long, c_long, device) = timed(epochs, None)?;
    // The last epoch reports in both runs; these are the others.
    let reports = (epochs - 1).max(1) as f64;
    let (t_rep, c_rep, _) = timed(epochs, Some(1))?;
    let (report, report_cpu) = ((t_rep - t_long) / reports, (c_rep - c_long) / reports);
    let (steady, steady_cpu) = if epochs > short {
        let d = (epochs - short) as f64;
        ((t_long - t_short) / d, (c_long - c_short) / d)
    } else {
        (t_long / epochs as f64, c_long / epochs as f64)
    };
    println!(
        "{{\"problem\": \"{which}\", \"rows\": {}, \"cols\": {}, \"nnz\": {}, \"device\": \"{device}\", \"epochs\": {epochs}, \"seconds_per_epoch\": {steady:.6}, \"cpu_seconds_per_epoch\": {steady_cpu:.6}, \"seconds_per_epoch_with_setup\": {:.6}, \"gb_per_s\": {:.3}, \"seconds_per_report\": {report:.6}, \"cpu_seconds_per_report\": {report_cpu:.6}}}",
        m.rows(),
        m.cols(),
        m.nnz(),
        t_long / epochs as f64,
        m.storage_bytes() as f64 / steady / 1e9
    );
    Ok(())
}
