//! Fuzzing with proptest, outside CI (the tests are ignored there): random CSV and NDJSON bytes
//! through the real record check, reader and normalizer, and random TOML through the config
//! parser. Run for as long as wanted with, e.g.,
//! `CUSTOMER_VALUE_FUZZ_CASES=200000 cargo test --lib fuzz -- --ignored`.
//! Each case checks: no panic, the row accounting closes, every physical line of a CSV is a row
//! or a blank line (none swallowed), and every error is one line naming the file.

use crate::config::{Config, InputFormat};
use crate::source::{self, IngestOptions};
use crate::time::{date_to_local_micros, Zone};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("CUSTOMER_VALUE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

const TOKENS: &[&str] = &[
    "",
    "a",
    "c1",
    " c2 ",
    "\"",
    "\"q\"",
    "\"a,b\"",
    "\"\"",
    "1.00",
    "-2.5",
    "12,50",
    "1e300",
    "NaN",
    "inf",
    "99999999999999999999",
    "0.145",
    "2024-01-02",
    "2024-01-02T10:00:00Z",
    "2024-13-45",
    "0024-01-01",
    "9999-12-31",
    "+262142-01-01",
    "\u{FFFD}",
    "é",
    "\r",
    "\t",
    "web",
    "{",
    "}",
    "[",
    "\"k\":1",
];

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        1 => "[ -~]{0,6}",
    ]
}

fn csv_line() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => proptest::collection::vec(field(), 5).prop_map(|f| f.join(",")),
        2 => proptest::collection::vec(field(), 0..8).prop_map(|f| f.join(",")),
        1 => Just(String::new()),
        1 => "[ ,\"\r]{0,4}",
    ]
}

fn ndjson_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (field(), field(), field()).prop_map(|(c, t, a)| format!(
            "{{\"customer_id\":{c:?},\"order_id\":\"o\",\"ts\":{t:?},\"amount\":{a:?},\"channel\":\"web\"}}"
        )),
        1 => proptest::collection::vec(field(), 0..4).prop_map(|f| f.concat()),
        1 => Just(String::new()),
    ]
}

fn config(path: &str, extra: &str, csv_extra: &str) -> crate::config::Validated {
    let text = format!(
        "[input]\npaths = [{path:?}]\nmax_reject_ratio = 1.0\n{extra}\n[input.csv]\n{csv_extra}\n[input.columns]\ncustomer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"\norder_id = \"order_id\"\nsegments = [\"channel\"]\n"
    );
    Config::from_toml(&text).unwrap().validate().unwrap()
}

/// Reads `bytes` as the file `name` and checks the accounting; `lines` = the physical data
/// lines when every line must be a row or a blank line.
fn read(
    name: &str,
    bytes: &[u8],
    csv_extra: &str,
    lines: Option<u64>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let p = path.display().to_string();
    let cfg = config(&p, "", csv_extra);
    let files = source::discover(
        std::slice::from_ref(&p),
        InputFormat::Auto,
        &cfg.config.storage,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let opts = IngestOptions {
        cutoff_local: date_to_local_micros(chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap()),
        zone: Zone::new(cfg.tz),
        progress: false,
    };
    match source::ingest(&files, &cfg, opts, None) {
        Ok((ing, _)) => {
            let s = &ing.stats;
            prop_assert_eq!(
                s.rows_read,
                s.rows_used + s.rows_rejected + s.rows_after_as_of
            );
            if let Some(n) = lines {
                let blank: u64 = s.files.iter().map(|f| f.blank_lines).sum();
                prop_assert_eq!(s.rows_read + blank, n, "every line a row or blank");
            }
        }
        Err(e) => {
            let line = crate::cli::error_line(&e.to_string());
            prop_assert!(line.chars().count() < 500);
            prop_assert!(line.contains(name), "names the file: {}", line);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "fuzzing: run by hand, see the module doc"]
    fn fuzz_csv_lines(lines in proptest::collection::vec(csv_line(), 0..12), newline_at_end in any::<bool>(), allow in any::<bool>()) {
        let mut body = lines.join("\n");
        if newline_at_end && !lines.is_empty() {
            body.push('\n');
        }
        // Physical data lines: one per newline, plus a last one without its newline.
        let n = (body.matches('\n').count() + usize::from(!body.is_empty() && !body.ends_with('\n'))) as u64;
        let text = format!("customer_id,order_id,ts,amount,channel\n{body}");
        let extra = if allow { "allow_quoted_newlines = true" } else { "" };
        read("fuzz.csv", text.as_bytes(), extra, (!allow).then_some(n))?;
    }

    #[test]
    #[ignore = "fuzzing: run by hand, see the module doc"]
    fn fuzz_csv_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut data = b"customer_id,order_id,ts,amount,channel\n".to_vec();
        data.extend_from_slice(&bytes);
        read("bytes.csv", &data, "", None)?;
    }

    #[test]
    #[ignore = "fuzzing: run by hand, see the module doc"]
    fn fuzz_ndjson_lines(lines in proptest::collection::vec(ndjson_line(), 1..10)) {
        let text = lines.join("\n") + "\n";
        read("fuzz.ndjson", text.as_bytes(), "", Some(lines.len() as u64))?;
    }

    #[test]
    #[ignore = "fuzzing: run by hand, see the module doc"]
    fn fuzz_config(text in "[\\[\\]a-z_.=\" 0-9\n#-]{0,200}", keys in proptest::collection::vec((proptest::sample::select(&["period", "churn_window_days", "timezone", "margin", "segment_assignment", "format", "lock_timeout_minutes", "max_staleness_days", "amount_decimals", "zstd_level"][..]), field()), 0..5)) {
        let mut t = String::from("[input]\npaths = [\"x.csv\"]\n[input.columns]\ncustomer_id = \"c\"\nts = \"t\"\namount = \"a\"\n[metrics]\n");
        for (k, v) in keys {
            t.push_str(&format!("{k} = {v:?}\n"));
        }
        t.push_str(&text);
        if let Ok(cfg) = Config::from_toml(&t) {
            if let Err(e) = cfg.validate() {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
