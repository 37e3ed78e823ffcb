//! Model selection for the sparse regression: ordinary least squares on a
//! support, abess's splicing and information criterion, and a lambda path
//! ([`fit_path`]) that picks its support by one of them.
//!
//! A path fits one fresh [`Regression`] per lambda on a training split, all
//! together ([`Regression::fit_together`]: one pass over `X` per epoch serves
//! every lambda). Each distinct support (gates above a threshold) is
//! refitted once by ordinary least squares ([`refit_least_squares`],
//! Cholesky on the centred normal equations in f64) and scored: its
//! validation error and, on the training split, abess's information
//! criteria ([`ebic`], [`gic`]). [`Selection`] picks the lambda, by default
//! the lowest EBIC, as abess picks its support size. By default training
//! stops once that choice has settled ([`EarlyStop`]), and the chosen
//! support is then improved by splicing ([`PathParams::splice`]): features
//! are exchanged between it and the rest while the training residual sum
//! of squares drops by more than abess's tolerance, then (for a criterion)
//! one feature fewer or more at a time while the criterion drops. The
//! Hard Concrete path finds the candidates and their size; the splice
//! fixes the few features the gates got wrong.

use crate::error::{check_finite_scalar, L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::model;
use crate::regression::{check_y, Regression, RegressionFitParams, RegressionParams};
use std::collections::HashMap;

/// An ordinary least-squares fit restricted to a support.
#[derive(Clone, Debug, PartialEq)]
pub struct LeastSquares {
    /// The columns used, ascending.
    pub support: Vec<usize>,
    /// One coefficient per feature, exactly zero off the support.
    pub coefficients: Vec<f64>,
    /// The intercept (0 without one).
    pub intercept: f64,
}

impl LeastSquares {
    /// `X coefficients + intercept`.
    pub fn predict(&self, x: &SparseMatrix) -> Result<Vec<f64>> {
        let mut out = x.mul_vec(&self.coefficients)?;
        out.iter_mut().for_each(|v| *v += self.intercept);
        Ok(out)
    }
}

/// A least-squares fit with its training residuals `y - X b - c` and their
/// sum of squares.
#[derive(Clone, Debug)]
struct Solved {
    ls: LeastSquares,
    residual: Vec<f64>,
    rss: f64,
}

/// Ordinary least squares of `y` on the columns `support` of `x` (plus an
/// intercept when `fit_intercept`), by Cholesky factorisation of the
/// (centred) normal equations in f64. Removes the shrinkage of the gated
/// fit: the refitted coefficients are unbiased on a correct support.
pub fn refit_least_squares(
    x: &SparseMatrix,
    y: &[f64],
    support: &[usize],
    fit_intercept: bool,
) -> Result<LeastSquares> {
    check_y("y", "X", x, y)?;
    let support = checked_support(x, support)?;
    Ok(solve(x, y, support, fit_intercept)?.ls)
}

/// `support` sorted and deduplicated; an error names a column out of range.
fn checked_support(x: &SparseMatrix, support: &[usize]) -> Result<Vec<usize>> {
    let mut support = support.to_vec();
    support.sort_unstable();
    support.dedup();
    if let Some((position, &j)) = support.iter().enumerate().find(|(_, &j)| j >= x.cols()) {
        return Err(L0Error::IndexOutOfRange {
            what: "support".into(),
            index: j as u64,
            position,
            bound: x.cols() as u64,
        });
    }
    Ok(support)
}

/// The least-squares fit on `support` (ascending, in range; `y` checked).
fn solve(x: &SparseMatrix, y: &[f64], support: Vec<usize>, fit_intercept: bool) -> Result<Solved> {
    let (n, p) = (x.rows(), x.cols());
    let s = support.len();
    let unknowns = s + fit_intercept as usize;
    if unknowns > n {
        return Err(L0Error::config(format!(
            "least-squares refit: {unknowns} unknowns but only {n} rows"
        )));
    }
    // Dense copies of the selected columns (column-major), centred with an intercept.
    let csc = x.csc();
    let ptr = csc.indptr();
    let ptr = ptr.raw_storage();
    let (idx, val) = (csc.indices(), csc.data());
    let mut cols = vec![0.0f64; s * n];
    for (k, &j) in support.iter().enumerate() {
        let c = &mut cols[k * n..(k + 1) * n];
        for t in ptr[j]..ptr[j + 1] {
            c[idx[t] as usize] = val[t] as f64;
        }
    }
    let y_mean = if fit_intercept {
        y.iter().sum::<f64>() / n as f64
    } else {
        0.0
    };
    let mut means = vec![0.0f64; s];
    if fit_intercept {
        for (k, c) in cols.chunks_mut(n).enumerate() {
            means[k] = c.iter().sum::<f64>() / n as f64;
            c.iter_mut().for_each(|v| *v -= means[k]);
        }
    }
    let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
    let mut gram = vec![0.0f64; s * s];
    let mut rhs = vec![0.0f64; s];
    for a in 0..s {
        let ca = &cols[a * n..(a + 1) * n];
        rhs[a] = dot(ca, &yc);
        for b in 0..=a {
            gram[a * s + b] = dot(ca, &cols[b * n..(b + 1) * n]);
        }
    }
    let beta = cholesky_solve(&mut gram, &mut rhs, s)?;
    let mut residual = yc;
    for (c, b) in cols.chunks(n.max(1)).zip(&beta) {
        residual.iter_mut().zip(c).for_each(|(r, u)| *r -= b * u);
    }
    let rss = residual.iter().map(|r| r * r).sum();
    let mut coefficients = vec![0.0; p];
    for (k, &j) in support.iter().enumerate() {
        coefficients[j] = beta[k];
    }
    let intercept = if fit_intercept {
        y_mean - means.iter().zip(&beta).map(|(m, b)| m * b).sum::<f64>()
    } else {
        0.0
    };
    Ok(Solved {
        ls: LeastSquares {
            support,
            coefficients,
            intercept,
        },
        residual,
        rss,
    })
}

/// `sum_q a_q b_q` in eight interleaved partial sums (so that it
/// vectorises), added pairwise at the end.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(u, v)| u * v)
        .sum();
    for (u, v) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += u[k] * v[k];
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// Solves `G x = r` for symmetric positive definite `G` (lower triangle of a
/// row-major `s x s` array), overwriting `G` with its Cholesky factor.
fn cholesky_solve(g: &mut [f64], r: &mut [f64], s: usize) -> Result<Vec<f64>> {
    let max_diag = (0..s).map(|i| g[i * s + i]).fold(0.0f64, f64::max);
    for i in 0..s {
        for j in 0..=i {
            let mut v = g[i * s + j];
            for k in 0..j {
                v -= g[i * s + k] * g[j * s + k];
            }
            if i == j {
                if v.is_nan() || v <= 1e-12 * max_diag {
                    return Err(L0Error::config(
                        "least-squares refit: the selected columns are linearly dependent",
                    ));
                }
                g[i * s + i] = v.sqrt();
            } else {
                g[i * s + j] = v / g[j * s + j];
            }
        }
    }
    for i in 0..s {
        let mut v = r[i];
        for k in 0..i {
            v -= g[i * s + k] * r[k];
        }
        r[i] = v / g[i * s + i];
    }
    for i in (0..s).rev() {
        let mut v = r[i];
        for k in i + 1..s {
            v -= g[k * s + i] * r[k];
        }
        r[i] = v / g[i * s + i];
    }
    Ok(r.to_vec())
}

/// `X_j' r` for every column `j` of `x`, with the columns centred when
/// `centred` (`X_j' r - mean_j sum(r)`).
fn column_dots(x: &SparseMatrix, r: &[f64], centred: bool) -> Vec<f64> {
    let csc = x.csc();
    let ptr = csc.indptr();
    let ptr = ptr.raw_storage();
    let (idx, val) = (csc.indices(), csc.data());
    let r_sum: f64 = if centred { r.iter().sum() } else { 0.0 };
    let n = x.rows() as f64;
    (0..x.cols())
        .map(|j| {
            let (dot, sum) = (ptr[j]..ptr[j + 1]).fold((0.0f64, 0.0f64), |(d, s), t| {
                let v = val[t] as f64;
                (d + v * r[idx[t] as usize], s + v)
            });
            dot - sum / n * r_sum
        })
        .collect()
}

/// Squared norms of the columns of `x`, centred when `centred`.
fn column_norms(x: &SparseMatrix, centred: bool) -> Vec<f64> {
    let csc = x.csc();
    let ptr = csc.indptr();
    let ptr = ptr.raw_storage();
    let val = csc.data();
    let n = x.rows() as f64;
    (0..x.cols())
        .map(|j| {
            let (sq, sum) = (ptr[j]..ptr[j + 1]).fold((0.0f64, 0.0f64), |(q, s), t| {
                let v = val[t] as f64;
                (q + v * v, s + v)
            });
            if centred {
                sq - sum * sum / n
            } else {
                sq
            }
        })
        .collect()
}

/// Most features exchanged at once by [`splice`] (abess's `exchange_num`).
pub const SPLICE_EXCHANGE: usize = 5;

/// Most rounds of [`splice`] (abess's `max_splicing_iter`).
pub const SPLICE_ROUNDS: usize = 20;

/// The support features of `fit`, least backward sacrifice first
/// (`b_j^2 |x_j|^2 / 2`: what dropping one alone costs).
fn backward(fit: &Solved, norms: &[f64]) -> Vec<usize> {
    let mut b: Vec<(f64, usize)> = fit
        .ls
        .support
        .iter()
        .map(|&j| (fit.ls.coefficients[j].powi(2) * norms[j] / 2.0, j))
        .collect();
    b.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    b.into_iter().map(|(_, j)| j).collect()
}

/// The `count` features outside `fit`'s support of most forward sacrifice
/// (`(x_j' r)^2 / |x_j|^2 / 2`: what adding one alone gains), most first;
/// columns of zero norm are never taken.
fn forward(
    x: &SparseMatrix,
    fit: &Solved,
    norms: &[f64],
    centred: bool,
    count: usize,
) -> Vec<usize> {
    let dots = column_dots(x, &fit.residual, centred);
    let mut inside = vec![false; x.cols()];
    fit.ls.support.iter().for_each(|&j| inside[j] = true);
    let mut f: Vec<(f64, usize)> = (0..x.cols())
        .filter(|&j| !inside[j] && norms[j] > 0.0)
        .map(|j| (dots[j] * dots[j] / norms[j] / 2.0, j))
        .collect();
    let count = count.min(f.len());
    let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if count < f.len() {
        f.select_nth_unstable_by(count, order);
        f.truncate(count);
    }
    f.sort_by(order);
    f.into_iter().map(|(_, j)| j).collect()
}

/// abess's splicing (Zhu et al. 2020, PNAS 117:33117) at the size of
/// `start`'s support: each round, for `c = 1..=`[`SPLICE_EXCHANGE`], the `c`
/// support features of least backward sacrifice trade places with the `c`
/// others of most forward sacrifice ([`backward`], [`forward`]); the best
/// exchange is kept when it lowers the residual sum of squares by more
/// than abess's tolerance, `0.02 s ln(p) ln(ln n)` (its
/// `0.01 s ln(p) ln(ln n) / n` on the loss `RSS / 2n`), else the splice
/// ends (at most [`SPLICE_ROUNDS`] rounds). Columns centred with an
/// intercept; `norms` are [`column_norms`].
fn splice(x: &SparseMatrix, y: &[f64], start: Solved, norms: &[f64], centred: bool) -> Solved {
    let (n, p) = (x.rows(), x.cols());
    let s = start.ls.support.len();
    let tol = 0.02 * s as f64 * (p.max(2) as f64).ln() * (n.max(3) as f64).ln().ln();
    let mut cur = start;
    for _ in 0..SPLICE_ROUNDS {
        if s == 0 || s >= p {
            break;
        }
        let back = backward(&cur, norms);
        let front = forward(x, &cur, norms, centred, SPLICE_EXCHANGE.min(s));
        let mut best: Option<Solved> = None;
        for c in 1..=front.len() {
            let mut cand: Vec<usize> = back[c..].to_vec();
            cand.extend_from_slice(&front[..c]);
            cand.sort_unstable();
            // Linearly dependent candidates are skipped.
            if let Ok(f) = solve(x, y, cand, centred) {
                if f.rss < best.as_ref().map_or(cur.rss, |b| b.rss) {
                    best = Some(f);
                }
            }
        }
        match best {
            Some(b) if cur.rss - b.rss > tol => cur = b,
            _ => break,
        }
    }
    cur
}

/// From `start` (spliced at its size), neighbouring sizes while the
/// information criterion `ic` ([`gic`] or [`ebic`]) drops: one feature
/// fewer (dropping the least backward sacrifice) as long as that lowers
/// it, else one more (adding the most forward sacrifice) as long as that
/// does; each candidate [`splice`]d before it is compared. So the chosen
/// size need not be one the path's gates reached exactly.
fn resize(
    x: &SparseMatrix,
    y: &[f64],
    start: Solved,
    norms: &[f64],
    centred: bool,
    ic: Criterion,
) -> Solved {
    let (n, p) = (x.rows(), x.cols());
    let criterion = |f: &Solved| ic(f.rss, n, f.ls.support.len(), p);
    let mut cur = start;
    let mut moved = false;
    for grow in [false, true] {
        if grow && moved {
            break;
        }
        loop {
            let cand = if grow {
                let Some(&j) = forward(x, &cur, norms, centred, 1).first() else {
                    break;
                };
                let mut c = cur.ls.support.clone();
                c.push(j);
                c.sort_unstable();
                c
            } else {
                let Some(&j) = backward(&cur, norms).first() else {
                    break;
                };
                cur.ls.support.iter().copied().filter(|&k| k != j).collect()
            };
            let Ok(next) = solve(x, y, cand, centred) else {
                break;
            };
            let next = splice(x, y, next, norms, centred);
            if criterion(&next) >= criterion(&cur) {
                break;
            }
            cur = next;
            moved = true;
        }
    }
    cur
}

/// Features in one of `a`, `b` (ascending) but not the other.
fn changed(a: &[usize], b: &[usize]) -> usize {
    let common = a.iter().filter(|j| b.binary_search(j).is_ok()).count();
    a.len() + b.len() - 2 * common
}

/// How [`fit_path`] picks its lambda.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// The lowest validation mean squared error.
    MinError,
    /// The sparsest support whose validation error is within one standard
    /// error of the lowest (the "one-standard-error rule"; the standard error
    /// is that of the mean of the squared validation errors at the minimum).
    OneStandardError,
    /// The lowest generalised information criterion of the least-squares
    /// fits on the training split (abess's GIC,
    /// `n ln(RSS / n) + s ln(p) ln(ln n)`: `n` training rows, `s` features
    /// in the support, `p` features; [`PathPoint::gic`]); the validation
    /// error decides where no support could be refitted.
    Gic,
    /// The same with abess's default criterion, the extended BIC
    /// (`n ln(RSS / n) + s (ln n + 2 ln p)`, [`ebic`]): the default. On
    /// best-subset benchmarks of several sizes it found the true support
    /// more often than the others (docs/regression.md).
    #[default]
    Ebic,
}

