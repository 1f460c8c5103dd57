//! Calendar arithmetic in the configured timezone: periods (week/month/quarter/year), the
//! as-of cutoff, and conversions between UTC instants and local wall-clock time.
//!
//! Internally every transaction carries its local wall-clock time as microseconds since
//! 1970-01-01T00:00 (no zone). Period boundaries are local midnights and the churn window is
//! measured on that clock, so a calendar month is never longer than 31 days even across a DST
//! change, and `churn_window_days >= 31` guarantees that a new customer is active at the end of
//! their first month (the identity E = S − churned + reactivated + N relies on it).

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Calendar period of the retention and cohort tables.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Week,
    #[default]
    Month,
    Quarter,
    Year,
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
        })
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

impl Period {
    /// Longest length of one period in days (SPEC §2: the churn window must cover it).
    pub fn longest_days(self) -> u32 {
        match self {
            Period::Week => 7,
            Period::Month => 31,
            Period::Quarter => 92,
            Period::Year => 366,
        }
    }

    /// A global, gap-free index of the period that contains `date` (consecutive periods have
    /// consecutive indexes).
    pub fn index(self, date: NaiveDate) -> i64 {
        match self {
            // 1969-12-29 was a Monday: weeks count from there.
            Period::Week => (date - NaiveDate::from_ymd_opt(1969, 12, 29).expect("date"))
                .num_days()
                .div_euclid(7),
            Period::Month => date.year() as i64 * 12 + date.month0() as i64,
            Period::Quarter => date.year() as i64 * 4 + (date.month0() / 3) as i64,
            Period::Year => date.year() as i64,
        }
    }

    /// First day of the period with index `idx`.
    pub fn start(self, idx: i64) -> NaiveDate {
        match self {
            Period::Week => {
                NaiveDate::from_ymd_opt(1969, 12, 29).expect("date") + Duration::days(idx * 7)
            }
            Period::Month => ymd(idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1),
            Period::Quarter => ymd(idx.div_euclid(4), idx.rem_euclid(4) as u32 * 3 + 1),
            Period::Year => ymd(idx, 1),
        }
    }
}

fn ymd(year: i64, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year as i32, month, 1).expect("period start is a valid date")
}

/// Days since 1970-01-01 of a date (Arrow/Parquet DATE).
pub fn date_to_days(d: NaiveDate) -> i32 {
    (d - epoch()).num_days() as i32
}

/// Local wall-clock microseconds of local midnight starting `d`.
pub fn date_to_local_micros(d: NaiveDate) -> i64 {
    (d - epoch()).num_days() * MICROS_PER_DAY
}

/// The date `days` after 1970-01-01; None beyond chrono's calendar.
pub fn days_to_date(days: i64) -> Option<NaiveDate> {
    epoch().checked_add_signed(Duration::try_days(days)?)
}

/// Local date of a local wall-clock time.
pub fn local_micros_to_date(us: i64) -> NaiveDate {
    epoch() + Duration::days(us.div_euclid(MICROS_PER_DAY))
}

/// (year, month − 1) of a day number (days since 1970-01-01), without calendar tables: the
/// civil-from-days algorithm (H. Hinnant), exact for the whole proleptic Gregorian calendar.
pub fn days_to_year_month0(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year, month - 1)
}

/// Days since 1970-01-01 of a calendar date, None when it does not exist (month outside 1–12,
/// day outside the month). Arithmetic only: parsing text timestamps calls this once per row.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let len = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > len {
        return None;
    }
    // Howard Hinnant's days_from_civil: years start in March, so the leap day is last.
    let y = year as i64 - (month <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Local day number (days since 1970-01-01) of a local wall-clock time.
pub fn local_micros_to_day(us: i64) -> i64 {
    us.div_euclid(MICROS_PER_DAY)
}

/// Converts a naive date-time to wall-clock microseconds.
pub fn naive_to_micros(dt: NaiveDateTime) -> i64 {
    dt.and_utc().timestamp_micros()
}

/// A timezone with a fast path for UTC.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    tz: Tz,
    is_utc: bool,
}

impl Zone {
    pub fn new(tz: Tz) -> Self {
        let is_utc = matches!(
            tz,
            Tz::UTC | Tz::Etc__UTC | Tz::Etc__UCT | Tz::UCT | Tz::Zulu
        ) || tz.name() == "Etc/GMT";
        Self { tz, is_utc }
    }

