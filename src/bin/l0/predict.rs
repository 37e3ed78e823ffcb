//! `l0 predict`: `M w` for a matrix and a weight vector.

use super::inputs::*;
use super::*;

#[derive(Args)]
pub(super) struct PredictArgs {
    /// Matrix M: .npz, .mtx or a dense 2-D .npy.
    #[arg(long)]
    matrix: PathBuf,
    /// Weights, one per column of M: .npy, a one-column .csv, or a .csv with
    /// a `weight` column (the weights.csv that `l0 calibrate` writes).
    #[arg(long)]
    weights: PathBuf,
    /// Write M w here (.npy or .csv) instead of printing one number per line.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Weights from `.npy`, or from the `weight` column of a `.csv`.
fn load_weights(path: &Path, cols: usize) -> CliResult<Vec<f64>> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return load_vector(path, "weights", cols, "matrix column");
    }
    let w = l0::io::csv::read_f64_named_column(path, "weight")
        .and_then(|w| l0::error::check_finite("weights", &w).map(|()| w))
        .map_err(|e| about_file(path, e))?;
    check_len(path, &w, "weights", cols, "matrix column")?;
    Ok(w)
}

pub(super) fn predict(a: PredictArgs) -> CliResult<()> {
    let m = load_matrix(&a.matrix)?;
    let w = load_weights(&a.weights, m.cols())?;
    let yhat = m.mul_vec(&w)?;
    match &a.out {
        None => {
            let mut text = String::with_capacity(yhat.len() * 20);
            for v in &yhat {
                text.push_str(&format!("{v:?}\n"));
            }
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("stdout: {e}"),
                })?;
        }
        Some(path) => {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            match ext.as_deref() {
                Some("npy") => write_npy_f64(path, &yhat)?,
                Some("csv") => l0::io::csv::write_csv(
                    path,
                    &["estimate"],
                    yhat.iter().map(|v| vec![format!("{v:?}")]),
                )?,
                _ => {
                    return Err(input_error(format!(
                        "{}: unknown output type: expected a .npy or .csv file name",
                        path.display()
                    )))
                }
            }
        }
    }
    Ok(())
}
