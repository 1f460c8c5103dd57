//! Hand-computed fixtures: every expected value below is worked out from SPEC §2–§4 in the
//! comments, never copied from the program's output.

use crate::util::{approx, Workspace, DEFAULT_COLUMNS};

/// Fixture A (UTC, month periods, churn window 31 days, as_of 2024-04-15):
///
/// | customer | orders (order time, value)                                              |
/// |----------|--------------------------------------------------------------------------|
/// | a        | 01-10 10.00 (web), 02-05 20.00 (web); 04-20 99.00 is after as_of          |
/// | b        | 01-20 5.00 (app)                                                         |
/// | c        | c1: lines 03-03 7.50 + 2.50 (store), refund −2.50 on 03-10 → 7.50 at 03-03 |
/// | d        | refund only: 02-10 −4.00 (no channel) → never acquired                    |
/// | e        | e1: 01-15 12.00 refunded in full 01-20 → 0, not a purchase; 04-01 3.00 (web) |
/// | f        | 01-05 1.00 (no channel), 03-25 2.00 (web): churned in Feb, reactivated Mar |
///
/// Plus two bad rows (amount "abc", empty customer_id) → rejects.
pub const FIXTURE_A: &str = "\
customer_id,order_id,ts,amount,channel
a,a1,2024-01-10T09:00:00Z,10.00,web
a,a2,2024-02-05T09:00:00Z,20.00,web
a,a3,2024-04-20T09:00:00Z,99.00,web
b,b1,2024-01-20T12:00:00Z,5.00,app
c,c1,2024-03-03T10:00:00Z,7.50,store
c,c1,2024-03-03T10:00:05Z,2.50,store
c,c1,2024-03-10T08:00:00Z,-2.50,store
d,d1,2024-02-10T08:00:00Z,-4.00,
e,e1,2024-01-15T08:00:00Z,12.00,app
e,e1,2024-01-20T08:00:00Z,-12.00,app
e,e2,2024-04-01T08:00:00Z,3.00,web
f,f1,2024-01-05T08:00:00Z,1.00,
f,f2,2024-03-25T08:00:00Z,2.00,web
x,x1,2024-01-07T08:00:00Z,abc,web
,y1,2024-01-08T08:00:00Z,1.00,web
";

fn fixture_a(metrics: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, metrics, "");
    ws
}

const MONTH_31: &str = "period = \"month\"\nchurn_window_days = 31";

