//! `l0 sweep`: one calibration model per L0 strength on the inputs and
//! flags of `l0 calibrate` ([`l0::sweep::sweep`]), each refit after the
//! batch with `--refit`, written as sweep.csv, weights_<k>.npy,
//! summary.json and sweep.svg.

use super::calibrate::{
    load_problem, plan, resolve, run_refit, settle_seed, warn_fallbacks, CalibrateArgs, Problem,
    Sources,
};
use super::inputs::positive;
use super::outdir;
use super::*;
use l0::calibration::FitReport;
use l0::plot::{sweep_svg, SweepPoint};
use l0::report::BeforeRefit;
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

/// The columns of sweep.csv (the holdout's two only with a holdout, the
/// last three only with --refit).
const COLUMNS: [&str; 16] = [
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
    "before_refit_mean_abs_rel_err",
    "before_refit_max_abs_rel_err",
    "before_refit_active",
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
        (
            "--target-records",
            a.target_records.is_some() || a.records_tolerance.is_some() || a.lambda_range.is_some(),
        ),
    ] {
        if given {
            return Err(input_error(format!("{flag} is not supported by l0 sweep")));
        }
    }
    Ok(())
}

/// One model's figures and deterministic weights (after --refit, the
/// refit's, with the L0 fit's figures in `before_refit`).
struct Row {
    lambda_l0: f64,
    weights: Vec<f64>,
    active: usize,
    loss: f64,
    accuracy: Accuracy,
    holdout: Option<Accuracy>,
    before_refit: Option<BeforeRefit>,
}

/// The last epoch's total loss of a fit (NaN when none ran).
fn last_loss(r: &FitReport) -> f64 {
    r.last.as_ref().map_or(f64::NAN, |l| l.total_loss)
}

impl Row {
    fn of(
        lambda_l0: f64,
        weights: Vec<f64>,
        loss: f64,
        p: &Problem,
        roles: &[TargetRole],
    ) -> CliResult<Self> {
        let rows = report::target_rows(&p.names, &p.y, &p.m.mul_vec(&weights)?, roles);
        Ok(Row {
            lambda_l0,
            active: weights.iter().filter(|&&x| x > 0.0).count(),
            weights,
            loss,
            accuracy: Accuracy::of(&rows),
            holdout: Accuracy::holdout(&rows),
            before_refit: None,
        })
    }

    /// These figures as the ones before a refit of `epochs` epochs that
    /// took `seconds`.
    fn before(&self, epochs: u64, seconds: f64) -> BeforeRefit {
        BeforeRefit {
            accuracy: self.accuracy.clone(),
            holdout: self.holdout.clone(),
            active: self.active,
            refit_epochs: epochs,
            refit_seconds: seconds,
        }
    }

    /// The figures and weights as JSON pairs, also sweep.csv's columns
    /// (the holdout's only with a holdout).
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

    /// sweep.csv's row: [`Row::fields`] and, after a refit, the L0 fit's
    /// mean and max error and active count.
    fn csv_fields(&self, cols: usize) -> Vec<(String, Json)> {
        let mut f = self.fields(cols);
        if let Some(b) = &self.before_refit {
            let a = &b.accuracy;
            f.push((COLUMNS[13].into(), Json::Num(a.mean_abs_rel_err)));
            f.push((COLUMNS[14].into(), Json::Num(a.max_abs_rel_err)));
            f.push((COLUMNS[15].into(), Json::Int(b.active as i128)));
        }
        f
    }

    /// summary.json's `models` entry: [`Row::fields`] and, after a refit,
    /// `before_refit` ([`BeforeRefit::to_json`]).
    fn json(&self, cols: usize) -> Json {
        let mut f = self.fields(cols);
        if let Some(b) = &self.before_refit {
            f.push(("before_refit".into(), b.to_json()));
        }
        Json::Object(f)
    }
}

