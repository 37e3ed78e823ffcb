//! `l0 calibrate`: load or build the problem, resolve settings (demo,
//! checkpoint, flags), fit with progress, log and checkpoints, write the
//! outputs.

use super::inputs::*;
use super::interrupt::{shell_quote, Interrupt, EXIT_CODE};
use super::outdir;
use super::*;
use l0::report::BeforeRefit;
use std::time::Instant;

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
    pub(super) fit: CommonFit,
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
    /// Hold these target groups (comma-separated ids of --groups) out of
    /// the loss and report them as validation.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    holdout_groups: Vec<String>,
    /// Hold this share of the targets (drawn at random, stratified by
    /// group when --groups is given) out of the loss and report them as
    /// validation.
    #[arg(long, value_name = "F")]
    holdout_fraction: Option<f64>,
    /// Seed of the --holdout-fraction draw [default: the model seed].
    #[arg(long, value_name = "S")]
    holdout_seed: Option<u64>,
    /// A factor >= 0 per target on its loss weight, after group
    /// normalisation and multipliers: .npy or one-column .csv.
    #[arg(long, value_name = "FILE")]
    target_weights: Option<PathBuf>,
    /// Warn when the top 1% of the active records carry more than this
    /// share of the weight total [default: 0.5].
    #[arg(long, value_name = "SHARE")]
    warn_top1pct: Option<f64>,
    /// Cap every weight at X (held exactly, during training too).
    #[arg(long, value_name = "X")]
    max_weight: Option<f64>,
    /// Cap every weight at R times its record's --init-weights (the design
    /// weight); R >= 1 with gates.
    #[arg(long, value_name = "R")]
    max_weight_ratio: Option<f64>,
    /// Select, then refit: after the L0 fit keep the records with a
    /// non-zero weight, drop the gates and train only their weights
    /// (lambda_l0 = 0) for --refit-epochs more epochs.
    #[arg(long)]
    pub(super) refit: bool,
    /// Epochs of the --refit [default: half the epochs].
    #[arg(long, value_name = "E")]
    pub(super) refit_epochs: Option<u64>,
    /// Record budget: search for the lambda_l0 whose model keeps K records
    /// (within --records-tolerance), instead of giving --lambda-l0.
    #[arg(long, value_name = "K")]
    pub(super) target_records: Option<usize>,
    /// Relative tolerance of --target-records [default: 0.05].
    #[arg(long, value_name = "T")]
    pub(super) records_tolerance: Option<f64>,
    /// The lambda_l0 range --target-records searches [default: 1e-9:1e-1];
    /// widen it when the budget says its end keeps too many or too few
    /// records (mse loss on large raw totals needs a larger top).
    #[arg(long, value_name = "LO:HI")]
    pub(super) lambda_range: Option<String>,
    /// Output folder [default: ./l0-out, or the --resume folder]. A run owns
    /// it: one holding another run's files is refused unless --overwrite.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Replace the files of an earlier run in --out (they stay until this
    /// run's results replace them: a run that fails leaves them whole).
    #[arg(long)]
    pub(super) overwrite: bool,
    /// Append one row per target to log.csv every this many epochs.
    #[arg(long, value_name = "K")]
    pub(super) log_every: Option<u64>,
    /// Write checkpoint.l0ck to the output folder every this many epochs.
    #[arg(long, value_name = "K")]
    pub(super) checkpoint_every: Option<u64>,
    /// Continue the run whose checkpoint.l0ck is in this folder (its input
    /// files are found from the checkpoint unless given).
    #[arg(long, value_name = "DIR")]
    pub(super) resume: Option<PathBuf>,
}

/// The problem to calibrate, from files or the demo.
pub(super) struct Problem {
    pub(super) m: SparseMatrix,
    pub(super) y: Vec<f64>,
    pub(super) groups: Option<Vec<i64>>,
    pub(super) names: Vec<String>,
    pub(super) description: String,
    pub(super) demo: bool,
    /// The input files, recorded in checkpoints.
    inputs: Vec<InputFile>,
}

/// One input file of a run, as a checkpoint records it (`input.ROLE`,
/// `input.ROLE.size`, `input.ROLE.fingerprint` settings), so that
/// `--resume` finds it and can name the one that changed.
pub(super) struct InputFile {
    role: &'static str,
    path: PathBuf,
    size: String,
    fingerprint: Option<u64>,
}

/// The settings that record the input files in a checkpoint start so.
const INPUT_PREFIX: &str = "input.";

impl InputFile {
    fn new(role: &'static str, path: &Path, size: String, fingerprint: Option<u64>) -> Self {
        InputFile {
            role,
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            size,
            fingerprint,
        }
    }

    fn settings(&self) -> Vec<(String, String)> {
        let key = format!("{INPUT_PREFIX}{}", self.role);
        let mut out = vec![
            (key.clone(), self.path.display().to_string()),
            (format!("{key}.size"), self.size.clone()),
        ];
        if let Some(f) = self.fingerprint {
            out.push((format!("{key}.fingerprint"), format!("{f:016x}")));
        }
        out
    }
}

/// The input files of a run: the flags, else (on --resume) the files the
/// checkpoint recorded.
pub(super) struct Sources {
    matrix: Option<PathBuf>,
    targets: Option<PathBuf>,
    groups: Option<PathBuf>,
    target_names: Option<PathBuf>,
}

