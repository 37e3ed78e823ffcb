//! Finite-difference checks of the hand-derived gradients, in f64, for every
//! loss, penalty, magnitude and clamp combination, and of the CPU backend's
//! f32 gradients against the f64 derivation.

mod common;

use common::{assert_close, f64s, Rng};
use l0::backend::cpu::CpuBackend;
use l0::backend::{Backend, Hyper, Noise, ParamState, Problem};
use l0::hard_concrete::{ColumnRule, Magnitude};
use l0::SparseMatrix;

struct Setup {
    q: usize,
    n: usize,
    dense: Vec<f64>, // q x n row-major
    y: Vec<f64>,
    g: Vec<f64>,
    d: Vec<f64>,
    u: Vec<f64>,
    hyper: Hyper,
}

impl Setup {
    fn new(rng: &mut Rng, relative: bool, hyper: Hyper) -> Self {
        let (q, n) = (5, 9);
        let dense: Vec<f64> = (0..q * n)
            .map(|_| {
                if rng.uniform() < 0.6 {
                    0.2 + 2.0 * rng.uniform()
                } else {
                    0.0
                }
            })
            .collect();
        let y: Vec<f64> = (0..q).map(|_| 3.0 + 10.0 * rng.uniform()).collect();
        let g: Vec<f64> = (0..q).map(|_| 0.2 + rng.uniform()).collect();
        let d = if relative {
            y.iter().map(|v| v + 1.0).collect()
        } else {
            vec![1.0; q]
        };
        // Include draws that the 1e-6 clamp catches.
        let mut u: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        u[0] = 1e-9;
        u[1] = 1.0 - 1e-9;
        Setup {
            q,
            n,
            dense,
            y,
            g,
            d,
            u,
            hyper,
        }
    }

    fn rule(&self) -> ColumnRule<f64> {
        self.hyper.rule()
    }

    fn loss(&self, p: &[f64], a: &[f64], b: f64) -> f64 {
        let rule = self.rule();
        let w: Vec<f64> = (0..self.n)
            .map(|i| rule.forward(p[i], a[i], self.u[i]).w)
            .collect();
        let mut l = 0.0;
        for q in 0..self.q {
            let yhat: f64 = b
                + (0..self.n)
                    .map(|i| self.dense[q * self.n + i] * w[i])
                    .sum::<f64>();
            let e = (self.y[q] - yhat) / self.d[q];
            l += self.g[q] * e * e;
        }
        for i in 0..self.n {
            let (pi, m2) = rule.penalties(p[i], a[i]);
            l += self.hyper.lambda_l0 * pi;
            if self.hyper.lambda_l2 > 0.0 {
                l += self.hyper.lambda_l2 * m2;
            }
        }
        l
    }

    /// The analytic gradient: r = dL/dyhat, g_w = M^T r, chain rule per column.
    fn gradient(&self, p: &[f64], a: &[f64], b: f64) -> (Vec<f64>, Vec<f64>, f64) {
        let rule = self.rule();
        let f: Vec<_> = (0..self.n)
            .map(|i| rule.forward(p[i], a[i], self.u[i]))
            .collect();
        let r: Vec<f64> = (0..self.q)
            .map(|q| {
                let yhat: f64 = b
                    + (0..self.n)
                        .map(|i| self.dense[q * self.n + i] * f[i].w)
                        .sum::<f64>();
                -2.0 * self.g[q] * (self.y[q] - yhat) / self.d[q] / self.d[q]
            })
            .collect();
        let (mut gp, mut ga) = (vec![0.0; self.n], vec![0.0; self.n]);
        for i in 0..self.n {
            let gw: f64 = (0..self.q).map(|q| self.dense[q * self.n + i] * r[q]).sum();
            (gp[i], ga[i]) = rule.gradient(&f[i], a[i], gw);
        }
        (gp, ga, r.iter().sum())
    }
}

fn hyper(magnitude: Magnitude, use_gates: bool, lambda_l2: f64) -> Hyper {
    Hyper {
        lambda_l0: 0.05,
        lambda_l2,
        magnitude,
        use_gates,
        ..Default::default()
    }
}

