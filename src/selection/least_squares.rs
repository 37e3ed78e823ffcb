//! Ordinary least squares on a support of a sparse design.
//!
//! [`Design`] holds one problem (`X`, `y`, with or without an intercept)
//! and keeps what each fit needed: the dense (centred) columns of the
//! features it has seen, their products with `y` and the Gram entries
//! between them, filled in only when a fit asks for them. A splice or a
//! path over support sizes fits hundreds of supports that differ in a
//! feature or two; each then costs a Cholesky factorisation of its `s x s`
//! Gram matrix and one pass over its `s` columns for the residuals, not a
//! pass over `X`.

use crate::error::{L0Error, Result};
use crate::matrix::SparseMatrix;
use crate::regression::check_y;

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
    let mut design = Design::new(x, y, fit_intercept);
    Ok(design.solve(support)?.least_squares(x.cols()))
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

/// A least-squares fit on a support with its training residuals.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fit {
    /// The columns used, ascending.
    pub support: Vec<usize>,
    /// One coefficient per support feature, in its order.
    pub beta: Vec<f64>,
    /// The intercept (0 without one).
    pub intercept: f64,
    /// `y - X b - c` on the design's rows.
    pub residual: Vec<f64>,
    /// Their sum of squares.
    pub rss: f64,
}

impl Fit {
    /// The fit as a [`LeastSquares`] over `p` features.
    pub fn least_squares(&self, p: usize) -> LeastSquares {
        let mut coefficients = vec![0.0; p];
        for (&j, &b) in self.support.iter().zip(&self.beta) {
            coefficients[j] = b;
        }
        LeastSquares {
            support: self.support.clone(),
            coefficients,
            intercept: self.intercept,
        }
    }
}

/// Gram entries not computed yet.
const UNKNOWN: f64 = f64::NAN;

/// One least-squares problem and what its fits have needed so far (see the
/// module documentation).
pub(crate) struct Design<'a> {
    x: &'a SparseMatrix,
    centred: bool,
    y_mean: f64,
    /// `y`, centred with an intercept.
    y: Vec<f64>,
    /// Column means (zeros without an intercept).
    means: Vec<f64>,
    /// Squared norms of the (centred) columns.
    norms: Vec<f64>,
    /// Each feature's slot among the columns seen (`usize::MAX`: none).
    slots: Vec<usize>,
    /// Slot `k`'s dense (centred) column, at `k n .. (k + 1) n`.
    columns: Vec<f64>,
    /// Slot `k`'s column times `y`.
    xty: Vec<f64>,
    /// `gram[a][b]` (`b <= a`): slot `a`'s column times slot `b`'s
    /// ([`UNKNOWN`] until asked for).
    gram: Vec<Vec<f64>>,
}

