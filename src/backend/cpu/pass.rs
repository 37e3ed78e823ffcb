//! The pass over the CSC columns: every model's columns ([`Columns`]), the
//! fused step of a chunk ([`ChunkPass`]: gradient, Adam update, the next
//! sampled weights, the scattered forward product) and the report pass
//! ([`Report`]).

use super::columns::{fixed_switches, floor_weights, sample_models, Chunk, ModelColumns};
use super::products::ColumnGradient;
use super::scatter::Scatter;
use super::work::{blocks, Cpu, COLUMN_CHUNK, SCATTER_MAX_ROWS, SCATTER_MIN_CHUNKS, SLABS};
use crate::backend::dots::LANES;
use crate::backend::interface::{ColumnBounds, NoiseCursor, WeightSummary};
use crate::backend::simd::{SimdPath, VectorWork};
use crate::hard_concrete::{AdamStep, ColumnRule, Magnitude, TestGate};
use crate::matrix::Csr;
use rayon::prelude::*;

/// The per-column state of every model trained together, and how a pass
/// over the columns is cut into parallel tasks.
#[derive(Clone, Debug)]
pub(super) struct Columns {
    pub(super) models: Vec<ModelColumns>,
    /// Columns per slab: whole chunks, fixed by the problem's size.
    pub(super) slab: usize,
    /// Values per row in the per-row vectors: 1 for one model, else the
    /// models rounded up to whole groups of [`LANES`].
    pub(super) lanes: usize,
    /// With few enough rows, one block of `rows x lanes` per slab holding
    /// that slab's share of `M w` for the current weights; empty otherwise.
    pub(super) acc: Vec<f64>,
    /// For a single model with forward accumulators, one block of
    /// `rows x 2` per slab for a step that reports, row `q` holding its
    /// training and deterministic sums side by side (one vector operation
    /// adds both), and one [`ChunkReport`] per chunk of columns; empty
    /// otherwise.
    pub(super) pairs: Vec<f64>,
    pub(super) reports: Vec<ChunkReport>,
}

