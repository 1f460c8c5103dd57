//! Command-line interface (SPEC §5): subcommands, flags with `CUSTOMER_VALUE_*` environment
//! twins, logging setup, and the mapping of errors to exit codes.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigError, Validated};
use crate::generate::{self, GenFormat, GenerateOptions, Truth, DEFAULT_TRUTH};
use crate::job::{self, RunOptions};
use crate::time::Period;
use crate::{export, report, schema, Result};

/// Default config path when --config is not given.
pub(crate) const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Debug, Parser)]
#[command(
    name = "customer-value",
    version,
    about = "Customer retention (CRR), LTV/CLV, churn cohorts and per-customer tables from transaction exports, per segment."
)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CUSTOMER_VALUE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, env = "CUSTOMER_VALUE_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Compute every table for one as_of date and publish it.
    Run(RunArgs),
    /// Publish one partition per as_of date in a range, reading the inputs once.
    Backfill(BackfillArgs),
    /// Check the config and parse every input row with the run's rules and data checks; writes
    /// nothing. Fails (exit 3) where `run` would on the data.
    Validate(ValidateArgs),
    /// Print every output table's columns, types and meaning.
    Schema(SchemaArgs),
    /// Write a deterministic synthetic transaction export.
    Generate(GenerateArgs),
    /// Write one self-contained HTML page of a published run (charts, tables, data quality).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Config file (TOML) whose output the report reads.
    #[arg(long, env = "CUSTOMER_VALUE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The published output to read (folder or URL), replacing output.path.
    #[arg(long)]
    pub from: Option<String>,
    /// The published run's as_of date (default: the newest manifest in the output).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
    /// The HTML file to write (replaced atomically).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

/// Flags that locate and override the configuration.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Config file (TOML).
    #[arg(long, env = "CUSTOMER_VALUE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Input paths, replacing input.paths (repeatable; comma-separated in the environment).
    #[arg(long = "input", env = "CUSTOMER_VALUE_INPUT", value_delimiter = ',')]
    pub inputs: Vec<String>,
    /// Output folder, replacing output.path.
    #[arg(long, env = "CUSTOMER_VALUE_OUTPUT")]
    pub output: Option<String>,
    /// Replaces input.max_reject_ratio.
    #[arg(long, env = "CUSTOMER_VALUE_MAX_REJECT_RATIO")]
    pub max_reject_ratio: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// As-of date YYYY-MM-DD (default: yesterday in the configured timezone).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// As-of date YYYY-MM-DD the rows are checked as of (default: yesterday in the configured
    /// timezone, as for `run`).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First date of the range (YYYY-MM-DD).
    #[arg(long, env = "CUSTOMER_VALUE_FROM")]
    pub from: String,
    /// Last date of the range (YYYY-MM-DD).
    #[arg(long, env = "CUSTOMER_VALUE_TO")]
    pub to: String,
    /// Which dates of the range: the last day of every period (default: metrics.period), or every day.
    #[arg(long, value_enum, env = "CUSTOMER_VALUE_EVERY")]
    pub every: Option<Every>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Flags of the commands that publish partitions (`run`, `backfill`).
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Never show a progress bar.
    #[arg(long, env = "CUSTOMER_VALUE_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub no_progress: bool,
    /// Remove another run's lock on the output before starting (only when it is known dead).
    #[arg(long, env = "CUSTOMER_VALUE_FORCE_UNLOCK", value_parser = BoolishValueParser::new())]
    pub force_unlock: bool,
    /// Tables to write, comma-separated (default: all six). The partitions of the others are
    /// left as they are for each date, and its manifest keeps listing them.
    #[arg(
        long,
        value_delimiter = ',',
        env = "CUSTOMER_VALUE_TABLES",
        value_parser = PossibleValuesParser::new(crate::schema::Table::ALL.map(|t| t.name()))
            .map(|name| crate::schema::Table::from_name(&name).expect("a listed table name"))
    )]
    pub tables: Vec<crate::schema::Table>,
}

