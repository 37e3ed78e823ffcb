//! Records count trajectories for replaying the record-budget search
//! (`l0::budget`) offline: models over a grid of λ trained together, the
//! active count of each written every `--every` epochs.
//!
//! `cargo run --release --example budget_record -- [PROBLEM] [--epochs E]
//! [--lr LR] [--keep P] [--every N] [--grid LO:HI:PER_DECADE,...]`
//!
//! PROBLEM as in `examples/epoch_time.rs` (default `geo`, the CLI's demo);
//! the fit options are the CLI demo's (relative loss, seed 1, lr 0.2, 1000
//! epochs, the problem's target groups); `--keep` sets the gates' initial
//! keep probability (default 0.5). The grid is the union of log-spaced
//! pieces (default `1e-9:1e-1:10`). Prints `lambda step active` lines (TSV)
//! to stdout, `cols` first as a comment.

#[path = "common/problems.rs"]
mod problems;

use l0::calibration::{CalibrationParams, FitParams, Init, Loss};
use l0::sweep::{advance, lambda_grid, start};
use l0::Device;

fn main() -> l0::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = problems::name_arg(&args);
    let epochs: u64 = problems::flag(&args, "--epochs", 1000)?;
    let lr: f64 = problems::flag(&args, "--lr", 0.2)?;
    let keep: f64 = problems::flag(&args, "--keep", 0.5)?;
    let every: u64 = problems::flag(&args, "--every", 50)?;
    let grid: String = problems::flag(&args, "--grid", "1e-9:1e-1:10".to_string())?;
    if every == 0 {
        return Err(l0::L0Error::config("--every must be at least 1"));
    }
    let mut lambdas = Vec::new();
    for piece in grid.split(',') {
        let p: Vec<f64> = piece
            .split(':')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|p: &Vec<f64>| p.len() == 3 && p[0] > 0.0 && p[1] > p[0] && p[2] > 0.0)
            .ok_or_else(|| {
                l0::L0Error::config(format!(
                    "--grid: {piece} is not LO:HI:PER_DECADE with 0 < LO < HI and PER_DECADE > 0"
                ))
            })?;
        let n = ((p[1] / p[0]).log10() * p[2]).round() as usize + 1;
        lambdas.extend(lambda_grid(p[0], p[1], n)?);
    }
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup_by(|a, b| (*a / *b - 1.0).abs() < 1e-9);
    let (m, y, groups) = problems::load(which)?;
    let params = CalibrationParams {
        seed: Some(1),
        init_keep_prob: Init::Scalar(keep),
        ..Default::default()
    };
    let opts = FitParams {
        loss: Loss::Relative,
        lr,
        epochs,
        target_groups: Some(groups),
        device: Device::Cpu,
        report_every: None,
        ..Default::default()
    };
    println!("# cols {}", m.cols());
    for chunk in lambdas.chunks(8) {
        let mut models = start(m.cols(), &params, chunk)?;
        let mut t = 0;
        while t < epochs {
            let step = every.min(epochs - t);
            advance(&mut models, &m, &y, &opts, step, &mut |_, _| Ok(()))?;
            t += step;
            for s in &models {
                println!(
                    "{:e}\t{}\t{}",
                    s.lambda_l0,
                    t,
                    s.model.active_weights().count
                );
            }
        }
        eprintln!("done {:e}..{:e}", chunk[0], chunk[chunk.len() - 1]);
    }
    Ok(())
}
