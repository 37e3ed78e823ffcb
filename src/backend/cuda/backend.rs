//! The CUDA backend itself: the problem and every working buffer on one
//! device, and the epoch's steps as kernel launches.

use super::compile::{load_kernels, Kernels, LANES, MAX_MODELS};
use super::driver::{driver_err, driver_present, guard, nvrtc_present};
use super::launch::{blocks_for, cfg, cfg_models, shift_for, upload, zeros, MAX_REDUCE_BLOCKS};
use super::plan::{
    device_bytes, free_memory, gib, memory_margin, DevicePlan, SegmentPlan, LONG_COLUMN_NNZ_U64,
};
use super::rule::{gpu_rules, GpuRule};
use crate::backend::interface::{
    Backend, Losses, Noise, ParamState, Problem, ScalarState, WeightSummary,
};
use crate::constraints::{solve_shift, ShiftSums, CONSERVE_TOLERANCE};
use crate::error::{L0Error, Result};
use crate::hard_concrete::{AdamStep, GateMeans, TestGate};
use crate::objective::Shape;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, PushKernelArg};
use std::sync::Arc;

/// The memory bandwidth device `ordinal` is rated for, in bytes per second:
/// twice (double data rate) its memory clock times its bus width, from the
/// device attributes; `None` when the driver does not report them.
pub fn peak_bandwidth(ordinal: usize) -> Result<Option<f64>> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    CudaBackend::available(ordinal)?;
    guard("reading the device attributes", || {
        let ctx = CudaContext::new(ordinal)
            .map_err(driver_err(&format!("cannot open device cuda:{ordinal}")))?;
        let clock_khz = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            .map_err(driver_err("reading the memory clock"))?;
        let bus_bits = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            .map_err(driver_err("reading the memory bus width"))?;
        Ok((clock_khz > 0 && bus_bits > 0)
            .then(|| 2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0))
    })
}

/// The CUDA implementation of [`Backend`]: the problem and all working
/// buffers live on one device from [`CudaBackend::new`] to drop.
///
/// One backend trains one model ([`CudaBackend::new`]) or a batch of up to
/// [`MAX_MODELS`] models that differ in λ alone
/// ([`CudaBackend::with_models`]): every pass over the matrix then serves
/// all of them (the forward product gathers the models' weights of a column
/// side by side, the backward product their residuals of a row), and each
/// model's sums are formed in the order of its single fit, so a model of a
/// batch is bit for bit the model trained alone on the same device. The
/// layouts are in `kernels/step.cu`.
pub struct CudaBackend {
    ordinal: usize,
    name: String,
    cc: (i32, i32),
    stream: Arc<CudaStream>,
    k: Arc<Kernels>,
    /// Each model's rule, on the host and on the device.
    rules: Vec<GpuRule>,
    rules_dev: CudaSlice<GpuRule>,
    /// The hyperparameters, `lambda_l0` aside (each model's is in `rules`).
    hyper: crate::backend::interface::Hyper,
    /// Models trained together, the lanes they take (the least of [`LANES`]
    /// that holds them), its position in [`LANES`], and the model the
    /// per-model methods act on.
    models: usize,
    lanes: usize,
    width: usize,
    /// Models the buffers are sized for, at their lanes (a later batch of
    /// up to `room` models takes the backend over, [`Backend::rebatch`]).
    room: usize,
    selected: usize,
    lr: f64,
    seed: u64,
    /// Noise counter of the last sampling (what `gradients` differentiates).
    sampled_step: u64,
    n: usize,
    rows: usize,
    /// Lanes per short column in the backward pass, as a shift.
    col_shift: u32,
    reduce_cols: u32,
    reduce_rows: u32,
    /// Which models' states have been loaded with an intercept
    /// (`Some(true)`) or without one: all or none of a batch have one
    /// ([`CudaBackend::has_icpt`]).
    icpt_loaded: Vec<Option<bool>>,
    // The problem.
    rows_plan: DevicePlan,
    long_plan: DevicePlan,
    csr_col: CudaSlice<u32>,
    csr_val: CudaSlice<f32>,
    csc_ptr: CudaSlice<u64>,
    csc_row: CudaSlice<u32>,
    csc_val: CudaSlice<f32>,
    y: CudaSlice<f64>,
    g: CudaSlice<f64>,
    d: CudaSlice<f64>,
    // Tolerance band half-widths (empty and has_band 0 without a band);
    // abs_cap: the l1 cap (infinite for none), or -1 for the squared loss.
    band: CudaSlice<f64>,
    has_band: i32,
    abs_cap: f64,
    // Per-column state, model k's at [k n, (k + 1) n).
    p: CudaSlice<f32>,
    a: CudaSlice<f32>,
    m_p: CudaSlice<f32>,
    v_p: CudaSlice<f32>,
    m_a: CudaSlice<f32>,
    v_a: CudaSlice<f32>,
    /// The gates' pre-stretch values of the last sampling.
    s: CudaSlice<f32>,
    /// g_w = M^T r of the last residual, rounded to f32.
    gw: CudaSlice<f32>,
    /// The weights, model k of column i at `i lanes + k`.
    w: CudaSlice<f32>,
    /// The selected model's weights of a batch (`take_lane`; unused for one
    /// model, whose `w` they are).
    w_one: CudaSlice<f32>,
    /// The weight caps' bound on p (one per column, shared by the models;
    /// one unused element when there is none) and whether there is one.
    max_p: CudaSlice<f32>,
    has_max_p: i32,
    /// The kept records' lower bounds on p and their weight floors (one
    /// per column, shared; one unused element when there are none).
    min_p: CudaSlice<f32>,
    has_min_p: i32,
    floor: CudaSlice<f32>,
    has_floor: i32,
    /// The conserved total, restored after every step, and the gate means
    /// of one model it is computed with (one unused element without it).
    total: Option<f64>,
    ez: CudaSlice<f32>,
    /// The gate means' table ([`GateMeans`]; one unused element without a
    /// total).
    gate_means: CudaSlice<f32>,
    /// Each model's multiplier of the total for the step (`multipliers`).
    mu: CudaSlice<f32>,
    gp: CudaSlice<f32>,
    ga: CudaSlice<f32>,
    /// Intercept states (value, m, v), three per lane.
    icpt: CudaSlice<f32>,
    // Per-row (model k of row q at `q lanes + k`) and scratch.
    yhat: CudaSlice<f64>,
    r: CudaSlice<f64>,
    /// The predictions of all lanes on the host (`read_yhat` of a batch
    /// copies them all and keeps the selected model's).
    yhat_host: Vec<f64>,
    red_partials: CudaSlice<f64>,
    /// Data loss and sum of residuals, two per model.
    loss_scalars: CudaSlice<f64>,
    pen_scalars: CudaSlice<f64>,
    /// First non-finite step, one per model.
    bad_step: CudaSlice<u64>,
    counts: CudaSlice<u64>,
}

