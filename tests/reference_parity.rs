//! Parity with l0-python 0.6.2: golden values recorded by
//! tests/reference/make_golden.py (torch, float32, injected gate noise).

mod common;

use common::{assert_close, f64s};
use l0::backend::cpu::CpuBackend;
use l0::backend::{Backend, Hyper, Noise, ParamState, Problem};
use l0::calibration::{target_weights, FitParams, Loss};
use l0::engine::{self, Observer, Snapshot};
use l0::hard_concrete::{Magnitude, TestGate};
use l0::model;
use l0::SparseMatrix;
use serde_json::Value;

const RTOL: f64 = 1e-4;

fn golden() -> Value {
    serde_json::from_str(include_str!("reference/golden.json")).unwrap()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
fn f32s(v: &Value) -> Vec<f32> {
    nums(v).into_iter().map(|x| x as f32).collect()
}
fn ints(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn matrix(c: &Value) -> SparseMatrix {
    let (rows, cols) = (
        c["rows"].as_u64().unwrap() as usize,
        c["cols"].as_u64().unwrap() as usize,
    );
    SparseMatrix::from_csr(
        rows,
        cols,
        &ints(&c["indptr"]),
        &ints(&c["indices"]),
        &nums(&c["data"]),
    )
    .unwrap()
}

fn noise(c: &Value) -> Vec<Vec<f32>> {
    c["u"].as_array().unwrap().iter().map(f32s).collect()
}

/// Records the total loss of every epoch.
struct Losses(Vec<f64>, Hyper);
impl Observer for Losses {
    fn report_every(&self) -> Option<u64> {
        Some(1)
    }
    fn report(&mut self, s: &Snapshot) -> l0::Result<()> {
        self.0.push(s.losses.total(&self.1));
        Ok(())
    }
}

/// Runs one golden case through the CPU backend and the fit loop.
struct Case {
    m: SparseMatrix,
    y: Vec<f64>,
    weight: Vec<f64>,
    denom: Vec<f64>,
    hyper: Hyper,
    table: Vec<Vec<f32>>,
    state: ParamState,
}

impl Case {
    fn problem(&self) -> Problem<'_> {
        Problem {
            noise: Noise::Replay(&self.table),
            ..Problem::new(&self.m, &self.y, &self.weight, &self.denom, self.hyper)
        }
    }

    fn check_first(&self, first: &Value, names: [&str; 3], data_loss_key: &str, l2: bool) {
        let mut b = CpuBackend::new(self.problem(), Some(2)).unwrap();
        b.load_state(&self.state).unwrap();
        b.sample_weights(0).unwrap();
        let mut w = vec![0.0f32; self.m.cols()];
        b.read_weights(&mut w).unwrap();
        if let Some(want) = first.get("weights") {
            assert_close("first.weights", &f64s(&w), &nums(want), RTOL, 1e-7);
        }
        b.forward().unwrap();
        let mut yhat = vec![0.0; self.m.rows()];
        b.read_yhat(&mut yhat).unwrap();
        assert_close("first.yhat", &yhat, &nums(&first["yhat"]), RTOL, 1e-5);
        b.residual(0).unwrap();
        let l = b.losses().unwrap();
        assert_close(
            "data loss",
            &[l.data],
            &[first[data_loss_key].as_f64().unwrap()],
            RTOL,
            1e-9,
        );
        assert_close(
            "l0 penalty",
            &[l.l0],
            &[first["l0_penalty"].as_f64().unwrap()],
            RTOL,
            0.0,
        );
        if l2 {
            assert_close(
                "l2 penalty",
                &[l.l2],
                &[first["l2_penalty"].as_f64().unwrap()],
                RTOL,
                0.0,
            );
        }
        assert_close(
            "total loss",
            &[l.total(&self.hyper)],
            &[first["total_loss"].as_f64().unwrap()],
            RTOL,
            1e-9,
        );
        let (gp, ga, gb) = b.gradients().unwrap();
        let scale = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let want_p = nums(&first[names[0]]);
        let want_a = nums(&first[names[1]]);
        assert_close("grad p", &f64s(&gp), &want_p, 1e-3, 1e-5 * scale(&want_p));
        assert_close("grad a", &f64s(&ga), &want_a, 1e-3, 1e-5 * scale(&want_a));
        if let Some(want) = first[names[2]].as_f64() {
            assert_close("grad intercept", &[gb.unwrap()], &[want], 1e-4, 1e-6);
        }
    }

    fn train(&self, epochs: u64) -> (ParamState, Vec<f64>) {
        let mut b = CpuBackend::new(self.problem(), Some(2)).unwrap();
        let mut state = self.state.clone();
        let mut obs = Losses(vec![], self.hyper);
        engine::train(&mut b, &mut state, epochs, TestGate::Temperature, &mut obs).unwrap();
        (state, obs.0)
    }
}

fn calibration_case(c: &Value) -> Case {
    let m = matrix(c);
    let y = nums(&c["y"]);
    let mut opts = FitParams {
        loss: c["loss"].as_str().unwrap().parse::<Loss>().unwrap(),
        normalize_groups: c["normalize_groups"].as_bool().unwrap(),
        ..Default::default()
    };
    if !c["groups"].is_null() {
        opts.target_groups = Some(
            c["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_i64().unwrap())
                .collect(),
        );
    }
    if let Some(ms) = c["group_multipliers"].as_array() {
        for pair in ms {
            opts.group_multipliers
                .insert(pair[0].as_i64().unwrap(), pair[1].as_f64().unwrap());
        }
    }
    let tw = target_weights(&y, &opts).unwrap();
    let hyper = Hyper {
        beta: c["beta"].as_f64().unwrap(),
        gamma: c["gamma"].as_f64().unwrap(),
        zeta: c["zeta"].as_f64().unwrap(),
        lambda_l0: c["lambda_l0"].as_f64().unwrap(),
        lambda_l2: c["lambda_l2"].as_f64().unwrap(),
        lr: c["lr"].as_f64().unwrap(),
        magnitude: Magnitude::Exp,
        use_gates: c["use_gates"].as_bool().unwrap(),
        fit_intercept: false,
        seed: 0,
    };
    Case {
        m,
        y,
        weight: tw.weight,
        denom: tw.denom,
        hyper,
        table: noise(c),
        state: ParamState::new(f32s(&c["log_weight0"]), f32s(&c["log_alpha0"]), None),
    }
}

#[test]
fn calibration_matches_reference() {
    let g = golden();
    for c in g["calibration"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        eprintln!("case {name}");
        let case = calibration_case(c);
        case.check_first(
            &c["first"],
            ["grad_log_weight", "grad_log_alpha", "none"],
            "data_loss",
            true,
        );
        let after = &c["after"];
        let epochs = c["epochs"].as_u64().unwrap();
        let (s, losses) = case.train(epochs);
        assert_eq!(s.step, epochs);
        assert_close(
            "losses per epoch",
            &losses,
            &nums(&after["total_loss_per_epoch"]),
            RTOL,
            1e-9,
        );
        let tol = |v: &[f64]| 1e-6 * v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for (key, got) in [
            ("log_weight", &s.p),
            ("log_alpha", &s.a),
            ("exp_avg_log_weight", &s.m_p),
            ("exp_avg_sq_log_weight", &s.v_p),
            ("exp_avg_log_alpha", &s.m_a),
            ("exp_avg_sq_log_alpha", &s.v_a),
        ] {
            let want = nums(&after[key]);
            assert_close(
                &format!("{name}: {key}"),
                &f64s(got),
                &want,
                1e-3,
                tol(&want),
            );
        }
        let rule = case.hyper.rule::<f32>();
        let det = model::weights(&s, &rule, 0, true, TestGate::Temperature);
        assert_close(
            "deterministic weights",
            &det,
            &nums(&after["deterministic_weights"]),
            1e-3,
            1e-6,
        );
        let gates: Vec<f64> =
            s.a.iter()
                .map(|&a| rule.gate.deterministic(a, TestGate::Temperature) as f64)
                .collect();
        assert_close(
            "deterministic gates",
            &gates,
            &nums(&after["deterministic_gates"]),
            1e-3,
            1e-6,
        );
        assert_close(
            "predict",
            &case.m.mul_vec(&det).unwrap(),
            &nums(&after["predict"]),
            1e-3,
            1e-5,
        );
        let active = det.iter().filter(|&&w| w > 0.0).count() as u64;
        assert_eq!(
            active,
            after["active_count"].as_u64().unwrap(),
            "{name}: active count"
        );
        let zeros = gates.iter().filter(|&&z| z == 0.0).count() as f64 / gates.len() as f64;
        // The reference reports a float32 mean.
        assert!(
            (zeros - after["sparsity"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: sparsity"
        );
    }
}

#[test]
fn regression_matches_reference() {
    let g = golden();
    for c in g["regression"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        eprintln!("case {name}");
        let m = matrix(c);
        let y = nums(&c["y"]);
        let n = y.len();
        let fit_intercept = c["fit_intercept"].as_bool().unwrap();
        let case = Case {
            weight: vec![1.0 / n as f64; n],
            denom: vec![1.0; n],
            hyper: Hyper {
                beta: c["beta"].as_f64().unwrap(),
                gamma: c["gamma"].as_f64().unwrap(),
                zeta: c["zeta"].as_f64().unwrap(),
                lambda_l0: c["lambda_l0"].as_f64().unwrap(),
                lambda_l2: 0.0,
                lr: c["lr"].as_f64().unwrap(),
                magnitude: Magnitude::Linear,
                use_gates: true,
                fit_intercept,
                seed: 0,
            },
            table: noise(c),
            state: ParamState::new(
                f32s(&c["weight0"]),
                f32s(&c["log_alpha0"]),
                c["bias0"].as_f64().map(|b| b as f32),
            ),
            m,
            y,
        };
        case.check_first(
            &c["first"],
            ["grad_weight", "grad_log_alpha", "grad_bias"],
            "mse",
            false,
        );
        let after = &c["after"];
        let (s, losses) = case.train(c["epochs"].as_u64().unwrap());
        assert_close(
            "losses per epoch",
            &losses,
            &nums(&after["total_loss_per_epoch"]),
            RTOL,
            1e-9,
        );
        assert_close(
            &format!("{name}: weight"),
            &f64s(&s.p),
            &nums(&after["weight"]),
            1e-3,
            1e-6,
        );
        assert_close(
            &format!("{name}: log_alpha"),
            &f64s(&s.a),
            &nums(&after["log_alpha"]),
            1e-3,
            1e-6,
        );
        if let Some(b) = after["bias"].as_f64() {
            assert_close(
                "bias",
                &[s.intercept.unwrap().value as f64],
                &[b],
                1e-5,
                1e-6,
            );
        }
    }
}
