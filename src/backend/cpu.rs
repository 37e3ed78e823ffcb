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
//! straight loops over slices without branches (the f32 exponential and
//! logarithm are branch-free polynomials, see
//! [`crate::hard_concrete::exp_f32`]; the switches of a rule are fixed per
//! loop, [`fixed_switches`]), which the compiler vectorises for the
//! instruction set [`SimdPath`] picks at run time (AVX-512, AVX2 or the
//! baseline; `L0_SIMD` chooses). Products are never fused into FMAs, so
//! every path gives the same bits. A step at a report epoch also writes
//! what the report reads in the same pass ([`Backend::step_reported`]), so
//! a progress report does not read the matrix again.
//!
//! Several models (a λ sweep: one L0 strength each, the same seed and step)
//! can be trained together ([`CpuBackend::with_models`]). Each pass then
//! reads a column's CSC entries once for all of them: the per-row vectors
//! hold the models' values side by side (8 per group), so a
//! gathered residual row or a scattered product is one 8-wide vector
//! operation, and the gate noise, which only depends on (seed, step,
//! column), is drawn once per column. Every model's sums are formed in the
//! single model's exact order, so model `k` of a batch is bit for bit the
//! model trained alone with its L0 strength.
//!
//! Each method's doc comment states the math once and names its GPU twin in
//! `kernels/` (see [`super::cuda`]); the kernels compute the same formulas
//! in the same precision, summing in a different (but fixed) order.

// The per-column loops index several parallel slices by one counter, which
// reads as the formula and vectorises; iterator zips of five slices do not.
#![allow(clippy::needless_range_loop)]

use super::dots::{dot, gather_dot, Lanes, LANES};
use super::simd::{SimdPath, VectorWork};
use super::{Backend, Losses, NoiseCursor, ParamState, Problem, ScalarState, WeightSummary};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{adam_update, AdamStep, ColumnRule, Magnitude, TestGate};
use crate::matrix::{Csr, LongColumns, SparseMatrix};
use crate::objective::target_term;
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
/// long columns, a regression's features, on every thread). The choice
/// depends on the matrix only, never on the number of models.
const SCATTER_MAX_ROWS: usize = 1 << 16;
/// Fewest column chunks (so slabs, parallel tasks) for the scattered forward product.
const SCATTER_MIN_CHUNKS: usize = 16;

/// Evaluates `$body` with `$rule` (a `&ColumnRule<f32>`) rebound to a copy
/// whose switches (gates on or off, the magnitude) are constants: one copy
/// of the body per combination, so its per-column loops hold no branch on
/// them. AVX2 needs that to vectorise the loops (AVX-512's masked lanes
/// did without); the values computed are the same.
macro_rules! fixed_switches {
    ($rule:ident, $body:expr) => {
        match ($rule.use_gates, $rule.magnitude) {
            (true, Magnitude::Exp) => {
                let $rule = &with_switches($rule, true, Magnitude::Exp);
                $body
            }
            (true, Magnitude::Linear) => {
                let $rule = &with_switches($rule, true, Magnitude::Linear);
                $body
            }
            (false, Magnitude::Exp) => {
                let $rule = &with_switches($rule, false, Magnitude::Exp);
                $body
            }
            (false, Magnitude::Linear) => {
                let $rule = &with_switches($rule, false, Magnitude::Linear);
                $body
            }
        }
    };
}

/// `rule` with the given switches (see [`fixed_switches`]).
#[inline(always)]
fn with_switches(rule: &ColumnRule<f32>, use_gates: bool, magnitude: Magnitude) -> ColumnRule<f32> {
    ColumnRule {
        use_gates,
        magnitude,
        ..*rule
    }
}

/// One model's per-column state, one array per quantity.
#[derive(Clone, Debug, Default)]
struct ModelColumns {
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

impl ModelColumns {
    fn new(n: usize) -> Self {
        let z = || vec![0.0f32; n];
        ModelColumns {
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

    /// The columns as consecutive chunks of `len` columns (the last may be shorter).
    fn chunks(&mut self, len: usize) -> Vec<Chunk<'_>> {
        let ModelColumns {
            s,
            p,
            a,
            m_p,
            v_p,
            m_a,
            v_a,
            w,
        } = self;
        let mut rest = Chunk {
            base: 0,
            s,
            p,
            a,
            m_p,
            v_p,
            m_a,
            v_a,
            w,
        };
        let mut out = Vec::with_capacity(rest.len().div_ceil(len));
        while rest.len() > 0 {
            let (head, tail) = rest.split(len);
            out.push(head);
            rest = tail;
        }
        out
    }
}

/// The per-column state of every model trained together, and how a pass
/// over the columns is cut into parallel tasks.
#[derive(Clone, Debug)]
struct Columns {
    models: Vec<ModelColumns>,
    /// Columns per slab: whole chunks, fixed by the problem's size.
    slab: usize,
    /// Values per row in the per-row vectors: 1 for one model, else the
    /// models rounded up to whole groups of [`LANES`].
    lanes: usize,
    /// With few enough rows, one block of `rows x lanes` per slab holding
    /// that slab's share of `M w` for the current weights; empty otherwise.
    acc: Vec<f64>,
    /// For a single model with forward accumulators, one block of
    /// `rows x 2` per slab for a step that reports, row `q` holding its
    /// training and deterministic sums side by side (one vector operation
    /// adds both), and one [`ChunkReport`] per chunk of columns; empty
    /// otherwise.
    pairs: Vec<f64>,
    reports: Vec<ChunkReport>,
}

/// `v` cut into `n` equal blocks (`n` empty ones when `v` is empty).
fn blocks(v: &mut [f64], n: usize) -> Vec<&mut [f64]> {
    match v.len() / n {
        0 => (0..n).map(|_| &mut [][..]).collect(),
        block => v.chunks_mut(block).collect(),
    }
}

/// One chunk of a model's columns: column `base + j` is entry `j` of each slice.
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
    /// State for `models` models of `n` columns on a matrix with `rows` rows.
    fn new(models: usize, n: usize, rows: usize) -> Self {
        let chunks = n.div_ceil(COLUMN_CHUNK).max(1);
        let slab = chunks.div_ceil(SLABS) * COLUMN_CHUNK;
        let lanes = if models == 1 {
            1
        } else {
            models.next_multiple_of(LANES)
        };
        let acc = if rows <= SCATTER_MAX_ROWS && chunks >= SCATTER_MIN_CHUNKS {
            vec![0.0; n.div_ceil(slab) * rows * lanes]
        } else {
            Vec::new()
        };
        let fused = models == 1 && !acc.is_empty();
        Columns {
            models: (0..models).map(|_| ModelColumns::new(n)).collect(),
            slab,
            lanes,
            pairs: if fused {
                vec![0.0; 2 * acc.len()]
            } else {
                Vec::new()
            },
            reports: vec![ChunkReport::default(); if fused { chunks } else { 0 }],
            acc,
        }
    }