/// Launches kernel `$f` of `$self.k` (or, after `fn`, the function `$func`
/// named `$name`) on `$self.stream` with the given config and arguments.
macro_rules! launch {
    ($self:ident, $f:ident, $cfg:expr, $($arg:expr),* $(,)?) => {
        launch!($self, fn &$self.k.$f, stringify!($f), $cfg, $($arg),*)
    };
    ($self:ident, fn $func:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let mut b = $self.stream.launch_builder($func);
        $( b.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in
        // kernels/*.cu, and every buffer is sized for the launch.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(driver_err(&format!("launching kernel {}", $name)))
    }};
}

/// The selected model's weights after [`CudaBackend::model_weights`]: `w`
/// for one model, `w_one` for a batch.
fn lane_weights<'a>(
    lanes: usize,
    w: &'a CudaSlice<f32>,
    w_one: &'a CudaSlice<f32>,
) -> &'a CudaSlice<f32> {
    if lanes == 1 {
        w
    } else {
        w_one
    }
}

/// The position in [`LANES`] of the least width that holds `models` models.
fn width_for(models: usize) -> usize {
    LANES
        .iter()
        .position(|&l| l >= models)
        .unwrap_or(LANES.len() - 1)
}

impl CudaBackend {
    /// Whether device `ordinal` can be used: the driver and NVRTC libraries
    /// load (checked before anything else in cudarc is touched), the driver
    /// initialises and the device exists. The error says which failed.
    pub fn available(ordinal: usize) -> Result<()> {
        if !driver_present() {
            return Err(L0Error::Cuda(
                "the CUDA driver (libcuda.so) cannot be loaded: no NVIDIA driver on this machine"
                    .into(),
            ));
        }
        if !nvrtc_present() {
            return Err(L0Error::Cuda(
                "NVRTC (libnvrtc.so.13 or libnvrtc.so.12) cannot be loaded; the CUDA backend \
                 compiles its kernels at run time and needs it (install the CUDA toolkit or \
                 the nvidia-cuda-nvrtc-cu12 wheel and add its lib folder to LD_LIBRARY_PATH)"
                    .into(),
            ));
        }
        guard("probing CUDA devices", || {
            let count = CudaContext::device_count()
                .map_err(driver_err("the CUDA driver did not initialise"))?;
            if count <= 0 {
                return Err(L0Error::Cuda("no CUDA device found".into()));
            }
            if ordinal >= count as usize {
                return Err(L0Error::Cuda(format!(
                    "device cuda:{ordinal} does not exist ({count} device(s) found)"
                )));
            }
            Ok(())
        })
    }

    /// Opens device `ordinal`, compiles the kernels (once per device and
    /// process), checks that the problem fits in free device memory and
    /// uploads it. [`Noise::Replay`] is refused: recorded noise is CPU-only.
    pub fn new(problem: Problem<'_>, ordinal: usize) -> Result<Self> {
        Self::with_models(problem, &[problem.hyper.lambda_l0], ordinal)
    }