impl<'a> Design<'a> {
    /// The problem of `y` (checked by the caller) on `x`, centred when
    /// `centred` (an intercept is fitted).
    pub fn new(x: &'a SparseMatrix, y: &[f64], centred: bool) -> Self {
        let n = x.rows().max(1) as f64;
        let y_mean = if centred {
            y.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let csc = x.csc();
        let ptr = csc.indptr();
        let ptr = ptr.raw_storage();
        let val = csc.data();
        let (means, norms) = (0..x.cols())
            .map(|j| {
                let (sq, sum) =
                    val[ptr[j]..ptr[j + 1]]
                        .iter()
                        .fold((0.0f64, 0.0f64), |(q, s), &v| {
                            let v = v as f64;
                            (q + v * v, s + v)
                        });
                match centred {
                    true => (sum / n, sq - sum * sum / n),
                    false => (0.0, sq),
                }
            })
            .unzip();
        let y: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
        Design {
            x,
            centred,
            y_mean,
            y,
            means,
            norms,
            slots: vec![usize::MAX; x.cols()],
            columns: Vec::new(),
            xty: Vec::new(),
            gram: Vec::new(),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.x.rows()
    }

    /// Features.
    pub fn cols(&self) -> usize {
        self.x.cols()
    }

    /// Whether the columns are centred (an intercept is fitted).
    pub fn centred(&self) -> bool {
        self.centred
    }

    /// Squared norms of the (centred) columns.
    pub fn norms(&self) -> &[f64] {
        &self.norms
    }

    /// `X_j' r` for every column `j`, centred with an intercept
    /// (`X_j' r - mean_j sum(r)`): one pass over `X`.
    pub fn dots(&self, r: &[f64]) -> Vec<f64> {
        let csc = self.x.csc();
        let ptr = csc.indptr();
        let ptr = ptr.raw_storage();
        let (idx, val) = (csc.indices(), csc.data());
        let r_sum: f64 = if self.centred { r.iter().sum() } else { 0.0 };
        let n = self.rows();
        (0..self.cols())
            .map(|j| {
                let (v, i) = (&val[ptr[j]..ptr[j + 1]], &idx[ptr[j]..ptr[j + 1]]);
                // A full column holds every row in order: no gather.
                let d = match v.len() == n {
                    true => dot_f32(v, r),
                    false => v
                        .iter()
                        .zip(i)
                        .map(|(&v, &q)| v as f64 * r[q as usize])
                        .sum(),
                };
                d - self.means[j] * r_sum
            })
            .collect()
    }

    /// Feature `j`'s slot, its column made dense (and centred) on first use.
    fn slot(&mut self, j: usize) -> usize {
        if self.slots[j] != usize::MAX {
            return self.slots[j];
        }
        let n = self.rows();
        let k = self.xty.len();
        let csc = self.x.csc();
        let ptr = csc.indptr();
        let ptr = ptr.raw_storage();
        let (idx, val) = (csc.indices(), csc.data());
        self.columns.resize((k + 1) * n, -self.means[j]);
        let c = &mut self.columns[k * n..];
        for t in ptr[j]..ptr[j + 1] {
            c[idx[t] as usize] += val[t] as f64;
        }
        self.xty.push(dot(c, &self.y));
        self.gram.push(vec![UNKNOWN; k + 1]);
        self.slots[j] = k;
        k
    }

    /// Slot `k`'s dense column.
    fn column(&self, k: usize) -> &[f64] {
        let n = self.rows();
        &self.columns[k * n..(k + 1) * n]
    }

    /// The Gram entry of slots `a` and `b`, computed on first use.
    fn gram(&mut self, a: usize, b: usize) -> f64 {
        let (hi, lo) = (a.max(b), a.min(b));
        if self.gram[hi][lo].is_nan() {
            self.gram[hi][lo] = dot(self.column(hi), self.column(lo));
        }
        self.gram[hi][lo]
    }

    /// The slots of `support` (in range) and its Gram matrix (lower
    /// triangle, row-major `s x s`), Cholesky-factorised; an error when the
    /// columns outnumber the rows or are linearly dependent.
    fn factor(&mut self, support: &[usize]) -> Result<(Vec<usize>, Vec<f64>)> {
        let n = self.rows();
        let s = support.len();
        let unknowns = s + self.centred as usize;
        if unknowns > n {
            return Err(L0Error::config(format!(
                "least-squares refit: {unknowns} unknowns but only {n} rows"
            )));
        }
        let slots: Vec<usize> = support.iter().map(|&j| self.slot(j)).collect();
        let mut g = vec![0.0f64; s * s];
        for a in 0..s {
            for b in 0..=a {
                g[a * s + b] = self.gram(slots[a], slots[b]);
            }
        }
        cholesky(&mut g, s)?;
        Ok((slots, g))
    }

    /// The inverse of the Gram matrix of `support` (in range), full
    /// row-major `s x s`; None where [`Design::solve`] fails.
    pub fn inverse_gram(&mut self, support: &[usize]) -> Option<Vec<f64>> {
        let s = support.len();
        let (_, l) = self.factor(support).ok()?;
        let mut h = vec![0.0; s * s];
        for i in 0..s {
            let mut e = vec![0.0; s];
            e[i] = 1.0;
            cholesky_solve(&l, &mut e, s);
            h[i * s..(i + 1) * s].copy_from_slice(&e);
        }
        Some(h)
    }

    /// Feature `j`'s Gram entries with each of `support` (in range), and
    /// with itself.
    pub fn cross_gram(&mut self, j: usize, support: &[usize]) -> (Vec<f64>, f64) {
        let a = self.slot(j);
        let row = support.iter().map(|&k| {
            let b = self.slot(k);
            self.gram(a, b)
        });
        let row = row.collect();
        (row, self.gram(a, a))
    }

    /// The least-squares fit on `support` (ascending, in range).
    pub fn solve(&mut self, support: Vec<usize>) -> Result<Fit> {
        let (slots, l) = self.factor(&support)?;
        let mut beta: Vec<f64> = slots.iter().map(|&k| self.xty[k]).collect();
        cholesky_solve(&l, &mut beta, support.len());
        let mut residual = self.y.clone();
        for (&k, &b) in slots.iter().zip(&beta) {
            residual
                .iter_mut()
                .zip(self.column(k))
                .for_each(|(r, u)| *r -= b * u);
        }
        let rss = residual.iter().map(|r| r * r).sum();
        let intercept = match self.centred {
            true => {
                self.y_mean
                    - support
                        .iter()
                        .zip(&beta)
                        .map(|(&j, b)| self.means[j] * b)
                        .sum::<f64>()
            }
            false => 0.0,
        };
        Ok(Fit {
            support,
            beta,
            intercept,
            residual,
            rss,
        })
    }
}

/// `sum_q a_q b_q` in eight interleaved partial sums (so that it
/// vectorises), added pairwise at the end.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
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

/// `sum_q a_q b_q` for `f32` values `a`, in f64 and in eight interleaved
/// partial sums as [`dot`].
fn dot_f32(a: &[f32], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&u, v)| u as f64 * v)
        .sum();
    for (u, v) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += u[k] as f64 * v[k];
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// Overwrites the symmetric positive definite `G` (lower triangle of a
/// row-major `s x s` array) with its Cholesky factor `L` (`G = L L'`).
fn cholesky(g: &mut [f64], s: usize) -> Result<()> {
    let max_diag = (0..s).map(|i| g[i * s + i]).fold(0.0f64, f64::max);
    for i in 0..s {
        for j in 0..=i {
            let v = g[i * s + j] - dot(&g[i * s..i * s + j], &g[j * s..j * s + j]);
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
    Ok(())
}

/// Solves `L L' x = r` in place, `L` from [`cholesky`].
fn cholesky_solve(l: &[f64], r: &mut [f64], s: usize) {
    for i in 0..s {
        let v = r[i] - dot(&l[i * s..i * s + i], &r[..i]);
        r[i] = v / l[i * s + i];
    }
    for i in (0..s).rev() {
        let mut v = r[i];
        for k in i + 1..s {
            v -= l[k * s + i] * r[k];
        }
        r[i] = v / l[i * s + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::data;

    #[test]
    fn solve_returns_the_residuals_and_their_sum_of_squares() {
        let (x, y) = data();
        let mut d = Design::new(&x, &y, true);
        let f = d.solve(vec![1, 3, 6]).unwrap();
        let pred = f.least_squares(8).predict(&x).unwrap();
        for (q, r) in f.residual.iter().enumerate() {
            assert!((r - (y[q] - pred[q])).abs() < 1e-12, "{q}");
        }
        let rss: f64 = f.residual.iter().map(|r| r * r).sum();
        assert_eq!(f.rss, rss);
        // The normal equations hold: X_j' r = 0 on the support, sum r = 0.
        let dots = d.dots(&f.residual);
        for j in [1, 3, 6] {
            assert!(dots[j].abs() < 1e-10, "{j}: {}", dots[j]);
        }
        assert!(f.residual.iter().sum::<f64>().abs() < 1e-10);
        // The empty support leaves y centred.
        let e = d.solve(Vec::new()).unwrap();
        let mean = y.iter().sum::<f64>() / 60.0;
        assert_eq!((e.intercept, e.beta.len()), (mean, 0));
        assert!(e.residual.iter().zip(&y).all(|(r, v)| *r == v - mean));
    }

    /// The kept columns and Gram entries change no bit: fits from one
    /// design, in any order, equal those of a fresh design each.
    #[test]
    fn a_design_gives_each_support_the_fit_of_a_fresh_one() {
        let (x, y) = data();
        for centred in [true, false] {
            let mut shared = Design::new(&x, &y, centred);
            for support in [
                vec![0, 1, 2, 3, 4, 5, 6, 7],
                vec![5],
                vec![1, 3, 5],
                vec![2, 7],
            ] {
                let a = shared.solve(support.clone()).unwrap();
                let b = Design::new(&x, &y, centred).solve(support).unwrap();
                assert_eq!(a, b);
            }
            assert_eq!(shared.xty.len(), 8);
        }
    }

    /// `dots` and `norms` against plain loops, on full columns (read in
    /// place) and columns with zeros (gathered by row index).
    #[test]
    fn dots_and_norms_match_plain_loops() {
        let a: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..37).map(|i| (i as f64 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&b).map(|(u, v)| u * v).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-13);
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let plain: f64 = a32.iter().zip(&b).map(|(&u, v)| u as f64 * v).sum();
        assert!((dot_f32(&a32, &b) - plain).abs() < 1e-13);
        let (x, y) = data();
        let (n, p) = (x.rows(), x.cols());
        let mut dense: Vec<f64> = x.csr().to_dense().iter().map(|&v| v as f64).collect();
        // Columns 2 and 6 lose every third value.
        for q in (0..n).step_by(3) {
            dense[q * p + 2] = 0.0;
            dense[q * p + 6] = 0.0;
        }
        let x = SparseMatrix::from_dense(n, p, &dense).unwrap();
        for centred in [true, false] {
            let d = Design::new(&x, &y, centred);
            let dots = d.dots(&y);
            for j in 0..p {
                let c: Vec<f64> = (0..n).map(|q| dense[q * p + j]).collect();
                let mean = if centred {
                    c.iter().sum::<f64>() / n as f64
                } else {
                    0.0
                };
                let cc: Vec<f64> = c.iter().map(|v| v - mean).collect();
                let norm: f64 = cc.iter().map(|v| v * v).sum();
                let dy: f64 = cc.iter().zip(&y).map(|(u, v)| u * v).sum();
                assert!((d.norms()[j] - norm).abs() < 1e-10 * norm, "{j}");
                assert!((dots[j] - dy).abs() < 1e-10 * dy.abs().max(1.0), "{j}");
            }
        }
    }

    #[test]
    fn inverse_and_cross_gram_are_those_of_the_dense_columns() {
        let (x, y) = data();
        let mut d = Design::new(&x, &y, true);
        let support = [0, 2, 3, 7];
        let h = d.inverse_gram(&support).unwrap();
        let gram = |d: &mut Design, a: usize, b: usize| d.cross_gram(a, &[b]).0[0];
        for i in 0..4 {
            for j in 0..4 {
                let hg: f64 = (0..4)
                    .map(|k| h[i * 4 + k] * gram(&mut d, support[k], support[j]))
                    .sum();
                assert!((hg - (i == j) as u8 as f64).abs() < 1e-12, "{i} {j}: {hg}");
            }
        }
        let (row, own) = d.cross_gram(5, &support);
        assert!((own - d.norms()[5]).abs() < 1e-12);
        for (k, &j) in support.iter().enumerate() {
            let (a, b) = (d.column(d.slots[5]), d.column(d.slots[j]));
            assert_eq!(row[k], dot(a, b));
        }
        // Linearly dependent columns have no inverse.
        let twice: Vec<f64> = x.csr().to_dense().iter().map(|&v| v as f64).collect();
        let doubled: Vec<f64> = twice
            .chunks(8)
            .flat_map(|r| [r[0], r[1], 2.0 * r[1]])
            .collect();
        let z = SparseMatrix::from_dense(60, 3, &doubled).unwrap();
        let mut dz = Design::new(&z, &y, true);
        assert!(dz.inverse_gram(&[0, 1, 2]).is_none());
        assert_eq!(
            dz.solve(vec![0, 1, 2]).unwrap_err().to_string(),
            "invalid configuration: least-squares refit: the selected columns are linearly dependent"
        );
    }
}
