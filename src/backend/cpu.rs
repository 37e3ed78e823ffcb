//! The rayon CPU backend: the executable specification of every kernel.
//!
//! Work is split into fixed-size chunks (columns, row segments, targets)
//! whose partial f64 sums are combined in a fixed order, so results are
//! bit-for-bit the same whatever the number of threads. Per-column state is
//! kept as an array of structs (one cache line serves all six values).
//!
//! Each method's doc comment states the math once and names its GPU twin in
//! `kernels/` (see [`super::cuda`]); the kernels compute the same formulas
//! in the same precision, summing in a different (but fixed) order.

use super::{Backend, Losses, NoiseCursor, ParamState, Problem, ScalarState, WeightSummary};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{adam_update, AdamStep, ColumnRule, TestGate};
use rayon::prelude::*;

/// Columns per parallel task.
const COLUMN_CHUNK: usize = 4096;
/// Row segments per parallel task in the forward product.
const SEGMENT_CHUNK: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
struct Column {
    /// The gate's pre-stretch value `s` of the last sampling, kept so the
    /// backward pass need not redraw the noise.
    s: f32,
    p: f32,
    a: f32,
    m_p: f32,
    v_p: f32,
    m_a: f32,
    v_a: f32,
}

/// The CPU implementation of [`Backend`].
pub struct CpuBackend<'a> {
    pool: rayon::ThreadPool,
    problem: Problem<'a>,
    rule: ColumnRule<f32>,
    cols: Vec<Column>,
    intercept: Option<ScalarState>,
    w: Vec<f32>,
    yhat: Vec<f64>,
    r: Vec<f64>,
    partials: Vec<f64>,
    data_loss: f64,
    bad_step: Option<u64>,
}

impl<'a> CpuBackend<'a> {
    /// A backend on a pool of `threads` threads (None: one per core).
    pub fn new(problem: Problem<'a>, threads: Option<usize>) -> Result<Self> {
        if threads == Some(0) {
            return Err(L0Error::config("threads must be at least 1"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .build()
            .map_err(|e| L0Error::config(format!("cannot start the thread pool: {e}")))?;
        let (q, n) = (problem.matrix.rows(), problem.matrix.cols());
        Ok(CpuBackend {
            pool,
            problem,
            rule: problem.hyper.rule(),
            cols: vec![Column::default(); n],
            intercept: None,
            w: vec![0.0; n],
            yhat: vec![0.0; q],
            r: vec![0.0; q],
            partials: vec![0.0; problem.matrix.segments().len()],
            data_loss: 0.0,
            bad_step: None,
        })
    }

    /// A cursor factory over the noise of `step`.
    fn cursor(&self, step: u64) -> impl Fn() -> NoiseCursor<'a> + Sync {
        let (noise, seed) = (self.problem.noise, self.problem.hyper.seed);
        move || NoiseCursor::new(noise, seed, step)
    }

    /// `sum_i f(column i)` in f64 over fixed chunks, combined in order.
    fn sum_columns<T: Send + Sync + Copy>(
        &self,
        zero: T,
        add: impl Fn(T, T) -> T + Sync,
        f: impl Fn(usize, &Column, f32) -> T + Sync,
    ) -> T {
        let parts: Vec<T> = self.pool.install(|| {
            self.cols
                .par_chunks(COLUMN_CHUNK)
                .zip(self.w.par_chunks(COLUMN_CHUNK))
                .enumerate()
                .map(|(k, (c, w))| {
                    let base = k * COLUMN_CHUNK;
                    c.iter()
                        .zip(w)
                        .enumerate()
                        .fold(zero, |acc, (j, (c, &w))| add(acc, f(base + j, c, w)))
                })
                .collect()
        });
        parts.into_iter().fold(zero, add)
    }

    #[inline]
    fn column_gradient(&self, i: usize) -> f64 {
        column_gradient(self.problem.matrix.csc(), &self.r, i)
    }

    fn intercept_gradient(&self) -> Option<f64> {
        self.intercept.map(|_| self.r.iter().sum())
    }
}

impl Backend for CpuBackend<'_> {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", self.pool.current_num_threads())
    }

