"""Runs `customer-value schema --format sql --dialect duckdb` statements in DuckDB and reports,
as JSON on stdout, what every view returns next to what pyarrow reads from the files directly:
rows per as_of, the columns with their types and comments, and the customers' revenue sum.

usage: query_views.py OUTPUT_DIR STATEMENTS.sql AS_OF [AS_OF ...]
"""

import glob
import json
import sys

import duckdb
import pyarrow.parquet as pq

out, sql_file, *dates = sys.argv[1:]
con = duckdb.connect()
con.execute(open(sql_file).read())

views = [
    r[0]
    for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'customer_value' ORDER BY view_name"
    ).fetchall()
]
report = {"views": views, "tables": {}}
for view in views:
    rows = {}
    for as_of in dates:
        files = glob.glob(f"{out}/{view}/as_of={as_of}/*.parquet")
        by_files = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        (by_view,) = con.execute(
            f"SELECT count(*) FROM customer_value.{view} WHERE as_of = DATE '{as_of}'"
        ).fetchone()
        rows[as_of] = [by_view, by_files]
    columns = con.execute(
        "SELECT column_name, data_type, comment FROM duckdb_columns() "
        "WHERE schema_name = 'customer_value' AND table_name = ? ORDER BY column_index",
        [view],
    ).fetchall()
    (comment,) = con.execute(
        "SELECT comment FROM duckdb_views() WHERE schema_name = 'customer_value' AND view_name = ?",
        [view],
    ).fetchone()
    report["tables"][view] = {"rows": rows, "columns": columns, "comment": comment}

report["revenue"] = {
    as_of: con.execute(
        f"SELECT sum(revenue) FROM customer_value.customers WHERE as_of = DATE '{as_of}'"
    ).fetchone()[0]
    for as_of in dates
}
print(json.dumps(report))