impl Sources {
    pub(super) fn new(a: &CalibrateArgs, ckpt: Option<&Checkpoint>) -> Self {
        let stored = |role: &str| {
            ckpt.and_then(|c| c.setting(&format!("{INPUT_PREFIX}{role}")))
                .map(PathBuf::from)
        };
        let pick = |given: &Option<PathBuf>, role| given.clone().or_else(|| stored(role));
        Sources {
            matrix: pick(&a.matrix, "matrix"),
            targets: pick(&a.targets, "targets"),
            groups: pick(&a.groups, "groups"),
            target_names: pick(&a.target_names, "target_names"),
        }
    }
}

impl Sources {
    /// The problem's number of columns as the matrix file's header (or the
    /// demo's specification) declares it, before anything is read: what
    /// a size given on the command line will cost is checked with it.
    /// None when the header cannot tell (the full read then says why).
    pub(super) fn columns(&self) -> Option<usize> {
        match (&self.matrix, &self.targets) {
            (None, None) => {
                let spec = l0::synth::GeoSpec::default();
                Some(spec.households * spec.areas)
            }
            (Some(m), _) => io::matrix_shape(m).map(|(_, cols)| cols),
            (None, Some(_)) => None,
        }
    }
}

fn demo_problem(src: &Sources) -> CliResult<Problem> {
    for (flag, given) in [
        ("--groups", src.groups.is_some()),
        ("--target-names", src.target_names.is_some()),
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
    Ok(Problem {
        m: p.matrix,
        y: p.targets,
        groups: Some(p.groups),
        names: p.names,
        description,
        demo: true,
        inputs: Vec::new(),
    })
}

/// The targets, one per matrix row; a vector as long as M has columns
/// means M was given transposed.
fn load_targets(path: &Path, matrix: &Path, m: &SparseMatrix) -> CliResult<Vec<f64>> {
    let y = io::read_vector(path, "targets").map_err(|e| about_file(path, e))?;
    if y.len() != m.rows() && y.len() == m.cols() {
        return Err(input_error(format!(
            "{}: M has {} rows and {} columns, and the {} targets match its columns: M looks transposed (it must be targets x records; save M.T)",
            matrix.display(),
            m.rows(),
            m.cols(),
            y.len()
        )));
    }
    check_len(path, &y, "targets", m.rows(), "matrix row")?;
    Ok(y)
}

fn load_groups(path: &Path, rows: usize) -> CliResult<Vec<i64>> {
    let g = io::read_int_vector(path, "group ids").map_err(|e| about_file(path, e))?;
    if g.len() != rows {
        return Err(input_error(format!(
            "{}: expected {rows} group ids (one per matrix row), found {}",
            path.display(),
            g.len()
        )));
    }
    Ok(g)
}

/// Target names, one per line; a first line more than M has rows is a header.
fn load_names(path: &Path, rows: usize) -> CliResult<Vec<String>> {
    let mut n = read_names(path).map_err(|e| about_file(path, e))?;
    if n.len() == rows + 1 {
        n.remove(0);
    }
    if n.len() != rows {
        return Err(input_error(format!(
            "{}: expected {rows} target names (one per matrix row, after an optional header line), found {}",
            path.display(),
            n.len()
        )));
    }
    Ok(n)
}

pub(super) fn load_problem(src: &Sources) -> CliResult<Problem> {
    let (matrix, targets) = match (&src.matrix, &src.targets) {
        (None, None) => return demo_problem(src),
        (Some(m), Some(t)) => (m, t),
        (Some(_), None) => return Err(input_error("--matrix needs --targets")),
        (None, Some(_)) => return Err(input_error("--targets needs --matrix")),
    };
    let m = load_matrix(matrix)?;
    let y = load_targets(targets, matrix, &m)?;
    let groups = match &src.groups {
        None => None,
        Some(path) => Some(load_groups(path, m.rows())?),
    };
    let names = match &src.target_names {
        None => (0..m.rows()).map(|q| format!("target_{q}")).collect(),
        Some(path) => load_names(path, m.rows())?,
    };
    let [fm, fy, fg] = l0::checkpoint::input_fingerprints(&m, &y, groups.as_deref());
    let mut inputs = vec![
        InputFile::new(
            "matrix",
            matrix,
            format!("{} x {}, {} nonzeros", m.rows(), m.cols(), m.nnz()),
            Some(fm),
        ),
        InputFile::new("targets", targets, format!("{} values", y.len()), Some(fy)),
    ];
    if let Some(path) = &src.groups {
        inputs.push(InputFile::new(
            "groups",
            path,
            format!("{} ids", m.rows()),
            Some(fg),
        ));
    }
    if let Some(path) = &src.target_names {
        inputs.push(InputFile::new(
            "target_names",
            path,
            format!("{} names", m.rows()),
            None,
        ));
    }
    Ok(Problem {
        description: format!("{} with targets {}", matrix.display(), targets.display()),
        m,
        y,
        groups,
        names,
        demo: false,
        inputs,
    })
}

/// Refuses a checkpoint made for another problem, naming the input that
/// differs when the checkpoint recorded its inputs.
fn check_same_problem(path: &Path, c: &Checkpoint, p: &Problem) -> CliResult<()> {
    let fingerprint = problem_fingerprint(&p.m, &p.y, p.groups.as_deref());
    if c.fingerprint != fingerprint {
        let now = l0::checkpoint::input_fingerprints(&p.m, &p.y, p.groups.as_deref());
        for (role, f) in ["matrix", "targets", "groups"].into_iter().zip(now) {
            let key = format!("{INPUT_PREFIX}{role}");
            let Some(then) = c.setting(&format!("{key}.fingerprint")) else {
                continue;
            };
            if then == format!("{f:016x}") {
                continue;
            }
            let file = p.inputs.iter().find(|i| i.role == role);
            let described = |path: Option<String>, size: Option<String>| match (path, size) {
                (Some(path), Some(size)) => format!("{path} ({size})"),
                _ => "none".to_string(),
            };
            return Err(input_error(format!(
                "{}: the {role} differ from the checkpoint's: {} now, {} then; resume with the inputs the run started with",
                path.display(),
                described(
                    file.map(|i| i.path.display().to_string()),
                    file.map(|i| i.size.clone())
                ),
                described(
                    c.setting(&key).map(str::to_string),
                    c.setting(&format!("{key}.size")).map(str::to_string)
                ),
            )));
        }
        if p.demo {
            return Err(input_error(format!(
                "{}: the checkpoint was not made for the built-in demo and does not record its input files: give --matrix and --targets (and --groups) of its run",
                path.display()
            )));
        }
        return Err(input_error(format!(
            "{}: the checkpoint belongs to a different problem (fingerprint {:016x}, these inputs give {:016x}): the matrix, targets or groups changed",
            path.display(),
            c.fingerprint,
            fingerprint
        )));
    }
    if c.state.len() != p.m.cols() {
        return Err(input_error(format!(
            "{}: the checkpoint has {} columns, the matrix {}",
            path.display(),
            c.state.len(),
            p.m.cols()
        )));
    }
    Ok(())
}

/// The settings that define a calibration run, resolved from the flags,
/// the checkpoint (on --resume) and the defaults, in that order, as text
/// (what checkpoints store and summary.json reports).
pub(super) struct Resolved {
    pairs: Vec<(String, String)>,
    kinds: Vec<Kind>,
}

/// The JSON type of a setting in summary.json.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// An integer (a count, a seed).
    Int,
    /// A number (or, for an initial value, a file name: a string).
    Num,
    /// true / false.
    Bool,
    /// A name.
    Text,
    /// A comma-separated list of names.
    List,
    /// `ID=FACTOR,...`, an object of group id -> factor.
    Multipliers,
}

