//! Numbers for people: thousands separators, money with two decimals, rates as percentages.

/// `1234567` → `1,234,567`.
pub(crate) fn int(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number with `decimals` decimals and thousands separators; `–` when not finite.
pub(crate) fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let whole: i64 = whole.parse().unwrap_or(0);
    let sign = if v < 0.0 && s.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{}", int(whole))
    } else {
        format!("{sign}{}.{frac}", int(whole))
    }
}

/// Money: two decimals.
pub(crate) fn money(v: f64) -> String {
    num(v, 2)
}

/// A rate stored as percent (0–100): one decimal and `%`.
pub(crate) fn pct(v: f64) -> String {
    format!("{}%", num(v, 1))
}

/// Large amounts compactly (axis ticks): 1.2k, 3.4M.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{}B", num(v / 1e9, 1))
    } else if a >= 1e6 {
        format!("{}M", num(v / 1e6, 1))
    } else if a >= 1e4 {
        format!("{}k", num(v / 1e3, 1))
    } else if a.fract() == 0.0 {
        num(v, 0)
    } else {
        num(v, 2)
    }
}

/// An optional value, `–` when null.
pub(crate) fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_read_these() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(-1234567), "-1,234,567");
        assert_eq!(money(1234.5), "1,234.50");
        assert_eq!(money(-0.004), "0.00");
        assert_eq!(money(-12.346), "-12.35");
        assert_eq!(pct(23.456), "23.5%");
        assert_eq!(compact(12_345.0), "12.3k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        assert_eq!(compact(40.0), "40");
        assert_eq!(num(f64::NAN, 2), "–");
    }
}
