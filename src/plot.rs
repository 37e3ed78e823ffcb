//! The sweep plot, `sweep.svg`: mean and max relative error of each model
//! against its active records (log x), one labelled point per λ, and the
//! holdout's mean error when there is one. Plain SVG text, no dependency;
//! readable without the CSV it summarises.

use std::fmt::Write;

/// One model of the plot.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// Its L0 strength (the point's label).
    pub lambda_l0: f64,
    /// Non-zero weights (x, log scale; 0 is drawn at the axis' left end).
    pub active: u64,
    /// Mean |relative error| over the targets in the loss.
    pub mean_abs_rel_err: f64,
    /// Max of the same.
    pub max_abs_rel_err: f64,
    /// Mean |relative error| over the holdout targets, if any.
    pub holdout_mean_abs_rel_err: Option<f64>,
}

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The width of a character of a λ label (10 px sans-serif), in px.
const LABEL_CHAR: f64 = 6.0;

/// The series drawn: (name, colour, dash, value of a point).
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SweepPoint) -> Option<f64>,
);

const SERIES: [Series; 3] = [
    ("mean |rel err|", "#1f77b4", "", |p| {
        Some(p.mean_abs_rel_err)
    }),
    ("max |rel err|", "#d62728", "", |p| Some(p.max_abs_rel_err)),
    ("holdout mean |rel err|", "#2ca02c", "6,4", |p| {
        p.holdout_mean_abs_rel_err
    }),
];

/// The x axis' ends `(lo, hi)` in records (log scale): from the decade at
/// or below the fewest active records to the most rounded up to 1, 2, 2.5
/// or 5 times a power of ten, but never past `records` (the columns), so a
/// sweep of 250,000 records ends at 250,000, not at the next decade.
fn x_range(points: &[SweepPoint], records: u64) -> (f64, f64) {
    let counts = points.iter().map(|p| p.active.max(1) as f64);
    let fewest = counts.clone().fold(f64::INFINITY, f64::min);
    let most = counts.fold(1.0, f64::max);
    let lo = 10f64.powf(fewest.max(1.0).log10().floor());
    let decade = 10f64.powf(most.log10().floor());
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|v| *v >= most)
        .unwrap_or(10.0 * decade);
    let hi = nice.min((records.max(1) as f64).max(most));
    (lo, if hi > lo { hi } else { 10.0 * lo })
}

