//! Epoch throughput of the CPU and CUDA backends on one synthetic
//! geo-stacked calibration problem.
//!
//! The problem: `H` households cloned into `A` areas give `H x A` columns
//! (column `area * H + h`); `K` national rows touch every column (household
//! attribute `k`), and each area has `T` rows touching that area's `H`
//! columns. Nonzeros: `H A (K + T)`. The targets are reached exactly by a
//! sparse set of true weights. The defaults give 10M columns, 2,010 rows
//! and 300M nonzeros (about 7 GB of host memory to build, 4.9 GB on the GPU).
//!
//! Each backend runs one untimed epoch (step 0, whose data loss is printed
//! so the backends can be compared), then `epochs` timed epochs of forward
//! product, residual and fused step (which also samples the next weights),
//! ending with a device synchronisation. Throughput counts the bytes an
//! epoch must move at least once:
//!
//! ```text
//! nnz (4 + 4)     CSR values and column indices (forward)
//! nnz (4 + 4)     CSC values and row indices (backward)
//! nnz 4           gathered weights w[col] (forward)
//! nnz 8           gathered residuals r[row] (backward, f64)
//! cols (24 + 24)  six f32 parameters and moments, read and written
//! cols (4 + 8)    the sampled weight written, the CSC column pointer
//! ```
//!
//! ```text
//! cargo run --release --example gpu_bench -- [--households 100000] [--areas 100]
//!     [--national 10] [--area-targets 20] [--cpu-epochs 3] [--gpu-epochs 20]
//!     [--devices cpu,cuda] [--threads N] [--seed 1]
//! ```
//!
//! Lines starting with `RESULT` are meant for scripts.

use l0::backend::{make_backend, Backend, Device, Hyper, Noise, ParamState, Problem};
use l0::SparseMatrix;
use std::time::Instant;

