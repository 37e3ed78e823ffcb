//! `l0 calibrate`: load or build the problem, resolve settings (demo,
//! checkpoint, flags), fit with progress, log and checkpoints, write the
//! outputs.

use super::inputs::*;
use super::*;

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct CalibrateArgs {
    /// Matrix M, targets x records: scipy .npz (csr, csc or coo) or .mtx.
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// Targets y, one per row of M: .npy or one-column .csv.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Group id of each target (integers): .npy or one-column .csv.
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Target names, one per line (.csv) [default: target_0, target_1, ...].
    #[arg(long)]
    target_names: Option<PathBuf>,
    /// Initial weights: a number or a per-column .npy [default: 1].
    #[arg(long)]
    init_weights: Option<String>,
    /// Initial gate keep probability: a number or a per-column .npy [default: 0.5].
    #[arg(long)]
    init_keep_prob: Option<String>,
    #[command(flatten)]
    fit: CommonFit,
    /// Standard deviation of the noise added to the log-weights before the first step [default: 0].
    #[arg(long)]
    log_weight_jitter_sd: Option<f64>,
    /// Data loss: mse or relative [default: mse; the demo: relative].
    #[arg(long)]
    loss: Option<String>,
    /// Give every target the same loss weight instead of sharing one unit per group.
    #[arg(long)]
    no_normalize_groups: bool,
    /// Multiply a group's loss weight: ID=FACTOR (repeatable).
    #[arg(long, value_name = "ID=FACTOR")]
    group_multiplier: Vec<String>,
    /// Plain positive weights without L0 gates.
    #[arg(long)]
    no_gates: bool,
    /// Leave these targets (by name, comma-separated) out of the loss; they are still reported.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    exclude_targets: Vec<String>,
    /// Output folder [default: ./l0-out, or the --resume folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Append one row per target to log.csv every this many epochs.
    #[arg(long, value_name = "K")]
    log_every: Option<u64>,
    /// Write checkpoint.l0ck to the output folder every this many epochs.
    #[arg(long, value_name = "K")]
    checkpoint_every: Option<u64>,
    /// Continue the run whose checkpoint.l0ck is in this folder (give the same inputs).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

/// The problem to calibrate, from files or the demo.
pub(super) struct Problem {
    m: SparseMatrix,
    y: Vec<f64>,
    groups: Option<Vec<i64>>,
    names: Vec<String>,
    description: String,
    demo: bool,
}

pub(super) fn load_problem(a: &CalibrateArgs) -> CliResult<Problem> {
    let (matrix, targets) = match (&a.matrix, &a.targets) {
        (None, None) => {
            for (flag, given) in [
                ("--groups", a.groups.is_some()),
                ("--target-names", a.target_names.is_some()),
            ] {
                if given {
                    return Err(input_error(format!(
                        "{flag} needs --matrix and --targets (without them l0 fits the built-in demo)"
                    )));
                }
            }
            let spec = l0::synth::GeoSpec::default();
            let p = l0::synth::geo_stacked(&spec)?;
            let description = format!(
                "built-in demo (synth::geo_stacked: {} households x {} areas, {} national + {} x {} area targets)",
                spec.households, spec.areas, spec.national, spec.per_area, spec.areas
            );
            return Ok(Problem {
                m: p.matrix,
                y: p.targets,
                groups: Some(p.groups),
                names: p.names,
                description,
                demo: true,
            });
        }
        (Some(m), Some(t)) => (m, t),
        (Some(_), None) => return Err(input_error("--matrix needs --targets")),
        (None, Some(_)) => return Err(input_error("--targets needs --matrix")),
    };
    let m = load_matrix(matrix)?;
    let y = load_vector(targets, "targets", m.rows(), "matrix row")?;
    let groups = match &a.groups {
        None => None,
        Some(path) => {
            let g = load_vector(path, "group ids", m.rows(), "matrix row")?;
            let ids = g
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v.fract() == 0.0 && v.abs() < 9.0e15 {
                        Ok(v as i64)
                    } else {
                        Err(input_error(format!(
                            "{}: group ids must be integers, got {v} at index {i}",
                            path.display()
                        )))
                    }
                })
                .collect::<CliResult<Vec<i64>>>()?;
            Some(ids)
        }
    };
    let names = match &a.target_names {
        None => (0..m.rows()).map(|q| format!("target_{q}")).collect(),
        Some(path) => {
            let n = read_names(path).map_err(|e| about_file(path, e))?;
            if n.len() != m.rows() {
                return Err(input_error(format!(
                    "{}: expected {} target names (one per matrix row), found {}",
                    path.display(),
                    m.rows(),
                    n.len()
                )));
            }
            n
        }
    };
    Ok(Problem {
        description: format!("{} with targets {}", matrix.display(), targets.display()),
        m,
        y,
        groups,
        names,
        demo: false,
    })
}

