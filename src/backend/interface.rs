//! What the engine and the backends exchange: the trait [`Backend`], whose
//! methods are the steps of an epoch, the problem a backend is built for
//! ([`Problem`], [`Hyper`], [`Noise`]), the trainable state
//! ([`ParamState`]) and what an epoch reports ([`Losses`],
//! [`WeightSummary`]).

use crate::error::{L0Error, Result};
use crate::hard_concrete::{ColumnRule, Gate, GateParams, Magnitude, Real, TestGate};
use crate::matrix::SparseMatrix;
use crate::objective::Shape;

/// [`Backend::step_reported`] as separate passes: each model's losses,
/// the step without sampling, the deterministic weights and their forward
/// product. Returns false: the next step's weights are not sampled.
pub fn step_then_report<B: Backend + ?Sized>(
    b: &mut B,
    step: u64,
    test: TestGate,
    losses: &mut [Losses],
) -> Result<bool> {
    for (k, l) in losses.iter_mut().enumerate() {
        b.select(k)?;
        *l = b.losses()?;
    }
    b.step(step, false)?;
    b.deterministic_weights(test)?;
    b.forward()?;
    Ok(false)
}

/// The least bytes one training epoch must move between the device's memory
/// and its cores, whatever the caches hold: both matrix layouts once (f32
/// values and u32 indices, CSR for the forward product, CSC for the
/// backward), the CSC column pointers, the six f32 parameters and Adam
/// moments read and written, the sampled weight, the gate's pre-stretch
/// value kept for the step and the column sums `M^T r` (f32), each written
/// once and read once (the forward product's gathers of w count once per
/// column), and the
/// per-row f64 vectors (targets, loss weights, scales read; predictions
/// written and read; residuals written and read once). The gathers
/// `w[col]` (4 B per nonzero) and `r[row]` (8 B per nonzero) are not counted:
/// they mostly hit in cache (r is Q doubles, a few hundred KB).
pub fn epoch_bytes(m: &SparseMatrix) -> f64 {
    let (nnz, rows, cols) = (m.nnz() as f64, m.rows() as f64, m.cols() as f64);
    nnz * 2.0 * (4.0 + 4.0) + cols * (8.0 + 6.0 * 4.0 * 2.0 + 3.0 * 4.0 * 2.0) + rows * 8.0 * 7.0
}

/// The gathers of `w` and `r` that [`epoch_bytes`] leaves out, in bytes, for
/// reporting traffic as if every gather went to memory.
pub fn gather_bytes(m: &SparseMatrix) -> f64 {
    m.nnz() as f64 * (4.0 + 8.0)
}

/// The hyperparameters that stay fixed during one fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    /// Gate temperature.
    pub beta: f64,
    /// Lower stretch bound.
    pub gamma: f64,
    /// Upper stretch bound.
    pub zeta: f64,
    /// L0 strength.
    pub lambda_l0: f64,
    /// L2 strength on `m(p)`.
    pub lambda_l2: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// How weights are built from their parameter.
    pub magnitude: Magnitude,
    /// Whether gates are used.
    pub use_gates: bool,
    /// Whether a scalar intercept is added to every prediction.
    pub fit_intercept: bool,
    /// Key of the gate noise.
    pub seed: u64,
}

impl Default for Hyper {
    /// The reference's defaults for a calibration fit (beta 2/3, gamma -0.1,
    /// zeta 1.1, lambda_l0 0.01, no L2, lr 0.01, exp magnitude, gates, no
    /// intercept), seed 0.
    fn default() -> Self {
        let g = GateParams::default();
        Hyper {
            beta: g.beta,
            gamma: g.gamma,
            zeta: g.zeta,
            lambda_l0: 0.01,
            lambda_l2: 0.0,
            lr: 0.01,
            magnitude: Magnitude::Exp,
            use_gates: true,
            fit_intercept: false,
            seed: 0,
        }
    }
}

impl Hyper {
    /// The per-column rule in working precision `T`.
    pub fn rule<T: Real>(&self) -> ColumnRule<T> {
        ColumnRule {
            gate: Gate::new(self.beta, self.gamma, self.zeta),
            magnitude: self.magnitude,
            use_gates: self.use_gates,
            lambda_l0: T::of(self.lambda_l0),
            lambda_l2: T::of(self.lambda_l2),
        }
    }
}

/// Where the uniform draws of the training gates come from.
#[derive(Clone, Copy, Debug, Default)]
pub enum Noise<'a> {
    /// Philox keyed by (seed, step, column): the production source, the same
    /// on every backend ([`crate::philox::gate_uniform`]).
    #[default]
    Philox,
    /// Replays recorded draws, `table[step % table.len()][column]`: lets tests
    /// feed the exact noise another implementation used (CPU backend only).
    Replay(&'a [Vec<f32>]),
}

