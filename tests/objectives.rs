//! The survey objectives (src/objective.rs) in whole fits: tolerance bands
//! and the capped l1-relative loss, each against an independent answer or
//! an identity with a fit that has to give the same bits.

mod common;

use common::{cpu_fit, dense, state_bits};
use l0::{Calibration, CalibrationParams, FitParams, Init, Loss, SparseMatrix};

fn cpu(threads: usize) -> FitParams {
    cpu_fit(threads)
}

fn seeded(seed: u64) -> CalibrationParams {
    CalibrationParams {
        seed: Some(seed),
        ..Default::default()
    }
}

/// 12 targets x 40 records, the targets made from sparse weights; target 3
/// scaled by `scale3` (so that no weighting reaches it when far from 1).
fn problem(scale3: f64) -> (SparseMatrix, Vec<f64>) {
    let rows: Vec<Vec<f64>> = (0..12)
        .map(|q| {
            (0..40)
                .map(|j| {
                    if (q * 5 + j * 3) % 7 < 3 {
                        1.0 + ((q + j) % 4) as f64
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let truth: Vec<f64> = (0..40)
        .map(|j| {
            if j % 3 == 0 {
                2.0 + (j % 5) as f64
            } else {
                0.0
            }
        })
        .collect();
    let m = dense(&rows);
    let mut y = m.mul_vec(&truth).unwrap();
    y[3] *= scale3;
    (m, y)
}

fn fitted(m: &SparseMatrix, y: &[f64], params: CalibrationParams, opts: &FitParams) -> Calibration {
    let mut c = Calibration::new(m.cols(), params).unwrap();
    c.fit(m, y, opts).unwrap();
    c
}

#[test]
fn a_zero_tolerance_is_no_tolerance_bit_for_bit() {
    let (m, y) = problem(1.0);
    for loss in [Loss::Mse, Loss::Relative, Loss::L1Relative] {
        let base = FitParams {
            loss,
            epochs: 80,
            lr: 0.05,
            lambda_l0: 1e-3,
            ..cpu(2)
        };
        let plain = fitted(&m, &y, seeded(4), &base);
        let zero = fitted(
            &m,
            &y,
            seeded(4),
            &FitParams {
                target_tolerance: Some(vec![0.0]),
                ..base.clone()
            },
        );
        assert_eq!(
            state_bits(plain.state()),
            state_bits(zero.state()),
            "{loss:?}"
        );
    }
}

#[test]
fn a_target_held_beyond_its_cap_trains_as_a_target_left_out() {
    // Target 3 is 50 times what any weighting near the start reaches: its
    // l1-relative error stays near 1, above the cap 0.9 (the others start
    // at most 0.7 off), so it pulls on no weight, and the fit is the fit
    // without it, bit for bit.
    let (m, y) = problem(50.0);
    let base = FitParams {
        loss: Loss::L1Relative,
        epochs: 150,
        lr: 0.05,
        lambda_l0: 1e-3,
        ..cpu(2)
    };
    let capped = fitted(
        &m,
        &y,
        seeded(9),
        &FitParams {
            loss_cap: Some(0.9),
            ..base.clone()
        },
    );
    let without = fitted(
        &m,
        &y,
        seeded(9),
        &FitParams {
            excluded_targets: vec![3],
            ..base.clone()
        },
    );
    assert_eq!(state_bits(capped.state()), state_bits(without.state()));
    // Uncapped, the same target pulls the weights up.
    let uncapped = fitted(&m, &y, seeded(9), &base);
    assert_ne!(state_bits(uncapped.state()), state_bits(without.state()));
    // Its loss term is the cap: the two losses differ by exactly g_3 x 0.9.
    let opts = |o: &FitParams| FitParams {
        lambda_l0: 0.0,
        ..o.clone()
    };
    let with_cap = capped
        .deterministic_loss(
            &m,
            &y,
            &opts(&FitParams {
                loss_cap: Some(0.9),
                ..base.clone()
            }),
        )
        .unwrap();
    let left_out = without
        .deterministic_loss(
            &m,
            &y,
            &opts(&FitParams {
                excluded_targets: vec![3],
                ..base.clone()
            }),
        )
        .unwrap();
    assert!(
        (with_cap - left_out - 0.9).abs() < 1e-12,
        "{with_cap} vs {left_out}"
    );
}

/// min over w >= 0 of sum_q (dist(y_q - (M w)_q, [-b_q, b_q]) / d_q)^2 by
/// projected gradient descent in f64 (the loss is smooth and convex; step
/// 1 / (2 ||M / d||_F^2)): the independent answer for a banded fit.
fn banded_least_squares(rows: &[Vec<f64>], y: &[f64], b: &[f64], d: &[f64]) -> (Vec<f64>, f64) {
    let n = rows[0].len();
    let frob: f64 = rows
        .iter()
        .zip(d)
        .map(|(r, d)| r.iter().map(|v| (v / d).powi(2)).sum::<f64>())
        .sum();
    let step = 1.0 / (2.0 * frob);
    let excess = |w: &[f64]| -> Vec<f64> {
        rows.iter()
            .zip(y)
            .zip(b)
            .map(|((row, y), b)| {
                let diff = y - row.iter().zip(w).map(|(a, w)| a * w).sum::<f64>();
                diff.signum() * (diff.abs() - b).max(0.0)
            })
            .collect()
    };
    let mut w = vec![1.0; n];
    for _ in 0..100_000 {
        let x = excess(&w);
        for (j, wj) in w.iter_mut().enumerate() {
            let g: f64 = (0..rows.len())
                .map(|q| -2.0 * rows[q][j] * x[q] / (d[q] * d[q]))
                .sum();
            *wj = (*wj - step * g).max(0.0);
        }
    }
    let loss = excess(&w).iter().zip(d).map(|(x, d)| (x / d).powi(2)).sum();
    (w, loss)
}

#[test]
fn a_banded_fit_reaches_the_least_banded_loss() {
    // 6 targets x 3 records that no weighting matches (rows 4 and 5 ask for
    // more than rows 0-3 allow), bands of 2% and 5%: the fit without gates
    // reaches the smallest banded relative loss, found apart.
    let rows = vec![
        vec![1.0, 0.0, 2.0],
        vec![0.0, 1.0, 1.0],
        vec![1.0, 1.0, 0.0],
        vec![2.0, 1.0, 1.0],
        vec![1.0, 2.0, 3.0],
        vec![3.0, 1.0, 1.0],
    ];
    let y = vec![50.0, 40.0, 45.0, 100.0, 150.0, 160.0];
    let tolerance = vec![0.02, 0.05, 0.02, 0.05, 0.02, 0.05];
    let d: Vec<f64> = y.iter().map(|v| v + 1.0).collect();
    let b: Vec<f64> = tolerance.iter().zip(&d).map(|(t, d)| t * d).collect();
    let (want_w, want) = banded_least_squares(&rows, &y, &b, &d);
    assert!(want > 1e-4, "the problem must be out of reach: {want}");
    let m = dense(&rows);
    let opts = FitParams {
        loss: Loss::Relative,
        target_tolerance: Some(tolerance.clone()),
        normalize_groups: false,
        lambda_l0: 0.0,
        epochs: 6000,
        lr: 0.01,
        ..cpu(1)
    };
    let params = CalibrationParams {
        use_gates: false,
        init_weights: Some(Init::Scalar(10.0)),
        ..seeded(2)
    };
    let model = fitted(&m, &y, params, &opts);
    let got = model.deterministic_loss(&m, &y, &opts).unwrap();
    assert!(
        (got - want).abs() <= 1e-4 * want,
        "loss {got} vs the least {want} at {want_w:?}"
    );
    // And without the bands the least loss is larger: the bands matter.
    let (_, unbanded) = banded_least_squares(&rows, &y, &[0.0; 6], &d);
    assert!(unbanded > 1.3 * want, "{unbanded} vs {want}");
}

#[test]
fn l1_on_one_record_is_the_weighted_median() {
    // One record, targets y_q = m_q v_q: sum_q |y_q - m_q w| / max(|y_q|, 1)
    // is least at the median of v_q weighted by m_q / max(|y_q|, 1); the
    // mse answer is pulled toward the outlier v = 40.
    let mq = [1.0, 2.0, 1.0, 3.0, 1.0];
    let v = [8.0, 10.0, 12.0, 10.5, 40.0];
    let rows: Vec<Vec<f64>> = mq.iter().map(|&x| vec![x]).collect();
    let y: Vec<f64> = mq.iter().zip(&v).map(|(m, v)| m * v).collect();
    let mut order: Vec<usize> = (0..5).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let wt: Vec<f64> = (0..5).map(|q| mq[q] / y[q].abs().max(1.0)).collect();
    let half = wt.iter().sum::<f64>() / 2.0;
    let mut acc = 0.0;
    let median = order
        .iter()
        .find(|&&q| {
            acc += wt[q];
            acc >= half
        })
        .map(|&q| v[q])
        .unwrap();
    assert_eq!(median, 10.0);
    let m = dense(&rows);
    let params = CalibrationParams {
        use_gates: false,
        init_weights: Some(Init::Scalar(5.0)),
        ..seeded(1)
    };
    let opts = FitParams {
        loss: Loss::L1Relative,
        lambda_l0: 0.0,
        epochs: 4000,
        lr: 0.002,
        ..cpu(1)
    };
    let w = fitted(&m, &y, params.clone(), &opts).weights(true)[0];
    assert!(
        (w - median).abs() < 0.02 * median,
        "l1: {w} vs the weighted median {median}"
    );
    // The squared relative loss is least at sum m y / d^2 / sum m^2 / d^2
    // (d = y + 1), which the outlier pulls above the median.
    let ls = (0..5)
        .map(|q| mq[q] * y[q] / (y[q] + 1.0).powi(2))
        .sum::<f64>()
        / (0..5).map(|q| (mq[q] / (y[q] + 1.0)).powi(2)).sum::<f64>();
    assert!(ls > 1.02 * median, "{ls}");
    let w2 = fitted(
        &m,
        &y,
        params,
        &FitParams {
            loss: Loss::Relative,
            ..opts
        },
    )
    .weights(true)[0];
    assert!(
        (w2 - ls).abs() < 0.002 * ls,
        "relative (squared) fit {w2} vs its least-squares {ls}"
    );
}

#[test]
fn bad_objective_options_are_named() {
    let (m, y) = problem(1.0);
    let err = |o: FitParams| {
        let mut c = Calibration::new(m.cols(), seeded(1)).unwrap();
        c.fit(&m, &y, &o).unwrap_err().to_string()
    };
    assert_eq!(
        err(FitParams {
            loss: Loss::Relative,
            loss_cap: Some(0.5),
            ..cpu(1)
        }),
        "invalid configuration: loss_cap applies to loss_type=\"l1-relative\" only, not to relative"
    );
    assert_eq!(
        err(FitParams {
            loss: Loss::L1Relative,
            loss_cap: Some(0.0),
            ..cpu(1)
        }),
        "invalid configuration: loss_cap must be a number > 0, got 0"
    );
    assert_eq!(
        err(FitParams {
            target_tolerance: Some(vec![0.1; 5]),
            ..cpu(1)
        }),
        "shape mismatch: target tolerances (one per target, or one for all): expected 12, got 5"
    );
    assert_eq!(
        err(FitParams {
            target_tolerance: Some(vec![-0.1]),
            ..cpu(1)
        }),
        "invalid configuration: target_tolerance must be a finite number >= 0, got -0.1"
    );
    assert_eq!(
        "huber".parse::<Loss>().unwrap_err().to_string(),
        "invalid configuration: unknown loss 'huber': expected 'mse', 'relative' or 'l1-relative'"
    );
}