#[test]
fn retention_all_segments_by_hand() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-04-15");
    let t = ws.table("retention", "2024-04-15");
    // Boundaries B0..B4 = Jan 1, Feb 1, Mar 1, Apr 1, Apr 16 (cutoff). Active (p < B ≤ p + 31 d):
    // B0: none = 0; B1: a (01-10), b (01-20), f (01-05) = 3; B2: a (02-05) = 1;
    // B3: c (03-03), f (03-25) = 2; B4: e (04-01), f (03-25) = 2.
    // (period, S, E, N, churned, reactivated, revenue, purchases)
    let expected = [
        // Jan: new a, b, f; revenue 10 + 5 + 1 + (12 − 12) = 16; E = 0 − 0 + 0 + 3 = 3.
        ("2024-01-01", 0, 3, 3, 0, 0, 16.0, 3),
        // Feb: b and f churn; revenue 20 (a) − 4 (d's refund) = 16; E = 3 − 2 + 0 + 0 = 1.
        ("2024-02-01", 3, 1, 0, 2, 0, 16.0, 1),
        // Mar: c new, f reactivated, a churned (last 02-05 + 31 d = 03-07 < 04-01);
        // revenue 7.50 (c1 net) + 2.00 (f) = 9.50; E = 1 − 1 + 1 + 1 = 2.
        ("2024-03-01", 1, 2, 1, 1, 1, 9.5, 2),
        // Apr (partial): e new, c churned (03-03 + 31 d = 04-03 < 04-16); revenue 3.00 (a's
        // 04-20 order is after as_of); E = 2 − 1 + 0 + 1 = 2.
        ("2024-04-01", 2, 2, 1, 1, 0, 3.0, 1),
    ];
    let all = t.filter(&[("segment_by", "all"), ("segment", "__all__")]);
    assert_eq!(all.len(), 4);
    for (i, (start, s, e, n, ch, re, rev, p)) in all.into_iter().zip(expected) {
        assert_eq!(t.date("period_start", i).as_deref(), Some(start));
        assert_eq!(t.int("customers_start", i), Some(s), "{start} S");
        assert_eq!(t.int("customers_end", i), Some(e), "{start} E");
        assert_eq!(t.int("customers_new", i), Some(n), "{start} N");
        assert_eq!(t.int("churned", i), Some(ch), "{start} churned");
        assert_eq!(t.int("reactivated", i), Some(re), "{start} reactivated");
        assert!(approx(t.f64("revenue", i), rev), "{start} revenue");
        assert_eq!(t.int("purchases", i), Some(p), "{start} purchases");
    }
    let jan = t.find(&[("segment", "__all__"), ("period_start", "2024-01-01")]);
    assert_eq!(t.f64("crr", jan), None, "S = 0 → null rates");
    let feb = t.find(&[("segment", "__all__"), ("period_start", "2024-02-01")]);
    // CRR = (1 − 0) / 3 × 100; strict = (3 − 2) / 3 × 100; churn = 2 / 3 × 100.
    assert!(approx(t.f64("crr", feb), 100.0 / 3.0));
    assert!(approx(t.f64("strict_retention", feb), 100.0 / 3.0));
    assert!(approx(t.f64("churn_rate", feb), 200.0 / 3.0));
    let mar = t.find(&[("segment", "__all__"), ("period_start", "2024-03-01")]);
    assert!(approx(t.f64("crr", mar), 100.0)); // (2 − 1) / 1 × 100
    let apr = t.find(&[("segment", "__all__"), ("period_start", "2024-04-01")]);
    assert!(approx(t.f64("crr", apr), 50.0)); // (2 − 1) / 2 × 100
    assert!(!t.bool("is_complete", apr));
    assert!(t.bool("is_complete", mar));
    assert_eq!(t.date("period_end", apr).as_deref(), Some("2024-04-16"));
    assert_eq!(t.date("period_end", mar).as_deref(), Some("2024-04-01"));

    // Segment channel (first purchase's value): web = {a, e}, app = {b}, store = {c},
    // __unknown__ = {d (no purchase: first order, null), f (first purchase had no channel)}.
    let web_apr = t.find(&[
        ("segment_by", "channel"),
        ("segment", "web"),
        ("period_start", "2024-04-01"),
    ]);
    // web in April: S at Apr 1 = 0 (a churned, e not yet acquired); E = 1 (e); N = 1.
    assert_eq!(t.int("customers_start", web_apr), Some(0));
    assert_eq!(t.int("customers_end", web_apr), Some(1));
    assert_eq!(t.int("customers_new", web_apr), Some(1));
    let unk_feb = t.find(&[
        ("segment_by", "channel"),
        ("segment", "__unknown__"),
        ("period_start", "2024-02-01"),
    ]);
    // __unknown__ in Feb: S = 1 (f), churned 1, revenue −4.00 (d's refund).
    assert_eq!(t.int("customers_start", unk_feb), Some(1));
    assert_eq!(t.int("churned", unk_feb), Some(1));
    assert!(approx(t.f64("revenue", unk_feb), -4.0));
}

