//! Seconds per training epoch on a built-in problem, for side-by-side runs
//! with the reference (scripts/compare_reference.py drives it).
//!
//! `cargo run --release --example epoch_time -- PROBLEM EPOCHS [DUMP_DIR] [--device D]`
//!
//! PROBLEM is `readme`, `geo` (the default geo-stacked survey, ~7M
//! nonzeros) or `geo:H:G:NAT:PER` (H households x G areas, NAT national and
//! PER per-area targets; e.g. `geo:100000:100:10:20` has ~300M nonzeros).
//!
//! With DUMP_DIR, the problem is also written there as CSR arrays
//! (indptr.npy, indices.npy, data.npy, shape.npy, y.npy, groups.npy) so that
//! another implementation can time the very same problem. Prints one JSON line.

use l0::calibration::{Calibration, CalibrationParams, FitParams, Loss};
use l0::io::npy::{write_npy_f64, write_npy_i64};
use l0::synth::{geo_stacked, readme_problem, GeoSpec};
use l0::{Device, SparseMatrix};
use std::path::Path;

fn dump(dir: &Path, m: &SparseMatrix, y: &[f64], groups: &[i64]) -> l0::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| l0::L0Error::Io {
        path: dir.into(),
        message: e.to_string(),
    })?;
    let csr = m.csr();
    let ip: Vec<i64> = csr
        .indptr()
        .raw_storage()
        .iter()
        .map(|&p| p as i64)
        .collect();
    let ix: Vec<i64> = csr.indices().iter().map(|&i| i as i64).collect();
    let dv: Vec<f64> = csr.data().iter().map(|&v| v as f64).collect();
    write_npy_i64(&dir.join("indptr.npy"), &ip)?;
    write_npy_i64(&dir.join("indices.npy"), &ix)?;
    write_npy_f64(&dir.join("data.npy"), &dv)?;
    write_npy_i64(&dir.join("shape.npy"), &[m.rows() as i64, m.cols() as i64])?;
    write_npy_f64(&dir.join("y.npy"), y)?;
    write_npy_i64(&dir.join("groups.npy"), groups)
}

/// `geo` or `geo:H:G:NAT:PER`.
fn geo_spec(spec: &str) -> l0::Result<GeoSpec> {
    let mut g = GeoSpec::default();
    let parts: Vec<&str> = spec.split(':').collect();
    if parts[0] != "geo" || !(parts.len() == 1 || parts.len() == 5) {
        return Err(l0::L0Error::config(format!(
            "unknown problem '{spec}': expected readme, geo or geo:H:G:NAT:PER"
        )));
    }
    if parts.len() == 5 {
        let n: Vec<usize> = parts[1..]
            .iter()
            .map(|x| {
                x.parse()
                    .map_err(|_| l0::L0Error::config(format!("bad number '{x}' in '{spec}'")))
            })
            .collect::<l0::Result<_>>()?;
        (g.households, g.areas, g.national, g.per_area) = (n[0], n[1], n[2], n[3]);
    }
    Ok(g)
}

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("geo");
    let epochs: u64 = args.get(1).and_then(|e| e.parse().ok()).unwrap_or(20);
    let device: Device = match args.iter().position(|a| a == "--device") {
        Some(k) => args[k + 1].parse()?,
        None => Device::Auto,
    };
    let dump_dir = args.get(2).filter(|a| !a.starts_with("--"));
    let (m, y, groups) = match which {
        "readme" => {
            let (m, y) = readme_problem(200, 10_000, 0.3, 1)?;
            let g = vec![0i64; y.len()];
            (m, y, g)
        }
        spec => {
            let p = geo_stacked(&geo_spec(spec)?)?;
            (p.matrix, p.targets, p.groups)
        }
    };
    if let Some(d) = dump_dir {
        dump(Path::new(d), &m, &y, &groups)?;
    }
    let mut model = Calibration::new(
        m.cols(),
        CalibrationParams {
            seed: Some(1),
            ..Default::default()
        },
    )?;
    let opts = FitParams {
        loss: Loss::Relative,
        lambda_l0: 1e-6,
        lr: 0.15,
        epochs,
        target_groups: Some(groups),
        device,
        ..Default::default()
    };
    // One warm-up epoch (page faults, thread pool start), then the timed run.
    model.fit(
        &m,
        &y,
        &FitParams {
            epochs: 1,
            ..opts.clone()
        },
    )?;
    let r = model.fit(&m, &y, &opts)?;
    println!(
        "{{\"problem\": \"{which}\", \"rows\": {}, \"cols\": {}, \"nnz\": {}, \"device\": \"{}\", \"epochs\": {epochs}, \"seconds_per_epoch\": {:.6}, \"gb_per_s\": {:.3}}}",
        m.rows(),
        m.cols(),
        m.nnz(),
        r.device,
        r.seconds / epochs as f64,
        m.storage_bytes() as f64 * epochs as f64 / r.seconds / 1e9
    );
    Ok(())
}
