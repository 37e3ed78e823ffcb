//! Model selection for the sparse regression: ordinary least squares on a
//! support, abess's splicing and information criteria, and a lambda path
//! ([`fit_path`]) that picks its support by one of them.
//!
//! A path fits one fresh [`Regression`] per lambda on its training rows, all
//! together ([`Regression::fit_together`]: one pass over `X` per epoch serves
//! every lambda). Each distinct support (gates above a threshold) is
//! refitted once by ordinary least squares ([`refit_least_squares`],
//! Cholesky on the centred normal equations in f64) and scored: abess's
//! information criteria ([`ebic`], [`gic`]) on the training rows and, where
//! rows are held out ([`fit_path`]), its validation error. [`Selection`]
//! picks the lambda, by default the lowest EBIC, as abess picks its support
//! size. The criteria need no held-out rows: [`fit_path_all_rows`] trains,
//! refits and chooses on every row, as abess does (the CLI's default with
//! `--select ebic` or `gic`); on the best-subset benchmarks that found the
//! true support more often than a path that holds a fifth of the rows out
//! (docs/regression.md).
//!
//! The chosen support is then improved ([`PathParams::splice`]): spliced
//! as abess does (features of least backward sacrifice exchanged for those
//! of most forward sacrifice) and, where that finds nothing, by the best
//! single swap of a support feature for one of the [`SWAP_CANDIDATES`]
//! others of most forward sacrifice (scored exactly, in closed form), while
//! the training residual sum of squares drops by more than abess's
//! tolerance; then, for a criterion, one feature fewer or more at a time
//! while the criterion drops. Last ([`PathParams::size_path`]), abess's
//! own search: a path over every support size from the empty one, each
//! size started from the previous size's fit plus its best forward
//! candidate and spliced, warm-started by the spliced choice at its size,
//! reaching twice that size (at most abess's default largest size,
//! [`abess_max_size`]); its fit of lowest criterion replaces the spliced
//! choice where lower. The Hard Concrete gates find the size and a warm
//! start; the splice and the path over sizes fix the features the gates got
//! wrong, notably where strongly correlated neighbours took a true
//! feature's place. By default training stops once the final choice has
//! settled ([`EarlyStop`]).
//!
//! All fits on the training rows share one design (`least_squares.rs`:
//! a cache of dense columns and Gram entries), so each further support costs
//! a Cholesky factorisation of its Gram matrix and a pass over its own
//! columns.

use crate::error::{check_finite_scalar, L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::model;
use crate::regression::{check_y, Regression, RegressionFitParams, RegressionParams};
use std::collections::HashMap;

mod least_squares;
mod splicing;

pub use least_squares::{refit_least_squares, LeastSquares};
use least_squares::{Design, Fit};
pub use splicing::{
    abess_max_size, criterion_max_size, SPLICE_EXCHANGE, SPLICE_ROUNDS, SWAP_CANDIDATES,
};
use splicing::{criterion_of, resize, size_path, splice, State};

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
    /// fits on the training rows (abess's GIC,
    /// `n ln(RSS / n) + s ln(p) ln(ln n)`: `n` training rows, `s` features
    /// in the support, `p` features; [`PathPoint::gic`]); the validation
    /// error decides where no support could be refitted (without one, the
    /// sparsest support).
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
/// and its support chosen ([`PathParams::selection`], then spliced and
/// with a criterion run through the path over sizes when
/// [`PathParams::splice`]: the gates' boundary features may still move
/// while that final support has settled);
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
    /// With `refit`: improve the chosen support by splicing at its size
    /// (abess's exchanges and the best swap) and, with a criterion, at
    /// neighbouring sizes while it drops (see the module documentation;
    /// default true).
    pub splice: bool,
    /// With `splice` and an information criterion ([`Selection::Ebic`],
    /// [`Selection::Gic`]): once training ends, also run abess's
    /// warm-started path over support sizes (see the module documentation)
    /// and keep its fit where the criterion is lower than the spliced
    /// choice's (default true).
    pub size_path: bool,
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
            size_path: true,
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
    /// Validation mean squared error (None without held-out rows:
    /// [`fit_path_all_rows`]).
    pub val_mse: Option<f64>,
    /// Its standard error (of the mean of the squared errors; None
    /// likewise).
    pub val_se: Option<f64>,
    /// Whether the score is that of the least-squares refit (false when no
    /// refit was asked for, or the support could not be refitted).
    pub refitted: bool,
    /// The [`gic`] of the least-squares fit of `support` on the training
    /// rows (None when it could not be fitted).
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
    /// Its least-squares refit on the training rows (every row with
    /// [`fit_path_all_rows`]), when scored that way.
    pub refit: Option<LeastSquares>,
}