/// The settings that define a calibration run, resolved from the flags,
/// the checkpoint (on --resume) and the defaults, in that order, as text
/// (what checkpoints store and summary.json reports).
pub(super) struct Resolved {
    pairs: Vec<(String, String)>,
}

impl Resolved {
    fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    fn f64(&self, name: &str) -> CliResult<f64> {
        parse_f64(&name.replace('_', "-"), self.get(name))
    }
    fn bool(&self, name: &str) -> bool {
        self.get(name) == "true"
    }
}

/// Defaults that make the demo finish in about a minute on two cores and
/// still end sparse.
pub(super) const DEMO_EPOCHS: u64 = 1000;
pub(super) const DEMO_LR: f64 = 0.2;
pub(super) const DEMO_LAMBDA_L0: f64 = 4e-6;
pub(super) const DEMO_SEED: u64 = 1;

pub(super) fn resolve(a: &CalibrateArgs, demo: bool, ckpt: Option<&Checkpoint>) -> Resolved {
    let f = &a.fit;
    let lib_model = CalibrationParams::default();
    let lib_fit = FitParams::default();
    let num = |v: Option<f64>| v.map(|x| format!("{x:?}"));
    let mut multipliers: Vec<String> = a.group_multiplier.clone();
    multipliers.sort();
    let init_text = |i: &Init| match i {
        Init::Scalar(v) => format!("{v:?}"),
        Init::PerColumn(_) => "per-column".into(),
    };
    // (name, explicit value, default)
    let table: Vec<(&str, Option<String>, String)> = vec![
        (
            "epochs",
            f.epochs.map(|e| e.to_string()),
            if demo { DEMO_EPOCHS } else { lib_fit.epochs }.to_string(),
        ),
        (
            "lr",
            num(f.lr),
            format!("{:?}", if demo { DEMO_LR } else { lib_fit.lr }),
        ),
        (
            "lambda_l0",
            num(f.lambda_l0),
            format!(
                "{:?}",
                if demo {
                    DEMO_LAMBDA_L0
                } else {
                    lib_fit.lambda_l0
                }
            ),
        ),
        (
            "lambda_l2",
            num(f.lambda_l2),
            format!("{:?}", lib_fit.lambda_l2),
        ),
        (
            "loss",
            a.loss.clone(),
            if demo {
                "relative"
            } else {
                loss_name(lib_fit.loss)
            }
            .into(),
        ),
        (
            "normalize_groups",
            a.no_normalize_groups.then(|| "false".into()),
            lib_fit.normalize_groups.to_string(),
        ),
        (
            "group_multipliers",
            (!multipliers.is_empty()).then(|| multipliers.join(",")),
            String::new(),
        ),
        (
            "exclude_targets",
            (!a.exclude_targets.is_empty()).then(|| a.exclude_targets.join(",")),
            String::new(),
        ),
        ("beta", num(f.beta), format!("{:?}", lib_model.gate.beta)),
        ("gamma", num(f.gamma), format!("{:?}", lib_model.gate.gamma)),
        ("zeta", num(f.zeta), format!("{:?}", lib_model.gate.zeta)),
        (
            "use_gates",
            a.no_gates.then(|| "false".into()),
            lib_model.use_gates.to_string(),
        ),
        (
            "test_gate",
            f.test_gate.clone(),
            test_gate_name(lib_model.test_gate).into(),
        ),
        (
            "init_weights",
            a.init_weights.clone(),
            lib_model
                .init_weights
                .as_ref()
                .map_or("1.0".into(), init_text),
        ),
        (
            "init_keep_prob",
            a.init_keep_prob.clone(),
            init_text(&lib_model.init_keep_prob),
        ),
        (
            "log_weight_jitter_sd",
            num(a.log_weight_jitter_sd),
            format!("{:?}", lib_model.log_weight_jitter_sd),
        ),
        (
            "log_alpha_jitter_sd",
            num(f.log_alpha_jitter_sd),
            format!("{:?}", lib_model.log_alpha_jitter_sd),
        ),
        (
            "log_every",
            a.log_every.map(|k| k.to_string()),
            String::new(),
        ),
        (
            "checkpoint_every",
            a.checkpoint_every.map(|k| k.to_string()),
            String::new(),
        ),
        (
            "seed",
            f.seed.map(|s| s.to_string()),
            if demo {
                DEMO_SEED.to_string()
            } else {
                String::new() // drawn below
            },
        ),
    ];
    let pairs = table
        .into_iter()
        .map(|(name, explicit, default)| {
            let from_ckpt = ckpt.and_then(|c| c.setting(name)).map(str::to_string);
            let v = explicit.or(from_ckpt).unwrap_or(default);
            (name.to_string(), v)
        })
        .collect();
    Resolved { pairs }
}

