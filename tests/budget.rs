//! Record budgets: the search for the L0 strength that keeps K records
//! (`l0::budget::fit_to_budget`).

mod common;

use common::{random_matrix, Rng};
use l0::advice::Naming;
use l0::budget::{
    batch_cost, batch_cost_on, fit_to_budget, Batch, Budget, BudgetFit, SlowSchedule, Stage,
};
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

fn run(budget: &Budget) -> BudgetFit {
    let (m, y) = sparse_truth();
    fit_to_budget(&m, &y, &params(), &opts(), budget, &mut |_, _, _| Ok(())).unwrap()
}

/// The single fit with `lambda_l0` for `epochs` epochs under `params`.
fn single(params: &CalibrationParams, lambda_l0: f64, epochs: u64) -> Calibration {
    let (m, y) = sparse_truth();
    let mut c = Calibration::new(600, params.clone()).unwrap();
    let o = FitParams {
        lambda_l0,
        epochs,
        ..opts()
    };
    c.fit(&m, &y, &o).unwrap();
    c
}

fn batch(stage: Stage, models: usize, epochs: u64) -> Batch {
    Batch {
        stage,
        models,
        epochs,
    }
}

/// `(λ, active)` of the trials of `stage` that had trained `epochs` epochs.
fn counts(fit: &BudgetFit, stage: Stage, epochs: u64) -> Vec<(f64, usize)> {
    fit.trials
        .iter()
        .filter(|t| t.stage == stage && t.epochs == epochs)
        .map(|t| (t.lambda_l0, t.active))
        .collect()
}

/// The schedule of the earlier defaults, now the slow one: drops at 20%
/// and 60% of the epochs, refining while the estimated cost stays within
/// 3.5 fits.
fn earlier_schedule(k: usize) -> Budget {
    Budget::new(k).slowed()
}

