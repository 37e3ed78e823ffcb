//! The holdout settings of `l0 calibrate` (`--holdout-groups`,
//! `--holdout-fraction`, `--holdout-seed`), turned into target indices by
//! [`l0::holdout::holdout_targets`].

use super::*;
use l0::holdout::{holdout_targets, Holdout};

/// The held-out targets of the settings `s` (sorted; empty without a
/// holdout setting); `default_seed` draws a fraction without
/// `--holdout-seed`.
pub(crate) fn held_out(
    s: &Settings,
    groups: Option<&[i64]>,
    rows: usize,
    default_seed: u64,
) -> CliResult<Vec<usize>> {
    let (flag, spec) = match (s.holdout_groups.is_empty(), s.holdout_fraction) {
        (true, None) => {
            if s.holdout_seed.is_some() {
                return Err(input_error("--holdout-seed needs --holdout-fraction"));
            }
            return Ok(Vec::new());
        }
        (false, Some(_)) => {
            return Err(input_error(
                "--holdout-groups and --holdout-fraction exclude each other: give one",
            ))
        }
        (false, None) => {
            if groups.is_none() {
                return Err(input_error(
                    "--holdout-groups needs --groups (the group id of each target)",
                ));
            }
            ("holdout-groups", Holdout::Groups(s.holdout_groups.clone()))
        }
        (true, Some(fraction)) => {
            let seed = s.holdout_seed.unwrap_or(default_seed);
            ("holdout-fraction", Holdout::Fraction { fraction, seed })
        }
    };
    holdout_targets(rows, groups, &spec).map_err(|e| flag_error(flag, e))
}