impl PublishArgs {
    /// The job options these flags give, for `as_of`.
    fn options(&self, as_of: Option<NaiveDate>) -> RunOptions {
        RunOptions {
            as_of,
            progress: !self.no_progress,
            force_unlock: self.force_unlock,
            // None given means all five.
            tables: if self.tables.is_empty() {
                job::TableSet::ALL
            } else {
                job::TableSet::of(self.tables.iter().copied())
            },
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Every {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Output format: the tables' documentation (markdown, json), a dbt sources.yml (dbt), or
    /// the statements that make the output queryable in an engine (sql; see --dialect).
    #[arg(
        long,
        value_enum,
        default_value = "markdown",
        env = "CUSTOMER_VALUE_SCHEMA_FORMAT"
    )]
    pub format: SchemaFormat,
    /// Engine of the sql statements and of the dbt tests' expressions.
    #[arg(
        long,
        value_enum,
        default_value = "duckdb",
        env = "CUSTOMER_VALUE_SCHEMA_DIALECT"
    )]
    pub dialect: crate::export::Dialect,
    /// Database (schema) the statements create and the dbt source reads.
    #[arg(long, default_value = crate::export::DEFAULT_DATABASE, env = "CUSTOMER_VALUE_SCHEMA_DATABASE")]
    pub database: String,
    /// Trino catalog of the Hive connector (sql --dialect trino).
    #[arg(long, default_value = "hive", env = "CUSTOMER_VALUE_SCHEMA_CATALOG")]
    pub catalog: String,
    /// dbt and sql: the configuration whose output location, segment columns and predictions
    /// are described (markdown and json document every configuration and read none).
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SchemaFormat {
    Markdown,
    Json,
    Dbt,
    Sql,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Output file (`.csv`, `.csv.gz`, `.csv.zst` or `.parquet`).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_OUTPUT")]
    pub output: PathBuf,
    /// File format (default: by extension).
    #[arg(long, value_enum, env = "CUSTOMER_VALUE_GEN_FORMAT")]
    pub format: Option<GenFormat>,
    #[arg(long, default_value_t = 10_000, env = "CUSTOMER_VALUE_GEN_CUSTOMERS")]
    pub customers: u64,
    /// Approximate number of rows (lines): sets α (default 100000; not with --alpha).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_ROWS", conflicts_with = "alpha")]
    pub rows: Option<u64>,
    #[arg(long, default_value_t = 42, env = "CUSTOMER_VALUE_GEN_SEED")]
    pub seed: u64,
    /// First month (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01", env = "CUSTOMER_VALUE_GEN_START")]
    pub start: String,
    #[arg(long, default_value_t = 24, env = "CUSTOMER_VALUE_GEN_MONTHS")]
    pub months: u32,
    /// Segment columns (channel, region, plan).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "channel,region",
        env = "CUSTOMER_VALUE_GEN_SEGMENTS"
    )]
    pub segments: Vec<String>,
    /// Share of orders refunded (partly or fully) later.
    #[arg(long, default_value_t = 0.05, env = "CUSTOMER_VALUE_GEN_REFUNDS")]
    pub refunds: f64,
    /// Share of orders with several lines.
    #[arg(long, default_value_t = 0.3, env = "CUSTOMER_VALUE_GEN_MULTI_LINE")]
    pub multi_line: f64,
    /// Leave out the cost column.
    #[arg(long, env = "CUSTOMER_VALUE_GEN_NO_COST", value_parser = BoolishValueParser::new())]
    pub no_cost: bool,
    /// True BG/NBD r (purchase-rate shape) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.r, env = "CUSTOMER_VALUE_GEN_R")]
    pub r: f64,
    /// True BG/NBD α (purchase-rate scale, weeks) of the `web` channel (default: solved from --rows).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_ALPHA")]
    pub alpha: Option<f64>,
    /// True BG/NBD a (dropout Beta) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.a, env = "CUSTOMER_VALUE_GEN_A")]
    pub a: f64,
    /// True BG/NBD b (dropout Beta) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.b, env = "CUSTOMER_VALUE_GEN_B")]
    pub b: f64,
    /// True Gamma-Gamma p (order value shape) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.p, env = "CUSTOMER_VALUE_GEN_P")]
    pub p: f64,
    /// True Gamma-Gamma q (shape of the customers' value scale; above 1) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.q, env = "CUSTOMER_VALUE_GEN_Q")]
    pub q: f64,
    /// True Gamma-Gamma v (scale of the customers' value scale) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.v, env = "CUSTOMER_VALUE_GEN_V")]
    pub v: f64,
    /// Every channel gets the flags' parameters (default: app buys more often, α × 0.6; store
    /// drops out sooner, b × 0.5; partner spends more, v × 1.5).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_SAME_PARAMS", value_parser = BoolishValueParser::new())]
    pub same_params: bool,
}

impl ConfigArgs {
    /// Loads the file, applies the flags, validates everything.
    pub(crate) fn load(&self) -> std::result::Result<Validated, ConfigError> {
        let mut cfg = Config::from_file(&self.config)?;
        if !self.inputs.is_empty() {
            cfg.input.paths = self.inputs.clone();
        }
        if let Some(o) = &self.output {
            cfg.output.path = o.clone();
        }
        if let Some(r) = self.max_reject_ratio {
            cfg.input.max_reject_ratio = r;
        }
        cfg.validate()
    }
}

/// Database and catalog names are plain identifiers (every engine takes them unquoted too).
fn check_database_name(name: &str) -> std::result::Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(vec![format!(
            "--database: {name:?} is not a plain lowercase name (a-z, 0-9, _; not starting with a digit)"
        )]))
    }
}

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
                SchemaFormat::Dbt | SchemaFormat::Sql => {
                    check_database_name(&args.database)?;
                    let described = export::describe(&args.config.load()?);
                    if matches!(args.format, SchemaFormat::Dbt) {
                        print!(
                            "{}",
                            export::sources_yml(&described, args.dialect, &args.database)
                        );
                    } else {
                        print!(
                            "{}",
                            export::statements(
                                &described,
                                args.dialect,
                                &args.database,
                                &args.catalog
                            )
                        );
                    }
                }
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
