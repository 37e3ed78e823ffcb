//! abess's splicing (Zhu, Wen, Zhang, Wang and Wang 2020, "A polynomial
//! algorithm for best-subset selection problem", PNAS 117:33117) on
//! least-squares fits: exchanges at a fixed support size ([`splice`]),
//! neighbouring sizes from a support ([`resize`]) and abess's warm-started
//! path over every support size ([`size_path`]).
//!
//! The sacrifices are abess's, for least squares with the columns centred
//! (with an intercept): a support feature's backward sacrifice
//! `b_j^2 |x_j|^2 / 2` is what dropping it alone costs in residual sum of
//! squares (half of it); another feature's forward sacrifice
//! `(x_j' r)^2 / |x_j|^2 / 2` is what adding it alone gains. abess states
//! them on `X_j' X_j / n` and `X_j' r / n` and the loss `RSS / 2n`; the
//! factor `n` is the same for every feature and changes no choice.

use super::least_squares::{dot, Design, Fit};
use super::Criterion;

/// Most features exchanged at once by a splice (abess's `exchange_num`).
pub const SPLICE_EXCHANGE: usize = 5;

/// Most rounds of a splice (abess's `max_splicing_iter`).
pub const SPLICE_ROUNDS: usize = 20;

/// The features of most forward sacrifice that a splice's best swap
/// weighs against every support feature (abess's `important_search`, the
/// features its splicing considers: 128). A true feature whose correlated
/// neighbour holds its place gains little added to that support, so its
/// forward sacrifice can rank well below the top few.
pub const SWAP_CANDIDATES: usize = 128;

/// A least-squares fit with `X_j' r` for every column `j` (centred with an
/// intercept): what its forward sacrifices need.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// The fit.
    pub fit: Fit,
    /// `X_j' r`, one per feature ([`Design::dots`] of the residuals).
    pub dots: Vec<f64>,
}

impl State {
    /// `fit` with its [`Design::dots`].
    pub fn new(design: &Design, fit: Fit) -> Self {
        let dots = design.dots(&fit.residual);
        State { fit, dots }
    }

    /// The least-squares fit on `support` (ascending) with its dots; None
    /// when its columns are linearly dependent or outnumber the rows.
    pub fn solve(design: &mut Design, support: Vec<usize>) -> Option<Self> {
        let fit = design.solve(support).ok()?;
        Some(State::new(design, fit))
    }

    /// Each support feature's backward sacrifice, with the feature.
    fn backward_sacrifices<'s>(
        &'s self,
        norms: &'s [f64],
    ) -> impl Iterator<Item = (f64, usize)> + 's {
        let pairs = self.fit.support.iter().zip(&self.fit.beta);
        pairs.map(|(&j, &beta)| (beta * beta * norms[j] / 2.0, j))
    }

    /// Support features, least backward sacrifice first (ties by index).
    fn backward(&self, norms: &[f64]) -> Vec<usize> {
        let mut b: Vec<(f64, usize)> = self.backward_sacrifices(norms).collect();
        b.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        b.into_iter().map(|(_, j)| j).collect()
    }

    /// Forward sacrifice of feature `j` (outside the support).
    fn forward_sacrifice(&self, j: usize, norms: &[f64]) -> f64 {
        self.dots[j] * self.dots[j] / norms[j] / 2.0
    }

    /// Whether each feature is in the support.
    fn inside(&self, p: usize) -> Vec<bool> {
        let mut inside = vec![false; p];
        self.fit.support.iter().for_each(|&j| inside[j] = true);
        inside
    }

    /// The `count` features outside the support of most forward sacrifice,
    /// most first (ties by index); columns of zero norm are never taken.
    fn forward(&self, norms: &[f64], count: usize) -> Vec<usize> {
        let inside = self.inside(norms.len());
        let f = (0..norms.len())
            .filter(|&j| !inside[j] && norms[j] > 0.0)
            .map(|j| (self.forward_sacrifice(j, norms), j))
            .collect();
        largest(f, count)
    }

    /// abess's start at support size `s` from this fit (its warm start):
    /// the `s` features of largest sacrifice, backward for those in the
    /// support and forward for the others, ascending. From a least-squares
    /// fit of size `s - 1` that is mostly its support and the feature of
    /// most forward sacrifice.
    fn grow(&self, norms: &[f64], s: usize) -> Vec<usize> {
        let inside = self.inside(norms.len());
        let mut all: Vec<(f64, usize)> = self.backward_sacrifices(norms).collect();
        all.extend(
            (0..norms.len())
                .filter(|&j| !inside[j] && norms[j] > 0.0)
                .map(|j| (self.forward_sacrifice(j, norms), j)),
        );
        let mut top = largest(all, s);
        top.sort_unstable();
        top
    }
}