/// An information criterion of a least-squares fit: `(rss, n, s, p)`.
type Criterion = fn(f64, usize, usize, usize) -> f64;

impl Selection {
    /// This selection's information criterion (None: by validation error).
    fn criterion(self) -> Option<Criterion> {
        match self {
            Selection::Gic => Some(gic),
            Selection::Ebic => Some(ebic),
            _ => None,
        }
    }
}

/// abess's generalised information criterion of a least-squares fit with
/// residual sum of squares `rss` over `n` rows, `s` of `p` features.
pub fn gic(rss: f64, n: usize, s: usize, p: usize) -> f64 {
    let n = n as f64;
    n * (rss / n).ln() + s as f64 * (p.max(2) as f64).ln() * n.ln().ln()
}

/// abess's extended Bayesian information criterion (its default) of a
/// least-squares fit with residual sum of squares `rss` over `n` rows, `s`
/// of `p` features: `n ln(RSS / n) + s (ln n + 2 ln p)`.
pub fn ebic(rss: f64, n: usize, s: usize, p: usize) -> f64 {
    let n = n as f64;
    n * (rss / n).ln() + s as f64 * (n.ln() + 2.0 * (p.max(1) as f64).ln())
}

/// When a path stops training before its epochs: every
/// `ceil(span / lr)` epochs (Adam moves a parameter by about `lr` an epoch,
/// so a look comes once the gate logits could have moved by `span`: 25
/// epochs at lr 0.1, 250 at 0.01 by default) the path's points are scored
/// and its support chosen ([`PathParams::selection`], then spliced when
/// [`PathParams::splice`]: the gates' boundary features may still move
/// while the spliced support has settled);
/// once that support is the same at `patience + 1` consecutive looks,
/// training ends there. The models then hold exactly the state of a path
/// fitted for that many epochs ([`PathFit::epochs`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStop {
    /// Logit distance between looks (> 0, finite).
    pub span: f64,
    /// Unchanged looks needed after the first (>= 1).
    pub patience: u64,
}