    /// Runs `pass` on every chunk of columns, all models' at once: slabs
    /// in parallel, the chunks of a slab in order. With forward
    /// accumulators ([`Columns::acc`]), a pass that writes the weights then
    /// adds each chunk's `M_qi w_i` (from `csc`) into its slab's block,
    /// which it clears first.
    fn par_chunks(&mut self, cpu: &Cpu, pass: &ChunkPass, csc: &Csr) {
        let (slab, lanes) = (self.slab, self.lanes);
        let mut tasks: Vec<Vec<Chunk>> = Vec::new();
        for m in &mut self.models {
            for (k, ch) in m.chunks(slab).into_iter().enumerate() {
                match tasks.get_mut(k) {
                    Some(t) => t.push(ch),
                    None => tasks.push(vec![ch]),
                }
            }
        }
        let scatter = (!self.acc.is_empty() && pass.writes_weights()).then_some(csc);
        let reporting = pass.reports();
        // One accumulator block per slab (empty ones without forward
        // accumulators), and per slab its chunks' report slots (empty
        // unless the pass reports).
        let slabs = tasks.len();
        let accs = blocks(&mut self.acc, slabs);
        let pairs = blocks(if reporting { &mut self.pairs } else { &mut [] }, slabs);
        let slots: Vec<&mut [ChunkReport]> = match reporting {
            true => self.reports.chunks_mut(slab / COLUMN_CHUNK).collect(),
            false => (0..slabs).map(|_| &mut [][..]).collect(),
        };
        let work = tasks.into_par_iter().zip(accs).zip(pairs).zip(slots);
        cpu.pool.install(|| {
            work.for_each(|(((mut rest, acc), pair), slots)| {
                if scatter.is_some() {
                    acc.fill(0.0);
                    pair.fill(0.0);
                }
                let mut gw = pass.scratch(rest.len());
                let mut wd = vec![0.0f32; if reporting { 2 * COLUMN_CHUNK } else { 0 }];
                let mut slots = slots.iter_mut();
                while rest[0].len() > 0 {
                    let (mut heads, tails): (Vec<Chunk>, Vec<Chunk>) =
                        rest.into_iter().map(|c| c.split(COLUMN_CHUNK)).unzip();
                    let out = scatter.map(|csc| Scatter {
                        csc,
                        lanes,
                        acc: &mut *acc,
                    });
                    let report = slots.next().map(|slot| Report {
                        slot,
                        w: &mut wd,
                        pair: &mut *pair,
                    });
                    pass.run_simd(cpu.simd, &mut heads, &mut gw, out, report);
                    rest = tails;
                }
                // A step that reports scattered the training weights into
                // the pairs' first lane.
                if reporting {
                    for (a, p) in acc.iter_mut().zip(pair.chunks_exact(2)) {
                        *a = p[0];
                    }
                }
            })
        });
    }
}

/// Where a pass that writes weights adds their forward product: a slab's
/// block of the forward accumulators ([`Columns::acc`]).
struct Scatter<'s> {
    csc: &'s Csr,
    lanes: usize,
    acc: &'s mut [f64],
}

