//! Training several models of one kind together: batches of at most
//! [`MAX_BATCH`] models, one L0 strength each, trained in one pass over the
//! matrix per epoch where the device can, else each model by its own fit,
//! one after another; written once for both models ([`fit_together`], with
//! a model's side in [`BatchFit`]).

use crate::backend::{Backend, Hyper, ParamState};
use crate::engine::{self, Observer, Snapshot};
use crate::error::{L0Error, Result};
use crate::hard_concrete::TestGate;
use crate::limits::MAX_BATCH;
use crate::model::{check_non_negative, FitReport};

/// A model that can be trained together with others of its kind
/// ([`crate::calibration::Calibration::fit_together`],
/// [`crate::regression::Regression::fit_together`]).
pub(crate) trait Batchable {
    /// The model's options.
    type Params: PartialEq;
    /// The seed in use.
    fn seed(&self) -> u64;
    /// The model's options.
    fn params(&self) -> &Self::Params;
    /// The trainable state.
    fn state(&self) -> &ParamState;
    /// Takes a trained state.
    fn set_trained(&mut self, state: ParamState);
    /// Moves the state out (leaving an empty one until `set_trained`).
    fn take_state(&mut self) -> ParamState;
}

/// Implements [`Batchable`] for a model type with fields `seed`, `params`
/// (of type `$params`) and `state`.
macro_rules! impl_batchable {
    ($model:ty, $params:ty) => {
        impl $crate::batch::Batchable for $model {
            type Params = $params;
            fn seed(&self) -> u64 {
                self.seed
            }
            fn params(&self) -> &$params {
                &self.params
            }
            fn state(&self) -> &ParamState {
                &self.state
            }
            fn set_trained(&mut self, state: ParamState) {
                self.state = state;
            }
            fn take_state(&mut self) -> ParamState {
                std::mem::take(&mut self.state)
            }
        }
    };
}
pub(crate) use impl_batchable;

/// Runs `batch(first, models, lambdas)` on consecutive batches of at most
/// [`MAX_BATCH`] of `models` (one per `lambdas[k]`, else an error), `first`
/// being the index of the batch's first model, and returns the results in
/// order.
pub(crate) fn in_batches<M, R>(
    models: &mut [&mut M],
    lambdas: &[f64],
    mut batch: impl FnMut(usize, &mut [&mut M], &[f64]) -> Result<Vec<R>>,
) -> Result<Vec<R>> {
    check_one_per_model(models.len(), lambdas.len())?;
    let mut out = Vec::with_capacity(models.len());
    let batches = models.chunks_mut(MAX_BATCH).zip(lambdas.chunks(MAX_BATCH));
    for (b, (models, lambdas)) in batches.enumerate() {
        out.extend(batch(b * MAX_BATCH, models, lambdas)?);
    }
    Ok(out)
}

/// Refuses `lambdas` L0 strengths for `models` models unless one each.
pub(crate) fn check_one_per_model(models: usize, lambdas: usize) -> Result<()> {
    if models != lambdas {
        return Err(L0Error::shape(
            "L0 strengths (one per model)",
            models,
            lambdas,
        ));
    }
    Ok(())
}

/// Whether `models` (each λ finite and >= 0, else an error) can train
/// together: more than one, all with
/// the same options, seed and number of columns, at the same step (so the
/// same gate noise serves all).
pub(crate) fn batchable<M: Batchable>(models: &[&mut M], lambdas: &[f64]) -> Result<bool> {
    for &l in lambdas {
        check_non_negative("lambda_l0", l)?;
    }
    Ok(models.len() > 1
        && models.windows(2).all(|p| {
            p[0].seed() == p[1].seed()
                && p[0].state().step == p[1].state().step
                && p[0].state().len() == p[1].state().len()
                && p[0].params() == p[1].params()
        }))
}

/// `hyper` with each L0 strength of `lambdas`.
pub(crate) fn hypers(hyper: Hyper, lambdas: &[f64]) -> Vec<Hyper> {
    lambdas
        .iter()
        .map(|&lambda_l0| Hyper { lambda_l0, ..hyper })
        .collect()
}

/// Trains the models of a batch backend for `epochs` epochs from their
/// states as `start` prepares them (a fit's start jitter, cap projection
/// or intercept), and hands each model its trained state; returns the
/// epochs run and the seconds taken. The states are moved, not copied
/// (at 5.2M columns a copy is 125 MB per model): on error each model gets
/// its prepared start state back, which is its own state unless `start`
/// changed it.
pub(crate) fn train_together<M: Batchable>(
    models: &mut [&mut M],
    backend: &mut (dyn Backend + '_),
    start: impl Fn(ParamState) -> ParamState,
    epochs: u64,
    test_gate: TestGate,
    observer: &mut dyn Observer,
) -> Result<(u64, f64)> {
    let clock = std::time::Instant::now();
    let mut states: Vec<ParamState> = models.iter_mut().map(|m| start(m.take_state())).collect();
    let run = engine::train_models(backend, &mut states, epochs, test_gate, observer);
    for (m, s) in models.iter_mut().zip(states) {
        m.set_trained(s);
    }
    Ok((run?, clock.elapsed().as_secs_f64()))
}

/// Why a batch's models train one after another, in one line (None: no
/// reason worth telling, as for models that were never alike).
pub(crate) type Apart = Option<String>;

/// One kind of model's side of a batch fit ([`fit_together`]).
pub(crate) trait BatchFit<M: Batchable> {
    /// A model's progress at a report.
    type Progress: Clone;
    /// Fits `model` (model `k` of all those given to [`fit_together`])
    /// alone with L0 strength `lambda_l0`, as its own fit would.
    fn fit_alone(
        &mut self,
        k: usize,
        model: &mut M,
        lambda_l0: f64,
    ) -> Result<FitReport<Self::Progress>>;
    /// What `models` (model `first` onward, one per `lambdas[k]`) train
    /// together with, or why they train one after another.
    fn together<'s>(
        &'s mut self,
        first: usize,
        models: &[&mut M],
        lambdas: &[f64],
    ) -> Result<std::result::Result<Together<'s, Self::Progress>, Apart>>;
}