    /// Whether local wall-clock time is UTC (no conversion).
    pub fn is_utc(&self) -> bool {
        self.is_utc
    }

    /// UTC instant (µs) → local wall-clock (µs).
    pub fn utc_to_local(&self, utc_us: i64) -> i64 {
        if self.is_utc {
            return utc_us;
        }
        let secs = utc_us.div_euclid(1_000_000);
        let Some(naive) = chrono::DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc()) else {
            return utc_us;
        };
        let offset = self.tz.offset_from_utc_datetime(&naive).fix();
        utc_us + offset.local_minus_utc() as i64 * 1_000_000
    }

    /// Local wall-clock (µs) → UTC instant (µs). An ambiguous local time (DST fall-back) takes
    /// the earlier instant; a local time that does not exist (spring-forward gap) is read as the
    /// same wall-clock reading in the offset before the gap, i.e. it moves forward by the gap.
    pub fn local_to_utc(&self, local_us: i64) -> i64 {
        if self.is_utc {
            return local_us;
        }
        let secs = local_us.div_euclid(1_000_000);
        let Some(naive) = chrono::DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc()) else {
            return local_us;
        };
        let offset_secs = match self.tz.offset_from_local_datetime(&naive) {
            chrono::LocalResult::Single(o) => o.fix().local_minus_utc(),
            chrono::LocalResult::Ambiguous(a, b) => {
                a.fix().local_minus_utc().max(b.fix().local_minus_utc())
            }
            chrono::LocalResult::None => {
                // Use the offset in force just before the gap.
                let before = naive - Duration::hours(3);
                self.tz
                    .offset_from_local_datetime(&before)
                    .earliest()
                    .map(|o| o.fix().local_minus_utc())
                    .unwrap_or(0)
            }
        };
        local_us - offset_secs as i64 * 1_000_000
    }
}

/// The time frame of one run: periods from the first one with data up to the one holding as_of.
#[derive(Debug, Clone)]
pub struct Frame {
    pub period: Period,
    pub as_of: NaiveDate,
    /// Index of the first period in the tables.
    pub first_index: i64,
    /// Number of periods (the last one contains as_of).
    pub n_periods: usize,
    /// Boundaries in local µs: `boundaries[j]` is the start of period j for j < n_periods, and
    /// `boundaries[n_periods]` is the cutoff (local midnight after as_of).
    pub boundaries: Vec<i64>,
    /// Whether the last period ends exactly at the cutoff.
    pub last_complete: bool,
    /// `le[d]` = boundaries at or before local day `first_day + d`, for every day from the first
    /// boundary to the cutoff: boundaries are local midnights, so this answers `count_le` for
    /// any time with one division and one load instead of a binary search (the fold asks it
    /// three times per purchase). Empty when the frame spans too many days; `count_le` then
    /// searches.
    le: Vec<u32>,
    first_day: i64,
}

/// Frames spanning more days than this (e.g. a stray transaction dated centuries back) search
/// their boundaries instead of holding a day table.
const MAX_TABLE_DAYS: i64 = 1 << 16;

impl Frame {
    /// Builds the frame from the earliest local time seen (if any) to as_of.
    pub fn new(period: Period, as_of: NaiveDate, earliest_local: Option<i64>) -> Self {
        let last_index = period.index(as_of);
        let first_index = earliest_local
            .map(|us| period.index(local_micros_to_date(us)))
            .unwrap_or(last_index)
            .min(last_index);
        let n_periods = (last_index - first_index + 1) as usize;
        let cutoff_day = as_of + Duration::days(1);
        let mut boundaries: Vec<i64> = (0..n_periods)
            .map(|j| date_to_local_micros(period.start(first_index + j as i64)))
            .collect();
        boundaries.push(date_to_local_micros(cutoff_day));
        let last_complete = period.start(last_index + 1) == cutoff_day;
        let first_day = local_micros_to_day(boundaries[0]);
        let span = local_micros_to_day(boundaries[n_periods]) - first_day + 1;
        let le = if span <= MAX_TABLE_DAYS {
            let mut le = Vec::with_capacity(span as usize);
            let mut count = 0;
            for d in first_day..first_day + span {
                while count < boundaries.len() && local_micros_to_day(boundaries[count]) <= d {
                    count += 1;
                }
                le.push(count as u32);
            }
            le
        } else {
            Vec::new()
        };
        Self {
            period,
            as_of,
            first_index,
            n_periods,
            boundaries,
            last_complete,
            le,
            first_day,
        }
    }

