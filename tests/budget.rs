//! Record budgets: the search for the L0 strength that keeps K records
//! (`l0::budget::fit_to_budget`).

mod common;

use common::{random_matrix, Rng};
use l0::budget::{fit_to_budget, Batch, Budget, Stage, Trial};
use l0::calibration::{Calibration, CalibrationParams, FitParams, Init, Loss};
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
    let (m, y) = sparse_truth();
    let mut seen = Vec::new();
    let fit = fit_to_budget(&m, &y, &params(), &opts(), &budget, &mut |stage, l, p| {
        seen.push((stage, l, p.epochs));
        Ok(())
    })
    .unwrap();
    assert!(fit.met, "{:?}", fit.trials);
    assert!(
        (fit.active as f64 - 150.0).abs() <= 0.05 * 150.0,
        "active {}",
        fit.active
    );
    // The chosen model is exactly what a plain fit with its lambda gives.
    let mut single = Calibration::new(600, params()).unwrap();
    let o = FitParams {
        lambda_l0: fit.chosen.lambda_l0,
        ..opts()
    };
    single.fit(&m, &y, &o).unwrap();
    assert_eq!(single.state(), fit.chosen.model.state());
    assert_eq!(single.active_weights().count, fit.active);
    // Ten epochs close no gate here (every short count is 600), so the
    // first refining batch spans the top two bracket steps, 1e-3..1e-1;
    // its counts (283 at 7.2e-3, 131 at 1.39e-2) miss 150 by more than 5%
    // and a second batch fills that step.
    assert_eq!(
        fit.batches,
        [
            Batch {
                stage: Stage::Bracket,
                models: 9,
                epochs: 10
            },
            Batch {
                stage: Stage::Refine,
                models: 8,
                epochs: 200
            },
            Batch {
                stage: Stage::Refine,
                models: 8,
                epochs: 200
            },
        ]
    );
    assert_eq!(fit.models_trained, 25);
    assert_eq!(fit.full_fits(), 16);
    assert_eq!(fit.epochs_total, 9 * 10 + 16 * 200);
    assert_eq!(fit.passes(200), 2.05);
    let refine: Vec<&Trial> = fit.trials[9..].iter().collect();
    assert!(refine
        .iter()
        .all(|t| t.stage == Stage::Refine && t.epochs == 200));
    assert_eq!(refine[0].lambda_l0, grid_end(6));
    assert_eq!(refine[7].lambda_l0, 0.1);
    // The second batch lies strictly inside the first batch's crossing.
    let (a, b) = (refine[3].lambda_l0, refine[4].lambda_l0);
    assert!(
        (refine[3].active, refine[4].active) == (283, 131),
        "{refine:?}"
    );
    assert!(refine[8..]
        .iter()
        .all(|t| t.lambda_l0 > a && t.lambda_l0 < b));
    assert!(fit
        .trials
        .iter()
        .any(|t| t.lambda_l0 == fit.chosen.lambda_l0 && t.active == fit.active));
    assert_eq!(fit.shortfall(&budget), None);
    // One progress report per model, at its last epoch.
    assert_eq!(seen.len(), 25);
    for t in &fit.trials {
        assert!(seen.contains(&(t.stage, t.lambda_l0, t.epochs)), "{t:?}");
    }
}

/// The bracket's λ number `k` (of 9 over 1e-9..1e-1).
fn grid_end(k: usize) -> f64 {
    l0::sweep::lambda_grid(1e-9, 1e-1, 9).unwrap()[k]
}

#[test]
fn refining_batches_have_the_size_asked_for() {
    let budget = Budget {
        refine: 3,
        max_batches: 4,
        ..Budget::new(150)
    };
    let fit = run(&budget);
    let refining = &fit.batches[1..];
    assert!((1..=4).contains(&refining.len()), "{:?}", fit.batches);
    for b in refining {
        assert_eq!(
            *b,
            Batch {
                stage: Stage::Refine,
                models: 3,
                epochs: 200
            }
        );
    }
    assert_eq!(fit.models_trained, 9 + 3 * refining.len());
    assert_eq!(fit.full_fits(), 3 * refining.len());
    // Stopped by meeting the budget or by running out of batches.
    assert!(fit.met || refining.len() == 4, "{:?}", fit.trials);
}

/// With gates that start mostly closed (keep probability 0.1), records
/// open as the weights learn, then the L0 pull closes some: a short count
/// is no upper bound of the full-length one.
#[test]
fn a_budget_is_met_when_counts_grow_during_training() {
    let (m, y) = sparse_truth();
    let closed = CalibrationParams {
        init_keep_prob: Init::Scalar(0.1),
        ..params()
    };
    let budget = Budget::new(200);
    let fit = fit_to_budget(&m, &y, &closed, &opts(), &budget, &mut |_, _, _| Ok(())).unwrap();
    // 1e-9 is trained short (bracket) and full (first refining batch):
    // 204 records after 10 epochs, 337 after 200.
    let count = |stage: Stage, l: f64| {
        fit.trials
            .iter()
            .find(|t| t.stage == stage && t.lambda_l0 == l)
            .map(|t| t.active)
    };
    assert_eq!(count(Stage::Bracket, 1e-9), Some(204));
    assert_eq!(count(Stage::Refine, 1e-9), Some(337));
    // Where both were trained, the short count is below the full one at
    // 1e-9 and above it at 1e-1: neither bounds the other. The largest
    // bracket λ still above 200 (1e-9, what a search trusting short
    // counts as upper bounds would continue) ends far above it.
    let both: Vec<(usize, usize)> = fit
        .trials
        .iter()
        .filter(|t| t.stage == Stage::Bracket)
        .filter_map(|t| Some((t.active, count(Stage::Refine, t.lambda_l0)?)))
        .collect();
    assert_eq!(both, [(204, 337), (54, 29)]);
    assert!(fit.met, "{:?}", fit.trials);
    assert!(budget.met_by(fit.active));
    let mut single = Calibration::new(600, closed).unwrap();
    let o = FitParams {
        lambda_l0: fit.chosen.lambda_l0,
        ..opts()
    };
    single.fit(&m, &y, &o).unwrap();
    assert_eq!(single.state(), fit.chosen.model.state());
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
    // The first refining batch ends at the range's top: nothing is left
    // to try beyond it.
    assert_eq!(fit.batches.len(), 2);
    assert_eq!(
        fit.shortfall(&budget).unwrap(),
        "no lambda_l0 in 1e-9..1e-1 tried in 8 full fit(s) keeps 300 records within 5%; nearest achievable: 600 records at lambda_l0 1e-1"
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
    assert_eq!(
        err(Budget {
            bracket: 1,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget needs a bracket of at least 2 models, got 1"
    );
    assert_eq!(
        err(Budget {
            refine: 0,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget needs at least 1 refining batch of at least 1 model, got 2 of 0"
    );
    assert_eq!(
        err(Budget {
            max_batches: 0,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget needs at least 1 refining batch of at least 1 model, got 0 of 8"
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