/// Everything the fit needs, parsed from the resolved settings.
pub(super) struct Plan {
    model: CalibrationParams,
    fit: FitParams,
    epochs: u64,
    excluded_names: Vec<String>,
}

/// Parses the resolved settings. When `resuming`, the initial values are
/// not loaded (the checkpoint's state replaces them).
pub(super) fn plan(
    r: &Resolved,
    a: &CalibrateArgs,
    p: &Problem,
    seed: u64,
    resuming: bool,
) -> CliResult<Plan> {
    let cols = p.m.cols();
    let loss: Loss = parse_flag("loss", r.get("loss"))?;
    let device: Device = parse_flag("device", a.fit.device.as_deref().unwrap_or("auto"))?;
    let mut group_multipliers = std::collections::BTreeMap::new();
    for item in r
        .get("group_multipliers")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let bad = || {
            input_error(format!(
                "--group-multiplier: expected ID=FACTOR (an integer group id and a number), got '{item}'"
            ))
        };
        let (id, factor) = item.split_once('=').ok_or_else(bad)?;
        let id: i64 = id.trim().parse().map_err(|_| bad())?;
        let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
        group_multipliers.insert(id, factor);
    }
    // Targets left out: named ones, and rows no weight can reach.
    let mut excluded: Vec<usize> = Vec::new();
    for name in r
        .get("exclude_targets")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        match p.names.iter().position(|n| n == name) {
            Some(q) => excluded.push(q),
            None => {
                return Err(input_error(format!(
                    "--exclude-targets: no target is named '{name}'"
                )))
            }
        }
    }
    let empty = p.m.empty_rows();
    if !empty.is_empty() {
        let mut shown: Vec<&str> = empty
            .iter()
            .take(10)
            .map(|&q| p.names[q].as_str())
            .collect();
        let more = empty.len().saturating_sub(10);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        shown.dedup();
        eprintln!(
            "warning: {} target row(s) of the matrix are all zero and cannot be matched; left out of the loss: {}{tail}",
            empty.len(),
            shown.join(", ")
        );
        excluded.extend(empty);
    }
    excluded.sort_unstable();
    excluded.dedup();
    let excluded_names = excluded.iter().map(|&q| p.names[q].clone()).collect();
    let epochs: u64 = r
        .get("epochs")
        .parse()
        .map_err(|_| input_error(format!("--epochs: cannot parse '{}'", r.get("epochs"))))?;
    let model = CalibrationParams {
        gate: GateParams {
            beta: r.f64("beta")?,
            gamma: r.f64("gamma")?,
            zeta: r.f64("zeta")?,
        },
        init_keep_prob: if resuming {
            Init::Scalar(0.5)
        } else {
            load_init(r.get("init_keep_prob"), "init_keep_prob", cols)?
        },
        init_weights: if resuming {
            None
        } else {
            Some(load_init(r.get("init_weights"), "init_weights", cols)?)
        },
        log_weight_jitter_sd: r.f64("log_weight_jitter_sd")?,
        log_alpha_jitter_sd: r.f64("log_alpha_jitter_sd")?,
        use_gates: r.bool("use_gates"),
        seed: Some(seed),
        test_gate: parse_test_gate(r.get("test_gate"))?,
    };
    let fit = FitParams {
        lambda_l0: r.f64("lambda_l0")?,
        lambda_l2: r.f64("lambda_l2")?,
        lr: r.f64("lr")?,
        epochs,
        loss,
        target_groups: p.groups.clone(),
        normalize_groups: r.bool("normalize_groups"),
        group_multipliers,
        excluded_targets: excluded,
        device,
        threads: a.fit.threads,
        report_every: None,
    };
    Ok(Plan {
        model,
        fit,
        epochs,
        excluded_names,
    })
}

