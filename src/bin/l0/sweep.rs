//! `l0 sweep`: one calibration model per L0 strength on the inputs and
//! flags of `l0 calibrate` ([`l0::sweep::sweep`]), written as sweep.csv,
//! weights_<k>.npy, summary.json and sweep.svg.

use super::calibrate::{load_problem, plan, resolve, settle_seed, CalibrateArgs, Problem, Sources};
use super::inputs::positive;
use super::outdir;
use super::*;
use l0::plot::{sweep_svg, SweepPoint};
use l0::sweep::SweepModel;

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct SweepArgs {
    #[command(flatten)]
    calibrate: CalibrateArgs,
    /// N log-spaced L0 strengths from LO to HI (instead of a --lambda-l0 list).
    #[arg(long, value_name = "LO:HI:N")]
    lambda_grid: Option<String>,
}

/// The columns of sweep.csv (the holdout's two only with a holdout).
const COLUMNS: [&str; 13] = [
    "lambda_l0",
    "active",
    "sparsity",
    "loss",
    "rel_loss",
    "mean_abs_rel_err",
    "max_abs_rel_err",
    "within_1pct",
    "within_5pct",
    "within_10pct",
    "within_25pct",
    "holdout_mean_abs_rel_err",
    "holdout_max_abs_rel_err",
];

/// The L0 strengths: a --lambda-l0 list or a --lambda-grid.
fn lambdas(a: &SweepArgs) -> CliResult<Vec<f64>> {
    lambda_values(&a.calibrate.fit.lambda_l0, a.lambda_grid.as_deref())?
        .ok_or_else(|| input_error("l0 sweep needs --lambda-l0 A,B,... or --lambda-grid LO:HI:N"))
}

/// Refuses the calibrate flags a sweep does not take.
fn refuse_unsupported(a: &CalibrateArgs) -> CliResult<()> {
    for (flag, given) in [
        ("--resume", a.resume.is_some()),
        ("--checkpoint-every", a.checkpoint_every.is_some()),
        ("--log-every", a.log_every.is_some()),
        ("--refit", a.refit || a.refit_epochs.is_some()),
        (
            "--target-records",
            a.target_records.is_some() || a.records_tolerance.is_some(),
        ),
    ] {
        if given {
            return Err(input_error(format!("{flag} is not supported by l0 sweep")));
        }
    }
    Ok(())
}

/// One model's figures and deterministic weights.
struct Row {
    lambda_l0: f64,
    weights: Vec<f64>,
    active: usize,
    loss: f64,
    accuracy: Accuracy,
    holdout: Option<Accuracy>,
}

impl Row {
    fn of(s: &SweepModel, p: &Problem, roles: &[TargetRole]) -> CliResult<Self> {
        let w = s.model.weights(true);
        let rows = report::target_rows(&p.names, &p.y, &p.m.mul_vec(&w)?, roles);
        Ok(Row {
            lambda_l0: s.lambda_l0,
            active: w.iter().filter(|&&x| x > 0.0).count(),
            weights: w,
            loss: s.report.last.as_ref().map_or(f64::NAN, |l| l.total_loss),
            accuracy: Accuracy::of(&rows),
            holdout: Accuracy::holdout(&rows),
        })
    }

    fn fields(&self, cols: usize) -> Vec<(String, Json)> {
        let a = &self.accuracy;
        let mut f = vec![
            ("lambda_l0".to_string(), Json::Num(self.lambda_l0)),
            ("active".into(), Json::Int(self.active as i128)),
            (
                "sparsity".into(),
                Json::Num(1.0 - self.active as f64 / cols as f64),
            ),
            ("loss".into(), Json::Num(self.loss)),
            ("rel_loss".into(), Json::Num(a.rel_loss)),
            ("mean_abs_rel_err".into(), Json::Num(a.mean_abs_rel_err)),
            ("max_abs_rel_err".into(), Json::Num(a.max_abs_rel_err)),
        ];
        for (name, share) in COLUMNS[7..11].iter().zip(a.within) {
            f.push((name.to_string(), Json::Num(share)));
        }
        if let Some(h) = &self.holdout {
            f.push((COLUMNS[11].into(), Json::Num(h.mean_abs_rel_err)));
            f.push((COLUMNS[12].into(), Json::Num(h.max_abs_rel_err)));
        }
        f
    }
}

