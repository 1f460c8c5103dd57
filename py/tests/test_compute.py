"""customer_value.compute and the partition API, against the CLI on the same rows.

The CLI binary is `$CUSTOMER_VALUE_BIN` (`.ci/run` builds it); without it these tests fail
unless `CUSTOMER_VALUE_ALLOW_SKIP=1`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import customer_value as cv

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "transactions.csv.gz"
DEFAULT = ROOT / "config" / "default.toml"
COLUMNS = ["customer_id", "order_id", "ts", "amount", "cost", "channel", "region"]


def cli_bin() -> str:
    path = os.environ.get("CUSTOMER_VALUE_BIN", "")
    if not path or not os.access(path, os.X_OK):
        if os.environ.get("CUSTOMER_VALUE_ALLOW_SKIP") == "1":
            pytest.skip("CUSTOMER_VALUE_BIN is not set: SKIPPED the comparison with the CLI")
        pytest.fail("CUSTOMER_VALUE_BIN must name the customer-value binary (set by .ci/run)")
    return path


def cli_run(tmp: Path, inputs: list[Path], config: Path, as_of: str) -> dict[str, pa.Table]:
    """Runs the CLI and reads every table it published for as_of (and the manifest)."""
    out = tmp / "out"
    cmd = [cli_bin(), "run", "--config", str(config), "--as-of", as_of, "--output", str(out)]
    for i in inputs:
        cmd += ["--input", str(i)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tables = {}
    for name in cv.TABLES:
        files = sorted(glob.glob(str(out / name / f"as_of={as_of}" / "*.parquet")))
        # No models file with predictions off (None: the table must be empty).
        tables[name] = pa.concat_tables([pq.ParquetFile(f).read() for f in files]) if files else None
    tables["_manifest"] = json.loads((out / "_manifests" / f"as_of={as_of}.json").read_text())
    return tables


def read_text_csv(path: Path) -> pa.Table:
    """Every column as text and an empty field as null, as the CLI reads CSV."""
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in COLUMNS},
            strings_can_be_null=True,
            null_values=[""],
        ),
    )


def assert_tables_equal(got: dict[str, pa.Table], want: dict[str, pa.Table]) -> None:
    for name in cv.TABLES:
        g, w = got[name], want[name]
        if w is None:
            assert name == "models" and g.num_rows == 0, name
            continue
        assert g.schema.remove_metadata() == w.schema.remove_metadata(), name
        # Exact: integers, strings and dates equal, floats bit for bit.
        assert g.equals(w), f"{name}: {g.num_rows} rows vs the CLI's {w.num_rows}"


def test_bundled_sample_equals_the_cli(tmp_path):
    as_of = "2024-12-31"
    want = cli_run(tmp_path, [SAMPLE], DEFAULT, as_of)
    rows = read_text_csv(SAMPLE)
    got = cv.compute({str(SAMPLE.relative_to(ROOT)): rows}, config=DEFAULT, as_of=as_of)
    assert list(got) == list(cv.TABLES)
    assert_tables_equal(got, want)
    # The sample as the CLI counts it: 149,411 rows, every one used or after as_of.
    m = want["_manifest"]
    assert m["rows_read"] == rows.num_rows == 149_411
    assert got["customers"].num_rows == 20_000


BAD_CSV = """customer_id,order_id,ts,amount,cost,channel,region
a,o1,2024-01-05T10:00:00Z,10.00,4.00,web,eu
a,o1,2024-01-05T10:00:00Z,5.50,1.00,web,eu
a,o2,2024-03-01,-2.25,0,web,eu
b,,2024-02-10 12:00:00,7,3,store,
b,o4,31/01/2024,1.00,0,store,us
c,o5,2024-01-05,NaN,0,web,us
  ,o6,2024-01-05,1.00,0,web,us
