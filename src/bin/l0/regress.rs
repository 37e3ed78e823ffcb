//! `l0 regress`: fit the sparse regression model and write its outputs.

use super::inputs::*;
use super::outdir;
use super::*;
use l0::{
    fit_path, fit_path_all_rows, refit_least_squares, EarlyStop, LeastSquares, PathParams,
    PathPoint, Selection,
};

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
    /// N log-spaced L0 strengths from LO to HI: a lambda path, like a
    /// --lambda-l0 list of several values.
    #[arg(long, value_name = "LO:HI:N")]
    lambda_grid: Option<String>,
    /// With a lambda path: the share of the rows (the last ones) kept out of
    /// training to score each lambda by its validation error [default: 0.2
    /// with --select min-error or one-se; none with ebic or gic, which
    /// train and choose on all rows].
    #[arg(long, value_name = "F")]
    validation_fraction: Option<f64>,
    /// With a lambda path: how the lambda is chosen, ebic or gic (lowest
    /// extended BIC or generalised information criterion of the
    /// least-squares fits on the training rows, all rows unless
    /// --validation-fraction, as abess chooses), min-error (lowest
    /// validation error) or one-se (the sparsest within one standard error
    /// of it) [default: ebic].
    #[arg(long, value_name = "RULE")]
    select: Option<String>,
    /// With a lambda path: score each support by its least-squares refit
    /// and write the chosen support's least-squares coefficients on all
    /// rows (the default).
    #[arg(long)]
    refit: bool,
    /// With a lambda path: score the gated coefficients instead of
    /// least-squares refits (no splicing either).
    #[arg(long, conflicts_with = "refit")]
    no_refit: bool,
    /// With a lambda path: score each support as the gates leave it,
    /// without abess's splicing (exchanges and swaps that lower the
    /// training error, and for ebic/gic the support sizes around the chosen
    /// one and abess's path over support sizes).
    #[arg(long)]
    no_splice: bool,
    /// With a lambda path: train all --epochs, not stopping once the chosen
    /// (spliced) support is the same at two looks ceil(2.5 / lr) epochs
    /// apart.
    #[arg(long)]
    no_early_stop: bool,
}

/// A lambda path's options: the validation share (None: no rows held
/// out), the rule and the refit.
struct PathChoice {
    lambdas: Vec<f64>,
    validation: Option<f64>,
    selection: Selection,
    refit: bool,
    splice: bool,
    early_stop: Option<EarlyStop>,
}

/// The lambda path asked for (None: a single fit), checked.
fn path_choice(a: &RegressArgs) -> CliResult<Option<PathChoice>> {
    let lambdas = match lambda_values(&a.fit.lambda_l0, a.lambda_grid.as_deref())? {
        Some(l) if l.len() > 1 || a.lambda_grid.is_some() => l,
        _ => {
            for (flag, given) in [
                ("--validation-fraction", a.validation_fraction.is_some()),
                ("--select", a.select.is_some()),
                ("--refit", a.refit),
                ("--no-refit", a.no_refit),
                ("--no-splice", a.no_splice),
                ("--no-early-stop", a.no_early_stop),
            ] {
                if given {
                    return Err(input_error(format!(
                        "{flag} applies to a lambda path: give --lambda-l0 A,B,... or --lambda-grid"
                    )));
                }
            }
            return Ok(None);
        }
    };
    if let Some(v) = a.validation_fraction.filter(|v| !(*v > 0.0 && *v < 1.0)) {
        return Err(input_error(format!(
            "--validation-fraction must be a share between 0 and 1 (exclusive), got {v}"
        )));
    }
    let selection = match a.select.as_deref() {
        None => Selection::default(),
        Some("ebic") => Selection::Ebic,
        Some("gic") => Selection::Gic,
        Some("min-error") => Selection::MinError,
        Some("one-se") => Selection::OneStandardError,
        Some(other) => {
            return Err(input_error(format!(
                "--select: expected ebic, gic, min-error or one-se, got '{other}'"
            )))
        }
    };
    // The criteria score the rows they were fitted on: no hold-out unless
    // asked for; the validation rules need one.
    let validation = match selection {
        Selection::Ebic | Selection::Gic => a.validation_fraction,
        Selection::MinError | Selection::OneStandardError => {
            Some(a.validation_fraction.unwrap_or(0.2))
        }
    };
    Ok(Some(PathChoice {
        lambdas,
        validation,
        selection,
        refit: !a.no_refit,
        splice: !a.no_splice,
        early_stop: (!a.no_early_stop).then(EarlyStop::default),
    }))
}

