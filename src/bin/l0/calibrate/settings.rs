//! The settings of a calibration run, typed: [`Settings`], resolved from
//! the flags, the checkpoint (on `--resume`) and the defaults, in that
//! order, and checked once ([`Settings::check`]). serde writes them to
//! summary.json and, as `name = text` pairs, to checkpoints
//! ([`super::stored`]).

use super::stored;
use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Defaults that make the demo finish in about a minute on two cores and
/// still end sparse.
pub(crate) const DEMO_EPOCHS: u64 = 1000;
pub(crate) const DEMO_LR: f64 = 0.2;
pub(crate) const DEMO_LAMBDA_L0: f64 = 4e-6;
pub(crate) const DEMO_SEED: u64 = 1;

/// The warning threshold of `--warn-top1pct` when not given.
const WARN_TOP1PCT: f64 = 0.5;

/// A per-column initial value as given: a number, or a `.npy`/`.csv` file
/// of one value per column (read by [`super::plan`]). In summary.json a
/// number or the file's name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum InitSpec {
    /// The same value for every column.
    Value(f64),
    /// A file of one value per column.
    File(PathBuf),
}

impl InitSpec {
    /// `--init-weights` / `--init-keep-prob`: a number, else a file name.
    fn of(text: &str) -> Self {
        match text.parse::<f64>() {
            Ok(v) => InitSpec::Value(v),
            Err(_) => InitSpec::File(PathBuf::from(text)),
        }
    }

    /// The library's default, as a setting.
    fn of_init(i: &Init) -> Self {
        match i {
            Init::Scalar(v) => InitSpec::Value(*v),
            Init::PerColumn(_) => InitSpec::File(PathBuf::from("per-column")),
        }
    }
}

impl Serialize for InitSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InitSpec::Value(v) => s.serialize_f64(*v),
            InitSpec::File(p) => s.serialize_str(&p.display().to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for InitSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Spec;
        impl serde::de::Visitor<'_> for Spec {
            type Value = InitSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a file name")
            }
            fn visit_f64<E>(self, v: f64) -> Result<InitSpec, E> {
                Ok(InitSpec::Value(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<InitSpec, E> {
                Ok(InitSpec::Value(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<InitSpec, E> {
                Ok(InitSpec::Value(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<InitSpec, E> {
                Ok(InitSpec::of(v))
            }
        }
        d.deserialize_any(Spec)
    }
}

/// `--conserve-total`: a number, or the sum of the initial weights
/// (`initial`, the flag without a value). In summary.json the number or
/// `"initial"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum TotalSpec {
    /// This total.
    Value(f64),
    /// The sum of the initial (design) weights.
    Initial,
}

impl TotalSpec {
    /// The flag's text: `initial` (no value given) or a number.
    fn of(text: &str) -> CliResult<Self> {
        match text {
            "initial" => Ok(TotalSpec::Initial),
            _ => text.parse::<f64>().map(TotalSpec::Value).map_err(|_| {
                input_error(format!(
                    "--conserve-total must be a number (or no value: the sum of the initial weights), got '{text}'"
                ))
            }),
        }
    }
}

impl Serialize for TotalSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TotalSpec::Value(v) => s.serialize_f64(*v),
            TotalSpec::Initial => s.serialize_str("initial"),
        }
    }
}

impl<'de> Deserialize<'de> for TotalSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match InitSpec::deserialize(d)? {
            InitSpec::Value(v) => Ok(TotalSpec::Value(v)),
            InitSpec::File(f) if f.as_os_str() == "initial" => Ok(TotalSpec::Initial),
            InitSpec::File(f) => Err(serde::de::Error::custom(format!(
                "conserve_total: expected a number or \"initial\", got '{}'",
                f.display()
            ))),
        }
    }
}

