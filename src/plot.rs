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

/// The decades `[lo, hi]` of the x axis covering `active` (at least one).
fn x_decades(points: &[SweepPoint]) -> (i32, i32) {
    let xs = points.iter().map(|p| (p.active.max(1) as f64).log10());
    let lo = xs.clone().fold(f64::INFINITY, f64::min).floor() as i32;
    let hi = xs.fold(f64::NEG_INFINITY, f64::max).ceil() as i32;
    (lo.min(hi - 1).max(0), hi.max(lo + 1).max(1))
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
pub fn sweep_svg(title: &str, points: &[SweepPoint]) -> String {
    let (dlo, dhi) = x_decades(points);
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
        LEFT + pw * (l - dlo as f64) / (dhi - dlo) as f64
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
    axes(&mut s, dlo, dhi, ymax, step, &x, &y);
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
    for p in points {
        let _ = writeln!(
            s,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">λ={}</text>"#,
            x(p.active),
            y(p.max_abs_rel_err) - 9.0,
            short(p.lambda_l0)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The frame, the decade ticks of x and the ticks of y, with titles.
fn axes(
    s: &mut String,
    dlo: i32,
    dhi: i32,
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
    for d in dlo..=dhi {
        let xv = x(10u64.pow(d as u32));
        let _ = writeln!(
            s,
            r##"<line x1="{xv:.1}" y1="{y0}" x2="{xv:.1}" y2="{}" stroke="#333"/><text class="xtick" x="{xv:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            10u64.pow(d as u32)
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

/// A number in at most four significant digits, without trailing zeros.
fn short(v: f64) -> String {
    let t = format!("{v:.3e}");
    let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
    let m = m.trim_end_matches('0').trim_end_matches('.');
    match e.parse::<i32>().unwrap_or(0) {
        0 => m.to_string(),
        e if (-3..=4).contains(&e) => format!("{}", v as f32),
        e => format!("{m}e{e}"),
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
        assert_eq!(y_step(13.0), 5.0);
    }
}
