//! The fit options Python passes, taken typed: [`FitOptions`] is what the
//! functions that fit declare, so PyO3 converts the options once, at the
//! border, into the crate's [`FitParams`].

use super::*;
use pyo3::types::PyDictMethods;

/// [`FitParams`] as Python passes them: the dict that `l0_rs.calibration`
/// builds, one key per field (`loss` and `device` as text, `target_groups`
/// an int64 array or None, `target_weights` a float64 array or None, the
/// target lists as lists of ints). A missing key or a value of the wrong
/// type is an error naming the field. `target_tolerance` is a float64 array
/// (one value for every target, or one per target) or None.
pub(crate) struct FitOptions(pub(crate) FitParams);

impl<'a, 'py> FromPyObject<'a, 'py> for FitOptions {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let d = obj.cast::<PyDict>()?;
        let item = |k: &str| -> PyResult<Bound<'py, PyAny>> {
            d.get_item(k)?
                .ok_or_else(|| PyValueError::new_err(format!("fit options lack '{k}'")))
        };
        let target_groups = match item("target_groups")? {
            g if g.is_none() => None,
            g => Some(slice("target_groups", &g.extract::<PyReadonlyArray1<i64>>()?)?.to_vec()),
        };
        let target_weights = match item("target_weights")? {
            t if t.is_none() => None,
            t => Some(slice("target_weights", &t.extract::<PyReadonlyArray1<f64>>()?)?.to_vec()),
        };
        let target_tolerance = match item("target_tolerance")? {
            t if t.is_none() => None,
            t => Some(slice("target_tolerance", &t.extract::<PyReadonlyArray1<f64>>()?)?.to_vec()),
        };
        Ok(FitOptions(FitParams {
            lambda_l0: arg("lambda_l0", &item("lambda_l0")?)?,
            lambda_l2: arg("lambda_l2", &item("lambda_l2")?)?,
            lr: arg("lr", &item("lr")?)?,
            epochs: arg("epochs", &item("epochs")?)?,
            loss: item("loss")?.extract::<String>()?.parse::<Loss>().or_py()?,
            target_groups,
            normalize_groups: arg("normalize_groups", &item("normalize_groups")?)?,
            group_multipliers: arg("group_multipliers", &item("group_multipliers")?)?,
            excluded_targets: arg("excluded_targets", &item("excluded_targets")?)?,
            holdout_targets: arg("holdout_targets", &item("holdout_targets")?)?,
            target_weights,
            max_weight: arg("max_weight", &item("max_weight")?)?,
            max_weight_ratio: arg("max_weight_ratio", &item("max_weight_ratio")?)?,
            min_weight_ratio: arg("min_weight_ratio", &item("min_weight_ratio")?)?,
            conserve_total: arg("conserve_total", &item("conserve_total")?)?,
            target_tolerance,
            loss_cap: arg("loss_cap", &item("loss_cap")?)?,
            device: device(&item("device")?.extract::<String>()?)?,
            threads: arg("threads", &item("threads")?)?,
            report_every: arg("report_every", &item("report_every")?)?,
        }))
    }
}