impl Scatter<'_> {
    /// `acc_q += M_qi w_i` for the columns of the chunks `chs` (one per
    /// model, the same columns), in column order, products and sums in
    /// f64; row `q`'s value of model `k` is `acc[q * lanes + k]`. Zero
    /// weights are skipped (an accumulator that starts at +0 never becomes
    /// -0, so adding a zero product leaves its bits unchanged), which saves
    /// most of the work once the fit is sparse.
    #[inline(always)]
    fn add(&mut self, chs: &[Chunk]) {
        if chs.len() == 1 {
            return self.add_one(&chs[0]);
        }
        for g in (0..chs.len()).step_by(LANES) {
            self.add_group(&chs[g..chs.len().min(g + LANES)], g);
        }
    }

    /// [`Scatter::add`] for a single model, out of line so that its loop
    /// has the registers to itself: inlined into the pass, it reloaded the
    /// block's address from the stack for every nonzero.
    #[inline(never)]
    fn add_one(&mut self, ch: &Chunk) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        let acc = &mut *self.acc;
        for (j, &w) in ch.w.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (w, k) = (w as f64, ptr[ch.base + j]..ptr[ch.base + j + 1]);
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                acc[q as usize] += v as f64 * w;
            }
        }
    }

    /// [`Scatter::add_one`] for the training weights of `ch` and the
    /// deterministic weights `wd` (`wd[j]` for column `base + j`) at once,
    /// into `pair` (row `q`'s two sums at `2q` and `2q + 1`): each lane gets
    /// the additions a pass of its own would make (the zero products of a
    /// weight that is zero while the other is not leave an accumulator's
    /// bits unchanged, see [`Scatter::add`]).
    #[inline(never)]
    fn add_pairs(&self, ch: &Chunk, wd: &[f32], pair: &mut [f64]) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        for (j, (&w, &d)) in ch.w.iter().zip(wd).enumerate() {
            if w == 0.0 && d == 0.0 {
                continue;
            }
            let (w, d, k) = (w as f64, d as f64, ptr[ch.base + j]..ptr[ch.base + j + 1]);
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                let (i, v) = (2 * q as usize, v as f64);
                let p = &mut pair[i..i + 2];
                p[0] += v * w;
                p[1] += v * d;
            }
        }
    }

    /// [`Scatter::add`] for the models of one group: lanes `off..` of rows
    /// [`Scatter::lanes`] values apart, one [`LANES`]-wide operation per
    /// nonzero.
    #[inline(always)]
    fn add_group(&mut self, group: &[Chunk], off: usize) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        let base = group[0].base;
        // A local borrow, so the loop keeps the block's address and length
        // in registers instead of reloading them through `self`.
        let (acc, stride) = (&mut *self.acc, self.lanes);
        for j in 0..group[0].len() {
            let mut wj = [0.0; LANES];
            for (w, c) in wj.iter_mut().zip(group) {
                *w = c.w[j] as f64;
            }
            if wj.is_zero() {
                continue;
            }
            let k = ptr[base + j]..ptr[base + j + 1];
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                Lanes::add_product_at(acc, q as usize * stride + off, v as f64, wj);
            }
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

    /// Caches `s` from the noise logits `lu` of this chunk's columns
    /// ([`crate::hard_concrete::Gate::noise_logit`], with gates) and writes
    /// the training weights.
    #[inline(always)]
    fn sample(&mut self, rule: &ColumnRule<f32>, lu: &[f32]) {
        let n = self.len();
        if rule.use_gates {
            let (s, a, lu) = (&mut self.s[..n], &self.a[..n], &lu[..n]);
            for j in 0..n {
                s[j] = rule.gate.s_from_logit(a[j], lu[j]);
            }
        }
        let (s, p, a, w) = (&self.s[..n], &self.p[..n], &self.a[..n], &mut self.w[..n]);
        fixed_switches!(rule, {
            for j in 0..n {
                w[j] = rule.forward_s(p[j], a[j], s[j]).w;
            }
        });
    }

    /// The chain rule through the gates of the last sampling and Adam on
    /// both parameters of every column, given `g_w` per column, then the
    /// weight caps' projection `p <= max_p` (`max_p` indexed by column).
    /// Every slice is cut to the chunk's length first, so the loops have no
    /// bounds checks and vectorise.
    /// With `PENALTIES`, the penalty terms of the parameters before the
    /// update (`pi`, `m(p)^2`, as [`ColumnRule::penalties`] gives them)
    /// are written to `pen[j]` and `pen[COLUMN_CHUNK + j]` on the way (the
    /// update computes both anyway); `pen` is unused otherwise.
    #[inline(always)]
    fn update<const PENALTIES: bool>(
        &mut self,
        rule: &ColumnRule<f32>,
        adam: AdamStep,
        gw: &[f32],
        max_p: Option<&[f32]>,
        pen: &mut [f32],
    ) {
        let n = self.len();
        let (s, gw) = (&self.s[..n], &gw[..n]);
        let (p, m_p, v_p) = (&mut self.p[..n], &mut self.m_p[..n], &mut self.v_p[..n]);
        let (a, m_a, v_a) = (&mut self.a[..n], &mut self.m_a[..n], &mut self.v_a[..n]);
        let (pis, m2s) = match PENALTIES {
            true => pen.split_at_mut(COLUMN_CHUNK),
            false => (&mut [][..], &mut [][..]),
        };
        fixed_switches!(rule, {
            for j in 0..n {
                let f = rule.forward_s(p[j], a[j], s[j]);
                let (gp, ga, pi) = rule.gradient_and_pi(&f, a[j], gw[j]);
                if PENALTIES {
                    (pis[j], m2s[j]) = (pi, f.m * f.m);
                }
                adam_update(&mut p[j], &mut m_p[j], &mut v_p[j], gp, adam);
                adam_update(&mut a[j], &mut m_a[j], &mut v_a[j], ga, adam);
            }
        });
        if let Some(cap) = max_p {
            let cap = &cap[self.base..self.base + n];
            for j in 0..n {
                p[j] = p[j].min(cap[j]);
            }
        }
    }
}

/// Draws the uniforms of the chunks' columns from `cursor` and takes
/// their logits once (with gates), then samples every model's training
/// weights from them.
#[inline(always)]
fn sample_models(chs: &mut [Chunk], rules: &[ColumnRule<f32>], cursor: &NoiseCursor) {
    let (base, n) = (chs[0].base, chs[0].len());
    let mut lu = [0.0f32; COLUMN_CHUNK];
    if rules[0].use_gates {
        cursor.fill(base, &mut lu[..n]);
        for u in &mut lu[..n] {
            *u = rules[0].gate.noise_logit(*u);
        }
    }
    for (ch, rule) in chs.iter_mut().zip(rules) {
        ch.sample(rule, &lu[..n]);
    }
}

/// What one pass over the column chunks does to each chunk; `rules[k]`
/// is model `k`'s per-column rule (they differ in the L0 strength only).
enum ChunkPass<'a> {
    /// Training weights with the noise of `cursor`.
    Sample {
        rules: &'a [ColumnRule<f32>],
        cursor: NoiseCursor<'a>,
    },
    /// Deterministic (test-time) weights.
    Deterministic {
        rules: &'a [ColumnRule<f32>],
        test: TestGate,
    },
    /// Backward pass and Adam (then `p <= max_p`, the weight caps), then
    /// the training weights of the next step when `next` holds its noise.
    /// With `report` (a single model, `next` set, forward accumulators),
    /// also what a report reads ([`Report`]): the penalties before the
    /// update, the deterministic weights of the test gate after it, their
    /// counts and forward product.
    Step {
        rules: &'a [ColumnRule<f32>],
        adam: AdamStep,
        grad: ColumnGradient<'a>,
        max_p: Option<&'a [f32]>,
        next: Option<NoiseCursor<'a>>,
        report: Option<TestGate>,
    },
}