impl Default for EarlyStop {
    fn default() -> Self {
        EarlyStop {
            span: 2.5,
            patience: 1,
        }
    }
}

impl EarlyStop {
    /// Epochs between looks at learning rate `lr`.
    pub fn every(&self, lr: f64) -> u64 {
        ((self.span / lr).ceil() as u64).max(1)
    }
}

/// Options of [`fit_path`].
#[derive(Clone, Debug, PartialEq)]
pub struct PathParams {
    /// The L0 strengths to try (each > = 0, finite).
    pub lambdas: Vec<f64>,
    /// Gate threshold that defines the support (default 0.01).
    pub threshold: f64,
    /// Score (and return) the least-squares refit of each support rather
    /// than the gated coefficients (default true).
    pub refit: bool,
    /// With `refit`: improve each support before scoring it by splicing at
    /// its size and at neighbouring sizes while the GIC drops (abess's
    /// exchanges; see the module documentation; default true).
    pub splice: bool,
    /// How the lambda is chosen (default: lowest EBIC).
    pub selection: Selection,
    /// When training stops before `epochs` (default: [`EarlyStop::default`];
    /// None: all epochs).
    pub early_stop: Option<EarlyStop>,
}

impl Default for PathParams {
    fn default() -> Self {
        PathParams {
            lambdas: vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
            threshold: 0.01,
            refit: true,
            splice: true,
            selection: Selection::default(),
            early_stop: Some(EarlyStop::default()),
        }
    }
}

