//! The CPU backend itself ([`CpuBackend`]): the problem, the models'
//! columns and per-row vectors, and the epoch's steps as passes.

use super::pass::{ChunkPass, Columns, GivenGradients};
use super::products::{ColumnGradient, RowWeights, Rows, SegmentDots};
use super::work::{Cpu, COLUMN_CHUNK, SEGMENT_CHUNK};
use crate::backend::dots::gather_dot;
use crate::backend::interface::{
    Backend, Losses, NoiseCursor, ParamState, Problem, ScalarState, WeightSummary,
};
use crate::backend::simd::SimdPath;
use crate::constraints::{solve_shift, ShiftSums, CONSERVE_TOLERANCE};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{adam_update, AdamStep, ColumnRule, GateMeans, TestGate};
use crate::objective::target_term;
use rayon::prelude::*;

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
    /// With a conserved total, the table of the gate means and each
    /// model's `E[z_i]` at the current logits ([`CpuBackend::conserve`]);
    /// None and empty otherwise.
    gate_means: Option<GateMeans>,
    expected: Vec<Vec<f32>>,
    /// With a conserved total, the step's column gradients `g_w` of every
    /// model, computed once for the multipliers and read by the step: per
    /// chunk of [`COLUMN_CHUNK`] columns, one row per model (the step's
    /// scratch layout); empty otherwise.
    column_grads: Vec<f32>,
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
                crate::backend::interface::Hyper {
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
            gate_means: problem
                .total
                .map(|_| GateMeans::new(&problem.hyper.rule::<f32>().gate)),
            expected: match problem.total {
                Some(_) => vec![vec![0.0; n]; k],
                None => Vec::new(),
            },
            column_grads: match problem.total {
                Some(_) => vec![0.0; n.div_ceil(COLUMN_CHUNK) * COLUMN_CHUNK * k],
                None => Vec::new(),
            },
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
    /// [`Backend::step_reported`] fuses into it. With a conserved total,
    /// each model's column gradients `g_w` first take its multiplier
    /// ([`CpuBackend::multipliers`]).
    fn step_pass(&mut self, step: u64, sample_next: bool, report: Option<TestGate>) {
        self.reported = None;
        let adam = AdamStep::new(self.problem.hyper.lr, step + 1);
        for k in 0..self.rules.len() {
            if let (Some(g), Some(b)) = (self.intercept_gradient(k), self.intercepts[k].as_mut()) {
                adam_update(&mut b.value, &mut b.m, &mut b.v, g as f32, adam);
            }
        }
        self.long_column_partials();
        let mu = self.problem.total.map(|_| self.multipliers());
        let pass = ChunkPass::Step {
            given: mu.as_deref().map(|mu| GivenGradients {
                mu,
                grads: &self.column_grads,
            }),
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
            bounds: self.problem.bounds(),
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

    /// Restores each model's conserved total after its update
    /// ([`crate::constraints`]): the gate means `E[z_i]` at the new logits
    /// ([`GateMeans::at`]; 1 without gates), the shift `c` that [`solve_shift`]
    /// finds over [`CpuBackend::shift_sums`], then `p_i = clamp(p_i + c)`
    /// for every column.
    /// GPU twins: kernels `expected_gates`, `conserve_sums` (summed by
    /// `penalties_finalize`) and `conserve_shift` (kernels/gates.cu).
    fn conserve(&mut self, total: f64) {
        let bounds = self.problem.bounds();
        let Some(means) = &self.gate_means else {
            return;
        };
        for k in 0..self.rules.len() {
            let (gates, a) = (self.rules[k].use_gates, &self.cols.models[k].a);
            let expected = &mut self.expected[k];
            self.cpu.pool.install(|| {
                expected
                    .par_chunks_mut(COLUMN_CHUNK)
                    .zip(a.par_chunks(COLUMN_CHUNK))
                    .for_each(|(e, a)| {
                        for (e, &a) in e.iter_mut().zip(a) {
                            *e = if gates { means.at(a) } else { 1.0 };
                        }
                    })
            });
            let c = solve_shift(total, CONSERVE_TOLERANCE, |c| self.shift_sums(k, c as f32)) as f32;
            let p = &mut self.cols.models[k].p;
            self.cpu.pool.install(|| {
                p.par_chunks_mut(COLUMN_CHUNK)
                    .enumerate()
                    .for_each(|(chunk, p)| {
                        let base = chunk * COLUMN_CHUNK;
                        for (j, p) in p.iter_mut().enumerate() {
                            *p = bounds.clamp_p(base + j, *p + c);
                        }
                    })
            });
        }
    }

    /// Each model's multiplier of its conserved total for this step
    /// ([`crate::constraints`]): `mu = -sum_i w_i^2 g_w,i / sum_i w_i^2`
    /// over its sampled weights `w` and column gradients `g_w = (M^T r)_i`
    /// (0 when every weight is 0), in fixed chunks combined in order; the
    /// gradients are kept in `column_grads` for the step. Added
    /// to every `g_w`, it takes out of the gradient the part that only
    /// moves the total, which the shift would undo: the step is then the
    /// gradient of the Lagrangian `L + mu sum_i w_i`, whose fixed points
    /// are the constrained optimum's.
    /// GPU twins: kernels `multiplier_sums` and `multiplier_finalize`
    /// (kernels/step.cu).
    fn multipliers(&mut self) -> Vec<f32> {
        let models = self.rules.len();
        let grad = ColumnGradient::new(
            self.problem.matrix,
            models,
            &self.r,
            self.cols.lanes,
            &self.long_partials,
            self.cpu.simd,
        );
        let (cols, n) = (&self.cols.models, self.problem.matrix.cols());
        let parts: Vec<Vec<(f64, f64)>> = self.cpu.pool.install(|| {
            self.column_grads
                .par_chunks_mut(models * COLUMN_CHUNK)
                .enumerate()
                .map(|(chunk, gw)| {
                    let (base, len) = (
                        chunk * COLUMN_CHUNK,
                        COLUMN_CHUNK.min(n - chunk * COLUMN_CHUNK),
                    );
                    grad.fill(base, len, gw);
                    (0..models)
                        .map(|k| {
                            let (w, g) = (&cols[k].w[base..base + len], &gw[k * COLUMN_CHUNK..]);
                            w.iter().zip(g).fold((0.0, 0.0), |(s1, s2), (&w, &g)| {
                                let w2 = w as f64 * w as f64;
                                (s1 + w2 * g as f64, s2 + w2)
                            })
                        })
                        .collect()
                })
                .collect()
        });
        (0..models)
            .map(|k| {
                let (s1, s2) = parts
                    .iter()
                    .fold((0.0, 0.0), |(a, b), p| (a + p[k].0, b + p[k].1));
                if s2 > 0.0 {
                    (-s1 / s2) as f32
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Model `k`'s mean weights `m(clamp(p_i + c)) E[z_i]` with every
    /// log-weight shifted by `c` and held to its bounds, summed
    /// ([`ShiftSums`]: all, and those at neither bound), in fixed chunks
    /// combined in order.
    fn shift_sums(&self, k: usize, c: f32) -> ShiftSums {
        let (rule, bounds) = (&self.rules[k], self.problem.bounds());
        let (p, expected) = (&self.cols.models[k].p, &self.expected[k]);
        let n = p.len();
        let parts: Vec<ShiftSums> = self.cpu.pool.install(|| {
            (0..n.div_ceil(COLUMN_CHUNK))
                .into_par_iter()
                .map(|chunk| {
                    let columns = chunk * COLUMN_CHUNK..n.min((chunk + 1) * COLUMN_CHUNK);
                    columns.fold(ShiftSums::default(), |sums, i| {
                        let shifted = p[i] + c;
                        let q = bounds.clamp_p(i, shifted);
                        let w = rule.magnitude.eval(q).0 * expected[i];
                        sums.merge(ShiftSums::of(w as f64, q == shifted))
                    })
                })
                .collect()
        });
        parts
            .into_iter()
            .fold(ShiftSums::default(), ShiftSums::merge)
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

    /// `w_i = m(p_i) z_test(a_i)`, a kept one held to its floor
    /// ([`crate::hard_concrete::kept_weight`]).
    /// GPU twin: kernel `deterministic_weights` (kernels/gates.cu).
    fn deterministic_weights(&mut self, test: TestGate) -> Result<()> {
        self.reported = None;
        let pass = ChunkPass::Deterministic {
            rules: &self.rules,
            test,
            floor: self.problem.floor,
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
    /// gradient `sum_q r_q`. With [`Problem::min_p`] or [`Problem::max_p`],
    /// `p` is projected onto its bounds after its update (the weight caps,
    /// the kept records' lower bounds). With [`Problem::total`], each
    /// model's log-weights then shift to restore its total
    /// ([`CpuBackend::conserve`]) before the next weights are sampled.
    /// GPU twins: kernels `column_dots_lL` (a group of lanes per CSC column),
    /// `step_columns` (a thread per column) and `intercept_adam`,
    /// kernels/step.cu.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        let Some(total) = self.problem.total else {
            self.step_pass(step, sample_next, None);
            return Ok(());
        };
        self.step_pass(step, false, None);
        self.conserve(total);
        if sample_next {
            self.sample_weights(step + 1)?;
        }
        Ok(())
    }

    /// With one model, forward accumulators and `sample_next`, one pass:
    /// each chunk's penalties before its update, the update, the next
    /// training weights and their forward product, the deterministic
    /// weights, their counts and forward product ([`ChunkPass::Step`] with
    /// `report`); the matrix is read once, as in any epoch. The sums are
    /// those of the separate passes ([`crate::backend::interface::step_then_report`]), bit for
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
        if !sample_next || self.cols.pairs.is_empty() || self.problem.total.is_some() {
            return crate::backend::interface::step_then_report(self, step, test, losses);
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

#[cfg(test)]
mod tests {
    use super::super::work::COLUMN_CHUNK;
    use super::*;
    use crate::backend::interface::{Hyper, Noise};
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
