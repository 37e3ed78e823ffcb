//! The variable-selection demo of the l0-python README: four correlated
//! features (pairwise correlation 0.5), true coefficients [1, 0, -2, 0],
//! intercept 30, noise sd 1.5, n = 500; L0 strength 0.2, Adam lr 0.01, 5000
//! epochs. Prints the truth, the recovered coefficients and the gates in the
//! README's (numpy's) format, under both test-time gate estimators.
//!
//!     cargo run --release --example sparse_regression_demo [seed]

use l0::{Device, Regression, RegressionFitParams, RegressionParams, TestGate};

/// Formats like numpy's `print(np.round(v, 3))`: trailing zeros dropped,
/// integer and fraction parts aligned.
fn np(v: &[f64]) -> String {
    let parts: Vec<(String, String)> = v
        .iter()
        .map(|x| {
            let s = format!("{x:.3}");
            let (i, f) = s.split_once('.').unwrap();
            (i.to_string(), f.trim_end_matches('0').to_string())
        })
        .collect();
    let wi = parts.iter().map(|p| p.0.len()).max().unwrap_or(0);
    let wf = parts.iter().map(|p| p.1.len()).max().unwrap_or(0);
    let cells: Vec<String> = parts
        .iter()
        .map(|(i, f)| format!("{i:>wi$}.{f:<wf$}"))
        .collect();
    format!("[{}]", cells.join(" "))
}

fn main() -> l0::Result<()> {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("seed must be an integer"))
        .unwrap_or(42);
    let (n, p) = (500usize, 4usize);
    let truth = [1.0, 0.0, -2.0, 0.0];
    let (x, y) = l0::synth::correlated_regression(n, &truth, 0.5, 30.0, 1.5, seed);
    let mut model = Regression::new(
        p,
        RegressionParams {
            seed: Some(seed),
            ..Default::default()
        },
    )?;
    let report = model.fit_dense(
        &x,
        &y,
        &RegressionFitParams {
            lambda_l0: 0.2,
            lr: 0.01,
            epochs: 5000,
            device: Device::Cpu,
            threads: Some(1),
            ..Default::default()
        },
    )?;
    let t = TestGate::Temperature;
    let paper = TestGate::Paper;
    println!("True coefficients:        {}", np(&truth));
    println!(
        "Recovered coefficients:   {}",
        np(&model.coefficients_with(t, 0.01))
    );
    println!("Gates:                    {}", np(&model.gates(t)));
    println!();
    println!("Test-time gate estimators side by side:");
    println!("                          with temperature sigmoid(a/beta)   paper sigmoid(a)");
    println!(
        "Recovered coefficients:   {:<35}{}",
        np(&model.coefficients_with(t, 0.01)),
        np(&model.coefficients_with(paper, 0.01))
    );
    println!(
        "Gates:                    {:<35}{}",
        np(&model.gates(t)),
        np(&model.gates(paper))
    );
    println!(
        "Intercept: {:.3} (true 30); {} epochs in {:.2} s on {}",
        model.intercept().unwrap(),
        report.epochs,
        report.seconds,
        report.device
    );
    Ok(())
}