/// Receives the fit's reports and checkpoints: prints progress (a bar on a
/// terminal, plain lines otherwise), appends the log, writes checkpoints.
pub(super) struct RunObserver<'a> {
    metrics: TargetMetrics<'a>,
    n: usize,
    y: &'a [f64],
    names: &'a [String],
    report_every: u64,
    progress_every: u64,
    total: u64,
    log: Option<(u64, LogWriter)>,
    checkpoint: Option<CheckpointSink>,
    step: u64,
    yhat: Vec<f64>,
    bar: Option<ProgressBar>,
}

pub(super) struct CheckpointSink {
    every: u64,
    path: PathBuf,
    seed: u64,
    fingerprint: u64,
    settings: Vec<(String, String)>,
}

impl CheckpointSink {
    fn write(&self, state: &ParamState) -> l0::Result<()> {
        Checkpoint {
            seed: self.seed,
            fingerprint: self.fingerprint,
            state: state.clone(),
            settings: self.settings.clone(),
        }
        .write(&self.path)
    }
}

impl CalibrationObserver for RunObserver<'_> {
    fn report_every(&self) -> Option<u64> {
        Some(self.report_every)
    }
    fn snapshot(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.step = s.step;
        self.yhat.clear();
        self.yhat.extend_from_slice(s.yhat);
        Ok(())
    }
    fn progress(&mut self, p: &Progress) -> l0::Result<()> {
        let step = self.step;
        if let Some((k, log)) = self.log.as_mut() {
            if step.is_multiple_of(*k) {
                log.append(step, self.names, self.y, &self.yhat, p.total_loss)?;
            }
        }
        let mut g = p.clone();
        g.epoch = step;
        g.epochs = self.total;
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                let err = g.mean_group_rel_err.unwrap_or(g.mean_rel_err);
                bar.set_message(format!(
                    "loss {:.4} err {:.2}% max {:.1}% active {} ({:.1}% sparse)",
                    g.total_loss,
                    100.0 * err,
                    100.0 * g.max_rel_err,
                    g.active,
                    100.0 * g.sparsity()
                ));
            }
            None => {
                if step.is_multiple_of(self.progress_every) || step == self.total {
                    eprintln!("{g}");
                }
            }
        }
        Ok(())
    }
    fn checkpoint_every(&self) -> Option<u64> {
        self.checkpoint.as_ref().map(|c| c.every)
    }
    fn checkpoint(&mut self, state: &ParamState) -> l0::Result<()> {
        match &self.checkpoint {
            Some(c) => c.write(state),
            None => Ok(()),
        }
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
}

