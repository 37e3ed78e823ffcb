//! Writes a geo-stacked calibration problem (`l0::synth::geo_stacked`) as
//! the files a user hands to `l0 calibrate`: `M.npz` (scipy CSR, readable
//! by `scipy.sparse.load_npz`), `y.npy` and `groups.npy`, for timing whole
//! commands at production shape (scripts/gpu-check.sh).
//!
//! ```text
//! cargo run --release --example write_problem -- geo:12000:436:40:30 DIR
//! ```

#[path = "common/problems.rs"]
mod problems;

use l0::io::npy::{write_npy_f64, write_npy_i64};
use l0::io::npz::write_npz_csr;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = problems::name_arg(&args);
    let dir = PathBuf::from(args.get(1).map_or("problem", String::as_str));
    let t = Instant::now();
    let (m, y, groups) = problems::load(which)?;
    std::fs::create_dir_all(&dir).map_err(|e| l0::L0Error::Io {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    write_npz_csr(&dir.join("M.npz"), &m)?;
    write_npy_f64(&dir.join("y.npy"), &y)?;
    write_npy_i64(&dir.join("groups.npy"), &groups)?;
    println!(
        "{which}: {} x {}, {} nonzeros, written to {} in {:.1} s",
        m.rows(),
        m.cols(),
        m.nnz(),
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
