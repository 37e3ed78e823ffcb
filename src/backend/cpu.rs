//! The rayon CPU backend: the executable specification of every kernel.
//!
//! Work is split into fixed-size pieces (slabs of column chunks, row and
//! long-column segments, targets) whose partial f64 sums are combined in a
//! fixed order, so results are bit-for-bit the same whatever the number of
//! threads. With at most 65,536 rows and more than 30,720 columns, an
//! epoch reads the matrix once: the pass over the CSC columns computes the
//! gradients, updates the parameters, samples the next weights and scatters
//! the next forward product into one accumulator per slab (see
//! [`CpuBackend::forward`]). Per-column state is
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
use crate::matrix::LongColumns;
use rayon::prelude::*;

/// Columns per parallel task.
const COLUMN_CHUNK: usize = 2048;
/// Row (or long-column) segments per parallel task.
const SEGMENT_CHUNK: usize = 16;
/// The columns are split into at most this many slabs of whole chunks; a
/// slab is one parallel task, its chunks run in order.
const SLABS: usize = 64;
/// Up to this many rows, and with at least [`SCATTER_MIN_CHUNKS`] column
/// chunks, the forward product is scattered from the column passes into one
/// row-length f64 accumulator per slab (see [`CpuBackend::forward`]);
/// otherwise it is gathered over CSR row segments (which also keeps a few
/// long columns, a regression's features, on every thread).
const SCATTER_MAX_ROWS: usize = 1 << 16;
/// Fewest column chunks (so slabs, parallel tasks) for the scattered forward product.
const SCATTER_MIN_CHUNKS: usize = 16;

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
    /// Columns per slab: whole chunks, fixed by the problem's size.
    slab: usize,
    /// With few enough rows, one row-length block per slab holding that
    /// slab's share of `M w` for the current weights; empty otherwise.
    acc: Vec<f64>,
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
    /// State for `n` columns of a matrix with `rows` rows.
    fn new(n: usize, rows: usize) -> Self {
        let z = || vec![0.0f32; n];
        let chunks = n.div_ceil(COLUMN_CHUNK).max(1);
        let slab = chunks.div_ceil(SLABS) * COLUMN_CHUNK;
        let acc = if rows <= SCATTER_MAX_ROWS && chunks >= SCATTER_MIN_CHUNKS {
            vec![0.0; n.div_ceil(slab) * rows]
        } else {
            Vec::new()
        };
        Columns {
            slab,
            acc,
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

    /// Runs `pass` on every chunk: slabs in parallel, the chunks of a slab
    /// in order. With forward accumulators ([`Columns::acc`]), a pass that
    /// writes the weights then adds each chunk's `M_qi w_i` (from `csc`)
    /// into its slab's block, which it clears first.
    fn par_chunks(&mut self, pool: &rayon::ThreadPool, pass: &ChunkPass, csc: &crate::matrix::Csr) {
        let slab = self.slab;
        let slabs = self.p.len().div_ceil(slab);
        // One accumulator block per slab (empty ones without forward
        // accumulators), as a parallel iterator: nothing is allocated.
        let (scatter, accs) = if self.acc.is_empty() {
            let none = (0..slabs).into_par_iter().map(|_| &mut [][..]);
            (None, rayon::iter::Either::Left(none))
        } else {
            let rows = self.acc.len() / slabs;
            let blocks = self.acc.par_chunks_mut(rows);
            (
                Some(csc).filter(|_| pass.writes_weights()),
                rayon::iter::Either::Right(blocks),
            )
        };
        pool.install(|| {
            (
                self.s.par_chunks_mut(slab),
                self.p.par_chunks_mut(slab),
                self.a.par_chunks_mut(slab),
                self.m_p.par_chunks_mut(slab),
                self.v_p.par_chunks_mut(slab),
                self.m_a.par_chunks_mut(slab),
                self.v_a.par_chunks_mut(slab),
                self.w.par_chunks_mut(slab),
                accs,
            )
                .into_par_iter()
                .enumerate()
                .for_each(|(k, (s, p, a, m_p, v_p, m_a, v_a, w, acc))| {
                    let mut rest = Chunk {
                        base: k * slab,
                        s,
                        p,
                        a,
                        m_p,
                        v_p,
                        m_a,
                        v_a,
                        w,
                    };
                    if scatter.is_some() {
                        acc.fill(0.0);
                    }
                    while rest.len() > 0 {
                        let (mut ch, tail) = rest.split(COLUMN_CHUNK);
                        pass.run_simd(&mut ch);
                        if let Some(csc) = scatter {
                            scatter_weights(csc, ch.base, ch.w, acc);
                        }
                        rest = tail;
                    }
                })
        });
    }
}

/// `acc_q += M_qi w_i` for the columns `base..base + w.len()`, in column
/// order, products and sums in f64. Zero weights are skipped (adding a
/// zero product leaves the sum's bits unchanged), which saves most of the
/// work once the fit is sparse.
fn scatter_weights(csc: &crate::matrix::Csr, base: usize, w: &[f32], acc: &mut [f64]) {
    let ptr = csc.indptr();
    let (ptr, idx, val) = (ptr.raw_storage(), csc.indices(), csc.data());
    for (j, &wj) in w.iter().enumerate() {
        if wj == 0.0 {
            continue;
        }
        let k = ptr[base + j]..ptr[base + j + 1];
        let wj = wj as f64;
        for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
            acc[q as usize] += v as f64 * wj;
        }
    }
}