#[test]
fn customers_by_hand() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-04-15");
    let t = ws.table("customers", "2024-04-15");
    assert_eq!(
        t.rows(),
        6,
        "a b c d e f; the rejected rows' customers are not customers"
    );
    let a = t.find(&[("customer_id", "a")]);
    assert_eq!(t.str("channel", a).as_deref(), Some("web"));
    assert_eq!(t.date("cohort", a).as_deref(), Some("2024-01-01"));
    assert_eq!(
        t.ts("first_purchase_at", a).as_deref(),
        Some("2024-01-10T09:00:00Z")
    );
    assert_eq!(
        t.ts("last_purchase_at", a).as_deref(),
        Some("2024-02-05T09:00:00Z")
    );
    assert_eq!(t.int("orders", a), Some(2));
    assert!(approx(t.f64("revenue", a), 30.0)); // 10 + 20; the 04-20 order is after as_of
    assert!(approx(t.f64("avg_order_value", a), 15.0)); // 30 / 2
    assert_eq!(t.int("lifespan_months", a), Some(2)); // Jan..Feb inclusive
    assert!(approx(t.f64("purchases_per_month", a), 1.0)); // 2 / 2
    assert!(approx(t.f64("ltv", a), 30.0)); // 15 × 1 × 1 × 2 = revenue × margin
                                            // 02-05 → 04-15: 24 days left in Feb (leap year: 29 − 5) + 31 + 15 = 70.
    assert_eq!(t.int("days_since_last_purchase", a), Some(70));
    assert_eq!(t.str("status", a).as_deref(), Some("churned"));
    // churned_at = last purchase + 31 days = 2024-03-07T09:00Z.
    assert_eq!(
        t.ts("churned_at", a).as_deref(),
        Some("2024-03-07T09:00:00Z")
    );
    // BTYD: 2 purchase days → frequency 1; recency 01-10 → 02-05 = 26; T 01-10 → 04-15 =
    // 21 + 29 + 31 + 15 = 96; monetary = mean of repeat days = 20.00.
    assert_eq!(t.int("frequency", a), Some(1));
    assert_eq!(t.int("recency", a), Some(26));
    assert_eq!(t.int("T", a), Some(96));
    assert!(approx(t.f64("monetary_value", a), 20.0));

    let c = t.find(&[("customer_id", "c")]);
    // c1 = 7.50 + 2.50 − 2.50 = 7.50 net, refunds 2.50; one purchase.
    assert!(approx(t.f64("revenue", c), 7.5));
    assert!(approx(t.f64("refunds", c), 2.5));
    assert_eq!(t.int("orders", c), Some(1));
    assert_eq!(t.int("frequency", c), Some(0));
    assert!(approx(t.f64("monetary_value", c), 0.0));

    let d = t.find(&[("customer_id", "d")]);
    // Refund only: never acquired.
    assert_eq!(t.int("orders", d), Some(0));
    assert!(approx(t.f64("revenue", d), -4.0));
    assert_eq!(t.date("cohort", d), None);
    assert_eq!(t.str("status", d), None);
    assert_eq!(t.str("channel", d).as_deref(), Some("__unknown__"));
    assert_eq!(t.str("rfm_segment", d), None);

    let e = t.find(&[("customer_id", "e")]);
    // e1 refunded in full is exactly 0 (not a purchase); acquired by e2 on 04-01.
    assert_eq!(t.int("orders", e), Some(1));
    assert!(approx(t.f64("revenue", e), 3.0));
    assert!(approx(t.f64("refunds", e), 12.0));
    assert_eq!(t.date("cohort", e).as_deref(), Some("2024-04-01"));
    assert_eq!(t.str("channel", e).as_deref(), Some("web"));
    assert_eq!(t.str("status", e).as_deref(), Some("active"));
    assert_eq!(t.ts("churned_at", e), None);

    let f = t.find(&[("customer_id", "f")]);
    assert_eq!(t.int("lifespan_months", f), Some(3)); // Jan..Mar
    assert!(approx(t.f64("purchases_per_month", f), 2.0 / 3.0));
    assert_eq!(t.str("status", f).as_deref(), Some("active")); // 03-25 + 31 d > 04-16
    assert_eq!(t.int("recency", f), Some(80)); // 01-05 → 03-25: 26 + 29 + 25
    assert_eq!(t.int("T", f), Some(101)); // 01-05 → 04-15: 26 + 29 + 31 + 15

    // RFM over the 5 acquired customers (n = 5, score = 1 + w):
    // days since last: a 70, b 86, c 43, e 14, f 21 → R: a 2, b 1, c 3, e 5, f 4
    // orders: a 2, b 1, c 1, e 1, f 2 → F: a 4, b 1, c 1, e 1, f 4
    // revenue: a 30, b 5, c 7.5, e 3, f 3 → M: a 5, b 3, c 4, e 1, f 1
    for (id, r, fq, m, seg) in [
        ("a", 2, 4, 5, "loyal"),
        ("b", 1, 1, 3, "hibernating"),
        ("c", 3, 1, 4, "needs_attention"),
        ("e", 5, 1, 1, "promising"),
        ("f", 4, 4, 1, "loyal"),
    ] {
        let i = t.find(&[("customer_id", id)]);
        assert_eq!(t.int("rfm_r", i), Some(r), "{id} R");
        assert_eq!(t.int("rfm_f", i), Some(fq), "{id} F");
        assert_eq!(t.int("rfm_m", i), Some(m), "{id} M");
        assert_eq!(t.str("rfm_segment", i).as_deref(), Some(seg), "{id}");
    }
}