/// Fits one fresh model per lambda on `(x_train, y_train)` (all with the same
/// seed, hence the same start), scores each support and returns the path
/// with the chosen model; `(x_val, y_val)` are held out and give each point
/// its validation error. The criteria ([`Selection::Ebic`],
/// [`Selection::Gic`]) use only the training rows: with them,
/// [`fit_path_all_rows`] trains and chooses on every row instead. See the
/// module documentation.
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
    if x_val.cols() != x_train.cols() {
        return Err(L0Error::shape(
            "X_val columns (one per feature)",
            x_train.cols(),
            x_val.cols(),
        ));
    }
    run_path(params, opts, path, x_train, y_train, Some((x_val, y_val)))
}

/// [`fit_path`] with no rows held out, for a criterion
/// ([`Selection::Ebic`], [`Selection::Gic`]), which scores each support on
/// the rows it was fitted on: the path trains, refits, splices and chooses
/// on all of `(x, y)`, and its points have no validation error
/// ([`PathPoint::val_mse`] is None). Selection by validation error
/// ([`Selection::MinError`], [`Selection::OneStandardError`]) needs
/// [`fit_path`]'s held-out rows and is refused here.
pub fn fit_path_all_rows(
    params: &RegressionParams,
    opts: &RegressionFitParams,
    path: &PathParams,
    x: &SparseMatrix,
    y: &[f64],
) -> Result<PathFit> {
    path.check()?;
    if path.selection.criterion().is_none() {
        return Err(L0Error::config(format!(
            "selection {:?} chooses by validation error and needs held-out rows: use fit_path with a validation split",
            path.selection
        )));
    }
    run_path(params, opts, path, x, y, None)
}

/// Held-out rows of a path: `X` and `y` (checked).
type Validation<'a> = Option<(&'a SparseMatrix, &'a [f64])>;