/// Parameters spread over the interesting regions: gates partly open, gates
/// saturated at 0 or 1, logits beyond the +-20 clamp.
fn params(rng: &mut Rng, n: usize, magnitude: Magnitude) -> (Vec<f64>, Vec<f64>) {
    let p: Vec<f64> = (0..n)
        .map(|_| match magnitude {
            Magnitude::Exp => -0.5 + rng.uniform(),
            Magnitude::Linear => -1.5 + 3.0 * rng.uniform(),
        })
        .collect();
    let mut a: Vec<f64> = (0..n).map(|_| -2.0 + 4.0 * rng.uniform()).collect();
    a[2] = 25.0; // beyond the clamp: no gradient through the gate
    a[3] = -30.0;
    a[4] = 6.0; // gate saturated at 1 for most draws
    a[5] = -7.0; // gate saturated at 0
    (p, a)
}

#[test]
fn analytic_gradients_match_finite_differences() {
    let mut rng = Rng(7);
    let h = 1e-6;
    for relative in [false, true] {
        for magnitude in [Magnitude::Exp, Magnitude::Linear] {
            for use_gates in [true, false] {
                for lambda_l2 in [0.0, 0.3] {
                    let s = Setup::new(&mut rng, relative, hyper(magnitude, use_gates, lambda_l2));
                    let (p, a) = params(&mut rng, s.n, magnitude);
                    let b = 0.7;
                    let (gp, ga, gb) = s.gradient(&p, &a, b);
                    let label = format!(
                        "relative={relative} {magnitude:?} gates={use_gates} l2={lambda_l2}"
                    );
                    let mut fd_p = vec![0.0; s.n];
                    let mut fd_a = vec![0.0; s.n];
                    for i in 0..s.n {
                        let (mut pp, mut pm) = (p.clone(), p.clone());
                        pp[i] += h;
                        pm[i] -= h;
                        fd_p[i] = (s.loss(&pp, &a, b) - s.loss(&pm, &a, b)) / (2.0 * h);
                        let (mut ap, mut am) = (a.clone(), a.clone());
                        ap[i] += h;
                        am[i] -= h;
                        fd_a[i] = (s.loss(&p, &ap, b) - s.loss(&p, &am, b)) / (2.0 * h);
                    }
                    let fd_b = (s.loss(&p, &a, b + h) - s.loss(&p, &a, b - h)) / (2.0 * h);
                    assert_close(&format!("{label}: dL/dp"), &gp, &fd_p, 1e-5, 1e-6);
                    assert_close(&format!("{label}: dL/da"), &ga, &fd_a, 1e-5, 1e-6);
                    assert_close(&format!("{label}: dL/db"), &[gb], &[fd_b], 1e-5, 1e-6);
                    // The clamped logits get exactly zero gradient.
                    assert_eq!(ga[2], 0.0);
                    assert_eq!(ga[3], 0.0);
                }
            }
        }
    }
}

#[test]
fn cpu_backend_gradients_match_the_f64_derivation() {
    let mut rng = Rng(11);
    for magnitude in [Magnitude::Exp, Magnitude::Linear] {
        let mut hy = hyper(magnitude, true, 0.1);
        hy.fit_intercept = true;
        let s = Setup::new(&mut rng, true, hy);
        let (p, a) = params(&mut rng, s.n, magnitude);
        let m = SparseMatrix::from_dense(s.q, s.n, &s.dense).unwrap();
        // Round the inputs to f32 first, so both sides see the same numbers.
        let p32: Vec<f32> = p.iter().map(|&x| x as f32).collect();
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let u32s: Vec<f32> = s.u.iter().map(|&x| x as f32).collect();
        let table = vec![u32s.clone()];
        let s64 = Setup {
            u: f64s(&u32s),
            ..s
        };
        let (gp, ga, gb) = s64.gradient(&f64s(&p32), &f64s(&a32), 0.5);
        let problem = Problem {
            noise: Noise::Replay(&table),
            ..Problem::new(&m, &s64.y, &s64.g, &s64.d, hy)
        };
        let mut be = CpuBackend::new(problem, Some(1)).unwrap();
        be.load_state(&ParamState::new(p32, a32, Some(0.5)))
            .unwrap();
        be.sample_weights(0).unwrap();
        be.forward().unwrap();
        be.residual(0).unwrap();
        let (bp, ba, bb) = be.gradients().unwrap();
        let scale = gp.iter().chain(&ga).fold(0.0f64, |m, x| m.max(x.abs()));
        assert_close("backend dL/dp", &f64s(&bp), &gp, 1e-4, 1e-6 * scale);
        assert_close("backend dL/da", &f64s(&ba), &ga, 1e-4, 1e-6 * scale);
        assert_close("backend dL/db", &[bb.unwrap()], &[gb], 1e-5, 1e-9);
    }
}
