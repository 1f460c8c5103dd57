#!/usr/bin/env python3
"""Hand-written reference implementations of the `retention` and `cohorts` tables.

Two independent engines compute the same two tables so a benchmark can time them next to
`customer-value run` and check that all three agree:

    reference.py duckdb  INPUT_PATH AS_OF OUT_DIR     # DuckDB SQL (default threads)
    reference.py polars  INPUT_PATH AS_OF OUT_DIR     # Polars lazy API, streaming engine
    reference.py compare OUR_OUTPUT_DIR AS_OF REF_OUT_DIR
    reference.py lifetimes OUR_OUTPUT_DIR AS_OF       # time `lifetimes` fitting our customers

INPUT_PATH is one .csv or .parquet file with the columns of `customer-value generate`:
customer_id, order_id, ts, amount, cost, channel, region. The engines write
OUT_DIR/retention.parquet and OUT_DIR/cohorts.parquet, segments limited to `all` and `channel`.
Fixed settings (those of config/default.toml): month periods, UTC, churn window W = 90 days,
segment_assignment = "first". Every line is assumed to carry an order_id (true of generated data).
Ties (two lines of an order, or two orders of a customer, at the same earliest instant with
different channels) are broken arbitrarily; generated data has none that matter.

Definitions (SPEC.md §2-4). Let D = as_of, cutoff = D + 1 day 00:00 UTC.
  * Lines with ts >= cutoff are ignored; lines with an empty customer_id or an unparseable
    ts/amount are dropped (the job rejects them). customer_id and segment values are trimmed;
    text amounts are rounded to cents half away from zero (as the job does).
  * Order = lines with the same (customer_id, order_id): time = min line ts, value = sum of
    line amounts in integer cents (exact), channel = channel on its earliest line.
    Purchase = order with value > 0.
  * Customer: cohort = month of the first purchase; channel = channel of the first purchase
    order (first order when the customer never purchased); null/empty -> '__unknown__'.
  * Periods j = 0..n-1 are calendar months from the month of the earliest order to D's month;
    boundaries B_0..B_n with B_j = start of month j and B_n = cutoff.
  * Active at instant t: some purchase p with p < t and t - p <= W.

How activity is computed without a customer x period grid
----------------------------------------------------------
Everything below works on "customer-months": one row per (customer, month with an order).
For a month m in which the customer purchased, let p_m be the LAST purchase in m. It makes the
customer active exactly at the boundaries j in [m+1, hi_m], where hi_m = the last boundary with
B_j <= p_m + W (= n when p_m + W >= cutoff, else the index of the month containing p_m + W).
Since W >= 31 days, hi_m >= m+1, and hi_m is non-decreasing in m. With hi_prev = hi of the
customer's previous purchase month and m_next = its next purchase month:
  * the boundaries newly covered by m are [max(m+1, hi_prev+1), hi_m]: disjoint pieces, so the
    number of active customers at boundary b is a running sum of +1/-1 "diffs";
  * the customer enters (active at B_{m+1}, not at B_m) iff hi_prev is null (first purchase:
    a new customer of period m) or hi_prev < m (a reactivation in period m);
  * the customer churns in period hi_m (active at B_hi, not at B_hi+1) iff hi_m < n and
    (m_next is null or m_next > hi_m).
These events are summed per (channel, cohort, index) into a tiny table from which both output
tables are assembled on dense grids. The `all` rows are sums of the channel rows (each customer
has exactly one channel), so the heavy work is done once.
"""
from __future__ import annotations

import datetime as dt
import os
import sys

WINDOW_DAYS = 90  # churn window W (config: metrics.churn_window_days)
assert WINDOW_DAYS >= 31, "the interval method below needs W >= the longest month (SPEC §2)"
UNKNOWN = "__unknown__"

RETENTION_KEYS = ["segment_by", "segment", "period_start"]
RETENTION_INTS = ["customers_start", "customers_end", "customers_new", "churned", "reactivated", "purchases"]
RETENTION_MONEY = ["revenue"]
COHORT_KEYS = ["segment_by", "segment", "cohort", "period_offset"]
COHORT_INTS = ["cohort_size", "active_customers", "churned_customers", "purchases"]
COHORT_MONEY = ["revenue", "cumulative_revenue"]


def month_index(d: dt.date | dt.datetime) -> int:
    """Absolute month number (year * 12 + month - 1); consecutive months differ by 1."""
    return d.year * 12 + d.month - 1