/// A setting's text as its JSON value (null when unset).
fn typed(kind: Kind, text: &str) -> Json {
    let list = || text.split(',').filter(|t| !t.is_empty());
    let num = |t: &str| t.parse::<f64>().map(Json::Num);
    match kind {
        _ if text.is_empty() && !matches!(kind, Kind::List | Kind::Multipliers) => Json::Null,
        Kind::Int => text
            .parse::<i128>()
            .map_or(Json::Str(text.into()), Json::Int),
        Kind::Num => num(text).unwrap_or(Json::Str(text.into())),
        Kind::Bool => match text {
            "true" | "false" => Json::Bool(text == "true"),
            _ => Json::Null, // NO_GROUPS
        },
        Kind::Text => Json::Str(text.into()),
        Kind::List => Json::Array(list().map(|t| Json::Str(t.into())).collect()),
        Kind::Multipliers => Json::Object(
            list()
                .map(|item| {
                    let (id, f) = item.split_once('=').unwrap_or((item, ""));
                    (id.to_string(), num(f).unwrap_or(Json::Str(f.into())))
                })
                .collect(),
        ),
    }
}

impl Resolved {
    pub(super) fn get(&self, name: &str) -> &str {
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
    /// Replaces a setting's text.
    fn set(&mut self, name: &str, value: String) {
        if let Some(s) = self.pairs.iter_mut().find(|(n, _)| n == name) {
            s.1 = value;
        }
    }
    /// The settings for summary.json, each as its JSON type.
    pub(super) fn json(&self) -> Vec<(String, Json)> {
        self.pairs
            .iter()
            .zip(&self.kinds)
            .map(|((k, v), &kind)| (k.clone(), typed(kind, v)))
            .collect()
    }
}

/// Defaults that make the demo finish in about a minute on two cores and
/// still end sparse.
pub(super) const DEMO_EPOCHS: u64 = 1000;
pub(super) const DEMO_LR: f64 = 0.2;
pub(super) const DEMO_LAMBDA_L0: f64 = 4e-6;
pub(super) const DEMO_SEED: u64 = 1;

/// The text of `normalize_groups` in the settings of a run without
/// groups, where it does not apply (null in summary.json).
pub(super) const NO_GROUPS: &str = "n/a";

/// The run's settings from the flags, the demo's defaults and the
/// checkpoint; `groups`: whether the problem has target groups (without,
/// `normalize_groups` reads [`NO_GROUPS`]).
pub(super) fn resolve(
    a: &CalibrateArgs,
    demo: bool,
    ckpt: Option<&Checkpoint>,
    groups: bool,
) -> Resolved {
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
    // (name, explicit value, default, JSON type)
    let table: Vec<(&str, Option<String>, String, Kind)> = vec![
        (
            "epochs",
            f.epochs.map(|e| e.to_string()),
            if demo { DEMO_EPOCHS } else { lib_fit.epochs }.to_string(),
            Kind::Int,
        ),
        (
            "lr",
            num(f.lr),
            format!("{:?}", if demo { DEMO_LR } else { lib_fit.lr }),
            Kind::Num,
        ),
        (
            "lambda_l0",
            num(f.lambda_l0.first().copied()),
            format!(
                "{:?}",
                if demo {
                    DEMO_LAMBDA_L0
                } else {
                    lib_fit.lambda_l0
                }
            ),
            Kind::Num,
        ),
        (
            "lambda_l2",
            num(f.lambda_l2),
            format!("{:?}", lib_fit.lambda_l2),
            Kind::Num,
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
            Kind::Text,
        ),
        (
            "normalize_groups",
            match groups {
                true => a.no_normalize_groups.then(|| "false".into()),
                false => Some(NO_GROUPS.into()),
            },
            lib_fit.normalize_groups.to_string(),
            Kind::Bool,
        ),
        (
            "group_multipliers",
            (!multipliers.is_empty()).then(|| multipliers.join(",")),
            String::new(),
            Kind::Multipliers,
        ),
        (
            "exclude_targets",
            (!a.exclude_targets.is_empty()).then(|| a.exclude_targets.join(",")),
            String::new(),
            Kind::List,
        ),
        (
            "holdout_groups",
            (!a.holdout_groups.is_empty()).then(|| a.holdout_groups.join(",")),
            String::new(),
            Kind::List,
        ),
        (
            "holdout_fraction",
            num(a.holdout_fraction),
            String::new(),
            Kind::Num,
        ),
        (
            "holdout_seed",
            a.holdout_seed.map(|s| s.to_string()),
            String::new(),
            Kind::Int,
        ),
        (
            "target_weights",
            a.target_weights.as_ref().map(|p| p.display().to_string()),
            String::new(),
            Kind::Text,
        ),
        ("warn_top1pct", num(a.warn_top1pct), "0.5".into(), Kind::Num),
        ("max_weight", num(a.max_weight), String::new(), Kind::Num),
        (
            "max_weight_ratio",
            num(a.max_weight_ratio),
            String::new(),
            Kind::Num,
        ),
        (
            "refit",
            a.refit.then(|| "true".into()),
            "false".into(),
            Kind::Bool,
        ),
        (
            "refit_epochs",
            a.refit_epochs.map(|e| e.to_string()),
            String::new(),
            Kind::Int,
        ),
        (
            "beta",
            num(f.beta),
            format!("{:?}", lib_model.gate.beta),
            Kind::Num,
        ),
        (
            "gamma",
            num(f.gamma),
            format!("{:?}", lib_model.gate.gamma),
            Kind::Num,
        ),
        (
            "zeta",
            num(f.zeta),
            format!("{:?}", lib_model.gate.zeta),
            Kind::Num,
        ),
        (
            "use_gates",
            a.no_gates.then(|| "false".into()),
            lib_model.use_gates.to_string(),
            Kind::Bool,
        ),
        (
            "test_gate",
            f.test_gate.clone(),
            test_gate_name(lib_model.test_gate).into(),
            Kind::Text,
        ),
        (
            "init_weights",
            a.init_weights.clone(),
            lib_model
                .init_weights
                .as_ref()
                .map_or("1.0".into(), init_text),
            Kind::Num,
        ),
        (
            "init_keep_prob",
            a.init_keep_prob.clone(),
            init_text(&lib_model.init_keep_prob),
            Kind::Num,
        ),
        (
            "log_weight_jitter_sd",
            num(a.log_weight_jitter_sd),
            format!("{:?}", lib_model.log_weight_jitter_sd),
            Kind::Num,
        ),
        (
            "log_alpha_jitter_sd",
            num(f.log_alpha_jitter_sd),
            format!("{:?}", lib_model.log_alpha_jitter_sd),
            Kind::Num,
        ),
        (
            "log_every",
            a.log_every.map(|k| k.to_string()),
            String::new(),
            Kind::Int,
        ),
        (
            "checkpoint_every",
            a.checkpoint_every.map(|k| k.to_string()),
            String::new(),
            Kind::Int,
        ),
        (
            "seed",
            f.seed.map(|s| s.to_string()),
            if demo {
                DEMO_SEED.to_string()
            } else {
                String::new() // drawn below
            },
            Kind::Int,
        ),
    ];
    let mut pairs = Vec::with_capacity(table.len());
    let mut kinds = Vec::with_capacity(table.len());
    for (name, explicit, default, kind) in table {
        let from_ckpt = ckpt.and_then(|c| c.setting(name)).map(str::to_string);
        pairs.push((name.to_string(), explicit.or(from_ckpt).unwrap_or(default)));
        kinds.push(kind);
    }
    Resolved { pairs, kinds }
}

/// Everything the fit needs, parsed from the resolved settings.
pub(super) struct Plan {
    pub(super) model: CalibrationParams,
    pub(super) fit: FitParams,
    pub(super) epochs: u64,
    excluded_names: Vec<String>,
}

impl Plan {
    /// Each target's role in the fit.
    pub(super) fn roles(&self, rows: usize) -> Vec<TargetRole> {
        l0::calibration::target_roles(rows, &self.fit)
    }
}

/// The targets left out of the loss, sorted: those named by
/// --exclude-targets, and rows no weight can reach (with a warning).
/// Refuses a problem with no target left.
fn left_out(r: &Resolved, p: &Problem) -> CliResult<Vec<usize>> {
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
    excluded.sort_unstable();
    excluded.dedup();
    let empty = p.m.empty_rows();
    let all: std::collections::BTreeSet<usize> = excluded.iter().chain(&empty).copied().collect();
    if all.len() == p.m.rows() {
        return Err(input_error(format!(
            "no target is left in the loss: {} of {} have an all-zero matrix row and {} are excluded by --exclude-targets; there is nothing to fit",
            empty.len(),
            p.m.rows(),
            excluded.len()
        )));
    }
    if !empty.is_empty() {
        eprintln!(
            "warning: {} target row(s) of the matrix are all zero and cannot be matched; left out of the loss: {}",
            empty.len(),
            name_list(&p.names, &empty)
        );
    }
    Ok(all.into_iter().collect())
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
    let warn_top1pct = r.f64("warn_top1pct")?;
    if !(0.0..=1.0).contains(&warn_top1pct) {
        return Err(input_error(format!(
            "--warn-top1pct must be a share between 0 and 1, got {warn_top1pct}"
        )));
    }
    let excluded = left_out(r, p)?;
    let holdout = super::holdout::held_out(
        &super::holdout::HoldoutFlags {
            groups: r.get("holdout_groups"),
            fraction: r.get("holdout_fraction"),
            seed: r.get("holdout_seed"),
        },
        p.groups.as_deref(),
        p.m.rows(),
        seed,
    )?;
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
        // A resumed run takes its state from the checkpoint, but a ratio cap
        // still needs the design weights.
        init_weights: if resuming && r.get("max_weight_ratio").is_empty() {
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
        holdout_targets: holdout,
        target_weights: load_target_weights(r.get("target_weights"), p.m.rows())?,
        max_weight: cap_flag(r, "max_weight", 0.0)?,
        max_weight_ratio: cap_flag(
            r,
            "max_weight_ratio",
            if r.bool("use_gates") { 1.0 } else { 0.0 },
        )?,
        target_tolerance: None,
        loss_cap: None,
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

/// A cap flag's value (None when not given), which must be finite and above
/// `least` (or equal to it when `least` is not 0).
fn cap_flag(r: &Resolved, name: &str, least: f64) -> CliResult<Option<f64>> {
    if r.get(name).is_empty() {
        return Ok(None);
    }
    let v = r.f64(name)?;
    let ok = v.is_finite() && if least == 0.0 { v > 0.0 } else { v >= least };
    if !ok {
        let flag = name.replace('_', "-");
        let bound = if least == 0.0 {
            "> 0".to_string()
        } else {
            format!(">= {least} with gates")
        };
        return Err(input_error(format!(
            "--{flag} must be a number {bound}, got {v}"
        )));
    }
    Ok(Some(v))
}

/// The per-target loss factors of --target-weights (None when not given):
/// one finite number >= 0 per target.
fn load_target_weights(path: &str, rows: usize) -> CliResult<Option<Vec<f64>>> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = Path::new(path);
    let v = load_vector(path, "target weights", rows, "target")?;
    if let Some(k) = v.iter().position(|f| !(f.is_finite() && *f >= 0.0)) {
        return Err(input_error(format!(
            "{}: target weight {k} is {}; each must be a finite number >= 0",
            path.display(),
            v[k]
        )));
    }
    Ok(Some(v))
}

/// The names of targets `which`: the first ten, then how many more.
fn name_list(names: &[String], which: &[usize]) -> String {
    let shown: Vec<&str> = which.iter().take(10).map(|&q| names[q].as_str()).collect();
    match which.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Under relative loss each error is divided by `y + 1`: a warning naming
/// the targets below -1, whose relative errors change sign.
fn warn_negative_targets(p: &Problem, loss: Loss) {
    if loss != Loss::Relative {
        return;
    }
    let below: Vec<usize> = (0..p.y.len()).filter(|&q| p.y[q] < -1.0).collect();
    if !below.is_empty() {
        eprintln!(
            "warning: --loss relative divides each error by y + 1, which is negative for {} target(s) below -1, so their rel_error has the opposite sign: {}",
            below.len(),
            name_list(&p.names, &below)
        );
    }
}

/// Receives the fit's reports and checkpoints: prints progress (a bar on a
/// terminal, plain lines otherwise), appends the log, writes checkpoints,
/// and stops the fit after the epoch in which SIGINT or SIGTERM arrived.
pub(super) struct RunObserver<'a> {
    metrics: TargetMetrics<'a>,
    n: usize,
    y: &'a [f64],
    names: &'a [String],
    /// Whether each target is a holdout target (marked in the log).
    holdout: Vec<bool>,
    report_every: u64,
    progress_every: u64,
    total: u64,
    log: Option<(u64, LogWriter)>,
    checkpoint: CheckpointSink,
    step: u64,
    yhat: Vec<f64>,
    bar: Option<ProgressBar>,
    interrupt: Interrupt,
}

/// Where and with what the run's checkpoints are written.
pub(super) struct CheckpointSink {
    /// The periodic interval (--checkpoint-every), if any.
    every: Option<u64>,
    path: PathBuf,
    seed: u64,
    fingerprint: u64,
    /// The resolved settings followed by the input files.
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
                log.append(
                    step,
                    self.names,
                    self.y,
                    &self.yhat,
                    p.total_loss,
                    &self.holdout,
                )?;
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
                    100.0 * err + 0.0,
                    100.0 * g.max_rel_err + 0.0,
                    g.active,
                    100.0 * g.sparsity() + 0.0
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
        self.checkpoint.every
    }
    fn checkpoint(&mut self, state: &ParamState) -> l0::Result<()> {
        self.checkpoint.write(state)
    }
    fn summarize(&self, s: &Snapshot, total_loss: f64) -> Progress {
        self.metrics.progress(s, total_loss, self.n)
    }
    fn stop_requested(&mut self) -> bool {
        self.interrupt.requested()
    }
}

/// The checkpoint named by --resume, read and verified.
fn read_checkpoint(dir: &Path) -> CliResult<Checkpoint> {
    let path = dir.join(l0::checkpoint::FILE_NAME);
    if !path.exists() {
        return Err(input_error(format!(
            "{}: no checkpoint to resume from (write one with --checkpoint-every)",
            path.display()
        )));
    }
    Checkpoint::read(&path).map_err(|e| about_file(&path, e))
}

/// The seed: given, from the checkpoint, or drawn (then recorded in the settings).
pub(super) fn settle_seed(resolved: &mut Resolved, ckpt: Option<&Checkpoint>) -> u64 {
    let seed = match resolved.get("seed").parse::<u64>() {
        Ok(s) => s,
        Err(_) => ckpt.map_or_else(rand::random, |c| c.seed),
    };
    resolved.set("seed", seed.to_string());
    seed
}

fn warn_changed_settings(c: &Checkpoint, resolved: &Resolved) {
    let stored: Vec<(String, String)> = c
        .settings
        .iter()
        .filter(|(n, _)| !n.starts_with(INPUT_PREFIX))
        .cloned()
        .collect();
    for ch in changed_settings(&stored, &resolved.pairs) {
        eprintln!(
            "warning: {} changed since the checkpoint: {} -> {}",
            ch.name, ch.old, ch.new
        );
    }
}

fn print_header(problem: &Problem, out: &Path, resolved: &Resolved, plan: &Plan, start: u64) {
    let m = &problem.m;
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
    if problem.groups.is_none() {
        eprintln!(
            "  no --groups: every target weighs 1 in the loss (normalize_groups does not apply)"
        );
    }
    if !plan.excluded_names.is_empty() {
        eprintln!(
            "  {} target(s) left out of the loss (still reported)",
            plan.excluded_names.len()
        );
    }
    if !plan.fit.holdout_targets.is_empty() {
        eprintln!(
            "  {} target(s) held out of the loss as validation",
            plan.fit.holdout_targets.len()
        );
    }
    if start > 0 {
        eprintln!(
            "  resuming at epoch {start}: {} epoch(s) to go of {}",
            plan.epochs - start,
            plan.epochs
        );
    }
}

fn progress_bar(total: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:25}] {pos}/{len} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(start);
    bar
}