#[test]
fn a_budget_is_met_by_a_model_that_is_the_single_fit_with_its_lambda() {
    let budget = earlier_schedule(150);
    let (m, y) = sparse_truth();
    let mut seen = Vec::new();
    let fit = fit_to_budget(&m, &y, &params(), &opts(), &budget, &mut |stage, l, p| {
        seen.push((stage, l, p.epoch));
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
    let one = single(&params(), fit.chosen.lambda_l0, 200);
    assert_eq!(one.state(), fit.chosen.model.state());
    assert_eq!(one.active_weights().count, fit.active);
    // Ten epochs close no gate (every bracket count is 600), so the
    // narrowing batch spans the top two bracket steps, 1e-3..1e-1. At 40
    // epochs its counts are all still above 150 (157 at 1e-1): the four
    // nearest go on. At 120 they cross 150 between 1.39e-2 (279) and
    // 2.68e-2 (119), having come down from above: the one below the
    // crossing goes on alone and ends at 131. Along the slope of the
    // counts at 120 (-1.30 between those two), a refining model below it
    // keeps 145.
    assert_eq!(
        fit.batches,
        [
            batch(Stage::Bracket, 9, 10),
            batch(Stage::Narrow, 8, 40),
            batch(Stage::Continue, 4, 80),
            batch(Stage::Continue, 1, 80),
            batch(Stage::Refine, 1, 200),
        ]
    );
    let top = l0::sweep::lambda_grid(1e-9, 1e-1, 9).unwrap()[6];
    let narrow = l0::sweep::lambda_grid(top, 1e-1, 8).unwrap();
    let lambdas = |c: Vec<(f64, usize)>| c.into_iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(lambdas(counts(&fit, Stage::Narrow, 40)), narrow);
    let kept: Vec<usize> = counts(&fit, Stage::Continue, 120)
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(kept, [279, 119, 69, 39]);
    assert_eq!(lambdas(counts(&fit, Stage::Continue, 120)), narrow[4..]);
    assert_eq!(counts(&fit, Stage::Continue, 200), [(narrow[4], 131)]);
    let slope = (119f64 / 279.0).ln() / (narrow[5] / narrow[4]).ln();
    let newton = narrow[4] * ((150f64 / 131.0).ln() / slope).exp();
    let refined = counts(&fit, Stage::Refine, 200);
    assert_eq!(refined.len(), 1);
    assert!((refined[0].0 / newton - 1.0).abs() < 1e-12, "{refined:?}");
    assert_eq!(refined[0], (fit.chosen.lambda_l0, fit.active));
    assert_eq!(fit.active, 145);
    assert_eq!(fit.models_trained, 9 + 8 + 1);
    assert_eq!(fit.full_fits(), 2);
    assert_eq!(fit.epochs_total, 9 * 10 + 8 * 40 + 4 * 80 + 80 + 200);
    assert_eq!(fit.passes(200), 2.05);
    let cost = 0.05 * batch_cost(9) + 0.2 * batch_cost(8) + 0.4 * batch_cost(4) + 0.4 + 1.0;
    assert!((fit.cost_fits - cost).abs() < 1e-12, "{}", fit.cost_fits);
    // The bracket of 9 trains as 8 + 1: 0.05 x (3.63 + 1).
    assert!((cost - 3.3935).abs() < 1e-12 && cost <= budget.max_cost);
    assert_eq!(fit.shortfall(&budget, Naming::Cli), None);
    // One progress report per model and batch, at its last epoch counted
    // from the model's start.
    assert_eq!(seen.len(), fit.trials.len());
    for t in &fit.trials {
        assert!(seen.contains(&(t.stage, t.lambda_l0, t.epochs)), "{t:?}");
    }
}

/// The default (fast) schedule without the adaptive switch on the same
/// problem: no gate closes by the first drop (20 epochs), and the counts
/// keep falling fast after the second (at 80 epochs 244 records at
/// 2.68e-2, 82 at 200), so the finalist and the one refining model the
/// 3-fit cost allows both miss 150: the nearest is returned, with the
/// shortfall named.
#[test]
fn the_fast_schedule_stays_within_three_fits_and_names_a_miss() {
    let budget = Budget {
        slow: None,
        ..Budget::new(150)
    };
    let fit = run(&budget);
    assert_eq!(fit.settled, None);
    assert_eq!(
        fit.batches,
        [
            batch(Stage::Bracket, 9, 10),
            batch(Stage::Narrow, 8, 20),
            batch(Stage::Continue, 4, 60),
            batch(Stage::Continue, 1, 120),
            batch(Stage::Refine, 1, 200),
        ]
    );
    let cost = 0.05 * batch_cost(9) + 0.1 * batch_cost(8) + 0.3 * batch_cost(4) + 0.6 + 1.0;
    assert!((fit.cost_fits - cost).abs() < 1e-12, "{}", fit.cost_fits);
    assert!(
        cost <= 3.0 && cost + batch_cost(1) > budget.max_cost,
        "{cost}"
    );
    let lambda = |stage: Stage, epochs: u64| counts(&fit, stage, epochs);
    assert_eq!(lambda(Stage::Continue, 200).len(), 1);
    assert_eq!(lambda(Stage::Continue, 200)[0].1, 82);
    assert!(!fit.met);
    assert_eq!(fit.active, 108);
    assert_eq!(lambda(Stage::Refine, 200), [(fit.chosen.lambda_l0, 108)]);
    let one = single(&params(), fit.chosen.lambda_l0, 200);
    assert_eq!(one.state(), fit.chosen.model.state());
    let w = fit.shortfall(&budget, Naming::Cli).unwrap();
    assert!(
        w.contains(
            "tried in 2 full fit(s) keeps 150 records within 5%; nearest tried: 108 records at lambda_l0 "
        ),
        "{w}"
    );
}

/// The adaptive default on the same problem: every narrowing count is
/// still 600 at the bracket's step (10 epochs), so no early crossing, not
/// settled: the narrowing batch goes on to 40 epochs (20%), the drops are
/// at 40 and 120, and the search, allowed 3.5 fits, meets 150 as the
/// earlier defaults do.
#[test]
fn the_default_slows_down_when_no_gate_has_closed_early_and_meets_the_budget() {
    let budget = Budget::new(150);
    let fit = run(&budget);
    assert_eq!(fit.settled, Some(false));
    assert_eq!(
        fit.batches,
        [
            batch(Stage::Bracket, 9, 10),
            batch(Stage::Narrow, 8, 10),
            batch(Stage::Narrow, 8, 10),
            batch(Stage::Narrow, 8, 20),
            batch(Stage::Continue, 4, 80),
            batch(Stage::Continue, 1, 80),
            batch(Stage::Refine, 1, 200),
        ]
    );
    let early = counts(&fit, Stage::Narrow, 10);
    assert_eq!(early.len(), 8);
    assert!(early.iter().all(|p| p.1 == 600), "{early:?}");
    // The same cost as the earlier defaults: splitting the narrowing
    // batch costs nothing in the model.
    let cost = 0.05 * batch_cost(9) + 0.2 * batch_cost(8) + 0.4 * batch_cost(4) + 0.4 + 1.0;
    assert!((fit.cost_fits - cost).abs() < 1e-12, "{}", fit.cost_fits);
    assert!((cost - 3.3935).abs() < 1e-12);
    assert_eq!(budget.slowed().max_cost, 3.5);
    assert!(fit.met, "{:?}", fit.trials);
    assert_eq!(fit.active, 145);
    let earlier = run(&earlier_schedule(150));
    assert_eq!(earlier.active, 145);
    assert_eq!(earlier.chosen.lambda_l0, fit.chosen.lambda_l0);
    let one = single(&params(), fit.chosen.lambda_l0, 200);
    assert_eq!(one.state(), fit.chosen.model.state());
    // Every model, after every batch it was in (the three narrowing calls
    // of 10 + 10 + 20 epochs, the two drops), has the count of the single
    // fit of its epochs.
    for t in &fit.trials {
        let one = single(&params(), t.lambda_l0, t.epochs);
        assert_eq!(one.active_weights().count, t.active, "{t:?}");
    }
}

#[test]
fn continued_models_are_the_single_fits_and_batches_have_the_sizes_asked_for() {
    let budget = Budget {
        narrow: 5,
        narrow_share: 0.2,
        keep: 3,
        second_share: 0.6,
        finalists: 2,
        refine: 0,
        ..Budget::new(150)
    };
    let fit = run(&budget);
    // No gate has closed by 10 epochs: the slow schedule, whose drops here
    // are those asked for (so its drift is read between 10 and 40 epochs).
    assert_eq!(fit.settled, Some(false));
    assert_eq!(
        fit.batches,
        [
            batch(Stage::Bracket, 9, 10),
            batch(Stage::Narrow, 5, 10),
            batch(Stage::Narrow, 5, 30),
            batch(Stage::Continue, 3, 80),
            batch(Stage::Continue, 2, 80),
        ]
    );
    assert_eq!(fit.models_trained, 14);
    assert_eq!(fit.full_fits(), 2);
    let cost =
        0.05 * batch_cost(9) + 0.2 * batch_cost(5) + 0.4 * batch_cost(3) + 0.4 * batch_cost(2);
    assert!((fit.cost_fits - cost).abs() < 1e-12, "{}", fit.cost_fits);
    // Every model, after every batch it was in, has the count of the
    // single fit of its epochs: dropping and continuing is exact.
    for t in &fit.trials {
        let one = single(&params(), t.lambda_l0, t.epochs);
        assert_eq!(one.active_weights().count, t.active, "{t:?}");
    }
    // The chosen model, continued twice, is the full-length single fit.
    let finalists = counts(&fit, Stage::Continue, 200);
    assert_eq!(finalists.len(), 2);
    assert!(finalists.contains(&(fit.chosen.lambda_l0, fit.active)));
    let one = single(&params(), fit.chosen.lambda_l0, 200);
    assert_eq!(one.state(), fit.chosen.model.state());
    assert_eq!(fit.chosen.report.epochs, 200);
}

#[test]
fn refining_batches_have_the_size_asked_for_and_stay_within_the_cost() {
    let budget = Budget {
        refine: 2,
        max_cost: 6.0,
        tolerance: 0.01,
        slow: None,
        ..Budget::new(150)
    };
    let fit = run(&budget);
    let refining: Vec<&Batch> = fit
        .batches
        .iter()
        .filter(|b| b.stage == Stage::Refine)
        .collect();
    assert!(!refining.is_empty(), "{:?}", fit.batches);
    assert!(refining.iter().all(|b| **b == batch(Stage::Refine, 2, 200)));
    assert_eq!(fit.models_trained, 9 + 8 + 2 * refining.len());
    assert!(fit.cost_fits <= 6.0, "{}", fit.cost_fits);
    // Stopped by meeting the budget or by the cost a further batch would
    // bring.
    assert!(
        fit.met || fit.cost_fits + batch_cost(2) > 6.0,
        "{:?}",
        fit.trials
    );
}

/// With gates that start mostly closed (keep probability 0.1), records
/// open as the weights learn, then the L0 pull closes some: a short count
/// is no bound of the full-length one either way.
#[test]
fn a_budget_is_met_when_counts_grow_during_training() {
    let (m, y) = sparse_truth();
    let closed = CalibrationParams {
        init_keep_prob: Init::Scalar(0.1),
        ..params()
    };
    let budget = Budget::new(150);
    let fit = fit_to_budget(&m, &y, &closed, &opts(), &budget, &mut |_, _, _| Ok(())).unwrap();
    // Settled: where the narrowing counts cross 150 at 10 epochs, those
    // at 20 are within a factor 2 of it, so the fast schedule goes on
    // (drops at 20 and 80 epochs).
    assert_eq!(fit.settled, Some(true), "{:?}", fit.trials);
    assert_eq!(
        fit.batches[..5],
        [
            batch(Stage::Bracket, 9, 10),
            batch(Stage::Narrow, 8, 10),
            batch(Stage::Narrow, 8, 10),
            batch(Stage::Continue, 4, 60),
            batch(Stage::Continue, 1, 120),
        ]
    );
    let count = |stage: Stage, l: f64, epochs: u64| {
        counts(&fit, stage, epochs)
            .into_iter()
            .find(|p| p.0 == l)
            .map(|p| p.1)
    };
    // The narrowing batch spans the whole range (every short count is
    // within a factor 2 of 150). 1e-9: 204 records after 10 epochs
    // (bracket), 330 after 20 (narrow); 1e-1: 54, 120, then 42 at 80.
    assert_eq!(count(Stage::Bracket, 1e-9, 10), Some(204));
    assert_eq!(count(Stage::Narrow, 1e-9, 20), Some(330));
    assert_eq!(count(Stage::Bracket, 1e-1, 10), Some(54));
    assert_eq!(count(Stage::Narrow, 1e-1, 20), Some(120));
    assert_eq!(count(Stage::Continue, 1e-1, 80), Some(42));
    // Near K, records open then close: 5.2e-4 keeps 294 then 253, 7.2e-3
    // 278, 196, then 172 at the full length; a refining model between
    // them keeps 151.
    let grid = l0::sweep::lambda_grid(1e-9, 1e-1, 8).unwrap();
    let path = |l: f64| {
        [
            count(Stage::Narrow, l, 20),
            count(Stage::Continue, l, 80),
            count(Stage::Continue, l, 200),
        ]
    };
    assert_eq!(path(grid[5]), [Some(294), Some(253), None]);
    assert_eq!(path(grid[6]), [Some(278), Some(196), Some(172)]);
    assert!(fit.met, "{:?}", fit.trials);
    assert_eq!(fit.active, 151);
    assert_eq!(
        counts(&fit, Stage::Refine, 200),
        [(fit.chosen.lambda_l0, 151)]
    );
    let one = single(&closed, fit.chosen.lambda_l0, 200);
    assert_eq!(one.state(), fit.chosen.model.state());
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
    // The narrowing batch trains 1 epoch and so would the second leg (40%
    // of 2 epochs, rounded up): the nearest model alone goes on to the
    // end. A refining model would bring the estimated cost past 3 fits.
    assert_eq!(
        fit.batches,
        [
            batch(Stage::Bracket, 9, 1),
            batch(Stage::Narrow, 8, 1),
            batch(Stage::Continue, 1, 1),
        ]
    );
    assert!(fit.cost_fits + batch_cost(1) > budget.max_cost);
    assert_eq!(
        fit.shortfall(&budget, Naming::Cli).unwrap(),
        "no lambda_l0 in 1e-9..1e-1 tried in 1 full fit(s) keeps 300 records within 5%; nearest tried: 600 records at lambda_l0 1e-1; even the range's largest lambda_l0 keeps too many records: raise its top (--lambda-range LO:HI) or --epochs"
    );
    assert_eq!(
        fit.shortfall(&budget, Naming::Python).unwrap(),
        "no lambda_l0 in 1e-9..1e-1 tried in 1 full fit(s) keeps 300 records within 5%; nearest tried: 600 records at lambda_l0 1e-1; even the range's largest lambda_l0 keeps too many records: raise its top (lambda_range=(lo, hi)) or epochs"
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
            finalists: 0,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget needs 1 <= finalists <= keep <= narrow models, got 0, 4 and 8"
    );
    assert_eq!(
        err(Budget {
            keep: 9,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget needs 1 <= finalists <= keep <= narrow models, got 1, 9 and 8"
    );
    assert_eq!(
        err(Budget {
            narrow_share: 0.0,
            ..Budget::new(100)
        }),
        "invalid configuration: the narrow share must be in (0, 1], got 0"
    );
    assert_eq!(
        err(Budget {
            second_share: 0.05,
            ..Budget::new(100)
        }),
        "invalid configuration: the second drop share must be in [narrow share, 1], got 0.05"
    );
    assert_eq!(
        err(Budget {
            max_cost: f64::NAN,
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget's max cost must be a positive number of fits, got NaN"
    );
    assert_eq!(
        err(Budget {
            slow: Some(SlowSchedule {
                factor: 1.0,
                ..SlowSchedule::DEFAULT
            }),
            ..Budget::new(100)
        }),
        "invalid configuration: a record budget's settling factor must be a number above 1, got 1"
    );
    assert_eq!(
        err(Budget {
            slow: Some(SlowSchedule {
                narrow_share: 0.05,
                ..SlowSchedule::DEFAULT
            }),
            ..Budget::new(100)
        }),
        "invalid configuration: the slow schedule's narrow share must be at least the narrow share 0.1, got 0.05"
    );
    assert_eq!(
        err(Budget {
            slow: Some(SlowSchedule {
                second_share: 1.5,
                ..SlowSchedule::DEFAULT
            }),
            ..Budget::new(100)
        }),
        "invalid configuration: the slow schedule: the second drop share must be in [narrow share, 1], got 1.5"
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

/// The cost cap is on the schedule's cost at exact shares: at 201 epochs
/// the drops round up (11, 21, 81 epochs) and the fast schedule's batches
/// cost 2.003 estimated fits instead of 1.97, yet the refining model (1
/// fit) still runs, as at 200 epochs, and meets the budget.
#[test]
fn a_refining_model_is_not_refused_for_the_epochs_rounding_adds() {
    let (m, y) = sparse_truth();
    let closed = CalibrationParams {
        init_keep_prob: Init::Scalar(0.1),
        ..params()
    };
    let o = FitParams {
        epochs: 201,
        ..opts()
    };
    let budget = Budget::new(150);
    let fit = fit_to_budget(&m, &y, &closed, &o, &budget, &mut |_, _, _| Ok(())).unwrap();
    assert_eq!(fit.settled, Some(true), "{:?}", fit.trials);
    let before: f64 = fit
        .batches
        .iter()
        .filter(|b| b.stage != Stage::Refine)
        .map(|b| batch_cost(b.models) * b.epochs as f64 / 201.0)
        .sum();
    assert!(before > 2.0 - 1e-9 && before < 2.01, "{before}");
    let refining = fit.batches.iter().filter(|b| b.stage == Stage::Refine);
    assert_eq!(refining.count(), 1, "{:?}", fit.batches);
    assert!(fit.met, "{:?}", fit.trials);
    assert!(fit.cost_fits > budget.max_cost, "{}", fit.cost_fits);
}

/// On the CPU each batch builds its backend (the CPU backend borrows the
/// matrix: nothing of its size is copied), the bracket of 9 as 8 + 1, and
/// the cost is the CPU's; no batch fell back.
#[test]
fn a_cpu_search_builds_a_backend_per_pass_and_costs_cpu_batches() {
    let fit = run(&earlier_schedule(150));
    let passes: usize = fit.batches.iter().map(|b| b.models.div_ceil(8)).sum();
    assert_eq!(passes, 6);
    assert_eq!(fit.backends_built, passes);
    assert!(fit.fallbacks.is_empty(), "{:?}", fit.fallbacks);
    assert!(fit.setup_seconds >= 0.0 && fit.setup_seconds <= fit.seconds);
    for k in 0..=17 {
        assert_eq!(batch_cost_on(false, k), batch_cost(k));
    }
}

/// The GPU's cost of a batch: one pass at the lanes that hold it, the batch
/// of 8 at [`l0::budget::GPU_BATCH_OF_8`] fits, narrower ones interpolated
/// in lanes; more than 8 as several passes.
#[test]
fn a_gpu_batch_costs_one_pass_at_its_lanes() {
    let eighth = (l0::budget::GPU_BATCH_OF_8 - 1.0) / 7.0;
    let want = [
        (0, 0.0),
        (1, 1.0),
        (2, 1.0 + eighth),
        (3, 1.0 + 3.0 * eighth),
        (4, 1.0 + 3.0 * eighth),
        (5, 3.7),
        (8, 3.7),
        (9, 4.7),
        (16, 7.4),
    ];
    for (k, cost) in want {
        let got = batch_cost_on(true, k);
        assert!((got - cost).abs() < 1e-12, "{k} models: {got}, not {cost}");
    }
}

/// On a GPU the search keeps one backend for all its batches (the matrix
/// uploaded once), every batch runs as one pass, the cost is the GPU's, and
/// the chosen model is bit for bit its single GPU fit. Skipped without a
/// GPU (a failure under `L0_REQUIRE_GPU=1`).
#[cfg(feature = "cuda")]
#[test]
fn gpu_a_search_keeps_one_backend_for_all_its_batches() {
    if let Err(e) = l0::backend::cuda::CudaBackend::available(0) {
        let required = std::env::var("L0_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(!required, "L0_REQUIRE_GPU=1 but: {e}");
        common::notice(&format!("skipped, no GPU: {e}"));
        return;
    }
    let (m, y) = sparse_truth();
    let o = FitParams {
        device: Device::Cuda(0),
        ..opts()
    };
    let budget = earlier_schedule(150);
    let fit = fit_to_budget(&m, &y, &params(), &o, &budget, &mut |_, _, _| Ok(())).unwrap();
    assert_eq!(fit.backends_built, 1);
    assert!(fit.fallbacks.is_empty(), "{:?}", fit.fallbacks);
    assert!(fit.chosen.report.device.starts_with("cuda:0"));
    let cost: f64 = fit
        .batches
        .iter()
        .map(|b| batch_cost_on(true, b.models) * b.epochs as f64 / 200.0)
        .sum();
    assert!(
        (fit.cost_fits - cost).abs() < 1e-12,
        "{} {cost}",
        fit.cost_fits
    );
    // Every full-length model is its single GPU fit, bit for bit.
    let mut c = Calibration::new(600, params()).unwrap();
    let one = FitParams {
        lambda_l0: fit.chosen.lambda_l0,
        ..o.clone()
    };
    c.fit(&m, &y, &one).unwrap();
    assert_eq!(c.state(), fit.chosen.model.state());
    assert_eq!(c.active_weights().count, fit.active);
}
