//! Record budgets: the search for the L0 strength that keeps K records
//! (`l0::budget::fit_to_budget`).

mod common;

use common::{random_matrix, Rng};
use l0::budget::{fit_to_budget, Budget, Stage};
use l0::calibration::{Calibration, CalibrationParams, FitParams, Loss};
use l0::{Device, SparseMatrix};

/// A 60 x 600 problem whose targets come from a truth with 150 non-zero
/// weights.
fn sparse_truth() -> (SparseMatrix, Vec<f64>) {
    let mut rng = Rng(11);
    let m = random_matrix(&mut rng, 60, 600, 0.3, 0.0, 1.0);
    let w: Vec<f64> = (0..600)
        .map(|i| if i % 4 == 0 { 1.0 + rng.uniform() } else { 0.0 })
        .collect();
    let y = m.mul_vec(&w).unwrap();
    (m, y)
}

fn params() -> CalibrationParams {
    CalibrationParams {
        seed: Some(3),
        ..Default::default()
    }
}

fn opts() -> FitParams {
    FitParams {
        loss: Loss::Relative,
        lr: 0.1,
        epochs: 200,
        device: Device::Cpu,
        threads: Some(2),
        ..Default::default()
    }
}

fn run(budget: &Budget) -> l0::budget::BudgetFit {
    let (m, y) = sparse_truth();
    fit_to_budget(&m, &y, &params(), &opts(), budget, &mut |_, _, _| Ok(())).unwrap()
}

#[test]
fn a_budget_is_met_by_a_model_that_is_the_single_fit_with_its_lambda() {
    let budget = Budget::new(150);
    let fit = run(&budget);
    assert!(fit.met, "{:?}", fit.trials);
    assert!(
        (fit.active as f64 - 150.0).abs() <= 0.05 * 150.0,
        "active {}",
        fit.active
    );
    // The chosen model is exactly what a plain fit with its lambda gives.
    let (m, y) = sparse_truth();
    let mut single = Calibration::new(600, params()).unwrap();
    let o = FitParams {
        lambda_l0: fit.chosen.lambda_l0,
        ..opts()
    };
    single.fit(&m, &y, &o).unwrap();
    assert_eq!(single.state(), fit.chosen.model.state());
    assert_eq!(single.active_weights().count, fit.active);
    // Accounting: 9 short bracket models (10 epochs each), the pilot
    // continued to 200, and one fresh model per further full fit.
    let full = fit.full_fits();
    assert!((1..=4).contains(&full), "{full}");
    let bracket = fit.trials.iter().filter(|t| t.stage == Stage::Bracket);
    assert_eq!(bracket.clone().count(), 9);
    assert!(bracket.clone().all(|t| t.epochs == 10));
    assert_eq!(fit.models_trained, 9 + full - 1);
    assert_eq!(fit.epochs_total, 9 * 10 + 190 + 200 * (full as u64 - 1));
    let last = fit.trials.iter().rfind(|t| t.stage == Stage::Full).unwrap();
    assert!(budget.met_by(last.active));
    assert_eq!(fit.shortfall(&budget), None);
}

#[test]
fn an_unreachable_budget_returns_the_nearest_model_and_says_so() {
    // Two epochs cannot close a gate: every lambda keeps all 600 records.
    let (m, y) = sparse_truth();
    let short = FitParams {
        epochs: 2,
        lr: 0.01,
        ..opts()
    };
    let budget = Budget::new(300);
    let fit = fit_to_budget(&m, &y, &params(), &short, &budget, &mut |_, _, _| Ok(())).unwrap();
    assert!(!fit.met);
    assert_eq!(fit.active, 600);
    assert_eq!(fit.chosen.lambda_l0, 0.1);
    assert_eq!(
        fit.shortfall(&budget).unwrap(),
        "no lambda_l0 in 1e-9..1e-1 tried in 1 full fit(s) keeps 300 records within 5%; nearest achievable: 600 records at lambda_l0 1e-1"
    );
}

#[test]
fn impossible_budgets_are_refused_with_their_reason() {
    let (m, y) = sparse_truth();
    let err = |b: Budget| {
        fit_to_budget(&m, &y, &params(), &opts(), &b, &mut |_, _, _| Ok(()))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(Budget::new(0)),
        "invalid configuration: a record budget must keep at least 1 record, got 0"
    );
    assert_eq!(
        err(Budget::new(601)),
        "invalid configuration: cannot keep 601 records: the matrix has only 600 columns"
    );
    assert_eq!(
        err(Budget {
            tolerance: 1.5,
            ..Budget::new(100)
        }),
        "invalid configuration: the records tolerance must be a number between 0 and 1 (exclusive), got 1.5"
    );
    let gateless = CalibrationParams {
        use_gates: false,
        ..params()
    };
    let e = fit_to_budget(
        &m,
        &y,
        &gateless,
        &opts(),
        &Budget::new(100),
        &mut |_, _, _| Ok(()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: a record budget needs gates: without them every record keeps a weight"
    );
}
