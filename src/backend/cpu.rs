//! The rayon CPU backend: the executable specification of every kernel.
//!
//! Work is split into fixed-size chunks (columns, row segments, targets)
//! whose partial f64 sums are combined in a fixed order, so results are
//! bit-for-bit the same whatever the number of threads. Per-column state is
//! kept as a structure of arrays and each chunk's per-column math runs as
//! straight loops over slices, which the compiler vectorises (the f32
//! exponential and logarithm are branch-free polynomials, see
//! [`crate::hard_concrete::exp_f32`]). Products are never fused into FMAs,
//! so every instruction set gives the same bits.
//!
//! Each method's doc comment states the math once and names its GPU twin in
//! `kernels/` (see [`super::cuda`]); the kernels compute the same formulas
//! in the same precision, summing in a different (but fixed) order.

// The per-column loops index several parallel slices by one counter, which
// reads as the formula and vectorises; iterator zips of five slices do not.
#![allow(clippy::needless_range_loop)]

use super::{Backend, Losses, NoiseCursor, ParamState, Problem, ScalarState, WeightSummary};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{adam_update, AdamStep, ColumnRule, TestGate};
use rayon::prelude::*;

/// Columns per parallel task.
const COLUMN_CHUNK: usize = 2048;
/// Row segments per parallel task in the forward product.
const SEGMENT_CHUNK: usize = 16;

/// Per-column state, one array per quantity.
#[derive(Clone, Debug, Default)]
struct Columns {
    /// The gate's pre-stretch value `s` of the last sampling, kept so the
    /// backward pass need not redraw the noise.
    s: Vec<f32>,
    p: Vec<f32>,
    a: Vec<f32>,
    m_p: Vec<f32>,
    v_p: Vec<f32>,
    m_a: Vec<f32>,
    v_a: Vec<f32>,
    /// The current weights (sampled or deterministic).
    w: Vec<f32>,
}

/// One chunk of [`Columns`]: column `base + j` is entry `j` of each slice.
struct Chunk<'c> {
    base: usize,
    s: &'c mut [f32],
    p: &'c mut [f32],
    a: &'c mut [f32],
    m_p: &'c mut [f32],
    v_p: &'c mut [f32],
    m_a: &'c mut [f32],
    v_a: &'c mut [f32],
    w: &'c mut [f32],
}

impl Columns {
    fn new(n: usize) -> Self {
        let z = || vec![0.0f32; n];
        Columns {
            s: z(),
            p: z(),
            a: z(),
            m_p: z(),
            v_p: z(),
            m_a: z(),
            v_a: z(),
            w: z(),
        }
    }

    /// Runs `f` on every chunk, in parallel.
    fn par_chunks(&mut self, pool: &rayon::ThreadPool, f: impl Fn(Chunk) + Sync) {
        let c = COLUMN_CHUNK;
        pool.install(|| {
            (
                self.s.par_chunks_mut(c),
                self.p.par_chunks_mut(c),
                self.a.par_chunks_mut(c),
                self.m_p.par_chunks_mut(c),
                self.v_p.par_chunks_mut(c),
                self.m_a.par_chunks_mut(c),
                self.v_a.par_chunks_mut(c),
                self.w.par_chunks_mut(c),
            )
                .into_par_iter()
                .enumerate()
                .for_each(|(k, (s, p, a, m_p, v_p, m_a, v_a, w))| {
                    f(Chunk {
                        base: k * c,
                        s,
                        p,
                        a,
                        m_p,
                        v_p,
                        m_a,
                        v_a,
                        w,
                    })
                })
        });
    }
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        self.p.len()
    }

    /// Draws the noise of this chunk's columns, caches `s` and writes the
    /// training weights.
    #[inline(always)]
    fn sample(&mut self, rule: &ColumnRule<f32>, noise: &mut NoiseCursor) {
        let n = self.len();
        if rule.use_gates {
            let mut u = [0.0f32; COLUMN_CHUNK];
            for (j, u) in u[..n].iter_mut().enumerate() {
                *u = noise.uniform(self.base + j);
            }
            let (s, a) = (&mut self.s[..n], &self.a[..n]);
            for j in 0..n {
                s[j] = rule.gate.noisy_s(a[j], u[j]);
            }
        }
        let (s, p, a, w) = (&self.s[..n], &self.p[..n], &self.a[..n], &mut self.w[..n]);
        for j in 0..n {
            w[j] = rule.forward_s(p[j], a[j], s[j]).w;
        }
    }
}

