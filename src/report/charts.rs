//! The report's charts as inline SVG: line charts (one or many series over periods or
//! offsets), histograms and paired bars, plus the heat map's colour scale. Geometry only — the
//! shapes are lines and rectangles — so the SVG is written directly: every mark carries a
//! `<title>` (its value on hover and for screen readers) and its data as attributes, and every
//! chart has a role, a label and a table of its data next to it in the page.

use std::fmt::Write;

/// Escapes text for HTML/SVG content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
pub(crate) const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// A sequential colour for `t` in [0, 1] (light yellow-green to dark blue, viridis-like and
/// monotone in lightness, so it reads in grey print too).
pub(crate) fn ramp(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (253.0, 231.0, 37.0),
        (94.0, 201.0, 98.0),
        (33.0, 145.0, 140.0),
        (59.0, 82.0, 139.0),
        (68.0, 1.0, 84.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Whether text on `ramp(t)` should be white (dark background).
pub(crate) fn ramp_is_dark(t: f64) -> bool {
    t > 0.55
}

/// One line of a line chart: values at x = 0, 1, 2, … (None: no point).
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) color: String,
    pub(crate) values: Vec<Option<f64>>,
    /// From this x on the line is dashed (the period that is not complete yet).
    pub(crate) dashed_from: Option<usize>,
    /// Draw every value as a point with its title; false: the line only, titled with the
    /// series' name (many series, e.g. one per cohort, stay light).
    pub(crate) points: bool,
}

/// Layout of a chart.
pub(crate) struct Axes<'a> {
    pub(crate) title: &'a str,
    /// Label of every x position.
    pub(crate) x_labels: &'a [String],
    pub(crate) y_label: &'a str,
    /// How a y value is printed (ticks and titles).
    pub(crate) fmt: &'a dyn Fn(f64) -> String,
}

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;

/// Round tick step for a range of `span` with about `n` ticks.
fn nice_step(span: f64, n: f64) -> f64 {
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The y range [lo, hi] and its ticks for these values (0 always included).
fn y_scale(values: impl Iterator<Item = f64>) -> (f64, f64, Vec<f64>) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == lo {
        hi = lo + 1.0;
    }
    let step = nice_step(hi - lo, 5.0);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let ticks = (0..)
        .map(|k| lo + k as f64 * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .collect();
    (lo, hi, ticks)
}

/// Where the x labels go: on the points of a line chart, or under the bars' slots.
#[derive(Clone, Copy)]
enum XAt {
    Points,
    Slots,
}

impl XAt {
    fn x(self, i: usize, n: usize) -> f64 {
        match self {
            XAt::Points => x_at(i, n),
            XAt::Slots => LEFT + (W - LEFT - RIGHT) * (i as f64 + 0.5) / n.max(1) as f64,
        }
    }
}

fn frame(out: &mut String, axes: &Axes<'_>, (lo, hi): (f64, f64), ticks: &[f64], at: XAt) {
    let n = axes.x_labels.len();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(axes.title),
        esc(axes.title)
    );
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    for &t in ticks {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y(t) + 4.0,
            esc(&(axes.fmt)(t)),
            y = y(t)
        );
    }
    // As many labels as fit without touching (11px text is about 6.5px per character).
    let widest = axes
        .x_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1);
    let fit = (((W - LEFT - RIGHT) / (widest as f64 * 6.5 + 12.0)).floor() as usize).max(1);
    let every = n.div_ceil(fit).max(1);
    for (i, label) in axes.x_labels.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                at.x(i, n),
                H - BOTTOM + 16.0,
                esc(label)
            );
        }
    }
    let _ = write!(
        out,
        "<text class=\"axis\" x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
        TOP + (H - TOP - BOTTOM) / 2.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(axes.y_label)
    );
}

fn x_at(i: usize, n: usize) -> f64 {
    let plot = W - LEFT - RIGHT;
    if n <= 1 {
        LEFT + plot / 2.0
    } else {
        LEFT + plot * i as f64 / (n - 1) as f64
    }
}

