//! The search's unit tests: the narrowing interval, the schedules, the
//! cost model, the drops and the refining step.

use super::counts::*;
use super::*;
use crate::sweep;

fn budget(k: usize) -> Budget {
    Budget::new(k)
}

fn bracket(counts: &[usize]) -> Vec<(f64, usize)> {
    let grid = sweep::lambda_grid(1e-9, 1e-1, counts.len()).unwrap();
    grid.into_iter().zip(counts.iter().copied()).collect()
}

#[test]
fn the_first_interval_widens_the_crossing_by_a_step_each_side() {
    // The demo's bracket: 30000 is crossed between 1e-5 and 1e-4.
    let c = [237690, 236625, 231424, 217010, 155313, 15853, 703, 2, 0];
    let (a, b) = first_interval(&bracket(&c), &budget(30000));
    assert_eq!((a, b), (bracket(&c)[3].0, bracket(&c)[6].0));
    // Flat counts within a factor 2 of K widen the interval to them.
    let c = [204, 197, 176, 171, 171, 171, 171, 155, 54];
    let (a, b) = first_interval(&bracket(&c), &budget(200));
    assert_eq!((a, b), (1e-9, 1e-1));
    // None cross: the top two steps, or everything.
    let c = [600; 9];
    let top = (bracket(&c)[6].0, 1e-1);
    assert_eq!(first_interval(&bracket(&c), &budget(150)), top);
    let c = [0; 9];
    assert_eq!(first_interval(&bracket(&c), &budget(150)), (1e-9, 1e-1));
}

#[test]
fn the_default_plan_drops_at_a_tenth_and_two_fifths() {
    let leg = |stage, models, until| Leg {
        stage,
        models,
        until,
    };
    assert_eq!(
        Budget::new(10).plan(1000),
        [
            leg(Stage::Narrow, 8, 100),
            leg(Stage::Continue, 4, 400),
            leg(Stage::Continue, 1, 1000)
        ]
    );
    // Two epochs: the second drop falls on the first (both round up to
    // 1), so the finalist goes on from there; one: no drop.
    assert_eq!(
        Budget::new(10).plan(2),
        [leg(Stage::Narrow, 8, 1), leg(Stage::Continue, 1, 2)]
    );
    assert_eq!(Budget::new(10).plan(1), [leg(Stage::Narrow, 8, 1)]);
}

#[test]
fn counts_are_settled_when_the_early_crossing_keeps_k_within_a_factor() {
    let b = budget(100);
    // Early counts cross 100 halfway (in ln λ) between 1e-4 and 1e-2.
    let early = [(1e-4, 1000), (1e-2, 10)];
    // Later counts at 1e-3 (interpolated): 1e-4 -> 400, 1e-2 -> 10:
    // sqrt(4000) = 63.2, a factor 1.58: settled.
    assert!(settled(&early, &[(1e-4, 400), (1e-2, 10)], &b, 2.0));
    // 1e-4 -> 100, 1e-2 -> 10: sqrt(1000) = 31.6, a factor 3.2: not.
    assert!(!settled(&early, &[(1e-4, 100), (1e-2, 10)], &b, 2.0));
    // The factor is the threshold either way.
    assert!(settled(&early, &[(1e-4, 100), (1e-2, 10)], &b, 3.2));
    // Counts that grew past 2K: not settled either.
    assert!(!settled(&early, &[(1e-4, 4000), (1e-2, 100)], &b, 2.0));
    // No early crossing (every count above K): not settled.
    assert!(!settled(
        &[(1e-4, 600), (1e-2, 600)],
        &[(1e-4, 100), (1e-2, 99)],
        &b,
        2.0
    ));
    // Beyond the points the count is held at the end.
    assert_eq!(
        log_count_at(&[(1e-4, 50), (1e-2, 10)], 1e-6f64.ln()),
        50f64.ln()
    );
}

#[test]
fn the_slow_schedule_drops_later_and_may_cost_half_a_fit_more() {
    let b = budget(100);
    let slow = b.slowed();
    assert_eq!(slow.slow, None);
    assert_eq!((slow.narrow_share, slow.second_share), (0.2, 0.6));
    assert_eq!(slow.max_cost, 3.5);
    let until: Vec<u64> = slow.plan(1000).iter().map(|l| l.until).collect();
    assert_eq!(until, [200, 600, 1000]);
    let fast = Budget {
        slow: None,
        ..b.clone()
    };
    assert_eq!(fast.slowed(), fast);
}

#[test]
fn the_cost_model_is_one_fit_alone_and_affine_in_batches() {
    assert_eq!(batch_cost(1), 1.0);
    assert!((batch_cost(2) - 2.07).abs() < 1e-12);
    assert!((batch_cost(8) - 3.63).abs() < 1e-12);
    // Past 8 models, passes of at most 8.
    assert!((batch_cost(9) - 4.63).abs() < 1e-12);
    assert!((batch_cost(18) - 2.0 * 3.63 - 2.07).abs() < 1e-12);
    // The default search without and with its refining model.
    let cost = |b: &[(usize, f64)]| -> f64 { b.iter().map(|&(k, s)| batch_cost(k) * s).sum() };
    let base = cost(&[(9, 0.05), (8, 0.1), (4, 0.3), (1, 0.6)]);
    assert!((base - 1.9715).abs() < 1e-9, "{base}");
    assert!(base + batch_cost(1) <= Budget::new(1).max_cost);
}

