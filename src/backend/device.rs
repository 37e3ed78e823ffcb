//! Choosing the hardware ([`Device`]) and building a backend on it for one
//! model ([`make_backend`]) or a batch ([`make_batch_backend`],
//! [`BatchBackends`]), falling back to the CPU, or to one model after
//! another, where the GPU cannot take it.

use super::cpu;
#[cfg(feature = "cuda")]
use super::cuda;
#[cfg(feature = "cuda")]
use super::interface::Noise;
use super::interface::{Backend, Problem};
use crate::error::{L0Error, Result};

/// Which hardware runs the fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The GPU when a CUDA driver, NVRTC and a device are present, else the CPU.
    #[default]
    Auto,
    /// The rayon CPU backend.
    Cpu,
    /// CUDA device with this ordinal; an error if it cannot be had.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = L0Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    L0Error::config(format!(
                        "unknown device '{s}': expected auto, cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

/// A backend that trains a whole batch in one pass, or why the batch
/// cannot run as one pass ([`make_batch_backend`]).
pub type OnePass<'a> = std::result::Result<Box<dyn Backend + 'a>, String>;

/// A backend that trains one model per `lambdas[k]` together (everything
/// else from `problem`): one pass over the matrix per epoch serves all
/// models, on the CPU ([`cpu::CpuBackend::with_models`]) and on a GPU
/// (`cuda::CudaBackend::with_models`, at most `cuda::MAX_MODELS`). The
/// inner `Err` is why the batch cannot run as one pass when `device` is a
/// GPU and the batch cannot be built there, for any reason (too little
/// memory for its models, recorded noise, a kernel that does not load, a
/// build without CUDA): the caller then trains the models one after
/// another, each falling back (or failing with the reason) as a single fit
/// does, and says why ([`crate::calibration::FitReport::fallback`]).
pub fn make_batch_backend<'a>(
    device: Device,
    threads: Option<usize>,
    problem: Problem<'a>,
    lambdas: &[f64],
) -> Result<OnePass<'a>> {
    batch_backend(device, threads, problem, lambdas, lambdas.len())
}

/// [`make_batch_backend`] with room for `capacity` models (at least
/// `lambdas.len()`) where the backend can take later batches
/// ([`Backend::rebatch`]: on a GPU, buffers for that many models).
fn batch_backend<'a>(
    device: Device,
    threads: Option<usize>,
    problem: Problem<'a>,
    lambdas: &[f64],
    capacity: usize,
) -> Result<OnePass<'a>> {
    crate::limits::check_threads(threads)?;
    let cpu = || -> Result<OnePass<'a>> {
        Ok(Ok(Box::new(cpu::CpuBackend::with_models(
            problem, lambdas, threads,
        )?)))
    };
    #[cfg(feature = "cuda")]
    let gpu = |ordinal: usize| -> OnePass<'a> {
        // Room for later batches when it fits, else for this one alone.
        let built = match cuda::CudaBackend::with_capacity(problem, lambdas, capacity, ordinal) {
            Err(_) if capacity > lambdas.len() => {
                cuda::CudaBackend::with_models(problem, lambdas, ordinal)
            }
            built => built,
        };
        match built {
            Ok(b) => Ok(Box::new(b)),
            Err(e) => Err(one_by_one(lambdas.len(), &format!("cuda:{ordinal}"), &e)),
        }
    };
    #[cfg(not(feature = "cuda"))]
    let _ = capacity;
    match device {
        Device::Cpu => cpu(),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => Ok(gpu(ordinal)),
        #[cfg(feature = "cuda")]
        Device::Auto => match (problem.noise, cuda::CudaBackend::available(0)) {
            (Noise::Philox, Ok(())) => Ok(gpu(0)),
            _ => cpu(),
        },
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(ordinal) => Ok(Err(one_by_one(
            lambdas.len(),
            &format!("cuda:{ordinal}"),
            &L0Error::Cuda(NO_CUDA_BUILD.into()),
        ))),
        #[cfg(not(feature = "cuda"))]
        Device::Auto => cpu(),
    }
}

/// Why a batch of `models` models did not train together on `device`, in
/// one line.
fn one_by_one(models: usize, device: &str, why: &L0Error) -> String {
    format!("the {models} models could not train together in one pass on {device}, so they train one after another: {why}")
}