/// The trained model, how it was trained, and for a path its points, the
/// chosen index and the least-squares coefficients (on all rows) when
/// refitted.
struct Fitted {
    model: Regression,
    lambda_l0: f64,
    device: String,
    epochs: u64,
    seconds: f64,
    loss: Option<f64>,
    path: Option<(Vec<PathPoint>, usize, Option<LeastSquares>)>,
}

/// One fit at the given lambda, printing its progress lines.
fn fit_one(
    x: &SparseMatrix,
    y: &[f64],
    params: RegressionParams,
    opts: &RegressionFitParams,
) -> CliResult<Fitted> {
    let mut model = Regression::new(x.cols(), params)?;
    let report = model.fit_with(x, y, opts, &mut |p| {
        eprintln!("{p}");
        Ok(())
    })?;
    Ok(Fitted {
        model,
        lambda_l0: opts.lambda_l0,
        device: report.device,
        epochs: report.epochs,
        seconds: report.seconds,
        loss: report.last.map(|p| p.total_loss),
        path: None,
    })
}

/// A CSV cell: the value exactly, or empty for None.
fn optional(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:?}"))
}

/// Writes path.csv: one row per lambda of the path (empty cells for the
/// validation error of a path without held-out rows, and for the criteria
/// of a support that could not be refitted).
fn write_path_csv(path: &Path, points: &[PathPoint], best: usize) -> CliResult<()> {
    l0::io::csv::write_csv(
        path,
        &[
            "lambda_l0",
            "selected",
            "val_mse",
            "val_se",
            "refitted",
            "chosen",
            "gic",
            "ebic",
        ],
        points.iter().enumerate().map(|(k, p)| {
            vec![
                format!("{:?}", p.lambda),
                p.support.len().to_string(),
                optional(p.val_mse),
                optional(p.val_se),
                p.refitted.to_string(),
                (k == best).to_string(),
                optional(p.gic),
                optional(p.ebic),
            ]
        }),
    )?;
    Ok(())
}

/// The rows a path trains on and those it holds out: the last
/// `validation` share of the rows (None: none, all rows train).
fn split_rows(x: &SparseMatrix, validation: Option<f64>) -> CliResult<usize> {
    let Some(share) = validation else {
        return Ok(x.rows());
    };
    let n_val = ((x.rows() as f64) * share).ceil() as usize;
    if n_val == 0 || n_val >= x.rows() {
        return Err(input_error(format!(
            "--validation-fraction {share} leaves {n_val} of {} rows for validation: both parts need at least one row",
            x.rows()
        )));
    }
    Ok(x.rows() - n_val)
}

