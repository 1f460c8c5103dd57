//! `generate`: deterministic synthetic transaction exports (same seed → same bytes) for the
//! bundled sample, tests and benchmarks. Customers are acquired over the months, buy at their
//! own rate through one or more channels, stop at some point (churn), place multi-line orders
//! and sometimes return a line later under the same order_id (a refund).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    /// Approximate number of lines (rows) in total.
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
}

/// What was written.
#[derive(Debug, Clone)]
pub(crate) struct GenerateReport {
    pub rows: u64,
    pub orders: u64,
    pub customers: u64,
    pub bytes: u64,
}

const CHANNELS: [&str; 4] = ["web", "app", "store", "partner"];
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

/// Generates the file; the same options always give the same content.
pub(crate) fn generate(opts: &GenerateOptions) -> Result<GenerateReport, GenerateError> {
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
    for s in &opts.segments {
        if !["channel", "region", "plan"].contains(&s.as_str()) {
            return Err(GenerateError::Options(format!(
                "unknown segment '{s}' (choose from channel, region, plan)"
            )));
        }
    }
    if let Some(parent) = opts.output.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
    }
    let mut sink = Sink::open(opts)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let start_us = (opts.start - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
        * 86_400_000_000;
    let span_us = (end_date - opts.start).num_days() * 86_400_000_000;
    // Expected lines per order: multi-line orders have 2–4 lines (one more than 1 on average
    // is 2), refunds add about 1.2 lines (whole orders are refunded 30% of the time).
    let lines_per_order = 1.0 + opts.multi_line_rate * 2.0 + opts.refund_rate * 1.2;
    // ceil() of an exponential draw adds about 0.5 to its mean.
    let mean_orders = (opts.rows as f64 / opts.customers as f64 / lines_per_order - 0.5).max(0.5);
    let mut order_seq = 0u64;
    let mut report = GenerateReport {
        rows: 0,
        orders: 0,
        customers: opts.customers,
        bytes: 0,
    };
    let mut buf: Vec<Line> = Vec::new();
    for customer in 0..opts.customers {
        // Acquisition spread over the span, with more customers later (growth).
        let acquired = start_us + ((rng.random::<f64>().sqrt()) * span_us as f64) as i64;
        // Personal purchase count (≥ 1), heavy-tailed around the mean.
        let u: f64 = rng.random::<f64>().max(1e-9);
        let n_orders = ((-u.ln()) * mean_orders).ceil().max(1.0) as u64;
        // Personal gap between orders: spread over a personal active life.
        // Personal active life, cut at the end of the span so every drawn order is written
        // (keeps the row count close to --rows); customers whose life ends early churn.
        let remaining = start_us + span_us - acquired;
        let life_us = (((rng.random::<f64>() * 1.2) * span_us as f64) as i64).min(remaining);
        let gap = (life_us / n_orders as i64).max(1_000_000);
        let home_channel = rng.random_range(0..CHANNELS.len());
        let region = REGIONS[rng.random_range(0..REGIONS.len())];
        let plan = PLANS[rng.random_range(0..PLANS.len())];
        let basket = 10.0 + rng.random::<f64>() * 90.0;
        // Whole seconds, so CSV text and Parquet timestamps carry the same instants.
        let mut t = acquired - acquired.rem_euclid(1_000_000);
        for _ in 0..n_orders {
            order_seq += 1;
            report.orders += 1;
            let channel = if rng.random::<f64>() < 0.8 {
                CHANNELS[home_channel]
            } else {
                CHANNELS[rng.random_range(0..CHANNELS.len())]
            };
            let seg_value = |name: &str, null: bool| -> Option<&'static str> {
                if null {
                    return None;
                }
                Some(match name {
                    "channel" => channel,
                    "region" => region,
                    _ => plan,
                })
            };
            let null_segment = rng.random::<f64>() < 0.005;
            let mut segs = [None; 3];
            for (i, s) in opts.segments.iter().enumerate().take(3) {
                segs[i] = seg_value(s, null_segment);
            }
            let n_lines = if rng.random::<f64>() < opts.multi_line_rate {
                rng.random_range(2..=4)
            } else {
                1
            };
            let mut order_lines = Vec::with_capacity(n_lines);
            for l in 0..n_lines {
                let cents = ((basket * (0.3 + rng.random::<f64>() * 1.4)) * 100.0).round() as i64;
                let cents = cents.max(50);
                let cost = (cents as f64 * (0.4 + rng.random::<f64>() * 0.3)).round() as i64;
                // Lines of one order share a day, a few seconds apart.
                order_lines.push((t + l as i64 * 1_000_000, cents, cost));
            }
            for &(ts, cents, cost) in &order_lines {
                buf.push(Line {
                    customer,
                    order: order_seq,
                    ts_us: ts,
                    amount_cents: cents,
                    cost_cents: cost,
                    segs,
                });
            }
            if rng.random::<f64>() < opts.refund_rate {
                // Return one line (sometimes the whole order) a few days later.
                let full = rng.random::<f64>() < 0.3;
                let delay = rng.random_range(1..=20) as i64 * 86_400_000_000;
                let refunded: Vec<(i64, i64)> = if full {
                    order_lines.iter().map(|l| (l.1, l.2)).collect()
                } else {
                    vec![(order_lines[0].1, order_lines[0].2)]
                };
                for (cents, cost) in refunded {
                    buf.push(Line {
                        customer,
                        order: order_seq,
                        ts_us: t + delay,
                        amount_cents: -cents,
                        cost_cents: -cost,
                        segs,
                    });
                }
            }
            let jitter = 0.5 + rng.random::<f64>();
            t = (t + (gap as f64 * jitter) as i64).min(start_us + span_us - 1_000_000);
            t -= t.rem_euclid(1_000_000);
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
    Ok(report)
}

/// Longest span `generate` writes: a century of months.
const MAX_MONTHS: u32 = 1200;

enum Sink {
    Csv {
        path: PathBuf,
        out: Box<dyn Write>,
    },
    Parquet {
        path: PathBuf,
        writer: Box<parquet::arrow::ArrowWriter<File>>,
        schema: Arc<Schema>,
    },
}

impl Sink {
    fn open(opts: &GenerateOptions) -> Result<Sink, GenerateError> {
        let path = opts.output.clone();
        let file = File::create(&path).map_err(|e| werr(&path, e))?;
        match opts.format {
            GenFormat::Csv => {
                let name = path.to_string_lossy().to_ascii_lowercase();
                let mut out: Box<dyn Write> = if name.ends_with(".gz") {
                    Box::new(flate2::write::GzEncoder::new(
                        BufWriter::new(file),
                        flate2::Compression::new(6),
                    ))
                } else if name.ends_with(".zst") {
                    Box::new(
                        zstd::Encoder::new(BufWriter::new(file), 3)
                            .map_err(|e| werr(&path, e))?
                            .auto_finish(),
                    )
                } else {
                    Box::new(BufWriter::with_capacity(1 << 20, file))
                };
                let mut header = String::from("customer_id,order_id,ts,amount");
                if opts.cost {
                    header.push_str(",cost");
                }
                for s in &opts.segments {
                    header.push(',');
                    header.push_str(s);
                }
                writeln!(out, "{header}").map_err(|e| werr(&path, e))?;
                Ok(Sink::Csv { path, out })
            }
            GenFormat::Parquet => {
                let mut fields = vec![
                    Field::new("customer_id", DataType::Utf8, false),
                    Field::new("order_id", DataType::Utf8, false),
                    Field::new(
                        "ts",
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        false,
                    ),
                    Field::new("amount", DataType::Float64, false),
                ];
                if opts.cost {
                    fields.push(Field::new("cost", DataType::Float64, false));
                }
                for s in &opts.segments {
                    fields.push(Field::new(s.as_str(), DataType::Utf8, true));
                }
                let schema = Arc::new(Schema::new(fields));
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build();
                let writer =
                    parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                        .map_err(|e| werr(&path, e))?;
                Ok(Sink::Parquet {
                    path,
                    writer: Box::new(writer),
                    schema,
                })
            }
        }
    }

    fn write(&mut self, lines: &[Line], opts: &GenerateOptions) -> Result<(), GenerateError> {
        match self {
            Sink::Csv { path, out } => {
                let mut s = String::with_capacity(lines.len() * 80);
                for l in lines {
                    use std::fmt::Write as _;
                    let ts = chrono::DateTime::from_timestamp_micros(l.ts_us)
                        .unwrap_or_default()
                        .format("%Y-%m-%dT%H:%M:%SZ");
                    let _ = write!(
                        s,
                        "C{:07},O{:09},{},{}",
                        l.customer,
                        l.order,
                        ts,
                        cents(l.amount_cents)
                    );
                    if opts.cost {
                        let _ = write!(s, ",{}", cents(l.cost_cents));
                    }
                    for i in 0..opts.segments.len().min(3) {
                        s.push(',');
                        if let Some(v) = l.segs[i] {
                            s.push_str(v);
                        }
                    }
                    s.push('\n');
                }
                out.write_all(s.as_bytes()).map_err(|e| werr(path, e))
            }
            Sink::Parquet {
                path,
                writer,
                schema,
            } => {
                if lines.is_empty() {
                    return Ok(());
                }
                let mut cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(
                        lines.iter().map(|l| format!("C{:07}", l.customer)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        lines.iter().map(|l| format!("O{:09}", l.order)),
                    )),
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(lines.iter().map(|l| l.ts_us))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(Float64Array::from_iter_values(
                        lines.iter().map(|l| l.amount_cents as f64 / 100.0),
                    )),
                ];
                if opts.cost {
                    cols.push(Arc::new(Float64Array::from_iter_values(
                        lines.iter().map(|l| l.cost_cents as f64 / 100.0),
                    )));
                }
                for i in 0..opts.segments.len().min(3) {
                    cols.push(Arc::new(StringArray::from(
                        lines.iter().map(|l| l.segs[i]).collect::<Vec<_>>(),
                    )));
                }
                let batch =
                    RecordBatch::try_new(schema.clone(), cols).map_err(|e| werr(path, e))?;
                writer.write(&batch).map_err(|e| werr(path, e))
            }
        }
    }

    fn finish(self) -> Result<u64, GenerateError> {
        let path = match self {
            Sink::Csv { path, mut out } => {
                out.flush().map_err(|e| werr(&path, e))?;
                drop(out);
                path
            }
            Sink::Parquet { path, writer, .. } => {
                writer.close().map_err(|e| werr(&path, e))?;
                path
            }
        };
        Ok(std::fs::metadata(&path).map_err(|e| werr(&path, e))?.len())
    }
}

/// Minor units → decimal text with two places.
fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", v.abs() / 100, v.abs() % 100)
}

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
        }
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

    #[test]
    fn cents_format() {
        assert_eq!(cents(1234), "12.34");
        assert_eq!(cents(-5), "-0.05");
        assert_eq!(cents(0), "0.00");
    }
}
