use l0::hard_concrete::*;
use std::time::Instant;
fn main() {
    let n = 250_000u64;
    let c = Instant::now();
    let mut s = 0.0f32;
    for i in 0..n {
        s += l0::philox::gate_uniform(1, 3, i);
    }
    println!(
        "philox {:.2} ns/col ({s})",
        c.elapsed().as_nanos() as f64 / n as f64
    );
    let rule: ColumnRule<f32> = ColumnRule {
        gate: Gate::new(2.0 / 3.0, -0.1, 1.1),
        magnitude: Magnitude::Exp,
        use_gates: true,
        lambda_l0: 1e-6,
        lambda_l2: 0.0,
    };
    let c = Instant::now();
    let mut s = 0.0f32;
    for i in 0..n {
        s += rule
            .forward(
                (i % 7) as f32 * 0.1,
                (i % 5) as f32 * 0.3 - 0.5,
                (i as f32 + 0.5) / n as f32,
            )
            .w;
    }
    println!(
        "forward math {:.2} ns/col ({s})",
        c.elapsed().as_nanos() as f64 / n as f64
    );
    let c = Instant::now();
    let mut s = 0.0f32;
    for i in 0..n {
        s += ((i as f32 + 0.5) / n as f32).ln();
    }
    println!(
        "ln {:.2} ns ({s})",
        c.elapsed().as_nanos() as f64 / n as f64
    );
    let c = Instant::now();
    let mut s = 0.0f32;
    for i in 0..n {
        s += ((i as f32) * 1e-5).exp();
    }
    println!(
        "exp {:.2} ns ({s})",
        c.elapsed().as_nanos() as f64 / n as f64
    );
}