/// A line chart of `series` over `axes.x_labels`.
pub(crate) fn lines(axes: &Axes<'_>, series: &[Series]) -> String {
    let n = axes.x_labels.len();
    let (lo, hi, ticks) = y_scale(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied()),
    );
    let mut out = String::new();
    frame(&mut out, axes, (lo, hi), &ticks, XAt::Points);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    for s in series {
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{}\"><title>{}</title>",
            esc(&s.name),
            esc(&s.name)
        );
        // Runs of consecutive points; the dashed part starts at the last solid point.
        let mut solid = String::new();
        let mut dashed = String::new();
        for (i, v) in s.values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let p = format!("{:.1},{:.1} ", x_at(i, n), y(v));
            match s.dashed_from {
                Some(d) if i >= d => {
                    if dashed.is_empty() && i > 0 {
                        if let Some(prev) = s.values[i - 1].filter(|v| v.is_finite()) {
                            dashed.push_str(&format!("{:.1},{:.1} ", x_at(i - 1, n), y(prev)));
                        }
                    }
                    dashed.push_str(&p);
                }
                _ => solid.push_str(&p),
            }
        }
        for (points, class) in [(solid, "line"), (dashed, "line partial")] {
            if !points.is_empty() {
                let _ = write!(
                    out,
                    "<polyline class=\"{class}\" fill=\"none\" stroke=\"{}\" points=\"{}\"/>",
                    s.color,
                    points.trim_end()
                );
            }
        }
        for (i, v) in s.values.iter().enumerate().filter(|_| s.points) {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let open = s.dashed_from.is_some_and(|d| i >= d);
            let _ = write!(
                out,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\" stroke=\"{}\" data-x=\"{}\" data-value=\"{v}\"><title>{}: {} = {}{}</title></circle>",
                x_at(i, n),
                y(v),
                if open { "#fff" } else { s.color.as_str() },
                s.color,
                esc(&axes.x_labels[i]),
                esc(&axes.x_labels[i]),
                esc(&s.name),
                esc(&(axes.fmt)(v)),
                if open { " (period not complete)" } else { "" }
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// Vertical bars: one per label, or two per label (`second`, e.g. predicted next to actual).
pub(crate) fn bars(
    axes: &Axes<'_>,
    first: (&str, &[f64]),
    second: Option<(&str, &[f64])>,
) -> String {
    let n = axes.x_labels.len();
    let all = first
        .1
        .iter()
        .chain(second.iter().flat_map(|s| s.1.iter()))
        .copied();
    let (lo, hi, ticks) = y_scale(all);
    let mut out = String::new();
    frame(&mut out, axes, (lo, hi), &ticks, XAt::Slots);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    let slot = (W - LEFT - RIGHT) / n.max(1) as f64;
    let groups = if second.is_some() { 2.0 } else { 1.0 };
    let width = (slot * 0.8 / groups).max(1.0);
    for (k, (name, values)) in std::iter::once(first).chain(second).enumerate() {
        let color = PALETTE[k];
        for (i, &v) in values.iter().enumerate().take(n) {
            let x = LEFT + slot * i as f64 + slot * 0.1 + width * k as f64;
            let (top, bottom) = (y(v.max(0.0)), y(v.min(0.0)));
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{color}\" data-series=\"{}\" data-x=\"{}\" data-value=\"{v}\"><title>{}: {} = {}</title></rect>",
                (bottom - top).max(0.5),
                esc(name),
                esc(&axes.x_labels[i]),
                esc(&axes.x_labels[i]),
                esc(name),
                esc(&(axes.fmt)(v))
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        let (lo, hi, ticks) = y_scale([3.0, 97.0].into_iter());
        assert_eq!((lo, hi), (0.0, 100.0));
        assert_eq!(ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let (lo, hi, _) = y_scale([-12.0, 7.0].into_iter());
        assert_eq!((lo, hi), (-15.0, 10.0));
        // All zero: still a range.
        let (lo, hi, _) = y_scale([0.0].into_iter());
        assert!(hi > lo);
    }

    #[test]
    fn ramp_ends_and_escaping() {
        assert_eq!(ramp(0.0), "#fde725");
        assert_eq!(ramp(1.0), "#440154");
        assert_eq!(ramp(f64::NAN), "#fde725");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn a_partial_period_is_dashed_and_hollow() {
        let fmt = |v: f64| format!("{v:.0}");
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let axes = Axes {
            title: "t",
            x_labels: &labels,
            y_label: "y",
            fmt: &fmt,
        };
        let svg = lines(
            &axes,
            &[Series {
                name: "s".into(),
                color: "#000".into(),
                values: vec![Some(1.0), Some(2.0), Some(3.0)],
                dashed_from: Some(2),
                points: true,
            }],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("fill=\"#fff\"").count(), 1);
        assert!(svg.contains("(period not complete)"));
    }
}
