//! The flags of `l0 calibrate` (also those of `l0 sweep`, which takes them all).

use super::*;

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct CalibrateArgs {
    /// Matrix M, targets x records: scipy .npz (csr, csc or coo) or .mtx.
    #[arg(long)]
    pub(crate) matrix: Option<PathBuf>,
    /// Targets y, one per row of M: .npy or one-column .csv.
    #[arg(long)]
    pub(crate) targets: Option<PathBuf>,
    /// Group id of each target (integers): .npy or one-column .csv.
    #[arg(long)]
    pub(crate) groups: Option<PathBuf>,
    /// Target names, one per line (.csv) [default: target_0, target_1, ...].
    #[arg(long)]
    pub(crate) target_names: Option<PathBuf>,
    /// Initial weights: a number or a per-column .npy [default: 1].
    #[arg(long)]
    pub(crate) init_weights: Option<String>,
    /// Initial gate keep probability: a number or a per-column .npy [default: 0.5].
    #[arg(long)]
    pub(crate) init_keep_prob: Option<String>,
    #[command(flatten)]
    pub(crate) fit: CommonFit,
    /// Standard deviation of the noise added to the log-weights before the first step [default: 0].
    #[arg(long)]
    pub(crate) log_weight_jitter_sd: Option<f64>,
    /// Data loss: mse, relative or l1-relative [default: mse; the demo: relative].
    #[arg(long)]
    pub(crate) loss: Option<String>,
    /// Give every target the same loss weight instead of sharing one unit per group.
    #[arg(long)]
    pub(crate) no_normalize_groups: bool,
    /// Multiply a group's loss weight: ID=FACTOR (repeatable).
    #[arg(long, value_name = "ID=FACTOR")]
    pub(crate) group_multiplier: Vec<String>,
    /// Plain positive weights without L0 gates.
    #[arg(long)]
    pub(crate) no_gates: bool,
    /// Leave these targets (by name, comma-separated) out of the loss; they are still reported.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub(crate) exclude_targets: Vec<String>,
    /// Hold these target groups (comma-separated ids of --groups) out of
    /// the loss and report them as validation.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub(crate) holdout_groups: Vec<String>,
    /// Hold this share of the targets (drawn at random, stratified by
    /// group when --groups is given) out of the loss and report them as
    /// validation.
    #[arg(long, value_name = "F")]
    pub(crate) holdout_fraction: Option<f64>,
    /// Seed of the --holdout-fraction draw [default: the model seed].
    #[arg(long, value_name = "S")]
    pub(crate) holdout_seed: Option<u64>,
    /// A factor >= 0 per target on its loss weight, after group
    /// normalisation and multipliers: .npy or one-column .csv.
    #[arg(long, value_name = "FILE")]
    pub(crate) target_weights: Option<PathBuf>,
    /// Warn when the top 1% of the active records carry more than this
    /// share of the weight total [default: 0.5].
    #[arg(long, value_name = "SHARE")]
    pub(crate) warn_top1pct: Option<f64>,
    /// Cap every weight at X (held exactly, during training too).
    #[arg(long, value_name = "X")]
    pub(crate) max_weight: Option<f64>,
    /// Cap every weight at R times its record's --init-weights (the design
    /// weight); R >= 1 with gates.
    #[arg(long, value_name = "R")]
    pub(crate) max_weight_ratio: Option<f64>,
    /// Every kept (non-zero) weight at least R times its record's
    /// --init-weights (held during training too; zeros stay allowed).
    #[arg(long, value_name = "R")]
    pub(crate) min_weight_ratio: Option<f64>,
    /// The weights sum to X: their mean over the gate noise after every
    /// step, the written weights exactly (no value: the sum of the initial
    /// weights, --init-weights).
    #[arg(long, value_name = "X", num_args = 0..=1, default_missing_value = "initial")]
    pub(crate) conserve_total: Option<String>,
    /// A tolerance band around each target: no loss while its relative
    /// error is at most X in size, the loss of the distance to the band's
    /// edge outside (a number for every target, or a .npy/.csv file of one
    /// per target); targets.csv gains within_tolerance.
    #[arg(long, value_name = "X|FILE")]
    pub(crate) target_tolerance: Option<String>,
    /// With --loss l1-relative: the most one target's loss can be (> 0).
    #[arg(long, value_name = "C")]
    pub(crate) loss_cap: Option<f64>,
    /// Select, then refit: after the L0 fit keep the records with a
    /// non-zero weight, drop the gates and train only their weights
    /// (lambda_l0 = 0) for --refit-epochs more epochs.
    #[arg(long)]
    pub(crate) refit: bool,
    /// Epochs of the --refit [default: half the epochs].
    #[arg(long, value_name = "E")]
    pub(crate) refit_epochs: Option<u64>,
    /// Record budget: search for the lambda_l0 whose model keeps K records
    /// (within --records-tolerance), instead of giving --lambda-l0.
    #[arg(long, value_name = "K")]
    pub(crate) target_records: Option<usize>,
    /// Relative tolerance of --target-records [default: 0.05].
    #[arg(long, value_name = "T")]
    pub(crate) records_tolerance: Option<f64>,
    /// The lambda_l0 range --target-records searches [default: 1e-9:1e-1];
    /// widen it when the budget says its end keeps too many or too few
    /// records (mse loss on large raw totals needs a larger top).
    #[arg(long, value_name = "LO:HI")]
    pub(crate) lambda_range: Option<String>,
    /// Output folder [default: ./l0-out, or the --resume folder]. A run owns
    /// it: one holding another run's files is refused unless --overwrite.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Replace the files of an earlier run in --out (they stay until this
    /// run's results replace them: a run that fails leaves them whole).
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Append one row per target to log.csv every this many epochs.
    #[arg(long, value_name = "K")]
    pub(crate) log_every: Option<u64>,
    /// Write checkpoint.l0ck to the output folder every this many epochs.
    #[arg(long, value_name = "K")]
    pub(crate) checkpoint_every: Option<u64>,
    /// Continue the run whose checkpoint.l0ck is in this folder (its input
    /// files are found from the checkpoint unless given).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume: Option<PathBuf>,
}