    fn rows(&self) -> usize {
        self.yhat.len()
    }

    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        if s.len() != self.cols.len() {
            return Err(L0Error::shape(
                "parameter vectors (one per matrix column)",
                self.cols.len(),
                s.len(),
            ));
        }
        for (i, c) in self.cols.iter_mut().enumerate() {
            *c = Column {
                s: c.s,
                p: s.p[i],
                a: s.a[i],
                m_p: s.m_p[i],
                v_p: s.v_p[i],
                m_a: s.m_a[i],
                v_a: s.v_a[i],
            };
        }
        self.intercept = s.intercept;
        Ok(())
    }

    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        let n = self.cols.len();
        for v in [
            &mut s.p, &mut s.a, &mut s.m_p, &mut s.v_p, &mut s.m_a, &mut s.v_a,
        ] {
            v.resize(n, 0.0);
        }
        for (i, c) in self.cols.iter().enumerate() {
            s.p[i] = c.p;
            s.a[i] = c.a;
            s.m_p[i] = c.m_p;
            s.v_p[i] = c.v_p;
            s.m_a[i] = c.m_a;
            s.v_a[i] = c.v_a;
        }
        s.intercept = self.intercept;
        Ok(())
    }

    /// `s_i = sigmoid((logit u(seed, step, i) + a_i) / beta)`, `w_i = m(p_i) z(s_i)`.
    /// GPU twin: kernel `sample_weights` (kernels/gates.cu).
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        let rule = self.rule;
        let cursor = self.cursor(step);
        par_columns(
            &self.pool,
            &mut self.cols,
            &mut self.w,
            cursor,
            |n, i, c, w| {
                *w = sample(&rule, n, i, c);
            },
        );
        Ok(())
    }

    /// `w_i = m(p_i) z_test(a_i)`.
    /// GPU twin: kernel `deterministic_weights` (kernels/gates.cu).
    fn deterministic_weights(&mut self, test: TestGate) -> Result<()> {
        let rule = self.rule;
        par_columns(
            &self.pool,
            &mut self.cols,
            &mut self.w,
            || (),
            |_, _, c, w| *w = rule.deterministic_weight(c.p, c.a, test),
        );
        Ok(())
    }

    /// Segment partials `sum_{k in segment} M_k w_col(k)` (f64), then
    /// `yhat_q = b + sum of row q's partials`, in segment order.
    /// GPU twins: kernels `spmv_segments` (a warp per segment) and
    /// `spmv_combine` (a warp per row), kernels/spmv.cu.
    fn forward(&mut self) -> Result<()> {
        let m = self.problem.matrix;
        let (seg, csr) = (m.segments(), m.csr());
        let (idx, val, w) = (csr.indices(), csr.data(), &self.w);
        let partials = &mut self.partials;
        self.pool.install(|| {
            partials
                .par_chunks_mut(SEGMENT_CHUNK)
                .enumerate()
                .for_each(|(k, out)| {
                    for (j, o) in out.iter_mut().enumerate() {
                        let s = k * SEGMENT_CHUNK + j;
                        let r = seg.start[s]..seg.start[s + 1];
                        *o = gather_dot(&val[r.clone()], &idx[r], |j| w[j] as f64);
                    }
                })
        });
        let b = self.intercept.map_or(0.0, |s| s.value as f64);
        for (q, y) in self.yhat.iter_mut().enumerate() {
            *y = b + self.partials[seg.row_ptr[q]..seg.row_ptr[q + 1]]
                .iter()
                .sum::<f64>();
        }
        Ok(())
    }

    /// `e_q = (y_q - yhat_q)/d_q`, `r_q = -2 g_q e_q / d_q`, loss `sum g_q e_q^2`.
    /// GPU twins: kernels `residual` (block partials of the loss and of
    /// `sum r_q`) and `residual_finalize` (in-order sum, first non-finite
    /// step), kernels/step.cu.
    fn residual(&mut self, step: u64) -> Result<()> {
        let p = self.problem;
        let mut loss = 0.0f64;
        for q in 0..self.r.len() {
            let e = (p.targets[q] - self.yhat[q]) / p.denom[q];
            self.r[q] = -2.0 * p.target_weight[q] * e / p.denom[q];
            loss += p.target_weight[q] * e * e;
        }
        self.data_loss = loss;
        if !loss.is_finite() && self.bad_step.is_none() {
            self.bad_step = Some(step);
        }
        Ok(())
    }

    /// Per column: `g_w = (M^T r)_i`, `(dL/dp, dL/da)` by the chain rule, Adam
    /// on both; then optionally the next step's sampled weight. The intercept
    /// takes an Adam step with gradient `sum_q r_q`.
    /// GPU twins: kernels `step_columns` (a group of lanes per CSC column)
    /// and `intercept_adam`, kernels/step.cu.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        let rule = self.rule;
        let adam = AdamStep::new(self.problem.hyper.lr, step + 1);
        if let (Some(g), Some(b)) = (self.intercept_gradient(), self.intercept.as_mut()) {
            adam_update(&mut b.value, &mut b.m, &mut b.v, g as f32, adam);
        }
        let (csc, r) = (self.problem.matrix.csc(), &self.r);
        let cursor = self.cursor(step + 1);
        par_columns(
            &self.pool,
            &mut self.cols,
            &mut self.w,
            cursor,
            |n, i, c, w| {
                let f = rule.forward_s(c.p, c.a, c.s);
                let g_w = column_gradient(csc, r, i) as f32;
                let (gp, ga) = rule.gradient(&f, c.a, g_w);
                adam_update(&mut c.p, &mut c.m_p, &mut c.v_p, gp, adam);
                adam_update(&mut c.a, &mut c.m_a, &mut c.v_a, ga, adam);
                if sample_next {
                    *w = sample(&rule, n, i, c);
                }
            },
        );
        Ok(())
    }

    /// `(dL/dp, dL/da)` per column as in [`Backend::step`] without the
    /// update, and `sum_q r_q` for the intercept.
    /// GPU twin: kernel `gradient_columns` (kernels/step.cu).
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        let rule = self.rule;
        let n = self.cols.len();
        let (mut gp, mut ga) = (vec![0.0f32; n], vec![0.0f32; n]);
        self.pool.install(|| {
            gp.par_iter_mut()
                .zip(ga.par_iter_mut())
                .enumerate()
                .for_each(|(i, (gp, ga))| {
                    let c = self.cols[i];
                    let f = rule.forward_s(c.p, c.a, c.s);
                    (*gp, *ga) = rule.gradient(&f, c.a, self.column_gradient(i) as f32);
                })
        });
        Ok((gp, ga, self.intercept_gradient()))
    }

    /// `L0 = sum_i pi_i`, `L2 = sum_i m(p_i)^2` (f64 sums) and the data loss
    /// of the last residual.
    /// GPU twins: kernels `penalties_partial` and `penalties_finalize`
    /// (kernels/gates.cu).
    fn losses(&mut self) -> Result<Losses> {
        let rule = self.rule;
        let (l0, l2) = self.sum_columns(
            (0.0f64, 0.0f64),
            |x, y| (x.0 + y.0, x.1 + y.1),
            |_, c, _| {
                let (pi, m2) = rule.penalties(c.p, c.a);
                (pi as f64, m2 as f64)
            },
        );
        Ok(Losses {
            data: self.data_loss,
            l0,
            l2,
        })
    }

    fn first_bad_step(&mut self) -> Result<Option<u64>> {
        Ok(self.bad_step)
    }

    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(&self.yhat);
        Ok(())
    }

    fn read_weights(&mut self, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.w);
        Ok(())
    }

    /// Nonzero weights and their size buckets ([`WeightSummary::of`]).
    /// GPU twin: kernel `weight_summary` (kernels/gates.cu).
    fn weight_summary(&mut self) -> Result<WeightSummary> {
        Ok(
            self.sum_columns(WeightSummary::default(), WeightSummary::merge, |_, _, w| {
                WeightSummary::of(w)
            }),
        )
    }
}