/// The command that resumes the run in `out`, with the flags that are not
/// kept in the checkpoint.
fn resume_command(a: &CalibrateArgs, out: &Path) -> String {
    let mut cmd = format!(
        "l0 calibrate --resume {}",
        shell_quote(&out.display().to_string())
    );
    if let Some(d) = &a.fit.device {
        cmd.push_str(&format!(" --device {}", shell_quote(d)));
    }
    if let Some(t) = a.fit.threads {
        cmd.push_str(&format!(" --threads {t}"));
    }
    cmd
}

/// After SIGINT/SIGTERM: the model holds the last finished epoch; save it
/// and say how to continue.
fn stop_interrupted(
    a: &CalibrateArgs,
    outdir: outdir::OutDir,
    out: &Path,
    sink: &CheckpointSink,
    model: &Calibration,
    total: u64,
) -> CliResult<()> {
    sink.write(model.state())?;
    // The checkpoint and log are this run's results: put in place (after
    // --overwrite, in place of the earlier run's files).
    outdir.commit(|_| Ok(()))?;
    eprintln!(
        "interrupted: stopped after epoch {} of {total}; checkpoint written to {}\nresume with: {}",
        model.state().step,
        out.join(l0::checkpoint::FILE_NAME).display(),
        resume_command(a, out)
    );
    Err(Failure {
        code: EXIT_CODE,
        message: String::new(),
    })
}

