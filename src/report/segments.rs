//! The report's per-segment part: for every segment of the retention table (the whole base and
//! each value of each segment column) a block with CRR, churn and new customers per period, the
//! cohort retention heat map, survival and LTV-to-date curves per cohort, and the p_alive and
//! predicted CLV distributions of its customers. The page shows one block at a time (a select
//! switches them; without scripts, and in print, the whole base).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::NaiveDate;

use super::charts::{self, esc, Axes, Series, PALETTE};
use super::format as f;
use super::frame::{opt_date, opt_f64, opt_str, Frame};
use super::ReportError;

/// The heat map and the cohort curves show at most this many cohorts (the newest): weekly
/// periods over years would otherwise make a page of tens of thousands of cells.
pub(crate) const MAX_COHORTS: usize = 36;

/// `segment_by` and `segment` of one block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Segment {
    pub(crate) by: String,
    pub(crate) value: String,
}

impl Segment {
    /// The block's key in the page (`data-segment`): `segment_by=segment`.
    pub(crate) fn key(&self) -> String {
        format!("{}={}", self.by, self.value)
    }

    pub(crate) fn label(&self) -> String {
        if self.by == "all" {
            "All customers".to_string()
        } else {
            format!("{}: {}", self.by, self.value)
        }
    }
}

struct Period {
    start: NaiveDate,
    complete: bool,
    crr: Option<f64>,
    churn: Option<f64>,
    new: i64,
    end: i64,
    churned: i64,
}

struct CohortCell {
    offset: i64,
    complete: bool,
    size: i64,
    active: i64,
    retention: f64,
    survival: f64,
    ltv: f64,
}

/// One segment's rows of the retention and cohorts tables.
#[derive(Default)]
struct Rows {
    periods: Vec<Period>,
    cohorts: BTreeMap<NaiveDate, Vec<CohortCell>>,
}

/// Values of the customers' distributions for one segment.
#[derive(Default)]
pub(crate) struct Distributions {
    pub(crate) p_alive: Vec<f64>,
    pub(crate) clv: Vec<f64>,
}

/// Every block, in order: the whole base first.
pub(crate) fn blocks(
    retention: &Frame<'_>,
    cohorts: &Frame<'_>,
    dist: &BTreeMap<Segment, Distributions>,
    period: &str,
) -> Result<(Vec<Segment>, String), ReportError> {
    let mut rows: BTreeMap<Segment, Rows> = BTreeMap::new();
    let (by, seg) = (retention.str("segment_by")?, retention.str("segment")?);
    let start = retention.date("period_start")?;
    let complete = retention.bool("is_complete")?;
    let (crr, churn) = (retention.float("crr")?, retention.float("churn_rate")?);
    let (new, end, churned) = (
        retention.int("customers_new")?,
        retention.int("customers_end")?,
        retention.int("churned")?,
    );
    for i in 0..retention.rows() {
        let key = Segment {
            by: by.value(i).to_string(),
            value: seg.value(i).to_string(),
        };
        let Some(start) = opt_date(start, i) else {
            continue;
        };
        rows.entry(key).or_default().periods.push(Period {
            start,
            complete: complete.value(i),
            crr: opt_f64(crr, i),
            churn: opt_f64(churn, i),
            new: new.value(i),
            end: end.value(i),
            churned: churned.value(i),
        });
    }
    let (by, seg) = (cohorts.str("segment_by")?, cohorts.str("segment")?);
    let cohort = cohorts.date("cohort")?;
    let offset = cohorts.int("period_offset")?;
    let complete = cohorts.bool("is_complete")?;
    let (size, active) = (
        cohorts.int("cohort_size")?,
        cohorts.int("active_customers")?,
    );
    let (retention_rate, survival) = (
        cohorts.float("retention_rate")?,
        cohorts.float("survival_rate")?,
    );
    let ltv = cohorts.float("ltv_to_date")?;
    for i in 0..cohorts.rows() {
        let key = Segment {
            by: by.value(i).to_string(),
            value: seg.value(i).to_string(),
        };
        let Some(c) = opt_date(cohort, i) else {
            continue;
        };
        rows.entry(key)
            .or_default()
            .cohorts
            .entry(c)
            .or_default()
            .push(CohortCell {
                offset: offset.value(i),
                complete: complete.value(i),
                size: size.value(i),
                active: active.value(i),
                retention: retention_rate.value(i),
                survival: survival.value(i),
                ltv: ltv.value(i),
            });
    }
    let mut order: Vec<Segment> = rows.keys().cloned().collect();
    order.sort_by_key(|s| (s.by != "all", s.clone()));
    let mut html = String::new();
    for s in &order {
        let r = &rows[s];
        let empty = Distributions::default();
        block(&mut html, s, r, dist.get(s).unwrap_or(&empty), period);
    }
    Ok((order, html))
}

