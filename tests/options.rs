//! The parameter structs through serde: every field written and read back
//! exactly, the enums by their lower-case names (the names the command
//! line and Python take).

use l0::{CalibrationParams, Device, FitParams, GateParams, Init, Loss, TestGate};
use std::collections::BTreeMap;

#[test]
fn fit_params_round_trip_through_json() {
    let p = FitParams {
        lambda_l0: 4e-6,
        lambda_l2: 1e-3,
        lr: 0.2,
        epochs: 123,
        loss: Loss::Relative,
        target_groups: Some(vec![0, 0, 7, -2]),
        normalize_groups: false,
        group_multipliers: BTreeMap::from([(7, 2.5), (-2, 0.0)]),
        excluded_targets: vec![1],
        holdout_targets: vec![3],
        target_weights: Some(vec![1.0, 0.5, 2.0, 0.0]),
        max_weight: Some(10.0),
        max_weight_ratio: None,
        min_weight_ratio: Some(0.25),
        conserve_total: Some(1234.5),
        target_tolerance: Some(vec![0.05]),
        loss_cap: None,
        device: Device::Cuda(1),
        threads: Some(2),
        report_every: Some(10),
    };
    let text = serde_json::to_string(&p).expect("serializes");
    let back: FitParams = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, p);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["loss"], "relative");
    assert_eq!(v["device"], serde_json::json!({"cuda": 1}));
    assert_eq!(
        v["group_multipliers"],
        serde_json::json!({"-2": 0.0, "7": 2.5})
    );
    assert_eq!(v["max_weight_ratio"], serde_json::Value::Null);
}

#[test]
fn calibration_params_round_trip_through_json() {
    let p = CalibrationParams {
        gate: GateParams {
            beta: 0.5,
            gamma: -0.2,
            zeta: 1.2,
        },
        init_keep_prob: Init::PerColumn(vec![0.25, 0.75]),
        init_weights: Some(Init::Scalar(3.0)),
        log_weight_jitter_sd: 0.01,
        log_alpha_jitter_sd: 0.0,
        use_gates: false,
        seed: Some(u64::MAX),
        test_gate: TestGate::Paper,
    };
    let v = serde_json::to_value(&p).expect("serializes");
    assert_eq!(
        v["gate"],
        serde_json::json!({"beta": 0.5, "gamma": -0.2, "zeta": 1.2})
    );
    // An initial value is a number or one per column, as given.
    assert_eq!(v["init_keep_prob"], serde_json::json!([0.25, 0.75]));
    assert_eq!(v["init_weights"], 3.0);
    assert_eq!(v["test_gate"], "paper");
    assert_eq!(v["seed"], u64::MAX);
    let back: CalibrationParams = serde_json::from_value(v).expect("reads back");
    assert_eq!(back, p);
}

#[test]
fn enums_read_only_their_names() {
    for (text, loss) in [
        ("\"mse\"", Loss::Mse),
        ("\"relative\"", Loss::Relative),
        ("\"l1-relative\"", Loss::L1Relative),
    ] {
        assert_eq!(serde_json::from_str::<Loss>(text).ok(), Some(loss));
    }
    assert_eq!(
        serde_json::from_str::<TestGate>("\"temperature\"").ok(),
        Some(TestGate::Temperature)
    );
    assert_eq!(
        serde_json::from_str::<Device>("\"cpu\"").ok(),
        Some(Device::Cpu)
    );
    let e = serde_json::from_str::<Loss>("\"hinge\"")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("unknown variant `hinge`, expected one of `mse`, `relative`, `l1-relative` at line 1 column 7")
    );
}
