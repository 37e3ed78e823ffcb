//! Holdout targets: which targets a fit leaves out of its loss to report
//! them as validation. [`holdout_targets`] turns a [`Holdout`] choice (whole
//! target groups, or a random share of the targets, stratified by group)
//! into target indices for [`crate::calibration::FitParams::holdout_targets`];
//! the calibration gives those targets loss weight 0 and reports their
//! errors apart ([`crate::calibration::Progress::holdout_mean_rel_err`]).

use crate::error::{L0Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};

/// Which targets to hold out.
#[derive(Clone, Debug, PartialEq)]
pub enum Holdout {
    /// Every target of these group ids.
    Groups(Vec<i64>),
    /// `round(fraction x size)` targets drawn at random within each group
    /// (the whole set when there are no groups), keyed by `seed`.
    Fraction {
        /// Share of the targets, in (0, 1).
        fraction: f64,
        /// Seed of the draw.
        seed: u64,
    },
}

/// The sorted target indices that `spec` holds out of `q` targets with
/// group ids `groups` (one per target, or None). Refuses group ids that no
/// target has, groups without `groups`, a fraction outside (0, 1), and a
/// choice that would hold out every target or none.
pub fn holdout_targets(q: usize, groups: Option<&[i64]>, spec: &Holdout) -> Result<Vec<usize>> {
    if let Some(g) = groups {
        if g.len() != q {
            return Err(L0Error::shape("target groups (one per target)", q, g.len()));
        }
    }
    let chosen = match spec {
        Holdout::Groups(ids) => by_groups(groups, ids)?,
        Holdout::Fraction { fraction, seed } => by_fraction(q, groups, *fraction, *seed)?,
    };
    if chosen.is_empty() {
        return Err(L0Error::config(
            "the holdout holds out no target (raise the fraction)",
        ));
    }
    if chosen.len() == q {
        return Err(L0Error::config(format!(
            "the holdout holds out all {q} targets, leaving none to fit"
        )));
    }
    Ok(chosen)
}

fn by_groups(groups: Option<&[i64]>, ids: &[i64]) -> Result<Vec<usize>> {
    let groups =
        groups.ok_or_else(|| L0Error::config("a holdout by groups needs target groups"))?;
    let present: BTreeSet<i64> = groups.iter().copied().collect();
    if let Some(id) = ids.iter().find(|id| !present.contains(id)) {
        return Err(L0Error::config(format!(
            "holdout group {id} is not a group of any target"
        )));
    }
    let wanted: BTreeSet<i64> = ids.iter().copied().collect();
    Ok((0..groups.len())
        .filter(|&t| wanted.contains(&groups[t]))
        .collect())
}

/// Within each group (in group-id order), shuffles its targets with one
/// generator seeded by `seed` and takes the first `round(fraction x size)`.
fn by_fraction(q: usize, groups: Option<&[i64]>, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(L0Error::config(format!(
            "the holdout fraction must be in (0, 1), got {fraction}"
        )));
    }
    let mut strata: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for t in 0..q {
        strata
            .entry(groups.map_or(0, |g| g[t]))
            .or_default()
            .push(t);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut chosen = Vec::new();
    for members in strata.values_mut() {
        members.shuffle(&mut rng);
        let take = (fraction * members.len() as f64).round() as usize;
        chosen.extend_from_slice(&members[..take]);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_pick_whole_groups() {
        let g = [1, 2, 1, 3, 2];
        let h = holdout_targets(5, Some(&g), &Holdout::Groups(vec![2])).unwrap();
        assert_eq!(h, vec![1, 4]);
        assert!(holdout_targets(5, Some(&g), &Holdout::Groups(vec![7])).is_err());
        assert!(holdout_targets(5, None, &Holdout::Groups(vec![1])).is_err());
        assert!(holdout_targets(5, Some(&g), &Holdout::Groups(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn fraction_is_stratified_and_seeded() {
        let g: Vec<i64> = (0..100).map(|t| (t % 4) as i64).collect();
        let spec = Holdout::Fraction {
            fraction: 0.2,
            seed: 7,
        };
        let h = holdout_targets(100, Some(&g), &spec).unwrap();
        assert_eq!(h.len(), 20);
        for id in 0..4 {
            assert_eq!(h.iter().filter(|&&t| g[t] == id).count(), 5);
        }
        assert_eq!(h, holdout_targets(100, Some(&g), &spec).unwrap());
        let other = Holdout::Fraction {
            fraction: 0.2,
            seed: 8,
        };
        assert_ne!(h, holdout_targets(100, Some(&g), &other).unwrap());
        for bad in [0.0, 1.0, f64::NAN] {
            let spec = Holdout::Fraction {
                fraction: bad,
                seed: 0,
            };
            assert!(holdout_targets(100, None, &spec).is_err());
        }
    }
}
