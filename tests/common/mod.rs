//! Helpers shared by the integration tests.
#![allow(dead_code)]

use l0::SparseMatrix;

/// Asserts `|got - want| <= atol + rtol |want|` elementwise, naming the first miss.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Widens an f32 slice.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A small deterministic generator for test data (SplitMix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A random sparse matrix with the given density and values in [lo, hi).
pub fn random_matrix(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    density: f64,
    lo: f64,
    hi: f64,
) -> SparseMatrix {
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for q in 0..rows {
        for j in 0..cols {
            if rng.uniform() < density {
                r.push(q as u64);
                c.push(j as u64);
                v.push(lo + (hi - lo) * rng.uniform());
            }
        }
    }
    SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap()
}

/// Writes `text` as one line straight to stderr. The test harness captures
/// what `eprintln!` prints (and shows it only for a failing test), but not
/// this, so a skip noted here is seen in a plain `cargo test`.
pub fn notice(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The bits of every vector of a state (and of its intercept), so that
/// comparisons tell +0 from -0 and see every last bit.
pub fn state_bits(s: &l0::backend::ParamState) -> Vec<u32> {
    let mut v = vec![];
    for x in [&s.p, &s.a, &s.m_p, &s.v_p, &s.m_a, &s.v_a] {
        v.extend(x.iter().map(|f| f.to_bits()));
    }
    if let Some(b) = s.intercept {
        v.extend([b.value.to_bits(), b.m.to_bits(), b.v.to_bits()]);
    }
    v.push(s.step as u32);
    v
}

/// A `rows x cols` matrix with about `per_col` nonzeros in each column at
/// random rows, and the columns in `long` filled in every row; values in
/// [0.5, 1.5), negated at random when `signed`.
pub fn column_matrix(
    rng: &mut Rng,
    (rows, cols): (usize, usize),
    per_col: usize,
    long: &[usize],
    signed: bool,
) -> SparseMatrix {
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for j in 0..cols {
        let dense = long.contains(&j);
        let mut used = std::collections::BTreeSet::new();
        for k in 0..if dense { rows } else { per_col } {
            let q = if dense {
                k
            } else {
                (rng.next_u64() % rows as u64) as usize
            };
            if used.insert(q) {
                r.push(q as u64);
                c.push(j as u64);
                let x = 0.5 + rng.uniform();
                v.push(if signed && rng.next_u64().is_multiple_of(2) {
                    -x
                } else {
                    x
                });
            }
        }
    }
    SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap()
}

/// A sparse matrix of the dense rows `rows` (zeros left out).
pub fn dense(rows: &[Vec<f64>]) -> SparseMatrix {
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for (q, row) in rows.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            if x != 0.0 {
                r.push(q as u64);
                c.push(j as u64);
                v.push(x);
            }
        }
    }
    SparseMatrix::from_triplets(rows.len(), rows[0].len(), &r, &c, &v).unwrap()
}

/// Fit options on the CPU with `threads` threads, the rest the defaults.
pub fn cpu_fit(threads: usize) -> l0::FitParams {
    l0::FitParams {
        device: l0::Device::Cpu,
        threads: Some(threads),
        ..Default::default()
    }
}