fn block(out: &mut String, s: &Segment, r: &Rows, d: &Distributions, period: &str) {
    let _ = write!(
        out,
        "<div class=\"segment\" data-segment-block=\"{}\"{}>",
        esc(&s.key()),
        if s.by == "all" { "" } else { " hidden" }
    );
    let _ = write!(
        out,
        "<h2 id=\"retention-{0}\">Retention and churn per {period} — {1}</h2>",
        esc(&s.key()),
        esc(&s.label())
    );
    retention(out, s, r, period);
    let _ = write!(out, "<h2>Cohorts — {}</h2>", esc(&s.label()));
    cohorts(out, s, r, period);
    let _ = write!(
        out,
        "<h2>Predicted value of the customers — {}</h2>",
        esc(&s.label())
    );
    distributions(out, d);
    out.push_str("</div>");
}

fn retention(out: &mut String, s: &Segment, r: &Rows, period: &str) {
    let labels: Vec<String> = r.periods.iter().map(|p| short(p.start, period)).collect();
    let partial = r.periods.iter().position(|p| !p.complete);
    let axes = Axes {
        title: &format!("CRR and churn rate per {period}, {}", s.label()),
        x_labels: &labels,
        y_label: "% of customers",
        fmt: &|v| f::pct(v),
    };
    let series = [
        Series {
            name: "CRR".into(),
            color: PALETTE[0].into(),
            values: r.periods.iter().map(|p| p.crr).collect(),
            dashed_from: partial,
            points: true,
        },
        Series {
            name: "churn rate".into(),
            color: PALETTE[1].into(),
            values: r.periods.iter().map(|p| p.churn).collect(),
            dashed_from: partial,
            points: true,
        },
    ];
    out.push_str("<div class=\"charts\"><figure>");
    out.push_str(&charts::lines(&axes, &series));
    let _ = write!(
        out,
        "<figcaption><span class=\"key\" style=\"color:{}\">━ CRR</span> <span class=\"key\" style=\"color:{}\">━ churn rate</span>{}</figcaption></figure><figure>",
        PALETTE[0],
        PALETTE[1],
        if partial.is_some() {
            " · dashed, hollow: the period that is not complete yet"
        } else {
            ""
        }
    );
    let new: Vec<f64> = r.periods.iter().map(|p| p.new as f64).collect();
    let axes = Axes {
        title: &format!("New customers per {period}, {}", s.label()),
        x_labels: &labels,
        y_label: "customers",
        fmt: &|v| f::compact(v),
    };
    out.push_str(&charts::bars(&axes, ("new customers", &new), None));
    out.push_str(
        "<figcaption>New customers (first purchase in the period)</figcaption></figure></div>",
    );
    out.push_str("<details><summary>Data</summary><table class=\"data\"><thead><tr><th>Period</th><th>Customers at end</th><th>New</th><th>Churned</th><th>CRR</th><th>Churn rate</th></tr></thead><tbody>");
    for p in &r.periods {
        let _ = write!(
            out,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if p.complete { "" } else { " class=\"partial\"" },
            p.start,
            if p.complete { "" } else { " (not complete)" },
            f::int(p.end),
            f::int(p.new),
            f::int(p.churned),
            f::opt(p.crr, f::pct),
            f::opt(p.churn, f::pct)
        );
    }
    out.push_str("</tbody></table></details>");
}