/// Every setting that defines a calibration run, typed, in the order
/// summary.json and checkpoints list them. `None` is a setting not given
/// (null in summary.json, absent from the header line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) epochs: u64,
    pub(crate) lr: f64,
    /// None while the `--target-records` search has not found it.
    pub(crate) lambda_l0: Option<f64>,
    pub(crate) lambda_l2: f64,
    pub(crate) loss: Loss,
    /// None without `--groups`, where it does not apply (`n/a`).
    pub(crate) normalize_groups: Option<bool>,
    /// Group id -> loss factor, listed by the ids' text.
    #[serde(with = "stored::multipliers")]
    pub(crate) group_multipliers: BTreeMap<i64, f64>,
    pub(crate) exclude_targets: Vec<String>,
    /// Group ids, listed as text (as summary.json has always shown them).
    #[serde(with = "stored::ids")]
    pub(crate) holdout_groups: Vec<i64>,
    pub(crate) holdout_fraction: Option<f64>,
    pub(crate) holdout_seed: Option<u64>,
    pub(crate) target_weights: Option<PathBuf>,
    pub(crate) warn_top1pct: f64,
    pub(crate) max_weight: Option<f64>,
    pub(crate) max_weight_ratio: Option<f64>,
    pub(crate) min_weight_ratio: Option<f64>,
    pub(crate) conserve_total: Option<TotalSpec>,
    /// Absent from checkpoints written before it existed: None.
    #[serde(default)]
    pub(crate) target_tolerance: Option<InitSpec>,
    #[serde(default)]
    pub(crate) loss_cap: Option<f64>,
    pub(crate) refit: bool,
    pub(crate) refit_epochs: Option<u64>,
    pub(crate) beta: f64,
    pub(crate) gamma: f64,
    pub(crate) zeta: f64,
    pub(crate) use_gates: bool,
    pub(crate) test_gate: TestGate,
    pub(crate) init_weights: InitSpec,
    pub(crate) init_keep_prob: InitSpec,
    pub(crate) log_weight_jitter_sd: f64,
    pub(crate) log_alpha_jitter_sd: f64,
    pub(crate) log_every: Option<u64>,
    pub(crate) checkpoint_every: Option<u64>,
    /// None until [`settle_seed`] draws one.
    pub(crate) seed: Option<u64>,
}

impl Settings {
    /// The defaults: the library's, or the demo's where it has its own.
    fn defaults(demo: bool, groups: bool) -> Self {
        let model = CalibrationParams::default();
        let fit = FitParams::default();
        Settings {
            epochs: if demo { DEMO_EPOCHS } else { fit.epochs },
            lr: if demo { DEMO_LR } else { fit.lr },
            lambda_l0: Some(if demo { DEMO_LAMBDA_L0 } else { fit.lambda_l0 }),
            lambda_l2: fit.lambda_l2,
            loss: if demo { Loss::Relative } else { fit.loss },
            normalize_groups: groups.then_some(fit.normalize_groups),
            group_multipliers: BTreeMap::new(),
            exclude_targets: Vec::new(),
            holdout_groups: Vec::new(),
            holdout_fraction: None,
            holdout_seed: None,
            target_weights: None,
            warn_top1pct: WARN_TOP1PCT,
            max_weight: None,
            max_weight_ratio: None,
            min_weight_ratio: None,
            conserve_total: None,
            target_tolerance: None,
            loss_cap: None,
            refit: false,
            refit_epochs: None,
            beta: model.gate.beta,
            gamma: model.gate.gamma,
            zeta: model.gate.zeta,
            use_gates: model.use_gates,
            test_gate: model.test_gate,
            init_weights: model
                .init_weights
                .as_ref()
                .map_or(InitSpec::Value(1.0), InitSpec::of_init),
            init_keep_prob: InitSpec::of_init(&model.init_keep_prob),
            log_weight_jitter_sd: model.log_weight_jitter_sd,
            log_alpha_jitter_sd: model.log_alpha_jitter_sd,
            log_every: None,
            checkpoint_every: None,
            seed: demo.then_some(DEMO_SEED),
        }
    }

