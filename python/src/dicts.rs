//! The dicts Python receives: progress, fit reports, accuracy, active
//! weights, and the model state (`state_dict`) in both directions.

use super::*;

pub(crate) fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", p.epoch)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("total_loss", p.total_loss)?;
    d.set_item("data_loss", p.data_loss)?;
    d.set_item("l0_penalty", p.l0_penalty)?;
    d.set_item("mean_rel_err", p.mean_rel_err)?;
    d.set_item("max_rel_err", p.max_rel_err)?;
    d.set_item("mean_group_rel_err", p.mean_group_rel_err)?;
    d.set_item("holdout_mean_rel_err", p.holdout_mean_rel_err)?;
    d.set_item("holdout_max_rel_err", p.holdout_max_rel_err)?;
    d.set_item("active", p.active)?;
    d.set_item("sparsity", p.sparsity())?;
    d.set_item("weight_buckets", p.buckets.to_vec())?;
    d.set_item("line", p.to_string())?;
    Ok(d)
}

pub(crate) fn report_dict<'py>(py: Python<'py>, r: &FitReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("device", &r.device)?;
    d.set_item("epochs", r.epochs)?;
    d.set_item("seconds", r.seconds)?;
    match &r.last {
        Some(p) => d.set_item("last", progress_dict(py, p)?)?,
        None => d.set_item("last", py.None())?,
    }
    d.set_item("fallback", &r.fallback)?;
    Ok(d)
}

/// The figures of an [`l0::report::Accuracy`].
pub(crate) fn accuracy_dict<'py>(
    py: Python<'py>,
    a: &l0::report::Accuracy,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("included", a.included)?;
    d.set_item("rel_loss", a.rel_loss)?;
    d.set_item("mean_abs_rel_err", a.mean_abs_rel_err)?;
    d.set_item("max_abs_rel_err", a.max_abs_rel_err)?;
    let within = PyDict::new(py);
    for (t, share) in l0::report::WITHIN.iter().zip(a.within) {
        within.set_item(*t, share)?;
    }
    d.set_item("within", within)?;
    Ok(d)
}

/// The six state vectors and the step of a [`ParamState`], as numpy arrays
/// (float32, exactly the engine's) in a dict under `names[0..2]` for the
/// parameters and `<name>_exp_avg` / `<name>_exp_avg_sq` (torch's Adam
/// names) for the moments.
pub(crate) fn state_dict<'py>(
    py: Python<'py>,
    s: &ParamState,
    p_name: &str,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(p_name, f32_array(py, &s.p))?;
    d.set_item("log_alpha", f32_array(py, &s.a))?;
    d.set_item(format!("{p_name}_exp_avg"), f32_array(py, &s.m_p))?;
    d.set_item(format!("{p_name}_exp_avg_sq"), f32_array(py, &s.v_p))?;
    d.set_item("log_alpha_exp_avg", f32_array(py, &s.m_a))?;
    d.set_item("log_alpha_exp_avg_sq", f32_array(py, &s.v_a))?;
    if let Some(b) = s.intercept {
        d.set_item("bias", b.value)?;
        d.set_item("bias_exp_avg", b.m)?;
        d.set_item("bias_exp_avg_sq", b.v)?;
    }
    d.set_item("step", s.step)?;
    d.set_item("seed", seed)?;
    Ok(d)
}

/// The inverse of [`state_dict`]; returns the state and the seed.
pub(crate) fn state_from(
    d: &Bound<'_, PyDict>,
    p_name: &str,
    intercept: bool,
) -> PyResult<(ParamState, u64)> {
    let item = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?
            .ok_or_else(|| PyValueError::new_err(format!("state_dict lacks '{k}'")))
    };
    let vec = |k: &str| -> PyResult<Vec<f32>> {
        let a = item(k)?;
        let a = a.extract::<PyReadonlyArray1<f32>>().map_err(|_| {
            PyTypeError::new_err(format!(
                "state_dict['{k}']: expected a 1-D float32 array, got {}",
                dtype_of(&a)
            ))
        })?;
        Ok(slice(k, &a)?.to_vec())
    };
    let scalar = |k: &str| -> PyResult<f32> { item(k)?.extract::<f32>() };
    let mut s = ParamState {
        p: vec(p_name)?,
        a: vec("log_alpha")?,
        m_p: vec(&format!("{p_name}_exp_avg"))?,
        v_p: vec(&format!("{p_name}_exp_avg_sq"))?,
        m_a: vec("log_alpha_exp_avg")?,
        v_a: vec("log_alpha_exp_avg_sq")?,
        intercept: None,
        step: item("step")?.extract::<u64>()?,
    };
    if intercept && d.contains("bias")? {
        s.intercept = Some(l0::backend::ScalarState {
            value: scalar("bias")?,
            m: scalar("bias_exp_avg")?,
            v: scalar("bias_exp_avg_sq")?,
        });
    }
    let seed = item("seed")?.extract::<u64>()?;
    Ok((s, seed))
}

pub(crate) fn active_dict<'py>(py: Python<'py>, a: ActiveWeights) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let idx: Vec<i64> = a.indices.iter().map(|&i| i as i64).collect();
    d.set_item("indices", PyArray1::from_vec(py, idx))?;
    d.set_item("values", f64_array(py, a.values))?;
    d.set_item("count", a.count)?;
    Ok(d)
}

pub(crate) fn regression_progress_dict<'py>(
    py: Python<'py>,
    p: &RegressionProgress,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", p.epoch)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("total_loss", p.total_loss)?;
    d.set_item("mse", p.mse)?;
    d.set_item("l0_penalty", p.l0_penalty)?;
    d.set_item("deterministic_mse", p.deterministic_mse)?;
    d.set_item("active", p.active)?;
    d.set_item("line", p.to_string())?;
    Ok(d)
}
