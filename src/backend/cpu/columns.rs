//! Per-column state as a structure of arrays ([`ModelColumns`]), cut into
//! chunks ([`Chunk`]) whose per-column math runs as straight loops, the
//! rule's switches fixed per loop ([`fixed_switches`]).

use super::work::COLUMN_CHUNK;
use crate::backend::interface::{ColumnBounds, NoiseCursor};
use crate::hard_concrete::{adam_update, kept_weight, AdamStep, ColumnRule, Magnitude};

/// Evaluates `$body` with `$rule` (a `&ColumnRule<f32>`) rebound to a copy
/// whose switches (gates on or off, the magnitude) are constants: one copy
/// of the body per combination, so its per-column loops hold no branch on
/// them. AVX2 needs that to vectorise the loops (AVX-512's masked lanes
/// did without); the values computed are the same.
macro_rules! fixed_switches {
    ($rule:ident, $body:expr) => {
        match ($rule.use_gates, $rule.magnitude) {
            (true, Magnitude::Exp) => {
                let $rule =
                    &$crate::backend::cpu::columns::with_switches($rule, true, Magnitude::Exp);
                $body
            }
            (true, Magnitude::Linear) => {
                let $rule =
                    &$crate::backend::cpu::columns::with_switches($rule, true, Magnitude::Linear);
                $body
            }
            (false, Magnitude::Exp) => {
                let $rule =
                    &$crate::backend::cpu::columns::with_switches($rule, false, Magnitude::Exp);
                $body
            }
            (false, Magnitude::Linear) => {
                let $rule =
                    &$crate::backend::cpu::columns::with_switches($rule, false, Magnitude::Linear);
                $body
            }
        }
    };
}

/// `rule` with the given switches (see [`fixed_switches`]).
#[inline(always)]
pub(super) fn with_switches(
    rule: &ColumnRule<f32>,
    use_gates: bool,
    magnitude: Magnitude,
) -> ColumnRule<f32> {
    ColumnRule {
        use_gates,
        magnitude,
        ..*rule
    }
}

/// One model's per-column state, one array per quantity.
#[derive(Clone, Debug, Default)]
pub(super) struct ModelColumns {
    /// The gate's pre-stretch value `s` of the last sampling, kept so the
    /// backward pass need not redraw the noise.
    pub(super) s: Vec<f32>,
    pub(super) p: Vec<f32>,
    pub(super) a: Vec<f32>,
    pub(super) m_p: Vec<f32>,
    pub(super) v_p: Vec<f32>,
    pub(super) m_a: Vec<f32>,
    pub(super) v_a: Vec<f32>,
    /// The current weights (sampled or deterministic).
    pub(super) w: Vec<f32>,
}

impl ModelColumns {
    pub(super) fn new(n: usize) -> Self {
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
    pub(super) fn chunks(&mut self, len: usize) -> Vec<Chunk<'_>> {
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

/// One chunk of a model's columns: column `base + j` is entry `j` of each slice.
pub(super) struct Chunk<'c> {
    pub(super) base: usize,
    pub(super) s: &'c mut [f32],
    pub(super) p: &'c mut [f32],
    pub(super) a: &'c mut [f32],
    pub(super) m_p: &'c mut [f32],
    pub(super) v_p: &'c mut [f32],
    pub(super) m_a: &'c mut [f32],
    pub(super) v_a: &'c mut [f32],
    pub(super) w: &'c mut [f32],
}

impl<'c> Chunk<'c> {
    pub(super) fn len(&self) -> usize {
        self.p.len()
    }

    /// The first `n` columns (or all) and the rest.
    pub(super) fn split(self, n: usize) -> (Chunk<'c>, Chunk<'c>) {
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
    /// bounds' projection `p = min(max(p, min_p), max_p)` (indexed by
    /// column, [`ColumnBounds::clamp_p`]).
    /// Every slice is cut to the chunk's length first, so the loops have no
    /// bounds checks and vectorise.
    /// With `PENALTIES`, the penalty terms of the parameters before the
    /// update (`pi`, `m(p)^2`, as [`ColumnRule::penalties`] gives them)
    /// are written to `pen[j]` and `pen[COLUMN_CHUNK + j]` on the way (the
    /// update computes both anyway); `pen` is unused otherwise.
    #[inline(always)]
    pub(super) fn update<const PENALTIES: bool>(
        &mut self,
        rule: &ColumnRule<f32>,
        adam: AdamStep,
        gw: &[f32],
        bounds: ColumnBounds,
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
        if let Some(lo) = bounds.min_p {
            let lo = &lo[self.base..self.base + n];
            for j in 0..n {
                p[j] = p[j].max(lo[j]);
            }
        }
        if let Some(cap) = bounds.max_p {
            let cap = &cap[self.base..self.base + n];
            for j in 0..n {
                p[j] = p[j].min(cap[j]);
            }
        }
    }
}

/// Holds the deterministic weights `w` of the columns from `base` on to
/// their floor ([`kept_weight`]), when there is one.
#[inline(always)]
pub(super) fn floor_weights(floor: Option<&[f32]>, base: usize, w: &mut [f32]) {
    if let Some(f) = floor {
        let f = &f[base..base + w.len()];
        for j in 0..w.len() {
            w[j] = kept_weight(w[j], f[j]);
        }
    }
}

/// Draws the uniforms of the chunks' columns from `cursor` and takes
/// their logits once (with gates), then samples every model's training
/// weights from them.
#[inline(always)]
pub(super) fn sample_models(chs: &mut [Chunk], rules: &[ColumnRule<f32>], cursor: &NoiseCursor) {
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

pub(super) use fixed_switches;