/// Reads [`Noise`] column by column at one noise counter, computing each
/// Philox block once for its four columns.
#[derive(Clone, Debug)]
pub struct NoiseCursor<'a> {
    noise: Noise<'a>,
    seed: u64,
    step: u64,
    block: u64,
    words: [u32; 4],
}

impl<'a> NoiseCursor<'a> {
    /// A cursor over the draws of noise counter `step`.
    pub fn new(noise: Noise<'a>, seed: u64, step: u64) -> Self {
        NoiseCursor {
            noise,
            seed,
            step,
            block: u64::MAX,
            words: [0; 4],
        }
    }

    /// The raw uniform of `column`.
    #[inline(always)]
    pub fn uniform(&mut self, column: usize) -> f32 {
        match self.noise {
            Noise::Philox => {
                let b = column as u64 >> 2;
                if b != self.block {
                    self.words = crate::philox::gate_block(self.seed, self.step, b);
                    self.block = b;
                }
                crate::philox::word_to_uniform(self.words[column & 3])
            }
            Noise::Replay(t) => t[(self.step % t.len() as u64) as usize][column],
        }
    }

    /// `out[j]` = the raw uniform of column `first + j`, as
    /// [`NoiseCursor::uniform`] gives it: for Philox a whole block of four
    /// columns at a time, without the cursor's per-column branch.
    #[inline(always)]
    pub fn fill(&self, first: usize, out: &mut [f32]) {
        let first_block = first / 4;
        match self.noise {
            Noise::Philox if first.is_multiple_of(4) => {
                for (b, out) in out.chunks_mut(4).enumerate() {
                    let block = (first_block + b) as u64;
                    let words = crate::philox::gate_block(self.seed, self.step, block);
                    for (o, w) in out.iter_mut().zip(words) {
                        *o = crate::philox::word_to_uniform(w);
                    }
                }
            }
            _ => {
                let mut cursor = self.clone();
                for (j, o) in out.iter_mut().enumerate() {
                    *o = cursor.uniform(first + j);
                }
            }
        }
    }
}

/// Everything one fit computes with: the matrix, the targets and how each
/// target's error is weighted, and the hyperparameters.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    /// The matrix (targets x records).
    pub matrix: &'a SparseMatrix,
    /// Targets `y_q`.
    pub targets: &'a [f64],
    /// Loss weight `g_q` of each target (0 drops it).
    pub target_weight: &'a [f64],
    /// Error scale `d_q` (`y_q + 1` for relative loss, `max(|y_q|, 1)` for
    /// l1-relative, 1 for mse).
    pub denom: &'a [f64],
    /// Tolerance band half-width `b_q` of each target (a dead zone around
    /// it, [`crate::objective`]); None: no band.
    pub band: Option<&'a [f64]>,
    /// How a target's scaled error becomes loss ([`crate::objective::Shape`]).
    pub shape: Shape,
    /// Hyperparameters.
    pub hyper: Hyper,
    /// Source of the gate noise.
    pub noise: Noise<'a>,
    /// Upper bound on each column's `p` (one per column), enforced after
    /// every Adam step by projection (`p = min(p, max_p)`): the weight caps
    /// of [`crate::calibration::FitParams::max_weight`] and `max_weight_ratio`.
    /// None: no bound.
    pub max_p: Option<&'a [f32]>,
    /// Lower bound on each column's `p`, enforced after every Adam step
    /// before the caps (`p = min(max(p, min_p), max_p)`): the kept records'
    /// lower bounds of `min_weight_ratio` ([`crate::constraints`]). None:
    /// no bound.
    pub min_p: Option<&'a [f32]>,
    /// Each kept record's lowest deterministic weight
    /// ([`crate::hard_concrete::kept_weight`]), with `min_p`. None: none.
    pub floor: Option<&'a [f32]>,
    /// The conserved total of the weights' means over the gate noise,
    /// restored after every step by a common shift of the log-weights
    /// ([`crate::constraints`]). None: no total.
    pub total: Option<f64>,
}

