//! Where the budget `K` is expected, from the active counts of the models
//! trained so far: the narrowing interval, the crossing of `K` in `ln λ`,
//! whether the counts have settled, the models kept at a drop and the λ of
//! a refining batch.

use super::schedule::{log_count, Budget};

use crate::sweep::SweepModel;

/// How far (as a factor either way) a bracket model's short count may be
/// from the target while its full-length count still crosses it: short
/// counts on small problems have been seen at 0.5-0.6 of the full ones.
pub const SHORT_COUNT_SLACK: f64 = 2.0;

/// The narrowing interval from the bracket's `(λ, short count)` points, λ
/// ascending: the hull of the steps where the counts cross K and of the
/// counts within [`SHORT_COUNT_SLACK`] of K, widened by one step on each
/// side; with none, the top two steps (all counts above K) or the whole
/// range (all below).
pub(super) fn first_interval(points: &[(f64, usize)], budget: &Budget) -> (f64, f64) {
    let k = budget.target_records;
    let near = |c: usize| budget.miss(c) <= SHORT_COUNT_SLACK.ln();
    let crosses = |i: usize| (points[i].1 > k) != (points[i + 1].1 > k);
    let last = points.len() - 1;
    let marked: Vec<usize> = (0..=last)
        .filter(|&i| near(points[i].1) || (i < last && crosses(i)) || (i > 0 && crosses(i - 1)))
        .collect();
    let (a, b) = match (marked.first(), marked.last()) {
        (Some(&a), Some(&b)) => (a.saturating_sub(1), (b + 1).min(last)),
        _ if points[0].1 > k => (last.saturating_sub(2), last),
        _ => (0, last),
    };
    (points[a].0, points[b].0)
}

/// `ln λ` where the counts of `points` (λ ascending) first cross K, by
/// straight-line interpolation of `ln active` in `ln λ`; None when every
/// count is on one side.
pub(super) fn crossing(points: &[(f64, usize)], budget: &Budget) -> Option<f64> {
    let k = budget.target_records;
    if let Some(p) = points.iter().find(|p| p.1 == k) {
        return Some(p.0.ln());
    }
    points
        .windows(2)
        .find(|w| (w[0].1 > k) != (w[1].1 > k))
        .map(|w| line_root(w[0], w[1], budget.log_target()))
}

/// `ln active` of `points` (λ ascending) at `ln λ = x`, interpolated in
/// `ln λ`, held at the ends.
pub(super) fn log_count_at(points: &[(f64, usize)], x: f64) -> f64 {
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return f64::NAN,
    };
    if x <= first.0.ln() {
        return log_count(first.1);
    }
    if x >= last.0.ln() {
        return log_count(last.1);
    }
    let i = points
        .iter()
        .position(|p| p.0.ln() >= x)
        .unwrap_or(points.len() - 1);
    let (a, b) = (points[i - 1], points[i]);
    let (xa, xb) = (a.0.ln(), b.0.ln());
    let f = (x - xa) / (xb - xa);
    log_count(a.1) + f * (log_count(b.1) - log_count(a.1))
}

/// The adaptive rule ([`SlowSchedule`]): whether the counts `now` (at the
/// first drop) at the λ where `early` (the same models earlier) crossed K
/// are within a factor `factor` of K. Not settled when `early` does not
/// cross K.
pub(super) fn settled(
    early: &[(f64, usize)],
    now: &[(f64, usize)],
    budget: &Budget,
    factor: f64,
) -> bool {
    crossing(early, budget)
        .is_some_and(|x| (log_count_at(now, x) - budget.log_target()).abs() <= factor.ln())
}

/// Where the straight line through `(ln λ, ln active)` of `a` and `b` reaches
/// `ln K = target` (`a`'s λ when the counts are equal).
pub(super) fn line_root(a: (f64, usize), b: (f64, usize), target: f64) -> f64 {
    let (xa, xb) = (a.0.ln(), b.0.ln());
    let (ya, yb) = (log_count(a.1), log_count(b.1));
    if ya == yb {
        return xa;
    }
    xa + (ya - target) / (ya - yb) * (xb - xa)
}