impl ChunkPass<'_> {
    /// Whether the pass writes new weights.
    fn writes_weights(&self) -> bool {
        !matches!(self, ChunkPass::Step { next: None, .. })
    }

    /// Whether the pass also writes what a report reads.
    fn reports(&self) -> bool {
        matches!(
            self,
            ChunkPass::Step {
                report: Some(_),
                ..
            }
        )
    }

    /// Scratch space for one task's column gradients (`models` rows of
    /// [`COLUMN_CHUNK`]), empty for passes without gradients.
    fn scratch(&self, models: usize) -> Vec<f32> {
        match self {
            ChunkPass::Step { .. } => vec![0.0; models * COLUMN_CHUNK],
            _ => Vec::new(),
        }
    }

    /// The pass on one chunk of columns, `chs[k]` holding model `k`'s
    /// (with `gw` as scratch), then the forward product of the new weights
    /// into `scatter`. Always inlined, so that [`Self::run_simd`]'s AVX-512
    /// and AVX2 builds compile the per-column loops for those.
    #[inline(always)]
    fn run(
        &self,
        chs: &mut [Chunk],
        gw: &mut [f32],
        scatter: Option<Scatter>,
        report: Option<&mut Report>,
    ) {
        self.update(chs, gw, report);
        if let Some(mut s) = scatter {
            s.add(chs);
        }
    }

    /// [`Self::run`] without the scatter.
    #[inline(always)]
    fn update(&self, chs: &mut [Chunk], gw: &mut [f32], mut report: Option<&mut Report>) {
        match self {
            ChunkPass::Sample { rules, cursor } => sample_models(chs, rules, cursor),
            ChunkPass::Deterministic { rules, test } => {
                for (ch, rule) in chs.iter_mut().zip(rules.iter()) {
                    let n = ch.len();
                    let (p, a, w) = (&ch.p[..n], &ch.a[..n], &mut ch.w[..n]);
                    fixed_switches!(rule, {
                        for j in 0..n {
                            w[j] = rule.deterministic_weight(p[j], a[j], *test);
                        }
                    });
                }
            }
            ChunkPass::Step {
                rules,
                adam,
                grad,
                max_p,
                next,
                report: test,
            } => {
                grad.fill(chs[0].base, chs[0].len(), gw);
                match report.as_deref_mut() {
                    // A report is of a single model.
                    Some(r) => {
                        chs[0].update::<true>(&rules[0], *adam, gw, *max_p, r.w);
                        r.sum_penalties(chs[0].len());
                    }
                    None => {
                        let rows = gw.chunks_exact(COLUMN_CHUNK);
                        for ((ch, rule), gw) in chs.iter_mut().zip(rules.iter()).zip(rows) {
                            ch.update::<false>(rule, *adam, gw, *max_p, &mut []);
                        }
                    }
                }
                if let Some(cursor) = next {
                    sample_models(chs, rules, cursor);
                }
                if let (Some(r), Some(test)) = (report, test) {
                    r.deterministic(&chs[0], &rules[0], *test);
                }
            }
        }
    }

    /// [`Self::run`] compiled for the vector instructions of `simd`.
    /// A single model's scatter runs after it, as built: compiled for
    /// AVX-512, its scalar loop made a production-shape epoch (5.2M
    /// columns) about 4% slower (0.104 against 0.100 s on 2 cores).
    #[inline(always)]
    fn run_simd(
        &self,
        simd: SimdPath,
        chs: &mut [Chunk],
        gw: &mut [f32],
        scatter: Option<Scatter>,
        mut report: Option<Report>,
    ) {
        let (groups, single) = match chs.len() {
            1 => (None, scatter),
            _ => (scatter, None),
        };
        simd.run(PassWork {
            pass: self,
            chs,
            gw,
            scatter: groups,
            report: report.as_mut(),
        });
        match (single, report) {
            (Some(s), Some(r)) => s.add_pairs(&chs[0], r.w, r.pair),
            (Some(mut s), None) => s.add(chs),
            _ => {}
        }
    }
}

/// What a step that reports ([`ChunkPass::Step`] with `report`) keeps of
/// one chunk of a single model's columns.
#[derive(Clone, Copy, Debug, Default)]
struct ChunkReport {
    /// `sum_j pi_j` and `sum_j m(p_j)^2` over the chunk before the update,
    /// in column order from zero, as [`CpuBackend::losses`] sums a chunk.
    l0: f64,
    l2: f64,
    /// The counts of the deterministic weights after the update.
    weights: WeightSummary,
}

/// Where a step that reports writes for one chunk: its [`ChunkReport`],
/// scratch of 2 x [`COLUMN_CHUNK`] (the penalty terms, then the
/// deterministic weights in its first half) and the slab's
/// block of both weights' forward products ([`Columns::pairs`]).
struct Report<'r> {
    slot: &'r mut ChunkReport,
    w: &'r mut [f32],
    pair: &'r mut [f64],
}

impl Report<'_> {
    /// The chunk's penalty sums (`pi`, `m(p)^2` before the update) from
    /// the terms its update wrote to the scratch ([`Chunk::update`]),
    /// added in column order in f64.
    #[inline(always)]
    fn sum_penalties(&mut self, n: usize) {
        let (pis, m2s) = self.w.split_at(COLUMN_CHUNK);
        let (mut l0, mut l2) = (0.0f64, 0.0f64);
        for (&pi, &m2) in pis[..n].iter().zip(&m2s[..n]) {
            l0 += pi as f64;
            l2 += m2 as f64;
        }
        (self.slot.l0, self.slot.l2) = (l0, l2);
    }

    /// The chunk's deterministic weights into the scratch, and their counts.
    #[inline(always)]
    fn deterministic(&mut self, ch: &Chunk, rule: &ColumnRule<f32>, test: TestGate) {
        let n = ch.len();
        let (p, a, w) = (&ch.p[..n], &ch.a[..n], &mut self.w[..n]);
        fixed_switches!(rule, {
            for j in 0..n {
                w[j] = rule.deterministic_weight(p[j], a[j], test);
            }
        });
        self.slot.weights = WeightSummary::of_slice(w);
    }
}

/// [`ChunkPass::run`] as [`VectorWork`].
struct PassWork<'p, 'c, 'x, 'r> {
    pass: &'p ChunkPass<'p>,
    chs: &'p mut [Chunk<'c>],
    gw: &'p mut [f32],
    scatter: Option<Scatter<'x>>,
    report: Option<&'p mut Report<'r>>,
}

impl VectorWork for PassWork<'_, '_, '_, '_> {
    #[inline(always)]
    fn run(self) {
        self.pass.run(self.chs, self.gw, self.scatter, self.report)
    }
}

/// Where the CPU backend's loops run: its thread pool and the vector
/// instructions they are compiled for.
struct Cpu {
    pool: rayon::ThreadPool,
    simd: SimdPath,
}