#[test]
fn cohorts_by_hand() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-04-15");
    let t = ws.table("cohorts", "2024-04-15");
    let jan = t.filter(&[("segment_by", "all"), ("cohort", "2024-01-01")]);
    // Jan cohort = a, b, f (size 3), offsets 0..3 (Jan..Apr).
    // purchases in period: Jan a,b,f = 3; Feb a = 1; Mar f = 1; Apr 0.
    // active at period end: Feb 1: a,b,f = 3; Mar 1: a = 1; Apr 1: f = 1; Apr 16: f = 1
    //   → churned 0, 2, 2, 2 (f, reactivated in Mar, leaves the count at k = 2).
    // Ever churned by the end of k: b and f lapse at Mar 1 (k = 1), a at Apr 1 (k = 2), and
    // f's return does not undo it → 0, 2, 3, 3; survival_rate = (1 − ever / 3) × 100 =
    // 100, 33.3, 0, 0, where active_rate = (1 − churned / 3) × 100 = 100, 33.3, 33.3, 33.3.
    // revenue: 16 (10 + 5 + 1), 20, 2, 0 → cumulative 16, 36, 38, 38; ltv_to_date = cum / 3.
    let expected = [
        (0, 3, 0, 0, 16.0, 16.0),
        (1, 1, 2, 2, 20.0, 36.0),
        (2, 1, 2, 3, 2.0, 38.0),
        (3, 0, 2, 3, 0.0, 38.0),
    ];
    assert_eq!(jan.len(), 4);
    for (i, (k, active, churned, ever, rev, cum)) in jan.into_iter().zip(expected) {
        assert_eq!(t.int("period_offset", i), Some(k));
        assert_eq!(t.int("cohort_size", i), Some(3));
        assert_eq!(t.int("active_customers", i), Some(active), "k={k}");
        assert_eq!(t.int("churned_customers", i), Some(churned), "k={k}");
        assert_eq!(t.int("ever_churned_customers", i), Some(ever), "k={k}");
        assert!(approx(t.f64("revenue", i), rev), "k={k}");
        assert!(approx(t.f64("cumulative_revenue", i), cum), "k={k}");
        assert!(approx(t.f64("ltv_to_date", i), cum / 3.0), "k={k}");
        assert!(approx(
            t.f64("retention_rate", i),
            active as f64 / 3.0 * 100.0
        ));
        assert!(approx(
            t.f64("active_rate", i),
            (1.0 - churned as f64 / 3.0) * 100.0
        ));
        assert!(approx(
            t.f64("survival_rate", i),
            (1.0 - ever as f64 / 3.0) * 100.0
        ));
    }
    // Mar cohort = c: Mar active 1, churned 0; Apr active 0, churned 1 (not active at Apr 16).
    let mar = t.filter(&[("segment_by", "all"), ("cohort", "2024-03-01")]);
    assert_eq!(mar.len(), 2);
    assert_eq!(t.int("churned_customers", mar[0]), Some(0));
    assert_eq!(t.int("churned_customers", mar[1]), Some(1));
    assert_eq!(t.int("ever_churned_customers", mar[1]), Some(1));
    assert!(approx(t.f64("survival_rate", mar[1]), 0.0));
    assert!(approx(t.f64("revenue", mar[0]), 7.5));
    assert!(!t.bool("is_complete", mar[1]));
    // Apr cohort = e only; e's zero-value January order lies before the cohort.
    let apr = t.filter(&[("segment_by", "all"), ("cohort", "2024-04-01")]);
    assert_eq!(apr.len(), 1);
    assert!(approx(t.f64("revenue", apr[0]), 3.0));
    // Cohort sizes sum to acquired customers: 3 + 1 + 1 = 5.
}

