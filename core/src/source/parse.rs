//! Field parsers for text inputs: exact decimal money into integer minor units, and timestamps
//! (ISO 8601 date, naive date-time, date-time with offset, or a configured strftime format).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::time::{naive_to_micros, MICROS_PER_DAY};

/// A parsed timestamp: either an instant (had an offset) or a local wall-clock reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ts {
    /// Microseconds since the Unix epoch, UTC.
    Utc(i64),
    /// Local wall-clock microseconds (to be read in the configured timezone).
    Local(i64),
}

/// Why a money value could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyError {
    Missing,
    Unparseable,
    NonFinite,
    OutOfRange,
}

/// Powers of ten up to 10^18.
const POW10: [i64; 19] = {
    let mut p = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// Parses a decimal text exactly into minor units with `decimals` places, rounding half away
/// from zero beyond that precision. Accepts an optional sign, digits, an optional fraction and
/// an optional exponent (`1.5e3`); `NaN`/`inf` are `NonFinite`.
pub fn parse_money(text: &str, decimals: u32) -> Result<i64, MoneyError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(MoneyError::Missing);
    }
    match parse_decimal_exact(s, decimals) {
        Some(v) => v,
        None => {
            // Not plain decimal: maybe NaN/inf spelled some way.
            match s.parse::<f64>() {
                Ok(f) if !f.is_finite() => Err(MoneyError::NonFinite),
                Ok(f) => money_from_f64(f, decimals),
                Err(_) => Err(MoneyError::Unparseable),
            }
        }
    }
}

/// Exact decimal parse; `None` when the text is not of the plain decimal/exponent form.
fn parse_decimal_exact(s: &str, decimals: u32) -> Option<Result<i64, MoneyError>> {
    if let Some(v) = plain_decimal(s.as_bytes(), decimals) {
        return Some(Ok(v));
    }
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    // Collect digits (integer and fraction) as a big mantissa with a decimal exponent.
    let mut mant: i128 = 0;
    let mut exp10: i32 = 0;
    let mut n_digits = 0;
    let mut seen_dot = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            n_digits += 1;
            if mant >= 10i128.pow(30) {
                // More significant digits than we track exactly: let the float path decide.
                return None;
            }
            mant = mant * 10 + (c - b'0') as i128;
            if seen_dot {
                exp10 -= 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if n_digits == 0 {
        return None;
    }
    if i < b.len() {
        if b[i] != b'e' && b[i] != b'E' {
            return None;
        }
        let e: i32 = s[i + 1..].parse().ok()?;
        exp10 = exp10.checked_add(e)?;
    }
    // value = mant × 10^exp10; want round(value × 10^decimals).
    let shift = exp10 + decimals as i32;
    let scaled: i128 = if shift >= 0 {
        if shift > 30 {
            return Some(if mant == 0 {
                Ok(0)
            } else {
                Err(MoneyError::OutOfRange)
            });
        }
        match mant.checked_mul(10i128.pow(shift as u32)) {
            Some(v) => v,
            None => return Some(Err(MoneyError::OutOfRange)),
        }
    } else {
        let k = (-shift) as u32;
        if k > 38 {
            0
        } else {
            let div = 10i128.pow(k);
            let q = mant / div;
            let r = mant % div;
            if r * 2 >= div {
                q + 1
            } else {
                q
            }
        }
    };
    let v = if neg { -scaled } else { scaled };
    Some(i64::try_from(v).map_err(|_| MoneyError::OutOfRange))
}

/// The common case in 64-bit integers: `[+-]digits[.digits]` with at most `decimals` fraction
/// digits and at most 18 digits in all, so the value needs no rounding and cannot overflow.
/// `None` for anything else (the general path then decides).
fn plain_decimal(b: &[u8], decimals: u32) -> Option<i64> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || decimals > 18 {
        return None;
    }
    let mut v: i64 = 0;
    let mut frac: Option<u32> = None;
    let mut n = 0;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                n += 1;
                if n > 18 {
                    return None;
                }
                v = v * 10 + (c - b'0') as i64;
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            _ => return None,
        }
    }
    let f = frac.unwrap_or(0);
    if n == 0 || f > decimals || n - f as usize + decimals as usize > 18 {
        return None;
    }
    let v = v * POW10[(decimals - f) as usize];
    Some(if neg { -v } else { v })
}