/// Draws column `i`'s gate noise, caches its `s` and returns its training weight.
#[inline(always)]
fn sample(rule: &ColumnRule<f32>, noise: &mut NoiseCursor, i: usize, c: &mut Column) -> f32 {
    if rule.use_gates {
        c.s = rule.gate.noisy_s(c.a, noise.uniform(i));
    }
    rule.forward_s(c.p, c.a, c.s).w
}

/// Applies `f(scratch, column index, state, weight)` to every column, in
/// parallel over fixed chunks; `init` makes each chunk's scratch (a noise
/// cursor).
fn par_columns<S>(
    pool: &rayon::ThreadPool,
    cols: &mut [Column],
    w: &mut [f32],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut Column, &mut f32) + Sync,
) {
    pool.install(|| {
        cols.par_chunks_mut(COLUMN_CHUNK)
            .zip(w.par_chunks_mut(COLUMN_CHUNK))
            .enumerate()
            .for_each(|(k, (c, w))| {
                let base = k * COLUMN_CHUNK;
                let mut scratch = init();
                for (j, (c, w)) in c.iter_mut().zip(w.iter_mut()).enumerate() {
                    f(&mut scratch, base + j, c, w);
                }
            })
    });
}

/// `g_w,i = (M^T r)_i = sum_{q in column i} M_qi r_q`, in f64.
#[inline]
fn column_gradient(csc: &crate::matrix::Csr, r: &[f64], i: usize) -> f64 {
    let ptr = csc.indptr();
    let range = ptr.outer_inds_sz(i);
    gather_dot(&csc.data()[range.clone()], &csc.indices()[range], |q| r[q])
}

/// `sum_k val[k] x(idx[k])` in f64 with four interleaved accumulators
/// (`acc[k mod 4]`, tail into `acc[0..]`, combined as `(a0 + a1) + (a2 + a3)`),
/// which breaks the add latency chain; the order is fixed, so results do not
/// depend on threads.
#[inline(always)]
fn gather_dot(val: &[f32], idx: &[u32], x: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let (v4, vt) = val.split_at(val.len() & !3);
    let (i4, it) = idx.split_at(v4.len());
    for (v, i) in v4.chunks_exact(4).zip(i4.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += v[k] as f64 * x(i[k] as usize);
        }
    }
    for (k, (v, i)) in vt.iter().zip(it).enumerate() {
        acc[k] += *v as f64 * x(*i as usize);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}