impl PathParams {
    fn check(&self) -> Result<()> {
        if self.lambdas.is_empty() {
            return Err(L0Error::config("the lambda path is empty"));
        }
        for &l in &self.lambdas {
            model::check_non_negative("lambda_l0", l)?;
        }
        check_finite_scalar("threshold", self.threshold)?;
        if let Some(e) = self.early_stop {
            if !(e.span > 0.0 && e.span.is_finite()) || e.patience == 0 {
                return Err(L0Error::config(format!(
                    "early stop: span must be positive and finite and patience at least 1, got span={} patience={}",
                    e.span, e.patience
                )));
            }
        }
        Ok(())
    }
}

/// One lambda of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPoint {
    /// The L0 strength.
    pub lambda: f64,
    /// The features scored: the gated model's (gates above the threshold),
    /// or with a refit those of its least-squares fit after splicing.
    pub support: Vec<usize>,
    /// Features the splice added or removed, against the gated model's
    /// support (0 without a splice).
    pub changed: usize,
    /// Validation mean squared error.
    pub val_mse: f64,
    /// Its standard error (of the mean of the squared errors).
    pub val_se: f64,
    /// Whether the score is that of the least-squares refit (false when no
    /// refit was asked for, or the support could not be refitted).
    pub refitted: bool,
    /// The [`gic`] of the least-squares fit of `support` on the training
    /// split (None when it could not be fitted).
    pub gic: Option<f64>,
    /// Its [`ebic`] (None likewise).
    pub ebic: Option<f64>,
}