/// The CPU implementation of [`Backend`].
pub struct CpuBackend<'a> {
    cpu: Cpu,
    problem: Problem<'a>,
    /// Model `k`'s per-column rule.
    rules: Vec<ColumnRule<f32>>,
    cols: Columns,
    intercepts: Vec<Option<ScalarState>>,
    /// Predictions, row `q` of model `k` at `q * lanes + k`.
    yhat: Vec<f64>,
    /// Residuals `dL/dyhat`, laid out as `yhat`.
    r: Vec<f64>,
    /// Forward partial sums, segment `s` of model `k` at `s * models + k`.
    partials: Vec<f64>,
    /// Where the forward product gathers over rows and several models
    /// train, their weights side by side: column `i` of model `k` at
    /// `i * lanes + k`; empty otherwise.
    w_lanes: Vec<f64>,
    /// Partial sums of the long columns' segments in the transpose
    /// product, laid out as `partials`.
    long_partials: Vec<f64>,
    /// Each model's data loss of the last residual.
    data_loss: Vec<f64>,
    /// Each model's first step with a non-finite loss.
    bad_step: Vec<Option<u64>>,
    /// The model the per-model methods act on.
    current: usize,
    /// Why the CPU was chosen over a present GPU, shown by `describe`.
    pub(crate) note: Option<String>,
    /// After a fused [`Backend::step_reported`] (until the next forward
    /// product or step), the deterministic weights' counts; their
    /// predictions are then in `yhat_det`.
    reported: Option<WeightSummary>,
    yhat_det: Vec<f64>,
}

impl<'a> CpuBackend<'a> {
    /// A backend for one model on a pool of `threads` threads (None: one per core).
    pub fn new(problem: Problem<'a>, threads: Option<usize>) -> Result<Self> {
        Self::with_models(problem, &[problem.hyper.lambda_l0], threads)
    }

    /// A backend training one model per L0 strength `lambdas[k]` together
    /// (everything else from `problem`), on a pool of `threads` threads.
    pub fn with_models(
        problem: Problem<'a>,
        lambdas: &[f64],
        threads: Option<usize>,
    ) -> Result<Self> {
        if threads == Some(0) {
            return Err(L0Error::config("threads must be at least 1"));
        }
        if lambdas.is_empty() {
            return Err(L0Error::config("a backend needs at least one model"));
        }
        problem.check_lengths()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .build()
            .map_err(|e| L0Error::config(format!("cannot start the thread pool: {e}")))?;
        let cpu = Cpu {
            pool,
            simd: SimdPath::from_env()?,
        };
        let m = problem.matrix;
        let (q, n, k) = (m.rows(), m.cols(), lambdas.len());
        let cols = Columns::new(k, n, q);
        let cols_fused = !cols.pairs.is_empty();
        // Segment partials only where the forward product gathers over CSR.
        let segments = if cols.acc.is_empty() {
            m.segments().len()
        } else {
            0
        };
        let w_lanes = match (segments, k) {
            (0, _) | (_, 1) => Vec::new(),
            _ => vec![0.0; n * cols.lanes],
        };
        let rules = lambdas
            .iter()
            .map(|&lambda_l0| {
                super::Hyper {
                    lambda_l0,
                    ..problem.hyper
                }
                .rule()
            })
            .collect();
        Ok(CpuBackend {
            cpu,
            problem,
            rules,
            intercepts: vec![None; k],
            yhat: vec![0.0; q * cols.lanes],
            r: vec![0.0; q * cols.lanes],
            cols,
            partials: vec![0.0; segments * k],
            w_lanes,
            long_partials: vec![0.0; m.long_columns().ranges.len() * k],
            data_loss: vec![0.0; k],
            bad_step: vec![None; k],
            current: 0,
            note: None,
            reported: None,
            yhat_det: vec![0.0; if cols_fused { q } else { 0 }],
        })
    }

    /// The vector instructions the loops run with.
    pub fn simd(&self) -> SimdPath {
        self.cpu.simd
    }

    /// Runs the loops with `path` instead (refused when the CPU lacks it).
    pub fn set_simd(&mut self, path: SimdPath) -> Result<()> {
        self.cpu.simd = SimdPath::parse(path.name())?;
        Ok(())
    }

    /// [`Backend::step`], and with `report` what
    /// [`Backend::step_reported`] fuses into it.
    fn step_pass(&mut self, step: u64, sample_next: bool, report: Option<TestGate>) {
        self.reported = None;
        let adam = AdamStep::new(self.problem.hyper.lr, step + 1);
        for k in 0..self.rules.len() {
            if let (Some(g), Some(b)) = (self.intercept_gradient(k), self.intercepts[k].as_mut()) {
                adam_update(&mut b.value, &mut b.m, &mut b.v, g as f32, adam);
            }
        }
        self.long_column_partials();
        let pass = ChunkPass::Step {
            rules: &self.rules,
            adam,
            grad: ColumnGradient::new(
                self.problem.matrix,
                self.rules.len(),
                &self.r,
                self.cols.lanes,
                &self.long_partials,
                self.cpu.simd,
            ),
            max_p: self.problem.max_p,
            next: sample_next.then(|| self.cursor(step + 1)),
            report,
        };
        self.cols
            .par_chunks(&self.cpu, &pass, self.problem.matrix.csc());
    }

    /// `out[i] = b_k + sum_s acc[s][i * stride + off]` (`i = q * lanes + k`):
    /// the blocks of forward accumulators summed in slab order (0 for the
    /// lanes past the last model), from every value of a block (stride 1)
    /// or one lane of [`Columns::pairs`] (stride 2).
    fn sum_blocks(&self, acc: &[f64], (stride, off): (usize, usize), out: &mut [f64]) {
        let lanes = self.cols.lanes;
        let intercepts = &self.intercepts;
        // Model k's intercept (None for the unused lanes past the last model).
        let b = |k: usize| intercepts.get(k).map(|s| s.map_or(0.0, |s| s.value as f64));
        let block = out.len() * stride;
        let slabs = acc.len() / block;
        self.cpu.pool.install(|| {
            out.par_chunks_mut(1024 * lanes)
                .enumerate()
                .for_each(|(c, out)| {
                    for (j, y) in out.iter_mut().enumerate() {
                        let (i, k) = (c * 1024 * lanes + j, j % lanes);
                        let at = |s: usize| acc[s * block + i * stride + off];
                        let sum = (0..slabs).fold(0.0, |sum, s| sum + at(s));
                        *y = b(k).map_or(0.0, |b| b + sum);
                    }
                })
        });
    }

