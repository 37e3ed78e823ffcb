//! `l0 calibrate`: load or build the problem, resolve settings (demo,
//! checkpoint, flags), fit with progress, log and checkpoints, write the
//! outputs. Each step has its module; this one runs them in order.

mod args;
pub(crate) mod budget;
mod holdout;
mod observer;
mod plan;
mod problem;
mod refit;
mod results;
mod resume;
mod settings;
mod stored;
mod warnings;

pub(crate) use args::CalibrateArgs;
use observer::*;
pub(crate) use plan::*;
pub(crate) use problem::*;
pub(crate) use refit::*;
use results::*;
use resume::*;
pub(crate) use settings::*;
pub(crate) use warnings::*;

use super::inputs::*;
use super::interrupt::{shell_quote, Interrupt, EXIT_CODE};
use super::outdir;
use super::*;
use std::time::Instant;

/// Refuses flags that are wrong on their own, before anything is read.
fn check_flags(a: &CalibrateArgs) -> CliResult<()> {
    a.fit.single_lambda("calibrate")?;
    a.fit.check_threads()?;
    positive("log-every", a.log_every)?;
    positive("checkpoint-every", a.checkpoint_every)?;
    positive("progress-every", a.fit.progress_every)?;
    Ok(())
}

/// The model to train: new, or holding the checkpoint's state on --resume.
fn start_model(
    a: &CalibrateArgs,
    plan: &Plan,
    cols: usize,
    ckpt: Option<&Checkpoint>,
) -> CliResult<Calibration> {
    let mut model = Calibration::new(cols, plan.model.clone())?;
    if let (Some(c), Some(dir)) = (ckpt, &a.resume) {
        model
            .set_state(c.state.clone())
            .map_err(|e| about_file(&dir.join(l0::checkpoint::FILE_NAME), e))?;
    }
    Ok(model)
}

/// log.csv in `dir` every `every` epochs (None without --log-every):
/// new, or continued after epoch `start` of a resumed run.
fn open_log(dir: &Path, every: Option<u64>, start: u64) -> CliResult<Option<(u64, LogWriter)>> {
    let Some(k) = every else { return Ok(None) };
    let path = dir.join("log.csv");
    let w = if start > 0 {
        LogWriter::resume(&path, start)?
    } else {
        LogWriter::create(&path)?
    };
    Ok(Some((k, w)))
}