d,o7,,1.00,0,web,us
e,o8,1899-12-31,1.00,0,app,us
f,o9,2024-01-07,abc,0,app,us
g,o10,2024-01-08,1.00,,app,us
h,o11,2025-01-01,1.00,0,app,us
i,o12,2024-05-05T23:30:00-02:00,3.00,1.00,app,us
"""


def test_rejects_and_accounting_equal_the_cli(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(BAD_CSV)
    config = tmp_path / "c.toml"
    config.write_text(
        DEFAULT.read_text()
        .replace("max_reject_ratio = 0.01", "max_reject_ratio = 0.9")
        .replace("max_staleness_days = 7", "max_staleness_days = 0")
        .replace("enabled = true", "enabled = false")
    )
    as_of = "2024-06-30"
    want = cli_run(tmp_path, [src], config, as_of)
    job = cv.Computation(config, as_of)
    partial = job.fold_rows({str(src): read_text_csv(src)})
    job.check(partial)
    got = job.finish(partial)
    assert_tables_equal(got, want)
    # By hand: 13 rows; row 12 (2025-01-01) is after as_of; rows 5-11 are rejected.
    assert partial.accounting == (13, 5, 7, 1)
    m = want["_manifest"]
    assert (m["rows_read"], m["rows_used"], m["rows_rejected"], m["rows_after_as_of"]) == (
        13,
        5,
        7,
        1,
    )
    reasons = got["rejects"].select(["source_row", "reason"]).to_pylist()
    assert reasons == [
        {"source_row": 5, "reason": "ts: not a valid timestamp"},
        {"source_row": 6, "reason": "amount: not finite (NaN or infinity)"},
        {"source_row": 7, "reason": "customer_id: missing or empty"},
        {"source_row": 8, "reason": "ts: missing"},
        {"source_row": 9, "reason": "ts: before 1900-01-01"},
        {"source_row": 10, "reason": "amount: not a number"},
        {"source_row": 11, "reason": "cost: missing"},
    ]
    # Customer a: order o1 = 10.00 + 5.50, order o2 = −2.25 → net revenue 13.25.
    customers = {r["customer_id"]: r for r in got["customers"].to_pylist()}
    assert set(customers) == {"a", "b", "i"}
    assert customers["a"]["revenue"] == pytest.approx(13.25)


def test_typed_pandas_and_polars_inputs_give_the_same_tables():
    pl = pytest.importorskip("polars")
    as_of = "2024-12-31"
    text = read_text_csv(SAMPLE)
    want = cv.compute(text, config=DEFAULT, as_of=as_of)
    # Typed as pyarrow infers them: ts a UTC timestamp, money as double (rounded to cents).
    typed = pacsv.read_csv(SAMPLE)
    assert pa.types.is_timestamp(typed.schema.field("ts").type)
    assert_tables_equal(cv.compute(typed, config=DEFAULT, as_of=as_of), want)
    assert_tables_equal(cv.compute(typed.to_pandas(), config=DEFAULT, as_of=as_of), want)
    assert_tables_equal(cv.compute(pl.from_arrow(typed), config=DEFAULT, as_of=as_of), want)


def partition(rows: pa.Table, n: int) -> list[pa.Table]:
    """Rows split by a hash of customer_id into n partitions."""
    ids = rows.column("customer_id").to_pylist()
    part = [int(hashlib.md5(i.encode()).hexdigest(), 16) % n for i in ids]
    return [rows.filter(pa.array([p == k for p in part])) for k in range(n)]


@pytest.mark.parametrize("n", [1, 3, 8])
def test_partitions_merged_through_arrow_equal_one_computation(n):
    as_of = "2024-12-31"
    rows = read_text_csv(SAMPLE)
    want = cv.compute(rows, config=DEFAULT, as_of=as_of)
    job = cv.Computation(DEFAULT, as_of)
    partials = [job.fold_rows(p) for p in partition(rows, n)]
    # Across a process boundary: each partial as Arrow IPC bytes and back.
    moved = []
    for p in reversed(partials):
        batches = []
        for b in p.to_arrow():
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, b.schema) as w:
                w.write_batch(b)
            batches.append(pa.ipc.open_stream(sink.getvalue()).read_next_batch())
        moved.append(cv.Partial.from_arrow(*batches))
    merged = moved[0]
    for p in moved[1:]:
        merged.merge(p)
    assert merged.customers == 20_000
    job.check(merged)
    assert_tables_equal(job.finish(merged), want)


def test_errors_name_the_key_the_column_and_the_check():
    rows = read_text_csv(SAMPLE)
    with pytest.raises(cv.ConfigError, match="period"):
        cv.compute(rows, config={"input": {"columns": {"customer_id": "customer_id", "ts": "ts", "amount": "amount"}}, "metrics": {"period": "fortnight"}}, as_of="2024-12-31")
    with pytest.raises(cv.ConfigError, match="as_of"):
        cv.compute(rows, config=DEFAULT, as_of="2024-13-01")
    with pytest.raises(cv.ConfigError, match="nope.toml"):
        cv.compute(rows, config="nope.toml", as_of="2024-12-31")
    with pytest.raises(cv.InputError, match="'region'"):
        cv.compute(rows.drop_columns(["region"]), config=DEFAULT, as_of="2024-12-31")
    with pytest.raises(cv.InputError, match="'amount'"):
        bad = rows.set_column(3, "amount", pa.array([True] * rows.num_rows))
        cv.compute(bad, config=DEFAULT, as_of="2024-12-31")
    # The sample ends 2025-01-17: as of 2025-03-31 it is stale (max_staleness_days = 7).
    with pytest.raises(cv.DataError, match="max_staleness_days"):
        cv.compute(rows, config=DEFAULT, as_of="2025-03-31")
    # Before the first transaction: nothing to compute.
    with pytest.raises(cv.DataError, match="no usable transactions"):
        cv.compute(rows, config=DEFAULT, as_of="2000-01-01")
    assert issubclass(cv.DataError, cv.Error) and issubclass(cv.ConfigError, cv.Error)


def test_publishing_refuses_delta_tables(tmp_path):
    """The package writes Parquet only: an output configured as Delta is refused before any
    lock or file is taken (the CLI writes Delta tables)."""
    from customer_value import _core

    toml = DEFAULT.read_text().replace('path = "out"', f'path = "{tmp_path / "out"}"')
    toml = toml.replace('format = "parquet"', 'format = "delta"')
    assert 'format = "delta"' in toml
    with pytest.raises(cv.ConfigError, match='output.format = "delta"'):
        _core.Output(toml, "run-1")
    assert not (tmp_path / "out").exists()


def test_a_dict_config_is_the_toml_one():
    import tomllib

    rows = read_text_csv(SAMPLE)
    with open(DEFAULT, "rb") as f:
        as_dict = tomllib.load(f)
    a = cv.compute(rows, config=as_dict, as_of="2024-12-31")
    b = cv.compute(rows, config=DEFAULT, as_of="2024-12-31")
    assert_tables_equal(a, b)