#[test]
fn ltv_by_hand() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-04-15");
    let t = ws.table("ltv", "2024-04-15");
    let i = (0..t.rows())
        .find(|&i| {
            t.str("segment_by", i).as_deref() == Some("all") && t.date("cohort", i).is_none()
        })
        .unwrap();
    // Acquired: a, b, c, e, f. revenue 30 + 5 + 7.5 + 3 + 3 = 48.5; purchases 2+1+1+1+2 = 7;
    // Σ lifespan 2+1+1+1+3 = 8. S = 48.5 / 7, C = 7 / 8, P = 1, t = 8 / 5 = 1.6,
    // ltv = S·C·P·t = 48.5 / 5 = 9.7, clv = S·C·P = 48.5 / 8 = 6.0625.
    assert_eq!(t.int("customers", i), Some(5));
    assert!(approx(t.f64("revenue", i), 48.5));
    assert_eq!(t.int("purchases", i), Some(7));
    assert!(approx(t.f64("avg_order_value", i), 48.5 / 7.0));
    assert!(approx(t.f64("purchases_per_month", i), 0.875));
    assert!(approx(t.f64("margin", i), 1.0));
    assert!(approx(t.f64("lifespan_months", i), 1.6));
    assert!(approx(t.f64("ltv", i), 9.7));
    assert!(approx(t.f64("clv", i), 6.0625));
    // rfm_segment rows: loyal = a + f → 2 customers, revenue 33.
    let loyal = t.find(&[("segment_by", "rfm_segment"), ("segment", "loyal")]);
    assert_eq!(t.int("customers", loyal), Some(2));
    assert!(approx(t.f64("revenue", loyal), 33.0));
}

#[test]
fn rejects_and_accounting() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-04-15");
    let t = ws.table("rejects", "2024-04-15");
    // Data rows 14 ("abc") and 15 (empty customer_id).
    assert_eq!(t.rows(), 2);
    assert_eq!(t.int("source_row", 0), Some(14));
    assert_eq!(t.str("reason", 0).as_deref(), Some("amount: not a number"));
    assert_eq!(t.str("amount", 0).as_deref(), Some("abc"));
    assert_eq!(t.int("source_row", 1), Some(15));
    assert_eq!(
        t.str("reason", 1).as_deref(),
        Some("customer_id: missing or empty")
    );
    let m = ws.manifest("2024-04-15");
    // 15 rows read = 12 used + 2 rejected + 1 after as_of (a3 on 04-20).
    assert_eq!(m["rows_read"], 15);
    assert_eq!(m["rows_used"], 12);
    assert_eq!(m["rows_rejected"], 2);
    assert_eq!(m["rows_after_as_of"], 1);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["as_of"], "2024-04-15");
    assert_eq!(m["tables"]["customers"]["rows"], 6);
}

