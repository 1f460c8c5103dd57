//! `generate`: deterministic synthetic transaction exports (same seed → same bytes) for the
//! bundled sample, tests and benchmarks. Customers are drawn from the generative process of the
//! BG/NBD and Gamma-Gamma models with the true parameters given as flags (`process`), acquired
//! over the span (more of them later), each with a home channel whose parameters differ, and
//! their orders are written as lines: some orders have several lines, some have a line (or
//! all of them) returned days later under the same order_id (a refund).

mod process;
mod sink;

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) use process::Truth;
use process::{acquisition_weeks, channel_truth, solve_alpha, Customer, WEEK_US};
use sink::Sink;

/// Errors of `generate`, naming the output path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GenerateError {
    #[error("generate: {path}: {message}")]
    Write { path: String, message: String },
    #[error("generate: {0}")]
    Options(String),
}

/// Output format of `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GenFormat {
    Csv,
    Parquet,
}

/// What to generate.
#[derive(Debug, Clone)]
pub(crate) struct GenerateOptions {
    pub output: PathBuf,
    pub format: GenFormat,
    pub customers: u64,
    /// Approximate number of lines (rows) in total: solves α when `truth.alpha` is `None`.
    pub rows: u64,
    pub seed: u64,
    pub start: NaiveDate,
    pub months: u32,
    /// Segment columns to emit (any of `channel`, `region`, `plan`).
    pub segments: Vec<String>,
    /// Share of orders with a later refund line.
    pub refund_rate: f64,
    /// Share of orders with more than one line.
    pub multi_line_rate: f64,
    /// Emit a cost column.
    pub cost: bool,
    /// True parameters of the `web` channel (weeks); its α is replaced by `alpha`.
    pub truth: Truth,
    /// α of the `web` channel; `None`: solved so the file has about `rows` lines.
    pub alpha: Option<f64>,
    /// Every channel shares `truth` instead of differing from it.
    pub same_params: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub(crate) struct GenerateReport {
    pub rows: u64,
    pub orders: u64,
    pub customers: u64,
    pub bytes: u64,
    /// The true parameters of every channel that was drawn (name, parameters).
    pub truths: Vec<(&'static str, Truth)>,
}

/// The flags' defaults: a moderately heterogeneous base (BG/NBD r 1.5, dropout a 1.2, b 6: one
/// purchase in six is a customer's last on average) and the papers' CDNOW Gamma-Gamma estimates
/// (p, q, v in dollars). α is solved from the row count unless given. (CDNOW's r 0.243 would make
/// the row counts of the benchmarks come from a few customers buying several times a day.)
pub(crate) const DEFAULT_TRUTH: Truth = Truth {
    r: 1.5,
    alpha: 8.0,
    a: 1.2,
    b: 6.0,
    p: 6.25,
    q: 3.74,
    v: 15.44,
};

pub(crate) const CHANNELS: [&str; 4] = ["web", "app", "store", "partner"];
const REGIONS: [&str; 4] = ["eu", "na", "apac", "latam"];
const PLANS: [&str; 3] = ["basic", "plus", "pro"];

/// One generated line.
struct Line {
    customer: u64,
    order: u64,
    ts_us: i64,
    amount_cents: i64,
    cost_cents: i64,
    segs: [Option<&'static str>; 3],
}

fn werr(path: &Path, e: impl std::fmt::Display) -> GenerateError {
    GenerateError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Checks the flags and returns the end of the span.
fn check(opts: &GenerateOptions) -> Result<NaiveDate, GenerateError> {
    if opts.customers == 0 || opts.months == 0 {
        return Err(GenerateError::Options(
            "--customers and --months must be at least 1".into(),
        ));
    }
    if opts.months > MAX_MONTHS {
        return Err(GenerateError::Options(format!(
            "--months {} is out of range (1–{MAX_MONTHS})",
            opts.months
        )));
    }
    let end_date = opts
        .start
        .checked_add_months(chrono::Months::new(opts.months))
        .filter(|d| d.year() <= crate::config::LAST_YEAR)
        .ok_or_else(|| {
            GenerateError::Options(format!(
                "--start {} plus --months {} ends after {}-12-31",
                opts.start,
                opts.months,
                crate::config::LAST_YEAR
            ))
        })?;
    for (flag, rate) in [
        ("--refunds", opts.refund_rate),
        ("--multi-line", opts.multi_line_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(GenerateError::Options(format!(
                "{flag} {rate} is out of range (0–1)"
            )));
        }
    }
    let t = &opts.truth;
    for (flag, v) in [
        ("--r", t.r),
        ("--a", t.a),
        ("--b", t.b),
        ("--p", t.p),
        ("--q", t.q),
        ("--v", t.v),
        ("--alpha", opts.alpha.unwrap_or(1.0)),
    ] {
        if !(v.is_finite() && v > 0.0 && v < 1e6) {
            return Err(GenerateError::Options(format!(
                "{flag} {v} is out of range (greater than 0, below 1e6)"
            )));
        }
    }
    if t.q <= 1.0 {
        return Err(GenerateError::Options(format!(
            "--q {} is out of range (greater than 1: the mean order value p·v/(q−1) is infinite otherwise)",
            t.q
        )));
    }
    for s in &opts.segments {
        if !["channel", "region", "plan"].contains(&s.as_str()) {
            return Err(GenerateError::Options(format!(
                "unknown segment '{s}' (choose from channel, region, plan)"
            )));
        }
    }
    Ok(end_date)
}

/// Expected lines per order: multi-line orders have 2–4 lines (2 more than one on average),
/// refunds add about 1.2 lines (whole orders are refunded 30% of the time).
fn lines_per_order(opts: &GenerateOptions) -> f64 {
    1.0 + opts.multi_line_rate * 2.0 + opts.refund_rate * 1.2
}

/// Generates the file; the same options always give the same content.
pub(crate) fn generate(opts: &GenerateOptions) -> Result<GenerateReport, GenerateError> {
    let end_date = check(opts)?;
    if let Some(parent) = opts.output.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
    }
    let start_us = (opts.start - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
        * 86_400_000_000;
    let span_us = (end_date - opts.start).num_days() * 86_400_000_000;
    let span_weeks = span_us as f64 / WEEK_US;
    let alpha = opts.alpha.unwrap_or_else(|| {
        // Orders per customer the row count asks for, less the first (at least a few repeats
        // in 20 customers, so α stays finite).
        let per_customer = opts.rows as f64 / opts.customers as f64 / lines_per_order(opts);
        solve_alpha(
            opts.truth,
            opts.same_params,
            span_weeks,
            (per_customer - 1.0).max(0.05),
        )
    });
    let base = Truth {
        alpha,
        ..opts.truth
    };
    let truths: Vec<Truth> = (0..CHANNELS.len())
        .map(|c| channel_truth(base, c, opts.same_params))
        .collect();
    let mut sink = Sink::open(opts)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut report = GenerateReport {
        rows: 0,
        orders: 0,
        customers: opts.customers,
        bytes: 0,
        truths: Vec::new(),
    };
    let mut order_seq = 0u64;
    let mut buf: Vec<Line> = Vec::new();
    let mut used = [false; 4];
    for customer in 0..opts.customers {
        let acquired_weeks = acquisition_weeks(rng.random(), span_weeks);
        let home = rng.random_range(0..CHANNELS.len());
        used[home] = true;
        let region = REGIONS[rng.random_range(0..REGIONS.len())];
        let plan = PLANS[rng.random_range(0..PLANS.len())];
        let drawn = Customer::draw(&truths[home], span_weeks - acquired_weeks, &mut rng);
        let acquired_us = start_us + (acquired_weeks * WEEK_US) as i64;
        for (i, &weeks) in drawn.purchases.iter().enumerate() {
            // Whole seconds, so CSV text and Parquet timestamps carry the same instants; never
            // past the span.
            let t = (acquired_us + (weeks * WEEK_US) as i64).min(start_us + span_us - 1_000_000);
            let t = t - t.rem_euclid(1_000_000);
            // The first order is in the home channel, so the acquisition channel is the
            // parameters' channel; later ones mostly.
            let channel = if i == 0 || rng.random::<f64>() < 0.8 {
                CHANNELS[home]
            } else {
                CHANNELS[rng.random_range(0..CHANNELS.len())]
            };
            let null_segment = rng.random::<f64>() < 0.005;
            let mut segs = [None; 3];
            for (k, s) in opts.segments.iter().enumerate().take(3) {
                segs[k] = (!null_segment).then_some(match s.as_str() {
                    "channel" => channel,
                    "region" => region,
                    _ => plan,
                });
            }
            order_seq += 1;
            report.orders += 1;
            let order = Order {
                customer,
                id: order_seq,
                ts_us: t,
                cents: drawn.order_cents(&mut rng),
                segs,
            };
            order.write(opts, &mut rng, &mut buf);
        }
        if buf.len() >= 1 << 16 {
            report.rows += buf.len() as u64;
            sink.write(&buf, opts)?;
            buf.clear();
        }
    }
    report.rows += buf.len() as u64;
    sink.write(&buf, opts)?;
    report.bytes = sink.finish()?;
    report.truths = (0..CHANNELS.len())
        .filter(|&c| used[c] && (c == 0 || !opts.same_params))
        .map(|c| (CHANNELS[c], truths[c]))
        .collect();
    Ok(report)
}

/// One order before it is split into lines.
struct Order {
    customer: u64,
    id: u64,
    ts_us: i64,
    cents: i64,
    segs: [Option<&'static str>; 3],
}

impl Order {
    /// Its lines (the value split at random, a few seconds apart on one day) and maybe a
    /// refund of one line or of all of them 1–20 days later.
    fn write(&self, opts: &GenerateOptions, rng: &mut impl Rng, buf: &mut Vec<Line>) {
        let n_lines = if rng.random::<f64>() < opts.multi_line_rate {
            rng.random_range(2..=4_i64).min(self.cents)
        } else {
            1
        };
        let weights: Vec<f64> = (0..n_lines)
            .map(|_| 0.3 + rng.random::<f64>() * 1.4)
            .collect();
        let total: f64 = weights.iter().sum();
        let mut left = self.cents;
        let mut lines = Vec::with_capacity(n_lines as usize);
        for (l, w) in weights.iter().enumerate() {
            let rest = n_lines - 1 - l as i64;
            let cents = if rest == 0 {
                left
            } else {
                ((self.cents as f64 * w / total) as i64).clamp(1, left - rest)
            };
            left -= cents;
            let cost = (cents as f64 * (0.4 + rng.random::<f64>() * 0.3)).round() as i64;
            lines.push((self.ts_us + l as i64 * 1_000_000, cents, cost));
        }
        for &(ts, cents, cost) in &lines {
            buf.push(self.line(ts, cents, cost));
        }
        if rng.random::<f64>() < opts.refund_rate {
            let full = rng.random::<f64>() < 0.3;
            let delay = rng.random_range(1..=20_i64) * 86_400_000_000;
            let refunded = if full { &lines[..] } else { &lines[..1] };
            for &(_, cents, cost) in refunded {
                buf.push(self.line(self.ts_us + delay, -cents, -cost));
            }
        }
    }

    fn line(&self, ts_us: i64, amount_cents: i64, cost_cents: i64) -> Line {
        Line {
            customer: self.customer,
            order: self.id,
            ts_us,
            amount_cents,
            cost_cents,
            segs: self.segs,
        }
    }
}

/// Longest span `generate` writes: a century of months.
const MAX_MONTHS: u32 = 1200;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> GenerateOptions {
        GenerateOptions {
            output: dir.join("t.csv"),
            format: GenFormat::Csv,
            customers: 50,
            rows: 500,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap(),
            months: 12,
            segments: vec!["channel".into()],
            refund_rate: 0.1,
            multi_line_rate: 0.3,
            cost: true,
            truth: DEFAULT_TRUTH,
            alpha: None,
            same_params: false,
        }
    }

    /// Line count and per-channel behaviour of 20,000 customers over 24 months.
    #[test]
    fn rows_follow_the_target_and_channels_their_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let o = GenerateOptions {
            customers: 20_000,
            rows: 150_000,
            months: 24,
            ..opts(dir.path())
        };
        let report = generate(&o).unwrap();
        // α is solved for the expected line count; the draw lands within a few percent.
        let ratio = report.rows as f64 / 150_000.0;
        assert!((0.9..1.1).contains(&ratio), "{} rows", report.rows);
        assert_eq!(report.truths.len(), 4);
        let (web, app, store, partner) = (
            report.truths[0].1,
            report.truths[1].1,
            report.truths[2].1,
            report.truths[3].1,
        );
        assert_eq!(report.truths[1].0, "app");
        assert!((app.alpha / web.alpha - 0.6).abs() < 1e-12);
        assert!((store.b / web.b - 0.5).abs() < 1e-12);
        assert!((partner.v / web.v - 1.5).abs() < 1e-12);
        // Orders per customer by home (first order's) channel: app customers buy more often
        // than web ones, store ones drop out sooner; partner orders are worth more.
        let text = std::fs::read_to_string(&o.output).unwrap();
        let mut home: std::collections::HashMap<&str, &str> = Default::default();
        let mut orders: std::collections::HashMap<&str, (f64, f64, f64)> = Default::default();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (customer, order, amount, channel) = (f[0], f[1], f[3], f[5]);
            if channel.is_empty() {
                continue;
            }
            let h = *home.entry(customer).or_insert(channel);
            let e = orders.entry(h).or_default();
            let cents: f64 = amount.parse().unwrap();
            if cents > 0.0 {
                e.2 += cents;
            }
            if seen.insert(order) {
                e.0 += 1.0;
            }
        }
        let mut customers: std::collections::HashMap<&str, f64> = Default::default();
        for h in home.values() {
            *customers.entry(h).or_default() += 1.0;
        }
        let per = |c: &str| orders[c].0 / customers[c];
        let value = |c: &str| orders[c].2 / orders[c].0;
        assert!(
            per("app") > 1.2 * per("web"),
            "{} {}",
            per("app"),
            per("web")
        );
        assert!(per("store") < per("web"), "{} {}", per("store"), per("web"));
        assert!(value("partner") > 1.3 * value("web"));
    }

    #[test]
    fn bad_parameters_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |t: Truth, alpha: Option<f64>| {
            generate(&GenerateOptions {
                truth: t,
                alpha,
                ..opts(dir.path())
            })
            .unwrap_err()
            .to_string()
        };
        let e = bad(
            Truth {
                q: 1.0,
                ..DEFAULT_TRUTH
            },
            None,
        );
        assert!(e.contains("--q 1 is out of range"), "{e}");
        let e = bad(
            Truth {
                r: -1.0,
                ..DEFAULT_TRUTH
            },
            None,
        );
        assert!(e.contains("--r -1 is out of range"), "{e}");
        let e = bad(DEFAULT_TRUTH, Some(f64::NAN));
        assert!(e.contains("--alpha NaN"), "{e}");
    }

    #[test]
    fn same_seed_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        generate(&o).unwrap();
        let a = std::fs::read(&o.output).unwrap();
        generate(&o).unwrap();
        assert_eq!(a, std::fs::read(&o.output).unwrap());
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with("customer_id,order_id,ts,amount,cost,channel\n"));
        assert!(text.contains(",-"), "has refunds");
    }
}