impl<'a> Problem<'a> {
    /// The problem of `matrix`, `targets` with loss weights `target_weight`
    /// and error scales `denom` under `hyper`, with the squared loss, no
    /// band, Philox gate noise, no bound on `p` or the weights and no
    /// total (set them by struct update).
    pub fn new(
        matrix: &'a SparseMatrix,
        targets: &'a [f64],
        target_weight: &'a [f64],
        denom: &'a [f64],
        hyper: Hyper,
    ) -> Self {
        Problem {
            matrix,
            targets,
            target_weight,
            denom,
            band: None,
            shape: Shape::Square,
            hyper,
            noise: Noise::Philox,
            max_p: None,
            min_p: None,
            floor: None,
            total: None,
        }
    }

    /// Refuses per-row vectors that are not one per matrix row and per-column
    /// bounds that are not one per column.
    pub fn check_lengths(&self) -> Result<()> {
        let (rows, cols) = (self.matrix.rows(), self.matrix.cols());
        for (what, want, len) in [
            ("targets (one per matrix row)", rows, self.targets.len()),
            (
                "target weights (one per matrix row)",
                rows,
                self.target_weight.len(),
            ),
            ("error scales (one per matrix row)", rows, self.denom.len()),
            (
                "tolerance bands (one per matrix row)",
                rows,
                self.band.map_or(rows, <[f64]>::len),
            ),
            (
                "weight bounds (one per matrix column)",
                cols,
                self.max_p.map_or(cols, <[f32]>::len),
            ),
            (
                "lower weight bounds (one per matrix column)",
                cols,
                self.min_p.map_or(cols, <[f32]>::len),
            ),
            (
                "weight floors (one per matrix column)",
                cols,
                self.floor.map_or(cols, <[f32]>::len),
            ),
        ] {
            if len != want {
                return Err(L0Error::shape(what, want, len));
            }
        }
        Ok(())
    }
}

/// The per-column bounds of a problem ([`Problem::min_p`], [`Problem::max_p`],
/// [`Problem::floor`]), as the backends apply them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ColumnBounds<'a> {
    /// Lower bound on `p`.
    pub min_p: Option<&'a [f32]>,
    /// Upper bound on `p`.
    pub max_p: Option<&'a [f32]>,
    /// A kept record's lowest deterministic weight.
    pub floor: Option<&'a [f32]>,
}

impl ColumnBounds<'_> {
    /// `p` of column `i` held to its bounds: `min(max(p, min_p), max_p)`
    /// (the cap wins should the two cross). GPU twin: `bound_p`
    /// (kernels/common.cuh).
    #[inline(always)]
    pub fn clamp_p(&self, i: usize, p: f32) -> f32 {
        let p = self.min_p.map_or(p, |lo| p.max(lo[i]));
        self.max_p.map_or(p, |hi| p.min(hi[i]))
    }

    /// Column `i`'s weight floor (0: none).
    #[inline(always)]
    pub fn floor(&self, i: usize) -> f32 {
        self.floor.map_or(0.0, |f| f[i])
    }
}

impl<'a> Problem<'a> {
    /// The per-column bounds.
    pub fn bounds(&self) -> ColumnBounds<'a> {
        ColumnBounds {
            min_p: self.min_p,
            max_p: self.max_p,
            floor: self.floor,
        }
    }
}

/// Adam state of a scalar parameter (the regression intercept).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScalarState {
    /// The value.
    pub value: f32,
    /// First moment.
    pub m: f32,
    /// Second moment.
    pub v: f32,
}

/// The trainable state: parameters, Adam moments and the step counter. It
/// belongs to the model, so a second fit continues exactly where the first
/// stopped; the step counter is also the gate-noise counter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamState {
    /// Magnitude parameters `p` (log-weights for calibration).
    pub p: Vec<f32>,
    /// Gate logits `a` (log_alpha).
    pub a: Vec<f32>,
    /// Adam first moment of `p`.
    pub m_p: Vec<f32>,
    /// Adam second moment of `p`.
    pub v_p: Vec<f32>,
    /// Adam first moment of `a`.
    pub m_a: Vec<f32>,
    /// Adam second moment of `a`.
    pub v_a: Vec<f32>,
    /// The intercept, when fitted.
    pub intercept: Option<ScalarState>,
    /// Adam steps taken so far (= epochs trained).
    pub step: u64,
}