impl Columns {
    /// State for `models` models of `n` columns on a matrix with `rows` rows.
    pub(super) fn new(models: usize, n: usize, rows: usize) -> Self {
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
    pub(super) fn par_chunks(&mut self, cpu: &Cpu, pass: &ChunkPass, csc: &Csr) {
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

/// What one pass over the column chunks does to each chunk; `rules[k]`
/// is model `k`'s per-column rule (they differ in the L0 strength only).
pub(super) enum ChunkPass<'a> {
    /// Training weights with the noise of `cursor`.
    Sample {
        rules: &'a [ColumnRule<f32>],
        cursor: NoiseCursor<'a>,
    },
    /// Deterministic (test-time) weights, held to `floor`.
    Deterministic {
        rules: &'a [ColumnRule<f32>],
        test: TestGate,
        floor: Option<&'a [f32]>,
    },
    /// Backward pass and Adam (then `p` held to its `bounds`), then
    /// the training weights of the next step when `next` holds its noise.
    /// With `report` (a single model, `next` set, forward accumulators),
    /// also what a report reads ([`Report`]): the penalties before the
    /// update, the deterministic weights of the test gate after it, their
    /// counts and forward product.
    Step {
        rules: &'a [ColumnRule<f32>],
        adam: AdamStep,
        grad: ColumnGradient<'a>,
        /// With a conserved total, the column gradients computed before
        /// the pass and each model's multiplier; None: the pass computes
        /// the gradients.
        given: Option<GivenGradients<'a>>,
        bounds: ColumnBounds<'a>,
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
            ChunkPass::Deterministic { rules, test, floor } => {
                for (ch, rule) in chs.iter_mut().zip(rules.iter()) {
                    let n = ch.len();
                    let (p, a, w) = (&ch.p[..n], &ch.a[..n], &mut ch.w[..n]);
                    fixed_switches!(rule, {
                        for j in 0..n {
                            w[j] = rule.deterministic_weight(p[j], a[j], *test);
                        }
                    });
                    floor_weights(*floor, ch.base, w);
                }
            }
            ChunkPass::Step {
                rules,
                adam,
                grad,
                given,
                bounds,
                next,
                report: test,
            } => {
                match given {
                    None => grad.fill(chs[0].base, chs[0].len(), gw),
                    Some(given) => given.fill(chs[0].base, gw),
                }
                match report.as_deref_mut() {
                    // A report is of a single model.
                    Some(r) => {
                        chs[0].update::<true>(&rules[0], *adam, gw, *bounds, r.w);
                        r.sum_penalties(chs[0].len());
                    }
                    None => {
                        let rows = gw.chunks_exact(COLUMN_CHUNK);
                        for ((ch, rule), gw) in chs.iter_mut().zip(rules.iter()).zip(rows) {
                            ch.update::<false>(rule, *adam, gw, *bounds, &mut []);
                        }
                    }
                }
                if let Some(cursor) = next {
                    sample_models(chs, rules, cursor);
                }
                if let (Some(r), Some(test)) = (report, test) {
                    r.deterministic(&chs[0], &rules[0], *test, bounds.floor);
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

/// A conserved total's column gradients, computed before the step
/// (`CpuBackend::multipliers`, laid out per chunk as a step's scratch),
/// and each model's multiplier `mu`, which the step adds to them.
#[derive(Clone, Copy, Debug)]
pub(super) struct GivenGradients<'a> {
    pub(super) mu: &'a [f32],
    pub(super) grads: &'a [f32],
}

impl GivenGradients<'_> {
    /// Model `k`'s row of the chunk from column `base` into `gw[k CHUNK..]`,
    /// plus its multiplier.
    #[inline(always)]
    fn fill(&self, base: usize, gw: &mut [f32]) {
        let block = self.mu.len() * COLUMN_CHUNK;
        let from = &self.grads[base / COLUMN_CHUNK * block..][..block];
        for ((row, from), &mu) in gw
            .chunks_exact_mut(COLUMN_CHUNK)
            .zip(from.chunks_exact(COLUMN_CHUNK))
            .zip(self.mu)
        {
            for (g, &f) in row.iter_mut().zip(from) {
                *g = f + mu;
            }
        }
    }
}

/// What a step that reports ([`ChunkPass::Step`] with `report`) keeps of
/// one chunk of a single model's columns.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ChunkReport {
    /// `sum_j pi_j` and `sum_j m(p_j)^2` over the chunk before the update,
    /// in column order from zero, as `CpuBackend::losses` sums a chunk.
    pub(super) l0: f64,
    pub(super) l2: f64,
    /// The counts of the deterministic weights after the update.
    pub(super) weights: WeightSummary,
}

/// Where a step that reports writes for one chunk: its [`ChunkReport`],
/// scratch of 2 x [`COLUMN_CHUNK`] (the penalty terms, then the
/// deterministic weights in its first half) and the slab's
/// block of both weights' forward products ([`Columns::pairs`]).
pub(super) struct Report<'r> {
    pub(super) slot: &'r mut ChunkReport,
    pub(super) w: &'r mut [f32],
    pub(super) pair: &'r mut [f64],
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

    /// The chunk's deterministic weights (held to `floor`) into the
    /// scratch, and their counts.
    #[inline(always)]
    fn deterministic(
        &mut self,
        ch: &Chunk,
        rule: &ColumnRule<f32>,
        test: TestGate,
        floor: Option<&[f32]>,
    ) {
        let n = ch.len();
        let (p, a, w) = (&ch.p[..n], &ch.a[..n], &mut self.w[..n]);
        fixed_switches!(rule, {
            for j in 0..n {
                w[j] = rule.deterministic_weight(p[j], a[j], test);
            }
        });
        floor_weights(floor, ch.base, w);
        self.slot.weights = WeightSummary::of_slice(&w[..n]);
    }
}

/// [`ChunkPass::run`] as [`VectorWork`].
pub(super) struct PassWork<'p, 'c, 'x, 'r> {
    pub(super) pass: &'p ChunkPass<'p>,
    pub(super) chs: &'p mut [Chunk<'c>],
    pub(super) gw: &'p mut [f32],
    pub(super) scatter: Option<Scatter<'x>>,
    pub(super) report: Option<&'p mut Report<'r>>,
}

impl VectorWork for PassWork<'_, '_, '_, '_> {
    #[inline(always)]
    fn run(self) {
        self.pass.run(self.chs, self.gw, self.scatter, self.report)
    }
}