/// A "nice" step for `max` split in about five.
fn y_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// `sweep.svg` for `points` (in the sweep's order).
/// The x axis runs over the active counts, at most to `records` (the
/// columns; [`x_range`]); λ labels that would print over one another are
/// left out ([`label_boxes`]), and a note says how many.
pub fn sweep_svg(title: &str, points: &[SweepPoint], records: u64) -> String {
    let (xlo, xhi) = x_range(points, records);
    let ymax_raw = points
        .iter()
        .flat_map(|p| SERIES.iter().filter_map(move |s| (s.3)(p)))
        .fold(0.0f64, f64::max)
        * 100.0;
    let step = y_step(ymax_raw.max(1e-9));
    let ymax = (ymax_raw / step).ceil().max(1.0) * step;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |active: u64| {
        let l = (active.max(1) as f64).log10();
        LEFT + pw * (l - xlo.log10()) / (xhi.log10() - xlo.log10())
    };
    let y = |err: f64| TOP + ph * (1.0 - 100.0 * err / ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text class="title" x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    axes(&mut s, (xlo, xhi), ymax, step, &x, &y);
    for (k, (name, colour, dash, value)) in SERIES.iter().enumerate() {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| value(p).map(|v| (x(p.active), y(v))))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline class="series" data-name="{name}" points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            path.join(" ")
        );
        for (a, b) in &pts {
            let _ = writeln!(
                s,
                r#"<circle class="point" data-series="{name}" cx="{a:.1}" cy="{b:.1}" r="4" fill="{colour}"/>"#
            );
        }
        let ly = TOP + 16.0 + 18.0 * k as f64;
        let lx = W - RIGHT - 200.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text class="legend" x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    let labels: Vec<(f64, f64, String)> = points
        .iter()
        .map(|p| {
            let text = format!("λ={}", short(p.lambda_l0));
            // Inside the picture: a label at either end is moved in.
            let half = LABEL_CHAR / 2.0 * text.chars().count() as f64 + 1.0;
            let lx = x(p.active).clamp(half, W - half);
            (lx, y(p.max_abs_rel_err) - 9.0, text)
        })
        .collect();
    let shown = label_boxes(&labels);
    for (lx, ly, text) in labels
        .iter()
        .zip(&shown)
        .filter(|(_, &k)| k)
        .map(|(l, _)| l)
    {
        let _ = writeln!(
            s,
            r#"<text class="label" x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="10">{text}</text>"#
        );
    }
    let hidden = shown.iter().filter(|&&k| !k).count();
    if hidden > 0 {
        let _ = writeln!(
            s,
            r#"<text class="note" x="{}" y="{}" text-anchor="end" font-size="10">{hidden} λ label(s) left out where they would overlap; every λ is in sweep.csv</text>"#,
            W - RIGHT,
            H - 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Which labels `(x, y, text)` to draw: greedily from the left, each one
/// whose box (10 px text: 6 px a character, 11 px high) clears those
/// already drawn by 2 px.
fn label_boxes(labels: &[(f64, f64, String)]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[a].0.total_cmp(&labels[b].0));
    let bbox = |(x, y, t): &(f64, f64, String)| {
        let half = LABEL_CHAR / 2.0 * t.chars().count() as f64 + 1.0;
        (x - half, x + half, y - 11.0, y + 2.0)
    };
    let mut shown = vec![false; labels.len()];
    let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new();
    for k in order {
        let b = bbox(&labels[k]);
        let clear = placed
            .iter()
            .all(|p| b.1 <= p.0 || b.0 >= p.1 || b.3 <= p.2 || b.2 >= p.3);
        if clear {
            placed.push(b);
            shown[k] = true;
        }
    }
    shown
}

/// The x ticks between `lo` and `hi` (records): each decade, and `hi`
/// itself when it is not one; a decade closer than 45 px to `hi` loses its
/// tick to it.
fn x_ticks((lo, hi): (f64, f64), x: &dyn Fn(u64) -> f64) -> Vec<u64> {
    let end = hi.round() as u64;
    let mut ticks: Vec<u64> = (0..=19)
        .map(|d| 10u64.pow(d))
        .filter(|&v| v as f64 >= lo && v <= end)
        .collect();
    if ticks.last() != Some(&end) {
        ticks.retain(|&v| x(end) - x(v) >= 45.0);
        ticks.push(end);
    }
    ticks
}

/// The frame, the x ticks ([`x_ticks`]) and the ticks of y, with titles.
fn axes(
    s: &mut String,
    xr: (f64, f64),
    ymax: f64,
    step: f64,
    x: &dyn Fn(u64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = writeln!(
        s,
        r##"<path class="axes" d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#333"/>"##
    );
    for v in x_ticks(xr, x) {
        let xv = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{xv:.1}" y1="{y0}" x2="{xv:.1}" y2="{}" stroke="#333"/><text class="xtick" x="{xv:.1}" y="{}" text-anchor="middle">{v}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
        );
    }
    let mut v = 0.0;
    while v <= ymax + step * 1e-9 {
        let yv = y(v / 100.0);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{yv:.1}" x2="{x1}" y2="{yv:.1}" stroke="#ddd"/><text class="ytick" x="{}" y="{:.1}" text-anchor="end">{}%</text>"##,
            x0,
            x0 - 6.0,
            yv + 4.0,
            short(v)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<text class="xtitle" x="{}" y="{}" text-anchor="middle">active records (log scale)</text>"#,
        (x0 + x1) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text class="ytitle" x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">relative error</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
}

/// A number in at most four significant digits, without trailing zeros:
/// plain from 1e-3 to below 1e5, else `Me-E`.
fn short(v: f64) -> String {
    let t = format!("{v:.3e}");
    let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
    let trim = |m: &str| m.trim_end_matches('0').trim_end_matches('.').to_string();
    match e.parse::<i32>().unwrap_or(0) {
        e if (-3..=4).contains(&e) => {
            let rounded: f64 = t.parse().unwrap_or(v);
            let text = format!("{rounded:.*}", (3 - e).max(0) as usize);
            if text.contains('.') {
                trim(&text)
            } else {
                text
            }
        }
        e => format!("{}e{e}", trim(m)),
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short(1e-6), "1e-6");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(3.2e-5), "3.2e-5");
        assert_eq!(short(0.01), "0.01");
        assert_eq!(short(0.005185939), "0.005186");
        assert_eq!(short(0.0019328882), "0.001933");
        assert_eq!(short(12345.0), "12340");
        assert_eq!(short(7.197e-7), "7.197e-7");
        assert_eq!(short(100.0), "100");
        assert_eq!(y_step(13.0), 5.0);
    }

    fn point(lambda_l0: f64, active: u64, err: f64) -> SweepPoint {
        SweepPoint {
            lambda_l0,
            active,
            mean_abs_rel_err: err / 2.0,
            max_abs_rel_err: err,
            holdout_mean_abs_rel_err: None,
        }
    }

    #[test]
    fn the_records_axis_ends_at_the_records() {
        // All but a few of 250,000 records: the axis ends at 250,000.
        let p = [point(1e-7, 249_800, 0.01), point(1e-3, 150, 0.04)];
        assert_eq!(x_range(&p, 250_000), (100.0, 250_000.0));
        // Fewer kept: the most rounded up to 1, 2, 2.5 or 5 x 10^k.
        let few = [point(1e-3, 150, 0.04), point(1e-4, 3_100, 0.02)];
        assert_eq!(x_range(&few, 250_000), (100.0, 5_000.0));
        let svg = sweep_svg("t", &p, 250_000);
        let ticks: Vec<&str> = svg
            .match_indices(r#"class="xtick""#)
            .map(|(i, _)| {
                let from = i + svg[i..].find('>').unwrap() + 1;
                &svg[from..from + svg[from..].find('<').unwrap()]
            })
            .collect();
        // 100000 sits 0.4 decades (55 px) left of 250000: both stay.
        assert_eq!(ticks, ["100", "1000", "10000", "100000", "250000"]);
        assert!(!svg.contains(">1000000<"));
    }

    #[test]
    fn crowded_lambda_labels_are_thinned_and_counted() {
        // The issue's dense end: six models within 0.01 decades of 250,000.
        let mut p: Vec<SweepPoint> = (0..6)
            .map(|k| {
                point(
                    1e-7 * 2.683f64.powi(k),
                    249_900 - 100 * k as u64,
                    0.010 + 0.0005 * k as f64,
                )
            })
            .collect();
        p.push(point(1e-3, 150, 0.04));
        let svg = sweep_svg("t", &p, 250_000);
        let labels: Vec<&str> = svg
            .match_indices(r#"class="label""#)
            .map(|(i, _)| {
                let from = i + svg[i..].find('>').unwrap() + 1;
                &svg[from..from + svg[from..].find('<').unwrap()]
            })
            .collect();
        // The cluster's labels are moved in from the right edge; left to
        // right, each one drawn clears the others by 13 px (three models).
        assert_eq!(labels, ["λ=2.683e-7", "λ=5.182e-6", "λ=0.001"]);
        assert!(svg
            .contains(">4 λ label(s) left out where they would overlap; every λ is in sweep.csv<"));
        // Spread out: every label is drawn and no note.
        let wide = [
            point(1e-6, 100_000, 0.01),
            point(1e-4, 1_000, 0.02),
            point(1e-2, 10, 0.04),
        ];
        let svg = sweep_svg("t", &wide, 250_000);
        assert_eq!(svg.matches(r#"class="label""#).count(), 3);
        assert!(!svg.contains(r#"class="note""#));
    }
}