def is_csv(path: str) -> bool:
    lower = path.lower()
    if lower.endswith(".csv"):
        return True
    if lower.endswith((".parquet", ".pq")):
        return False
    sys.exit(f"reference.py: cannot tell the format of {path} (expected .csv or .parquet)")


# =============================================================================================
# DuckDB
# =============================================================================================
def run_duckdb(path: str, as_of: dt.date, out_dir: str) -> None:
    import duckdb

    cutoff = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())  # naive UTC
    con = duckdb.connect()
    # Naive text timestamps are read as UTC. Instants are then kept as naive TIMESTAMPs holding UTC
    # wall-clock time: make_timestamp(epoch_us(x)) is exact and far cheaper than an ICU cast.
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")  # no ordering needed until the final COPY

    src = path.replace("'", "''")
    if is_csv(path):
        # Everything as text, then parse: exact DECIMAL amounts, ISO timestamps (…Z or naive).
        lines = f"""
            SELECT trim(customer_id) AS cid, order_id AS oid,
                   make_timestamp(epoch_us(TRY_CAST(ts AS TIMESTAMPTZ))) AS ts,
                   (TRY_CAST(amount AS DECIMAL(18, 2)) * 100)::BIGINT AS cents,
                   coalesce(nullif(trim(channel), ''), '{UNKNOWN}') AS ch
            FROM read_csv('{src}', all_varchar = true, header = true)"""
    else:
        # float64 amounts with 2 decimals: round(x * 100) is the exact cent value.
        lines = f"""
            SELECT trim(customer_id::VARCHAR) AS cid, order_id::VARCHAR AS oid,
                   make_timestamp(epoch_us(ts)) AS ts,
                   round(amount * 100)::BIGINT AS cents,
                   coalesce(nullif(trim(channel::VARCHAR), ''), '{UNKNOWN}') AS ch
            FROM read_parquet('{src}')
            WHERE ts < TIMESTAMPTZ '{cutoff}+00'  /* raw column: lets row groups be skipped */"""
    lines = f"""
        SELECT * FROM ({lines})
        WHERE ts < TIMESTAMP '{cutoff}' AND cid IS NOT NULL AND cid <> '' AND cents IS NOT NULL"""

    # 1. lines -> orders -> customer-months (the only pass over the input).
    con.execute(f"""
        CREATE TEMP TABLE cm AS
        WITH orders AS (
            SELECT cid, min(ts) AS ts, sum(cents) AS cents, arg_min(ch, ts) AS ch
            FROM ({lines}) GROUP BY cid, oid
        )
        SELECT cid,
               year(ts) * 12 + month(ts) - 1                     AS mi,     -- absolute month
               sum(cents)                                        AS rev,    -- all orders, cents
               count(*) FILTER (WHERE cents > 0)                 AS np,     -- purchases
               max(ts) FILTER (WHERE cents > 0)                  AS plast,  -- last purchase
               min(ts) FILTER (WHERE cents > 0)                  AS pfirst, -- first purchase
               arg_min(ch, ts) FILTER (WHERE cents > 0)          AS pch,    -- its channel
               min(ts)                                           AS ofirst, -- first order
               arg_min(ch, ts)                                   AS och     -- its channel
        FROM orders GROUP BY cid, mi""")

    m0 = con.execute("SELECT min(mi) FROM cm").fetchall()[0][0]
    if m0 is None:
        sys.exit("reference.py: no usable rows on or before as_of")
    n = month_index(as_of) - m0 + 1  # periods 0..n-1, boundaries 0..n

    # 2. customers: acquisition channel and cohort (absolute month); joined onto customer-months.
    con.execute("""
        CREATE TEMP TABLE cust AS
        SELECT cid,
               coalesce(arg_min(pch, pfirst) FILTER (WHERE np > 0), arg_min(och, ofirst)) AS seg,
               min(mi) FILTER (WHERE np > 0) AS cmi
        FROM cm GROUP BY cid""")
    con.execute(f"""
        CREATE TEMP TABLE cmx AS
        SELECT cm.cid, cust.seg, cust.cmi - {m0} AS c, cm.mi - {m0} AS j, cm.rev, cm.np, cm.plast
        FROM cm JOIN cust USING (cid)""")
    con.execute("DROP TABLE cm")

    # 3. purchase months with their activity interval [j+1, hi] and the neighbours' hi / j.
    hi_month = f"year(plast + INTERVAL {WINDOW_DAYS} DAY) * 12 + month(plast + INTERVAL {WINDOW_DAYS} DAY) - 1 - {m0}"
    con.execute(f"""
        CREATE TEMP TABLE pm AS
        WITH x AS (
            SELECT cid, seg, c, j,
                   CASE WHEN plast + INTERVAL {WINDOW_DAYS} DAY >= TIMESTAMP '{cutoff}' THEN {n}
                        ELSE {hi_month} END AS hi
            FROM cmx WHERE np > 0
        ), y AS (
            SELECT seg, c, j, hi,
                   lag(hi) OVER w  AS hi_prev,
                   lead(j) OVER w  AS j_next
            FROM x WINDOW w AS (PARTITION BY cid ORDER BY j)
        )
        SELECT *, greatest(j + 1, coalesce(hi_prev + 1, 0)) AS lo FROM y""")

    # 4. events per (channel, cohort, index). `active`, `react` and `churn` are indexed by period,
    #    `d` (active-count diff) by boundary.
    con.execute(f"""
        CREATE TEMP TABLE ev AS
        SELECT seg, c, j, sum(active) AS active, sum(react) AS react, sum(churn) AS churn, sum(d) AS d
        FROM (
            SELECT seg, c, j, 1 AS active, (coalesce(hi_prev < j, false))::INT AS react, 0 AS churn, 0 AS d FROM pm
            UNION ALL
            SELECT seg, c, hi, 0, 0, 1, 0 FROM pm WHERE hi < {n} AND (j_next IS NULL OR j_next > hi)
            UNION ALL
            SELECT seg, c, lo, 0, 0, 0, 1 FROM pm WHERE lo <= hi
            UNION ALL
            SELECT seg, c, hi + 1, 0, 0, 0, -1 FROM pm WHERE lo <= hi AND hi < {n}
        ) GROUP BY ALL""")
    con.execute("""
        CREATE TEMP TABLE rv AS
        SELECT seg, c, j, sum(rev) AS rev, sum(np) AS np FROM cmx GROUP BY ALL""")
    con.execute(f"""
        CREATE TEMP TABLE sizes AS
        SELECT seg, cmi - {m0} AS c, count(*) AS size FROM cust WHERE cmi IS NOT NULL GROUP BY ALL""")
    con.execute("CREATE TEMP TABLE segs AS SELECT DISTINCT seg FROM cust")

    def month_date(expr: str) -> str:
        return f"make_date((({m0} + {expr}) // 12)::INT, (({m0} + {expr}) % 12 + 1)::INT, 1)"

    os.makedirs(out_dir, exist_ok=True)

    # 5. retention: channel rows on a dense (channel x period) grid, then `all` = their sum.
    retention = f"""
        WITH evs AS (
            SELECT seg, j, sum(react) AS react, sum(churn) AS churn, sum(d) AS d FROM ev GROUP BY ALL
        ), act AS (   -- active customers at boundary b = running sum of diffs
            SELECT s.seg, r.b, sum(coalesce(e.d, 0)) OVER (PARTITION BY s.seg ORDER BY r.b) AS a
            FROM segs s CROSS JOIN range(0, {n} + 1) r(b) LEFT JOIN evs e ON e.seg = s.seg AND e.j = r.b
        ), rvs AS (
            SELECT seg, j, sum(rev) AS rev, sum(np) AS np FROM rv GROUP BY ALL
        ), nw AS (
            SELECT seg, c AS j, size FROM sizes
        ), ch AS (
            SELECT g.seg, g.j,
                   a0.a AS customers_start, a1.a AS customers_end,
                   coalesce(nw.size, 0) AS customers_new,
                   coalesce(evs.churn, 0) AS churned, coalesce(evs.react, 0) AS reactivated,
                   coalesce(rvs.rev, 0) AS rev, coalesce(rvs.np, 0) AS purchases
            FROM (SELECT seg, j FROM segs CROSS JOIN range(0, {n}) r(j)) g
            JOIN act a0 ON a0.seg = g.seg AND a0.b = g.j
            JOIN act a1 ON a1.seg = g.seg AND a1.b = g.j + 1
            LEFT JOIN nw  ON nw.seg  = g.seg AND nw.j  = g.j
            LEFT JOIN evs ON evs.seg = g.seg AND evs.j = g.j
            LEFT JOIN rvs ON rvs.seg = g.seg AND rvs.j = g.j
        ), u AS (
            SELECT 'channel' AS segment_by, seg AS segment, * EXCLUDE (seg) FROM ch
            UNION ALL
            SELECT 'all', '__all__', j, sum(customers_start), sum(customers_end), sum(customers_new),
                   sum(churned), sum(reactivated), sum(rev), sum(purchases)
            FROM ch GROUP BY j
        )
        SELECT segment_by, segment, {month_date('j')} AS period_start,
               customers_start::BIGINT AS customers_start, customers_end::BIGINT AS customers_end,
               customers_new::BIGINT AS customers_new, churned::BIGINT AS churned,
               reactivated::BIGINT AS reactivated, rev::DOUBLE / 100 AS revenue,
               purchases::BIGINT AS purchases
        FROM u ORDER BY segment_by, segment, period_start"""
    con.execute(f"COPY ({retention}) TO '{os.path.join(out_dir, 'retention.parquet')}' (FORMAT parquet)")

    # 6. cohorts: (channel, cohort) x period j >= cohort, then `all` = sum over channels.
    cohorts = f"""
        WITH g AS (
            SELECT z.seg, z.c, z.size, r.j FROM sizes z JOIN range(0, {n}) r(j) ON r.j >= z.c
        ), ch AS (
            SELECT g.seg, g.c, g.j, g.size,
                   coalesce(ea.active, 0) AS active,
                   -- active at B_{{j+1}}: running sum of this cohort's diffs (all at b >= c+1)
                   g.size - sum(coalesce(ed.d, 0)) OVER (PARTITION BY g.seg, g.c ORDER BY g.j) AS churned,
                   coalesce(rv.rev, 0) AS rev, coalesce(rv.np, 0) AS purchases
            FROM g
            LEFT JOIN ev ea ON ea.seg = g.seg AND ea.c = g.c AND ea.j = g.j
            LEFT JOIN ev ed ON ed.seg = g.seg AND ed.c = g.c AND ed.j = g.j + 1
            LEFT JOIN rv    ON rv.seg = g.seg AND rv.c = g.c AND rv.j = g.j
        ), u AS (
            SELECT 'channel' AS segment_by, seg AS segment, c, j, size, active, churned, rev, purchases FROM ch
            UNION ALL
            SELECT 'all', '__all__', c, j, sum(size), sum(active), sum(churned), sum(rev), sum(purchases)
            FROM ch GROUP BY c, j
        )
        SELECT segment_by, segment, {month_date('c')} AS cohort, (j - c)::BIGINT AS period_offset,
               size::BIGINT AS cohort_size, active::BIGINT AS active_customers,
               churned::BIGINT AS churned_customers, rev::DOUBLE / 100 AS revenue,
               purchases::BIGINT AS purchases,
               (sum(rev) OVER (PARTITION BY segment_by, segment, c ORDER BY j))::DOUBLE / 100
                   AS cumulative_revenue
        FROM u ORDER BY segment_by, segment, cohort, period_offset"""
    con.execute(f"COPY ({cohorts}) TO '{os.path.join(out_dir, 'cohorts.parquet')}' (FORMAT parquet)")