#[test]
fn survivors_sit_where_the_drift_carries_the_crossing() {
    // Counts like the demo's: at 250 of 1000 epochs they cross 30000
    // near 1.49e-5, at 50 epochs (the bracket) near 5.26e-5: the
    // crossing moves -0.78 in ln λ per unit of ln epochs, so at 1000
    // epochs it is expected near 5.0e-6 (the demo's is 5.8e-6).
    let b = budget(30000);
    let now = [
        (1e-6, 146054),
        (2.683e-6, 97000),
        (7.197e-6, 50000),
        (1.931e-5, 25000),
        (5.179e-5, 13800),
        (1.389e-4, 6700),
        (3.728e-4, 3000),
        (1e-3, 164),
    ];
    let before = [(1e-5, 155313), (1e-4, 15853)];
    let keep = survivors(&now, 250, (&before, 50), 1000, 4, &b);
    assert_eq!(keep, [0, 1, 2, 3]);
    // Without drift (same step), the crossing itself.
    let keep = survivors(&now, 250, (&before, 250), 1000, 2, &b);
    assert_eq!(keep, [2, 3]);
    // The tests' sparse truth at 50 of 200 epochs: no gate had closed at
    // 10 (the bracket, all 600 above K), so the crossing (7.2e-2 now)
    // moves down by an unknown amount: the four below it are kept (the
    // full-length crossing is at 1.25e-2).
    let now = [
        (1e-3, 600),
        (1.931e-3, 600),
        (3.728e-3, 600),
        (7.197e-3, 596),
        (1.389e-2, 577),
        (2.683e-2, 496),
        (5.179e-2, 263),
        (1e-1, 88),
    ];
    let before = [(1e-3, 600), (1e-2, 600), (1e-1, 600)];
    let keep = survivors(&now, 50, (&before, 10), 200, 4, &budget(150));
    assert_eq!(keep, [3, 4, 5, 6]);
    // No crossing now: the count nearest K and its neighbours.
    let all_above = [(1e-3, 600), (1e-2, 590), (1e-1, 400)];
    let keep = survivors(&all_above, 10, (&all_above, 5), 20, 2, &budget(150));
    assert_eq!(keep, [1, 2]);
}

#[test]
fn refining_interpolates_the_full_length_counts() {
    let b = budget(100);
    // A straight line in ln-ln: exact.
    let p = [(1e-3, 400), (1e-2, 25)];
    let x = refine_centre(&p, &[], &b, 1.0).unwrap();
    let line = 1e-5f64.sqrt().ln();
    assert!((x - line).abs() < 1e-12, "{}", x.exp());
    // A third count bends the curve: the root moves off the line.
    let p = [(1e-3, 400), (1e-2, 25), (1e-1, 20)];
    let x = refine_centre(&p, &[], &b, 1.0).unwrap();
    assert!(x < line && x > 1e-3f64.ln(), "{}", x.exp());
    // All above K: on the line beyond them, at most one step further.
    let p = [(1e-3, 400), (2e-3, 200)];
    let x = refine_centre(&p, &[], &b, 0.5).unwrap();
    assert!((x - (2e-3f64.ln() + 0.5)).abs() < 1e-12, "{}", x.exp());
    // Counts that do not fall with λ: one step towards K.
    let p = [(1e-3, 200), (2e-3, 200)];
    let x = refine_centre(&p, &[], &b, 0.5).unwrap();
    assert!((x - (2e-3f64.ln() + 0.5)).abs() < 1e-12, "{}", x.exp());
    let x = refine_centre(&[(1e-3, 50)], &[], &b, 0.5).unwrap();
    assert!((x - (1e-3f64.ln() - 0.5)).abs() < 1e-12, "{}", x.exp());
    // Two new λ straddle the centre; a λ already trained is not repeated.
    let l = refine_lambdas(&[(1e-3, 400), (1e-2, 25)], &[], &b, 0.9, 2);
    assert_eq!(l.len(), 2);
    assert!((l[0] * l[1] / 1e-5 - 1.0).abs() < 1e-9, "{l:?}");
    assert!(refine_lambdas(&[(1e-1, 400), (1e-1, 400)], &[], &b, 0.5, 1).is_empty());
    // One finalist (130 records at 1e-2, target 150): a Newton step
    // along the slope of the counts at the last drop (-1 between the
    // pair crossing 150), ln(150 / 130) below 1e-2.
    let earlier = [(5e-3, 400), (1e-2, 200), (2e-2, 100), (4e-2, 40)];
    let x = refine_centre(&[(1e-2, 130)], &earlier, &budget(150), 1.0).unwrap();
    let want = 1e-2f64.ln() - (150.0f64 / 130.0).ln();
    assert!((x - want).abs() < 1e-12, "{}", x.exp());
    // Without a falling slope there, one step towards K.
    let flat = [(5e-3, 200), (1e-2, 200)];
    let x = refine_centre(&[(1e-2, 130)], &flat, &budget(150), 0.5).unwrap();
    assert!((x - (1e-2f64.ln() - 0.5)).abs() < 1e-12, "{}", x.exp());
}
