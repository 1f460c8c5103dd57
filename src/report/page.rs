//! The report page: header and key figures, the per-segment blocks (`segments`), the ltv
//! table's S, C, P and t per segment, the models and their holdout backtest, and the run's data
//! quality (row accounting, rejects with sample rows, inputs, timings). One self-contained HTML
//! file: inline CSS and SVG, one inline script for the segment select, and a
//! Content-Security-Policy that forbids every network request.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, RecordBatch};

use super::charts::{self, esc, Axes};
use super::format as f;
use super::frame::{opt_date, opt_f64, opt_i64, opt_str, Frame};
use super::load::Published;
use super::segments;
use super::ReportError;
use crate::schema::Table;

/// Sample rows shown per reject reason.
const SAMPLES_PER_REASON: usize = 3;

const STYLE: &str = include_str!("report.css");

const SCRIPT: &str = "document.getElementById('segment').addEventListener('change',function(e){document.querySelectorAll('[data-segment-block]').forEach(function(b){b.hidden=b.getAttribute('data-segment-block')!==e.target.value;});});";

/// The whole page of a published run.
pub(crate) fn render(p: &Published) -> Result<String, ReportError> {
    let m = &p.manifest;
    let settings = &m.settings;
    let period = settings["period"].as_str().unwrap_or("period");
    let segment_columns: Vec<String> = settings["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let table = |t: Table| p.tables.get(&t);
    let need = |t: Table| {
        table(t).ok_or(ReportError::Column {
            table: t.name(),
            column: "(all)".into(),
            message: "is not in the run's manifest".into(),
        })
    };
    let retention = Frame::new("retention", need(Table::Retention)?);
    let cohorts = Frame::new("cohorts", need(Table::Cohorts)?);
    let customers = table(Table::Customers).map(|b| Frame::new("customers", b));
    let dist = match &customers {
        Some(c) => segments::customer_distributions(c, &segment_columns)?,
        None => BTreeMap::new(),
    };
    let (order, blocks) = segments::blocks(&retention, &cohorts, &dist, period)?;

    let mut out = String::with_capacity(blocks.len() + 64 * 1024);
    let title = format!("customer-value report, as of {}", m.as_of);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\"><title>{}</title><style>{STYLE}</style></head><body><header><h1>{}</h1><p class=\"meta\">Run <code>{}</code> · {} · finished {} · period: {period} · churn window {} days · timezone {}</p></header><main>",
        esc(&title),
        esc(&title),
        esc(&m.run_id),
        esc(&format!("{} {}", m.job, m.job_version)),
        esc(&m.finished_at),
        settings["churn_window_days"],
        esc(settings["timezone"].as_str().unwrap_or("UTC"))
    );
    key_figures(&mut out, p, &retention)?;
    out.push_str(
        "<nav class=\"picker\"><label for=\"segment\">Segment </label><select id=\"segment\">",
    );
    for s in &order {
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            esc(&s.key()),
            if s.by == "all" { " selected" } else { "" },
            esc(&s.label())
        );
    }
    out.push_str("</select></nav>");
    out.push_str(&blocks);
    if let Some(ltv) = table(Table::Ltv) {
        ltv_table(&mut out, ltv)?;
    }
    match table(Table::Models) {
        Some(models) => models_section(&mut out, models)?,
        None => out.push_str(
            "<h2>Models</h2><p>Predictions were off for this run (predict.enabled = false).</p>",
        ),
    }
    quality(&mut out, p)?;
    let _ = writeln!(out, "</main><script>{SCRIPT}</script></body></html>");
    Ok(out)
}

fn tile(out: &mut String, label: &str, value: &str, id: &str) {
    let _ = write!(
        out,
        "<div class=\"tile\"><div class=\"value\" id=\"{id}\">{}</div><div class=\"label\">{}</div></div>",
        esc(value),
        esc(label)
    );
}

fn key_figures(out: &mut String, p: &Published, retention: &Frame<'_>) -> Result<(), ReportError> {
    let m = &p.manifest;
    let (by, start) = (
        retention.str("segment_by")?,
        retention.date("period_start")?,
    );
    let end = retention.int("customers_end")?;
    let last = (0..retention.rows())
        .filter(|&i| by.value(i) == "all")
        .max_by_key(|&i| opt_date(start, i));
    out.push_str("<section class=\"tiles\">");
    tile(
        out,
        "customers",
        &f::int(m.customers as i64),
        "kpi-customers",
    );
    if let Some(i) = last {
        tile(out, "active at as_of", &f::int(end.value(i)), "kpi-active");
    }
    tile(out, "orders", &f::int(m.orders as i64), "kpi-orders");
    if let Some(ltv) = p.tables.get(&Table::Ltv) {
        let l = Frame::new("ltv", ltv);
        let (by, cohort) = (l.str("segment_by")?, l.date("cohort")?);
        let (revenue, value) = (l.float("revenue")?, l.float("ltv")?);
        if let Some(i) = (0..l.rows()).find(|&i| by.value(i) == "all" && cohort.is_null(i)) {
            tile(out, "revenue", &f::money(revenue.value(i)), "kpi-revenue");
            tile(
                out,
                "LTV per customer",
                &f::opt(opt_f64(value, i), f::money),
                "kpi-ltv",
            );
        }
    }
    tile(
        out,
        "rows rejected",
        &format!(
            "{} of {}",
            f::int(m.rows_rejected as i64),
            f::int(m.rows_read as i64)
        ),
        "kpi-rejected",
    );
    out.push_str("</section>");
    Ok(())
}

