//! RFM scores (SPEC §4): 1 + floor(5 × w / n) per measure, where w = customers strictly worse
//! and n = all scored customers, so ties share a score and row order does not matter; then the
//! named rfm_segment by the first rule that matches.

use rayon::prelude::*;

use super::CustomerRow;

#[cfg(test)]
/// Scores every customer with at least one purchase; others keep null scores.
pub fn score(rows: &mut [CustomerRow]) {
    let mut keys = Keys::default();
    keys.add(rows);
    keys.scorer().score(rows);
}

/// The three measures of every scored customer, gathered (possibly part by part) before the
/// whole base is known.
#[derive(Debug, Default)]
pub struct Keys([Vec<i64>; 3]);

/// A scored customer's measures, each oriented so that a smaller key is worse: recency as
/// −days (more days is worse), then purchases and revenue (less is worse). None when the
/// customer never purchased (not scored).
fn keys_of(r: &CustomerRow) -> Option<[i64; 3]> {
    r.cohort?;
    Some([-r.days_since_last.unwrap_or(0), r.purchases, r.revenue])
}

impl Keys {
    /// Room for `n` customers' measures (the vectors would otherwise grow by copying).
    pub fn with_capacity(n: usize) -> Keys {
        Keys([(); 3].map(|_| Vec::with_capacity(n)))
    }

    /// Adds the scored customers of `rows`.
    pub fn add(&mut self, rows: &[CustomerRow]) {
        for k in rows.iter().filter_map(keys_of) {
            for (keys, v) in self.0.iter_mut().zip(k) {
                keys.push(v);
            }
        }
    }

    /// Adds another part's measures (the order of parts does not matter: the scorer sorts).
    pub fn merge(&mut self, other: Keys) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            if mine.is_empty() {
                *mine = theirs;
            } else {
                mine.extend(theirs);
            }
        }
    }

    /// The scorer of the whole base gathered so far.
    pub fn scorer(self) -> Scorer {
        let n = self.0[0].len() as u64;
        Scorer {
            n,
            measures: self.0.map(Worse::new),
        }
    }
}

/// The three measures of the scored customers counted by value (sorted): what a run spread
/// over machines gathers on its driver instead of every customer's keys (at most one entry per
/// distinct value; recency and purchases have few).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyCounts([std::collections::BTreeMap<i64, u64>; 3]);

impl KeyCounts {
    /// Adds the scored customers of `rows`.
    pub fn add(&mut self, rows: &[CustomerRow]) {
        for k in rows.iter().filter_map(keys_of) {
            for (counts, v) in self.0.iter_mut().zip(k) {
                *counts.entry(v).or_default() += 1;
            }
        }
    }

    /// Adds another part's counts.
    pub fn merge(&mut self, other: KeyCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            for (v, n) in theirs {
                *mine.entry(v).or_default() += n;
            }
        }
    }

    /// Scored customers counted.
    pub fn customers(&self) -> u64 {
        self.0[0].values().sum()
    }

    /// The cut points of the whole base counted: per measure, the smallest key of each score
    /// 2..=5. The score of a key k of the base is 1 + floor(5 w(k) / n) and w (keys strictly
    /// smaller) never falls as k grows, so it is 1 + the number of cut points ≤ k.
    pub fn cuts(&self) -> Cuts {
        let n = self.customers();
        let at = std::array::from_fn(|m| {
            let mut at = [None; 4];
            let mut w = 0u64;
            for (&v, &count) in &self.0[m] {
                let above = (5 * w / n) as usize; // floor(5 w / n), the score − 1 of v
                for cut in at.iter_mut().take(above) {
                    cut.get_or_insert(v);
                }
                w += count;
            }
            at
        });
        Cuts { n, at }
    }
}

/// A whole base's RFM scorer in a few numbers (see [`KeyCounts::cuts`]): scores the base's
/// customers as [`Scorer`] does, and travels to every machine of a spread run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cuts {
    n: u64,
    /// Per measure, the smallest key scored 2, 3, 4 and 5 (None: no key scores that high).
    at: [[Option<i64>; 4]; 3],
}

impl Cuts {
    /// The scorer of these cut points.
    pub fn scorer(&self) -> Scorer {
        Scorer {
            n: self.n,
            measures: self.at.map(Worse::Cuts),
        }
    }
}

/// Scores customers against a whole base: w = customers strictly worse, n = all scored.
#[derive(Debug)]
pub struct Scorer {
    n: u64,
    measures: [Worse; 3],
}

/// w for any key of one measure.
#[derive(Debug)]
enum Worse {
    /// Keys in a small range (purchases, days) are counted: `below[j]` = keys k with
    /// k − lo < j, a histogram's running sum, so w is one lookup.
    Counts { lo: i64, below: Vec<u32> },
    /// Others (revenue) are sorted once; w = position of the first key not smaller.
    Sorted(Vec<i64>),
    /// The cut points of the scores (for keys of the base only): gives the score, not w.
    Cuts([Option<i64>; 4]),
}

