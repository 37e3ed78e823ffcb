//! Synthetic calibration problems with a known answer, for the demo, the
//! benchmarks and the tests.
//!
//! [`geo_stacked`] mimics a production layout: `H` survey households cloned
//! into `G` areas (column `g H + h` is household `h` placed in area `g`),
//! national targets that touch every column, and per-area targets that touch
//! only that area's columns. Targets are `y = M w_true` for a sparse,
//! positive `w_true`, so an exact sparse solution exists.

use crate::error::Result;
use crate::matrix::SparseMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Size and shape of a geo-stacked problem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoSpec {
    /// Households in the survey.
    pub households: usize,
    /// Areas each household is cloned into.
    pub areas: usize,
    /// Targets over the whole country (touch every area).
    pub national: usize,
    /// Targets per area.
    pub per_area: usize,
    /// Probability that a household has a nonzero value for a given attribute.
    pub density: f64,
    /// Share of columns with a nonzero true weight.
    pub true_share: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for GeoSpec {
    /// The benchmark problem: 5000 households x 50 areas = 250,000 columns,
    /// 30 national + 40 x 50 per-area targets, about 7M nonzeros.
    fn default() -> Self {
        GeoSpec {
            households: 5000,
            areas: 50,
            national: 30,
            per_area: 40,
            density: 0.4,
            true_share: 0.2,
            seed: 1,
        }
    }
}

/// A generated problem and the truth behind it.
#[derive(Clone, Debug)]
pub struct SynthProblem {
    /// Targets x columns.
    pub matrix: SparseMatrix,
    /// `M w_true`.
    pub targets: Vec<f64>,
    /// Group of each target (0 = national, 1 + g = area g).
    pub groups: Vec<i64>,
    /// A readable name per target.
    pub names: Vec<String>,
    /// The weights the targets were made from.
    pub true_weights: Vec<f64>,
}

/// Builds the geo-stacked problem described by `spec`.
pub fn geo_stacked(spec: &GeoSpec) -> Result<SynthProblem> {
    let (h, g) = (spec.households, spec.areas);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let attrs = spec.national + spec.per_area;
    // value[a][h]: household h's value for attribute a (0 = absent).
    let value: Vec<Vec<f64>> = (0..attrs)
        .map(|_| {
            (0..h)
                .map(|_| {
                    if rng.random::<f64>() < spec.density {
                        1.0 + 9.0 * rng.random::<f64>()
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let n = h * g;
    let true_weights: Vec<f64> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < spec.true_share {
                1.0 + 4.0 * rng.random::<f64>()
            } else {
                0.0
            }
        })
        .collect();
    let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
    let (mut groups, mut names) = (Vec::new(), Vec::new());
    let mut push_row = |areas: std::ops::Range<usize>, a: usize| {
        for area in areas {
            for (hh, &v) in value[a].iter().enumerate() {
                if v != 0.0 {
                    indices.push((area * h + hh) as u64);
                    data.push(v);
                }
            }
        }
        indptr.push(indices.len() as u64);
    };
    for a in 0..spec.national {
        push_row(0..g, a);
        groups.push(0);
        names.push(format!("national/attr{a}"));
    }
    for area in 0..g {
        for k in 0..spec.per_area {
            push_row(area..area + 1, spec.national + k);
            groups.push(1 + area as i64);
            names.push(format!("area{area}/attr{k}"));
        }
    }
    let rows = groups.len();
    let matrix = SparseMatrix::from_csr(rows, n, &indptr, &indices, &data)?;
    let targets = matrix.mul_vec(&true_weights)?;
    Ok(SynthProblem {
        matrix,
        targets,
        groups,
        names,
        true_weights,
    })
}

/// The reference README's problem: `Q x N` with the given density, values
/// uniform in [0, 1), targets uniform in [1e6, 1e8) (no exact solution).
pub fn readme_problem(
    q: usize,
    n: usize,
    density: f64,
    seed: u64,
) -> Result<(SparseMatrix, Vec<f64>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..q {
        for col in 0..n {
            if rng.random::<f64>() < density {
                r.push(row as u64);
                c.push(col as u64);
                v.push(rng.random::<f64>());
            }
        }
    }
    let m = SparseMatrix::from_triplets(q, n, &r, &c, &v)?;
    let y = (0..q)
        .map(|_| 1e6 + (1e8 - 1e6) * rng.random::<f64>())
        .collect();
    Ok((m, y))
}

/// A problem shaped like R `survey`'s `apipop` schools calibrated by
/// county: `records` schools, each in one of `areas` areas and one of three
/// school types, and six attributes per school (a count of 1, enrolment,
/// two test scores, the share on free meals and of English learners). The
/// targets are each area's totals of the six attributes (`6 areas` rows,
/// 294 for 49 areas), grouped by attribute (group `a` holds attribute
/// `a`'s totals in every area), over the whole population (every school
/// at weight 1, the true weights), so a sparse fit must reweight a few
/// schools to carry everyone. Deterministic in `seed`.
pub fn schools(records: usize, areas: usize, seed: u64) -> Result<SynthProblem> {
    const ATTRS: [&str; 6] = ["schools", "enroll", "api00", "api99", "meals", "ell"];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || -> f64 { rng.sample(rand_distr::StandardNormal) };
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for school in 0..records {
        // Every area has a school; the rest crowd into the first areas.
        let area = match school < areas {
            true => school,
            false => (normal().abs() * areas as f64 / 2.5) as usize % areas,
        };
        let stype = school % 7 % 3; // elementary schools are the most common
        let enroll = (5.8 + 0.3 * stype as f64 + 0.6 * normal())
            .exp()
            .round()
            .max(20.0);
        let api00 = (650.0 + 100.0 * normal() - 20.0 * stype as f64).clamp(300.0, 990.0);
        let api99 = (api00 - 30.0 + 25.0 * normal()).clamp(280.0, 990.0);
        let meals = (45.0 + 30.0 * normal()).clamp(0.0, 100.0);
        let ell = (0.5 * meals + 12.0 * normal()).clamp(0.0, 90.0);
        for (a, value) in [1.0, enroll, api00, api99, meals, ell]
            .into_iter()
            .enumerate()
        {
            if value != 0.0 {
                r.push((area * ATTRS.len() + a) as u64);
                c.push(school as u64);
                v.push(value);
            }
        }
    }
    let rows = areas * ATTRS.len();
    let matrix = SparseMatrix::from_triplets(rows, records, &r, &c, &v)?;
    let true_weights = vec![1.0; records];
    let targets = matrix.mul_vec(&true_weights)?;
    let (mut groups, mut names) = (Vec::new(), Vec::new());
    for area in 0..areas {
        for (a, attr) in ATTRS.iter().enumerate() {
            groups.push(a as i64);
            names.push(format!("area{area}/{attr}"));
        }
    }
    Ok(SynthProblem {
        matrix,
        targets,
        groups,
        names,
        true_weights,
    })
}

/// A regression problem with equicorrelated features: row `q` draws a common
/// factor `c` and `x_qj = sqrt(rho) c + sqrt(1 - rho) e_qj` (unit variance,
/// pairwise correlation `rho`), then `y_q = intercept + x_q . truth +
/// noise_sd eps_q`. Returns `(x row-major n x truth.len(), y)`. With
/// `truth = [1, 0, -2, 0]`, `rho = 0.5`, intercept 30 and noise sd 1.5 it is
/// the l0-python README's variable-selection demo.
pub fn correlated_regression(
    n: usize,
    truth: &[f64],
    rho: f64,
    intercept: f64,
    noise_sd: f64,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let p = truth.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || -> f64 { rng.sample(rand_distr::StandardNormal) };
    let (mut x, mut y) = (vec![0.0; n * p], vec![0.0; n]);
    for q in 0..n {
        let c = normal();
        for j in 0..p {
            x[q * p + j] = rho.sqrt() * c + (1.0 - rho).sqrt() * normal();
        }
        let signal: f64 = (0..p).map(|j| truth[j] * x[q * p + j]).sum();
        y[q] = intercept + signal + noise_sd * normal();
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geo_stacked_has_the_promised_layout() {
        let spec = GeoSpec {
            households: 50,
            areas: 4,
            national: 3,
            per_area: 2,
            ..Default::default()
        };
        let p = geo_stacked(&spec).unwrap();
        assert_eq!(p.matrix.rows(), 3 + 4 * 2);
        assert_eq!(p.matrix.cols(), 200);
        assert_eq!(p.groups[..4], [0, 0, 0, 1]);
        // A per-area row touches only its area's columns.
        let csr = p.matrix.csr();
        let row = csr.outer_view(3 + 2 * 2).unwrap();
        assert!(row
            .indices()
            .iter()
            .all(|&j| (100..150).contains(&(j as usize))));
        // National rows repeat the same household pattern in every area.
        let nat = csr.outer_view(0).unwrap();
        assert_eq!(nat.nnz() % 4, 0);
        let y = p.matrix.mul_vec(&p.true_weights).unwrap();
        assert_eq!(y, p.targets);
    }

    #[test]
    fn correlated_regression_has_the_asked_correlation() {
        let (x, y) = correlated_regression(20_000, &[1.0, 0.0, -2.0], 0.5, 30.0, 1.5, 3);
        let col = |j: usize| -> Vec<f64> { (0..20_000).map(|q| x[q * 3 + j]).collect() };
        let (a, b) = (col(0), col(1));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let cov = |u: &[f64], v: &[f64]| {
            let (mu, mv) = (mean(u), mean(v));
            u.iter()
                .zip(v)
                .map(|(p, q)| (p - mu) * (q - mv))
                .sum::<f64>()
                / u.len() as f64
        };
        let corr = cov(&a, &b) / (cov(&a, &a) * cov(&b, &b)).sqrt();
        assert!((corr - 0.5).abs() < 0.02, "correlation {corr}");
        assert!((cov(&a, &a) - 1.0).abs() < 0.03);
        assert!((mean(&y) - 30.0).abs() < 0.1);
    }
}
