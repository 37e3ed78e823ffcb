//! Reading the command line's input files and flags.

use super::*;

pub(super) fn load_matrix(path: &Path) -> CliResult<SparseMatrix> {
    io::read_matrix(path).map_err(|e| about_file(path, e))
}

pub(super) fn load_vector(path: &Path, what: &str, len: usize, per: &str) -> CliResult<Vec<f64>> {
    let v = io::read_vector(path, what).map_err(|e| about_file(path, e))?;
    check_len(path, &v, what, len, per)?;
    Ok(v)
}

/// Refuses a vector read from `path` that does not hold `len` values.
pub(super) fn check_len(
    path: &Path,
    v: &[f64],
    what: &str,
    len: usize,
    per: &str,
) -> CliResult<()> {
    if v.len() != len {
        return Err(input_error(format!(
            "{}: expected {len} {what} (one per {per}), found {}",
            path.display(),
            v.len()
        )));
    }
    Ok(())
}

/// A number, or a per-column `.npy`/`.csv` file.
pub(super) fn load_init(text: &str, what: &str, cols: usize) -> CliResult<Init> {
    if let Ok(v) = text.parse::<f64>() {
        return Ok(Init::Scalar(v));
    }
    let path = Path::new(text);
    load_vector(path, what, cols, "matrix column").map(Init::PerColumn)
}

/// A library error about flag `--flag` as one input-error line:
/// `--flag: message`, without the "invalid configuration: " prefix.
pub(super) fn flag_error(flag: &str, e: L0Error) -> Failure {
    let msg = match e {
        L0Error::InvalidConfig(m) => m,
        other => other.to_string(),
    };
    input_error(format!("--{flag}: {msg}"))
}

pub(super) fn parse_flag<T: std::str::FromStr<Err = L0Error>>(
    flag: &str,
    text: &str,
) -> CliResult<T> {
    text.parse().map_err(|e: L0Error| flag_error(flag, e))
}

pub(super) fn parse_test_gate(text: &str) -> CliResult<TestGate> {
    match text {
        "temperature" => Ok(TestGate::Temperature),
        "paper" => Ok(TestGate::Paper),
        _ => Err(input_error(format!(
            "--test-gate: unknown test gate '{text}': expected 'temperature' or 'paper'"
        ))),
    }
}

pub(super) fn test_gate_name(t: TestGate) -> &'static str {
    match t {
        TestGate::Temperature => "temperature",
        TestGate::Paper => "paper",
    }
}

pub(super) fn loss_name(l: Loss) -> &'static str {
    l.name()
}

pub(super) fn parse_f64(flag: &str, text: &str) -> CliResult<f64> {
    text.parse()
        .map_err(|_| input_error(format!("--{flag}: cannot parse '{text}' as a number")))
}

pub(super) fn positive(flag: &str, v: Option<u64>) -> CliResult<Option<u64>> {
    match v {
        Some(0) => Err(input_error(format!("--{flag}: must be at least 1"))),
        v => Ok(v),
    }
}

pub(super) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