impl Worse {
    fn new(mut keys: Vec<i64>) -> Worse {
        let n = keys.len();
        let lo = keys.iter().copied().min().unwrap_or(0);
        let hi = keys.iter().copied().max().unwrap_or(0);
        let range = hi as i128 - lo as i128 + 1;
        if range <= (4 * n as i128).max(1024) {
            let mut below = vec![0u32; range as usize + 1];
            for &k in &keys {
                below[(k - lo) as usize + 1] += 1;
            }
            for j in 1..below.len() {
                below[j] += below[j - 1];
            }
            return Worse::Counts { lo, below };
        }
        keys.par_sort_unstable();
        Worse::Sorted(keys)
    }

    /// The score of key `k` in a base of `n` scored customers: 1 + floor(5 w / n).
    fn score(&self, k: i64, n: u64) -> u8 {
        let w = match self {
            Worse::Cuts(at) => {
                return 1 + at.iter().filter(|c| c.is_some_and(|c| c <= k)).count() as u8
            }
            Worse::Counts { lo, below } => {
                // Keys outside the range (not in the base) are below or above all of it.
                let j = (k as i128 - *lo as i128).clamp(0, below.len() as i128 - 1);
                below[j as usize]
            }
            Worse::Sorted(v) => v.partition_point(|&x| x < k) as u32,
        };
        (1 + (5 * w as u64) / n) as u8
    }
}

impl Scorer {
    /// Sets the scores and rfm_segment of every scored customer of `rows` (on the calling
    /// thread: `metrics::score_and_sum` runs it part by part in parallel).
    pub fn score(&self, rows: &mut [CustomerRow]) {
        if self.n == 0 {
            return;
        }
        rows.iter_mut().for_each(|r| {
            if let Some(k) = keys_of(r) {
                let scores = [0, 1, 2].map(|m| self.measures[m].score(k[m], self.n));
                r.rfm = Some(scores);
                r.rfm_segment = Some(segment(scores));
            }
        });
    }
}

/// Named RFM group of a score triple (R, F, M).
pub fn segment(scores: [u8; 3]) -> &'static str {
    SEGMENTS[segment_index(scores)]
}

/// Position in `SEGMENTS` of the RFM group of a score triple (R, F, M): the first rule that
/// holds.
pub fn segment_index([r, f, m]: [u8; 3]) -> usize {
    if r >= 4 && f >= 4 && m >= 4 {
        0 // champions
    } else if f >= 4 {
        1 // loyal
    } else if r >= 4 && f <= 2 {
        2 // promising
    } else if r <= 2 && f >= 3 {
        3 // at_risk
    } else if r <= 2 {
        4 // hibernating
    } else {
        5 // needs_attention
    }
}

