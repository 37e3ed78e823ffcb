//! The fit's library parameters ([`CalibrationParams`], [`FitParams`]),
//! made from the typed [`Settings`] and the problem's data.

use super::*;

/// Everything the fit needs, made from the settings.
pub(crate) struct Plan {
    pub(crate) model: CalibrationParams,
    pub(crate) fit: FitParams,
    pub(crate) epochs: u64,
    pub(super) excluded_names: Vec<String>,
}

impl Plan {
    /// Each target's role in the fit.
    pub(crate) fn roles(&self, rows: usize) -> Vec<TargetRole> {
        l0::calibration::target_roles(rows, &self.fit)
    }
}

/// The targets left out of the loss, sorted: those named by
/// --exclude-targets, and rows no weight can reach (with a warning).
/// Refuses a problem with no target left.
fn left_out(s: &Settings, p: &Problem) -> CliResult<Vec<usize>> {
    let mut excluded: Vec<usize> = Vec::new();
    for name in &s.exclude_targets {
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

/// The library's parameters for the settings `s` on problem `p`. When
/// `resuming`, the initial values are not loaded (the checkpoint's state
/// replaces them).
pub(crate) fn plan(
    s: &Settings,
    a: &CalibrateArgs,
    p: &Problem,
    seed: u64,
    resuming: bool,
) -> CliResult<Plan> {
    let cols = p.m.cols();
    let device: Device = parse_flag("device", a.fit.device.as_deref().unwrap_or("auto"))?;
    let excluded = left_out(s, p)?;
    let holdout = super::holdout::held_out(s, p.groups.as_deref(), p.m.rows(), seed)?;
    let excluded_names = excluded.iter().map(|&q| p.names[q].clone()).collect();
    let model = CalibrationParams {
        gate: GateParams {
            beta: s.beta,
            gamma: s.gamma,
            zeta: s.zeta,
        },
        init_keep_prob: if resuming {
            Init::Scalar(0.5)
        } else {
            load_init(&s.init_keep_prob, "init_keep_prob", cols)?
        },
        // A resumed run takes its state from the checkpoint, but the ratio
        // bounds and the initial total still need the design weights.
        init_weights: if resuming
            && s.max_weight_ratio.is_none()
            && s.min_weight_ratio.is_none()
            && s.conserve_total != Some(TotalSpec::Initial)
        {
            None
        } else {
            Some(load_init(&s.init_weights, "init_weights", cols)?)
        },
        log_weight_jitter_sd: s.log_weight_jitter_sd,
        log_alpha_jitter_sd: s.log_alpha_jitter_sd,
        use_gates: s.use_gates,
        seed: Some(seed),
        test_gate: s.test_gate,
    };
    // Only the lower bounds and a total need the design weights here.
    let design = (s.min_weight_ratio.is_some() || s.conserve_total.is_some())
        .then(|| model.design_weights(cols))
        .transpose()
        .map_err(|e| input_error(e.to_string()))?;
    let fit = FitParams {
        lambda_l0: s.lambda_l0.unwrap_or(FitParams::default().lambda_l0),
        lambda_l2: s.lambda_l2,
        lr: s.lr,
        epochs: s.epochs,
        loss: s.loss,
        target_groups: p.groups.clone(),
        normalize_groups: s.normalize_groups.unwrap_or(false),
        group_multipliers: s.group_multipliers.clone(),
        excluded_targets: excluded,
        holdout_targets: holdout,
        target_weights: s
            .target_weights
            .as_deref()
            .map(|path| load_target_weights(path, p.m.rows()))
            .transpose()?,
        max_weight: s.max_weight,
        max_weight_ratio: s.max_weight_ratio,
        min_weight_ratio: s.min_weight_ratio,
        conserve_total: match s.conserve_total {
            None => None,
            Some(TotalSpec::Value(x)) => Some(x),
            Some(TotalSpec::Initial) => design.as_ref().map(|d| d.iter().sum()),
        },
        target_tolerance: s
            .target_tolerance
            .as_ref()
            .map(|t| load_tolerance(t, p.m.rows()))
            .transpose()?,
        loss_cap: s.loss_cap,
        device,
        threads: a.fit.threads,
        report_every: None,
    };
    if let Some(design) = &design {
        check_room(&model, &fit, design)?;
    }
    Ok(Plan {
        model,
        fit,
        epochs: s.epochs,
        excluded_names,
    })
}

/// Refuses weight bounds that leave no room, spelled as flags
/// ([`l0::constraints::check_conflicts`]), before anything is trained.
fn check_room(model: &CalibrationParams, fit: &FitParams, design: &[f64]) -> CliResult<()> {
    let caps = l0::calibration::weight_caps(fit, design, model.use_gates)
        .map_err(|e| input_error(e.to_string()))?;
    let floors = l0::calibration::weight_floors(fit, design);
    l0::constraints::check_conflicts(
        floors.as_deref(),
        caps.as_deref(),
        fit.conserve_total,
        l0::naming::Naming::Cli,
    )
    .map_err(|e| match e {
        L0Error::InvalidConfig(message) => input_error(message),
        other => input_error(other.to_string()),
    })
}

/// An initial value: the number, or the file's one value per column.
fn load_init(spec: &InitSpec, what: &str, cols: usize) -> CliResult<Init> {
    match spec {
        InitSpec::Value(v) => Ok(Init::Scalar(*v)),
        InitSpec::File(path) => load_vector(path, what, cols, "matrix column").map(Init::PerColumn),
    }
}

/// The tolerances of --target-tolerance: the number (for every target), or
/// the file's one per target (checked with the fit's other options).
fn load_tolerance(spec: &InitSpec, rows: usize) -> CliResult<Vec<f64>> {
    match spec {
        InitSpec::Value(v) => Ok(vec![*v]),
        InitSpec::File(path) => {
            let v = load_vector(path, "target tolerances", rows, "target")?;
            if let Some(k) = v.iter().position(|t| !(t.is_finite() && *t >= 0.0)) {
                return Err(input_error(format!(
                    "{}: target tolerance {k} is {}; each must be a finite number >= 0",
                    path.display(),
                    v[k]
                )));
            }
            Ok(v)
        }
    }
}

/// The per-target loss factors of --target-weights: one finite number >= 0
/// per target.
fn load_target_weights(path: &Path, rows: usize) -> CliResult<Vec<f64>> {
    let v = load_vector(path, "target weights", rows, "target")?;
    if let Some(k) = v.iter().position(|f| !(f.is_finite() && *f >= 0.0)) {
        return Err(input_error(format!(
            "{}: target weight {k} is {}; each must be a finite number >= 0",
            path.display(),
            v[k]
        )));
    }
    Ok(v)
}
