//! The fit loop, written once for every backend and every model.
//!
//! Per epoch: sample weights (unless the previous step already did), forward
//! product, residual, fused backward + Adam. Every `report_every` epochs (and
//! at the last) it also evaluates the deterministic predictions and weight
//! counts for the observer; every `checkpoint_every` epochs it hands the
//! observer a copy of the full trainable state. Both schedules count the
//! model's total steps, not the epochs of this call: a fit resumed at step
//! 150 with `report_every = 100` reports after step 200 (its 50th epoch),
//! exactly when an uninterrupted run would have. The loop itself allocates
//! nothing, and on a GPU nothing but a few scalars (and the Q predictions at
//! report time; of all models side by side, for each model of a batch)
//! crosses to the host. After every epoch the observer may ask
//! the loop to stop early ([`Observer::stop_requested`], e.g. on Ctrl-C); the
//! state is then that of the last finished epoch, ready to checkpoint.
//!
//! [`train_models`] runs the same loop for the models of a backend that
//! trains several together (a λ sweep): each report epoch reports every
//! model, and the first model whose loss is not finite stops them all.

use crate::backend::{Backend, Losses, ParamState, WeightSummary};
use crate::error::{L0Error, Result};
use crate::hard_concrete::TestGate;

/// How often the loop checks for a non-finite loss when nothing else syncs.
const DIVERGENCE_CHECK_EVERY: u64 = 64;

/// What the observer sees at a report epoch.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// Which of the models trained together (0 for a single model).
    pub model: usize,
    /// 1-based epoch within this fit.
    pub epoch: u64,
    /// Epochs this fit runs.
    pub epochs: u64,
    /// Total Adam steps taken by the model so far (over all fits).
    pub step: u64,
    /// This epoch's (stochastic) data loss and the penalties before its update.
    pub losses: Losses,
    /// Deterministic predictions after the update.
    pub yhat: &'a [f64],
    /// Counts over the deterministic weights after the update.
    pub weights: WeightSummary,
}

/// Receives progress and checkpoints from [`train`].
pub trait Observer {
    /// Report whenever the model's step count becomes a multiple of this
    /// (and at the last epoch); None: only at the last.
    fn report_every(&self) -> Option<u64> {
        None
    }
    /// Called at report epochs.
    fn report(&mut self, _snapshot: &Snapshot) -> Result<()> {
        Ok(())
    }
    /// Hand over the state whenever the model's step count becomes a
    /// multiple of this; None: never.
    fn checkpoint_every(&self) -> Option<u64> {
        None
    }
    /// Called with the full state (its `step` already advanced).
    fn checkpoint(&mut self, _state: &ParamState) -> Result<()> {
        Ok(())
    }
    /// Asked after every epoch: true ends the fit there (the state written
    /// back is that epoch's). Never, unless overridden.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// An observer that wants nothing but the final report.
pub struct Silent;
impl Observer for Silent {}

fn due(every: Option<u64>, epoch: u64) -> bool {
    every.is_some_and(|k| k > 0 && epoch.is_multiple_of(k))
}

/// Fails when a model's loss has not been finite (the first such model,
/// named when several train together: the whole batch stops with it).
fn check_divergence(b: &mut dyn Backend, step0: u64) -> Result<()> {
    let models = b.models();
    for k in 0..models {
        b.select(k)?;
        if let Some(bad) = b.first_bad_step()? {
            return Err(L0Error::Diverged {
                epoch: bad - step0 + 1,
                model_epoch: bad + 1,
                what: match models {
                    1 => "the loss".into(),
                    _ => format!("the loss of model {} of {models}", k + 1),
                },
            });
        }
    }
    Ok(())
}

/// Runs `epochs` epochs from `state` (fewer when the observer asks to stop)
/// and writes the trained state back into it; returns the epochs run. On
/// error `state` is left untouched. Checkpoints are handed over at
/// intermediate steps only; the final state is `state` itself.
pub fn train(
    b: &mut dyn Backend,
    state: &mut ParamState,
    epochs: u64,
    test_gate: TestGate,
    observer: &mut dyn Observer,
) -> Result<u64> {
    train_models(b, std::slice::from_mut(state), epochs, test_gate, observer)
}

/// [`train`] for the models of a backend that trains several together
/// ([`Backend::models`]): `states[k]` is model `k`'s, all at the same step.
/// Each report epoch reports every model in turn ([`Snapshot::model`]).
/// Checkpoints are for one model only.
pub fn train_models(
    b: &mut dyn Backend,
    states: &mut [ParamState],
    epochs: u64,
    test_gate: TestGate,
    observer: &mut dyn Observer,
) -> Result<u64> {
    if states.len() != b.models() {
        return Err(L0Error::config(format!(
            "{} model states for a backend that trains {}",
            states.len(),
            b.models()
        )));
    }
    let step0 = states.first().map_or(0, |s| s.step);
    if states.iter().any(|s| s.step != step0) {
        return Err(L0Error::config(
            "models trained together must be at the same step",
        ));
    }
    let ckpt_every = observer.checkpoint_every();
    if states.len() > 1 && ckpt_every.is_some() {
        return Err(L0Error::config(
            "checkpoints are taken of one model at a time",
        ));
    }
    if epochs == 0 {
        return Ok(0);
    }
    for (k, s) in states.iter().enumerate() {
        b.select(k)?;
        b.load_state(s)?;
    }
    let mut yhat = vec![0.0f64; b.rows()];
    let mut losses = vec![Losses::default(); states.len()];
    let mut scratch: Option<ParamState> = None;
    let report_every = observer.report_every();
    let mut sampled = false;
    let mut run = epochs;
    for epoch in 1..=epochs {
        let step = step0 + epoch - 1;
        if !sampled {
            b.sample_weights(step)?;
        }
        b.forward()?;
        b.residual(step)?;
        let last = epoch == epochs;
        let report = last || due(report_every, step + 1);
        if report {
            sampled = b.step_reported(step, !last, test_gate, &mut losses)?;
        } else {
            sampled = !last;
            b.step(step, sampled)?;
        }
        if report || due(Some(DIVERGENCE_CHECK_EVERY), epoch) {
            check_divergence(b, step0)?;
        }
        if report {
            for (model, &losses) in losses.iter().enumerate() {
                b.select(model)?;
                b.read_yhat(&mut yhat)?;
                let weights = b.weight_summary()?;
                observer.report(&Snapshot {
                    model,
                    epoch,
                    epochs,
                    step: step + 1,
                    losses,
                    yhat: &yhat,
                    weights,
                })?;
            }
        }
        if due(ckpt_every, step + 1) && !last {
            // Never hand over a state that has already diverged.
            check_divergence(b, step0)?;
            let s = scratch.get_or_insert_with(|| states[0].clone());
            b.select(0)?;
            b.store_state(s)?;
            s.step = step + 1;
            observer.checkpoint(s)?;
        }
        if !last && observer.stop_requested() {
            // The next epoch's sampled weights (if any) are recomputed from
            // the stored state by whichever fit continues.
            check_divergence(b, step0)?;
            run = epoch;
            break;
        }
    }
    // The end state is the caller's to save (checkpoints above are only for
    // intermediate steps), so a failed write cannot discard a finished fit.
    for (k, s) in states.iter_mut().enumerate() {
        b.select(k)?;
        b.store_state(s)?;
        s.step = step0 + run;
    }
    Ok(run)
}