struct Args {
    households: usize,
    areas: usize,
    national: usize,
    area_targets: usize,
    cpu_epochs: u64,
    gpu_epochs: u64,
    devices: Vec<String>,
    threads: Option<usize>,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        households: 100_000,
        areas: 100,
        national: 10,
        area_targets: 20,
        cpu_epochs: 3,
        gpu_epochs: 20,
        devices: vec!["cpu".into(), "cuda".into()],
        threads: None,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--households" => a.households = num(value()?)? as usize,
            "--areas" => a.areas = num(value()?)? as usize,
            "--national" => a.national = num(value()?)? as usize,
            "--area-targets" => a.area_targets = num(value()?)? as usize,
            "--cpu-epochs" => a.cpu_epochs = num(value()?)?,
            "--gpu-epochs" => a.gpu_epochs = num(value()?)?,
            "--devices" => a.devices = value()?.split(',').map(str::to_string).collect(),
            "--threads" => a.threads = Some(num(value()?)? as usize),
            "--seed" => a.seed = num(value()?)?,
            "-h" | "--help" => {
                println!("see the doc comment of examples/gpu_bench.rs");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.households == 0 || a.areas == 0 || a.national + a.area_targets == 0 {
        return Err("households, areas and national + area-targets must be positive".into());
    }
    Ok(a)
}

/// SplitMix64 of `x`: a stateless hash used as the value generator.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform in [0, 1) from `(seed, a, b)`.
fn unif(seed: u64, a: u64, b: u64) -> f64 {
    (mix(mix(seed ^ a.wrapping_mul(0x1000_0000_01B3)) ^ b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The geo-stacked matrix (see the module docs), built directly as CSR.
fn geo_stacked(a: &Args) -> l0::Result<SparseMatrix> {
    let (h, ar, k, t) = (a.households, a.areas, a.national, a.area_targets);
    let cols = h * ar;
    let rows = k + ar * t;
    let nnz = cols * (k + t);
    let mut indptr = Vec::with_capacity(rows + 1);
    let mut indices = Vec::with_capacity(nnz);
    let mut values = Vec::with_capacity(nnz);
    indptr.push(0u64);
    // National row j: attribute j of every household, in every area.
    for j in 0..k {
        for area in 0..ar {
            for hh in 0..h {
                indices.push((area * h + hh) as u64);
                values.push(0.5 + 2.5 * unif(a.seed, j as u64, hh as u64));
            }
        }
        indptr.push(indices.len() as u64);
    }
    // Area rows: attribute k + j of the area's households.
    for area in 0..ar {
        for j in 0..t {
            for hh in 0..h {
                indices.push((area * h + hh) as u64);
                values.push(0.5 + 2.5 * unif(a.seed, (k + j) as u64, hh as u64));
            }
            indptr.push(indices.len() as u64);
        }
    }
    SparseMatrix::from_csr(rows, cols, &indptr, &indices, &values)
}

/// Seconds per timed epoch and the step-0 data loss.
fn run(b: &mut dyn Backend, state: &ParamState, epochs: u64) -> l0::Result<(f64, f64)> {
    b.load_state(state)?;
    b.sample_weights(0)?;
    b.forward()?;
    b.residual(0)?;
    let loss0 = b.losses()?.data;
    b.step(0, true)?;
    b.first_bad_step()?; // synchronises
    let t = Instant::now();
    for step in 1..=epochs {
        b.forward()?;
        b.residual(step)?;
        b.step(step, true)?;
    }
    b.first_bad_step()?; // synchronises
    Ok((t.elapsed().as_secs_f64() / epochs.max(1) as f64, loss0))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn bench(args: &Args) -> l0::Result<()> {
    let t = Instant::now();
    let m = geo_stacked(args)?;
    let (rows, cols, nnz) = (m.rows(), m.cols(), m.nnz());
    let truth: Vec<f64> = (0..cols)
        .map(|j| {
            let u = unif(args.seed ^ 0xABCD, 0, j as u64);
            if u < 0.1 {
                1.0 + 99.0 * u * 10.0
            } else {
                0.0
            }
        })
        .collect();
    let y = m.mul_vec(&truth)?;
    let denom: Vec<f64> = y.iter().map(|v| v.abs() + 1.0).collect();
    let weight = vec![1.0 / rows as f64; rows];
    println!(
        "problem: {} households x {} areas = {cols} columns, {rows} rows, {nnz} nonzeros \
         (built in {:.1} s)",
        args.households,
        args.areas,
        t.elapsed().as_secs_f64()
    );
    let hyper = Hyper {
        lambda_l0: 1e-6,
        seed: args.seed,
        ..Default::default()
    };
    let problem = Problem {
        matrix: &m,
        targets: &y,
        target_weight: &weight,
        denom: &denom,
        hyper,
        noise: Noise::Philox,
    };
    let state = ParamState::new(vec![0.0; cols], vec![0.0; cols], None);
    let bytes = nnz as f64 * (8.0 + 8.0 + 4.0 + 8.0) + cols as f64 * (48.0 + 12.0);
    let mut losses = Vec::new();
    for dev in &args.devices {
        let (device, epochs) = match dev.as_str() {
            "cpu" => (Device::Cpu, args.cpu_epochs),
            d => (d.parse::<Device>()?, args.gpu_epochs),
        };
        let t = Instant::now();
        let mut b = match make_backend(device, args.threads, problem) {
            Ok(b) => b,
            Err(e) => {
                println!("{dev}: unavailable: {e}");
                continue;
            }
        };
        let setup = t.elapsed().as_secs_f64();
        let (secs, loss0) = run(b.as_mut(), &state, epochs)?;
        let gbps = bytes / secs / 1e9;
        println!(
            "{}: setup {setup:.2} s, {secs:.6} s/epoch over {epochs} epochs, {gbps:.1} GB/s, \
             step-0 data loss {loss0:.12e}",
            b.describe()
        );
        println!(
            "RESULT backend=\"{}\" rows={rows} cols={cols} nnz={nnz} epochs={epochs} \
             sec_per_epoch={secs:.6} gbps={gbps:.2} loss0={loss0:.12e}",
            b.describe()
        );
        losses.push(loss0);
    }
    if losses.len() == 2 {
        let rel = (losses[0] - losses[1]).abs() / losses[1].abs().max(f64::MIN_POSITIVE);
        println!("step-0 data loss relative difference between the backends: {rel:.3e}");
    }
    Ok(())
}