/// Trains along the path: with a validation share, the last rows score
/// each lambda (`l0::fit_path`) and the rest train; without, every row
/// trains and the criterion chooses (`l0::fit_path_all_rows`).
fn fit_along(
    x: &SparseMatrix,
    y: &[f64],
    params: &RegressionParams,
    opts: &RegressionFitParams,
    choice: &PathChoice,
    threshold: f64,
) -> CliResult<Fitted> {
    let split = split_rows(x, choice.validation)?;
    let path = PathParams {
        lambdas: choice.lambdas.clone(),
        threshold,
        refit: choice.refit,
        splice: choice.splice,
        size_path: choice.splice,
        selection: choice.selection,
        early_stop: choice.early_stop,
    };
    let start = std::time::Instant::now();
    let r = if split < x.rows() {
        let (x_train, x_val) = (x.select_rows(0..split)?, x.select_rows(split..x.rows())?);
        fit_path(
            params,
            opts,
            &path,
            &x_train,
            &y[..split],
            &x_val,
            &y[split..],
        )?
    } else {
        fit_path_all_rows(params, opts, &path, x, y)?
    };
    let seconds = start.elapsed().as_secs_f64();
    for (k, pt) in r.points.iter().enumerate() {
        let validation = match (pt.val_mse, pt.val_se) {
            (Some(mse), Some(se)) => format!(", validation mse {mse:.6} (se {se:.6})"),
            _ => String::new(),
        };
        eprintln!(
            "lambda_l0 {:.4e}: {} selected{validation}, ebic {}{}",
            pt.lambda,
            pt.support.len(),
            pt.ebic.map_or("-".into(), |v| format!("{v:.2}")),
            if k == r.best { "  <- chosen" } else { "" }
        );
    }
    // The chosen support's least-squares fit on all rows (the path's own
    // refit when it trained on all of them).
    let ls = match (choice.refit, r.refit) {
        (false, _) => None,
        (true, Some(ls)) if split == x.rows() => Some(ls),
        (true, _) => {
            let support = &r.points[r.best].support;
            Some(refit_least_squares(x, y, support, params.fit_intercept)?)
        }
    };
    let rows = match split < x.rows() {
        true => format!("{split} training rows, {} validation", x.rows() - split),
        false => format!("all {split} rows, none held out"),
    };
    Ok(Fitted {
        lambda_l0: r.lambda,
        model: r.model,
        device: format!(
            "a path of {} lambdas ({rows}, device {:?})",
            choice.lambdas.len(),
            opts.device
        ),
        epochs: r.epochs,
        seconds,
        loss: None,
        path: Some((r.points, r.best, ls)),
    })
}