/// The message of a build without the `cuda` feature asked for a GPU.
#[cfg(not(feature = "cuda"))]
const NO_CUDA_BUILD: &str =
    "this build of l0 has no CUDA backend (built without the `cuda` feature)";

/// One batch backend kept for the batches of a search on one problem (the
/// record budget's, [`crate::budget`]): the first batch builds it
/// ([`make_batch_backend`], with room for [`crate::limits::MAX_BATCH`]
/// models), later ones take it over with their own models
/// ([`Backend::rebatch`]), so a GPU uploads the matrix once. A backend that
/// cannot take a batch (the CPU backend, whose matrix is borrowed, not
/// copied; a batch beyond its room) is replaced by a new one.
pub struct BatchBackends<'a> {
    device: Device,
    threads: Option<usize>,
    problem: Problem<'a>,
    kept: Option<Box<dyn Backend + 'a>>,
    /// Backends built so far (1 when every batch took over the first one).
    pub built: usize,
    /// Seconds spent building backends and handing them new batches.
    pub setup_seconds: f64,
    /// Whether the last batch ran on a GPU.
    pub on_gpu: bool,
}

impl<'a> BatchBackends<'a> {
    /// None built yet, for batches of `problem` (its `hyper.lambda_l0` is
    /// replaced by each batch's) on `device` with `threads` CPU threads.
    pub fn new(device: Device, threads: Option<usize>, problem: Problem<'a>) -> Self {
        BatchBackends {
            device,
            threads,
            problem,
            kept: None,
            built: 0,
            setup_seconds: 0.0,
            on_gpu: false,
        }
    }

    /// The problem the backends train on.
    pub fn problem(&self) -> &Problem<'a> {
        &self.problem
    }

    /// A backend training one model per `lambdas[k]`: the kept one when it
    /// takes the batch, else a new one (and kept). The inner `Err` is why
    /// the batch cannot run as one pass ([`make_batch_backend`]).
    pub fn get(
        &mut self,
        lambdas: &[f64],
    ) -> Result<std::result::Result<&mut (dyn Backend + 'a), String>> {
        let clock = std::time::Instant::now();
        let kept = match self.kept.take() {
            Some(mut b) => b.rebatch(lambdas)?.then_some(b),
            None => None,
        };
        // A backend that cannot take the batch is dropped (its device
        // memory freed) before the next is built.
        let b = match kept {
            Some(b) => self.kept.insert(b),
            None => {
                let capacity = lambdas.len().max(crate::limits::MAX_BATCH);
                match batch_backend(self.device, self.threads, self.problem, lambdas, capacity)? {
                    Ok(b) => {
                        self.built += 1;
                        self.kept.insert(b)
                    }
                    Err(why) => return Ok(Err(why)),
                }
            }
        };
        self.setup_seconds += clock.elapsed().as_secs_f64();
        self.on_gpu = b.on_gpu();
        Ok(Ok(b.as_mut()))
    }
}