#[test]
fn last_assignment_moves_customers() {
    // With "last", f's last purchase (03-25) is web, and e's is web: web = {a, e, f}.
    let ws = fixture_a(&format!("{MONTH_31}\nsegment_assignment = \"last\""));
    ws.run_ok("2024-04-15");
    let t = ws.table("customers", "2024-04-15");
    let f = t.find(&[("customer_id", "f")]);
    assert_eq!(t.str("channel", f).as_deref(), Some("web"));
    let r = ws.table("retention", "2024-04-15");
    let web_apr = r.find(&[
        ("segment_by", "channel"),
        ("segment", "web"),
        ("period_start", "2024-04-01"),
    ]);
    // S at Apr 1 = f; E at Apr 16 = e, f.
    assert_eq!(r.int("customers_start", web_apr), Some(1));
    assert_eq!(r.int("customers_end", web_apr), Some(2));
}

#[test]
fn quarter_and_year_periods() {
    // Quarter, churn window 92 d. B0 = Jan 1, B1 = Apr 1, B2 = Apr 16.
    // Active at Apr 1: purchases since Dec 31 → a, b, c, f = 4 (e has no Q1 purchase).
    // Active at Apr 16: purchases since Jan 15 → a (02-05), b (01-20), c, e, f (03-25) = 5.
    let ws = fixture_a("period = \"quarter\"\nchurn_window_days = 92");
    ws.run_ok("2024-04-15");
    let t = ws.table("retention", "2024-04-15");
    let all = t.filter(&[("segment", "__all__")]);
    assert_eq!(all.len(), 2);
    assert_eq!(
        t.date("period_start", all[0]).as_deref(),
        Some("2024-01-01")
    );
    assert_eq!(t.int("customers_end", all[0]), Some(4));
    assert_eq!(t.int("customers_new", all[0]), Some(4));
    assert_eq!(
        t.date("period_start", all[1]).as_deref(),
        Some("2024-04-01")
    );
    assert_eq!(t.int("customers_start", all[1]), Some(4));
    assert_eq!(t.int("customers_end", all[1]), Some(5));
    assert!(approx(t.f64("crr", all[1]), 100.0)); // (5 − 1) / 4 × 100

    // Year, churn window 366 d: one partial period 2024-01-01 .. 2024-04-16 with N = E = 5.
    let ws = fixture_a("period = \"year\"\nchurn_window_days = 366");
    ws.run_ok("2024-04-15");
    let t = ws.table("retention", "2024-04-15");
    let all = t.filter(&[("segment", "__all__")]);
    assert_eq!(all.len(), 1);
    assert_eq!(t.int("customers_new", all[0]), Some(5));
    assert_eq!(t.int("customers_end", all[0]), Some(5));
    assert_eq!(t.date("period_end", all[0]).as_deref(), Some("2024-04-16"));
    assert!(!t.bool("is_complete", all[0]));
}

#[test]
fn week_periods() {
    // ISO weeks: first order 2024-01-05 (Fri) → week of Mon 2024-01-01; as_of Mon 2024-04-15
    // starts week 16 (105 days / 7 = 15 weeks later) → 16 periods, the last one partial
    // [04-15, 04-16).
    let ws = fixture_a("period = \"week\"\nchurn_window_days = 31");
    ws.run_ok("2024-04-15");
    let t = ws.table("retention", "2024-04-15");
    let all = t.filter(&[("segment", "__all__")]);
    assert_eq!(all.len(), 16);
    let last = *all.last().unwrap();
    assert_eq!(t.date("period_start", last).as_deref(), Some("2024-04-15"));
    assert_eq!(t.date("period_end", last).as_deref(), Some("2024-04-16"));
    assert!(!t.bool("is_complete", last));
    let new: i64 = all
        .iter()
        .map(|&i| t.int("customers_new", i).unwrap())
        .sum();
    assert_eq!(new, 5);
    // e's first purchase (Mon 04-01) is in the week starting 04-01.
    let w = t.find(&[("segment", "__all__"), ("period_start", "2024-04-01")]);
    assert_eq!(t.int("customers_new", w), Some(1));
}

