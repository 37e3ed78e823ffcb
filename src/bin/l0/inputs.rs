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