/// The warnings of the fit ([`l0::advice::fit_warnings`], in flags).
fn fit_warnings(
    summary: &Summary,
    rows: &[report::TargetRow],
    last: Option<&Progress>,
    r: &Resolved,
    groups: bool,
) -> CliResult<Vec<String>> {
    let settings = l0::advice::FitSettings {
        lambda_l0: r.f64("lambda_l0")?,
        lambda_l2: r.f64("lambda_l2")?,
        lr: r.f64("lr")?,
        epochs: r.get("epochs").parse().unwrap_or(0),
        loss: r.get("loss").parse()?,
        groups,
    };
    Ok(l0::advice::fit_warnings(
        rows,
        last,
        summary.sparsity(),
        &settings,
        l0::advice::Naming::Cli,
    ))
}

/// Where a run's wall time went, in seconds: reading and checking the
/// inputs (`load`), building the backend (on a GPU: opening the device,
/// compiling or loading the kernels and uploading the problem) and
/// everything else around the epochs (`setup`), the epoch loops of the fit
/// and any refit (`training`), and the results computed and written
/// (`outputs`).
#[derive(Clone, Copy, Debug, Default)]
struct Timing {
    load: f64,
    setup: f64,
    training: f64,
    outputs: f64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "time: load {:.2} s, setup {:.2} s, training {:.2} s, outputs {:.2} s",
            self.load, self.setup, self.training, self.outputs
        )
    }
}