#[test]
fn month_boundary_in_berlin() {
    // 2024-01-31T23:30Z is 2024-02-01 00:30 in Berlin: a February customer there, January in
    // UTC. A naive "2024-03-01 00:15" is read as Berlin time: March.
    let ws = Workspace::new();
    ws.write(
        "tx.csv",
        "customer_id,order_id,ts,amount,channel\n\
         p,p1,2024-01-31T23:30:00Z,10.00,web\n\
         q,q1,2024-03-01 00:15:00,5.00,web\n",
    );
    ws.config(
        &["tx.csv"],
        DEFAULT_COLUMNS,
        "timezone = \"Europe/Berlin\"",
        "",
    );
    ws.run_ok("2024-03-31");
    let t = ws.table("customers", "2024-03-31");
    let p = t.find(&[("customer_id", "p")]);
    assert_eq!(t.date("cohort", p).as_deref(), Some("2024-02-01"));
    let q = t.find(&[("customer_id", "q")]);
    assert_eq!(t.date("cohort", q).as_deref(), Some("2024-03-01"));
    // The naive Berlin 00:15 (UTC+1) is 2024-02-29T23:15Z.
    assert_eq!(
        t.ts("first_purchase_at", q).as_deref(),
        Some("2024-02-29T23:15:00Z")
    );
    let r = ws.table("retention", "2024-03-31");
    let all = r.filter(&[("segment", "__all__")]);
    assert_eq!(all.len(), 2, "Feb and Mar in Berlin");
    assert!(
        r.bool("is_complete", all[1]),
        "as_of is the last day of March"
    );

    // The same file in UTC: p is a January customer.
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, "", "");
    ws.run_ok("2024-03-31");
    let t = ws.table("customers", "2024-03-31");
    let p = t.find(&[("customer_id", "p")]);
    assert_eq!(t.date("cohort", p).as_deref(), Some("2024-01-01"));
}

#[test]
fn same_day_and_one_purchase_customers() {
    // g buys twice on 2024-05-02 (two orders) and once on 05-20; h buys once.
    // g: frequency = 2 distinct days − 1 = 1; monetary = 05-20's 4.00; recency 18; orders 3.
    // h: frequency 0, recency 0, monetary 0, lifespan 1, C = 1, T = 05-31 − 05-10 = 21.
    let ws = Workspace::new();
    ws.write(
        "tx.csv",
        "customer_id,order_id,ts,amount,channel\n\
         g,g1,2024-05-02T08:00:00Z,1.00,web\n\
         g,g2,2024-05-02T18:00:00Z,2.00,web\n\
         g,g3,2024-05-20T08:00:00Z,4.00,web\n\
         h,h1,2024-05-10T08:00:00Z,9.99,app\n",
    );
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, "", "");
    ws.run_ok("2024-05-31");
    let t = ws.table("customers", "2024-05-31");
    let g = t.find(&[("customer_id", "g")]);
    assert_eq!(t.int("orders", g), Some(3));
    assert_eq!(t.int("frequency", g), Some(1));
    assert_eq!(t.int("recency", g), Some(18));
    assert!(approx(t.f64("monetary_value", g), 4.0));
    assert!(approx(t.f64("avg_order_value", g), 7.0 / 3.0));
    let h = t.find(&[("customer_id", "h")]);
    assert_eq!(t.int("frequency", h), Some(0));
    assert_eq!(t.int("T", h), Some(21));
    assert!(approx(t.f64("monetary_value", h), 0.0));
    assert!(approx(t.f64("purchases_per_month", h), 1.0));
    assert!(approx(t.f64("ltv", h), 9.99));
}