    /// [`CudaBackend::new`] for `lambdas.len()` models (1 to
    /// [`MAX_MODELS`]) trained together, model k with L0 strength
    /// `lambdas[k]` and otherwise `problem.hyper` (the caller checks each λ
    /// as a single fit does).
    pub fn with_models(problem: Problem<'_>, lambdas: &[f64], ordinal: usize) -> Result<Self> {
        Self::with_capacity(problem, lambdas, lambdas.len(), ordinal)
    }

    /// [`CudaBackend::with_models`] with buffers for `capacity` models (from
    /// `lambdas.len()` to [`MAX_MODELS`]), so that later batches of up to
    /// that many models on the same problem can take it over
    /// ([`Backend::rebatch`]) without uploading the matrix again.
    pub fn with_capacity(
        problem: Problem<'_>,
        lambdas: &[f64],
        capacity: usize,
        ordinal: usize,
    ) -> Result<Self> {
        if let Noise::Replay(_) = problem.noise {
            return Err(L0Error::config(
                "replayed gate noise (Noise::Replay) is supported by the CPU backend only",
            ));
        }
        if lambdas.is_empty() || lambdas.len() > MAX_MODELS {
            return Err(L0Error::config(format!(
                "a CUDA backend trains 1 to {MAX_MODELS} models together, not {}",
                lambdas.len()
            )));
        }
        let capacity = capacity.clamp(lambdas.len(), MAX_MODELS);
        Self::available(ordinal)?;
        guard("opening the CUDA backend", || {
            Self::open(problem, lambdas, capacity, ordinal)
        })
    }

    fn open(
        problem: Problem<'_>,
        lambdas: &[f64],
        capacity: usize,
        ordinal: usize,
    ) -> Result<Self> {
        let m = problem.matrix;
        let (rows, n) = (m.rows(), m.cols());
        problem.check_lengths()?;
        let (models, width) = (lambdas.len(), width_for(lambdas.len()));
        let lanes = LANES[width];
        // The buffers are sized for `capacity` models at their lanes.
        let (room, room_lanes) = (capacity, LANES[width_for(capacity)]);
        let ctx = CudaContext::new(ordinal)
            .map_err(driver_err(&format!("cannot open device cuda:{ordinal}")))?;
        // One stream only: cudarc's cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(driver_err("reading the device name"))?;
        let cc = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability"))?;
        let k = load_kernels(&ctx, cc)?;
        let (csr, csc) = (m.csr(), m.csc());
        let row_plan = SegmentPlan::rows(m.segments(), csr.indices());
        let long = SegmentPlan::long_columns(m.long_columns());
        let bound_arrays = problem.min_p.is_some() as usize
            + problem.floor.is_some() as usize
            + problem.total.is_some() as usize;
        let need = device_bytes(m, [&row_plan, &long], room, room_lanes) + 4 * n * bound_arrays;
        let (free, total) = free_memory(&ctx)?;
        if need + memory_margin(total) > free {
            return Err(L0Error::Cuda(format!(
                "the problem needs {:.2} GiB of device memory (plus a {:.2} GiB margin), device \
                 cuda:{ordinal} ({name}) has {:.2} GiB free of {:.2} GiB",
                gib(need),
                gib(memory_margin(total)),
                gib(free),
                gib(total)
            )));
        }
        let s = ctx.default_stream();
        let to_u64 = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
        let rules = gpu_rules(&problem.hyper, lambdas);
        let per_model = n * room;
        let b = CudaBackend {
            ordinal,
            name,
            cc,
            k,
            rules_dev: upload(&s, &rules)?,
            rules,
            hyper: problem.hyper,
            models,
            lanes,
            width,
            room,
            selected: 0,
            lr: problem.hyper.lr,
            seed: problem.hyper.seed,
            sampled_step: 0,
            n,
            rows,
            col_shift: shift_for(m.nnz(), n),
            reduce_cols: blocks_for(n)?.min(MAX_REDUCE_BLOCKS as u32),
            reduce_rows: blocks_for(rows)?.min(MAX_REDUCE_BLOCKS as u32),
            icpt_loaded: vec![None; models],
            rows_plan: DevicePlan::new(&s, &row_plan, m.nnz(), room_lanes)?.at(lanes),
            long_plan: DevicePlan::new(&s, &long, m.nnz(), room_lanes)?.at(lanes),
            csr_col: upload(&s, csr.indices())?,
            csr_val: upload(&s, csr.data())?,
            csc_ptr: upload(&s, &to_u64(csc.indptr().raw_storage()))?,
            csc_row: upload(&s, csc.indices())?,
            csc_val: upload(&s, csc.data())?,
            y: upload(&s, problem.targets)?,
            g: upload(&s, problem.target_weight)?,
            d: upload(&s, problem.denom)?,
            band: upload(&s, problem.band.unwrap_or(&[]))?,
            has_band: problem.band.is_some() as i32,
            abs_cap: match problem.shape {
                Shape::Square => -1.0,
                Shape::Abs { cap } => cap,
            },
            p: zeros(&s, per_model)?,
            a: zeros(&s, per_model)?,
            m_p: zeros(&s, per_model)?,
            v_p: zeros(&s, per_model)?,
            m_a: zeros(&s, per_model)?,
            v_a: zeros(&s, per_model)?,
            s: zeros(&s, per_model)?,
            gw: zeros(&s, per_model)?,
            w: zeros(&s, n * room_lanes)?,
            w_one: zeros(&s, if room_lanes > 1 { n } else { 0 })?,
            max_p: upload(&s, problem.max_p.unwrap_or(&[]))?,
            has_max_p: problem.max_p.is_some() as i32,
            min_p: upload(&s, problem.min_p.unwrap_or(&[]))?,
            has_min_p: problem.min_p.is_some() as i32,
            floor: upload(&s, problem.floor.unwrap_or(&[]))?,
            has_floor: problem.floor.is_some() as i32,
            total: problem.total,
            ez: zeros(&s, if problem.total.is_some() { n } else { 1 })?,
            gate_means: match problem.total {
                Some(_) => upload(
                    &s,
                    &GateMeans::new(&problem.hyper.rule::<f32>().gate).values,
                )?,
                None => zeros(&s, 1)?,
            },
            mu: zeros(&s, room)?,
            gp: zeros(&s, n)?,
            ga: zeros(&s, n)?,
            icpt: zeros(&s, 3 * room_lanes)?,
            yhat: zeros(&s, rows * room_lanes)?,
            r: zeros(&s, rows * room_lanes)?,
            yhat_host: vec![0.0; if lanes > 1 { rows * lanes } else { 0 }],
            red_partials: zeros(&s, 2 * MAX_REDUCE_BLOCKS * room)?,
            loss_scalars: zeros(&s, 2 * room)?,
            pen_scalars: zeros(&s, 2)?,
            bad_step: upload(&s, &vec![u64::MAX; room])?,
            counts: zeros(&s, 7)?,
            stream: s,
        };
        b.sync()?;
        Ok(b)
    }