    /// The flags given, over `self`.
    fn overlay(mut self, a: &CalibrateArgs, groups: bool) -> CliResult<Self> {
        let f = &a.fit;
        fn set<T>(slot: &mut T, given: Option<T>) {
            if let Some(v) = given {
                *slot = v;
            }
        }
        set(&mut self.epochs, f.epochs);
        set(&mut self.lr, f.lr);
        set(&mut self.lambda_l0, f.lambda_l0.first().map(|&l| Some(l)));
        set(&mut self.lambda_l2, f.lambda_l2);
        set(
            &mut self.loss,
            a.loss.as_deref().map(parse_loss).transpose()?,
        );
        match groups {
            true => set(
                &mut self.normalize_groups,
                a.no_normalize_groups.then_some(Some(false)),
            ),
            false => self.normalize_groups = None,
        }
        set(
            &mut self.group_multipliers,
            (!a.group_multiplier.is_empty())
                .then(|| group_multipliers(&a.group_multiplier))
                .transpose()?,
        );
        let names: Vec<String> = a
            .exclude_targets
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        set(
            &mut self.exclude_targets,
            (!names.is_empty()).then_some(names),
        );
        set(
            &mut self.holdout_groups,
            (!a.holdout_groups.is_empty())
                .then(|| holdout_group_ids(&a.holdout_groups))
                .transpose()?,
        );
        set(&mut self.holdout_fraction, a.holdout_fraction.map(Some));
        set(&mut self.holdout_seed, a.holdout_seed.map(Some));
        set(&mut self.target_weights, a.target_weights.clone().map(Some));
        set(&mut self.warn_top1pct, a.warn_top1pct);
        set(&mut self.max_weight, a.max_weight.map(Some));
        set(&mut self.max_weight_ratio, a.max_weight_ratio.map(Some));
        set(&mut self.min_weight_ratio, a.min_weight_ratio.map(Some));
        set(
            &mut self.conserve_total,
            a.conserve_total
                .as_deref()
                .map(TotalSpec::of)
                .transpose()?
                .map(Some),
        );
        set(
            &mut self.target_tolerance,
            a.target_tolerance.as_deref().map(|t| Some(InitSpec::of(t))),
        );
        set(&mut self.loss_cap, a.loss_cap.map(Some));
        set(&mut self.refit, a.refit.then_some(true));
        set(&mut self.refit_epochs, a.refit_epochs.map(Some));
        set(&mut self.beta, f.beta);
        set(&mut self.gamma, f.gamma);
        set(&mut self.zeta, f.zeta);
        set(&mut self.use_gates, a.no_gates.then_some(false));
        set(
            &mut self.test_gate,
            f.test_gate.as_deref().map(parse_test_gate).transpose()?,
        );
        set(
            &mut self.init_weights,
            a.init_weights.as_deref().map(InitSpec::of),
        );
        set(
            &mut self.init_keep_prob,
            a.init_keep_prob.as_deref().map(InitSpec::of),
        );
        set(&mut self.log_weight_jitter_sd, a.log_weight_jitter_sd);
        set(&mut self.log_alpha_jitter_sd, f.log_alpha_jitter_sd);
        set(&mut self.log_every, a.log_every.map(Some));
        set(&mut self.checkpoint_every, a.checkpoint_every.map(Some));
        set(&mut self.seed, f.seed.map(Some));
        Ok(self)
    }

    /// Refuses settings that break a rule of their own (the rules that need
    /// the problem's data are checked where it is read, in
    /// [`super::plan`]). Each rule is checked here and nowhere else in
    /// the command.
    pub(crate) fn check(&self) -> CliResult<()> {
        if !(0.0..=1.0).contains(&self.warn_top1pct) {
            return Err(input_error(format!(
                "--warn-top1pct must be a share between 0 and 1, got {}",
                self.warn_top1pct
            )));
        }
        // The library's rules, spelled as flags (a tolerance file is
        // checked when it is read).
        let bounds = FitParams {
            max_weight: self.max_weight,
            max_weight_ratio: self.max_weight_ratio,
            min_weight_ratio: self.min_weight_ratio,
            conserve_total: match self.conserve_total {
                Some(TotalSpec::Value(x)) => Some(x),
                _ => None,
            },
            target_tolerance: match self.target_tolerance {
                Some(InitSpec::Value(t)) => Some(vec![t]),
                _ => None,
            },
            loss: self.loss,
            loss_cap: self.loss_cap,
            ..FitParams::default()
        };
        bounds
            .check_bounds(self.use_gates, l0::naming::Naming::Cli)
            .map_err(|e| match e {
                L0Error::InvalidConfig(message) => input_error(message),
                other => input_error(other.to_string()),
            })?;
        if !self.refit && self.refit_epochs.is_some() {
            return Err(input_error("--refit-epochs needs --refit"));
        }
        if self.refit_epochs == Some(0) {
            return Err(input_error(
                "--refit-epochs: must be a whole number of at least 1, got '0'",
            ));
        }
        Ok(())
    }

    /// The epochs of --refit (None without it): --refit-epochs, else half
    /// the epochs (at least 1).
    pub(crate) fn refit_epochs(&self) -> Option<u64> {
        self.refit
            .then(|| self.refit_epochs.unwrap_or((self.epochs / 2).max(1)))
    }

