//! Epoch throughput of the CPU and CUDA backends on one geo-stacked
//! calibration problem (`l0::synth::geo_stacked`), and their parity.
//!
//! The default problem has the shape of the US congressional-district
//! calibration: 12,000 households cloned into 436 areas (5,232,000 columns),
//! 40 national and 30 per-area targets (13,120 rows), attribute density 0.4:
//! about 146M nonzeros. `--national 80 --per-area 64` gives about 300M.
//!
//! Each backend runs one untimed epoch (step 0, whose data loss is printed
//! so the backends can be compared), then `epochs` timed epochs of forward
//! product, residual and fused step (which also samples the next weights),
//! ending with a device synchronisation. Throughput counts the least bytes
//! an epoch must move ([`l0::backend::epoch_bytes`]: both matrix
//! layouts and the per-column and per-row state, not the gathers of `w` and
//! `r`, which stay in cache), and for CUDA the share of the card's rated
//! bandwidth (memory clock and bus width from the device attributes). A
//! second line counts the gathers too, as traffic that would reach memory.
//!
//! `--parity` also trains the same problem on both backends from the same
//! state and prints the largest relative parameter difference after one
//! epoch, and the total loss and active count after `--parity-epochs`
//! (default 500), with the deterministic weights.
//!
//! ```text
//! cargo run --release --example gpu_bench -- [--households 12000] [--areas 436]
//!     [--national 40] [--per-area 30] [--density 0.4] [--cpu-epochs 3]
//!     [--gpu-epochs 20] [--devices cpu,cuda] [--threads N] [--seed 1]
//!     [--parity] [--parity-epochs 500] [--models K]
//! ```
//!
//! `--models K` (2 to 8) also times a batch of K models trained together
//! (λ from 1e-7 to 1e-4, `l0::backend::make_batch_backend`) on each
//! device, per epoch and against the single fit's epoch.
//!
//! Lines starting with `RESULT` and `PARITY` are meant for scripts.

use l0::backend::cuda::peak_bandwidth;
use l0::backend::{
    epoch_bytes, gather_bytes, make_backend, make_batch_backend, Backend, Device, Hyper,
    ParamState, Problem,
};
use l0::engine::{self, Silent};
use l0::hard_concrete::TestGate;
use l0::synth::{geo_stacked, GeoSpec};
use std::time::Instant;

struct Args {
    spec: GeoSpec,
    cpu_epochs: u64,
    gpu_epochs: u64,
    devices: Vec<String>,
    threads: Option<usize>,
    parity: Option<u64>,
    /// Models of the timed batch (1: none).
    models: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        spec: GeoSpec {
            households: 12_000,
            areas: 436,
            national: 40,
            per_area: 30,
            ..GeoSpec::default()
        },
        cpu_epochs: 3,
        gpu_epochs: 20,
        devices: vec!["cpu".into(), "cuda".into()],
        threads: None,
        parity: None,
        models: 1,
    };
    let mut parity_epochs = 500;
    let mut parity = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--households" => a.spec.households = num(value()?)? as usize,
            "--areas" => a.spec.areas = num(value()?)? as usize,
            "--national" => a.spec.national = num(value()?)? as usize,
            "--per-area" => a.spec.per_area = num(value()?)? as usize,
            "--density" => a.spec.density = value()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--cpu-epochs" => a.cpu_epochs = num(value()?)?,
            "--gpu-epochs" => a.gpu_epochs = num(value()?)?,
            "--devices" => a.devices = value()?.split(',').map(str::to_string).collect(),
            "--threads" => a.threads = Some(num(value()?)? as usize),
            "--seed" => a.spec.seed = num(value()?)?,
            "--parity" => parity = true,
            "--parity-epochs" => parity_epochs = num(value()?)?,
            "--models" => a.models = num(value()?)? as usize,
            "-h" | "--help" => {
                println!("see the doc comment of examples/gpu_bench.rs");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    a.parity = parity.then_some(parity_epochs);
    Ok(a)
}