    /// `sum_i f(p_i, a_i, w_i)` over the selected model's columns, in fixed
    /// chunks combined in order.
    fn sum_columns<T: Send + Sync + Copy>(
        &self,
        zero: T,
        add: impl Fn(T, T) -> T + Sync,
        f: impl Fn(f32, f32, f32) -> T + Sync,
    ) -> T {
        let c = &self.cols.models[self.current];
        let n = c.p.len();
        let parts: Vec<T> = self.cpu.pool.install(|| {
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
    /// the long columns ([`LongColumns`]) for every model, in parallel over
    /// fixed groups of segments.
    fn long_column_partials(&mut self) {
        let m = self.problem.matrix;
        let (ranges, csc, r) = (&m.long_columns().ranges, m.csc(), &self.r);
        let (idx, val, lanes) = (csc.indices(), csc.data(), self.cols.lanes);
        let models = self.rules.len();
        self.cpu.pool.install(|| {
            self.long_partials
                .par_chunks_mut(SEGMENT_CHUNK * models)
                .zip(ranges.par_chunks(SEGMENT_CHUNK))
                .for_each(|(out, ranges)| {
                    for (o, k) in out.chunks_mut(models).zip(ranges) {
                        let (val, idx) = (&val[k.clone()], &idx[k.clone()]);
                        for (model, o) in o.iter_mut().enumerate() {
                            *o = gather_dot(val, idx, |q| r[q * lanes + model]);
                        }
                    }
                })
        });
    }

    /// `dL/db = sum_q r_q` of model `k`, when it has an intercept.
    fn intercept_gradient(&self, k: usize) -> Option<f64> {
        let lanes = self.cols.lanes;
        self.intercepts[k].map(|_| self.r.iter().skip(k).step_by(lanes).sum())
    }
}

impl Backend for CpuBackend<'_> {
    fn describe(&self) -> String {
        let (threads, simd) = (self.cpu.pool.current_num_threads(), self.cpu.simd.name());
        match &self.note {
            Some(n) => format!("cpu ({threads} threads, {simd}; {n})"),
            None => format!("cpu ({threads} threads, {simd})"),
        }
    }

    fn rows(&self) -> usize {
        self.problem.matrix.rows()
    }

    fn models(&self) -> usize {
        self.rules.len()
    }

    fn select(&mut self, k: usize) -> Result<()> {
        if k >= self.rules.len() {
            return Err(L0Error::config(format!(
                "model {k} selected on a backend that trains {}",
                self.rules.len()
            )));
        }
        self.current = k;
        Ok(())
    }

    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        let c = &mut self.cols.models[self.current];
        let n = c.p.len();
        let vecs = [&s.p, &s.a, &s.m_p, &s.v_p, &s.m_a, &s.v_a];
        if let Some(v) = vecs.iter().find(|v| v.len() != n) {
            return Err(L0Error::shape(
                "parameter vectors (one per matrix column)",
                n,
                v.len(),
            ));
        }
        c.p.copy_from_slice(&s.p);
        c.a.copy_from_slice(&s.a);
        c.m_p.copy_from_slice(&s.m_p);
        c.v_p.copy_from_slice(&s.v_p);
        c.m_a.copy_from_slice(&s.m_a);
        c.v_a.copy_from_slice(&s.v_a);
        self.intercepts[self.current] = s.intercept;
        Ok(())
    }

    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        let c = &self.cols.models[self.current];
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
        s.intercept = self.intercepts[self.current];
        Ok(())
    }

