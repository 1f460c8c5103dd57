"""Reads customer-value's Delta tables with real readers, for tests/it/delta.rs.

    delta_read.py read ROOT [OPTIONS_JSON]
        For every table under ROOT (a folder or an s3:// URL; OPTIONS_JSON: the object store
        options), per as_of: the rows the `deltalake` package reads, the rows polars'
        `read_delta` reads, the rows of the Parquet files the run's manifest lists (pyarrow),
        and whether the three hold the same rows. Also each table's version, history and
        current files. Prints JSON.
    delta_read.py poll ROOT TABLE AS_OF STOP_FILE
        Reads TABLE's partition AS_OF (a fresh snapshot each time) until STOP_FILE exists;
        prints the row counts it saw, how many reads, and any error.
"""

from __future__ import annotations

import json
import os
import sys
import time

import deltalake
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

TABLES = ["customers", "retention", "cohorts", "ltv", "rejects", "models"]


def filesystem(root: str, opts: dict):
    """A pyarrow filesystem for the root and the root's path in it."""
    if root.startswith("s3://"):
        s3 = fs.S3FileSystem(
            access_key=opts["AWS_ACCESS_KEY_ID"],
            secret_key=opts["AWS_SECRET_ACCESS_KEY"],
            region=opts.get("AWS_REGION", "us-east-1"),
            endpoint_override=opts["AWS_ENDPOINT_URL"],
            scheme="http",
        )
        return s3, root[len("s3://") :]
    return fs.LocalFileSystem(), root


def canonical(t: pa.Table) -> list:
    """The rows in a fixed order, as comparable values (column order as in the files)."""
    cols = [c for c in t.column_names if c != "as_of"]
    rows = t.select(cols).to_pylist()
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def read(root: str, opts: dict) -> dict:
    pafs, base = filesystem(root, opts)
    manifests = {}
    for info in pafs.get_file_info(fs.FileSelector(f"{base}/_manifests")):
        if info.path.endswith(".json"):
            with pafs.open_input_stream(info.path) as f:
                m = json.loads(f.read())
            manifests[m["as_of"]] = m
    out = {}
    for name in TABLES:
        uri = f"{root}/{name}"
        try:
            dt = deltalake.DeltaTable(uri, storage_options=opts or None)
        except deltalake.exceptions.TableNotFoundError:
            continue
        delta = dt.to_pyarrow_table()
        polars = pl.read_delta(uri, storage_options=opts or None).to_arrow()
        dates = {}
        for as_of, m in sorted(manifests.items()):
            entry = m["tables"].get(name)
            files = [pq.read_table(f"{base}/{f['path']}", filesystem=pafs) for f in entry["files"]] if entry else []
            parquet = pa.concat_tables(files) if files else None
            d = delta.filter(pa.compute.equal(delta["as_of"].cast(pa.string()), as_of))
            p = polars.filter(pa.compute.equal(polars["as_of"].cast(pa.string()), as_of))
            want = canonical(parquet) if parquet is not None else []
            dates[as_of] = {
                "delta": d.num_rows,
                "polars": p.num_rows,
                "parquet": len(want),
                "same": canonical(d) == want and canonical(p) == want,
            }
        out[name] = {
            "version": dt.version(),
            "dates": dates,
            "files": sorted(f.split(f"/{name}/", 1)[1] for f in dt.file_uris()),
            "history": [
                {
                    "version": h.get("version"),
                    "operation": h.get("operation"),
                    "predicate": (h.get("operationParameters") or {}).get("predicate"),
                    "customer_value": h.get("customer_value"),
                }
                for h in dt.history()
            ],
        }
    return out


def poll(root: str, table: str, as_of: str, stop: str) -> dict:
    counts, reads, errors = set(), 0, []
    while True:
        done = os.path.exists(stop)
        try:
            dt = deltalake.DeltaTable(f"{root}/{table}")
            t = dt.to_pyarrow_table(partitions=[("as_of", "=", as_of)])
            counts.add(t.num_rows)
        except Exception as e:  # every failure is reported, none hidden
            errors.append(f"{type(e).__name__}: {e}")
        reads += 1
        if done:
            break
        time.sleep(0.005)
    return {"counts": sorted(counts), "reads": reads, "errors": errors[:5]}


if __name__ == "__main__":
    if sys.argv[1] == "read":
        opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        print(json.dumps(read(sys.argv[2], opts)))
    else:
        print(json.dumps(poll(*sys.argv[2:6])))
