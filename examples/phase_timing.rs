//! Times each backend step on the synthetic geo problem (developer tool).
use l0::backend::{cpu::CpuBackend, Backend, Hyper, ParamState, Problem};
use l0::hard_concrete::Magnitude;
use l0::synth::{geo_stacked, GeoSpec};
use std::time::Instant;

fn main() -> l0::Result<()> {
    let p = geo_stacked(&GeoSpec::default())?;
    let m = &p.matrix;
    let q = m.rows();
    let (g, d) = (
        vec![1.0; q],
        p.targets.iter().map(|y| y + 1.0).collect::<Vec<_>>(),
    );
    let hyper = Hyper {
        beta: 2.0 / 3.0,
        gamma: -0.1,
        zeta: 1.1,
        lambda_l0: 1e-6,
        lambda_l2: 0.0,
        lr: 0.1,
        magnitude: Magnitude::Exp,
        use_gates: true,
        fit_intercept: false,
        seed: 1,
    };
    let problem = Problem {
        matrix: m,
        targets: &p.targets,
        target_weight: &g,
        denom: &d,
        hyper,
        noise: Default::default(),
    };
    let mut b = CpuBackend::new(problem, None)?;
    b.load_state(&ParamState::new(
        vec![0.0; m.cols()],
        vec![0.0; m.cols()],
        None,
    ))?;
    let reps = 20;
    let mut t = [0.0f64; 5];
    for s in 0..reps {
        let c = Instant::now();
        b.sample_weights(s)?;
        t[0] += c.elapsed().as_secs_f64();
        let c = Instant::now();
        b.forward()?;
        t[1] += c.elapsed().as_secs_f64();
        let c = Instant::now();
        b.residual(s)?;
        t[2] += c.elapsed().as_secs_f64();
        let c = Instant::now();
        b.step(s, false)?;
        t[3] += c.elapsed().as_secs_f64();
        let c = Instant::now();
        b.step(s, true)?;
        t[4] += c.elapsed().as_secs_f64();
    }
    for (name, v) in ["sample", "forward", "residual", "step", "step+sample"]
        .iter()
        .zip(t)
    {
        println!("{name:12} {:.2} ms", 1e3 * v / reps as f64);
    }
    Ok(())
}