    /// `s_i = sigmoid((logit u(seed, step, i) + a_i) / beta)`, `w_i = m(p_i) z(s_i)`.
    /// GPU twin: kernel `sample_weights` (kernels/gates.cu).
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        self.reported = None;
        let pass = ChunkPass::Sample {
            rules: &self.rules,
            cursor: self.cursor(step),
        };
        self.cols
            .par_chunks(&self.cpu, &pass, self.problem.matrix.csc());
        Ok(())
    }

    /// `w_i = m(p_i) z_test(a_i)`.
    /// GPU twin: kernel `deterministic_weights` (kernels/gates.cu).
    fn deterministic_weights(&mut self, test: TestGate) -> Result<()> {
        self.reported = None;
        let pass = ChunkPass::Deterministic {
            rules: &self.rules,
            test,
        };
        self.cols
            .par_chunks(&self.cpu, &pass, self.problem.matrix.csc());
        Ok(())
    }

    /// `yhat_q = b + sum_i M_qi w_i` in f64, one of two ways, fixed by the
    /// problem's shape so results never depend on the thread count or the
    /// number of models:
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
    /// GPU twins: kernels `spmv_segments_lL` (a group of lanes per segment)
    /// and `combine_segments_lL` (a group of lanes per row and model),
    /// kernels/spmv.cu, which sum in the second way.
    fn forward(&mut self) -> Result<()> {
        self.reported = None;
        if !self.cols.acc.is_empty() {
            let mut yhat = std::mem::take(&mut self.yhat);
            self.sum_blocks(&self.cols.acc, (1, 0), &mut yhat);
            self.yhat = yhat;
            return Ok(());
        }
        let (lanes, models) = (self.cols.lanes, self.rules.len());
        let intercept = |k: usize| self.intercepts[k].map_or(0.0, |s| s.value as f64);
        let m = self.problem.matrix;
        let (seg, csr) = (m.segments(), m.csr());
        let cols = &self.cols.models;
        let (partials, w_lanes) = (&mut self.partials, &mut self.w_lanes);
        let simd = self.cpu.simd;
        self.cpu.pool.install(|| {
            // Several models: their weights side by side, so that one
            // gathered row serves a whole group of lanes.
            w_lanes
                .par_chunks_mut(lanes * COLUMN_CHUNK)
                .enumerate()
                .for_each(|(c, out)| {
                    for (j, row) in out.chunks_mut(lanes).enumerate() {
                        let i = c * COLUMN_CHUNK + j;
                        for (x, w) in row.iter_mut().zip(cols) {
                            *x = w.w[i] as f64;
                        }
                    }
                });
            let w_lanes = &*w_lanes;
            partials
                .par_chunks_mut(SEGMENT_CHUNK * models)
                .enumerate()
                .for_each(|(c, out)| {
                    simd.run(SegmentDots {
                        rows: Rows { csr, seg },
                        w: RowWeights {
                            cols,
                            w_lanes,
                            lanes,
                        },
                        first: c * SEGMENT_CHUNK,
                        out,
                    })
                })
        });
        for q in 0..m.rows() {
            let segs = seg.row_ptr[q]..seg.row_ptr[q + 1];
            for k in 0..models {
                let sum: f64 = segs.clone().map(|s| self.partials[s * models + k]).sum();
                self.yhat[q * lanes + k] = intercept(k) + sum;
            }
        }
        Ok(())
    }

    /// Each target's loss term and `r_q = dl/dyhat_q` ([`crate::objective::target_term`]:
    /// squared, `e_q = (y_q - yhat_q)/d_q`, `r_q = -2 g_q e_q / d_q`, loss `g_q e_q^2`).
    /// GPU twins: kernels `residual` (block partials of the loss and of
    /// `sum r_q`) and `residual_finalize` (in-order sum, first non-finite
    /// step), kernels/step.cu.
    fn residual(&mut self, step: u64) -> Result<()> {
        let p = self.problem;
        let lanes = self.cols.lanes;
        self.data_loss.fill(0.0);
        for q in 0..p.targets.len() {
            let (y, g, d) = (p.targets[q], p.target_weight[q], p.denom[q]);
            let band = p.band.map_or(0.0, |b| b[q]);
            for (k, loss) in self.data_loss.iter_mut().enumerate() {
                let i = q * lanes + k;
                let (l, r) = target_term(y, self.yhat[i], g, d, band, p.shape);

                self.r[i] = r;
                *loss += l;
            }
        }
        for (bad, loss) in self.bad_step.iter_mut().zip(&self.data_loss) {
            if !loss.is_finite() && bad.is_none() {
                *bad = Some(step);
            }
        }
        Ok(())
    }

    /// Per column: `g_w = (M^T r)_i`, `(dL/dp, dL/da)` by the chain rule
    /// through the gates of the last sampling, Adam on both; then optionally
    /// the next step's sampled weight. The intercept takes an Adam step with
    /// gradient `sum_q r_q`. With [`Problem::max_p`], `p` is projected onto
    /// `p <= max_p` after its update (the weight caps).
    /// GPU twins: kernels `column_dots_lL` (a group of lanes per CSC column),
    /// `step_columns` (a thread per column) and `intercept_adam`,
    /// kernels/step.cu.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        self.step_pass(step, sample_next, None);
        Ok(())
    }

    /// With one model, forward accumulators and `sample_next`, one pass:
    /// each chunk's penalties before its update, the update, the next
    /// training weights and their forward product, the deterministic
    /// weights, their counts and forward product ([`ChunkPass::Step`] with
    /// `report`); the matrix is read once, as in any epoch. The sums are
    /// those of the separate passes ([`super::step_then_report`]), bit for
    /// bit: penalties per chunk of [`COLUMN_CHUNK`] in column order, then
    /// over chunks in order, as [`Backend::losses`] sums them. Otherwise
    /// the separate passes.
    fn step_reported(
        &mut self,
        step: u64,
        sample_next: bool,
        test: TestGate,
        losses: &mut [Losses],
    ) -> Result<bool> {
        if !sample_next || self.cols.pairs.is_empty() {
            return super::step_then_report(self, step, test, losses);
        }
        self.step_pass(step, true, Some(test));
        let (l0, l2, weights) = self
            .cols
            .reports
            .iter()
            .fold((0.0, 0.0, WeightSummary::default()), |(l0, l2, w), c| {
                (l0 + c.l0, l2 + c.l2, w.merge(c.weights))
            });
        losses[0] = Losses {
            data: self.data_loss[0],
            l0,
            l2,
        };
        let mut yhat = std::mem::take(&mut self.yhat_det);
        self.sum_blocks(&self.cols.pairs, (2, 1), &mut yhat);
        self.yhat_det = yhat;
        self.reported = Some(weights);
        Ok(true)
    }

    /// `(dL/dp, dL/da)` per column as in [`Backend::step`] without the
    /// update, and `sum_q r_q` for the intercept.
    /// GPU twin: kernel `gradient_columns` (kernels/step.cu).
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        self.long_column_partials();
        let (k, models) = (self.current, self.rules.len());
        let (rule, c) = (self.rules[k], &self.cols.models[k]);
        let grad = ColumnGradient::new(
            self.problem.matrix,
            self.rules.len(),
            &self.r,
            self.cols.lanes,
            &self.long_partials,
            self.cpu.simd,
        );
        let n = c.p.len();
        let (mut gp, mut ga) = (vec![0.0f32; n], vec![0.0f32; n]);
        self.cpu.pool.install(|| {
            gp.par_chunks_mut(COLUMN_CHUNK)
                .zip(ga.par_chunks_mut(COLUMN_CHUNK))
                .enumerate()
                .for_each(|(chunk, (gp, ga))| {
                    let base = chunk * COLUMN_CHUNK;
                    let mut gw = vec![0.0f32; models * COLUMN_CHUNK];
                    grad.fill(base, gp.len(), &mut gw);
                    let gw = &gw[k * COLUMN_CHUNK..];
                    for (j, (gp, ga)) in gp.iter_mut().zip(ga).enumerate() {
                        let i = base + j;
                        let f = rule.forward_s(c.p[i], c.a[i], c.s[i]);
                        (*gp, *ga) = rule.gradient(&f, c.a[i], gw[j]);
                    }
                })
        });
        Ok((gp, ga, self.intercept_gradient(k)))
    }

    /// `L0 = sum_i pi_i`, `L2 = sum_i m(p_i)^2` (f64 sums) and the data loss
    /// of the last residual.
    /// GPU twins: kernels `penalties_partial` and `penalties_finalize`
    /// (kernels/gates.cu).
    fn losses(&mut self) -> Result<Losses> {
        let rule = self.rules[self.current];
        let (l0, l2) = self.sum_columns(
            (0.0f64, 0.0f64),
            |x, y| (x.0 + y.0, x.1 + y.1),
            |p, a, _| {
                let (pi, m2) = rule.penalties(p, a);
                (pi as f64, m2 as f64)
            },
        );
        Ok(Losses {
            data: self.data_loss[self.current],
            l0,
            l2,
        })
    }

    fn first_bad_step(&mut self) -> Result<Option<u64>> {
        Ok(self.bad_step[self.current])
    }

    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()> {
        let lanes = self.cols.lanes;
        let yhat = match self.reported {
            Some(_) => &self.yhat_det,
            None => &self.yhat,
        };
        for (o, y) in out
            .iter_mut()
            .zip(yhat.iter().skip(self.current).step_by(lanes))
        {
            *o = *y;
        }
        Ok(())
    }

    fn read_weights(&mut self, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.cols.models[self.current].w);
        Ok(())
    }

    /// Nonzero weights and their size buckets ([`WeightSummary::of`]).
    /// GPU twin: kernel `weight_summary` (kernels/gates.cu).
    fn weight_summary(&mut self) -> Result<WeightSummary> {
        if let Some(w) = self.reported {
            return Ok(w);
        }
        Ok(
            self.sum_columns(WeightSummary::default(), WeightSummary::merge, |_, _, w| {
                WeightSummary::of(w)
            }),
        )
    }
}