/// Every rfm_segment value, in rule order.
pub const SEGMENTS: [&str; 6] = [
    "champions",
    "loyal",
    "promising",
    "at_risk",
    "hibernating",
    "needs_attention",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn row(days: i64, purchases: i64, revenue: i64) -> CustomerRow {
        CustomerRow {
            cust: 0,
            segs: Box::new([]),
            cohort: Some(0),
            first_utc: None,
            last_utc: None,
            purchases,
            revenue,
            refunds: 0,
            cost: 0,
            lifespan_months: Some(1),
            days_since_last: Some(days),
            active: Some(true),
            churned_at_utc: None,
            frequency: Some(0),
            recency: Some(0),
            t: Some(0),
            monetary: Some(0.0),
            rfm: None,
            rfm_segment: None,
            prediction: None,
            holdout: None,
        }
    }

    #[test]
    fn scores_by_hand() {
        // Five customers, n = 5, so score = 1 + w (w = customers strictly worse).
        // days:     1, 2, 2, 9, 30   → strictly more days: 4, 2, 2, 1, 0 → R 5,3,3,2,1
        // orders:   9, 1, 1, 3, 2    → strictly fewer:     4, 0, 0, 3, 2 → F 5,1,1,4,3
        // revenue: 90,10,10,30,-5    → strictly less:      4, 1, 1, 3, 0 → M 5,2,2,4,1
        let mut rows = vec![
            row(1, 9, 90),
            row(2, 1, 10),
            row(2, 1, 10),
            row(9, 3, 30),
            row(30, 2, -5),
        ];
        score(&mut rows);
        let got: Vec<[u8; 3]> = rows.iter().map(|r| r.rfm.unwrap()).collect();
        assert_eq!(
            got,
            vec![[5, 5, 5], [3, 1, 2], [3, 1, 2], [2, 4, 4], [1, 3, 1]]
        );
        let seg: Vec<&str> = rows.iter().map(|r| r.rfm_segment.unwrap()).collect();
        // [5,5,5] champions; [3,1,2] needs_attention (R=3 is neither ≥4 nor ≤2);
        // [2,4,4] loyal (F ≥ 4 is checked before at_risk); [1,3,1] at_risk (R ≤ 2, F ≥ 3).
        assert_eq!(
            seg,
            vec![
                "champions",
                "needs_attention",
                "needs_attention",
                "loyal",
                "at_risk"
            ]
        );
    }

    #[test]
    fn cut_points_by_hand() {
        // scores_by_hand's revenue -5, 10, 10, 30, 90 (n = 5): w = 0, 1, 1, 3, 4, so the
        // scores are 1, 2, 2, 4, 5: 10 is the first key scored 2, 30 the first scored 3 and 4
        // (none scores exactly 3), 90 the first scored 5.
        let rows = vec![
            row(1, 9, 90),
            row(2, 1, 10),
            row(2, 1, 10),
            row(9, 3, 30),
            row(30, 2, -5),
        ];
        let mut counts = KeyCounts::default();
        counts.add(&rows);
        let cuts = counts.cuts();
        assert_eq!(cuts.at[2], [Some(10), Some(30), Some(30), Some(90)]);
        // Recency keys −days: −30, −9, −2, −2, −1 → w 0, 1, 2, 2, 4 → R 1, 2, 3, 3, 5.
        assert_eq!(cuts.at[0], [Some(-9), Some(-2), Some(-1), Some(-1)]);
        // A base of one customer: w = 0, score 1, no cut point.
        let mut one = KeyCounts::default();
        one.add(&rows[..1]);
        assert_eq!(one.cuts().at, [[None; 4]; 3]);
    }

    #[test]
    fn ten_customers_use_floor_of_five_w_over_n() {
        // n = 10 with distinct revenue 1..=10: w = 0..=9, M = 1 + floor(w/2) = 1,1,2,2,…,5,5.
        let mut rows: Vec<CustomerRow> = (1..=10).map(|i| row(0, 1, i)).collect();
        score(&mut rows);
        let m: Vec<u8> = rows.iter().map(|r| r.rfm.unwrap()[2]).collect();
        assert_eq!(m, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // All tie on R and F: nobody is strictly worse → score 1 for everyone.
        assert!(rows
            .iter()
            .all(|r| r.rfm.unwrap()[0] == 1 && r.rfm.unwrap()[1] == 1));
    }

    #[test]
    fn counting_and_sorting_paths_agree_with_the_definition() {
        // 300 customers with pseudo-random measures: days and purchases in small ranges (the
        // counting path), revenue spread over ±10^12 (the sorting path), and a second pass with
        // every measure scaled by 10^9 (all sorting). Each score must equal the definition
        // computed directly: 1 + floor(5 × w / n), w = customers strictly worse.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as i64
        };
        for scale in [1i64, 1_000_000_000] {
            let mut rows: Vec<CustomerRow> = (0..300)
                .map(|_| {
                    row(
                        next(40) * scale,
                        (1 + next(12)) * scale,
                        next(2_000_000_000_000) - 1_000_000_000_000,
                    )
                })
                .collect();
            // Scoring in two parts against keys gathered from both (a spilled run scores one
            // partition at a time) gives the same scores as scoring all rows at once.
            let mut parts = rows.clone();
            let (first, second) = parts.split_at_mut(117);
            let mut keys = Keys::default();
            keys.add(first);
            keys.add(second);
            let scorer = keys.scorer();
            scorer.score(second);
            scorer.score(first);
            score(&mut rows);
            assert_eq!(parts, rows);
            // Counted by value in two parts, cut points scoring a third copy: the same scores.
            let mut cut = rows.clone();
            for r in cut.iter_mut() {
                (r.rfm, r.rfm_segment) = (None, None);
            }
            let (a, b) = cut.split_at(117);
            let mut counts = KeyCounts::default();
            counts.add(a);
            let mut other = KeyCounts::default();
            other.add(b);
            counts.merge(other);
            assert_eq!(counts.customers(), 300);
            counts.cuts().scorer().score(&mut cut);
            assert_eq!(cut, rows);
            let n = rows.len() as i64;
            for r in &rows {
                let d = r.days_since_last.unwrap();
                let w_r = rows
                    .iter()
                    .filter(|o| o.days_since_last.unwrap() > d)
                    .count() as i64;
                let w_f = rows.iter().filter(|o| o.purchases < r.purchases).count() as i64;
                let w_m = rows.iter().filter(|o| o.revenue < r.revenue).count() as i64;
                let want = [w_r, w_f, w_m].map(|w| (1 + 5 * w / n) as u8);
                assert_eq!(r.rfm.unwrap(), want);
            }
        }
    }

    #[test]
    fn rules_in_order() {
        assert_eq!(segment([4, 4, 4]), "champions");
        assert_eq!(segment([1, 5, 1]), "loyal");
        assert_eq!(segment([5, 2, 5]), "promising");
        assert_eq!(segment([2, 3, 1]), "at_risk");
        assert_eq!(segment([1, 1, 1]), "hibernating");
        assert_eq!(segment([3, 3, 3]), "needs_attention");
        assert_eq!(segment([5, 3, 1]), "needs_attention");
    }
}
