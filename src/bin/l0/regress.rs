//! `l0 regress`: fit the sparse regression model and write its outputs.

use super::inputs::*;
use super::outdir;
use super::*;

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct RegressArgs {
    /// Design matrix X, samples x features: .npz, .mtx or a dense 2-D .npy.
    #[arg(long)]
    x: PathBuf,
    /// Response y, one per row of X: .npy or one-column .csv.
    #[arg(long)]
    y: PathBuf,
    #[command(flatten)]
    fit: CommonFit,
    /// Fit without an intercept.
    #[arg(long)]
    no_intercept: bool,
    /// Gate threshold for a selected feature [default: 0.01].
    #[arg(long)]
    threshold: Option<f64>,
    /// Output folder [default: ./l0-out]. A run owns it: one holding
    /// another run's files is refused unless --overwrite.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the files of an earlier run in --out.
    #[arg(long)]
    overwrite: bool,
}

pub(super) fn regress(a: RegressArgs) -> CliResult<()> {
    let f = &a.fit;
    positive("progress-every", f.progress_every)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("l0-out"));
    let must_clear = outdir::check(&out, a.overwrite, false)?;
    let x = load_matrix(&a.x)?;
    let y = load_vector(&a.y, "responses", x.rows(), "row of X")?;
    let lib = RegressionParams::default();
    let lib_fit = RegressionFitParams::default();
    let seed = f.seed.unwrap_or_else(rand::random);
    let params = RegressionParams {
        gate: GateParams {
            beta: f.beta.unwrap_or(lib.gate.beta),
            gamma: f.gamma.unwrap_or(lib.gate.gamma),
            zeta: f.zeta.unwrap_or(lib.gate.zeta),
        },
        fit_intercept: !a.no_intercept,
        log_alpha_jitter_sd: f.log_alpha_jitter_sd.unwrap_or(lib.log_alpha_jitter_sd),
        seed: Some(seed),
        test_gate: match &f.test_gate {
            Some(t) => parse_test_gate(t)?,
            None => lib.test_gate,
        },
        ..lib
    };
    let epochs = f.epochs.unwrap_or(lib_fit.epochs);
    let progress_every = f.progress_every.unwrap_or((epochs / 10).max(1));
    let opts = RegressionFitParams {
        lambda_l0: f.lambda_l0.unwrap_or(lib_fit.lambda_l0),
        lambda_l2: f.lambda_l2.unwrap_or(lib_fit.lambda_l2),
        lr: f.lr.unwrap_or(lib_fit.lr),
        epochs,
        device: parse_flag("device", f.device.as_deref().unwrap_or("auto"))?,
        threads: f.threads,
        report_every: Some(progress_every),
    };
    let threshold = a.threshold.unwrap_or(0.01);
    if must_clear {
        outdir::clear(&out)?;
    }
    eprintln!(
        "l0 regress: {} samples x {} features ({} nonzeros); epochs={} lr={:?} lambda_l0={:?} lambda_l2={:?} seed={}",
        x.rows(),
        x.cols(),
        x.nnz(),
        opts.epochs,
        opts.lr,
        opts.lambda_l0,
        opts.lambda_l2,
        seed
    );
    let mut model = Regression::new(x.cols(), params)?;
    let report = model.fit_with(&x, &y, &opts, &mut |p| {
        eprintln!("{p}");
        Ok(())
    })?;
    let coef = model.coefficients(threshold);
    let gates = model.deterministic_gates();
    let selected: Vec<usize> = (0..coef.len()).filter(|&i| gates[i] >= threshold).collect();
    let pred = model.predict(&x)?;
    let n = y.len() as f64;
    let mse = y
        .iter()
        .zip(&pred)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / n;
    let mean = y.iter().sum::<f64>() / n;
    let tss = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
    let r2 = if tss > 0.0 { 1.0 - mse * n / tss } else { 0.0 };

    let summary = Json::Object(vec![
        ("rows".into(), Json::Int(x.rows() as i128)),
        ("cols".into(), Json::Int(x.cols() as i128)),
        ("nnz".into(), Json::Int(x.nnz() as i128)),
        ("device".into(), Json::Str(report.device.clone())),
        ("epochs".into(), Json::Int(report.epochs as i128)),
        ("seconds".into(), Json::Num(report.seconds)),
        (
            "seconds_per_epoch".into(),
            Json::Num(report.seconds / report.epochs.max(1) as f64),
        ),
        ("seed".into(), Json::Int(seed as i128)),
        (
            "loss".into(),
            report
                .last
                .as_ref()
                .map_or(Json::Null, |p| Json::Num(p.total_loss)),
        ),
        ("mse".into(), Json::Num(mse)),
        ("r2".into(), Json::Num(r2)),
        (
            "intercept".into(),
            model.intercept().map_or(Json::Null, Json::Num),
        ),
        ("threshold".into(), Json::Num(threshold)),
        ("selected".into(), Json::Int(selected.len() as i128)),
        (
            "sparsity".into(),
            Json::Num(1.0 - selected.len() as f64 / x.cols() as f64),
        ),
        ("lambda_l0".into(), Json::Num(opts.lambda_l0)),
        ("lambda_l2".into(), Json::Num(opts.lambda_l2)),
        ("lr".into(), Json::Num(opts.lr)),
    ]);
    outdir::commit(&out, |dir| {
        write_npy_f64(&dir.join("coefficients.npy"), &coef)?;
        l0::io::csv::write_csv(
            &dir.join("selected.csv"),
            &["feature", "coefficient", "gate"],
            selected.iter().map(|&i| {
                vec![
                    i.to_string(),
                    format!("{:?}", coef[i]),
                    format!("{:?}", gates[i]),
                ]
            }),
        )?;
        report::write_json(&dir.join("summary.json"), &summary)?;
        Ok(())
    })?;
    println!(
        "done: {} epochs in {:.1} s on {}; {} of {} features selected; training mse {:.6}, r2 {:.4}",
        report.epochs,
        report.seconds,
        report.device,
        selected.len(),
        x.cols(),
        mse,
        r2
    );
    println!(
        "outputs in {}: coefficients.npy, selected.csv, summary.json",
        out.display()
    );
    Ok(())
}