/// The outcome of [`fit_path`].
#[derive(Clone, Debug)]
pub struct PathFit {
    /// Every lambda, in the order given.
    pub points: Vec<PathPoint>,
    /// Index of the chosen lambda (by [`PathParams::selection`]; ties go to
    /// the sparser support, then the earlier lambda).
    pub best: usize,
    /// The chosen lambda.
    pub lambda: f64,
    /// Epochs trained (fewer than asked after an early stop).
    pub epochs: u64,
    /// The model fitted at the chosen lambda.
    pub model: Regression,
    /// Its least-squares refit on the training split, when scored that way.
    pub refit: Option<LeastSquares>,
}

/// Fits one fresh model per lambda on `(x_train, y_train)` (all with the same
/// seed, hence the same start), scores each support and returns the path
/// with the chosen model. See the module documentation.
#[allow(clippy::too_many_arguments)]
pub fn fit_path(
    params: &RegressionParams,
    opts: &RegressionFitParams,
    path: &PathParams,
    x_train: &SparseMatrix,
    y_train: &[f64],
    x_val: &SparseMatrix,
    y_val: &[f64],
) -> Result<PathFit> {
    path.check()?;
    check_y("y_val", "X_val", x_val, y_val)?;
    let mut params = params.clone();
    params.seed = Some(params.seed.unwrap_or_else(rand::random));
    let n_features = x_train.cols();
    if x_val.cols() != n_features {
        return Err(L0Error::shape(
            "X_val columns (one per feature)",
            n_features,
            x_val.cols(),
        ));
    }
    let mut models = path
        .lambdas
        .iter()
        .map(|_| Regression::new(n_features, params.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut scorer = Scorer {
        x: x_train,
        y: y_train,
        x_val,
        y_val,
        norms: column_norms(x_train, params.fit_intercept),
        centred: params.fit_intercept,
        path,
        fits: HashMap::new(),
        polished: HashMap::new(),
    };
    let (epochs, mut points, mut solved) = train_path(&mut models, &mut scorer, opts)?;
    let best = choose(&points, path.selection);
    let start = match path.refit && path.splice {
        true => solved[best].take(),
        false => None,
    };
    if let Some(start) = start {
        let s = scorer.polish(start);
        let gated = models[best].selected_features(path.threshold);
        let lambda = points[best].lambda;
        points[best] = point(lambda, &models[best], gated, Some(&s), true, x_val, y_val)?;
        solved[best] = Some(s);
    }
    let refit = match path.refit {
        true => solved.swap_remove(best).map(|s| s.ls),
        false => None,
    };
    Ok(PathFit {
        lambda: points[best].lambda,
        points,
        best,
        epochs,
        model: models.swap_remove(best),
        refit,
    })
}

/// Scores the supports of a path's models: one least-squares fit (and
/// splice) per distinct gated support, kept across looks.
struct Scorer<'a> {
    x: &'a SparseMatrix,
    y: &'a [f64],
    x_val: &'a SparseMatrix,
    y_val: &'a [f64],
    norms: Vec<f64>,
    centred: bool,
    path: &'a PathParams,
    fits: HashMap<Vec<usize>, Option<Solved>>,
    polished: HashMap<Vec<usize>, Solved>,
}

impl Scorer<'_> {
    /// `start` [`splice`]d, then with a criterion [`resize`]d (kept by
    /// support).
    fn polish(&mut self, start: Solved) -> Solved {
        if let Some(s) = self.polished.get(&start.ls.support) {
            return s.clone();
        }
        let key = start.ls.support.clone();
        let (x, y, norms, centred) = (self.x, self.y, &self.norms, self.centred);
        let mut s = splice(x, y, start, norms, centred);
        if let Some(ic) = self.path.selection.criterion() {
            s = resize(x, y, s, norms, centred, ic);
        }
        self.polished.insert(key, s.clone());
        s
    }

    /// Each model's point and least-squares fit (None where none could be
    /// made).
    fn points(&mut self, models: &[Regression]) -> Result<(Vec<PathPoint>, Vec<Option<Solved>>)> {
        let mut points = Vec::with_capacity(models.len());
        let mut solved = Vec::with_capacity(models.len());
        for (m, &lambda) in models.iter().zip(&self.path.lambdas) {
            let gated = m.selected_features(self.path.threshold);
            let fit = match self.fits.get(&gated) {
                Some(f) => f.clone(),
                None => {
                    let f = solve(self.x, self.y, gated.clone(), self.centred).ok();
                    self.fits.insert(gated.clone(), f.clone());
                    f
                }
            };
            let refit = self.path.refit;
            points.push(point(
                lambda,
                m,
                gated,
                fit.as_ref(),
                refit,
                self.x_val,
                self.y_val,
            )?);
            solved.push(fit);
        }
        Ok((points, solved))
    }
}