    /// Number of boundaries at or before local time `us` (`boundaries.partition_point(|b| b <=
    /// us)`): 0 before the first period, `n_periods + 1` from the cutoff on.
    pub fn count_le(&self, us: i64) -> usize {
        if self.le.is_empty() {
            return self.boundaries.partition_point(|&b| b <= us);
        }
        let d = local_micros_to_day(us) - self.first_day;
        if d < 0 {
            0
        } else if d as usize >= self.le.len() {
            self.n_periods + 1
        } else {
            self.le[d as usize] as usize
        }
    }

    #[cfg(test)]
    /// Local µs of the cutoff: transactions at or after it are after as_of.
    pub fn cutoff(&self) -> i64 {
        self.boundaries[self.n_periods]
    }

    /// Position (0-based) of the period that contains local time `us` (must be < cutoff and ≥ the
    /// first boundary).
    pub fn period_of(&self, us: i64) -> usize {
        // A table lookup (see `le`): this runs once per order.
        self.count_le(us).min(self.n_periods).saturating_sub(1)
    }

    /// Start date of period j.
    pub fn period_start(&self, j: usize) -> NaiveDate {
        self.period.start(self.first_index + j as i64)
    }

    /// End date (exclusive) of period j: the next period's start, or as_of + 1 for the partial
    /// last period.
    pub fn period_end(&self, j: usize) -> NaiveDate {
        if j + 1 == self.n_periods {
            self.as_of + Duration::days(1)
        } else {
            self.period.start(self.first_index + j as i64 + 1)
        }
    }

    /// Whether period j is complete (only the last one may not be).
    pub fn is_complete(&self, j: usize) -> bool {
        j + 1 < self.n_periods || self.last_complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        // Every day from 1600 to 2400 (leap centuries 1600, 2000, 2400; 1700, 1900, 2100 not),
        // and every impossible day of those years: day 0, day 32, Feb 29 of common years, months
        // 0 and 13.
        for year in 1600..=2400 {
            for month in 0..=13 {
                for day in 0..=32 {
                    let want =
                        NaiveDate::from_ymd_opt(year, month, day).map(|d| date_to_days(d) as i64);
                    assert_eq!(
                        days_from_civil(year, month, day),
                        want,
                        "{year}-{month}-{day}"
                    );
                }
            }
        }
        assert_eq!(days_from_civil(0, 1, 1), Some(-719_528));
        assert_eq!(days_from_civil(9999, 12, 31), Some(2_932_896));
    }