impl ParamState {
    /// Fresh state with zero moments.
    pub fn new(p: Vec<f32>, a: Vec<f32>, intercept: Option<f32>) -> Self {
        let n = p.len();
        ParamState {
            p,
            a,
            m_p: vec![0.0; n],
            v_p: vec![0.0; n],
            m_a: vec![0.0; n],
            v_a: vec![0.0; n],
            intercept: intercept.map(|value| ScalarState {
                value,
                ..Default::default()
            }),
            step: 0,
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.p.len()
    }

    /// Checks a state handed in from outside (a checkpoint, a caller): `n`
    /// entries in every vector, all finite, and an intercept exactly when
    /// `fit_intercept`. `p_name` names the magnitude parameter in messages.
    pub fn validate(&self, n: usize, p_name: &str, fit_intercept: bool) -> Result<()> {
        if self.intercept.is_some() != fit_intercept {
            return Err(L0Error::config(format!(
                "the state {} an intercept but the model has fit_intercept = {fit_intercept}",
                if self.intercept.is_some() {
                    "has"
                } else {
                    "lacks"
                },
            )));
        }
        for (what, v) in [
            (p_name, &self.p),
            ("log_alpha", &self.a),
            ("Adam moments", &self.m_p),
            ("Adam moments", &self.v_p),
            ("Adam moments", &self.m_a),
            ("Adam moments", &self.v_a),
        ] {
            if v.len() != n {
                return Err(L0Error::shape(what, n, v.len()));
            }
            crate::error::check_finite(what, v)?;
        }
        if let Some(b) = self.intercept {
            crate::error::check_finite("intercept state", &[b.value, b.m, b.v])?;
        }
        Ok(())
    }

    /// True for a model with no columns.
    pub fn is_empty(&self) -> bool {
        self.p.is_empty()
    }
}

/// The loss of the last [`Backend::residual`] and the penalties at the
/// current parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// `sum_q g_q e_q^2`.
    pub data: f64,
    /// Expected number of open gates.
    pub l0: f64,
    /// `sum_i m(p_i)^2`.
    pub l2: f64,
}

impl Losses {
    /// `data + lambda_l0 L0 + lambda_l2 L2` (the L2 term only when its strength is positive).
    pub fn total(&self, h: &Hyper) -> f64 {
        let l2 = if h.lambda_l2 > 0.0 {
            h.lambda_l2 * self.l2
        } else {
            0.0
        };
        self.data + h.lambda_l0 * self.l0 + l2
    }
}

/// Upper bounds of the weight-size buckets the reference prints; the last
/// bucket is everything at or above 1000.
pub const WEIGHT_BUCKETS: [f64; 5] = [0.01, 0.1, 1.0, 10.0, 1000.0];

/// Counts over the current weight buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightSummary {
    /// Weights different from zero.
    pub active: u64,
    /// Nonzero weights by size: <0.01, 0.01-0.1, 0.1-1, 1-10, 10-1000, >=1000
    /// (absolute values, for signed regression coefficients).
    pub buckets: [u64; 6],
}

impl WeightSummary {
    /// The summary of one weight.
    pub fn of(w: f32) -> Self {
        let mut s = WeightSummary::default();
        if w != 0.0 {
            s.active = 1;
            let x = w.abs() as f64;
            s.buckets[WEIGHT_BUCKETS.iter().take_while(|&&b| x >= b).count()] = 1;
        }
        s
    }

    /// The summary of the weights `w`: [`WeightSummary::of`] each, merged,
    /// counted as how many reach each bucket's lower bound (straight
    /// compare-and-add loops, which vectorise).
    #[inline(always)]
    pub fn of_slice(w: &[f32]) -> Self {
        let active = w.iter().map(|&x| (x != 0.0) as u64).sum::<u64>();
        let reach =
            WEIGHT_BUCKETS.map(|b| w.iter().map(|&x| (x.abs() as f64 >= b) as u64).sum::<u64>());
        let mut buckets = [0; 6];
        buckets[0] = active - reach[0];
        for k in 1..5 {
            buckets[k] = reach[k - 1] - reach[k];
        }
        buckets[5] = reach[4];
        WeightSummary { active, buckets }
    }

    /// Adds two summaries.
    pub fn merge(mut self, o: Self) -> Self {
        self.active += o.active;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self
    }
}