/// Which of the models `now` (`(λ, active)` at step `t`, λ ascending) to
/// keep: the `keep` nearest in `ln λ` (ties: the larger λ) to where K is
/// expected at step `epochs`. That is where `now` crosses K, moved by the
/// drift since `before` (points at step `t0`) extrapolated linearly in
/// `ln step`. When `before` does not cross K (all its counts on one side),
/// the drift has a known direction but no size: the models from the
/// crossing on in that direction come first. With no crossing in `now`:
/// the λ of the count nearest K.
pub(super) fn survivors(
    now: &[(f64, usize)],
    t: u64,
    before: (&[(f64, usize)], u64),
    epochs: u64,
    keep: usize,
    budget: &Budget,
) -> Vec<usize> {
    let (points, t0) = before;
    let (centre, side) = match (crossing(now, budget), crossing(points, budget)) {
        (Some(x), Some(x0)) if t > t0 => {
            let rate = (x - x0) / (t as f64 / t0 as f64).ln();
            (x + rate * (epochs as f64 / t as f64).ln(), None)
        }
        (Some(x), None) => {
            // All counts above K before: they fell, K moves to smaller λ.
            let k = budget.target_records;
            let towards = points.first().map(|p| if p.1 > k { -1.0 } else { 1.0 });
            (x, towards)
        }
        (Some(x), _) => (x, None),
        (None, _) => (nearest(now, budget).map_or(0.0, |p| p.0.ln()), None),
    };
    // (off the drift's side, distance): kept in that order.
    let key = |p: &(f64, usize)| {
        let d = p.0.ln() - centre;
        (side.is_some_and(|s: f64| s * d < 0.0), d.abs())
    };
    let mut order: Vec<usize> = (0..now.len()).collect();
    order.sort_by(|&i, &j| {
        let ((oi, di), (oj, dj)) = (key(&now[i]), key(&now[j]));
        oi.cmp(&oj)
            .then(di.total_cmp(&dj))
            .then(now[j].0.total_cmp(&now[i].0))
    });
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// The order of `(λ, active)` points by nearness to K: by `|ln active -
/// ln K|`, ties to the larger λ.
pub(super) fn by_miss(budget: &Budget, a: &(f64, usize), b: &(f64, usize)) -> std::cmp::Ordering {
    let (ma, mb) = (budget.miss(a.1), budget.miss(b.1));
    ma.total_cmp(&mb).then(b.0.total_cmp(&a.0))
}

/// The point whose count is nearest K ([`by_miss`]).
pub(super) fn nearest<'a>(points: &'a [(f64, usize)], budget: &Budget) -> Option<&'a (f64, usize)> {
    points.iter().min_by(|a, b| by_miss(budget, a, b))
}

/// Where the full-length counts `full` (`(λ, active)`) are expected to cross
/// K, as `ln λ`: between the nearest counts above and below K, on the
/// quadratic through them and the next nearest count (the straight line
/// when that has no root between them); with all counts on one side,
/// [`beyond`] (`earlier`: the counts at the last drop).
pub(super) fn refine_centre(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
) -> Option<f64> {
    let k = budget.target_records;
    let target = budget.log_target();
    let by_miss = |a: &&(f64, usize), b: &&(f64, usize)| by_miss(budget, a, b);
    let above = full.iter().filter(|p| p.1 > k).min_by(by_miss);
    let below = full.iter().filter(|p| p.1 < k).min_by(by_miss);
    let (Some(&a), Some(&b)) = (above, below) else {
        return beyond(full, earlier, budget, ln_step);
    };
    let line = line_root(a, b, target);
    let third = full
        .iter()
        .filter(|p| p.0 != a.0 && p.0 != b.0)
        .min_by(by_miss);
    Some(
        third
            .and_then(|&c| quadratic_root(a, b, c, target, line))
            .unwrap_or(line),
    )
}