/// Writes the four result files into `dir`: `weights` (the L0 fit's or,
/// after --refit, the refit's) and the L0 model's deterministic gates.
fn write_results(
    dir: &Path,
    weights: &[f64],
    model: &Calibration,
    rows: &[report::TargetRow],
    carriers: &[TargetCarrier],
    summary: &Summary,
) -> CliResult<()> {
    let gates = model.deterministic_gates();
    write_npy_f64(&dir.join("weights.npy"), weights)?;
    report::write_weights_csv(
        &dir.join("weights.csv"),
        weights,
        &gates,
        l0::par::Par::current(),
    )?;
    report::write_targets_csv(&dir.join("targets.csv"), rows, carriers)?;
    report::write_json(&dir.join("summary.json"), &summary.to_json())?;
    Ok(())
}

fn print_results(summary: &Summary, out: &Path, files: &[&str]) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v + 0.0);
    let a = &summary.accuracy;
    println!(
        "done: {} epochs in {:.1} s ({:.4} s/epoch) on {}",
        summary.epochs_run,
        summary.seconds,
        summary.seconds_per_epoch(),
        summary.device
    );
    println!(
        "targets: mean |rel err| {:.3}%, max {:.2}%; within 1/5/10/25%: {} / {} / {} / {} of {}",
        100.0 * a.mean_abs_rel_err + 0.0,
        100.0 * a.max_abs_rel_err + 0.0,
        pct(a.within[0]),
        pct(a.within[1]),
        pct(a.within[2]),
        pct(a.within[3]),
        a.included
    );
    if let Some(b) = &summary.before_refit {
        println!(
            "before refit: mean |rel err| {:.3}%, max {:.2}%, {} nonzero; refit {} epochs in {:.1} s",
            100.0 * b.accuracy.mean_abs_rel_err + 0.0,
            100.0 * b.accuracy.max_abs_rel_err + 0.0,
            b.active,
            b.refit_epochs,
            b.refit_seconds
        );
    }
    if let Some(h) = &summary.holdout {
        println!(
            "holdout: mean |rel err| {:.3}%, max {:.2}% over {} held-out target(s)",
            100.0 * h.mean_abs_rel_err + 0.0,
            100.0 * h.max_abs_rel_err + 0.0,
            h.included
        );
    }
    println!(
        "weights: {} of {} nonzero ({} sparse); seed {}",
        summary.active,
        summary.cols,
        pct(summary.sparsity()),
        summary.seed
    );
    let d = &summary.weights;
    println!(
        "concentration: effective sample size {:.1}, design effect {:.2}, max weight {:.4}, top 1% carry {}",
        d.ess,
        d.design_effect,
        d.max_weight,
        pct(d.top1pct_share)
    );
    println!("outputs in {}: {}", out.display(), files.join(", "));
}