    /// The settings as `(name, text)` pairs: what checkpoints store and the
    /// header line shows.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        stored::pairs(self)
    }

    /// The settings for summary.json, each as its JSON type.
    pub(crate) fn json(&self) -> Vec<(String, Json)> {
        stored::json(self)
    }
}

fn parse_loss(text: &str) -> CliResult<Loss> {
    parse_flag("loss", text)
}

/// `--group-multiplier ID=FACTOR` items; a repeated id keeps the factor of
/// the item last in text order.
fn group_multipliers(items: &[String]) -> CliResult<BTreeMap<i64, f64>> {
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    let mut out = BTreeMap::new();
    for item in sorted {
        let bad = || {
            input_error(format!(
                "--group-multiplier: expected ID=FACTOR (an integer group id and a number), got '{item}'"
            ))
        };
        let (id, factor) = item.split_once('=').ok_or_else(bad)?;
        let id: i64 = id.trim().parse().map_err(|_| bad())?;
        let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
        out.insert(id, factor);
    }
    Ok(out)
}

/// `--holdout-groups`: integer group ids.
fn holdout_group_ids(items: &[String]) -> CliResult<Vec<i64>> {
    items
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim().parse::<i64>().map_err(|_| {
                input_error(format!(
                    "--holdout-groups: expected integer group ids, got '{t}'"
                ))
            })
        })
        .collect()
}

/// The run's settings from the flags, the checkpoint's and the defaults
/// (the demo's where `demo`), checked; `groups`: whether the problem has
/// target groups (without, `normalize_groups` does not apply).
pub(crate) fn resolve(
    a: &CalibrateArgs,
    demo: bool,
    ckpt: Option<&Checkpoint>,
    groups: bool,
) -> CliResult<Settings> {
    let defaults = Settings::defaults(demo, groups);
    let under = match ckpt {
        None => defaults,
        Some(c) => stored::read(&c.settings, &defaults)?,
    };
    let settings = under.overlay(a, groups)?;
    settings.check()?;
    Ok(settings)
}