/// The path point of model `m` at `lambda` with gated support `gated` and
/// its least-squares fit `fit` (None: none could be made): scored on the
/// validation split by `fit` when `refit`, else by the gated model.
fn point(
    lambda: f64,
    m: &Regression,
    gated: Vec<usize>,
    fit: Option<&Solved>,
    refit: bool,
    x_val: &SparseMatrix,
    y_val: &[f64],
) -> Result<PathPoint> {
    let features = m.n_features();
    let ic = |c: Criterion| fit.map(|f| c(f.rss, f.residual.len(), f.ls.support.len(), features));
    let (gic, ebic) = (ic(gic), ic(ebic));
    Ok(match fit {
        Some(f) if refit => {
            let (val_mse, val_se) = score(&f.ls.predict(x_val)?, y_val);
            PathPoint {
                lambda,
                changed: changed(&gated, &f.ls.support),
                support: f.ls.support.clone(),
                val_mse,
                val_se,
                refitted: true,
                gic,
                ebic,
            }
        }
        _ => {
            let (val_mse, val_se) = score(&m.predict(x_val)?, y_val);
            PathPoint {
                lambda,
                support: gated,
                changed: 0,
                val_mse,
                val_se,
                refitted: false,
                gic,
                ebic,
            }
        }
    })
}

/// A path's points and fits ([`Scorer::points`]) after training.
type Scored = (u64, Vec<PathPoint>, Vec<Option<Solved>>);