fn cohorts(out: &mut String, s: &Segment, r: &Rows, period: &str) {
    let all: Vec<(&NaiveDate, &Vec<CohortCell>)> = r.cohorts.iter().collect();
    let shown = &all[all.len().saturating_sub(MAX_COHORTS)..];
    if shown.is_empty() {
        out.push_str("<p>No cohorts.</p>");
        return;
    }
    if shown.len() < all.len() {
        let _ = write!(
            out,
            "<p class=\"note\">The newest {} of {} cohorts.</p>",
            shown.len(),
            all.len()
        );
    }
    let max_offset = shown
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.offset))
        .max()
        .unwrap_or(0);
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"heatmap\" aria-label=\"Retention rate by cohort and {period}s since acquisition, {}\"><caption>Retention rate: share of the cohort purchasing in each {period} after the first (italic: not complete)</caption><thead><tr><th scope=\"col\">Cohort</th><th scope=\"col\">Size</th>",
        esc(&s.label())
    );
    for k in 0..=max_offset {
        let _ = write!(out, "<th scope=\"col\">+{k}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (cohort, cells) in shown {
        let size = cells.first().map(|c| c.size).unwrap_or(0);
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td>",
            short(**cohort, period),
            f::int(size)
        );
        for k in 0..=max_offset {
            match cells.iter().find(|c| c.offset == k) {
                Some(c) => {
                    let t = c.retention / 100.0;
                    let _ = write!(
                        out,
                        "<td class=\"cell{}{}\" style=\"background:{}\" data-segment=\"{}\" data-cohort=\"{cohort}\" data-offset=\"{k}\" data-value=\"{}\" title=\"cohort {cohort}, +{k}: {} ({} of {})\">{}</td>",
                        if c.complete { "" } else { " partial" },
                        if charts::ramp_is_dark(t) { " dark" } else { "" },
                        charts::ramp(t),
                        esc(&s.key()),
                        c.retention,
                        f::pct(c.retention),
                        f::int(c.active),
                        f::int(c.size),
                        f::pct(c.retention)
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    let offsets: Vec<String> = (0..=max_offset).map(|k| format!("+{k}")).collect();
    let n = shown.len();
    let curves = |value: fn(&CohortCell) -> f64| -> Vec<Series> {
        shown
            .iter()
            .enumerate()
            .map(|(i, (cohort, cells))| {
                let mut values = vec![None; offsets.len()];
                let mut dashed = None;
                for c in cells.iter() {
                    values[c.offset as usize] = Some(value(c));
                    if !c.complete {
                        dashed = Some(dashed.unwrap_or(c.offset as usize).min(c.offset as usize));
                    }
                }
                Series {
                    name: cohort.to_string(),
                    // Older cohorts darker.
                    color: charts::ramp(1.0 - i as f64 / n.max(2) as f64 * 0.9),
                    values,
                    dashed_from: dashed,
                    points: false,
                }
            })
            .collect()
    };
    out.push_str("<div class=\"charts\"><figure>");
    let axes = Axes {
        title: &format!("Survival per cohort, {}", s.label()),
        x_labels: &offsets,
        y_label: "% not lapsed yet",
        fmt: &|v| f::pct(v),
    };
    out.push_str(&charts::lines(&axes, &curves(|c| c.survival)));
    let _ = write!(out, "<figcaption>Survival: share of each cohort that has not lapsed yet, by {period}s since acquisition (darker: older cohorts)</figcaption></figure><figure>");
    let axes = Axes {
        title: &format!("LTV to date per cohort, {}", s.label()),
        x_labels: &offsets,
        y_label: "LTV to date per customer",
        fmt: &|v| f::compact(v),
    };
    out.push_str(&charts::lines(&axes, &curves(|c| c.ltv)));
    let _ = write!(out, "<figcaption>LTV to date: cumulative margin per acquired customer, by {period}s since acquisition</figcaption></figure></div>");
}

/// A period's start as people name the period: 2024-03 (month), 2024-Q1, 2024, or the date
/// (week).
fn short(start: NaiveDate, period: &str) -> String {
    use chrono::Datelike;
    match period {
        "month" => start.format("%Y-%m").to_string(),
        "quarter" => format!("{}-Q{}", start.year(), start.month0() / 3 + 1),
        "year" => start.format("%Y").to_string(),
        _ => start.to_string(),
    }
}

/// Counts of `values` in `bins` equal bins over [lo, hi] (values above hi in the last).
fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0.0; bins];
    let width = (hi - lo) / bins as f64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = if width > 0.0 {
            (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1)
        } else {
            0
        };
        counts[i] += 1.0;
    }
    counts
}

fn distributions(out: &mut String, d: &Distributions) {
    if d.p_alive.is_empty() {
        out.push_str("<p>No predictions (predict.enabled = false, or no fit converged for these customers).</p>");
        return;
    }
    out.push_str("<div class=\"charts\"><figure>");
    let labels: Vec<String> = (0..10)
        .map(|i| format!("{:.1}–{:.1}", i as f64 / 10.0, (i + 1) as f64 / 10.0))
        .collect();
    let counts = histogram(&d.p_alive, 0.0, 1.0, 10);
    let axes = Axes {
        title: "Customers by p_alive",
        x_labels: &labels,
        y_label: "customers",
        fmt: &|v| f::compact(v),
    };
    out.push_str(&charts::bars(&axes, ("customers", &counts), None));
    let mean = d.p_alive.iter().sum::<f64>() / d.p_alive.len() as f64;
    let _ = write!(
        out,
        "<figcaption>p_alive: probability that the customer is still a customer ({} customers, mean {})</figcaption></figure><figure>",
        f::int(d.p_alive.len() as i64),
        f::num(mean, 3)
    );
    if d.clv.is_empty() {
        out.push_str("<p>No predicted CLV (the spend model did not converge).</p></figure></div>");
        return;
    }
    let mut sorted = d.clv.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[((sorted.len() - 1) as f64 * 0.99) as usize].max(1e-9);
    let bins = 20;
    let counts = histogram(&d.clv, 0.0, p99, bins);
    let labels: Vec<String> = (0..bins)
        .map(|i| {
            let lo = p99 * i as f64 / bins as f64;
            if i + 1 == bins {
                format!("≥ {}", f::compact(lo))
            } else {
                f::compact(lo)
            }
        })
        .collect();
    let axes = Axes {
        title: "Customers by predicted CLV",
        x_labels: &labels,
        y_label: "customers",
        fmt: &|v| f::compact(v),
    };
    out.push_str(&charts::bars(&axes, ("customers", &counts), None));
    let total: f64 = d.clv.iter().sum();
    let _ = write!(
        out,
        "<figcaption>Predicted CLV over the horizon ({} customers, total {}, median {}; the last bar holds the top 1%)</figcaption></figure></div>",
        f::int(d.clv.len() as i64),
        f::money(total),
        f::money(sorted[sorted.len() / 2])
    );
}

/// The p_alive and predicted_clv values of the customers per segment (all, and each value of
/// each segment column).
pub(crate) fn customer_distributions(
    customers: &Frame<'_>,
    segment_columns: &[String],
) -> Result<BTreeMap<Segment, Distributions>, ReportError> {
    let mut out: BTreeMap<Segment, Distributions> = BTreeMap::new();
    if !customers.has("p_alive") {
        return Ok(out);
    }
    let p_alive = customers.float("p_alive")?;
    let clv = customers.float("predicted_clv")?;
    let columns: Vec<(&String, _)> = segment_columns
        .iter()
        .filter(|c| customers.has(c))
        .map(|c| customers.str(c).map(|a| (c, a)))
        .collect::<Result<_, _>>()?;
    // Keyed by borrowed (segment_by, value) while reading: no allocation per customer.
    let mut by_value: BTreeMap<(&str, &str), Distributions> = BTreeMap::new();
    for i in 0..customers.rows() {
        let (p, v) = (opt_f64(p_alive, i), opt_f64(clv, i));
        if p.is_none() && v.is_none() {
            continue;
        }
        let mut add = |key| {
            let d: &mut Distributions = by_value.entry(key).or_default();
            d.p_alive.extend(p);
            d.clv.extend(v);
        };
        add(("all", "__all__"));
        for (name, a) in &columns {
            add((name.as_str(), opt_str(a, i).unwrap_or("__unknown__")));
        }
    }
    out.extend(by_value.into_iter().map(|((by, value), d)| {
        let key = Segment {
            by: by.to_string(),
            value: value.to_string(),
        };
        (key, d)
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_by_hand() {
        // [0, 1) in 4 bins of 0.25: 0.1 → 0, 0.25 → 1, 0.6 → 2, 1.0 and 7 → the last.
        assert_eq!(
            histogram(&[0.1, 0.25, 0.6, 1.0, 7.0, f64::NAN], 0.0, 1.0, 4),
            [1.0, 1.0, 1.0, 2.0]
        );
    }
}