/// Model `k` of `of`'s row: its deterministic weights, or with `refit`
/// (its epochs and progress interval) the weights of its refit, whose
/// progress lines start with "model k/of refit". A model that kept no
/// record is not refit (a refit needs one); a warning says so.
fn row_of(
    (k, of): (usize, usize),
    s: &SweepModel,
    p: &Problem,
    roles: &[TargetRole],
    opts: &FitParams,
    refit: Option<(u64, u64)>,
) -> CliResult<Row> {
    let row = Row::of(
        s.lambda_l0,
        s.model.weights(true),
        last_loss(&s.report),
        p,
        roles,
    )?;
    let Some((epochs, every)) = refit else {
        return Ok(row);
    };
    if row.active == 0 {
        eprintln!(
            "warning: model {}/{of} (lambda_l0={:?}) kept no record: nothing to refit, its weights stay 0",
            k + 1,
            s.lambda_l0
        );
        let before = row.before(0, 0.0);
        return Ok(Row {
            before_refit: Some(before),
            ..row
        });
    }
    let label = format!("model {}/{of} refit", k + 1);
    let r = run_refit(&s.model, &p.m, &p.y, opts, (epochs, every), &label)?;
    let before = row.before(epochs, r.report.seconds);
    Ok(Row {
        before_refit: Some(before),
        ..Row::of(s.lambda_l0, r.weights(), last_loss(&r.report), p, roles)?
    })
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
    // Every row has the same columns: the first names them.
    let header: Vec<String> = rows[0]
        .csv_fields(cols)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    l0::io::csv::write_csv(
        &dir.join("sweep.csv"),
        &header,
        rows.iter().map(|r| {
            r.csv_fields(cols)
                .iter()
                .map(|(_, v)| csv_text(v))
                .collect()
        }),
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
    let svg = sweep_svg(title, &points, cols as u64);
    l0::io::write_atomic(&dir.join("sweep.svg"), |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}

/// The lines printed at the end: cost (of the fits, `seconds`, and of the
/// refits of `refit` epochs), one line per model, the files.
fn print_results(rows: &[Row], epochs: u64, refit: Option<u64>, seconds: f64, out: &Path) {
    let refits = refit.map_or(String::new(), |e| {
        let spent: f64 = rows
            .iter()
            .filter_map(|r| Some(r.before_refit.as_ref()?.refit_seconds))
            .sum();
        format!("; refits of {e} epochs in {spent:.1} s")
    });
    println!(
        "done: {} models x {epochs} epochs in {seconds:.1} s{refits}",
        rows.len()
    );
    for r in rows {
        let held = r.holdout.as_ref().map_or(String::new(), |h| {
            format!(", holdout mean {:.3}%", 100.0 * h.mean_abs_rel_err)
        });
        let before = r.before_refit.as_ref().map_or(String::new(), |b| {
            format!(
                " (before refit: mean {:.3}%, max {:.2}%)",
                100.0 * b.accuracy.mean_abs_rel_err,
                100.0 * b.accuracy.max_abs_rel_err
            )
        });
        println!(
            "lambda_l0 {:<10} active {:>8}  mean |rel err| {:.3}%, max {:.2}%{held}{before}",
            format!("{:.4e}", r.lambda_l0),
            r.active,
            100.0 * r.accuracy.mean_abs_rel_err,
            100.0 * r.accuracy.max_abs_rel_err
        );
    }
    println!(
        "outputs in {}: sweep.csv, sweep.svg, summary.json, weights_0.npy .. weights_{}.npy",
        out.display(),
        rows.len() - 1
    );
}

pub(super) fn sweep(args: SweepArgs) -> CliResult<()> {
    let _interrupt = super::interrupt::Interrupt::install();
    let a = &args.calibrate;
    refuse_unsupported(a)?;
    positive("progress-every", a.fit.progress_every)?;
    a.fit.check_threads()?;
    let lambdas = lambdas(&args)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("l0-out"));
    let outdir = outdir::OutDir::claim(&out, a.overwrite, false)?;
    // Every model is held until the end: refused before anything is read
    // (with the columns the matrix file declares), and again with the
    // matrix read, before any model is made.
    let sources = Sources::new(a, None);
    if let Some(cols) = sources.columns() {
        l0::sweep::check_models(lambdas.len(), cols)?;
    }
    let problem = load_problem(&sources)?;
    l0::sweep::check_models(lambdas.len(), problem.m.cols())?;
    let mut settings = resolve(a, problem.demo, None, problem.groups.is_some())?;
    let seed = settle_seed(&mut settings, None);
    let plan = plan(&settings, a, &problem, seed, false)?;
    let refit = settings.refit_epochs();
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
    warn_fallbacks(models.iter().filter_map(|s| s.report.fallback.as_deref()));
    let roles = plan.roles(m.rows());
    let refit_every = refit.map(|e| (e, a.fit.progress_every.unwrap_or((e / 4).max(1))));
    let rows: Vec<Row> = models
        .iter()
        .enumerate()
        .map(|(k, s)| row_of((k, k_all), s, &problem, &roles, &opts, refit_every))
        .collect::<CliResult<_>>()?;
    let seconds = start.elapsed().as_secs_f64();
    let mut settings = settings.json();
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
            Json::Array(rows.iter().map(|r| r.json(m.cols())).collect()),
        ),
        ("settings".into(), Json::Object(settings)),
    ]);
    let refits = refit.map_or(String::new(), |e| format!(", each refit {e} epochs"));
    let title = format!(
        "l0 sweep: {} models, {} epochs{refits}, {} targets x {} records",
        lambdas.len(),
        plan.epochs,
        m.rows(),
        m.cols()
    );
    outdir.commit(|dir| write_outputs(dir, &rows, m.cols(), &summary, &title))?;
    print_results(&rows, plan.epochs, refit, seconds, &out);
    Ok(())
}