/// The steps of an epoch. Buffers live in the backend (host memory or the
/// GPU) from construction to drop; nothing the size of the problem is
/// allocated in the epoch loop (the CPU backend's passes make a few small
/// task lists).
///
/// A backend may train several models together ([`Backend::models`]: the
/// same matrix, targets, seed and step count, each with its own L0
/// strength, as a λ sweep does): the epoch's steps (sampling, products,
/// residual, update) then act on every model in one pass over the matrix,
/// while the per-model methods (`load_state`, `store_state`, `gradients`,
/// `losses`, `first_bad_step`, `read_yhat`, `read_weights`,
/// `weight_summary`) act on the model chosen by [`Backend::select`] (model
/// 0 until then).
pub trait Backend {
    /// Where it runs, in words (e.g. "cpu (2 threads, avx2)").
    fn describe(&self) -> String;
    /// Number of predictions (matrix rows).
    fn rows(&self) -> usize;
    /// Models trained together (1 unless built for a batch).
    fn models(&self) -> usize {
        1
    }
    /// Makes model `k` the one the per-model methods act on.
    fn select(&mut self, k: usize) -> Result<()> {
        match k {
            0 => Ok(()),
            _ => Err(L0Error::config(format!(
                "model {k} selected on a backend that trains one model"
            ))),
        }
    }
    /// Takes a new batch of models, one per `lambdas[k]` (the number may
    /// change), keeping what was built for the problem (on a GPU the matrix
    /// and targets); every model must then be loaded again
    /// ([`Backend::load_state`]). Returns false, changing nothing, when this
    /// backend cannot (the default; a batch beyond the room it was built
    /// with): build a new one.
    fn rebatch(&mut self, _lambdas: &[f64]) -> Result<bool> {
        Ok(false)
    }
    /// Whether it runs on a GPU.
    fn on_gpu(&self) -> bool {
        false
    }
    /// Copies parameters and Adam state in.
    fn load_state(&mut self, s: &ParamState) -> Result<()>;
    /// Copies parameters and Adam state out (`s.step` is left to the caller).
    fn store_state(&mut self, s: &mut ParamState) -> Result<()>;
    /// Training weights with the gate noise of noise counter `step`.
    fn sample_weights(&mut self, step: u64) -> Result<()>;
    /// Deterministic (test-time) weights.
    fn deterministic_weights(&mut self, rule: TestGate) -> Result<()>;
    /// `yhat = M w (+ intercept)`.
    fn forward(&mut self) -> Result<()>;
    /// Residual and data loss of the current `yhat`; a non-finite loss
    /// records `step` as the first bad epoch (see [`Backend::first_bad_step`]).
    fn residual(&mut self, step: u64) -> Result<()>;
    /// Backward pass through the gates of the last sampling (which the
    /// engine always does at noise counter `step`) and Adam update (Adam's
    /// 1-based count is `step + 1`); with `sample_next`, also samples the
    /// training weights of step `step + 1`.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()>;
    /// [`Backend::step`] at a report epoch, with what the report reads:
    /// `losses[k]` = model `k`'s [`Backend::losses`] before the update,
    /// then the deterministic weights of `test` and their predictions,
    /// which [`Backend::read_yhat`] and [`Backend::weight_summary`] give
    /// until the next [`Backend::forward`]. With `sample_next` a backend
    /// may also sample the next step's training weights (and so read the
    /// matrix once for all of it); returns whether it did. The default
    /// ([`step_then_report`]) never does.
    fn step_reported(
        &mut self,
        step: u64,
        sample_next: bool,
        test: TestGate,
        losses: &mut [Losses],
    ) -> Result<bool> {
        let _ = sample_next;
        step_then_report(self, step, test, losses)
    }
    /// The gradients of the total loss at the current parameters and the
    /// gates of the last sampling, without an update: `(dL/dp, dL/da, dL/db)`.
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)>;
    /// Data loss of the last residual and penalties at the current parameters.
    fn losses(&mut self) -> Result<Losses>;
    /// The first step whose loss was not finite, if any.
    fn first_bad_step(&mut self) -> Result<Option<u64>>;
    /// Copies `yhat` out.
    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()>;
    /// Copies the current weights out.
    fn read_weights(&mut self, out: &mut [f32]) -> Result<()>;
    /// Active count and size buckets of the current weights.
    fn weight_summary(&mut self) -> Result<WeightSummary>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counting form equals merging [`WeightSummary::of`] one weight at
    /// a time, bucket edges, signs, zeros and NaN included.
    #[test]
    fn a_slice_summary_merges_the_single_ones() {
        let mut w: Vec<f32> = vec![0.0, -0.0, f32::NAN, f32::INFINITY, -f32::INFINITY];
        for b in WEIGHT_BUCKETS {
            let b = b as f32;
            for x in [
                b,
                f32::from_bits(b.to_bits() - 1),
                f32::from_bits(b.to_bits() + 1),
            ] {
                w.extend([x, -x]);
            }
        }
        w.extend((0..1000).map(|i| ((i as f32) * 0.37).sin() * 10f32.powi(i % 7 - 3)));
        let want = w.iter().fold(WeightSummary::default(), |s, &x| {
            s.merge(WeightSummary::of(x))
        });
        assert_eq!(WeightSummary::of_slice(&w), want);
        // Three zeros (+0, -0 and the series' first term); NaN is active.
        assert_eq!(want.active, w.len() as u64 - 3);
    }
}