/// The epochs of --refit (None without it): --refit-epochs, else half the
/// epochs (at least 1).
pub(super) fn refit_epochs(r: &Resolved, epochs: u64) -> CliResult<Option<u64>> {
    let given = r.get("refit_epochs");
    if !r.bool("refit") {
        return match given {
            "" => Ok(None),
            _ => Err(input_error("--refit-epochs needs --refit")),
        };
    }
    match given {
        "" => Ok(Some((epochs / 2).max(1))),
        e => match e.parse::<u64>() {
            Ok(k) if k > 0 => Ok(Some(k)),
            _ => Err(input_error(format!(
                "--refit-epochs: must be a whole number of at least 1, got '{e}'"
            ))),
        },
    }
}

/// The refit of `model` for `epochs` epochs, its progress printed every
/// `every` epochs on lines that start with `label` ("refit").
pub(super) fn run_refit(
    model: &Calibration,
    m: &SparseMatrix,
    y: &[f64],
    opts: &FitParams,
    (epochs, every): (u64, u64),
    label: &str,
) -> CliResult<l0::calibration::Refit> {
    let active = model.active_weights().count;
    eprintln!(
        "{label}: {active} record(s) kept, gates dropped, {epochs} epoch(s) with lambda_l0 = 0"
    );
    let opts = FitParams {
        report_every: Some(every.min(epochs)),
        ..opts.clone()
    };
    let refit = model.refit_with(m, y, &opts, epochs, &mut |p| {
        eprintln!("{label} {p}");
        Ok(())
    })?;
    eprintln!(
        "{label}: loss {:.4e} -> {:.4e}, the lowest checked (start, every {} epochs, end): kept epoch {} of {}",
        refit.start_loss,
        refit.loss,
        l0::calibration::REFIT_CHECK_EVERY,
        refit.best_epoch,
        refit.report.epochs
    );
    Ok(refit)
}