/// The path of [`fit_path`] (validation rows `val`) or
/// [`fit_path_all_rows`] (None), its options checked.
fn run_path(
    params: &RegressionParams,
    opts: &RegressionFitParams,
    path: &PathParams,
    x_train: &SparseMatrix,
    y_train: &[f64],
    val: Validation,
) -> Result<PathFit> {
    check_y("y", "X", x_train, y_train)?;
    let mut params = params.clone();
    params.seed = Some(params.seed.unwrap_or_else(rand::random));
    let n_features = x_train.cols();
    let mut models = path
        .lambdas
        .iter()
        .map(|_| Regression::new(n_features, params.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut scorer = Scorer {
        x: x_train,
        y: y_train,
        design: Design::new(x_train, y_train, params.fit_intercept),
        val,
        path,
        fits: HashMap::new(),
        polished: HashMap::new(),
        finished: HashMap::new(),
    };
    let (epochs, mut points, mut solved) = train_path(&mut models, &mut scorer, opts)?;
    let best = choose(&points, path.selection, scorer.cap());
    if path.refit && path.splice {
        if let Some(start) = solved[best].take() {
            let s = scorer.finish(start);
            let gated = models[best].selected_features(path.threshold);
            let lambda = points[best].lambda;
            points[best] = point(lambda, &models[best], gated, Some(&s), true, val)?;
            solved[best] = Some(s);
        }
    }
    let refit = match path.refit {
        true => solved
            .swap_remove(best)
            .map(|s| s.least_squares(n_features)),
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

/// Scores the supports of a path's models: one least-squares fit per
/// distinct gated support, and one polished and final fit per chosen one,
/// kept across looks; all on one [`Design`] of the training rows.
struct Scorer<'a> {
    x: &'a SparseMatrix,
    y: &'a [f64],
    design: Design<'a>,
    val: Validation<'a>,
    path: &'a PathParams,
    fits: HashMap<Vec<usize>, Option<Fit>>,
    polished: HashMap<Vec<usize>, State>,
    finished: HashMap<Vec<usize>, Fit>,
}

impl Scorer<'_> {
    /// The largest support a criterion scores here ([`criterion_max_size`]).
    fn cap(&self) -> usize {
        criterion_max_size(self.design.rows(), self.design.cols())
    }

    /// `start` [`splice`]d, then with a criterion [`resize`]d (kept by
    /// support).
    fn polish(&mut self, start: Fit) -> State {
        if let Some(s) = self.polished.get(&start.support) {
            return s.clone();
        }
        let key = start.support.clone();
        let start = State::new(&self.design, start);
        let mut s = splice(&mut self.design, start);
        if let Some(ic) = self.path.selection.criterion() {
            s = resize(&mut self.design, s, ic);
        }
        self.polished.insert(key, s.clone());
        s
    }

    /// The chosen support's final fit (kept by support): `start`
    /// [`polish`](Self::polish)ed and, with a criterion and
    /// [`PathParams::size_path`], replaced by the best fit of abess's path
    /// over support sizes ([`size_path`], reaching twice the polished size,
    /// warm-started by the polished fit at its size) where that has a lower
    /// criterion. A function of `start`'s support alone, so an early-stopped
    /// path ends as the path trained that long.
    fn finish(&mut self, start: Fit) -> Fit {
        if let Some(f) = self.finished.get(&start.support) {
            return f.clone();
        }
        let key = start.support.clone();
        let polished = self.polish(start);
        let mut fit = polished.fit.clone();
        if let Some(ic) = self
            .path
            .selection
            .criterion()
            .filter(|_| self.path.size_path)
        {
            let reach = 2 * polished.fit.support.len();
            let design = &mut self.design;
            if let Some(b) = size_path(design, std::slice::from_ref(&polished), reach, ic) {
                if criterion_of(design, &b.fit, ic) < criterion_of(design, &fit, ic) {
                    fit = b.fit;
                }
            }
        }
        self.finished.insert(key, fit.clone());
        fit
    }

    /// Each model's point and least-squares fit (None where none could be
    /// made).
    fn points(&mut self, models: &[Regression]) -> Result<(Vec<PathPoint>, Vec<Option<Fit>>)> {
        let mut points = Vec::with_capacity(models.len());
        let mut solved = Vec::with_capacity(models.len());
        for (m, &lambda) in models.iter().zip(&self.path.lambdas) {
            let gated = m.selected_features(self.path.threshold);
            let fit = match self.fits.get(&gated) {
                Some(f) => f.clone(),
                None => {
                    let f = self.design.solve(gated.clone()).ok();
                    self.fits.insert(gated.clone(), f.clone());
                    f
                }
            };
            let refit = self.path.refit;
            points.push(point(lambda, m, gated, fit.as_ref(), refit, self.val)?);
            solved.push(fit);
        }
        Ok((points, solved))
    }
}

/// The path point of model `m` at `lambda` with gated support `gated` and
/// its least-squares fit `fit` (None: none could be made): scored on the
/// validation rows `val`, if any, by `fit` when `refit`, else by the gated
/// model.
fn point(
    lambda: f64,
    m: &Regression,
    gated: Vec<usize>,
    fit: Option<&Fit>,
    refit: bool,
    val: Validation,
) -> Result<PathPoint> {
    let features = m.n_features();
    let ic = |c: Criterion| fit.map(|f| c(f.rss, f.residual.len(), f.support.len(), features));
    let (gic, ebic) = (ic(gic), ic(ebic));
    let scored = |predict: &dyn Fn(&SparseMatrix) -> Result<Vec<f64>>| -> Result<_> {
        Ok(match val {
            Some((x_val, y_val)) => {
                let (mse, se) = score(&predict(x_val)?, y_val);
                (Some(mse), Some(se))
            }
            None => (None, None),
        })
    };
    Ok(match fit {
        Some(f) if refit => {
            let ls = f.least_squares(features);
            let (val_mse, val_se) = scored(&|x| ls.predict(x))?;
            PathPoint {
                lambda,
                changed: changed(&gated, &f.support),
                support: f.support.clone(),
                val_mse,
                val_se,
                refitted: true,
                gic,
                ebic,
            }
        }
        _ => {
            let (val_mse, val_se) = scored(&|x| m.predict(x))?;
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
type Scored = (u64, Vec<PathPoint>, Vec<Option<Fit>>);

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
        let best = choose(&points, path.selection, scorer.cap());
        let chosen = match (&solved[best], path.refit && path.splice) {
            (Some(start), true) => scorer.finish(start.clone()).support,
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

/// The index `selection` picks among `points` (at least one); a criterion
/// weighs only supports of at most `cap` features
/// ([`criterion_max_size`]), and where every support it could score is
/// larger (early in training), takes the sparsest of those. Where it has
/// nothing to go by (no support refitted, no validation error), the lowest
/// validation error decides, else the sparsest support (ties to the
/// earlier lambda).
fn choose(points: &[PathPoint], selection: Selection, cap: usize) -> usize {
    // Lowest error, ties to the sparser support, then the earlier lambda.
    let min = lowest(points, |p| p.val_mse).unwrap_or_else(|| {
        (0..points.len())
            .min_by_key(|&k| (points[k].support.len(), k))
            .unwrap_or(0)
    });
    match selection {
        Selection::MinError => min,
        Selection::OneStandardError => {
            let (Some(mse), Some(se)) = (points[min].val_mse, points[min].val_se) else {
                return min;
            };
            let limit = mse + se;
            (0..points.len())
                .filter(|&k| points[k].val_mse.is_some_and(|v| v <= limit))
                .min_by_key(|&k| (points[k].support.len(), k))
                .unwrap_or(min)
        }
        Selection::Gic | Selection::Ebic => {
            let ic = |p: &PathPoint| match selection {
                Selection::Gic => p.gic,
                _ => p.ebic,
            };
            lowest(points, |p| ic(p).filter(|_| p.support.len() <= cap))
                .or_else(|| {
                    (0..points.len())
                        .filter_map(|k| ic(&points[k]).map(|v| (k, v)))
                        .min_by(|(i, a), (j, b)| {
                            let (pi, pj) = (&points[*i], &points[*j]);
                            (pi.support.len().cmp(&pj.support.len()))
                                .then(a.total_cmp(b))
                                .then(i.cmp(j))
                        })
                        .map(|(k, _)| k)
                })
                .unwrap_or(min)
        }
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
pub(crate) mod tests {
    use super::*;

    /// A fixed pseudo-random stream of f32-representable values uniform
    /// on [-0.5, 0.5).
    pub(crate) fn stream(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 as f64
        }
    }

    /// 60 rows of 8 independent features (a fixed pseudo-random stream,
    /// f32-representable), y = 2 x1 - 3 x3 + 1.5 x5 + 4 + small noise.
    pub(crate) fn data() -> (SparseMatrix, Vec<f64>) {
        let (n, p) = (60, 8);
        let mut next = stream(0x2545_f491_4f6c_dd1d);
        let x: Vec<f64> = (0..n * p).map(|_| next()).collect();
        let y = (0..n)
            .map(|q| {
                let r = &x[q * p..(q + 1) * p];
                2.0 * r[1] - 3.0 * r[3] + 1.5 * r[5] + 4.0 + 0.01 * next()
            })
            .collect();
        (SparseMatrix::from_dense(n, p, &x).unwrap(), y)
    }

    /// 80 rows of 8 features, independent but for x5, a near copy of x0
    /// (`x5 = x0 + 0.2 e`, `e` like the features: correlation 0.98), and
    /// y = 30 x0 + 10 x1 + 10 x2 + 1 + e'.
    pub(crate) fn correlated() -> (SparseMatrix, Vec<f64>) {
        let (n, p) = (80, 8);
        let mut next = stream(0x9e37_79b9_7f4a_7c15);
        let mut x: Vec<f64> = (0..n * p).map(|_| next()).collect();
        for row in x.chunks_mut(p) {
            row[5] = (row[0] + 0.2 * next()) as f32 as f64;
        }
        let y = x
            .chunks(p)
            .map(|r| 30.0 * r[0] + 10.0 * r[1] + 10.0 * r[2] + 1.0 + next())
            .collect();
        (SparseMatrix::from_dense(n, p, &x).unwrap(), y)
    }

    #[test]
    fn selections_pick_their_points() {
        let pt = |support: Vec<usize>, val_mse: f64, val_se: f64, ic: f64| PathPoint {
            lambda: 0.0,
            support,
            changed: 0,
            val_mse: Some(val_mse),
            val_se: Some(val_se),
            refitted: true,
            gic: Some(ic),
            ebic: Some(-ic),
        };
        let points = vec![
            pt(vec![0, 1, 2], 1.0, 0.5, 5.0),
            pt(vec![0], 1.4, 0.1, 3.0),
            pt(vec![0, 1], 1.2, 0.1, 3.0),
        ];
        assert_eq!(choose(&points, Selection::MinError, 3), 0);
        assert_eq!(choose(&points, Selection::OneStandardError, 3), 1);
        // GIC ties (3.0) go to the sparser support; EBIC is -GIC here.
        assert_eq!(choose(&points, Selection::Gic, 3), 1);
        assert_eq!(choose(&points, Selection::Ebic, 3), 0);
        // Supports above the cap are not weighed by a criterion: EBIC then
        // takes the lowest of the others (a tie, to the sparser); with
        // none below the cap, the sparsest; with no criterion, the lowest
        // validation error, and without one, the sparsest support.
        assert_eq!(choose(&points, Selection::Ebic, 2), 1);
        assert_eq!(choose(&points, Selection::Gic, 0), 1);
        assert_eq!(choose(&points, Selection::MinError, 0), 0);
        let no_ic: Vec<PathPoint> = points
            .iter()
            .map(|p| PathPoint {
                gic: None,
                ebic: None,
                ..p.clone()
            })
            .collect();
        assert_eq!(choose(&no_ic, Selection::Ebic, 3), 0);
        let unscored: Vec<PathPoint> = points
            .iter()
            .map(|p| PathPoint {
                val_mse: None,
                val_se: None,
                ..p.clone()
            })
            .collect();
        assert_eq!(choose(&unscored, Selection::Ebic, 3), 0);
        let bare: Vec<PathPoint> = no_ic
            .iter()
            .map(|p| PathPoint {
                val_mse: None,
                val_se: None,
                ..p.clone()
            })
            .collect();
        assert_eq!(choose(&bare, Selection::Gic, 3), 1);
    }
}