fn csv_text(v: &Json) -> String {
    match v {
        Json::Num(x) => format!("{:?}", x + 0.0),
        Json::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

fn write_outputs(
    dir: &Path,
    rows: &[Row],
    cols: usize,
    summary: &Json,
    title: &str,
) -> CliResult<()> {
    let holdout = rows.iter().any(|r| r.holdout.is_some());
    let header = &COLUMNS[..if holdout { 13 } else { 11 }];
    l0::io::csv::write_csv(
        &dir.join("sweep.csv"),
        header,
        rows.iter()
            .map(|r| r.fields(cols).iter().map(|(_, v)| csv_text(v)).collect()),
    )?;
    for (k, r) in rows.iter().enumerate() {
        write_npy_f64(&dir.join(format!("weights_{k}.npy")), &r.weights)?;
    }
    report::write_json(&dir.join("summary.json"), summary)?;
    let points: Vec<SweepPoint> = rows
        .iter()
        .map(|r| SweepPoint {
            lambda_l0: r.lambda_l0,
            active: r.active as u64,
            mean_abs_rel_err: r.accuracy.mean_abs_rel_err,
            max_abs_rel_err: r.accuracy.max_abs_rel_err,
            holdout_mean_abs_rel_err: r.holdout.as_ref().map(|h| h.mean_abs_rel_err),
        })
        .collect();
    let svg = sweep_svg(title, &points);
    l0::io::write_atomic(&dir.join("sweep.svg"), |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}

pub(super) fn sweep(args: SweepArgs) -> CliResult<()> {
    let a = &args.calibrate;
    refuse_unsupported(a)?;
    positive("progress-every", a.fit.progress_every)?;
    let lambdas = lambdas(&args)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("l0-out"));
    let must_clear = outdir::check(&out, a.overwrite, false)?;
    let problem = load_problem(&Sources::new(a, None))?;
    let mut resolved = resolve(a, problem.demo, None);
    let seed = settle_seed(&mut resolved, None);
    let plan = plan(&resolved, a, &problem, seed, false)?;
    if must_clear {
        outdir::clear(&out)?;
    }
    let (m, y) = (&problem.m, &problem.y);
    let every = a.fit.progress_every.unwrap_or((plan.epochs / 4).max(1));
    eprintln!(
        "l0 sweep: {}\n  {} targets x {} columns, {} nonzeros; {} models, lambda_l0 = {:?}; output folder {}",
        problem.description,
        m.rows(),
        m.cols(),
        m.nnz(),
        lambdas.len(),
        lambdas,
        out.display()
    );
    let opts = FitParams {
        report_every: Some(every),
        ..plan.fit.clone()
    };
    let k_all = lambdas.len();
    let start = std::time::Instant::now();
    let models = l0::sweep::sweep(m, y, &plan.model, &opts, &lambdas, &mut |k, p| {
        eprintln!("model {}/{k_all} (lambda_l0={:?}): {p}", k + 1, lambdas[k]);
        Ok(())
    })?;
    let roles = plan.roles(m.rows());
    let rows: Vec<Row> = models
        .iter()
        .map(|s| Row::of(s, &problem, &roles))
        .collect::<CliResult<_>>()?;
    let seconds = start.elapsed().as_secs_f64();
    let mut settings = resolved.json();
    for (k, v) in settings.iter_mut() {
        if k == "lambda_l0" {
            *v = Json::Array(lambdas.iter().map(|&l| Json::Num(l)).collect());
        }
    }
    let summary = Json::Object(vec![
        ("rows".into(), Json::Int(m.rows() as i128)),
        ("cols".into(), Json::Int(m.cols() as i128)),
        ("nnz".into(), Json::Int(m.nnz() as i128)),
        ("device".into(), Json::Str(models[0].report.device.clone())),
        ("epochs".into(), Json::Int(plan.epochs as i128)),
        ("seconds".into(), Json::Num(seconds)),
        ("seed".into(), Json::Int(seed as i128)),
        (
            "models".into(),
            Json::Array(
                rows.iter()
                    .map(|r| Json::Object(r.fields(m.cols())))
                    .collect(),
            ),
        ),
        ("settings".into(), Json::Object(settings)),
    ]);
    let title = format!(
        "l0 sweep: {} models, {} epochs, {} targets x {} records",
        lambdas.len(),
        plan.epochs,
        m.rows(),
        m.cols()
    );
    outdir::commit(&out, |dir| {
        write_outputs(dir, &rows, m.cols(), &summary, &title)
    })?;
    println!(
        "done: {} models x {} epochs in {seconds:.1} s",
        lambdas.len(),
        plan.epochs
    );
    for r in &rows {
        let held = r.holdout.as_ref().map_or(String::new(), |h| {
            format!(", holdout mean {:.3}%", 100.0 * h.mean_abs_rel_err)
        });
        println!(
            "lambda_l0 {:<10} active {:>8}  mean |rel err| {:.3}%, max {:.2}%{held}",
            format!("{:.4e}", r.lambda_l0),
            r.active,
            100.0 * r.accuracy.mean_abs_rel_err,
            100.0 * r.accuracy.max_abs_rel_err
        );
    }
    println!(
        "outputs in {}: sweep.csv, sweep.svg, summary.json, weights_0.npy .. weights_{}.npy",
        out.display(),
        lambdas.len() - 1
    );
    Ok(())
}