#[test]
fn rerun_replaces_only_that_partition() {
    let ws = fixture_a(MONTH_31);
    ws.run_ok("2024-03-31");
    ws.run_ok("2024-04-15");
    let before = std::fs::read_dir(ws.path("out/customers/as_of=2024-03-31"))
        .unwrap()
        .count();
    let m1 = ws.manifest("2024-04-15");
    ws.run_ok("2024-04-15");
    let m2 = ws.manifest("2024-04-15");
    assert_ne!(m1["run_id"], m2["run_id"]);
    // One file in the rerun partition, named for the new run; the other date untouched.
    let files: Vec<String> = std::fs::read_dir(ws.path("out/customers/as_of=2024-04-15"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        files,
        vec![format!("part-{}.parquet", m2["run_id"].as_str().unwrap())]
    );
    assert_eq!(
        std::fs::read_dir(ws.path("out/customers/as_of=2024-03-31"))
            .unwrap()
            .count(),
        before
    );
    assert!(
        !ws.path("out/_staging").exists()
            || std::fs::read_dir(ws.path("out/_staging")).unwrap().count() == 0
    );
    // As of 03-31 nothing from April is seen: e has no purchase yet.
    let t = ws.table("customers", "2024-03-31");
    let e = t.find(&[("customer_id", "e")]);
    assert_eq!(t.int("orders", e), Some(0));
}

#[test]
fn acquisition_spend_gives_cac() {
    // Spend: all 30.00 in Jan, web 10.00 in Apr, and 1000.00 in May (after as_of: ignored).
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    ws.write(
        "spend.csv",
        "segment_by,segment,period_start,spend\nall,__all__,2024-01-01,30.00\nchannel,web,2024-04-01,10.00\nall,__all__,2024-05-01,1000.00\n",
    );
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, MONTH_31, "");
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        format!(
            "{cfg}[spend]\npath = {:?}\n",
            ws.path("spend.csv").display().to_string()
        ),
    );
    ws.run_ok("2024-04-15");
    let t = ws.table("ltv", "2024-04-15");
    let all = (0..t.rows())
        .find(|&i| {
            t.str("segment_by", i).as_deref() == Some("all") && t.date("cohort", i).is_none()
        })
        .unwrap();
    // cac = 30 / 5 customers = 6; ltv 9.7 → ltv_to_cac = 9.7 / 6; payback = cac / clv = 6 / 6.0625.
    assert!(approx(t.f64("cac", all), 6.0));
    assert!(approx(t.f64("ltv_to_cac", all), 9.7 / 6.0));
    assert!(approx(t.f64("payback_months", all), 6.0 / 6.0625));
    // Jan cohort (a, b, f): cac = 30 / 3 = 10; ltv = (30 + 5 + 3) / 3; clv = 38 / (2 + 1 + 3).
    let jan = t.find(&[("segment_by", "all"), ("cohort", "2024-01-01")]);
    assert!(approx(t.f64("cac", jan), 10.0));
    assert!(approx(t.f64("ltv_to_cac", jan), 38.0 / 3.0 / 10.0));
    assert!(approx(t.f64("payback_months", jan), 10.0 / (38.0 / 6.0)));
    // web, Apr cohort (e): cac 10 / 1; ltv = clv = 3 → ratio 0.3, payback 10 / 3.
    let web = t.find(&[
        ("segment_by", "channel"),
        ("segment", "web"),
        ("cohort", "2024-04-01"),
    ]);
    assert!(approx(t.f64("cac", web), 10.0));
    assert!(approx(t.f64("ltv_to_cac", web), 0.3));
    assert!(approx(t.f64("payback_months", web), 10.0 / 3.0));
    // No spend for app: null.
    let app = t.find(&[("segment_by", "channel"), ("segment", "app")]);
    assert_eq!(t.f64("cac", app), None);
}