/// Runs `l0 calibrate`: each step's module in turn.
pub(crate) fn calibrate(a: CalibrateArgs) -> CliResult<()> {
    let started = Instant::now();
    let interrupt = Interrupt::install();
    check_flags(&a)?;
    let ckpt = a.resume.as_deref().map(read_checkpoint).transpose()?;
    let out = a
        .out
        .clone()
        .or_else(|| a.resume.clone())
        .unwrap_or_else(|| PathBuf::from("l0-out"));

    let continuing = a
        .resume
        .as_deref()
        .is_some_and(|d| outdir::same_folder(d, &out));
    let outdir = outdir::OutDir::claim(&out, a.overwrite, continuing)?;

    let problem = load_problem(&Sources::new(&a, ckpt.as_ref()))?;
    let (m, y) = (&problem.m, &problem.y);
    if let (Some(c), Some(dir)) = (&ckpt, &a.resume) {
        check_same_problem(&dir.join(l0::checkpoint::FILE_NAME), c, &problem)?;
    }
    let mut settings = resolve(&a, problem.demo, ckpt.as_ref(), problem.groups.is_some())?;
    let seed = settle_seed(&mut settings, ckpt.as_ref());
    let plan = plan(&settings, &a, &problem, seed, ckpt.is_some())?;
    let refit = settings.refit_epochs();
    let budget = budget::budget_of(&a, m.cols())?;
    if budget.is_some() {
        settings.lambda_l0 = None; // found by the search
    }
    // Inherited from the checkpoint unless given again.
    let every = |k: Option<u64>| k.filter(|&k| k > 0);
    let (log_every, checkpoint_every) =
        (every(settings.log_every), every(settings.checkpoint_every));
    let start_step = ckpt.as_ref().map_or(0, |c| c.state.step);
    if plan.epochs < start_step {
        return Err(input_error(format!(
            "--epochs {} is below the {start_step} epochs the checkpoint has already trained",
            plan.epochs
        )));
    }
    let remaining = plan.epochs - start_step;
    let mut model = start_model(&a, &plan, m.cols(), ckpt.as_ref())?;
    if let Some(c) = &ckpt {
        warn_changed_settings(c, &settings)?;
    }
    warn_negative_targets(&problem, plan.fit.loss);
    print_header(&problem, &out, &settings, &plan, start_step);

    let tty = std::io::stderr().is_terminal();
    let progress_every = a
        .fit
        .progress_every
        .unwrap_or_else(|| (plan.epochs / if tty { 50 } else { 10 }).max(1));
    let report_every = match log_every {
        Some(k) => gcd(k, progress_every),
        None => progress_every,
    };
    let log = open_log(outdir.work(), log_every, start_step)?;
    let mut stored = settings.pairs();
    stored.extend(problem.inputs.iter().flat_map(InputFile::settings));
    let opts = FitParams {
        epochs: remaining,
        ..plan.fit.clone()
    };
    let roles = plan.roles(m.rows());
    let mut observer = RunObserver {
        metrics: TargetMetrics::new(y, &opts)?,
        n: m.cols(),
        y,
        names: &problem.names,
        holdout: roles.iter().map(|&r| r == TargetRole::Holdout).collect(),
        report_every,
        progress_every,
        total: plan.epochs,
        log,
        checkpoint: CheckpointSink {
            every: checkpoint_every,
            path: outdir.work().join(l0::checkpoint::FILE_NAME),
            seed,
            fingerprint: problem_fingerprint(m, y, problem.groups.as_deref()),
            settings: stored,
        },
        step: start_step,
        yhat: Vec::new(),
        bar: (tty && budget.is_none()).then(|| progress_bar(plan.epochs, start_step)),
        interrupt: interrupt.clone(),
    };
    let mut time = Timing {
        load: started.elapsed().as_secs_f64(),
        ..Timing::default()
    };
    let fitting = Instant::now();
    let (report, search) = match &budget {
        None => (model.fit_observed(m, y, &opts, &mut observer), None),
        Some(b) => match budget::search(m, y, &plan.model, &opts, b) {
            Ok(fit) => {
                model = fit.chosen.model.clone();
                settings.lambda_l0 = Some(fit.chosen.lambda_l0);
                let s = budget::summary(&fit, b, plan.epochs);
                (Ok(fit.chosen.report.clone()), Some((fit, s)))
            }
            Err(e) => (Err(e), None),
        },
    };
    interrupt.at_once();
    if let Some(bar) = &observer.bar {
        bar.finish();
    }
    let report = report?;
    time.training = match &search {
        Some((fit, _)) => fit.seconds - fit.setup_seconds,
        None => report.seconds,
    };
    time.setup = fitting.elapsed().as_secs_f64() - time.training;
    let outputs = Instant::now();
    let RunObserver {
        checkpoint: sink,
        log,
        ..
    } = observer;
    drop(log);
    if report.epochs < remaining {
        return stop_interrupted(&a, outdir, &out, &sink, &model, plan.epochs);
    }
    if checkpoint_every.is_some() {
        sink.write(model.state())?;
    }

    let (weights, before_refit) = match refit {
        None => (model.weights(true), None),
        Some(e) => {
            let (w, before) = refit_of_run(
                &model,
                &problem,
                &opts,
                &roles,
                (e, progress_every),
                &mut time,
            )?;
            (w, Some(before))
        }
    };
    if let Some(miss) = l0::constraints::TotalMiss::of(plan.fit.conserve_total, &weights) {
        eprintln!("warning: {miss}");
    }
    let yhat = m.mul_vec(&weights)?;
    let mut rows = report::target_rows(&problem.names, y, &yhat, &roles);
    if let Some(t) = &plan.fit.target_tolerance {
        report::set_bands(&mut rows, Some(&l0::objective::band_widths(y, t)?));
    }
    let accuracy = Accuracy::of(&rows);
    let diag = l0::diagnostics::Diagnostics::of(m, &weights, l0::par::Par::current());
    let active = diag.weights.active; // the weights are >= 0
    let summary = Summary {
        rows: m.rows(),
        cols: m.cols(),
        nnz: m.nnz(),
        device: report.device.clone(),
        epochs: model.state().step,
        epochs_run: remaining,
        resumed_from: ckpt.as_ref().map(|c| c.state.step),
        seconds: report.seconds,
        seed,
        loss: report.last.as_ref().map(|p| p.total_loss),
        data_loss: report.last.as_ref().map(|p| p.data_loss),
        accuracy: accuracy.clone(),
        holdout: Accuracy::holdout(&rows),
        within_tolerance: report::within_tolerance(&rows),
        before_refit,
        lambda_l0: settings.lambda_l0.unwrap_or(plan.fit.lambda_l0),
        budget: search.as_ref().map(|(_, s)| s.clone()),
        excluded: plan.excluded_names.len(),
        active,
        weights: diag.weights.clone(),
        settings: settings.json(),
    };
    outdir.commit(|dir| write_results(dir, &weights, &model, &rows, &diag.targets, &summary))?;

    let mut files = outdir::RESULT_FILES.to_vec();
    if log_every.is_some() {
        files.push("log.csv");
    }
    if checkpoint_every.is_some() {
        files.push(l0::checkpoint::FILE_NAME);
    }
    time.outputs += outputs.elapsed().as_secs_f64();
    print_results(&summary, &out, &files);
    println!("{time}");
    if let (Some((fit, s)), Some(b)) = (&search, &budget) {
        budget::print(fit, s, b);
    }
    let groups = problem.groups.is_some();
    for w in fit_warnings(&summary, &rows, report.last.as_ref(), &plan.fit, groups) {
        eprintln!("{w}");
    }
    let included: Vec<bool> = roles.iter().map(|&r| r == TargetRole::Train).collect();
    warn_unreachable(&problem, &model, &opts, &included)?;
    for w in concentration_warnings(
        &diag.weights,
        &diag.targets,
        &problem.names,
        &included,
        settings.warn_top1pct,
    ) {
        eprintln!("{w}");
    }
    Ok(())
}
