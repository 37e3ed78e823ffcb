//! Fits the built-in synthetic geo-stacked survey end to end: 5000
//! households x 50 areas, 30 national and 40 x 50 area targets, relative
//! loss, progress every 100 epochs, and a summary at the end.
//!
//! `cargo run --release --example calibrate [epochs]`

use l0::calibration::{Calibration, CalibrationParams, FitParams, Loss};
use l0::synth::{geo_stacked, GeoSpec};

fn main() -> l0::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(500);
    let p = geo_stacked(&GeoSpec::default())?;
    let m = &p.matrix;
    println!(
        "problem: {} targets x {} columns, {} nonzeros",
        m.rows(),
        m.cols(),
        m.nnz()
    );
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
        lr: 0.2,
        epochs,
        target_groups: Some(p.groups.clone()),
        report_every: Some(100),
        ..Default::default()
    };
    let report = model.fit_with(m, &p.targets, &opts, &mut |pr| {
        println!("{pr}");
        Ok(())
    })?;
    let active = model.active_weights();
    println!(
        "device {}: {} epochs in {:.2} s ({:.4} s/epoch)",
        report.device,
        report.epochs,
        report.seconds,
        report.seconds / report.epochs.max(1) as f64
    );
    println!(
        "kept {} of {} records ({:.1}% sparse); the truth used {}",
        active.count,
        m.cols(),
        100.0 * (1.0 - active.count as f64 / m.cols() as f64),
        p.true_weights.iter().filter(|&&w| w > 0.0).count()
    );
    Ok(())
}
