//! The built-in problems the benchmark examples take by name: `readme`
//! (200 targets x 10,000 records), `geo` (the default geo-stacked survey,
//! ~7M nonzeros) or `geo:H:G:NAT:PER` (H households x G areas, NAT national
//! and PER per-area targets; `geo:12000:436:40:30` is the production shape).

#![allow(dead_code)]

use l0::calibration::{CalibrationParams, FitParams, Loss};
use l0::synth::{geo_stacked, readme_problem, GeoSpec};
use l0::{Device, SparseMatrix};

/// The value after `--name` in `args`, parsed, or `default`.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> l0::Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(k) => args
            .get(k + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| l0::L0Error::config(format!("{name} needs a value"))),
    }
}

/// The problem's name: the first argument unless it is a flag; `geo` by
/// default.
pub fn name_arg(args: &[String]) -> &str {
    args.first()
        .filter(|a| !a.starts_with("--"))
        .map_or("geo", String::as_str)
}

/// The model options of the timed fits (seed 1, otherwise the defaults);
/// scripts/compare_reference.py builds the reference's model the same way.
pub fn bench_params() -> CalibrationParams {
    CalibrationParams {
        seed: Some(1),
        ..Default::default()
    }
}

/// The fit options of the timed fits: relative loss, lambda_l0 1e-6,
/// lr 0.15, the problem's target groups, `epochs` on `device`.
pub fn bench_opts(groups: Vec<i64>, epochs: u64, device: Device) -> FitParams {
    FitParams {
        loss: Loss::Relative,
        lambda_l0: 1e-6,
        lr: 0.15,
        epochs,
        target_groups: Some(groups),
        device,
        ..Default::default()
    }
}

/// `geo` or `geo:H:G:NAT:PER`.
pub fn geo_spec(spec: &str) -> l0::Result<GeoSpec> {
    let mut g = GeoSpec::default();
    let parts: Vec<&str> = spec.split(':').collect();
    if parts[0] != "geo" || !(parts.len() == 1 || parts.len() == 5) {
        return Err(l0::L0Error::config(format!(
            "unknown problem '{spec}': expected readme, geo or geo:H:G:NAT:PER"
        )));
    }
    if parts.len() == 5 {
        let n: Vec<usize> = parts[1..]
            .iter()
            .map(|x| {
                x.parse()
                    .map_err(|_| l0::L0Error::config(format!("bad number '{x}' in '{spec}'")))
            })
            .collect::<l0::Result<_>>()?;
        (g.households, g.areas, g.national, g.per_area) = (n[0], n[1], n[2], n[3]);
    }
    Ok(g)
}

/// The problem named `which`: matrix, targets and target groups.
pub fn load(which: &str) -> l0::Result<(SparseMatrix, Vec<f64>, Vec<i64>)> {
    match which {
        "readme" => {
            let (m, y) = readme_problem(200, 10_000, 0.3, 1)?;
            let g = vec![0i64; y.len()];
            Ok((m, y, g))
        }
        spec => {
            let p = geo_stacked(&geo_spec(spec)?)?;
            Ok((p.matrix, p.targets, p.groups))
        }
    }
}
