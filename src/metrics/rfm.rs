//! RFM scores (SPEC §4): 1 + floor(5 × w / n) per measure, where w = customers strictly worse
//! and n = all scored customers, so ties share a score and row order does not matter; then the
//! named rfm_segment by the first rule that matches.

use rayon::prelude::*;

use super::CustomerRow;

/// Scores every customer with at least one purchase; others keep null scores.
pub fn score(rows: &mut [CustomerRow]) {
    let scored: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].cohort.is_some())
        .collect();
    let n = scored.len();
    if n == 0 {
        return;
    }
    // w per scored customer = how many have a strictly smaller key. Keys in a small range
    // (purchases, days) are counted: a histogram and its running sum give w in O(n). Others
    // (revenue) sort (key, position) once and give every member of a run of equal keys the
    // run's start. No binary search per row either way.
    let worse = |key: &dyn Fn(&CustomerRow) -> i64| -> Vec<u32> {
        let keys: Vec<i64> = scored.iter().map(|&i| key(&rows[i])).collect();
        let lo = keys.iter().copied().min().unwrap_or(0);
        let hi = keys.iter().copied().max().unwrap_or(0);
        let range = hi as i128 - lo as i128 + 1;
        if range <= (4 * n as i128).max(1024) {
            // below[j] = keys k with k − lo < j.
            let mut below = vec![0u32; range as usize + 1];
            for &k in &keys {
                below[(k - lo) as usize + 1] += 1;
            }
            for j in 1..below.len() {
                below[j] += below[j - 1];
            }
            return keys.iter().map(|&k| below[(k - lo) as usize]).collect();
        }
        let mut v: Vec<(i64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(k, &key)| (key, k as u32))
            .collect();
        v.par_sort_unstable();
        let mut w = vec![0u32; n];
        let mut start = 0;
        for p in 0..n {
            if p > 0 && v[p].0 != v[p - 1].0 {
                start = p;
            }
            w[v[p].1 as usize] = start as u32;
        }
        w
    };
    // Recency: more days is worse, so strictly worse = strictly smaller −days.
    let w_r = worse(&|r| -r.days_since_last.unwrap_or(0));
    // Frequency and monetary: less is worse.
    let w_f = worse(&|r| r.purchases);
    let w_m = worse(&|r| r.revenue);
    let s = |w: u32| (1 + (5 * w as u64) / n as u64) as u8;
    for (k, &i) in scored.iter().enumerate() {
        let scores = [s(w_r[k]), s(w_f[k]), s(w_m[k])];
        rows[i].rfm = Some(scores);
        rows[i].rfm_segment = Some(segment(scores));
    }
}

/// Named RFM group of a score triple (R, F, M).
pub fn segment([r, f, m]: [u8; 3]) -> &'static str {
    if r >= 4 && f >= 4 && m >= 4 {
        "champions"
    } else if f >= 4 {
        "loyal"
    } else if r >= 4 && f <= 2 {
        "promising"
    } else if r <= 2 && f >= 3 {
        "at_risk"
    } else if r <= 2 {
        "hibernating"
    } else {
        "needs_attention"
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
            score(&mut rows);
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