    #[test]
    fn year_month_of_day_numbers_match_chrono() {
        // Every day from 1900-01-01 to 2100-12-31 (leap years, 1900 and 2100 not leap, 2000 leap).
        let mut date = d(1900, 1, 1);
        while date <= d(2100, 12, 31) {
            let days = date_to_days(date) as i64;
            assert_eq!(
                days_to_year_month0(days),
                (date.year() as i64, date.month0() as i64),
                "{date}"
            );
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn period_starts_and_indexes_round_trip() {
        for p in [Period::Week, Period::Month, Period::Quarter, Period::Year] {
            for date in [
                d(2023, 1, 1),
                d(2024, 2, 29),
                d(2024, 12, 31),
                d(1969, 12, 31),
            ] {
                let i = p.index(date);
                let s = p.start(i);
                assert!(s <= date, "{p} {date}");
                assert!(p.start(i + 1) > date, "{p} {date}");
                assert_eq!(p.index(s), i);
            }
        }
    }

    #[test]
    fn iso_week_starts_on_monday() {
        // 2024-01-03 is a Wednesday; its ISO week starts Monday 2024-01-01.
        let p = Period::Week;
        assert_eq!(p.start(p.index(d(2024, 1, 3))), d(2024, 1, 1));
        // Sunday 2024-01-07 is still in that week; Monday 2024-01-08 starts the next.
        assert_eq!(p.index(d(2024, 1, 7)), p.index(d(2024, 1, 1)));
        assert_eq!(p.index(d(2024, 1, 8)), p.index(d(2024, 1, 1)) + 1);
    }

    #[test]
    fn quarter_and_year_starts() {
        assert_eq!(
            Period::Quarter.start(Period::Quarter.index(d(2024, 8, 15))),
            d(2024, 7, 1)
        );
        assert_eq!(
            Period::Year.start(Period::Year.index(d(2024, 8, 15))),
            d(2024, 1, 1)
        );
    }

    #[test]
    fn frame_marks_partial_last_period() {
        let f = Frame::new(
            Period::Month,
            d(2024, 3, 15),
            Some(date_to_local_micros(d(2024, 1, 20))),
        );
        assert_eq!(f.n_periods, 3);
        assert_eq!(f.period_start(0), d(2024, 1, 1));
        assert_eq!(f.period_end(1), d(2024, 3, 1));
        assert_eq!(f.period_end(2), d(2024, 3, 16));
        assert!(f.is_complete(1));
        assert!(!f.is_complete(2));
        let f = Frame::new(Period::Month, d(2024, 3, 31), None);
        assert_eq!(f.n_periods, 1);
        assert!(f.is_complete(0));
        assert_eq!(f.cutoff(), date_to_local_micros(d(2024, 4, 1)));
    }

    #[test]
    fn berlin_conversions() {
        let z = Zone::new("Europe/Berlin".parse().unwrap());
        // 2024-01-31T23:30:00Z is 2024-02-01T00:30 in Berlin (UTC+1): February locally.
        let utc = naive_to_micros(d(2024, 1, 31).and_hms_opt(23, 30, 0).unwrap());
        let local = z.utc_to_local(utc);
        assert_eq!(local_micros_to_date(local), d(2024, 2, 1));
        assert_eq!(z.local_to_utc(local), utc);
        // Ambiguous 2024-10-27T02:30 local → the earlier instant, 00:30Z (UTC+2).
        let amb = naive_to_micros(d(2024, 10, 27).and_hms_opt(2, 30, 0).unwrap());
        assert_eq!(
            z.local_to_utc(amb),
            naive_to_micros(d(2024, 10, 27).and_hms_opt(0, 30, 0).unwrap())
        );
        // Non-existent 2024-03-31T02:30 local → read with the pre-gap offset (+1): 01:30Z.
        let gap = naive_to_micros(d(2024, 3, 31).and_hms_opt(2, 30, 0).unwrap());
        assert_eq!(
            z.local_to_utc(gap),
            naive_to_micros(d(2024, 3, 31).and_hms_opt(1, 30, 0).unwrap())
        );
    }

    proptest::proptest! {
        /// The day table answers like a binary search over the boundaries, for every period
        /// kind and frames of one day to ~180 years (the longest search instead of a table), at
        /// every day from before the first boundary to after the cutoff: at midnight, one µs
        /// before it and mid-day.
        #[test]
        fn count_le_is_the_boundary_search(
            period in 0usize..4,
            as_of_day in 0i64..40_000,
            back_days in proptest::prop_oneof![0i64..3_000, 65_000i64..66_000],
        ) {
            let period = [Period::Week, Period::Month, Period::Quarter, Period::Year][period];
            let as_of = epoch() + Duration::days(as_of_day);
            let earliest = date_to_local_micros(as_of - Duration::days(back_days));
            let f = Frame::new(period, as_of, Some(earliest));
            let first = local_micros_to_day(f.boundaries[0]);
            let last = local_micros_to_day(f.cutoff());
            // Every day of a short frame; every 101st of a long one (some hold a table, some
            // search), which keeps the test fast in a debug build.
            let step = if last - first < 5_000 { 1 } else { 101 };
            for day in (first - 3..=last + 3).step_by(step) {
                for back in [0, 1, MICROS_PER_DAY / 2] {
                    let us = day * MICROS_PER_DAY - back;
                    let want = f.boundaries.partition_point(|&b| b <= us);
                    proptest::prop_assert_eq!(f.count_le(us), want, "at {}", us);
                    proptest::prop_assert_eq!(
                        f.period_of(us),
                        f.boundaries[..f.n_periods]
                            .partition_point(|&b| b <= us)
                            .saturating_sub(1)
                    );
                }
            }
        }
    }
}
