//! Validation: every rule of SPEC §5 checked at once, before any I/O, so a bad configuration
//! is one error listing all its problems (each naming its key).

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;

use super::{
    hex, short, Config, ConfigError, FIRST_YEAR, LAST_YEAR, MAX_PARTITIONS,
    MIN_LOCK_TIMEOUT_MINUTES,
};

/// A configuration that passed validation, with its parsed values ready for the job.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    pub tz: Tz,
    pub delimiter: u8,
    pub quote: Option<u8>,
    /// sha256 of the canonical (re-serialized) configuration.
    pub hash: String,
}

impl Validated {
    /// The settings a run's manifest records (what the numbers mean): period, churn window,
    /// timezone, margin, segments and their assignment, money decimals, whether cost was read,
    /// the predictions.
    pub fn manifest_settings(&self, has_cost: bool) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "period": c.metrics.period.to_string(),
            "churn_window_days": c.metrics.churn_window_days,
            "timezone": c.metrics.timezone,
            "margin": c.metrics.margin,
            "segment_assignment": c.metrics.segment_assignment,
            "segments": c.input.columns.segments,
            "amount_decimals": c.input.amount_decimals,
            "has_cost": has_cost,
            "predict": c.predict,
        })
    }
}

impl Config {
    /// Checks every rule and reports all problems at once.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        self.check(true)
    }

    /// `validate` for a computation that is handed its lines (the library API): input.paths
    /// may be empty.
    pub fn validate_lines(self) -> Result<Validated, ConfigError> {
        self.check(false)
    }

    fn check(self, reads_files: bool) -> Result<Validated, ConfigError> {
        let mut problems = self.pending.clone();
        let i = &self.input;
        if reads_files && i.paths.is_empty() {
            problems.push("input.paths: must list at least one file, glob or folder".to_string());
        }
        if i.paths.iter().any(|p| p.trim().is_empty()) {
            problems.push("input.paths: contains an empty path".to_string());
        }
        let c = &i.columns;
        for (key, value) in [
            ("input.columns.customer_id", &c.customer_id),
            ("input.columns.ts", &c.ts),
            ("input.columns.amount", &c.amount),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{key}: mapping is required and may not be empty"));
            }
        }
        for (key, value) in [
            ("input.columns.order_id", &c.order_id),
            ("input.columns.cost", &c.cost),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!(
                    "{key}: empty column name (leave the key out instead)"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &c.segments {
            if s.trim().is_empty() {
                problems.push("input.columns.segments: contains an empty column name".into());
            } else if crate::schema::reserved_names().contains(&s.as_str()) {
                problems.push(format!(
                    "input.columns.segments: '{s}' is a reserved output column name; rename it in the input or choose another column"
                ));
            } else if !seen.insert(s.as_str()) {
                problems.push(format!("input.columns.segments: '{s}' is listed twice"));
            }
        }
        if i.amount_decimals > 9 {
            problems.push(format!(
                "input.amount_decimals: {} is out of range (0–9)",
                i.amount_decimals
            ));
        }
        if i.max_staleness_days > 36_600 {
            problems.push(format!(
                "input.max_staleness_days: {} is out of range (0 = off, at most 36600)",
                i.max_staleness_days
            ));
        }
        if !(0.0..=1.0).contains(&i.max_reject_ratio) {
            problems.push(format!(
                "input.max_reject_ratio: {} is out of range (0–1)",
                i.max_reject_ratio
            ));
        }
        if !i.ts_format.is_empty() {
            let items: Vec<_> = chrono::format::StrftimeItems::new(&i.ts_format).collect();
            if items
                .iter()
                .any(|it| matches!(it, chrono::format::Item::Error))
            {
                problems.push(format!(
                    "input.ts_format: '{}' is not a valid strftime format",
                    i.ts_format
                ));
            }
        }
        let delimiter = single_byte(&i.csv.delimiter);
        if delimiter.is_none() {
            problems.push(format!(
                "input.csv.delimiter: '{}' must be exactly one ASCII character",
                i.csv.delimiter
            ));
        }
        let quote = if i.csv.quote.is_empty() {
            Some(None)
        } else {
            single_byte(&i.csv.quote).map(Some)
        };
        if quote.is_none() {
            problems.push(format!(
                "input.csv.quote: '{}' must be one ASCII character or empty",
                i.csv.quote
            ));
        }
        let m = &self.metrics;
        let tz: Option<Tz> = m.timezone.parse().ok();
        if tz.is_none() {
            problems.push(format!(
                "metrics.timezone: '{}' is not an IANA timezone (e.g. UTC, Europe/Berlin)",
                m.timezone
            ));
        }
        let longest = m.period.longest_days();
        if m.churn_window_days < longest {
            problems.push(format!(
                "metrics.churn_window_days: {} is shorter than the longest {} ({longest} days); use at least {longest}",
                m.churn_window_days, m.period
            ));
        }
        if m.churn_window_days > 36_600 {
            problems.push(format!(
                "metrics.churn_window_days: {} is out of range (at most 36600)",
                m.churn_window_days
            ));
        }
        if !m.margin.is_finite() || !(0.0..=1.0).contains(&m.margin) {
            problems.push(format!(
                "metrics.margin: {} is out of range (0–1)",
                m.margin
            ));
        }
        if self
            .spend
            .as_ref()
            .is_some_and(|s| s.path.trim().is_empty())
        {
            problems.push("spend.path: may not be empty (leave [spend] out instead)".into());
        }
        let o = &self.output;
        if o.path.trim().is_empty() {
            problems.push("output.path: may not be empty".into());
        }
        if !(1..=22).contains(&o.zstd_level) {
            problems.push(format!(
                "output.zstd_level: {} is out of range (1–22)",
                o.zstd_level
            ));
        }
        if o.row_group_rows == 0 {
            problems.push("output.row_group_rows: must be at least 1".into());
        }
        if o.lock_timeout_minutes < MIN_LOCK_TIMEOUT_MINUTES || o.lock_timeout_minutes > 10_080 {
            problems.push(format!(
                "output.lock_timeout_minutes: {} is out of range ({MIN_LOCK_TIMEOUT_MINUTES}–10080); a live run renews its lock, so it is never taken over",
                o.lock_timeout_minutes
            ));
        }
        problems.extend(self.predict.problems(&self.input.columns.segments));
        if self.engine.partitions > MAX_PARTITIONS {
            problems.push(format!(
                "engine.partitions: {} is above the maximum of {MAX_PARTITIONS}",
                self.engine.partitions
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let hash = {
            use sha2::Digest;
            let canonical = serde_json::to_string(&self).unwrap_or_default();
            let digest = sha2::Sha256::digest(canonical.as_bytes());
            format!("sha256:{}", hex(&digest))
        };
        Ok(Validated {
            tz: tz.unwrap_or(Tz::UTC),
            delimiter: delimiter.unwrap_or(b','),
            quote: quote.unwrap_or(Some(b'"')),
            config: self,
            hash,
        })
    }
}

/// Parses an as-of date given on the command line or in the environment: YYYY-MM-DD with a
/// year from `FIRST_YEAR` to `LAST_YEAR`.
pub fn parse_as_of(text: &str) -> Result<NaiveDate, ConfigError> {
    parse_date("as_of", text)
}

/// Parses a date flag (`what` names it in the error): YYYY-MM-DD, years `FIRST_YEAR` to
/// `LAST_YEAR` (date arithmetic near chrono's limits would overflow).
pub fn parse_date(what: &str, text: &str) -> Result<NaiveDate, ConfigError> {
    let t = text.trim();
    let shaped = t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    match NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        Ok(d) if shaped && (FIRST_YEAR..=LAST_YEAR).contains(&d.year()) => Ok(d),
        Ok(_) if shaped => Err(ConfigError::Invalid(vec![format!(
            "{what}: '{text}' is out of range ({FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31)"
        )])),
        _ => Err(ConfigError::Invalid(vec![format!(
            "{what}: '{}' is not a date of the form YYYY-MM-DD",
            short(text)
        )])),
    }
}

fn single_byte(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    (b.len() == 1 && b[0].is_ascii()).then(|| b[0])
}