/// Trains the path's models together for `opts.epochs`, or until
/// `path.early_stop` ends it (the chosen, spliced support unchanged over
/// its looks); returns the epochs run and the models' points.
fn train_path(
    models: &mut [Regression],
    scorer: &mut Scorer,
    opts: &RegressionFitParams,
) -> Result<Scored> {
    let path = scorer.path;
    let Some(stop) = path.early_stop else {
        let mut refs: Vec<&mut Regression> = models.iter_mut().collect();
        Regression::fit_together(&mut refs, &path.lambdas, scorer.x, scorer.y, opts)?;
        let (points, solved) = scorer.points(models)?;
        return Ok((opts.epochs, points, solved));
    };
    let (mut done, mut same) = (0, 0);
    let mut last: Option<Vec<usize>> = None;
    loop {
        let chunk = RegressionFitParams {
            epochs: stop.every(opts.lr).min(opts.epochs - done),
            ..opts.clone()
        };
        let mut refs: Vec<&mut Regression> = models.iter_mut().collect();
        Regression::fit_together(&mut refs, &path.lambdas, scorer.x, scorer.y, &chunk)?;
        done += chunk.epochs;
        let (points, solved) = scorer.points(models)?;
        let best = choose(&points, path.selection);
        let chosen = match (&solved[best], path.refit && path.splice) {
            (Some(start), true) => scorer.polish(start.clone()).ls.support,
            _ => points[best].support.clone(),
        };
        same = if last.as_ref() == Some(&chosen) {
            same + 1
        } else {
            0
        };
        if same >= stop.patience || done >= opts.epochs {
            return Ok((done, points, solved));
        }
        last = Some(chosen);
    }
}