/// Where K is expected when every count of `full` is on one side of it:
/// from the full-length count nearest K along the slope of `ln active` in
/// `ln λ` ([`falling_slope`]) of `full` when it has two counts or more,
/// else of `earlier` (the counts at the last drop), at most `ln step`
/// beyond the λ tried; `ln step` beyond them towards K (larger λ when the
/// counts are above) when there is no falling slope.
pub(super) fn beyond(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
) -> Option<f64> {
    let anchor = *nearest(full, budget)?;
    let source = if full.len() >= 2 { full } else { earlier };
    let (lo, hi) = full
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0.ln()), hi.max(p.0.ln()))
        });
    let x = match falling_slope(source, budget) {
        Some(slope) => anchor.0.ln() + (budget.log_target() - log_count(anchor.1)) / slope,
        None if anchor.1 > budget.target_records => hi + ln_step,
        None => lo - ln_step,
    };
    Some(x.clamp(lo - ln_step, hi + ln_step))
}

/// The slope of `ln active` in `ln λ` between the first neighbours of
/// `points` (λ ascending) whose counts cross K, else between the two counts
/// nearest K; None unless it is negative (counts falling with λ).
pub(super) fn falling_slope(points: &[(f64, usize)], budget: &Budget) -> Option<f64> {
    let k = budget.target_records;
    let pair = match points.windows(2).find(|w| (w[0].1 > k) != (w[1].1 > k)) {
        Some(w) => (w[0], w[1]),
        None => {
            let mut sorted = points.to_vec();
            sorted.sort_by(|a, b| by_miss(budget, a, b));
            (*sorted.first()?, *sorted.get(1)?)
        }
    };
    let (a, b) = pair;
    let slope = (log_count(b.1) - log_count(a.1)) / (b.0.ln() - a.0.ln());
    (slope < 0.0).then_some(slope)
}

/// The root between `a` and `b` (in `ln λ`) of the quadratic through the
/// `(ln λ, ln active)` of `a`, `b` and `c` reaching `target`, the one
/// nearest `guess`; None when it has none there.
pub(super) fn quadratic_root(
    a: (f64, usize),
    b: (f64, usize),
    c: (f64, usize),
    target: f64,
    guess: f64,
) -> Option<f64> {
    let [(x0, y0), (x1, y1), (x2, y2)] = [a, b, c].map(|p| (p.0.ln(), log_count(p.1)));
    // Newton form: y = y0 + d01 (x - x0) + q (x - x0)(x - x1).
    let d01 = (y1 - y0) / (x1 - x0);
    let q = ((y2 - y1) / (x2 - x1) - d01) / (x2 - x0);
    let (qa, qb, qc) = (q, d01 - q * (x0 + x1), y0 - d01 * x0 + q * x0 * x1 - target);
    let roots = if qa.abs() < 1e-12 {
        vec![-qc / qb]
    } else {
        let disc = qb * qb - 4.0 * qa * qc;
        if disc < 0.0 {
            return None;
        }
        let r = disc.sqrt();
        vec![(-qb + r) / (2.0 * qa), (-qb - r) / (2.0 * qa)]
    };
    let (lo, hi) = (x0.min(x1), x0.max(x1));
    roots
        .into_iter()
        .filter(|r| r.is_finite() && (lo..=hi).contains(r))
        .min_by(|r, s| (r - guess).abs().total_cmp(&(s - guess).abs()))
}

/// `n` new λ for a refining batch: centred on [`refine_centre`], `ln_step /
/// (n + 1)` apart in `ln λ`, inside the budget's range and none already in
/// `full`.
pub(super) fn refine_lambdas(
    full: &[(f64, usize)],
    earlier: &[(f64, usize)],
    budget: &Budget,
    ln_step: f64,
    n: usize,
) -> Vec<f64> {
    let Some(centre) = refine_centre(full, earlier, budget, ln_step) else {
        return Vec::new();
    };
    let gap = ln_step / (n + 1) as f64;
    let (lo, hi) = budget.lambda_range;
    let mut out: Vec<f64> = (0..n)
        .map(|j| (centre + (j as f64 - (n - 1) as f64 / 2.0) * gap).exp())
        .map(|l| l.clamp(lo, hi))
        .filter(|l| full.iter().all(|p| p.0 != *l))
        .collect();
    out.dedup();
    out
}

pub(super) fn active_of(s: &SweepModel) -> usize {
    s.model.active_weights().count
}

/// `(λ, active)` of some models.
pub(super) type Points = Vec<(f64, usize)>;

pub(super) fn points(models: &[SweepModel]) -> Points {
    models.iter().map(|s| (s.lambda_l0, active_of(s))).collect()
}