/// The CSR row segments of the gathered forward product.
struct Rows<'m> {
    csr: &'m Csr,
    seg: &'m crate::matrix::RowSegments,
}

/// Every model's weights, as the gathered forward product reads them.
struct RowWeights<'w> {
    cols: &'w [ModelColumns],
    /// With several models, their weights side by side
    /// ([`CpuBackend::w_lanes`]).
    w_lanes: &'w [f64],
    lanes: usize,
}

/// [`Rows::dots`] as [`VectorWork`].
struct SegmentDots<'a> {
    rows: Rows<'a>,
    w: RowWeights<'a>,
    first: usize,
    out: &'a mut [f64],
}

impl VectorWork for SegmentDots<'_> {
    #[inline(always)]
    fn run(self) {
        self.rows.dots(self.first, &self.w, self.out)
    }
}

impl Rows<'_> {
    /// `out[j * models + k] = sum_{n in segment first + j} M_n w_k,col(n)`
    /// for the segments `first..` that `out` covers: for several models
    /// [`LANES`] at a time, each from one gathered row of `w.w_lanes`.
    #[inline(always)]
    fn dots(&self, first: usize, w: &RowWeights, out: &mut [f64]) {
        let (idx, val) = (self.csr.indices(), self.csr.data());
        let models = w.cols.len();
        for (j, o) in out.chunks_mut(models).enumerate() {
            let s = first + j;
            let r = self.seg.start[s]..self.seg.start[s + 1];
            let (val, idx) = (&val[r.clone()], &idx[r]);
            if models == 1 {
                o[0] = gather_dot(val, idx, |j| w.cols[0].w[j] as f64);
                continue;
            }
            for (g, o) in o.chunks_mut(LANES).enumerate() {
                let x = |j: usize| Lanes::load(w.w_lanes, j * w.lanes + g * LANES);
                let d: [f64; LANES] = gather_dot(val, idx, x);
                o.copy_from_slice(&d[..o.len()]);
            }
        }
    }
}

/// `g_w,i = (M^T r)_i = sum_{q in column i} M_qi r_q` of every model, in
/// f64, rounded to f32: a column of at most [`crate::matrix::SEGMENT_NNZ`]
/// nonzeros is summed whole (for several models, [`LANES`] at a time from
/// the side-by-side residuals), a longer one as the in-order sum of its
/// segments' partials (computed beforehand, in parallel, by
/// [`CpuBackend::long_column_partials`]).
struct ColumnGradient<'m> {
    csc: &'m Csr,
    long: &'m LongColumns,
    r: &'m [f64],
    lanes: usize,
    models: usize,
    long_partials: &'m [f64],
    simd: SimdPath,
}

impl<'m> ColumnGradient<'m> {
    /// The gradients of `models` models for residuals `r` laid out with
    /// `lanes` values per row, and long-column partials laid out as
    /// [`CpuBackend::long_partials`].
    fn new(
        m: &'m SparseMatrix,
        models: usize,
        r: &'m [f64],
        lanes: usize,
        long_partials: &'m [f64],
        simd: SimdPath,
    ) -> Self {
        ColumnGradient {
            simd,
            csc: m.csc(),
            long: m.long_columns(),
            r,
            lanes,
            models,
            long_partials,
        }
    }

    /// `out[k * COLUMN_CHUNK + j] = g_w` of model `k` at column `base + j`,
    /// for `j < n`.
    #[inline(always)]
    fn fill(&self, base: usize, n: usize, out: &mut [f32]) {
        let (ptr, idx, val) = (self.csc.indptr(), self.csc.indices(), self.csc.data());
        let (ptr, r, long, models) = (ptr.raw_storage(), self.r, self.long, self.models);
        // The long columns inside this range, in order.
        let mut next = long.cols.partition_point(|&c| (c as usize) < base);
        for j in 0..n {
            let i = base + j;
            if long.cols.get(next) == Some(&(i as u32)) {
                let segs = long.seg_ptr[next]..long.seg_ptr[next + 1];
                next += 1;
                for k in 0..models {
                    let g = segs
                        .clone()
                        .fold(0.0, |acc, s| acc + self.long_partials[s * models + k]);
                    out[k * COLUMN_CHUNK + j] = g as f32;
                }
                continue;
            }
            let c = ptr[i]..ptr[i + 1];
            let (val, idx) = (&val[c.clone()], &idx[c]);
            if models == 1 {
                out[j] = dot(self.simd, val, idx, r) as f32;
                continue;
            }
            for g in (0..models).step_by(LANES) {
                let d: [f64; LANES] = gather_dot(val, idx, |q| Lanes::load(r, q * self.lanes + g));
                for (l, d) in d.iter().enumerate().take(models - g) {
                    out[(g + l) * COLUMN_CHUNK + j] = *d as f32;
                }
            }
        }
    }
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
        let problem = Problem::new(&m, &y, &weight, &denom, hyper);
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
        let (before, r) = (b.cols.models[0].clone(), b.r.clone());
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
            let got = &b.cols.models[0];
            let want = [p, a, m_p, v_p, m_a, v_a, s, w];
            let have = [
                got.p[i], got.a[i], got.m_p[i], got.v_p[i], got.m_a[i], got.v_a[i], got.s[i],
                got.w[i],
            ];
            assert_eq!(want.map(f32::to_bits), have.map(f32::to_bits), "column {i}");
        }
    }
}