/// Mean and standard error of the squared errors of `pred` against `y`.
fn score(pred: &[f64], y: &[f64]) -> (f64, f64) {
    let sq: Vec<f64> = pred.iter().zip(y).map(|(p, y)| (p - y) * (p - y)).collect();
    let n = sq.len() as f64;
    let mean = sq.iter().sum::<f64>() / n;
    let var = sq.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// The index `selection` picks among `points` (at least one).
fn choose(points: &[PathPoint], selection: Selection) -> usize {
    // Lowest error, ties to the sparser support, then the earlier lambda.
    let min = (0..points.len())
        .min_by(|&i, &j| {
            let (a, b) = (&points[i], &points[j]);
            a.val_mse
                .total_cmp(&b.val_mse)
                .then(a.support.len().cmp(&b.support.len()))
                .then(i.cmp(&j))
        })
        .unwrap_or(0);
    match selection {
        Selection::MinError => min,
        Selection::OneStandardError => {
            let limit = points[min].val_mse + points[min].val_se;
            (0..points.len())
                .filter(|&k| points[k].val_mse <= limit)
                .min_by_key(|&k| (points[k].support.len(), k))
                .unwrap_or(min)
        }
        Selection::Gic => lowest(points, |p| p.gic).unwrap_or(min),
        Selection::Ebic => lowest(points, |p| p.ebic).unwrap_or(min),
    }
}

/// The point of lowest `value` (those without one skipped), ties to the
/// sparser support, then the earlier lambda.
fn lowest(points: &[PathPoint], value: impl Fn(&PathPoint) -> Option<f64>) -> Option<usize> {
    (0..points.len())
        .filter_map(|k| value(&points[k]).map(|g| (k, g)))
        .min_by(|(i, a), (j, b)| {
            a.total_cmp(b)
                .then(points[*i].support.len().cmp(&points[*j].support.len()))
                .then(i.cmp(j))
        })
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 rows of 8 independent features (a fixed pseudo-random stream,
    /// f32-representable), y = 2 x1 - 3 x3 + 1.5 x5 + 4 + small noise.
    fn data() -> (SparseMatrix, Vec<f64>) {
        let (n, p) = (60, 8);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 as f64
        };
        let x: Vec<f64> = (0..n * p).map(|_| next()).collect();
        let y = (0..n)
            .map(|q| {
                let r = &x[q * p..(q + 1) * p];
                2.0 * r[1] - 3.0 * r[3] + 1.5 * r[5] + 4.0 + 0.01 * next()
            })
            .collect();
        (SparseMatrix::from_dense(n, p, &x).unwrap(), y)
    }

    fn fit(x: &SparseMatrix, y: &[f64], support: &[usize]) -> Solved {
        solve(x, y, support.to_vec(), true).unwrap()
    }

    #[test]
    fn solve_returns_the_residuals_and_their_sum_of_squares() {
        let (x, y) = data();
        let f = fit(&x, &y, &[1, 3, 6]);
        let pred = f.ls.predict(&x).unwrap();
        for (q, r) in f.residual.iter().enumerate() {
            assert!((r - (y[q] - pred[q])).abs() < 1e-12, "{q}");
        }
        let rss: f64 = f.residual.iter().map(|r| r * r).sum();
        assert_eq!(f.rss, rss);
        // The normal equations hold: X_j' r = 0 on the support, sum r = 0.
        let dots = column_dots(&x, &f.residual, true);
        for j in [1, 3, 6] {
            assert!(dots[j].abs() < 1e-10, "{j}: {}", dots[j]);
        }
        assert!(f.residual.iter().sum::<f64>().abs() < 1e-10);
    }

    #[test]
    fn dot_and_column_sums_match_plain_loops() {
        let a: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..37).map(|i| (i as f64 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&b).map(|(u, v)| u * v).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-13);
        let (x, y) = data();
        let dense: Vec<f64> = x.csr().to_dense().iter().map(|&v| v as f64).collect();
        let (n, p) = (x.rows(), x.cols());
        let norms = column_norms(&x, true);
        let dots = column_dots(&x, &y, true);
        for j in 0..p {
            let c: Vec<f64> = (0..n).map(|q| dense[q * p + j]).collect();
            let mean = c.iter().sum::<f64>() / n as f64;
            let cc: Vec<f64> = c.iter().map(|v| v - mean).collect();
            let norm: f64 = cc.iter().map(|v| v * v).sum();
            let d: f64 = cc.iter().zip(&y).map(|(u, v)| u * v).sum();
            assert!((norms[j] - norm).abs() < 1e-10 * norm, "{j}");
            assert!((dots[j] - d).abs() < 1e-10 * d.abs().max(1.0), "{j}");
        }
    }

    #[test]
    fn splice_exchanges_a_wrong_feature_for_the_missing_one() {
        let (x, y) = data();
        let norms = column_norms(&x, true);
        let start = fit(&x, &y, &[1, 3, 6]);
        let rss0 = start.rss;
        let s = splice(&x, &y, start, &norms, true);
        assert_eq!(s.ls.support, vec![1, 3, 5]);
        assert!(s.rss < rss0);
        // The true support is left alone.
        let t = splice(&x, &y, fit(&x, &y, &[1, 3, 5]), &norms, true);
        assert_eq!(t.ls.support, vec![1, 3, 5]);
        assert_eq!(changed(&[1, 3, 6], &s.ls.support), 2);
    }

    #[test]
    fn resize_drops_extra_and_adds_missing_features_by_the_criterion() {
        let (x, y) = data();
        let norms = column_norms(&x, true);
        for start in [&[1, 3, 5, 6, 7][..], &[3][..], &[1, 3, 5]] {
            let r = resize(&x, &y, fit(&x, &y, start), &norms, true, ebic);
            assert_eq!(r.ls.support, vec![1, 3, 5], "from {start:?}");
        }
        // Every neighbouring size has a higher EBIC than the result.
        let best = fit(&x, &y, &[1, 3, 5]);
        let at = |f: &Solved| ebic(f.rss, 60, f.ls.support.len(), 8);
        assert!(at(&fit(&x, &y, &[1, 3])) > at(&best));
        assert!(at(&fit(&x, &y, &[1, 3, 5, 7])) > at(&best));
    }

    #[test]
    fn selections_pick_their_points() {
        let pt = |support: Vec<usize>, val_mse: f64, val_se: f64, ic: f64| PathPoint {
            lambda: 0.0,
            support,
            changed: 0,
            val_mse,
            val_se,
            refitted: true,
            gic: Some(ic),
            ebic: Some(-ic),
        };
        let points = vec![
            pt(vec![0, 1, 2], 1.0, 0.5, 5.0),
            pt(vec![0], 1.4, 0.1, 3.0),
            pt(vec![0, 1], 1.2, 0.1, 3.0),
        ];
        assert_eq!(choose(&points, Selection::MinError), 0);
        assert_eq!(choose(&points, Selection::OneStandardError), 1);
        // GIC ties (3.0) go to the sparser support; EBIC is -GIC here.
        assert_eq!(choose(&points, Selection::Gic), 1);
        assert_eq!(choose(&points, Selection::Ebic), 0);
    }
}