impl<'c> Chunk<'c> {
    fn len(&self) -> usize {
        self.p.len()
    }

    /// The first `n` columns (or all) and the rest.
    fn split(self, n: usize) -> (Chunk<'c>, Chunk<'c>) {
        let n = n.min(self.len());
        let (s, s2) = self.s.split_at_mut(n);
        let (p, p2) = self.p.split_at_mut(n);
        let (a, a2) = self.a.split_at_mut(n);
        let (m_p, m_p2) = self.m_p.split_at_mut(n);
        let (v_p, v_p2) = self.v_p.split_at_mut(n);
        let (m_a, m_a2) = self.m_a.split_at_mut(n);
        let (v_a, v_a2) = self.v_a.split_at_mut(n);
        let (w, w2) = self.w.split_at_mut(n);
        let head = Chunk {
            base: self.base,
            s,
            p,
            a,
            m_p,
            v_p,
            m_a,
            v_a,
            w,
        };
        let tail = Chunk {
            base: self.base + n,
            s: s2,
            p: p2,
            a: a2,
            m_p: m_p2,
            v_p: v_p2,
            m_a: m_a2,
            v_a: v_a2,
            w: w2,
        };
        (head, tail)
    }

    /// Draws the noise of this chunk's columns, caches `s` and writes the
    /// training weights.
    #[inline(always)]
    fn sample(&mut self, rule: &ColumnRule<f32>, noise: &mut NoiseCursor) {
        let n = self.len();
        if rule.use_gates {
            let mut u = [0.0f32; COLUMN_CHUNK];
            let u = &mut u[..n];
            for (j, u) in u.iter_mut().enumerate() {
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

    /// The chain rule through the gates of the last sampling and Adam on
    /// both parameters of every column, given `g_w` per column, then the
    /// weight caps' projection `p <= max_p` (`max_p` indexed by column).
    /// Every slice is cut to the chunk's length first, so the loops have no
    /// bounds checks and vectorise.
    #[inline(always)]
    fn update(
        &mut self,
        rule: &ColumnRule<f32>,
        adam: AdamStep,
        gw: &[f32],
        max_p: Option<&[f32]>,
    ) {
        let n = self.len();
        let (s, gw) = (&self.s[..n], &gw[..n]);
        let (p, m_p, v_p) = (&mut self.p[..n], &mut self.m_p[..n], &mut self.v_p[..n]);
        let (a, m_a, v_a) = (&mut self.a[..n], &mut self.m_a[..n], &mut self.v_a[..n]);
        for j in 0..n {
            let f = rule.forward_s(p[j], a[j], s[j]);
            let (gp, ga) = rule.gradient(&f, a[j], gw[j]);
            adam_update(&mut p[j], &mut m_p[j], &mut v_p[j], gp, adam);
            adam_update(&mut a[j], &mut m_a[j], &mut v_a[j], ga, adam);
        }
        if let Some(cap) = max_p {
            let cap = &cap[self.base..self.base + n];
            for j in 0..n {
                p[j] = p[j].min(cap[j]);
            }
        }
    }
}

/// What one pass over the column chunks does to each chunk.
enum ChunkPass<'a> {
    /// Training weights with the noise of `cursor`.
    Sample {
        rule: ColumnRule<f32>,
        cursor: NoiseCursor<'a>,
    },
    /// Deterministic (test-time) weights.
    Deterministic {
        rule: ColumnRule<f32>,
        test: TestGate,
    },
    /// Backward pass and Adam (then `p <= max_p`, the weight caps), then
    /// the training weights of the next step when `next` holds its noise.
    Step {
        rule: ColumnRule<f32>,
        adam: AdamStep,
        grad: ColumnGradient<'a>,
        max_p: Option<&'a [f32]>,
        next: Option<NoiseCursor<'a>>,
    },
}

impl ChunkPass<'_> {
    /// Whether the pass writes new weights.
    fn writes_weights(&self) -> bool {
        !matches!(self, ChunkPass::Step { next: None, .. })
    }

    /// The pass on one chunk. Always inlined, so that [`Self::run_simd`]'s
    /// AVX-512 and AVX2 builds compile the per-column loops for those.
    #[inline(always)]
    fn run(&self, ch: &mut Chunk) {
        match self {
            ChunkPass::Sample { rule, cursor } => ch.sample(rule, &mut cursor.clone()),
            ChunkPass::Deterministic { rule, test } => {
                let n = ch.len();
                let (p, a, w) = (&ch.p[..n], &ch.a[..n], &mut ch.w[..n]);
                for j in 0..n {
                    w[j] = rule.deterministic_weight(p[j], a[j], *test);
                }
            }
            ChunkPass::Step {
                rule,
                adam,
                grad,
                max_p,
                next,
            } => {
                let mut gw = [0.0f32; COLUMN_CHUNK];
                grad.fill(ch.base, &mut gw[..ch.len()]);
                ch.update(rule, *adam, &gw, *max_p);
                if let Some(cursor) = next {
                    ch.sample(rule, &mut cursor.clone());
                }
            }
        }
    }

    /// [`Self::run`] compiled for AVX-512 or AVX2 when the CPU has it, else
    /// as built: the per-column loops then use 16- or 8-lane vectors
    /// (AVX-512 took about 9% less CPU time per epoch than AVX2 on the
    /// 250k-column geo problem, AMD EPYC). The results are the same bits
    /// every way: Rust never contracts a product and a sum into an FMA, and
    /// the loops use only operations that are exact or correctly rounded in
    /// every instruction set (`+ - * /`, `sqrt`, `min`, comparisons,
    /// selects, integer bit tricks).
    #[inline(always)]
    fn run_simd(&self, ch: &mut Chunk) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512(pass: &ChunkPass, ch: &mut Chunk) {
                pass.run(ch)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { avx512(self, ch) };
            }
            #[target_feature(enable = "avx2")]
            fn avx2(pass: &ChunkPass, ch: &mut Chunk) {
                pass.run(ch)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { avx2(self, ch) };
            }
        }
        self.run(ch)
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
    /// Partial sums of the long columns' segments in the transpose product.
    long_partials: Vec<f64>,
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
        let cols = Columns::new(n, q);
        // Segment partials only where the forward product gathers over CSR.
        let segments = if cols.acc.is_empty() {
            problem.matrix.segments().len()
        } else {
            0
        };
        Ok(CpuBackend {
            pool,
            problem,
            rule: problem.hyper.rule(),
            cols,
            intercept: None,
            yhat: vec![0.0; q],
            r: vec![0.0; q],
            partials: vec![0.0; segments],
            long_partials: vec![0.0; problem.matrix.long_columns().ranges.len()],
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

    /// A cursor over the noise of `step`.
    fn cursor(&self, step: u64) -> NoiseCursor<'a> {
        NoiseCursor::new(self.problem.noise, self.problem.hyper.seed, step)
    }

    /// The partial sums `sum_{k in segment} M_k r_row(k)` of the segments of
    /// the long columns ([`LongColumns`]), in parallel over fixed groups of
    /// segments.
    fn long_column_partials(&mut self) {
        let m = self.problem.matrix;
        let (ranges, csc, r) = (&m.long_columns().ranges, m.csc(), &self.r);
        let (idx, val) = (csc.indices(), csc.data());
        self.pool.install(|| {
            self.long_partials
                .par_chunks_mut(SEGMENT_CHUNK)
                .zip(ranges.par_chunks(SEGMENT_CHUNK))
                .for_each(|(out, ranges)| {
                    for (o, k) in out.iter_mut().zip(ranges) {
                        *o = gather_dot(&val[k.clone()], &idx[k.clone()], |q| r[q]);
                    }
                })
        });
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
        let pass = ChunkPass::Sample {
            rule: self.rule,
            cursor: self.cursor(step),
        };
        self.cols
            .par_chunks(&self.pool, &pass, self.problem.matrix.csc());
        Ok(())
    }

    /// `w_i = m(p_i) z_test(a_i)`.
    /// GPU twin: kernel `deterministic_weights` (kernels/gates.cu).
    fn deterministic_weights(&mut self, test: TestGate) -> Result<()> {
        let pass = ChunkPass::Deterministic {
            rule: self.rule,
            test,
        };
        self.cols
            .par_chunks(&self.pool, &pass, self.problem.matrix.csc());
        Ok(())
    }

    /// `yhat_q = b + sum_i M_qi w_i` in f64, one of two ways, fixed by the
    /// problem's shape so results never depend on the thread count:
    ///
    /// * up to `SCATTER_MAX_ROWS` (65,536) rows and from `SCATTER_MIN_CHUNKS`
    ///   (16) chunks of columns (more than 30,720 columns), the passes that write the weights
    ///   have already added each slab's `M_qi w_i` into its own row-length
    ///   block (`Columns::acc`), while the column's CSC entries were in
    ///   cache for the backward pass; here the blocks are summed in slab
    ///   order. An epoch then reads the matrix once.
    /// * otherwise (a regression with many samples or few features, a small
    ///   problem), segment partials
    ///   `sum_{k in segment} M_k w_col(k)` over CSR row segments, summed per
    ///   row in segment order.
    ///
    /// GPU twins: kernels `spmv_segments` (a warp per segment) and
    /// `spmv_combine` (a warp per row), kernels/spmv.cu, which sum in the
    /// second way.
    fn forward(&mut self) -> Result<()> {
        let b = self.intercept.map_or(0.0, |s| s.value as f64);
        let acc = &self.cols.acc;
        if !acc.is_empty() {
            let rows = self.yhat.len();
            let slabs = acc.len() / rows;
            self.pool.install(|| {
                self.yhat
                    .par_chunks_mut(1024)
                    .enumerate()
                    .for_each(|(k, out)| {
                        for (j, y) in out.iter_mut().enumerate() {
                            let q = k * 1024 + j;
                            *y = b + (0..slabs).fold(0.0, |sum, s| sum + acc[s * rows + q]);
                        }
                    })
            });
            return Ok(());
        }
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
        self.long_column_partials();
        let pass = ChunkPass::Step {
            rule,
            adam,
            grad: ColumnGradient::new(self.problem.matrix, &self.r, &self.long_partials),
            max_p: self.problem.max_p,
            next: sample_next.then(|| self.cursor(step + 1)),
        };
        self.cols
            .par_chunks(&self.pool, &pass, self.problem.matrix.csc());
        Ok(())
    }

    /// `(dL/dp, dL/da)` per column as in [`Backend::step`] without the
    /// update, and `sum_q r_q` for the intercept.
    /// GPU twin: kernel `gradient_columns` (kernels/step.cu).
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        let rule = self.rule;
        self.long_column_partials();
        let c = &self.cols;
        let grad = ColumnGradient::new(self.problem.matrix, &self.r, &self.long_partials);
        let n = c.p.len();
        let (mut gp, mut ga) = (vec![0.0f32; n], vec![0.0f32; n]);
        self.pool.install(|| {
            gp.par_iter_mut()
                .zip(ga.par_iter_mut())
                .enumerate()
                .for_each(|(i, (gp, ga))| {
                    let f = rule.forward_s(c.p[i], c.a[i], c.s[i]);
                    let mut g_w = [0.0f32];
                    grad.fill(i, &mut g_w);
                    (*gp, *ga) = rule.gradient(&f, c.a[i], g_w[0]);
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

/// `g_w,i = (M^T r)_i = sum_{q in column i} M_qi r_q`, in f64, rounded to
/// f32: a column of at most [`crate::matrix::SEGMENT_NNZ`] nonzeros is
/// summed whole, a longer one as the in-order sum of its segments' partials
/// (computed beforehand, in parallel, by
/// [`CpuBackend::long_column_partials`]).
struct ColumnGradient<'m> {
    csc: &'m crate::matrix::Csr,
    long: &'m LongColumns,
    r: &'m [f64],
    long_partials: &'m [f64],
}

impl<'m> ColumnGradient<'m> {
    fn new(m: &'m crate::matrix::SparseMatrix, r: &'m [f64], long_partials: &'m [f64]) -> Self {
        ColumnGradient {
            csc: m.csc(),
            long: m.long_columns(),
            r,
            long_partials,
        }
    }

    /// `out[j] = g_w` of column `base + j`.
    #[inline]
    fn fill(&self, base: usize, out: &mut [f32]) {
        let (ptr, idx, val) = (self.csc.indptr(), self.csc.indices(), self.csc.data());
        let (ptr, r, long) = (ptr.raw_storage(), self.r, self.long);
        // The long columns inside this range, in order.
        let mut next = long.cols.partition_point(|&c| (c as usize) < base);
        for (j, o) in out.iter_mut().enumerate() {
            let i = base + j;
            let g = if long.cols.get(next) == Some(&(i as u32)) {
                let segs = long.seg_ptr[next]..long.seg_ptr[next + 1];
                next += 1;
                self.long_partials[segs].iter().fold(0.0, |acc, &x| acc + x)
            } else {
                let k = ptr[i]..ptr[i + 1];
                gather_dot(&val[k.clone()], &idx[k], |q| r[q])
            };
            *o = g as f32;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Hyper, Noise};
    use crate::matrix::SparseMatrix;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The chunked, vectorised step equals the plain per-column formulas of
    /// [`crate::hard_concrete`] (evaluated here one column at a time, outside
    /// any vector build) bit for bit, clamp edges and weight caps included.
    #[test]
    fn vectorised_step_equals_the_per_column_formulas() {
        let (q, n) = (7usize, 2 * COLUMN_CHUNK + 333);
        let mut rng = StdRng::seed_from_u64(3);
        let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            for r in 0..q {
                if rng.random::<f64>() < 0.5 {
                    rows.push(r as u64);
                    cols.push(i as u64);
                    vals.push(rng.random::<f64>() * 3.0);
                }
            }
        }
        let m = SparseMatrix::from_triplets(q, n, &rows, &cols, &vals).unwrap();
        let y: Vec<f64> = (0..q).map(|k| 10.0 + k as f64).collect();
        let (weight, denom) = (vec![1.0; q], vec![1.0; q]);
        let hyper = Hyper {
            lambda_l0: 0.05,
            lambda_l2: 0.01,
            lr: 0.1,
            seed: 9,
            ..Default::default()
        };
        let problem = Problem {
            matrix: &m,
            targets: &y,
            target_weight: &weight,
            denom: &denom,
            hyper,
            noise: Default::default(),
            max_p: None,
        };
        let mut uniform = |lo: f32, hi: f32| -> Vec<f32> {
            (0..n)
                .map(|_| lo + (hi - lo) * rng.random::<f32>())
                .collect()
        };
        let mut state = ParamState::new(uniform(-3.0, 3.0), uniform(-24.0, 24.0), None);
        state.a[..4].copy_from_slice(&[20.0, -20.0, 25.0, 0.0]);
        state.m_p = uniform(-0.1, 0.1);
        state.v_p = uniform(0.0, 0.01);
        state.m_a = uniform(-0.1, 0.1);
        state.v_a = uniform(0.0, 0.01);
        // Weight caps on every column, binding on some of them.
        let caps = uniform(-1.0, 5.0);
        let problem = Problem {
            max_p: Some(&caps),
            ..problem
        };
        let mut b = CpuBackend::new(problem, Some(2)).unwrap();
        b.load_state(&state).unwrap();
        let step = 4;
        b.sample_weights(step).unwrap();
        b.forward().unwrap();
        b.residual(step).unwrap();
        let (before, r) = (b.cols.clone(), b.r.clone());
        b.step(step, true).unwrap();

        let rule: ColumnRule<f32> = hyper.rule();
        let adam = AdamStep::new(hyper.lr, step + 1);
        let csc = m.csc();
        let mut next = NoiseCursor::new(Noise::Philox, hyper.seed, step + 1);
        let c = &before;
        for i in 0..n {
            let k = csc.indptr().outer_inds_sz(i);
            let gw = gather_dot(&csc.data()[k.clone()], &csc.indices()[k], |q| r[q]) as f32;
            let f = rule.forward_s(c.p[i], c.a[i], c.s[i]);
            let (gp, ga) = rule.gradient(&f, c.a[i], gw);
            let (mut p, mut m_p, mut v_p) = (c.p[i], c.m_p[i], c.v_p[i]);
            let (mut a, mut m_a, mut v_a) = (c.a[i], c.m_a[i], c.v_a[i]);
            adam_update(&mut p, &mut m_p, &mut v_p, gp, adam);
            adam_update(&mut a, &mut m_a, &mut v_a, ga, adam);
            p = p.min(caps[i]);
            let s = rule.gate.noisy_s(a, next.uniform(i));
            let w = rule.forward_s(p, a, s).w;
            let got = &b.cols;
            let want = [p, a, m_p, v_p, m_a, v_a, s, w];
            let have = [
                got.p[i], got.a[i], got.m_p[i], got.v_p[i], got.m_a[i], got.v_a[i], got.s[i],
                got.w[i],
            ];
            assert_eq!(want.map(f32::to_bits), have.map(f32::to_bits), "column {i}");
        }
    }
}
