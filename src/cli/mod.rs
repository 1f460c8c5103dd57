//! Command-line interface (SPEC §5): subcommands, flags with `CUSTOMER_VALUE_*` environment
//! twins, logging setup, and the mapping of errors to exit codes.

mod args;

use chrono::NaiveDate;

use crate::config::{self, ConfigError, Validated};
use crate::generate::{self, GenFormat, GenerateOptions, Truth, DEFAULT_TRUTH};
use crate::job;
use crate::time::Period;
use crate::{export, report, schema, Result};

pub(crate) use args::*;

/// Longest error line printed: a reader's message can quote whole rows (an unclosed CSV quote
/// once printed megabytes).
const MAX_ERROR_CHARS: usize = 480;

/// The one stderr line of an error: whitespace folded, URLs redacted, at most
/// `MAX_ERROR_CHARS` characters.
pub(crate) fn error_line(message: &str) -> String {
    let line =
        crate::storage::redact_text(&message.split_whitespace().collect::<Vec<_>>().join(" "));
    match line.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{} … (cut)", &line[..i]),
        None => line,
    }
}

/// Log output on stderr, with every URL in a line redacted: dependencies (HTTP clients, the
/// object store) log request URLs at debug level, user info included.
struct RedactedStderr;

/// One log event, written to stderr redacted when dropped (the formatter writes an event and
/// then drops its writer).
struct RedactedLine(Vec<u8>);

impl std::io::Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            crate::storage::redact_text(&text).as_bytes(),
        );
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;
    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine(Vec::with_capacity(256))
    }
}

/// Sets up logging on stderr.
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTOMER_VALUE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a scheduler's log file (Airflow, cron mail) would otherwise
    // hold the escape codes around every field.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactedStderr)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

fn print_summary(summary: &job::RunSummary) {
    let m = &summary.manifest;
    println!(
        "as_of {}: {} rows read, {} used, {} rejected, {} after as_of; {} customers; manifest {}",
        m.as_of,
        m.rows_read,
        m.rows_used,
        m.rows_rejected,
        m.rows_after_as_of,
        m.customers,
        summary.manifest_path
    );
    for (name, t) in &m.tables {
        println!("  {name}: {} rows", t.rows);
    }
}

/// Loads the config and parses `--as-of`; the problems of both are reported together, before
/// any I/O.
fn load_with_as_of(
    args: &ConfigArgs,
    as_of: Option<&str>,
) -> Result<(Validated, Option<NaiveDate>)> {
    let as_of: std::result::Result<Option<NaiveDate>, ConfigError> =
        as_of.map(config::parse_as_of).transpose();
    match (args.load(), as_of) {
        (Ok(c), Ok(a)) => Ok((c, a)),
        (Err(ConfigError::Invalid(mut p)), Err(ConfigError::Invalid(q))) => {
            p.extend(q);
            Err(ConfigError::Invalid(p).into())
        }
        (Err(e), _) | (_, Err(e)) => Err(e.into()),
    }
}

/// The binary's whole life after the allocator: parse flags, set threads and logging, install
/// the signal handler, run, print one error line to stderr and return the documented exit code
/// (0 ok, 1 run failed and a retry may help, 2 usage or config error, 3 the data failed its
/// checks).
pub fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    if let Some(n) = cli.threads.filter(|&n| n > 0) {
        // Both pools read these before their first use.
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    init_logging(cli.log_format);
    crate::signals::install();
    match execute(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&format!("{e:#}")));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// Executes the parsed command.
fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            let (cfg, as_of) = load_with_as_of(&args.config, args.as_of.as_deref())?;
            let summary = job::run(&cfg, &args.publish.options(as_of))?;
            print_summary(&summary);
            Ok(())
        }
        Command::Backfill(args) => {
            let dates = config::parse_date;
            let (cfg, from, to) = match (
                args.config.load(),
                dates("--from", &args.from),
                dates("--to", &args.to),
            ) {
                (Ok(c), Ok(f), Ok(t)) => (c, f, t),
                (c, f, t) => {
                    let mut problems = Vec::new();
                    for e in [c.err(), f.err(), t.err()].into_iter().flatten() {
                        match e {
                            ConfigError::Invalid(p) => problems.extend(p),
                            other => return Err(other.into()),
                        }
                    }
                    return Err(ConfigError::Invalid(problems).into());
                }
            };
            if from > to {
                return Err(ConfigError::Invalid(vec![format!(
                    "--from {from} is after --to {to}"
                )])
                .into());
            }
            let every = match args.every {
                Some(Every::Day) => None,
                Some(Every::Week) => Some(Period::Week),
                Some(Every::Month) => Some(Period::Month),
                Some(Every::Quarter) => Some(Period::Quarter),
                Some(Every::Year) => Some(Period::Year),
                None => Some(cfg.config.metrics.period),
            };
            let dates = job::backfill_dates(from, to, every);
            let summaries = job::backfill(&cfg, &dates, &args.publish.options(None))?;
            for s in &summaries {
                print_summary(s);
            }
            Ok(())
        }
        Command::Validate(args) => {
            let (cfg, as_of) = load_with_as_of(&args.config, args.as_of.as_deref())?;
            let v = job::validate(&cfg, as_of)?;
            for f in &v.inputs {
                println!(
                    "ok {} ({}, {} bytes): {} rows, {} used, {} rejected, {} after as_of{}",
                    f.url,
                    f.format,
                    f.size,
                    f.rows_read,
                    f.rows_used,
                    f.rows_rejected,
                    f.rows_after_as_of,
                    if f.blank_lines > 0 {
                        format!(", {} blank lines skipped", f.blank_lines)
                    } else {
                        String::new()
                    }
                );
            }
            for (reason, n) in &v.rejects_by_reason {
                println!("  rejected ×{n}: {reason}");
            }
            for w in &v.warnings {
                println!("  warning: {w}");
            }
            println!(
                "config {} is valid; as of {}: {} rows read, {} used, {} rejected, {} after as_of; the run would pass the data checks",
                args.config.config.display(),
                v.as_of,
                v.rows_read,
                v.rows_used,
                v.rows_rejected,
                v.rows_after_as_of
            );
            Ok(())
        }
        Command::Schema(args) => {
            match args.format {
                SchemaFormat::Markdown => print!("{}", schema::markdown()),
                SchemaFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&schema::json()).unwrap_or_default()
                ),
                SchemaFormat::Dbt | SchemaFormat::Sql => print!(
                    "{}",
                    export::render(
                        &args.config.load()?,
                        matches!(args.format, SchemaFormat::Dbt),
                        args.dialect,
                        &args.database,
                        &args.catalog
                    )?
                ),
            }
            Ok(())
        }
        Command::Report(args) => {
            let config_args = ConfigArgs {
                config: args.config.clone(),
                inputs: Vec::new(),
                output: args.from.clone(),
                max_reject_ratio: None,
            };
            let (cfg, as_of) = load_with_as_of(&config_args, args.as_of.as_deref())?;
            let as_of = as_of.map(|d| d.format("%Y-%m-%d").to_string());
            let (date, html) = report::build(&cfg, as_of.as_deref())?;
            report::write_file(&args.output, &html)?;
            println!(
                "wrote {} (as of {date}, {} bytes)",
                args.output.display(),
                html.len()
            );
            Ok(())
        }
        Command::Generate(a) => {
            let start = config::parse_date("--start", &a.start)?;
            let format = a.format.unwrap_or_else(|| {
                if a.output
                    .to_string_lossy()
                    .to_ascii_lowercase()
                    .ends_with(".parquet")
                {
                    GenFormat::Parquet
                } else {
                    GenFormat::Csv
                }
            });
            let report = generate::generate(&GenerateOptions {
                output: a.output.clone(),
                format,
                customers: a.customers,
                rows: a.rows.unwrap_or(100_000),
                seed: a.seed,
                start,
                months: a.months,
                segments: a.segments.clone(),
                refund_rate: a.refunds,
                multi_line_rate: a.multi_line,
                cost: !a.no_cost,
                truth: Truth {
                    r: a.r,
                    alpha: a.alpha.unwrap_or(DEFAULT_TRUTH.alpha),
                    a: a.a,
                    b: a.b,
                    p: a.p,
                    q: a.q,
                    v: a.v,
                },
                alpha: a.alpha,
                same_params: a.same_params,
            })?;
            println!(
                "wrote {}: {} rows, {} orders, {} customers, {} bytes",
                a.output.display(),
                report.rows,
                report.orders,
                report.customers,
                report.bytes
            );
            for (channel, t) in &report.truths {
                println!(
                    "true parameters of {channel} customers (weeks): r={} alpha={:.6} a={} b={} p={} q={} v={}",
                    t.r, t.alpha, t.a, t.b, t.p, t.q, t.v
                );
            }
            Ok(())
        }
    }
}