/// The CPU implementation of [`Backend`].
pub struct CpuBackend<'a> {
    pool: rayon::ThreadPool,
    problem: Problem<'a>,
    rule: ColumnRule<f32>,
    cols: Columns,
    intercept: Option<ScalarState>,
    yhat: Vec<f64>,
    r: Vec<f64>,
    partials: Vec<f64>,
    data_loss: f64,
    bad_step: Option<u64>,
    /// Why the CPU was chosen over a present GPU, shown by `describe`.
    pub(crate) note: Option<String>,
}

impl<'a> CpuBackend<'a> {
    /// A backend on a pool of `threads` threads (None: one per core).
    pub fn new(problem: Problem<'a>, threads: Option<usize>) -> Result<Self> {
        if threads == Some(0) {
            return Err(L0Error::config("threads must be at least 1"));
        }
        problem.check_lengths()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .build()
            .map_err(|e| L0Error::config(format!("cannot start the thread pool: {e}")))?;
        let (q, n) = (problem.matrix.rows(), problem.matrix.cols());
        Ok(CpuBackend {
            pool,
            problem,
            rule: problem.hyper.rule(),
            cols: Columns::new(n),
            intercept: None,
            yhat: vec![0.0; q],
            r: vec![0.0; q],
            partials: vec![0.0; problem.matrix.segments().len()],
            data_loss: 0.0,
            bad_step: None,
            note: None,
        })
    }

    /// `sum_i f(p_i, a_i, w_i)` over fixed chunks, combined in order.
    fn sum_columns<T: Send + Sync + Copy>(
        &self,
        zero: T,
        add: impl Fn(T, T) -> T + Sync,
        f: impl Fn(f32, f32, f32) -> T + Sync,
    ) -> T {
        let c = &self.cols;
        let n = c.p.len();
        let parts: Vec<T> = self.pool.install(|| {
            (0..n.div_ceil(COLUMN_CHUNK))
                .into_par_iter()
                .map(|k| {
                    (k * COLUMN_CHUNK..n.min((k + 1) * COLUMN_CHUNK))
                        .fold(zero, |acc, i| add(acc, f(c.p[i], c.a[i], c.w[i])))
                })
                .collect()
        });
        parts.into_iter().fold(zero, add)
    }

    /// A cursor factory over the noise of `step`.
    fn cursor(&self, step: u64) -> impl Fn() -> NoiseCursor<'a> + Sync {
        let (noise, seed) = (self.problem.noise, self.problem.hyper.seed);
        move || NoiseCursor::new(noise, seed, step)
    }

    fn intercept_gradient(&self) -> Option<f64> {
        self.intercept.map(|_| self.r.iter().sum())
    }
}

