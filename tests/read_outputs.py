"""Opens the job's output with DuckDB (a real BI-side reader) and checks types and values.

Usage: read_outputs.py OUTPUT_DIR AS_OF
Exit 0 when every check passes; prints the failing check otherwise. Exit 3 when duckdb is not
installed (the Rust test decides whether that is a failure: it is in CI).
"""
import sys

try:
    import duckdb
except ImportError:
    print("duckdb is not installed", file=sys.stderr)
    sys.exit(3)

out, as_of = sys.argv[1], sys.argv[2]
con = duckdb.connect()


def table(name):
    return f"read_parquet('{out}/{name}/as_of={as_of}/*.parquet')"


def types(name):
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {table(name)}").fetchall()}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


c = types("customers")
check(c["customer_id"] == "VARCHAR", f"customer_id type {c['customer_id']}")
check(c["cohort"] == "DATE", f"cohort type {c['cohort']}")
check(c["first_purchase_at"] == "TIMESTAMP WITH TIME ZONE", f"first_purchase_at type {c['first_purchase_at']}")
check(c["orders"] == "BIGINT", f"orders type {c['orders']}")
check(c["revenue"] == "DOUBLE", f"revenue type {c['revenue']}")
r = types("retention")
check(r["is_complete"] == "BOOLEAN", f"is_complete type {r['is_complete']}")
check(r["crr"] == "DOUBLE", f"crr type {r['crr']}")
check(r["period_start"] == "DATE", f"period_start type {r['period_start']}")

# Fixture A (tests/it/fixtures.rs): net revenue 44.50 over 6 customers; April CRR 50.
rev, n = con.execute(f"SELECT sum(revenue), count(*) FROM {table('customers')}").fetchone()
check(abs(rev - 44.5) < 1e-9 and n == 6, f"customers revenue {rev} rows {n}")
crr = con.execute(
    f"SELECT crr FROM {table('retention')} WHERE segment_by = 'all' AND period_start = DATE '2024-04-01'"
).fetchone()[0]
check(abs(crr - 50.0) < 1e-9, f"April crr {crr}")
# Hive-partitioned read over all as_of folders gives the as_of column as a date.
rows = con.execute(
    f"SELECT count(*), min(as_of) FROM read_parquet('{out}/cohorts/*/*.parquet', hive_partitioning = true)"
).fetchone()
check(rows[0] > 0 and str(rows[1]) == as_of, f"hive read {rows}")
# The key/value metadata names the table.
meta = con.execute(
    f"SELECT value FROM parquet_kv_metadata('{out}/ltv/as_of={as_of}/*.parquet') WHERE key = 'customer_value.table'"
).fetchone()
check(meta is not None and meta[0] in (b"ltv", "ltv"), f"kv metadata {meta}")
print("duckdb checks passed")
