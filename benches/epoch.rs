//! Seconds per training epoch (sample, forward SpMV, residual, fused
//! backward + Adam + next sample) on the CPU backend, and on the CUDA backend
//! when a GPU is present, for (a) the reference README's problem (200 x 10000,
//! density 0.3) and (b) the synthetic geo-stacked survey (2030 x 250000,
//! ~7M nonzeros). Throughput is the bytes of both matrix layouts per epoch.
//!
//! `cargo bench --bench epoch`; the side-by-side ratio against l0-python is
//! measured by scripts/compare_reference.py.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l0::backend::{make_backend, Backend, Device, Hyper, ParamState, Problem};
use l0::synth::{geo_stacked, readme_problem, GeoSpec};
use l0::SparseMatrix;
use std::time::{Duration, Instant};

/// Runs `iters` fused epochs and returns the elapsed time; reading the loss
/// at the end synchronises a GPU stream before the clock is read.
fn epochs(b: &mut dyn Backend, iters: u64) -> Duration {
    b.sample_weights(0).unwrap();
    let start = Instant::now();
    for s in 0..iters {
        b.forward().unwrap();
        b.residual(s).unwrap();
        b.step(s, true).unwrap();
    }
    b.losses().unwrap();
    start.elapsed()
}

fn bench_problem(c: &mut Criterion, name: &str, m: &SparseMatrix, y: &[f64]) {
    let q = m.rows();
    let weight = vec![1.0; q];
    let denom: Vec<f64> = y.iter().map(|v| v + 1.0).collect();
    let hyper = Hyper {
        lambda_l0: 1e-6,
        lr: 0.15,
        seed: 1,
        ..Default::default()
    };
    let problem = Problem::new(m, y, &weight, &denom, hyper);
    let mut group = c.benchmark_group(format!("epoch/{name}"));
    group.throughput(Throughput::Bytes(m.storage_bytes() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for device in [Device::Cpu, Device::Cuda(0)] {
        let Ok(mut b) = make_backend(device, None, problem) else {
            eprintln!("skipping {device:?}: not available");
            continue;
        };
        let n = m.cols();
        b.load_state(&ParamState::new(vec![0.0; n], vec![0.0; n], None))
            .unwrap();
        group.bench_function(b.describe(), |bench| {
            bench.iter_custom(|iters| epochs(b.as_mut(), iters))
        });
    }
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let (m, y) = readme_problem(200, 10_000, 0.3, 1).unwrap();
    bench_problem(c, "readme", &m, &y);
    let p = geo_stacked(&GeoSpec::default()).unwrap();
    bench_problem(c, "geo", &p.matrix, &p.targets);
}

criterion_group!(benches, epoch);
criterion_main!(benches);