/// Builds the backend for `device`; `threads` sizes the CPU pool (None: all
/// cores). Returns the backend; its [`Backend::describe`] says which was used.
pub fn make_backend<'a>(
    device: Device,
    threads: Option<usize>,
    problem: Problem<'a>,
) -> Result<Box<dyn Backend + 'a>> {
    crate::limits::check_threads(threads)?;
    match device {
        Device::Cpu => Ok(Box::new(cpu::CpuBackend::new(problem, threads)?)),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => Ok(Box::new(cuda::CudaBackend::new(problem, ordinal)?)),
        // Replayed noise is CPU-only, so Auto keeps such problems on the CPU;
        // a GPU that is present but unusable (PTX too new for the driver, too
        // little memory) also falls back, and the CPU backend says why.
        #[cfg(feature = "cuda")]
        Device::Auto => {
            let why = match (problem.noise, cuda::CudaBackend::available(0)) {
                (Noise::Philox, Ok(())) => match cuda::CudaBackend::new(problem, 0) {
                    Ok(b) => return Ok(Box::new(b)),
                    Err(e) => Some(e.to_string()),
                },
                (Noise::Philox, Err(_)) => None,
                (Noise::Replay(_), _) => None,
            };
            let mut b = cpu::CpuBackend::new(problem, threads)?;
            b.note = why.map(|w| format!("GPU not used: {w}"));
            Ok(Box::new(b))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(L0Error::Cuda(NO_CUDA_BUILD.into())),
        #[cfg(not(feature = "cuda"))]
        Device::Auto => Ok(Box::new(cpu::CpuBackend::new(problem, threads)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Hyper, Losses, ParamState, WeightSummary};
    use crate::hard_concrete::TestGate;
    use crate::matrix::SparseMatrix;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A backend that takes any batch of up to `room` models and counts the
    /// batches it took; it trains nothing.
    struct Roomy {
        models: usize,
        room: usize,
        taken: Rc<Cell<usize>>,
    }

    fn unused<T>() -> Result<T> {
        Err(L0Error::config("not used by these tests"))
    }

    impl Backend for Roomy {
        fn describe(&self) -> String {
            "roomy".into()
        }
        fn rows(&self) -> usize {
            0
        }
        fn models(&self) -> usize {
            self.models
        }
        fn rebatch(&mut self, lambdas: &[f64]) -> Result<bool> {
            if lambdas.len() > self.room {
                return Ok(false);
            }
            self.models = lambdas.len();
            self.taken.set(self.taken.get() + 1);
            Ok(true)
        }
        fn on_gpu(&self) -> bool {
            true
        }
        fn load_state(&mut self, _: &ParamState) -> Result<()> {
            unused()
        }
        fn store_state(&mut self, _: &mut ParamState) -> Result<()> {
            unused()
        }
        fn sample_weights(&mut self, _: u64) -> Result<()> {
            unused()
        }
        fn deterministic_weights(&mut self, _: TestGate) -> Result<()> {
            unused()
        }
        fn forward(&mut self) -> Result<()> {
            unused()
        }
        fn residual(&mut self, _: u64) -> Result<()> {
            unused()
        }
        fn step(&mut self, _: u64, _: bool) -> Result<()> {
            unused()
        }
        fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
            unused()
        }
        fn losses(&mut self) -> Result<Losses> {
            unused()
        }
        fn first_bad_step(&mut self) -> Result<Option<u64>> {
            unused()
        }
        fn read_yhat(&mut self, _: &mut [f64]) -> Result<()> {
            unused()
        }
        fn read_weights(&mut self, _: &mut [f32]) -> Result<()> {
            unused()
        }
        fn weight_summary(&mut self) -> Result<WeightSummary> {
            unused()
        }
    }

    /// A kept backend that takes the batches is built once: every later
    /// batch within its room takes it over; a batch beyond its room builds
    /// a new one (here the CPU's, which takes no later batch: each builds).
    #[test]
    fn batches_take_over_the_kept_backend_while_it_has_room() {
        let m = SparseMatrix::from_dense(2, 3, &[1.0, 0.0, 0.0, 0.0, 0.0, 2.0]).unwrap();
        let (y, ones) = (vec![1.0, 2.0], vec![1.0, 1.0]);
        let problem = Problem::new(&m, &y, &ones, &ones, Hyper::default());
        let mut b = BatchBackends::new(Device::Cpu, Some(1), problem);
        let taken = Rc::new(Cell::new(0));
        b.kept = Some(Box::new(Roomy {
            models: 8,
            room: 8,
            taken: taken.clone(),
        }));
        for k in [8, 1, 4, 8, 1] {
            let got = b.get(&vec![0.1; k]).unwrap().unwrap();
            assert_eq!((got.models(), got.describe()), (k, "roomy".into()));
            assert!(b.on_gpu);
        }
        assert_eq!((b.built, taken.get()), (0, 5));
        for (k, built) in [(9, 1), (9, 2), (2, 3)] {
            let got = b.get(&vec![0.1; k]).unwrap().unwrap();
            assert_eq!(got.models(), k);
            assert!(got.describe().starts_with("cpu (1 threads"));
            assert_eq!(b.built, built);
            assert!(!b.on_gpu);
        }
        assert_eq!(taken.get(), 5);
        assert!(b.setup_seconds >= 0.0);
    }
}