pub(super) fn calibrate(a: CalibrateArgs) -> CliResult<()> {
    positive("log-every", a.log_every)?;
    positive("checkpoint-every", a.checkpoint_every)?;
    positive("progress-every", a.fit.progress_every)?;
    let ckpt = match &a.resume {
        None => None,
        Some(dir) => {
            let path = dir.join(l0::checkpoint::FILE_NAME);
            if !path.exists() {
                return Err(input_error(format!(
                    "{}: no checkpoint to resume from (write one with --checkpoint-every)",
                    path.display()
                )));
            }
            Some(Checkpoint::read(&path).map_err(|e| about_file(&path, e))?)
        }
    };
    let out = a
        .out
        .clone()
        .or_else(|| a.resume.clone())
        .unwrap_or_else(|| PathBuf::from("l0-out"));

    let problem = load_problem(&a)?;
    let (m, y) = (&problem.m, &problem.y);
    let fingerprint = problem_fingerprint(m, y, problem.groups.as_deref());
    if let (Some(c), Some(dir)) = (&ckpt, &a.resume) {
        if c.fingerprint != fingerprint {
            return Err(input_error(format!(
                "{}: the checkpoint belongs to a different problem (fingerprint {:016x}, these inputs give {:016x}): the matrix, targets or groups changed",
                dir.join(l0::checkpoint::FILE_NAME).display(),
                c.fingerprint,
                fingerprint
            )));
        }
        if c.state.len() != m.cols() {
            return Err(input_error(format!(
                "{}: the checkpoint has {} columns, the matrix {}",
                dir.join(l0::checkpoint::FILE_NAME).display(),
                c.state.len(),
                m.cols()
            )));
        }
    }
    let mut resolved = resolve(&a, problem.demo, ckpt.as_ref());
    let seed = match resolved.get("seed").parse::<u64>() {
        Ok(s) => s,
        Err(_) => match &ckpt {
            Some(c) => c.seed,
            None => rand::random(),
        },
    };
    if let Some(s) = resolved.pairs.iter_mut().find(|(n, _)| n == "seed") {
        s.1 = seed.to_string();
    }
    if let Some(c) = &ckpt {
        for ch in changed_settings(&c.settings, &resolved.pairs) {
            eprintln!(
                "warning: {} changed since the checkpoint: {} -> {}",
                ch.name, ch.old, ch.new
            );
        }
    }
    let plan = plan(&resolved, &a, &problem, seed, ckpt.is_some())?;
    // Inherited from the checkpoint unless given again.
    let every = |name: &str| resolved.get(name).parse::<u64>().ok().filter(|&k| k > 0);
    let (log_every, checkpoint_every) = (every("log_every"), every("checkpoint_every"));
    let start_step = ckpt.as_ref().map_or(0, |c| c.state.step);
    if plan.epochs < start_step {
        return Err(input_error(format!(
            "--epochs {} is below the {start_step} epochs the checkpoint has already trained",
            plan.epochs
        )));
    }
    let remaining = plan.epochs - start_step;

    let mut model = Calibration::new(m.cols(), plan.model.clone())?;
    if let (Some(c), Some(dir)) = (&ckpt, &a.resume) {
        let path = dir.join(l0::checkpoint::FILE_NAME);
        model
            .set_state(c.state.clone())
            .map_err(|e| about_file(&path, e))?;
    }

    eprintln!(
        "l0 calibrate: {}\n  {} targets x {} columns, {} nonzeros; output folder {}",
        problem.description,
        m.rows(),
        m.cols(),
        m.nnz(),
        out.display()
    );
    let shown: Vec<String> = resolved
        .pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!("  settings: {}", shown.join(" "));
    if !plan.excluded_names.is_empty() {
        eprintln!(
            "  {} target(s) left out of the loss (still reported)",
            plan.excluded_names.len()
        );
    }
    if start_step > 0 {
        eprintln!(
            "  resuming at epoch {start_step}: {remaining} epoch(s) to go of {}",
            plan.epochs
        );
    }

    let tty = std::io::stderr().is_terminal();
    let progress_every = a
        .fit
        .progress_every
        .unwrap_or_else(|| (plan.epochs / if tty { 50 } else { 10 }).max(1));
    let report_every = match log_every {
        Some(k) => gcd(k, progress_every),
        None => progress_every,
    };
    if log_every.is_some() || checkpoint_every.is_some() {
        create_dir(&out)?;
    }
    let log = match log_every {
        None => None,
        Some(k) => {
            let path = out.join("log.csv");
            let w = if start_step > 0 {
                LogWriter::resume(&path, start_step)?
            } else {
                LogWriter::create(&path)?
            };
            Some((k, w))
        }
    };
    let sink = checkpoint_every.map(|every| CheckpointSink {
        every,
        path: out.join(l0::checkpoint::FILE_NAME),
        seed,
        fingerprint,
        settings: resolved.pairs.clone(),
    });
    let bar = tty.then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(plan.epochs),
            ProgressDrawTarget::stderr_with_hz(10),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:25}] {pos}/{len} (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(start_step);
        bar
    });
    let opts = FitParams {
        epochs: remaining,
        ..plan.fit.clone()
    };
    let mut observer = RunObserver {
        metrics: TargetMetrics::new(y, &opts)?,
        n: m.cols(),
        y,
        names: &problem.names,
        report_every,
        progress_every,
        total: plan.epochs,
        log,
        checkpoint: sink,
        step: start_step,
        yhat: Vec::new(),
        bar,
    };
    let report = model.fit_observed(m, y, &opts, &mut observer);
    if let Some(bar) = &observer.bar {
        bar.finish();
    }
    let report = report?;
    if let Some(c) = &observer.checkpoint {
        c.write(model.state())?;
    }

    // Outputs, each written atomically, only after a successful fit.
    create_dir(&out)?;
    let weights = model.weights(true);
    let gates = model.deterministic_gates();
    let yhat = model.predict(m)?;
    let mut excluded = vec![false; m.rows()];
    for &q in &opts.excluded_targets {
        excluded[q] = true;
    }
    let rows = report::target_rows(&problem.names, y, &yhat, &excluded);
    let accuracy = Accuracy::of(&rows);
    let active = weights.iter().filter(|&&w| w > 0.0).count();
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
        accuracy: accuracy.clone(),
        excluded: plan.excluded_names.len(),
        active,
        settings: resolved.pairs.clone(),
    };
    write_npy_f64(&out.join("weights.npy"), &weights)?;
    report::write_weights_csv(&out.join("weights.csv"), &weights, &gates)?;
    report::write_targets_csv(&out.join("targets.csv"), &rows)?;
    report::write_json(&out.join("summary.json"), &summary.to_json())?;

    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    println!(
        "done: {} epochs in {:.1} s ({:.4} s/epoch) on {}",
        remaining,
        report.seconds,
        summary.seconds_per_epoch(),
        report.device
    );
    println!(
        "targets: mean |rel err| {:.3}%, max {:.2}%; within 1/5/10/25%: {} / {} / {} / {} of {}",
        100.0 * accuracy.mean_abs_rel_err,
        100.0 * accuracy.max_abs_rel_err,
        pct(accuracy.within[0]),
        pct(accuracy.within[1]),
        pct(accuracy.within[2]),
        pct(accuracy.within[3]),
        accuracy.included
    );
    println!(
        "weights: {} of {} nonzero ({} sparse); seed {}",
        active,
        m.cols(),
        pct(summary.sparsity()),
        seed
    );
    let mut files = vec!["weights.npy", "weights.csv", "targets.csv", "summary.json"];
    if log_every.is_some() {
        files.push("log.csv");
    }
    if checkpoint_every.is_some() {
        files.push(l0::checkpoint::FILE_NAME);
    }
    println!("outputs in {}: {}", out.display(), files.join(", "));
    Ok(())
}