pub(super) fn calibrate(a: CalibrateArgs) -> CliResult<()> {
    let started = Instant::now();
    let interrupt = Interrupt::install();
    a.fit.single_lambda("calibrate")?;
    a.fit.check_threads()?;
    positive("log-every", a.log_every)?;
    positive("checkpoint-every", a.checkpoint_every)?;
    positive("progress-every", a.fit.progress_every)?;
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
    let mut resolved = resolve(&a, problem.demo, ckpt.as_ref(), problem.groups.is_some());
    let seed = settle_seed(&mut resolved, ckpt.as_ref());
    let plan = plan(&resolved, &a, &problem, seed, ckpt.is_some())?;
    let refit = refit_epochs(&resolved, plan.epochs)?;
    let budget = super::budget::budget_of(&a, m.cols())?;
    if budget.is_some() {
        resolved.set("lambda_l0", String::new()); // found by the search
    }
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
        model
            .set_state(c.state.clone())
            .map_err(|e| about_file(&dir.join(l0::checkpoint::FILE_NAME), e))?;
    }
    if let Some(c) = &ckpt {
        warn_changed_settings(c, &resolved);
    }
    warn_negative_targets(&problem, plan.fit.loss);
    print_header(&problem, &out, &resolved, &plan, start_step);

    let tty = std::io::stderr().is_terminal();
    let progress_every = a
        .fit
        .progress_every
        .unwrap_or_else(|| (plan.epochs / if tty { 50 } else { 10 }).max(1));
    let report_every = match log_every {
        Some(k) => gcd(k, progress_every),
        None => progress_every,
    };
    let log = match log_every {
        None => None,
        Some(k) => {
            let path = outdir.work().join("log.csv");
            let w = if start_step > 0 {
                LogWriter::resume(&path, start_step)?
            } else {
                LogWriter::create(&path)?
            };
            Some((k, w))
        }
    };
    let mut settings = resolved.pairs.clone();
    settings.extend(problem.inputs.iter().flat_map(InputFile::settings));
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
            settings,
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
        Some(b) => match super::budget::search(m, y, &plan.model, &opts, b) {
            Ok(fit) => {
                model = fit.chosen.model.clone();
                resolved.set("lambda_l0", format!("{:?}", fit.chosen.lambda_l0));
                let s = super::budget::summary(&fit, b, plan.epochs);
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

    let l0_weights = model.weights(true);
    let (weights, before_refit) = match refit {
        None => (l0_weights, None),
        Some(e) => {
            let clock = Instant::now();
            let refit = run_refit(&model, m, y, &opts, (e, progress_every), "refit")?;
            let wall = clock.elapsed().as_secs_f64();
            time.training += refit.report.seconds;
            time.setup += wall - refit.report.seconds;
            time.outputs -= wall;
            let rows = report::target_rows(&problem.names, y, &m.mul_vec(&l0_weights)?, &roles);
            let before = BeforeRefit {
                accuracy: Accuracy::of(&rows),
                holdout: Accuracy::holdout(&rows),
                active: l0_weights.iter().filter(|&&w| w > 0.0).count(),
                refit_epochs: e,
                refit_seconds: refit.report.seconds,
            };
            (refit.weights(), Some(before))
        }
    };
    let yhat = m.mul_vec(&weights)?;
    let rows = report::target_rows(&problem.names, y, &yhat, &roles);
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
        before_refit,
        lambda_l0: resolved.f64("lambda_l0")?,
        budget: search.as_ref().map(|(_, s)| s.clone()),
        excluded: plan.excluded_names.len(),
        active,
        weights: diag.weights.clone(),
        settings: resolved.json(),
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
        super::budget::print(fit, s, b);
    }
    let groups = problem.groups.is_some();
    for w in fit_warnings(&summary, &rows, report.last.as_ref(), &resolved, groups)? {
        eprintln!("{w}");
    }
    let included: Vec<bool> = roles.iter().map(|&r| r == TargetRole::Train).collect();
    if let Some(caps) = model.caps(&opts)? {
        let blocked: Vec<usize> = unreachable_targets(m, y, &caps)
            .into_iter()
            .filter(|&q| included[q])
            .collect();
        if !blocked.is_empty() {
            eprintln!(
                "warning: the weight caps make {} target(s) unreachable (even with every record at its cap the estimate cannot get there), so the fit is the best capped one: {}",
                blocked.len(),
                name_list(&problem.names, &blocked)
            );
        }
    }
    for w in concentration_warnings(
        &diag.weights,
        &diag.targets,
        &problem.names,
        &included,
        resolved.f64("warn_top1pct")?,
    ) {
        eprintln!("{w}");
    }
    Ok(())
}