    /// [`Backend::rebatch`] for a batch that fits the buffers.
    fn take_batch(&mut self, lambdas: &[f64]) -> Result<()> {
        let (models, width) = (lambdas.len(), width_for(lambdas.len()));
        let lanes = LANES[width];
        self.rules = gpu_rules(&self.hyper, lambdas);
        self.rules_dev = upload(&self.stream, &self.rules)?;
        (self.models, self.lanes, self.width) = (models, lanes, width);
        (self.selected, self.sampled_step) = (0, 0);
        self.icpt_loaded = vec![None; models];
        self.rows_plan.lanes = lanes;
        self.long_plan.lanes = lanes;
        self.yhat_host = vec![0.0; if lanes > 1 { self.rows * lanes } else { 0 }];
        let st = self.stream.clone();
        let clear = driver_err("clearing the buffers of a new batch");
        for buf in [
            &mut self.p,
            &mut self.a,
            &mut self.m_p,
            &mut self.v_p,
            &mut self.m_a,
            &mut self.v_a,
            &mut self.s,
            &mut self.gw,
            &mut self.w,
            &mut self.w_one,
            &mut self.icpt,
        ] {
            st.memset_zeros(buf).map_err(&clear)?;
        }
        for buf in [
            &mut self.yhat,
            &mut self.r,
            &mut self.red_partials,
            &mut self.loss_scalars,
            &mut self.rows_plan.partials,
            &mut self.rows_plan.sums,
            &mut self.long_plan.partials,
            &mut self.long_plan.sums,
        ] {
            st.memset_zeros(buf).map_err(&clear)?;
        }
        st.memcpy_htod(vec![u64::MAX; self.room].as_slice(), &mut self.bad_step)
            .map_err(driver_err("clearing the divergence flags"))?;
        self.sync()
    }

    /// Whether the models have an intercept (the loaded states agree).
    fn has_icpt(&self) -> bool {
        self.icpt_loaded.contains(&Some(true))
    }

    /// What runs the kernels, e.g. "sm_90 cubin from NVRTC 13.0".
    pub fn code(&self) -> &str {
        &self.k.code
    }

    /// The selected model's part of a per-column buffer.
    fn model(&self) -> std::ops::Range<usize> {
        self.selected * self.n..(self.selected + 1) * self.n
    }