/// The seed: given, from the checkpoint, or drawn (then kept in the settings).
pub(crate) fn settle_seed(s: &mut Settings, ckpt: Option<&Checkpoint>) -> u64 {
    let seed = s
        .seed
        .unwrap_or_else(|| ckpt.map_or_else(rand::random, |c| c.seed));
    s.seed = Some(seed);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn stored_pairs_read_back_to_the_same_settings() {
        let mut s = Settings::defaults(false, true);
        s.lambda_l0 = Some(4e-6);
        s.group_multipliers = BTreeMap::from([(10, 0.5), (9, 2.0), (-1, 3.0)]);
        s.exclude_targets = vec!["a".into(), "b c".into()];
        s.holdout_groups = vec![3, -4];
        s.target_weights = Some(PathBuf::from("tw.npy"));
        s.max_weight_ratio = Some(1.5);
        s.min_weight_ratio = Some(0.25);
        s.conserve_total = Some(TotalSpec::Initial);
        s.test_gate = TestGate::Paper;
        s.init_weights = InitSpec::File(PathBuf::from("w.npy"));
        s.seed = Some(u64::MAX);
        let pairs = s.pairs();
        assert_eq!(
            stored::read(&pairs, &Settings::defaults(true, false)).ok(),
            Some(s.clone())
        );
        let text = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        // Ids listed by their text, as summary.json always listed them.
        assert_eq!(text("group_multipliers"), Some("-1=3.0,10=0.5,9=2.0"));
        assert_eq!(text("lambda_l0"), Some("4e-6"));
        assert_eq!(text("holdout_groups"), Some("3,-4"));
        assert_eq!(text("max_weight"), Some(""));
        assert_eq!(text("seed"), Some("18446744073709551615"));
        assert_eq!(text("conserve_total"), Some("initial"));
        assert_eq!(text("min_weight_ratio"), Some("0.25"));
        // A number reads back as a number.
        s.conserve_total = Some(TotalSpec::Value(1234.5));
        let pairs = s.pairs();
        assert_eq!(
            stored::read(&pairs, &Settings::defaults(true, false)).ok(),
            Some(s)
        );
    }

    #[test]
    fn older_checkpoint_text_reads_as_typed_settings() {
        // As an earlier version stored them: the flags' own text.
        let stored = [
            pair("epochs", "40"),
            pair("lr", "0.05"),
            pair("loss", "relative"),
            pair("normalize_groups", stored::NO_GROUPS),
            pair("group_multipliers", "1= 2,3=0.5"),
            pair("holdout_groups", "1, 2"),
            pair("init_weights", "2"),
            pair("init_keep_prob", "keep.npy"),
            pair("refit_epochs", ""),
            pair("test_gate", "paper"),
            pair("input.matrix", "/data/m.npz"),
        ];
        let s = stored::read(&stored, &Settings::defaults(false, true)).ok();
        let s = s.expect("older settings read");
        assert_eq!(s.epochs, 40);
        assert_eq!(s.lr, 0.05);
        assert_eq!(s.loss, Loss::Relative);
        assert_eq!(s.normalize_groups, None);
        assert_eq!(s.group_multipliers, BTreeMap::from([(1, 2.0), (3, 0.5)]));
        assert_eq!(s.holdout_groups, vec![1, 2]);
        assert_eq!(s.init_weights, InitSpec::Value(2.0));
        assert_eq!(s.init_keep_prob, InitSpec::File("keep.npy".into()));
        assert_eq!(s.refit_epochs, None);
        assert_eq!(s.test_gate, TestGate::Paper);
        // Not stored: the value below.
        assert_eq!(s.warn_top1pct, WARN_TOP1PCT);
    }

    #[test]
    fn a_stored_setting_that_does_not_parse_is_named() {
        let stored = [pair("lr", "fast")];
        let e = stored::read(&stored, &Settings::defaults(false, true)).err();
        assert_eq!(
            e.map(|f| f.message),
            Some("checkpoint settings: lr = 'fast': expected a number".to_string())
        );
    }

    #[test]
    fn summary_json_lists_every_setting_with_its_type() {
        let json = Settings::defaults(true, false).json();
        let names: Vec<&str> = json.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names[..6],
            [
                "epochs",
                "lr",
                "lambda_l0",
                "lambda_l2",
                "loss",
                "normalize_groups"
            ]
        );
        assert_eq!(names.len(), 33);
        let get = |k: &str| json.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("target_tolerance"), Some(Json::Null));
        assert_eq!(get("loss_cap"), Some(Json::Null));
        assert_eq!(get("min_weight_ratio"), Some(Json::Null));
        assert_eq!(get("conserve_total"), Some(Json::Null));
        assert_eq!(get("epochs"), Some(Json::Int(DEMO_EPOCHS as i128)));
        assert_eq!(get("lr"), Some(Json::Num(DEMO_LR)));
        assert_eq!(get("loss"), Some(Json::Str("relative".into())));
        assert_eq!(get("normalize_groups"), Some(Json::Null));
        assert_eq!(get("group_multipliers"), Some(Json::Object(Vec::new())));
        assert_eq!(get("exclude_targets"), Some(Json::Array(Vec::new())));
        assert_eq!(get("init_weights"), Some(Json::Num(1.0)));
        assert_eq!(get("seed"), Some(Json::Int(DEMO_SEED as i128)));
    }

    #[test]
    fn check_refuses_each_broken_rule_with_its_message() {
        let bad = |edit: &dyn Fn(&mut Settings)| {
            let mut s = Settings::defaults(false, true);
            edit(&mut s);
            s.check().err().map(|f| f.message)
        };
        assert_eq!(bad(&|_| {}), None);
        assert_eq!(
            bad(&|s| s.warn_top1pct = 1.5).as_deref(),
            Some("--warn-top1pct must be a share between 0 and 1, got 1.5")
        );
        assert_eq!(
            bad(&|s| s.max_weight = Some(f64::INFINITY)).as_deref(),
            Some("--max-weight must be a finite number > 0, got inf")
        );
        assert_eq!(
            bad(&|s| s.max_weight_ratio = Some(0.5)).as_deref(),
            Some("--max-weight-ratio must be >= 1 with gates, got 0.5")
        );
        assert_eq!(
            bad(&|s| {
                s.use_gates = false;
                s.max_weight_ratio = Some(0.5)
            }),
            None
        );
        assert_eq!(
            bad(&|s| s.refit_epochs = Some(3)).as_deref(),
            Some("--refit-epochs needs --refit")
        );
    }
}
