//! The holdout flags of `l0 calibrate` (`--holdout-groups`,
//! `--holdout-fraction`, `--holdout-seed`), turned into target indices by
//! [`l0::holdout::holdout_targets`].

use super::inputs::parse_f64;
use super::*;
use l0::holdout::{holdout_targets, Holdout};

/// The holdout flags, as the resolved settings hold them (empty: not given).
pub(super) struct HoldoutFlags<'a> {
    /// `--holdout-groups`: comma-separated group ids.
    pub groups: &'a str,
    /// `--holdout-fraction`.
    pub fraction: &'a str,
    /// `--holdout-seed` (empty: `default_seed`).
    pub seed: &'a str,
}

/// The held-out targets (sorted; empty without a holdout flag).
pub(super) fn held_out(
    flags: &HoldoutFlags,
    groups: Option<&[i64]>,
    rows: usize,
    default_seed: u64,
) -> CliResult<Vec<usize>> {
    let (flag, spec) = match (flags.groups.is_empty(), flags.fraction.is_empty()) {
        (true, true) => {
            if !flags.seed.is_empty() {
                return Err(input_error("--holdout-seed needs --holdout-fraction"));
            }
            return Ok(Vec::new());
        }
        (false, false) => {
            return Err(input_error(
                "--holdout-groups and --holdout-fraction exclude each other: give one",
            ))
        }
        (false, true) => ("holdout-groups", group_spec(flags.groups, groups)?),
        (true, false) => {
            let fraction = parse_f64("holdout-fraction", flags.fraction)?;
            let seed = match flags.seed {
                "" => default_seed,
                s => s.parse().map_err(|_| {
                    input_error(format!(
                        "--holdout-seed: cannot parse '{s}' as a non-negative integer"
                    ))
                })?,
            };
            ("holdout-fraction", Holdout::Fraction { fraction, seed })
        }
    };
    holdout_targets(rows, groups, &spec).map_err(|e| flag_error(flag, e))
}

fn group_spec(text: &str, groups: Option<&[i64]>) -> CliResult<Holdout> {
    if groups.is_none() {
        return Err(input_error(
            "--holdout-groups needs --groups (the group id of each target)",
        ));
    }
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim().parse::<i64>().map_err(|_| {
                input_error(format!(
                    "--holdout-groups: expected integer group ids, got '{t}'"
                ))
            })
        })
        .collect::<CliResult<Vec<i64>>>()
        .map(Holdout::Groups)
}