/// Seconds per timed epoch and the step-0 data loss (of model 0; every
/// model of a batch starts from `state`).
fn run(b: &mut dyn Backend, state: &ParamState, epochs: u64) -> l0::Result<(f64, f64)> {
    for k in (0..b.models()).rev() {
        b.select(k)?;
        b.load_state(state)?;
    }
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

/// The device a `--devices` entry names and its timed epoch count.
fn device(name: &str, a: &Args) -> l0::Result<(Device, u64)> {
    Ok(match name {
        "cpu" => (Device::Cpu, a.cpu_epochs),
        d => (d.parse::<Device>()?, a.gpu_epochs),
    })
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
    let p = geo_stacked(&args.spec)?;
    let m = &p.matrix;
    let (rows, cols, nnz) = (m.rows(), m.cols(), m.nnz());
    let denom: Vec<f64> = p.targets.iter().map(|v| v.abs() + 1.0).collect();
    let weight = vec![1.0 / rows as f64; rows];
    println!(
        "problem: {} households x {} areas = {cols} columns, {rows} rows, {nnz} nonzeros \
         (built in {:.1} s)",
        args.spec.households,
        args.spec.areas,
        t.elapsed().as_secs_f64()
    );
    let hyper = Hyper {
        lambda_l0: 1e-6,
        lr: 0.15,
        seed: args.spec.seed,
        ..Default::default()
    };
    let problem = Problem::new(m, &p.targets, &weight, &denom, hyper);
    let state = ParamState::new(vec![0.0; cols], vec![0.0; cols], None);
    let (bytes, gathers) = (epoch_bytes(m), gather_bytes(m));
    println!(
        "least bytes an epoch moves: {:.3} GB (+ {:.3} GB if every gather of w and r reached memory)",
        bytes / 1e9,
        gathers / 1e9
    );
    let mut losses = Vec::new();
    for name in &args.devices {
        let (dev, epochs) = device(name, args)?;
        let t = Instant::now();
        let mut b = match make_backend(dev, args.threads, problem) {
            Ok(b) => b,
            Err(e) => {
                println!("{name}: unavailable: {e}");
                continue;
            }
        };
        let setup = t.elapsed().as_secs_f64();
        let (secs, loss0) = run(b.as_mut(), &state, epochs)?;
        let gbps = bytes / secs / 1e9;
        let peak = match dev {
            Device::Cuda(k) => peak_bandwidth(k)?,
            _ => None,
        };
        let share = peak.map_or("unknown".to_string(), |p| {
            format!("{:.1}", 100.0 * bytes / secs / p)
        });
        let rated = peak.map_or(String::new(), |p| {
            format!(" ({share}% of the rated {:.0} GB/s)", p / 1e9)
        });
        println!(
            "{}: setup {setup:.2} s, {secs:.6} s/epoch over {epochs} epochs, {gbps:.1} GB/s{rated}, \
             {:.1} GB/s counting the gathers, step-0 data loss {loss0:.12e}",
            b.describe(),
            (bytes + gathers) / secs / 1e9,
        );
        println!(
            "RESULT backend=\"{}\" rows={rows} cols={cols} nnz={nnz} epochs={epochs} \
             sec_per_epoch={secs:.6} gbps={gbps:.2} peak_share_pct={share} loss0={loss0:.12e}",
            b.describe()
        );
        losses.push(loss0);
        if args.models > 1 {
            batch(args, dev, problem, &state, (epochs, secs))?;
        }
    }
    if losses.len() == 2 {
        let rel = (losses[0] - losses[1]).abs() / losses[1].abs().max(f64::MIN_POSITIVE);
        println!("step-0 data loss relative difference between the backends: {rel:.3e}");
    }
    if let Some(epochs) = args.parity {
        parity(args, problem, &state, epochs)?;
    }
    Ok(())
}

/// Times a batch of `--models` models on `dev` per epoch, against the
/// single fit's `one` (epochs, seconds per epoch).
fn batch(
    args: &Args,
    dev: Device,
    problem: Problem<'_>,
    state: &ParamState,
    one: (u64, f64),
) -> l0::Result<()> {
    let lambdas = l0::sweep::lambda_grid(1e-7, 1e-4, args.models)?;
    let t = Instant::now();
    let mut b = match make_batch_backend(dev, args.threads, problem, &lambdas)? {
        Ok(b) => b,
        Err(why) => {
            println!("batch of {}: {why}", args.models);
            return Ok(());
        }
    };
    let setup = t.elapsed().as_secs_f64();
    let (secs, _) = run(b.as_mut(), state, one.0)?;
    println!(
        "{}: batch of {} models: setup {setup:.2} s, {secs:.6} s/epoch over {} epochs = {:.2}x one fit's epoch",
        b.describe(),
        args.models,
        one.0,
        secs / one.1
    );
    println!(
        "RESULT backend=\"{}\" models={} epochs={} sec_per_epoch={secs:.6} ratio_to_one={:.3}",
        b.describe(),
        args.models,
        one.0,
        secs / one.1
    );
    Ok(())
}

/// Trains the problem on the first two `--devices` from `state` and prints
/// the largest relative difference of each parameter and moment vector after
/// one epoch (and how many columns differ by more than 1e-5), and the total
/// loss and active count of the deterministic weights after `epochs`. As a
/// yardstick for the latter, the first device also trains with the next
/// seed: two runs that differ only in their gate noise.
fn parity(args: &Args, problem: Problem<'_>, state: &ParamState, epochs: u64) -> l0::Result<()> {
    if args.devices.len() < 2 {
        println!("PARITY skipped: needs two devices");
        return Ok(());
    }
    let mut after1 = Vec::new();
    let mut finals = Vec::new();
    let mut reseeded = problem;
    reseeded.hyper.seed += 1;
    let runs = [
        (&args.devices[0], problem),
        (&args.devices[1], problem),
        (&args.devices[0], reseeded),
    ];
    for (k, (name, prob)) in runs.into_iter().enumerate() {
        let mut b = make_backend(device(name, args)?.0, args.threads, prob)?;
        let mut st = state.clone();
        engine::train(b.as_mut(), &mut st, 1, TestGate::Temperature, &mut Silent)?;
        if k < 2 {
            after1.push(st.clone());
        }
        engine::train(
            b.as_mut(),
            &mut st,
            epochs - 1,
            TestGate::Temperature,
            &mut Silent,
        )?;
        b.load_state(&st)?;
        b.deterministic_weights(TestGate::Temperature)?;
        b.forward()?;
        b.residual(st.step)?;
        let loss = b.losses()?.total(&prob.hyper);
        let who = format!("{} seed {}", b.describe(), prob.hyper.seed);
        finals.push((who, loss, b.weight_summary()?.active));
    }
    let (g, c) = (&after1[1], &after1[0]);
    for (what, x, y) in [
        ("p", &g.p, &c.p),
        ("a", &g.a, &c.a),
        ("m_p", &g.m_p, &c.m_p),
        ("v_p", &g.v_p, &c.v_p),
        ("m_a", &g.m_a, &c.m_a),
        ("v_a", &g.v_a, &c.v_a),
    ] {
        let rel: Vec<f64> = x
            .iter()
            .zip(y.iter())
            .map(|(&a, &b)| (a as f64 - b as f64).abs() / (b as f64).abs().max(1e-30))
            .collect();
        let worst = rel.iter().copied().fold(0.0f64, f64::max);
        let over = rel.iter().filter(|&&r| r > 1e-5).count();
        println!(
            "PARITY epochs=1 vector={what} max_rel_diff={worst:.3e} columns_over_1e-5={over} of {}",
            rel.len()
        );
    }
    for (who, loss, active) in &finals {
        println!("PARITY epochs={epochs} backend=\"{who}\" total_loss={loss:.9e} active={active}");
    }
    let diff = |a: &(String, f64, u64), b: &(String, f64, u64)| {
        (
            (a.1 - b.1).abs() / b.1.abs().max(f64::MIN_POSITIVE),
            a.2 as i64 - b.2 as i64,
        )
    };
    let (dl, da) = diff(&finals[1], &finals[0]);
    let (sl, sa) = diff(&finals[2], &finals[0]);
    println!(
        "PARITY epochs={epochs} backends: loss_rel_diff={dl:.3e} active_diff={da}; \
         same backend, next seed: loss_rel_diff={sl:.3e} active_diff={sa}"
    );
    Ok(())
}