/// The features of the `count` largest values (ties to the smaller
/// index), largest first.
fn largest(mut v: Vec<(f64, usize)>, count: usize) -> Vec<usize> {
    let count = count.min(v.len());
    let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if count < v.len() {
        v.select_nth_unstable_by(count, order);
        v.truncate(count);
    }
    v.sort_by(order);
    v.into_iter().map(|(_, j)| j).collect()
}

/// abess's splicing at the size of `start`'s support, with one more move:
/// each round tries abess's exchanges ([`exchange`]) and, where none
/// helps, the best single swap ([`best_swap`]); a move is kept when it
/// lowers the residual sum of squares by more than abess's tolerance,
/// `0.02 s ln(p) ln(ln n)` (its `0.01 s ln(p) ln(ln n) / n` on the loss
/// `RSS / 2n`), else the splice ends (at most [`SPLICE_ROUNDS`] rounds).
pub(crate) fn splice(design: &mut Design, start: State) -> State {
    let (n, p) = (design.rows(), design.cols());
    let s = start.fit.support.len();
    let tol = 0.02 * s as f64 * (p.max(2) as f64).ln() * (n.max(3) as f64).ln().ln();
    let mut cur = start;
    for _ in 0..SPLICE_ROUNDS {
        if s == 0 || s >= p {
            break;
        }
        let front = cur.forward(design.norms(), SPLICE_EXCHANGE.min(s));
        let next = exchange(design, &cur, &front, tol).or_else(|| {
            let wide = cur.forward(design.norms(), SWAP_CANDIDATES);
            best_swap(design, &cur, &wide, tol)
        });
        match next {
            Some(fit) => cur = State::new(design, fit),
            None => break,
        }
    }
    cur
}

/// abess's exchanges from `cur`: for `c = 1..=front.len()`, the `c`
/// support features of least backward sacrifice trade places with the
/// first `c` of `front` (the features of most forward sacrifice, most
/// first); Some(the best fit) when it lowers `cur`'s residual sum of
/// squares by more than `tol`. Linearly dependent candidates are skipped.
fn exchange(design: &mut Design, cur: &State, front: &[usize], tol: f64) -> Option<Fit> {
    let back = cur.backward(design.norms());
    let mut best: Option<Fit> = None;
    for c in 1..=front.len().min(back.len()) {
        let mut cand: Vec<usize> = back[c..].to_vec();
        cand.extend_from_slice(&front[..c]);
        cand.sort_unstable();
        if let Ok(f) = design.solve(cand) {
            if f.rss < best.as_ref().map_or(cur.fit.rss, |b| b.rss) {
                best = Some(f);
            }
        }
    }
    best.filter(|b| cur.fit.rss - b.rss > tol)
}