impl Backend for CpuBackend<'_> {
    fn describe(&self) -> String {
        let threads = self.pool.current_num_threads();
        match &self.note {
            Some(n) => format!("cpu ({threads} threads; {n})"),
            None => format!("cpu ({threads} threads)"),
        }
    }

    fn rows(&self) -> usize {
        self.yhat.len()
    }

    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        let n = self.cols.p.len();
        let vecs = [&s.p, &s.a, &s.m_p, &s.v_p, &s.m_a, &s.v_a];
        if let Some(v) = vecs.iter().find(|v| v.len() != n) {
            return Err(L0Error::shape(
                "parameter vectors (one per matrix column)",
                n,
                v.len(),
            ));
        }
        let c = &mut self.cols;
        c.p.copy_from_slice(&s.p);
        c.a.copy_from_slice(&s.a);
        c.m_p.copy_from_slice(&s.m_p);
        c.v_p.copy_from_slice(&s.v_p);
        c.m_a.copy_from_slice(&s.m_a);
        c.v_a.copy_from_slice(&s.v_a);
        self.intercept = s.intercept;
        Ok(())
    }

    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        let c = &self.cols;
        for (dst, src) in [
            (&mut s.p, &c.p),
            (&mut s.a, &c.a),
            (&mut s.m_p, &c.m_p),
            (&mut s.v_p, &c.v_p),
            (&mut s.m_a, &c.m_a),
            (&mut s.v_a, &c.v_a),
        ] {
            dst.clear();
            dst.extend_from_slice(src);
        }
        s.intercept = self.intercept;
        Ok(())
    }

    /// `s_i = sigmoid((logit u(seed, step, i) + a_i) / beta)`, `w_i = m(p_i) z(s_i)`.
    /// GPU twin: kernel `sample_weights` (kernels/gates.cu).
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        let rule = self.rule;
        let cursor = self.cursor(step);
        self.cols
            .par_chunks(&self.pool, |mut ch| ch.sample(&rule, &mut cursor()));
        Ok(())
    }

    /// `w_i = m(p_i) z_test(a_i)`.
    /// GPU twin: kernel `deterministic_weights` (kernels/gates.cu).
    fn deterministic_weights(&mut self, test: TestGate) -> Result<()> {
        let rule = self.rule;
        self.cols.par_chunks(&self.pool, |ch| {
            for j in 0..ch.len() {
                ch.w[j] = rule.deterministic_weight(ch.p[j], ch.a[j], test);
            }
        });
        Ok(())
    }

    /// Segment partials `sum_{k in segment} M_k w_col(k)` (f64), then
    /// `yhat_q = b + sum of row q's partials`, in segment order.
    /// GPU twins: kernels `spmv_segments` (a warp per segment) and
    /// `spmv_combine` (a warp per row), kernels/spmv.cu.
    fn forward(&mut self) -> Result<()> {
        let m = self.problem.matrix;
        let (seg, csr) = (m.segments(), m.csr());
        let (idx, val, w) = (csr.indices(), csr.data(), &self.cols.w);
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

    /// Per column: `g_w = (M^T r)_i`, `(dL/dp, dL/da)` by the chain rule
    /// through the gates of the last sampling, Adam on both; then optionally
    /// the next step's sampled weight. The intercept takes an Adam step with
    /// gradient `sum_q r_q`. With [`Problem::max_p`], `p` is projected onto
    /// `p <= max_p` after its update (the weight caps).
    /// GPU twins: kernels `column_dots` (a group of lanes per CSC column),
    /// `step_columns` (a thread per column) and `intercept_adam`,
    /// kernels/step.cu.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        let rule = self.rule;
        let adam = AdamStep::new(self.problem.hyper.lr, step + 1);
        if let (Some(g), Some(b)) = (self.intercept_gradient(), self.intercept.as_mut()) {
            adam_update(&mut b.value, &mut b.m, &mut b.v, g as f32, adam);
        }
        let (csc, r) = (self.problem.matrix.csc(), &self.r);
        let max_p = self.problem.max_p;
        let cursor = self.cursor(step + 1);
        self.cols.par_chunks(&self.pool, |mut ch| {
            let n = ch.len();
            let mut gw = [0.0f32; COLUMN_CHUNK];
            for (j, g) in gw[..n].iter_mut().enumerate() {
                *g = column_gradient(csc, r, ch.base + j) as f32;
            }
            for j in 0..n {
                let (p, a) = (ch.p[j], ch.a[j]);
                let f = rule.forward_s(p, a, ch.s[j]);
                let (gp, ga) = rule.gradient(&f, a, gw[j]);
                adam_update(&mut ch.p[j], &mut ch.m_p[j], &mut ch.v_p[j], gp, adam);
                adam_update(&mut ch.a[j], &mut ch.m_a[j], &mut ch.v_a[j], ga, adam);
                // The weight caps: projection onto p <= max_p.
                if let Some(b) = max_p {
                    ch.p[j] = ch.p[j].min(b[ch.base + j]);
                }
            }
            if sample_next {
                ch.sample(&rule, &mut cursor());
            }
        });
        Ok(())
    }

    /// `(dL/dp, dL/da)` per column as in [`Backend::step`] without the
    /// update, and `sum_q r_q` for the intercept.
    /// GPU twin: kernel `gradient_columns` (kernels/step.cu).
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        let rule = self.rule;
        let (c, csc, r) = (&self.cols, self.problem.matrix.csc(), &self.r);
        let n = c.p.len();
        let (mut gp, mut ga) = (vec![0.0f32; n], vec![0.0f32; n]);
        self.pool.install(|| {
            gp.par_iter_mut()
                .zip(ga.par_iter_mut())
                .enumerate()
                .for_each(|(i, (gp, ga))| {
                    let f = rule.forward_s(c.p[i], c.a[i], c.s[i]);
                    let g_w = column_gradient(csc, r, i) as f32;
                    (*gp, *ga) = rule.gradient(&f, c.a[i], g_w);
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
            |p, a, _| {
                let (pi, m2) = rule.penalties(p, a);
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
        out.copy_from_slice(&self.cols.w);
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