pub(super) fn regress(a: RegressArgs) -> CliResult<()> {
    let _interrupt = super::interrupt::Interrupt::install();
    let f = &a.fit;
    positive("progress-every", f.progress_every)?;
    f.check_threads()?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("l0-out"));
    let outdir = outdir::OutDir::claim(&out, a.overwrite, false)?;
    let x = load_matrix(&a.x)?;
    let y = load_vector(&a.y, "responses", x.rows(), "row of X")?;
    let lib = RegressionParams::default();
    let fit_intercept = !a.no_intercept;
    let lib_fit = RegressionFitParams::default();
    let seed = f.seed.unwrap_or_else(rand::random);
    let params = RegressionParams {
        gate: GateParams {
            beta: f.beta.unwrap_or(lib.gate.beta),
            gamma: f.gamma.unwrap_or(lib.gate.gamma),
            zeta: f.zeta.unwrap_or(lib.gate.zeta),
        },
        fit_intercept,
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
    let choice = path_choice(&a)?;
    let opts = RegressionFitParams {
        lambda_l0: match &choice {
            Some(_) => lib_fit.lambda_l0,
            None => f.lambda_l0.first().copied().unwrap_or(lib_fit.lambda_l0),
        },
        lambda_l2: f.lambda_l2.unwrap_or(lib_fit.lambda_l2),
        lr: f.lr.unwrap_or(lib_fit.lr),
        epochs,
        device: parse_flag("device", f.device.as_deref().unwrap_or("auto"))?,
        threads: f.threads,
        report_every: Some(progress_every),
    };
    let threshold = a.threshold.unwrap_or(0.01);
    if let Some(c) = &choice {
        l0::sweep::check_models(c.lambdas.len(), x.cols())?;
    }
    let lambda_text = match &choice {
        Some(c) => format!("a path of {} values", c.lambdas.len()),
        None => format!("{:?}", opts.lambda_l0),
    };
    eprintln!(
        "l0 regress: {} samples x {} features ({} nonzeros); epochs={} lr={:?} lambda_l0={lambda_text} lambda_l2={:?} seed={}",
        x.rows(),
        x.cols(),
        x.nnz(),
        opts.epochs,
        opts.lr,
        opts.lambda_l2,
        seed
    );
    let fitted = match &choice {
        Some(c) => fit_along(&x, &y, &params, &opts, c, threshold)?,
        None => fit_one(&x, &y, params, &opts)?,
    };
    let model = &fitted.model;
    // The least-squares refit of a path replaces the gated model's
    // coefficients, predictions and intercept.
    let (coef, pred, intercept) = match fitted.path.as_ref().and_then(|p| p.2.as_ref()) {
        Some(ls) => (
            ls.coefficients.clone(),
            ls.predict(&x)?,
            fit_intercept.then_some(ls.intercept),
        ),
        None => (
            model.coefficients(threshold),
            model.predict(&x)?,
            model.intercept(),
        ),
    };
    let gates = model.deterministic_gates();
    // A path's refit (spliced) support, else the gates above the threshold.
    let selected: Vec<usize> = match fitted.path.as_ref().and_then(|p| p.2.as_ref()) {
        Some(ls) => ls.support.clone(),
        None => (0..coef.len()).filter(|&i| gates[i] >= threshold).collect(),
    };
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
        ("device".into(), Json::Str(fitted.device.clone())),
        ("epochs".into(), Json::Int(fitted.epochs as i128)),
        ("seconds".into(), Json::Num(fitted.seconds)),
        (
            "seconds_per_epoch".into(),
            Json::Num(fitted.seconds / fitted.epochs.max(1) as f64),
        ),
        ("seed".into(), Json::Int(seed as i128)),
        ("loss".into(), fitted.loss.map_or(Json::Null, Json::Num)),
        ("mse".into(), Json::Num(mse)),
        ("r2".into(), Json::Num(r2)),
        ("intercept".into(), intercept.map_or(Json::Null, Json::Num)),
        ("threshold".into(), Json::Num(threshold)),
        ("selected".into(), Json::Int(selected.len() as i128)),
        (
            "sparsity".into(),
            Json::Num(1.0 - selected.len() as f64 / x.cols() as f64),
        ),
        ("lambda_l0".into(), Json::Num(fitted.lambda_l0)),
        ("lambda_l2".into(), Json::Num(opts.lambda_l2)),
        ("lr".into(), Json::Num(opts.lr)),
        (
            "path".into(),
            match &choice {
                None => Json::Null,
                Some(c) => Json::Object(vec![
                    (
                        "lambdas".into(),
                        Json::Array(c.lambdas.iter().map(|&l| Json::Num(l)).collect()),
                    ),
                    (
                        "validation_fraction".into(),
                        c.validation.map_or(Json::Null, Json::Num),
                    ),
                    (
                        "select".into(),
                        Json::Str(
                            match c.selection {
                                Selection::MinError => "min-error",
                                Selection::OneStandardError => "one-se",
                                Selection::Gic => "gic",
                                Selection::Ebic => "ebic",
                            }
                            .into(),
                        ),
                    ),
                    ("refit".into(), Json::Bool(c.refit)),
                    ("splice".into(), Json::Bool(c.refit && c.splice)),
                    ("early_stop".into(), Json::Bool(c.early_stop.is_some())),
                ]),
            },
        ),
    ]);
    outdir.commit(|dir| {
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
        if let Some((points, best, _)) = &fitted.path {
            write_path_csv(&dir.join("path.csv"), points, *best)?;
        }
        Ok(())
    })?;
    println!(
        "done: {} epochs in {:.1} s on {}; {} of {} features selected; training mse {:.6}, r2 {:.4}",
        fitted.epochs,
        fitted.seconds,
        fitted.device,
        selected.len(),
        x.cols(),
        mse,
        r2
    );
    println!(
        "outputs in {}: coefficients.npy, selected.csv, summary.json{}",
        out.display(),
        if fitted.path.is_some() {
            ", path.csv"
        } else {
            ""
        }
    );
    Ok(())
}