# =============================================================================================
# Polars (lazy)
# =============================================================================================
def run_polars(path: str, as_of: dt.date, out_dir: str) -> None:
    import polars as pl

    cutoff = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())  # naive UTC
    c_ = pl.col

    if is_csv(path):
        lf = pl.scan_csv(path, infer_schema=False)  # every column as String
        # Exports write `2024-08-26T15:18:35Z`; that exact format has a fast strptime path (about 2.4x
        # faster than format inference). Use it when a sample of the file is all in that format.
        # Otherwise accept the ISO 8601 variants value by value (Polars' own inference fixes one
        # format per column): with offset/Z -> converted to UTC, naive -> read as UTC, date -> 00:00.
        fast = "%Y-%m-%dT%H:%M:%SZ"
        sample = pl.read_csv(path, infer_schema=False, n_rows=10_000, columns=["ts"])["ts"].drop_nulls()
        if sample.len() > 0 and sample.str.strptime(pl.Datetime("us"), fast, strict=False).null_count() == 0:
            ts = c_("ts").str.strptime(pl.Datetime("us"), fast, strict=False)
        else:
            aware = [
                c_("ts").str.strptime(pl.Datetime("us", "UTC"), f, strict=False).dt.replace_time_zone(None)
                for f in ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
            ]
            naive = [
                c_("ts").str.strptime(pl.Datetime("us"), f, strict=False)
                for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
            ]
            ts = pl.coalesce(*aware, *naive)
        # Exact text -> cents, rounding half away from zero like DuckDB's DECIMAL cast and our job
        # (Polars' own Decimal(.., 2) cast rounds half to even): parse at 9 decimals, as integer
        # units of 1e-9, then round to cents in integer arithmetic.
        units = (c_("amount").str.strip_chars().cast(pl.Decimal(38, 9), strict=False) * 1_000_000_000).cast(pl.Int64)
        cents = (units.abs() + 5_000_000) // 10_000_000 * units.sign()
        pre = lf
    else:
        lf = pl.scan_parquet(path)
        ts_type = lf.collect_schema()["ts"]
        ts = c_("ts").dt.cast_time_unit("us")
        if getattr(ts_type, "time_zone", None):
            ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            lit = pl.lit(cutoff).dt.replace_time_zone("UTC")
        else:
            lit = pl.lit(cutoff)
        pre = lf.filter(c_("ts") < lit)  # on the raw column so row groups can be skipped
        cents = (c_("amount") * 100).round().cast(pl.Int64)

    lines = (
        pre.select(
            cid=c_("customer_id").cast(pl.String).str.strip_chars(),
            oid=c_("order_id").cast(pl.String),
            ts=ts,
            cents=cents,
            ch=c_("channel").cast(pl.String).str.strip_chars().replace("", None).fill_null(UNKNOWN),
        )
        .filter((c_("ts") < cutoff) & (c_("cid") != "") & c_("cents").is_not_null())
    )

    # 1. lines -> orders -> customer-months: the heavy pass, run on the streaming engine.
    purchase = c_("cents") > 0
    cm = (
        lines.group_by("cid", "oid")
        .agg(c_("ts").min(), c_("cents").sum(), c_("ch").min_by("ts"))
        .with_columns(mi=c_("ts").dt.year().cast(pl.Int64) * 12 + c_("ts").dt.month().cast(pl.Int64) - 1)
        .group_by("cid", "mi")
        .agg(
            rev=c_("cents").sum(),
            np=purchase.sum().cast(pl.Int64),
            plast=pl.when(purchase).then(c_("ts")).max(),
            pfirst=pl.when(purchase).then(c_("ts")).min(),
            pch=pl.when(purchase).then(c_("ch")).min_by(pl.when(purchase).then(c_("ts"))),
            ofirst=c_("ts").min(),
            och=c_("ch").min_by("ts"),
        )
        .collect(engine="streaming")
    )
    if cm.height == 0:
        sys.exit("reference.py: no usable rows on or before as_of")
    m0 = int(cm["mi"].min())
    n = month_index(as_of) - m0 + 1  # periods 0..n-1, boundaries 0..n

    # 2. customers: acquisition channel and cohort (relative month index).
    has_p = c_("np") > 0
    cust = (
        cm.lazy()
        .group_by("cid")
        .agg(
            pfch=pl.when(has_p).then(c_("pch")).min_by(pl.when(has_p).then(c_("pfirst"))),
            ofch=c_("och").min_by("ofirst"),
            c=pl.when(has_p).then(c_("mi")).min() - m0,
        )
        .select("cid", seg=pl.coalesce("pfch", "ofch"), c="c")
        .collect(engine="streaming")
    )
    cmx = (
        cm.lazy()
        .join(cust.lazy(), on="cid")
        .select("cid", "seg", "c", j=c_("mi") - m0, rev="rev", np="np", plast="plast")
        .collect(engine="streaming")
    )
    del cm

    # 3. purchase months: activity interval [j+1, hi] and the neighbours' hi / j.
    plus_w = c_("plast") + pl.duration(days=WINDOW_DAYS)
    pm = (
        cmx.lazy()
        .filter(c_("np") > 0)
        .select(
            "cid", "seg", "c", "j",
            hi=pl.when(plus_w >= cutoff).then(pl.lit(n, pl.Int64))
            .otherwise(plus_w.dt.year().cast(pl.Int64) * 12 + plus_w.dt.month().cast(pl.Int64) - 1 - m0),
        )
        .sort("cid", "j")
        .with_columns(
            same_prev=c_("cid") == c_("cid").shift(1),
            same_next=c_("cid") == c_("cid").shift(-1),
        )
        .select(
            "seg", "c", "j", "hi",
            hi_prev=pl.when(c_("same_prev")).then(c_("hi").shift(1)),
            j_next=pl.when(c_("same_next")).then(c_("j").shift(-1)),
        )
        .with_columns(lo=pl.max_horizontal(c_("j") + 1, (c_("hi_prev") + 1).fill_null(0)))
        .collect()
    )

    # 4. events per (channel, cohort, index): active/react/churn by period, d by boundary.
    z = pl.lit(0, pl.Int64)
    one = pl.lit(1, pl.Int64)
    p = pm.lazy()
    ev = (
        pl.concat(
            [
                p.select("seg", "c", "j", active=one,
                         react=(c_("hi_prev") < c_("j")).fill_null(False).cast(pl.Int64), churn=z, d=z),
                p.filter((c_("hi") < n) & (c_("j_next").is_null() | (c_("j_next") > c_("hi"))))
                .select("seg", "c", j=c_("hi"), active=z, react=z, churn=one, d=z),
                p.filter(c_("lo") <= c_("hi")).select("seg", "c", j=c_("lo"), active=z, react=z, churn=z, d=one),
                p.filter((c_("lo") <= c_("hi")) & (c_("hi") < n))
                .select("seg", "c", j=c_("hi") + 1, active=z, react=z, churn=z, d=-one),
            ]
        )
        .group_by("seg", "c", "j")
        .agg(c_("active", "react", "churn", "d").sum())
        .collect()
        .lazy()
    )
    rv = cmx.lazy().group_by("seg", "c", "j").agg(c_("rev").sum(), c_("np").sum()).collect().lazy()
    sizes = cust.lazy().filter(c_("c").is_not_null()).group_by("seg", "c").agg(size=pl.len().cast(pl.Int64))
    segs = cust.lazy().select("seg").unique()

    def month_date(col: str) -> pl.Expr:
        mi = c_(col) + m0
        return pl.date(mi // 12, mi % 12 + 1, 1)

    os.makedirs(out_dir, exist_ok=True)

    # 5. retention: dense (channel x period) grid, then `all` = sum of the channel rows.
    evs = ev.group_by("seg", "j").agg(c_("react", "churn", "d").sum())
    act = (
        segs.join(pl.LazyFrame({"b": pl.int_range(0, n + 1, eager=True, dtype=pl.Int64)}), how="cross")
        .join(evs.select("seg", b="j", d="d"), on=["seg", "b"], how="left")
        .sort("seg", "b")
        .select("seg", "b", a=c_("d").fill_null(0).cum_sum().over("seg"))
    )
    periods = pl.LazyFrame({"j": pl.int_range(0, n, eager=True, dtype=pl.Int64)})
    ch = (
        segs.join(periods, how="cross")
        .join(act.rename({"b": "j", "a": "customers_start"}), on=["seg", "j"], how="left")
        .join(act.select("seg", j=c_("b") - 1, customers_end="a"), on=["seg", "j"], how="left")
        .join(sizes.rename({"c": "j", "size": "customers_new"}), on=["seg", "j"], how="left")
        .join(evs.select("seg", "j", churned="churn", reactivated="react"), on=["seg", "j"], how="left")
        .join(rv.group_by("seg", "j").agg(c_("rev").sum(), purchases=c_("np").sum()), on=["seg", "j"], how="left")
        .with_columns(pl.exclude("seg", "j").fill_null(0))
    )
    measures = ["customers_start", "customers_end", "customers_new", "churned", "reactivated", "rev", "purchases"]
    retention = (
        pl.concat(
            [
                ch.select(segment_by=pl.lit("channel"), segment="seg", j="j", *measures),
                ch.group_by("j").agg(c_(measures).sum())
                .select(segment_by=pl.lit("all"), segment=pl.lit("__all__"), j="j", *measures),
            ]
        )
        .select(
            "segment_by", "segment", period_start=month_date("j"),
            **{m: c_(m).cast(pl.Int64) for m in measures[:5]},
            revenue=c_("rev").cast(pl.Float64) / 100, purchases=c_("purchases").cast(pl.Int64),
        )
        .sort(RETENTION_KEYS)
    )
    retention.collect().write_parquet(os.path.join(out_dir, "retention.parquet"))

    # 6. cohorts: (channel, cohort) x period j >= cohort, then `all` = sum over channels.
    cg = (
        sizes.join(periods, how="cross")
        .filter(c_("j") >= c_("c"))
        .join(ev.select("seg", "c", "j", "active"), on=["seg", "c", "j"], how="left")
        .join(ev.select("seg", "c", j=c_("j") - 1, d="d"), on=["seg", "c", "j"], how="left")
        .join(rv.rename({"np": "purchases"}), on=["seg", "c", "j"], how="left")
        .with_columns(c_("active", "d", "rev", "purchases").fill_null(0))
        .sort("seg", "c", "j")
        # active at B_{j+1} = running sum of this cohort's diffs (all at boundaries >= c+1)
        .with_columns(churned=c_("size") - c_("d").cum_sum().over("seg", "c"))
    )
    cmeasures = ["size", "active", "churned", "rev", "purchases"]
    cohorts = (
        pl.concat(
            [
                cg.select(segment_by=pl.lit("channel"), segment="seg", c="c", j="j", *cmeasures),
                cg.group_by("c", "j").agg(c_(cmeasures).sum())
                .select(segment_by=pl.lit("all"), segment=pl.lit("__all__"), c="c", j="j", *cmeasures),
            ]
        )
        .sort("segment_by", "segment", "c", "j")
        .select(
            "segment_by", "segment", cohort=month_date("c"), period_offset=(c_("j") - c_("c")).cast(pl.Int64),
            cohort_size=c_("size").cast(pl.Int64), active_customers=c_("active").cast(pl.Int64),
            churned_customers=c_("churned").cast(pl.Int64), revenue=c_("rev").cast(pl.Float64) / 100,
            purchases=c_("purchases").cast(pl.Int64),
            cumulative_revenue=c_("rev").cum_sum().over("segment_by", "segment", "c").cast(pl.Float64) / 100,
        )
    )
    cohorts.collect().write_parquet(os.path.join(out_dir, "cohorts.parquet"))


# =============================================================================================
# compare
# =============================================================================================
def compare(ours_dir: str, as_of: dt.date, ref_dir: str) -> int:
    import duckdb

    con = duckdb.connect()
    total = {}
    problems = []
    for table, keys, ints, money in (
        ("retention", RETENTION_KEYS, RETENTION_INTS, RETENTION_MONEY),
        ("cohorts", COHORT_KEYS, COHORT_INTS, COHORT_MONEY),
    ):
        ours = os.path.join(ours_dir, table, f"as_of={as_of.isoformat()}", "*.parquet").replace("'", "''")
        ref = os.path.join(ref_dir, f"{table}.parquet").replace("'", "''")
        cols = keys + ints + money
        sel = ", ".join(cols)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE o AS SELECT {sel} FROM read_parquet('{ours}')
                        WHERE segment_by IN ('all', 'channel')""")
        con.execute(f"CREATE OR REPLACE TEMP TABLE r AS SELECT {sel} FROM read_parquet('{ref}')")
        n_o = con.execute("SELECT count(*) FROM o").fetchall()[0][0]
        n_r = con.execute("SELECT count(*) FROM r").fetchall()[0][0]
        on = " AND ".join(f"o.{k} = r.{k}" for k in keys)
        diffs = [f"o.{c} IS DISTINCT FROM r.{c}" for c in ints]
        diffs += [f"(o.{c} IS NULL) <> (r.{c} IS NULL) OR abs(o.{c} - r.{c}) > 0.005" for c in money]
        side = f"CASE WHEN o.{keys[0]} IS NULL THEN 'only in reference' WHEN r.{keys[0]} IS NULL THEN 'only in ours' ELSE 'differs' END"
        shown = ", ".join(f"coalesce(o.{k}, r.{k}) AS {k}" for k in keys)
        pairs = ", ".join(f"o.{c} AS ours_{c}, r.{c} AS ref_{c}" for c in ints + money)
        q = f"""SELECT {side} AS what, {shown}, {pairs}
                FROM o FULL OUTER JOIN r ON {on}
                WHERE o.{keys[0]} IS NULL OR r.{keys[0]} IS NULL OR {' OR '.join(f'({d})' for d in diffs)}
                ORDER BY {', '.join(keys)}"""
        cur = con.execute(q)
        names = [d[0] for d in cur.description]
        bad = cur.fetchall()
        total[table] = (n_o, n_r)
        for row in bad:
            rec = dict(zip(names, row))
            # print only the columns that differ (plus the keys)
            parts = [f"{k}={rec[k]}" for k in keys]
            for c in ints + money:
                a, b = rec[f"ours_{c}"], rec[f"ref_{c}"]
                if rec["what"] != "differs" or a != b:
                    if rec["what"] == "differs" and c in money and a is not None and b is not None and abs(a - b) <= 0.005:
                        continue
                    parts.append(f"{c}: ours={a} ref={b}")
            problems.append(f"{table} {rec['what']}: " + ", ".join(parts))
        if n_o != n_r:
            problems.insert(0, f"{table}: row counts differ: ours {n_o}, reference {n_r}")
    if problems:
        print(f"DISAGREE: {len(problems)} problem(s); first ones:")
        for line in problems[:25]:
            print("  " + line)
        return 1
    print(f"agree: retention {total['retention'][0]} rows, cohorts {total['cohorts'][0]} rows")
    return 0


def fit_lifetimes(ours_dir: str, as_of: dt.date) -> int:
    """Times `lifetimes` (BetaGeoFitter, GammaGammaFitter) fitting the customers of our run's
    customers table (segment `all`, weeks, as the job's default time unit), once as users call
    it (one row per customer) and once with unique (x, t_x, T) rows and weights (lifetimes'
    own compression), and prints its estimates next to ours from the models table."""
    import time

    import numpy as np
    import pyarrow.parquet as pq
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    part = f"as_of={as_of.isoformat()}"
    c = pq.read_table(f"{ours_dir}/customers/{part}",
                      columns=["frequency", "recency", "T", "monetary_value"]).to_pandas()
    c = c[c["frequency"].notna()]
    x = c["frequency"].to_numpy(dtype=float)
    t_x = c["recency"].to_numpy(dtype=float) / 7.0
    big_t = c["T"].to_numpy(dtype=float) / 7.0
    print(f"customers: {len(c)}")

    started = time.perf_counter()
    bgf = BetaGeoFitter().fit(x, t_x, big_t)
    bg_s = time.perf_counter() - started
    triples = c.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    started = time.perf_counter()
    BetaGeoFitter().fit(triples["frequency"].to_numpy(dtype=float),
                        triples["recency"].to_numpy(dtype=float) / 7.0,
                        triples["T"].to_numpy(dtype=float) / 7.0,
                        weights=triples["n"].to_numpy())
    bg_w = time.perf_counter() - started
    rep = c[(c["frequency"] > 0) & (c["monetary_value"] > 0)]
    started = time.perf_counter()
    ggf = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    gg_s = time.perf_counter() - started

    m = pq.read_table(f"{ours_dir}/models/{part}").to_pandas()
    m = m[m["segment_by"] == "all"].set_index("model")
    bg = m.loc["bg_nbd"]
    gg = m.loc["gamma_gamma"]
    print("BG/NBD      r        alpha    a        b")
    print(f"  ours      {bg['r']:<8.4f} {bg['alpha']:<8.4f} {bg['a']:<8.4f} {bg['b']:<8.4f}")
    p = bgf.params_
    print(f"  lifetimes {p['r']:<8.4f} {p['alpha']:<8.4f} {p['a']:<8.4f} {p['b']:<8.4f}")
    print("Gamma-Gamma p        q        v")
    print(f"  ours      {gg['p']:<8.4f} {gg['q']:<8.4f} {gg['v']:<8.4f}")
    p = ggf.params_
    print(f"  lifetimes {p['p']:<8.4f} {p['q']:<8.4f} {p['v']:<8.4f}")
    print(f"lifetimes fit seconds: BG/NBD {bg_s:.2f} (one row per customer), "
          f"{bg_w:.2f} (unique triples, weights, {len(triples)} rows); Gamma-Gamma {gg_s:.2f}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "lifetimes":
        return fit_lifetimes(argv[2], dt.date.fromisoformat(argv[3]))
    if len(argv) != 5 or argv[1] not in ("duckdb", "polars", "compare"):
        print("usage: reference.py {duckdb|polars} INPUT_PATH AS_OF OUT_DIR\n"
              "       reference.py compare OUR_OUTPUT_DIR AS_OF REF_OUT_DIR\n"
              "       reference.py lifetimes OUR_OUTPUT_DIR AS_OF", file=sys.stderr)
        return 2
    mode, a, as_of_text, b = argv[1:]
    as_of = dt.date.fromisoformat(as_of_text)
    if mode == "compare":
        return compare(a, as_of, b)
    (run_duckdb if mode == "duckdb" else run_polars)(a, as_of, b)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