/// The best single swap of a support feature for one of `front` (the
/// features of most forward sacrifice): every pair is scored by the exact
/// residual sum of squares of its least-squares fit; Some(fit) when the
/// best lowers `cur`'s by more than `tol`. abess's exchanges drop the
/// features of least backward sacrifice; with strongly correlated features
/// the one to drop may look important, a near copy of the one that should
/// come in, and only a swap finds it.
///
/// With `H` the inverse Gram matrix of the support `S`, `b` the
/// coefficients, `r` the residuals, `g = X_S' x_j`, `u = H g` and
/// `d = x_j' r`: dropping `k` raises the RSS by `b_k^2 / H_kk` and leaves
/// `x_j' r = d + b_k u_k / H_kk` and the part of `x_j` outside the other
/// columns with squared norm `x_j' x_j - g' u + u_k^2 / H_kk`; adding `j`
/// then lowers it by the first squared over the second. So the `s |front|`
/// candidates cost one inverse (`O(s^3)`), `O(s^2)` for each `j` (with its
/// Gram entries against the support, kept for later) and `O(1)` a pair.
fn best_swap(design: &mut Design, cur: &State, front: &[usize], tol: f64) -> Option<Fit> {
    let best = swaps(design, cur, front)
        .into_iter()
        .filter(|w| w.0 < cur.fit.rss - tol)
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    let (_, k, j) = best;
    let mut cand = cur.fit.support.clone();
    cand[k] = j;
    cand.sort_unstable();
    let fit = design.solve(cand).ok()?;
    (cur.fit.rss - fit.rss > tol).then_some(fit)
}

/// Every swap [`best_swap`] weighs: `(rss, k, j)`, the residual sum of
/// squares with support feature number `k` replaced by `j` of `front`
/// (none where `j` lies in the span of the others, or the support's
/// columns are linearly dependent).
fn swaps(design: &mut Design, cur: &State, front: &[usize]) -> Vec<(f64, usize, usize)> {
    let support = &cur.fit.support;
    let s = support.len();
    let Some(h) = design.inverse_gram(support) else {
        return Vec::new();
    };
    let beta = &cur.fit.beta;
    let mut out = Vec::with_capacity(s * front.len());
    for &j in front {
        let (g, gjj) = design.cross_gram(j, support);
        let u: Vec<f64> = (0..s).map(|a| dot(&h[a * s..(a + 1) * s], &g)).collect();
        let outside = gjj - dot(&g, &u);
        for k in 0..s {
            let hkk = h[k * s + k];
            let norm = outside + u[k] * u[k] / hkk;
            if norm > 1e-12 * gjj {
                let along = cur.dots[j] + beta[k] * u[k] / hkk;
                let rss = cur.fit.rss + beta[k] * beta[k] / hkk - along * along / norm;
                out.push((rss, k, j));
            }
        }
    }
    out
}

/// The information criterion `ic` of `fit` on `design`.
pub(crate) fn criterion_of(design: &Design, fit: &Fit, ic: Criterion) -> f64 {
    ic(fit.rss, design.rows(), fit.support.len(), design.cols())
}

/// From `start` (spliced at its size), neighbouring sizes while the
/// information criterion `ic` drops: one feature fewer (dropping the least
/// backward sacrifice) as long as that lowers it, else one more (adding the
/// most forward sacrifice) as long as that does; each candidate
/// [`splice`]d before it is compared, growing no further than
/// [`criterion_max_size`]. So the chosen size need not be one the path's
/// gates reached exactly.
pub(crate) fn resize(design: &mut Design, start: State, ic: Criterion) -> State {
    let cap = criterion_max_size(design.rows(), design.cols());
    let mut cur = start;
    let mut moved = false;
    for grow in [false, true] {
        if grow && moved {
            break;
        }
        loop {
            let cand = if grow {
                if cur.fit.support.len() >= cap {
                    break;
                }
                let Some(&j) = cur.forward(design.norms(), 1).first() else {
                    break;
                };
                let mut c = cur.fit.support.clone();
                c.push(j);
                c.sort_unstable();
                c
            } else {
                let Some(&j) = cur.backward(design.norms()).first() else {
                    break;
                };
                cur.fit
                    .support
                    .iter()
                    .copied()
                    .filter(|&k| k != j)
                    .collect()
            };
            let Some(next) = State::solve(design, cand) else {
                break;
            };
            let next = splice(design, next);
            if criterion_of(design, &next.fit, ic) >= criterion_of(design, &cur.fit, ic) {
                break;
            }
            cur = next;
            moved = true;
        }
    }
    cur
}