    /// g_w = M^T r into `gw` for every model: the long columns' segmented
    /// sums first, then kernel `column_dots` (kernels/step.cu).
    fn column_dots(&mut self) -> Result<()> {
        let dots = &self.k.dots[self.width];
        self.long_plan.run(
            &self.stream,
            (&dots.spmtv_segments, &dots.combine_segments),
            (&self.csc_row, &self.csc_val, &self.r),
            (&self.icpt, 0),
            None,
        )?;
        let (n, n_long) = (self.n64(), self.long_plan.outputs as u32);
        let models = self.models as u32;
        // gw holds n values per model, the long columns' sums `lanes` each.
        launch!(
            self,
            fn &dots.column_dots,
            "column_dots",
            cfg(blocks_for(self.n << self.col_shift)?),
            &n,
            &self.col_shift,
            &models,
            &self.csc_ptr,
            &self.csc_row,
            &self.csc_val,
            &self.r,
            &LONG_COLUMN_NNZ_U64,
            &n_long,
            &self.long_plan.cols,
            &self.long_plan.sums,
            &mut self.gw
        )
    }

    /// Makes `w_one` the selected model's weights when they share `w` with
    /// other models (kernel `take_lane`); for one model they are `w`.
    fn model_weights(&mut self) -> Result<()> {
        if self.lanes == 1 {
            return Ok(());
        }
        let (n, lanes, k) = (self.n64(), self.lanes as u32, self.selected as u32);
        launch!(
            self,
            take_lane,
            cfg(blocks_for(self.n)?),
            &n,
            &lanes,
            &k,
            &self.w,
            &mut self.w_one
        )
    }

    fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_err("waiting for the device"))
    }

    /// Adam's scalars for 0-based `step`, rounded to f32 as the CPU does.
    fn adam(&self, step: u64) -> (f32, f32) {
        let s = AdamStep::new(self.lr, step + 1);
        ((-s.step_size) as f32, s.bc2_sqrt as f32)
    }

    fn n64(&self) -> u64 {
        self.n as u64
    }

    /// Copies `out.len()` values of `src` from `at` into `out` and waits.
    fn download<T: DeviceRepr>(
        &self,
        src: &CudaSlice<T>,
        at: usize,
        out: &mut [T],
        what: &str,
    ) -> Result<()> {
        self.stream
            .memcpy_dtoh(&src.slice(at..at + out.len()), out)
            .map_err(driver_err(what))?;
        self.sync()
    }

    fn check_len(&self, what: &str, want: usize, got: usize) -> Result<()> {
        if want == got {
            Ok(())
        } else {
            Err(L0Error::shape(what, want, got))
        }
    }

    /// [`Backend::step`] without the conserved total: the update of every
    /// model, then with `sample_next` the next training weights.
    fn update_columns(&mut self, step: u64, sample_next: bool) -> Result<()> {
        // The kernel uses the gate values s kept by the last sampling; the
        // contract is that it was at `step`.
        if step != self.sampled_step {
            return Err(L0Error::config(format!(
                "step({step}) must follow sample_weights({step}); the last sampling was at step {}",
                self.sampled_step
            )));
        }
        let (neg_step, bc2) = self.adam(step);
        if sample_next {
            self.sampled_step = step + 1;
        }
        guard("the backward step", || {
            if self.has_icpt() {
                launch!(
                    self,
                    intercept_adam,
                    cfg_models(1, self.models),
                    &mut self.icpt,
                    &self.loss_scalars,
                    &neg_step,
                    &bc2
                )?;
            }
            self.column_dots()?;
            if self.total.is_some() {
                self.multipliers()?;
            }
            let has_mu = self.total.is_some() as i32;
            let (n, next) = (self.n64(), sample_next as i32);
            let (models, lanes) = (self.models as u32, self.lanes as u32);
            launch!(
                self,
                step_columns,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.gw,
                &self.mu,
                &has_mu,
                &mut self.p,
                &mut self.a,
                &mut self.m_p,
                &mut self.v_p,
                &mut self.m_a,
                &mut self.v_a,
                &mut self.w,
                &mut self.s,
                &self.min_p,
                &self.has_min_p,
                &self.max_p,
                &self.has_max_p,
                &self.rules_dev,
                &self.seed,
                &step,
                &neg_step,
                &bc2,
                &next
            )
        })
    }

    /// Restores each model's conserved total after its update
    /// ([`crate::constraints`]): kernel `expected_gates`, then
    /// [`solve_shift`] over the sums of kernel `conserve_sums` (summed by
    /// `penalties_finalize`, read back: a few round trips per step), then
    /// kernel `conserve_shift` (kernels/gates.cu). CPU twin:
    /// `CpuBackend::conserve`.
    fn conserve(&mut self, total: f64) -> Result<()> {
        for k in 0..self.models {
            guard("the conserved total", || {
                let (n, gates) = (self.n64(), self.hyper.use_gates as i32);
                let a = self.a.slice(k * self.n..(k + 1) * self.n);
                launch!(
                    self,
                    expected_gates,
                    cfg(blocks_for(self.n)?),
                    &n,
                    &a,
                    &self.gate_means,
                    &gates,
                    &mut self.ez
                )
            })?;
            let mut failed = None;
            let c = solve_shift(total, CONSERVE_TOLERANCE, |c| {
                match self.shift_sums(k, c as f32) {
                    Ok(s) => s,
                    Err(e) => {
                        failed.get_or_insert(e);
                        ShiftSums {
                            sum: total,
                            free: 0.0,
                        }
                    }
                }
            }) as f32;
            if let Some(e) = failed {
                return Err(e);
            }
            guard("the conserved total", || {
                let n = self.n64();
                let mut p = self.p.slice_mut(k * self.n..(k + 1) * self.n);
                launch!(
                    self,
                    conserve_shift,
                    cfg(blocks_for(self.n)?),
                    &n,
                    &mut p,
                    &self.min_p,
                    &self.has_min_p,
                    &self.max_p,
                    &self.has_max_p,
                    &c
                )
            })?;
        }
        Ok(())
    }

    /// Each model's multiplier of the conserved total into `mu` (kernels
    /// `multiplier_sums` and `multiplier_finalize`, kernels/step.cu; it
    /// stays on the device). CPU twin: `CpuBackend::multipliers`.
    fn multipliers(&mut self) -> Result<()> {
        let (n, lanes, blocks) = (self.n64(), self.lanes as u32, self.reduce_cols);
        for k in 0..self.models as u32 {
            launch!(
                self,
                multiplier_sums,
                cfg(self.reduce_cols),
                &n,
                &lanes,
                &k,
                &self.w,
                &self.gw,
                &mut self.red_partials
            )?;
            launch!(
                self,
                multiplier_finalize,
                cfg(1),
                &blocks,
                &k,
                &self.red_partials,
                &mut self.mu
            )?;
        }
        Ok(())
    }

    /// Model `k`'s [`ShiftSums`] at shift `c` (kernels `conserve_sums`
    /// and `penalties_finalize`), from the gate means of `expected_gates`.
    fn shift_sums(&mut self, k: usize, c: f32) -> Result<ShiftSums> {
        guard("the conserved total", || {
            let n = self.n64();
            let rule = self.rules[k];
            let p = self.p.slice(k * self.n..(k + 1) * self.n);
            launch!(
                self,
                conserve_sums,
                cfg(self.reduce_cols),
                &n,
                &p,
                &self.ez,
                &self.min_p,
                &self.has_min_p,
                &self.max_p,
                &self.has_max_p,
                &rule,
                &c,
                &mut self.red_partials
            )?;
            let blocks = self.reduce_cols;
            launch!(
                self,
                penalties_finalize,
                cfg(1),
                &blocks,
                &self.red_partials,
                &mut self.pen_scalars
            )?;
            let mut sums = [0.0f64; 2];
            self.download(&self.pen_scalars, 0, &mut sums, "copying the total's sums")?;
            Ok(ShiftSums {
                sum: sums[0],
                free: sums[1],
            })
        })
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        format!(
            "cuda:{} ({}, compute capability {}.{}, {})",
            self.ordinal, self.name, self.cc.0, self.cc.1, self.k.code
        )
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn models(&self) -> usize {
        self.models
    }

    fn on_gpu(&self) -> bool {
        true
    }

    /// Takes a batch of up to the `room` models the buffers were sized for
    /// (else false): the rules of its λ are uploaded and every per-model and
    /// per-lane buffer is cleared, as a backend opened for the batch would
    /// have it; the matrix, the targets and the plans stay.
    fn rebatch(&mut self, lambdas: &[f64]) -> Result<bool> {
        if lambdas.is_empty() || lambdas.len() > self.room {
            return Ok(false);
        }
        guard("taking a new batch of models", || self.take_batch(lambdas))?;
        Ok(true)
    }

    fn select(&mut self, k: usize) -> Result<()> {
        if k >= self.models {
            return Err(L0Error::config(format!(
                "model {k} selected on a backend that trains {}",
                self.models
            )));
        }
        self.selected = k;
        Ok(())
    }

    fn load_state(&mut self, s: &ParamState) -> Result<()> {
        if s.len() != self.n {
            return Err(L0Error::shape(
                "parameter vectors (one per matrix column)",
                self.n,
                s.len(),
            ));
        }
        let with = s.intercept.is_some();
        let others = self.icpt_loaded.iter().enumerate();
        if others
            .filter(|&(k, _)| k != self.selected)
            .any(|(_, &l)| l == Some(!with))
        {
            return Err(L0Error::config(
                "the models trained together must all have an intercept or none",
            ));
        }
        guard("loading the parameters", || {
            let st = self.stream.clone();
            let at = self.model();
            for (src, dst) in [
                (&s.p, &mut self.p),
                (&s.a, &mut self.a),
                (&s.m_p, &mut self.m_p),
                (&s.v_p, &mut self.v_p),
                (&s.m_a, &mut self.m_a),
                (&s.v_a, &mut self.v_a),
            ] {
                if src.len() != self.n {
                    return Err(L0Error::shape(
                        "Adam moments (one per matrix column)",
                        self.n,
                        src.len(),
                    ));
                }
                if self.n > 0 {
                    st.memcpy_htod(src.as_slice(), &mut dst.slice_mut(at.clone()))
                        .map_err(driver_err("copying parameters to the device"))?;
                }
            }
            self.icpt_loaded[self.selected] = Some(with);
            if let Some(b) = s.intercept {
                let k = 3 * self.selected;
                st.memcpy_htod(&[b.value, b.m, b.v], &mut self.icpt.slice_mut(k..k + 3))
                    .map_err(driver_err("copying the intercept to the device"))?;
            }
            self.sync()
        })
    }

    fn store_state(&mut self, s: &mut ParamState) -> Result<()> {
        guard("reading the parameters", || {
            let (n, at) = (self.n, self.model().start);
            for (dst, src) in [
                (&mut s.p, &self.p),
                (&mut s.a, &self.a),
                (&mut s.m_p, &self.m_p),
                (&mut s.v_p, &self.v_p),
                (&mut s.m_a, &self.m_a),
                (&mut s.v_a, &self.v_a),
            ] {
                dst.resize(n, 0.0);
                self.download(src, at, dst, "copying parameters from the device")?;
            }
            s.intercept = if self.has_icpt() {
                let mut v = [0.0f32; 3];
                let k = 3 * self.selected;
                self.download(
                    &self.icpt,
                    k,
                    &mut v,
                    "copying the intercept from the device",
                )?;
                Some(ScalarState {
                    value: v[0],
                    m: v[1],
                    v: v[2],
                })
            } else {
                None
            };
            Ok(())
        })
    }

    /// Kernel `sample_weights` (kernels/gates.cu), all models.
    fn sample_weights(&mut self, step: u64) -> Result<()> {
        self.sampled_step = step;
        guard("sampling weights", || {
            let (n, models, lanes) = (self.n64(), self.models as u32, self.lanes as u32);
            launch!(
                self,
                sample_weights,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.p,
                &self.a,
                &mut self.w,
                &mut self.s,
                &self.rules_dev,
                &self.seed,
                &step
            )
        })
    }

    /// Kernel `deterministic_weights` (kernels/gates.cu), all models.
    fn deterministic_weights(&mut self, rule: TestGate) -> Result<()> {
        let test: i32 = match rule {
            TestGate::Temperature => 0,
            TestGate::Paper => 1,
        };
        guard("computing deterministic weights", || {
            let (n, models, lanes) = (self.n64(), self.models as u32, self.lanes as u32);
            launch!(
                self,
                deterministic_weights,
                cfg(blocks_for(self.n)?),
                &n,
                &models,
                &lanes,
                &self.p,
                &self.a,
                &mut self.w,
                &self.rules_dev,
                &test,
                &self.floor,
                &self.has_floor
            )
        })
    }

    /// Kernels `spmv_segments` then `combine_segments` (kernels/spmv.cu),
    /// all models.
    fn forward(&mut self) -> Result<()> {
        let icpt = self.has_icpt() as i32;
        guard("the forward product", || {
            let dots = &self.k.dots[self.width];
            self.rows_plan.run(
                &self.stream,
                (&dots.spmv_segments, &dots.combine_segments),
                (&self.csr_col, &self.csr_val, &self.w),
                (&self.icpt, icpt),
                Some(&mut self.yhat),
            )
        })
    }

    /// Kernels `residual` then `residual_finalize` (kernels/step.cu), all
    /// models.
    fn residual(&mut self, step: u64) -> Result<()> {
        guard("the residual", || {
            let (rows, lanes) = (self.rows as u64, self.lanes as u32);
            launch!(
                self,
                residual,
                cfg_models(self.reduce_rows, self.models),
                &rows,
                &lanes,
                &self.y,
                &self.g,
                &self.d,
                &self.band,
                &self.has_band,
                &self.abs_cap,
                &self.yhat,
                &mut self.r,
                &mut self.red_partials
            )?;
            let blocks = self.reduce_rows;
            launch!(
                self,
                residual_finalize,
                cfg_models(1, self.models),
                &blocks,
                &self.red_partials,
                &mut self.loss_scalars,
                &mut self.bad_step,
                &step
            )
        })
    }

    /// Kernels `intercept_adam` (when fitted), the long columns' segmented
    /// sums, `column_dots` and `step_columns` (kernels/step.cu), all models;
    /// with a conserved total, then [`CudaBackend::conserve`] and the next
    /// sampling apart.
    fn step(&mut self, step: u64, sample_next: bool) -> Result<()> {
        if let Some(total) = self.total {
            self.update_columns(step, false)?;
            self.conserve(total)?;
            if sample_next {
                self.sample_weights(step + 1)?;
            }
            return Ok(());
        }
        self.update_columns(step, sample_next)
    }

    /// Kernels `column_dots` and `gradient_columns` (kernels/step.cu) for
    /// the selected model; the intercept's gradient is the sum of its
    /// residuals kept by `residual_finalize`.
    fn gradients(&mut self) -> Result<(Vec<f32>, Vec<f32>, Option<f64>)> {
        guard("the gradients", || {
            self.column_dots()?;
            let (n, at) = (self.n64(), self.model());
            let rule = self.rules[self.selected];
            let (gw, p) = (self.gw.slice(at.clone()), self.p.slice(at.clone()));
            let (a, s) = (self.a.slice(at.clone()), self.s.slice(at));
            launch!(
                self,
                gradient_columns,
                cfg(blocks_for(self.n)?),
                &n,
                &gw,
                &p,
                &a,
                &s,
                &rule,
                &mut self.gp,
                &mut self.ga
            )?;
            let (mut gp, mut ga) = (vec![0.0f32; self.n], vec![0.0f32; self.n]);
            self.download(&self.gp, 0, &mut gp, "copying gradients from the device")?;
            self.download(&self.ga, 0, &mut ga, "copying gradients from the device")?;
            let gb = if self.has_icpt() {
                let mut s = [0.0f64; 2];
                let k = 2 * self.selected;
                self.download(&self.loss_scalars, k, &mut s, "copying the loss")?;
                Some(s[1])
            } else {
                None
            };
            Ok((gp, ga, gb))
        })
    }

    /// Kernels `penalties_partial` then `penalties_finalize`
    /// (kernels/gates.cu) for the selected model; reads four scalars.
    fn losses(&mut self) -> Result<Losses> {
        guard("the losses", || {
            let (n, at) = (self.n64(), self.model());
            let rule = self.rules[self.selected];
            let (p, a) = (self.p.slice(at.clone()), self.a.slice(at));
            launch!(
                self,
                penalties_partial,
                cfg(self.reduce_cols),
                &n,
                &p,
                &a,
                &rule,
                &mut self.red_partials
            )?;
            let blocks = self.reduce_cols;
            launch!(
                self,
                penalties_finalize,
                cfg(1),
                &blocks,
                &self.red_partials,
                &mut self.pen_scalars
            )?;
            let (mut loss, mut pen) = ([0.0f64; 2], [0.0f64; 2]);
            let k = 2 * self.selected;
            self.download(&self.loss_scalars, k, &mut loss, "copying the loss")?;
            self.download(&self.pen_scalars, 0, &mut pen, "copying the penalties")?;
            Ok(Losses {
                data: loss[0],
                l0: pen[0],
                l2: pen[1],
            })
        })
    }

    fn first_bad_step(&mut self) -> Result<Option<u64>> {
        guard("reading the divergence flag", || {
            let mut s = [0u64; 1];
            let k = self.selected;
            self.download(&self.bad_step, k, &mut s, "copying the divergence flag")?;
            Ok((s[0] != u64::MAX).then_some(s[0]))
        })
    }

    fn read_yhat(&mut self, out: &mut [f64]) -> Result<()> {
        self.check_len("predictions (one per matrix row)", self.rows, out.len())?;
        guard("reading predictions", || {
            if self.lanes == 1 {
                return self.download(&self.yhat, 0, out, "copying predictions");
            }
            let mut all = std::mem::take(&mut self.yhat_host);
            let read = self.download(&self.yhat, 0, &mut all, "copying predictions");
            if read.is_ok() {
                let lane = all.iter().skip(self.selected).step_by(self.lanes);
                out.iter_mut().zip(lane).for_each(|(o, &y)| *o = y);
            }
            self.yhat_host = all;
            read
        })
    }

    fn read_weights(&mut self, out: &mut [f32]) -> Result<()> {
        self.check_len("weights (one per matrix column)", self.n, out.len())?;
        guard("reading weights", || {
            self.model_weights()?;
            let w = lane_weights(self.lanes, &self.w, &self.w_one);
            self.download(w, 0, out, "copying weights")
        })
    }

    /// Kernel `weight_summary` (kernels/gates.cu) for the selected model;
    /// reads seven counters.
    fn weight_summary(&mut self) -> Result<WeightSummary> {
        guard("the weight summary", || {
            self.model_weights()?;
            self.stream
                .memset_zeros(&mut self.counts)
                .map_err(driver_err("clearing counters"))?;
            let n = self.n64();
            let w = lane_weights(self.lanes, &self.w, &self.w_one);
            launch!(
                self,
                weight_summary,
                cfg(self.reduce_cols),
                &n,
                w,
                &mut self.counts
            )?;
            let mut c = [0u64; 7];
            self.download(&self.counts, 0, &mut c, "copying the weight counts")?;
            let mut buckets = [0u64; 6];
            buckets.copy_from_slice(&c[1..]);
            Ok(WeightSummary {
                active: c[0],
                buckets,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_device_is_an_error_not_a_panic() {
        // On a machine without a driver this names the missing library; on
        // one with a GPU, ordinal 4096 does not exist. Either way: an error.
        let e = CudaBackend::available(4096).unwrap_err();
        assert!(matches!(e, L0Error::Cuda(_)), "{e}");
    }
}