/// What the models of a batch train together with ([`BatchFit::together`]).
pub(crate) struct Together<'s, P> {
    /// The backend, one model per L0 strength.
    pub backend: &'s mut (dyn Backend + 's),
    /// The state a fit starts from, given the model's own.
    pub start: Box<dyn Fn(ParamState) -> ParamState + 's>,
    /// Epochs to train.
    pub epochs: u64,
    /// The deterministic gate of the reports.
    pub test_gate: TestGate,
    /// Reports each model's progress.
    pub observer: ProgressPerModel<'s, P>,
}

/// Model `k`'s progress from a snapshot and its total loss.
type MakeProgress<'s, P> = Box<dyn Fn(&Snapshot, f64) -> P + 's>;
/// Receives model `k`'s progress.
type OnProgress<'s, P> = Box<dyn FnMut(usize, &P) -> Result<()> + 's>;

/// The observer of a fit of one model or of a batch: model `k`'s progress,
/// made from a snapshot and its total loss with its own hyperparameters
/// `hypers[k]`, is handed to `on_progress(k, progress)`; each model's last
/// is kept.
pub(crate) struct ProgressPerModel<'s, P> {
    every: Option<u64>,
    hypers: Vec<Hyper>,
    progress: MakeProgress<'s, P>,
    on_progress: OnProgress<'s, P>,
    stop: Box<dyn FnMut() -> bool + 's>,
    last: Vec<Option<P>>,
}

impl<'s, P: Clone> ProgressPerModel<'s, P> {
    /// Reports every `every` steps (and at the last) for one model per
    /// `hypers[k]`; never asks to stop.
    pub fn new(
        every: Option<u64>,
        hypers: Vec<Hyper>,
        progress: impl Fn(&Snapshot, f64) -> P + 's,
        on_progress: impl FnMut(usize, &P) -> Result<()> + 's,
    ) -> Self {
        ProgressPerModel {
            every,
            last: vec![None; hypers.len()],
            hypers,
            progress: Box::new(progress),
            on_progress: Box::new(on_progress),
            stop: Box::new(|| false),
        }
    }

    /// Hands each progress to `on_progress(k, progress)` instead.
    pub fn reporting(self, on_progress: impl FnMut(usize, &P) -> Result<()> + 's) -> Self {
        ProgressPerModel {
            on_progress: Box::new(on_progress),
            ..self
        }
    }

    /// Asks `stop` after every epoch (true ends the fit there).
    pub fn stopping(self, stop: impl FnMut() -> bool + 's) -> Self {
        ProgressPerModel {
            stop: Box::new(stop),
            ..self
        }
    }

    /// Each model's last progress.
    pub fn into_last(self) -> Vec<Option<P>> {
        self.last
    }
}

impl<P> Observer for ProgressPerModel<'_, P> {
    fn report_every(&self) -> Option<u64> {
        self.every
    }
    fn report(&mut self, s: &Snapshot) -> Result<()> {
        let p = (self.progress)(s, s.losses.total(&self.hypers[s.model]));
        (self.on_progress)(s.model, &p)?;
        self.last[s.model] = Some(p);
        Ok(())
    }
    fn stop_requested(&mut self) -> bool {
        (self.stop)()
    }
}

/// Fits `models[k]` with L0 strength `lambdas[k]` (one each, else an
/// error), in batches of at most [`MAX_BATCH`]: each batch together where
/// `job` gives it what to train with ([`BatchFit::together`]), else each
/// model by its own fit ([`BatchFit::fit_alone`]), the report saying why.
/// Returns each model's report, in order (`seconds`: its batch's).
pub(crate) fn fit_together<M: Batchable, J: BatchFit<M>>(
    models: &mut [&mut M],
    lambdas: &[f64],
    job: &mut J,
) -> Result<Vec<FitReport<J::Progress>>> {
    in_batches(models, lambdas, |first, models, lambdas| {
        fit_batch(first, models, lambdas, job)
    })
}

/// [`fit_together`] for the at most [`MAX_BATCH`] models from model `first` on.
fn fit_batch<M: Batchable, J: BatchFit<M>>(
    first: usize,
    models: &mut [&mut M],
    lambdas: &[f64],
    job: &mut J,
) -> Result<Vec<FitReport<J::Progress>>> {
    let why = match job.together(first, models, lambdas)? {
        Ok(t) => return train_batch(models, t),
        Err(why) => why,
    };
    let alone = models.iter_mut().zip(lambdas).enumerate();
    alone
        .map(|(k, (m, &lambda_l0))| {
            let r = job.fit_alone(first + k, m, lambda_l0)?;
            Ok(FitReport {
                fallback: why.clone(),
                ..r
            })
        })
        .collect()
}

/// Trains `models` together as `t` says; returns each model's report.
fn train_batch<M: Batchable, P: Clone>(
    models: &mut [&mut M],
    t: Together<'_, P>,
) -> Result<Vec<FitReport<P>>> {
    let device = t.backend.describe();
    let mut observer = t.observer;
    let (epochs, seconds) = train_together(
        models,
        t.backend,
        t.start,
        t.epochs,
        t.test_gate,
        &mut observer,
    )?;
    Ok(observer
        .into_last()
        .into_iter()
        .map(|last| FitReport {
            device: device.clone(),
            epochs,
            seconds,
            last,
            fallback: None,
        })
        .collect())
}