/// Converts a binary float amount to minor units, rounding half away from zero.
pub fn money_from_f64(f: f64, decimals: u32) -> Result<i64, MoneyError> {
    if !f.is_finite() {
        return Err(MoneyError::NonFinite);
    }
    let scaled = (f * POW10[decimals as usize] as f64).round();
    if scaled.abs() >= 9.0e18 {
        return Err(MoneyError::OutOfRange);
    }
    Ok(scaled as i64)
}

/// Converts an integer amount (whole currency units) to minor units.
pub fn money_from_i64(v: i64, decimals: u32) -> Result<i64, MoneyError> {
    v.checked_mul(POW10[decimals as usize])
        .ok_or(MoneyError::OutOfRange)
}

/// Parses an ISO 8601 timestamp: `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS[.f…]]`, optionally
/// followed by `Z` or an offset `±HH:MM` / `±HHMM` / `±HH`.
pub fn parse_ts_iso(text: &str) -> Option<Ts> {
    let s = match text.as_bytes() {
        // No whitespace at either end, the usual case: no trim.
        [first, .., last] if first.is_ascii_digit() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
    .as_bytes();
    if s.len() < 10 {
        return None;
    }
    let year = digits(&s[0..4])? as i32;
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let day_us = crate::time::days_from_civil(year, month, day)? * MICROS_PER_DAY;
    if s.len() == 10 {
        return Some(Ts::Local(day_us));
    }
    if s[10] != b'T' && s[10] != b' ' && s[10] != b't' {
        return None;
    }
    let rest = &s[11..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let hour = digits(&rest[0..2])? as i64;
    let minute = digits(&rest[3..5])? as i64;
    let mut i = 5;
    let mut second = 0i64;
    let mut micros = 0i64;
    if rest.len() >= 8 && rest[5] == b':' {
        second = digits(&rest[6..8])? as i64;
        i = 8;
        if i < rest.len() && (rest[i] == b'.' || rest[i] == b',') {
            i += 1;
            let start = i;
            let mut scale = 100_000i64;
            while i < rest.len() && rest[i].is_ascii_digit() {
                micros += (rest[i] - b'0') as i64 * scale;
                scale /= 10;
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let local = day_us + ((hour * 60 + minute) * 60 + second.min(59)) * 1_000_000 + micros;
    let tail = &rest[i..];
    match tail {
        [] => Some(Ts::Local(local)),
        [b'Z'] | [b'z'] => Some(Ts::Utc(local)),
        [sign @ (b'+' | b'-'), more @ ..] => {
            let (oh, om) = match more {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) as i64 * 60_000_000;
            Some(Ts::Utc(if *sign == b'+' {
                local - off
            } else {
                local + off
            }))
        }
        _ => None,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses with a chrono strftime format: with an offset specifier the value is an instant,
/// otherwise a local date-time, or a local date when the format has no time fields.
pub fn parse_ts_format(text: &str, format: &str) -> Option<Ts> {
    let s = text.trim();
    if let Ok(dt) = DateTime::parse_from_str(s, format) {
        return Some(Ts::Utc(dt.timestamp_micros()));
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, format) {
        return Some(Ts::Local(naive_to_micros(dt)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, format) {
        return Some(Ts::Local(naive_to_micros(d.and_hms_opt(0, 0, 0)?)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_money("12.34", 2), Ok(1234));
        assert_eq!(parse_money("-0.29", 2), Ok(-29));
        assert_eq!(parse_money(" 7 ", 2), Ok(700));
        assert_eq!(parse_money("+3.5", 2), Ok(350));
        assert_eq!(parse_money(".5", 2), Ok(50));
        assert_eq!(parse_money("1.5e2", 2), Ok(15000));
        // Beyond the precision: half away from zero, decided on the exact decimal digits
        // (0.145 is 0.14499999… as f64, but the text says a half).
        assert_eq!(parse_money("0.145", 2), Ok(15));
        assert_eq!(parse_money("-0.145", 2), Ok(-15));
        assert_eq!(parse_money("0.1449", 2), Ok(14));
        assert_eq!(parse_money("10", 0), Ok(10));
    }

    #[test]
    fn money_rejects() {
        assert_eq!(parse_money("", 2), Err(MoneyError::Missing));
        assert_eq!(parse_money("abc", 2), Err(MoneyError::Unparseable));
        assert_eq!(parse_money("12,5", 2), Err(MoneyError::Unparseable));
        assert_eq!(parse_money("NaN", 2), Err(MoneyError::NonFinite));
        assert_eq!(parse_money("inf", 2), Err(MoneyError::NonFinite));
        assert_eq!(parse_money("-Infinity", 2), Err(MoneyError::NonFinite));
        assert_eq!(parse_money("1e300", 2), Err(MoneyError::OutOfRange));
        assert_eq!(money_from_f64(f64::NAN, 2), Err(MoneyError::NonFinite));
    }

    #[test]
    fn iso_timestamps() {
        let day = 19_723 * MICROS_PER_DAY; // 2024-01-01
        assert_eq!(parse_ts_iso("2024-01-01"), Some(Ts::Local(day)));
        assert_eq!(
            parse_ts_iso("2024-01-01T10:30:00"),
            Some(Ts::Local(day + 37_800_000_000))
        );
        assert_eq!(
            parse_ts_iso("2024-01-01 10:30"),
            Some(Ts::Local(day + 37_800_000_000))
        );
        assert_eq!(
            parse_ts_iso("2024-01-01T10:30:00.5Z"),
            Some(Ts::Utc(day + 37_800_500_000))
        );
        // 10:30+02:00 is 08:30Z.
        assert_eq!(
            parse_ts_iso("2024-01-01T10:30:00+02:00"),
            Some(Ts::Utc(day + 30_600_000_000))
        );
        assert_eq!(
            parse_ts_iso("2024-01-01T10:30:00-0130"),
            Some(Ts::Utc(day + 37_800_000_000 + 5_400_000_000))
        );
        assert_eq!(parse_ts_iso("2024-02-30"), None);
        assert_eq!(parse_ts_iso("01/02/2024"), None);
        assert_eq!(parse_ts_iso("2024-01-01T25:00"), None);
        assert_eq!(parse_ts_iso("2024-01-01Tjunk"), None);
    }

    #[test]
    fn custom_formats() {
        let day = 19_723 * MICROS_PER_DAY;
        assert_eq!(
            parse_ts_format("01/01/2024", "%d/%m/%Y"),
            Some(Ts::Local(day))
        );
        assert_eq!(
            parse_ts_format("01/01/2024 01:00 +0100", "%d/%m/%Y %H:%M %z"),
            Some(Ts::Utc(day))
        );
        assert_eq!(parse_ts_format("2024-01-01", "%d/%m/%Y"), None);
    }

    proptest! {
        #[test]
        fn money_round_trips_cents(cents in -10_000_000_000i64..10_000_000_000i64) {
            let text = format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100);
            prop_assert_eq!(parse_money(&text, 2), Ok(cents));
        }

        #[test]
        fn plain_decimals_take_the_fast_path_with_the_same_result(
            sign in proptest::sample::select(vec!["", "-", "+"]),
            int in "[0-9]{0,19}",
            frac in proptest::option::of("[0-9]{0,6}"),
            decimals in 0u32..8,
        ) {
            let text = format!("{sign}{int}{}", frac.map(|f| format!(".{f}")).unwrap_or_default());
            // The general path alone (the fast one switched off by a non-plain suffix that
            // means the same value: an exponent of zero).
            let general = parse_money(&format!("{text}e0"), decimals);
            let fast = plain_decimal(text.as_bytes(), decimals);
            if let Some(v) = fast {
                prop_assert_eq!(Ok(v), general, "{}", text);
            }
            if !int.is_empty() && general.is_ok() {
                prop_assert_eq!(parse_money(&text, decimals), general, "{}", text);
            }
        }

        #[test]
        fn money_never_panics(s in ".{0,40}") {
            let _ = parse_money(&s, 2);
            let _ = parse_ts_iso(&s);
        }
    }
}