fn ltv_table(out: &mut String, ltv: &RecordBatch) -> Result<(), ReportError> {
    let l = Frame::new("ltv", ltv);
    let (by, seg, cohort) = (l.str("segment_by")?, l.str("segment")?, l.date("cohort")?);
    let customers = l.int("customers")?;
    let cols = [
        l.float("avg_order_value")?,
        l.float("purchases_per_month")?,
        l.float("margin")?,
        l.float("lifespan_months")?,
        l.float("ltv")?,
        l.float("clv")?,
    ];
    let predicted = if l.has("predicted_clv") {
        Some(l.float("predicted_clv")?)
    } else {
        None
    };
    out.push_str("<h2 id=\"ltv\">Lifetime value per segment</h2><p class=\"note\">LTV = S × C × P × t: average check S, purchases per customer-month C, margin P, mean lifespan t in months; CLV = S × C × P per active customer-month.</p><div class=\"scroll\"><table class=\"data\" id=\"ltv-table\"><thead><tr><th>Segment by</th><th>Segment</th><th>Customers</th><th>S</th><th>C</th><th>P</th><th>t</th><th>LTV</th><th>CLV</th><th>Predicted CLV</th></tr></thead><tbody>");
    for i in (0..l.rows()).filter(|&i| cohort.is_null(i)) {
        let v = |k: usize| opt_f64(cols[k], i);
        let _ = write!(
            out,
            "<tr data-segment=\"{}={}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(by.value(i)),
            esc(seg.value(i)),
            esc(by.value(i)),
            esc(seg.value(i)),
            f::int(customers.value(i)),
            f::opt(v(0), f::money),
            f::opt(v(1), |x| f::num(x, 3)),
            f::opt(v(2), |x| f::num(x, 3)),
            f::opt(v(3), |x| f::num(x, 1)),
            v(4).map(|x| x.to_string()).unwrap_or_default(),
            f::opt(v(4), f::money),
            f::opt(v(5), f::money),
            f::opt(predicted.and_then(|a| opt_f64(a, i)), f::money),
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(())
}

fn models_section(out: &mut String, models: &RecordBatch) -> Result<(), ReportError> {
    let m = Frame::new("models", models);
    let (by, seg, model) = (m.str("segment_by")?, m.str("segment")?, m.str("model")?);
    let customers = m.int("customers")?;
    let fitted = m.bool("fitted")?;
    let converged = m.bool("converged")?;
    let ll = m.float("log_likelihood")?;
    let params: Vec<(&str, _)> = ["r", "alpha", "a", "b", "s", "beta", "p", "q", "v"]
        .into_iter()
        .map(|n| m.float(n).map(|a| (n, a)))
        .collect::<Result<_, _>>()?;
    let predicted = m.float("holdout_predicted_purchases")?;
    let actual = m.int("holdout_actual_purchases")?;
    out.push_str("<h2 id=\"models\">Models</h2><div class=\"scroll\"><table class=\"data\"><thead><tr><th>Segment by</th><th>Segment</th><th>Model</th><th>Customers</th><th>Fitted</th><th>Converged</th><th>ln L</th><th>Parameters</th></tr></thead><tbody>");
    let mut backtest: Vec<(String, f64, f64)> = Vec::new();
    for i in 0..m.rows() {
        let ps: Vec<String> = params
            .iter()
            .filter_map(|(n, a)| opt_f64(a, i).map(|v| format!("{n} {}", f::num(v, 4))))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(by.value(i)),
            esc(seg.value(i)),
            esc(model.value(i)),
            f::int(customers.value(i)),
            if fitted.value(i) { "yes" } else { "no: uses all" },
            if converged.is_null(i) { "–" } else if converged.value(i) { "yes" } else { "no" },
            f::opt(opt_f64(ll, i), |x| f::num(x, 1)),
            esc(&ps.join(", "))
        );
        if let (Some(p), Some(a)) = (opt_f64(predicted, i), opt_i64(actual, i)) {
            let label = match (by.value(i), seg.value(i)) {
                ("all", _) => "all".to_string(),
                (by, "__unknown__") => format!("{by}: unknown"),
                (_, value) => value.to_string(),
            };
            backtest.push((label, p, a as f64));
        }
    }
    out.push_str("</tbody></table></div>");
    if backtest.is_empty() {
        out.push_str("<p class=\"note\">No holdout backtest (predict.holdout_days = 0): set it to see how the model's expected purchases compare with what happened.</p>");
        return Ok(());
    }
    let labels: Vec<String> = backtest.iter().map(|b| b.0.clone()).collect();
    let p: Vec<f64> = backtest.iter().map(|b| b.1).collect();
    let a: Vec<f64> = backtest.iter().map(|b| b.2).collect();
    let axes = Axes {
        title: "Holdout backtest: predicted and actual repeat purchases",
        x_labels: &labels,
        y_label: "purchases",
        fmt: &|v| f::compact(v),
    };
    out.push_str("<figure class=\"wide\">");
    out.push_str(&charts::bars(
        &axes,
        ("predicted", &p),
        Some(("actual", &a)),
    ));
    let _ = write!(
        out,
        "<figcaption><span class=\"key\" style=\"color:{}\">■ predicted</span> <span class=\"key\" style=\"color:{}\">■ actual</span> repeat purchases in the holdout days, per fit group</figcaption></figure>",
        charts::PALETTE[0],
        charts::PALETTE[1]
    );
    Ok(())
}

fn quality(out: &mut String, p: &Published) -> Result<(), ReportError> {
    let m = &p.manifest;
    let _ = write!(
        out,
        "<h2 id=\"quality\">Data quality</h2><table class=\"data\" id=\"accounting\"><tbody><tr><th>Rows read</th><td class=\"num\">{}</td></tr><tr><th>used</th><td class=\"num\">{}</td></tr><tr><th>rejected</th><td class=\"num\">{} ({})</td></tr><tr><th>after as_of</th><td class=\"num\">{}</td></tr><tr><th>newest transaction</th><td>{}</td></tr></tbody></table>",
        f::int(m.rows_read as i64),
        f::int(m.rows_used as i64),
        f::int(m.rows_rejected as i64),
        f::pct(m.reject_ratio * 100.0),
        f::int(m.rows_after_as_of as i64),
        esc(m.newest_transaction_at.as_deref().unwrap_or("–"))
    );
    for w in &m.warnings {
        let _ = write!(out, "<p class=\"warning\">Warning: {}</p>", esc(w));
    }
    if m.rejects_by_reason.is_empty() {
        out.push_str("<p>No rejected rows.</p>");
    } else {
        let samples = reject_samples(p.tables.get(&Table::Rejects))?;
        out.push_str("<h3>Rejected rows by reason</h3><table class=\"data\" id=\"rejects\"><thead><tr><th>Reason</th><th>Rows</th><th>Examples (file:row customer_id · ts · amount)</th></tr></thead><tbody>");
        for (reason, n) in &m.rejects_by_reason {
            let examples = samples
                .get(reason.as_str())
                .map(|v| v.join("<br>"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"sample\">{examples}</td></tr>",
                esc(reason),
                f::int(*n as i64)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h3>Inputs</h3><table class=\"data\"><thead><tr><th>Input</th><th>Format</th><th>Size</th><th>Rows read</th><th>Used</th><th>Rejected</th></tr></thead><tbody>");
    for i in &m.inputs {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{} bytes</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&crate::storage::redact(&i.url)),
            esc(&i.format),
            f::int(i.size as i64),
            f::int(i.rows_read as i64),
            f::int(i.rows_used as i64),
            f::int(i.rows_rejected as i64)
        );
    }
    out.push_str("</tbody></table><h3>Run</h3><table class=\"data\"><tbody>");
    let _ = write!(
        out,
        "<tr><th>run id</th><td><code>{}</code></td></tr><tr><th>started</th><td>{}</td></tr><tr><th>finished</th><td>{}</td></tr><tr><th>config hash</th><td><code>{}</code></td></tr>",
        esc(&m.run_id),
        esc(&m.started_at),
        esc(&m.finished_at),
        esc(&m.config_hash)
    );
    for (stage, ms) in &m.timings_ms {
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"num\">{} ms</td></tr>",
            esc(stage),
            f::int(*ms as i64)
        );
    }
    out.push_str("</tbody></table>");
    Ok(())
}

/// A few rejected rows per reason, escaped and ready to show.
fn reject_samples(
    rejects: Option<&RecordBatch>,
) -> Result<BTreeMap<String, Vec<String>>, ReportError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Some(batch) = rejects else {
        return Ok(out);
    };
    let r = Frame::new("rejects", batch);
    let (file, row, reason) = (
        r.str("source_file")?,
        r.int("source_row")?,
        r.str("reason")?,
    );
    let raw = [r.str("customer_id")?, r.str("ts")?, r.str("amount")?];
    for i in 0..r.rows() {
        let list = out.entry(reason.value(i).to_string()).or_default();
        if list.len() >= SAMPLES_PER_REASON {
            continue;
        }
        let values: Vec<String> = raw
            .iter()
            .map(|a| {
                opt_str(a, i)
                    .map(|v| format!("“{}”", esc(v)))
                    .unwrap_or_else(|| "null".into())
            })
            .collect();
        list.push(format!(
            "{}:{} {}",
            esc(&crate::storage::redact(file.value(i))),
            f::int(row.value(i)),
            values.join(" · ")
        ));
    }
    Ok(out)
}