/// The largest support size abess 0.4.11 tries by default for `n` rows
/// and `p` features: its sizes are `0..max(min(p, floor(n / (ln(ln n)
/// ln p))), 1)`, upper end excluded (38 for n = 500, p = 1000).
pub fn abess_max_size(n: usize, p: usize) -> usize {
    let (nf, pf) = (n.max(3) as f64, p.max(2) as f64);
    let end = ((nf / (nf.ln().ln() * pf.ln())) as usize).min(p).max(1);
    end - 1
}

/// The largest support an information criterion scores (a path's choice,
/// [`resize`]): the end of abess's range of sizes,
/// `max(min(p, floor(n / (ln(ln n) ln p))), 1)`, i.e. [`abess_max_size`]
/// plus one (`p` itself when `p` is small). As a support nears `n`
/// features its residual sum of squares tends to zero and `n ln(RSS / n)`
/// to minus infinity, so an unbounded criterion would prefer the
/// near-saturated supports of the gates early in training (`p >= n`).
pub fn criterion_max_size(n: usize, p: usize) -> usize {
    abess_max_size(n, p) + 1
}

/// abess's warm-started path over support sizes: from the empty support,
/// each size `s = 1, 2, ...` starts from the previous size's fit
/// ([`State::grow`]: its support and, mostly, the feature of most forward
/// sacrifice) and is [`splice`]d; where `warm` holds a fit of the same size
/// with a lower residual sum of squares (the gates' spliced supports), the
/// path continues from that one instead. The path runs while
/// `s <= reach` or `s <= 2 s*` (`s*` the best size so far), up to
/// [`abess_max_size`] and the rows' limit, and returns the fit of lowest
/// criterion `ic` over its sizes (ties to the smaller size).
pub(crate) fn size_path(
    design: &mut Design,
    warm: &[State],
    reach: usize,
    ic: Criterion,
) -> Option<State> {
    let (n, p) = (design.rows(), design.cols());
    let cap = abess_max_size(n, p)
        .max(1)
        .min(n.saturating_sub(1 + design.centred() as usize));
    let mut prev = State::solve(design, Vec::new())?;
    let mut best = prev.clone();
    let mut best_ic = criterion_of(design, &best.fit, ic);
    let mut s = 1;
    while s <= cap && (s <= reach || s <= 2 * best.fit.support.len()) {
        let start = prev.grow(design.norms(), s);
        if start.len() < s {
            break;
        }
        let Some(cur) = State::solve(design, start) else {
            break;
        };
        let mut cur = splice(design, cur);
        if let Some(w) = warm
            .iter()
            .filter(|w| w.fit.support.len() == s && w.fit.rss < cur.fit.rss)
            .min_by(|a, b| a.fit.rss.total_cmp(&b.fit.rss))
        {
            cur = w.clone();
        }
        let value = criterion_of(design, &cur.fit, ic);
        if value < best_ic {
            (best, best_ic) = (cur.clone(), value);
        }
        prev = cur;
        s += 1;
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{correlated, data};
    use crate::selection::{ebic, gic};
    use crate::SparseMatrix;

    fn state(d: &mut Design, support: &[usize]) -> State {
        State::solve(d, support.to_vec()).unwrap()
    }

    #[test]
    fn splice_exchanges_a_wrong_feature_for_the_missing_one() {
        let (x, y) = data();
        let mut d = Design::new(&x, &y, true);
        let start = state(&mut d, &[1, 3, 6]);
        let rss0 = start.fit.rss;
        // x6 has the least backward sacrifice, x5 the most forward.
        assert_eq!(start.backward(d.norms())[0], 6);
        assert_eq!(start.forward(d.norms(), 2)[0], 5);
        let s = splice(&mut d, start);
        assert_eq!(s.fit.support, vec![1, 3, 5]);
        assert!(s.fit.rss < rss0);
        // The true support is left alone.
        let truth = state(&mut d, &[1, 3, 5]);
        let t = splice(&mut d, truth);
        assert_eq!(t.fit.support, vec![1, 3, 5]);
    }

    /// The closed-form swap scores are the refits' residual sums of squares.
    #[test]
    fn swap_scores_are_the_refits_residual_sums_of_squares() {
        for (x, y) in [data(), correlated()] {
            let mut d = Design::new(&x, &y, true);
            let cur = state(&mut d, &[1, 2, 5, 6]);
            let front = cur.forward(d.norms(), 4);
            let scores = swaps(&mut d, &cur, &front);
            assert_eq!(scores.len(), 16);
            for (rss, k, j) in scores {
                let mut cand = cur.fit.support.clone();
                cand[k] = j;
                cand.sort_unstable();
                let want = d.solve(cand).unwrap().rss;
                assert!((rss - want).abs() < 1e-9 * want, "{k} {j}: {rss} vs {want}");
            }
        }
    }

    /// x5 is a near copy of the true x0 (correlation 0.98): started from
    /// {1, 2, 5}, abess's exchanges would drop x1 or x2 (least backward
    /// sacrifice) for x0 and none lowers the error; the swap of x5 for x0
    /// does, and the splice ends at the truth.
    #[test]
    fn a_swap_recovers_the_feature_a_correlated_copy_displaced() {
        let (x, y) = correlated();
        let mut d = Design::new(&x, &y, true);
        let start = state(&mut d, &[1, 2, 5]);
        let back = start.backward(d.norms());
        assert_eq!(back[2], 5);
        let front = start.forward(d.norms(), 3);
        assert_eq!(front[0], 0);
        let tol = 0.02 * 3.0 * 8f64.ln() * 80f64.ln().ln();
        assert!(exchange(&mut d, &start, &front, tol).is_none());
        let swap = best_swap(&mut d, &start, &front, tol).unwrap();
        assert_eq!(swap.support, vec![0, 1, 2]);
        assert!(
            swap.rss < start.fit.rss / 20.0,
            "{} {}",
            swap.rss,
            start.fit.rss
        );
        assert_eq!(splice(&mut d, start).fit.support, vec![0, 1, 2]);
    }

    #[test]
    fn resize_drops_extra_and_adds_missing_features_by_the_criterion() {
        let (x, y) = data();
        let mut d = Design::new(&x, &y, true);
        for start in [&[1, 3, 5, 6, 7][..], &[3][..], &[1, 3, 5]] {
            let s = state(&mut d, start);
            let r = resize(&mut d, s, ebic);
            assert_eq!(r.fit.support, vec![1, 3, 5], "from {start:?}");
        }
        // Every neighbouring size has a higher EBIC than the result.
        let at = |d: &mut Design, s: &[usize]| {
            let f = state(d, s).fit;
            criterion_of(d, &f, ebic)
        };
        let best = at(&mut d, &[1, 3, 5]);
        assert!(at(&mut d, &[1, 3]) > best);
        assert!(at(&mut d, &[1, 3, 5, 7]) > best);
    }

    /// A criterion that every further feature lowers (as EBIC near `n`
    /// features, where the fit becomes exact and `n ln(RSS / n)` falls
    /// without bound).
    fn more_is_better(_rss: f64, _n: usize, s: usize, _p: usize) -> f64 {
        -(s as f64)
    }

    /// resize grows a support no further than criterion_max_size: on 12
    /// rows of 40 features (3 there), from 2 features to 3 and no more;
    /// from 5 (more than 3: a gated start) not at all. Uncapped, it would
    /// grow until the fit is exact (11 features and the intercept).
    #[test]
    fn resize_grows_no_further_than_the_criterion_size() {
        let (n, p) = (12, 40);
        let mut next = crate::selection::tests::stream(7);
        let x: Vec<f64> = (0..n * p).map(|_| next()).collect();
        let y: Vec<f64> = (0..n).map(|_| next()).collect();
        let x = SparseMatrix::from_dense(n, p, &x).unwrap();
        let mut d = Design::new(&x, &y, true);
        assert_eq!(criterion_max_size(n, p), 3);
        for (start, size) in [(2, 3), (5, 5)] {
            let s0 = state(&mut d, &(0..start).collect::<Vec<_>>());
            let r = resize(&mut d, s0, more_is_better);
            assert_eq!(r.fit.support.len(), size, "from {start}");
        }
        let exact = state(&mut d, &(0..11).collect::<Vec<_>>());
        assert!(exact.fit.rss < 1e-20, "{}", exact.fit.rss);
        assert!(State::solve(&mut d, (0..12).collect()).is_none());
        assert_eq!(criterion_max_size(500, 1000), 39);
        assert_eq!(criterion_max_size(400, 4), 4);
    }

    #[test]
    fn abess_max_size_is_abess_default_range() {
        // abess 0.4.11: range(0, max(min(p, int(n / (log(log n) log p))), 1)).
        assert_eq!(abess_max_size(500, 1000), 38);
        assert_eq!(abess_max_size(400, 1000), 31);
        assert_eq!(abess_max_size(160, 500), 14);
        assert_eq!(abess_max_size(800, 5000), 48);
        assert_eq!(abess_max_size(60, 8), 7);
        assert_eq!(abess_max_size(3, 2), 1);
    }

    /// From the empty support, size by size: the start at each size is the
    /// previous fit's support plus its feature of most forward sacrifice
    /// here, and the lowest criterion is the truth's.
    #[test]
    fn size_path_walks_up_from_the_empty_support_to_the_truth() {
        let (x, y) = data();
        let mut d = Design::new(&x, &y, true);
        let one = state(&mut d, &[3]);
        assert_eq!(one.grow(d.norms(), 2), vec![1, 3]);
        assert_eq!(state(&mut d, &[1, 3]).grow(d.norms(), 3), vec![1, 3, 5]);
        let best = size_path(&mut d, &[], 1, ebic).unwrap();
        assert_eq!(best.fit, d.solve(vec![1, 3, 5]).unwrap());
        // GIC's lighter penalty (ln 8 ln(ln 60) = 2.93 a feature here,
        // EBIC's 8.25) takes x7 as well: its drop in n ln(RSS / n) is 4.40.
        let best = size_path(&mut d, &[], 1, gic).unwrap();
        assert_eq!(best.fit.support, vec![1, 3, 5, 7]);
        let truth = d.solve(vec![1, 3, 5]).unwrap();
        let gain = 60.0 * (truth.rss / best.fit.rss).ln();
        assert!((gain - 4.40).abs() < 0.005, "{gain}");
        assert!(gain > 8f64.ln() * 60f64.ln().ln());
        // On the correlated design, from nothing, and warm-started by a
        // wrong support of the true size (of higher error: not taken).
        let (x, y) = correlated();
        let mut d = Design::new(&x, &y, true);
        let wrong = state(&mut d, &[1, 2, 5]);
        for warm in [vec![], vec![wrong.clone()]] {
            let best = size_path(&mut d, &warm, 4, ebic).unwrap();
            assert_eq!(best.fit.support, vec![0, 1, 2]);
        }
        // A warm start of lower error at its size replaces the path's fit
        // there (here one made up to be exact).
        let mut exact = wrong;
        exact.fit.rss = 1e-6;
        let best = size_path(&mut d, &[exact.clone()], 4, ebic).unwrap();
        assert_eq!(best.fit, exact.fit);
        // With no column to add, the path stays at the empty support.
        let empty = SparseMatrix::from_dense(80, 8, &[0.0; 640]).unwrap();
        let mut z = Design::new(&empty, &y, true);
        let none = size_path(&mut z, &[], 3, ebic).unwrap();
        assert!(none.fit.support.is_empty());
    }
}
