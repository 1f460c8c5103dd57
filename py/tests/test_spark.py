"""customer_value.spark against the CLI, on a real Spark (pyspark, local[2] with one task retry
allowed). Generated data with refunds, multi-line orders and segments, plus a file of ties and
rejects, in shuffled files; every table must equal the CLI's for 1, 3 and 8 partitions.

Needs pyspark and a JRE (`.ci/run` installs both); without them these tests fail unless
`CUSTOMER_VALUE_ALLOW_SKIP=1`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_compute import DEFAULT, ROOT, assert_tables_equal, cli_bin, cli_run

# A Spark fold task of partition 0 fails once while this file does not exist (see
# `customer_value.spark`); set before the JVM starts, so its Python workers inherit it.
FAIL_MARKER = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"cv-spark-fail-{os.getpid()}"
os.environ["CUSTOMER_VALUE_SPARK_FAIL_ONCE"] = str(FAIL_MARKER)
FAIL_MARKER.touch()
# Likewise a scoring task (pass 2 of `run`) fails once after staging its customers file.
SCORE_MARKER = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"cv-spark-fail-score-{os.getpid()}"
os.environ["CUSTOMER_VALUE_SPARK_FAIL_ONCE_SCORE_AFTER"] = str(SCORE_MARKER)
SCORE_MARKER.touch()
os.environ["PYSPARK_PYTHON"] = sys.executable


def need(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CUSTOMER_VALUE_ALLOW_SKIP") == "1":
        pytest.skip(f"{what} is missing: SKIPPED the Spark tests")
    pytest.fail(f"{what} is missing (.ci/run installs it)")


@pytest.fixture(scope="module")
def spark():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        need("pyspark", False)
    need("java (a JRE)", shutil.which("java") is not None)
    session = (
        SparkSession.builder.master("local[2,2]")  # 2 cores, a failed task is retried once
        .appName("customer-value-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


TIES_AND_REJECTS = """customer_id,order_id,ts,amount,cost,channel,region
tie1,t1,2024-03-01T10:00:00Z,10.00,1.00,web,eu
tie1,t2,2024-03-01T10:00:00Z,20.00,2.00,app,us
  tie1 ,t3,2024-03-01T10:00:00Z,-5.00,0,web,eu
tie2,t4,2024-05-02,7.00,1.00,store,
tie2,t4,2024-05-02,3.00,1.00,store,
bad1,x1,31/01/2024,1.00,0,web,eu
bad2,x2,2024-01-05,NaN,0,web,eu
  ,x3,2024-01-05,1.00,0,web,eu
bad4,x4,,1.00,0,web,eu
bad5,x5,2024-01-05,abc,0,web,eu
late,x6,2030-01-01,1.00,0,web,eu
bad6,x7,2024-01-05,1.00
bad7,x8,2024-01-05,1.00,0,web,eu,extra
"bad8,x9,2024-01-05,1.00,0,web,eu
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Generated lines split into 3 files with their rows shuffled, plus the ties/rejects file;
    and a config that tolerates the rejects."""
    d = tmp_path_factory.mktemp("spark-inputs")
    gen = d / "gen.csv"
    done = subprocess.run(
        [cli_bin(), "generate", "--customers", "3000", "--rows", "30000", "--output", str(gen)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    header, *lines = gen.read_text().splitlines()
    random.Random(7).shuffle(lines)
    files = []
    for k in range(3):
        f = d / f"part-{k}.csv"
        f.write_text("\n".join([header, *lines[k::3]]) + "\n")
        files.append(f)
    extra = d / "ties.csv"
    extra.write_text(TIES_AND_REJECTS)
    files.append(extra)
    gen.unlink()
    config = d / "config.toml"
    config.write_text(
        DEFAULT.read_text()
        .replace("max_reject_ratio = 0.01", "max_reject_ratio = 0.5")
        .replace("max_staleness_days = 7", "max_staleness_days = 0")
        .replace('paths = ["data/transactions.csv.gz"]', f"paths = {[str(f) for f in files]!r}".replace("'", '"'))
        .replace('path = "out"', f'path = "{d / "spark-out"}"')
    )
    return config, files


AS_OF = "2024-06-30"


@pytest.fixture(scope="module")
def cli_tables(inputs, tmp_path_factory):
    config, files = inputs
    return cli_run(tmp_path_factory.mktemp("cli"), files, config, AS_OF)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_spark_equals_the_cli(spark, inputs, cli_tables, n):
    import customer_value.spark as cvs

    config, files = inputs
    # Files listed in another order than the CLI read them.
    got = cvs.compute(spark, config, as_of=AS_OF, partitions=n, paths=[str(f) for f in reversed(files)])
    assert_tables_equal(got, cli_tables)
    rejects = got["rejects"].to_pylist()
    assert [(Path(r["source_file"]).name, r["source_row"], r["reason"]) for r in rejects] == [
        ("ties.csv", 6, "ts: not a valid timestamp"),
        ("ties.csv", 7, "amount: not finite (NaN or infinity)"),
        ("ties.csv", 8, "customer_id: missing or empty"),
        ("ties.csv", 9, "ts: missing"),
        ("ties.csv", 10, "amount: not a number"),
        # Malformed records Spark's parser flags, rejected with the CLI's reasons.
        ("ties.csv", 12, "csv: fewer fields than the header"),
        ("ties.csv", 13, "csv: more fields than the header"),
        ("ties.csv", 14, "csv: unbalanced quotes (a quoted value may not span lines unless "
                         "input.csv.allow_quoted_newlines)"),
    ]
    assert all(r["customer_id"] is None and r["amount"] is None for r in rejects[5:])
    m = cli_tables["_manifest"]
    assert m["rows_rejected"] == 8 and m["rows_after_as_of"] >= 1


def test_a_task_that_fails_once_is_retried_with_the_same_result(spark, inputs, cli_tables):
    import customer_value.spark as cvs

    config, _ = inputs
    FAIL_MARKER.unlink()
    got = cvs.compute(spark, config, as_of=AS_OF, partitions=3)
    assert FAIL_MARKER.exists(), "the first attempt of partition 0 failed"
    assert_tables_equal(got, cli_tables)


def test_a_backfill_equals_single_dates(spark, inputs):
    import customer_value.spark as cvs

    config, _ = inputs
    dates = ["2024-03-31", AS_OF]
    both = cvs.compute(spark, config, dates=dates, partitions=3)
    for d in dates:
        assert_tables_equal(both[d], cvs.compute(spark, config, as_of=d, partitions=2))


def by_customer(tables: dict) -> dict:
    """The customers table sorted by customer_id: a run's tasks write one file each, so its
    rows come in partition order."""
    return {**tables, "customers": tables["customers"].sort_by("customer_id")}


def read_output(out: Path, as_of: str) -> dict:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    import customer_value as cv

    tables = {}
    for name in cv.TABLES:
        files = sorted((out / name / f"as_of={as_of}").glob("*.parquet"))
        tables[name] = pa.concat_tables([pq.ParquetFile(f).read() for f in files]) if files else None
    tables["_manifest"] = json.loads((out / "_manifests" / f"as_of={as_of}.json").read_text())
    return tables


RUN = """
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
import customer_value.spark as cvs
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
print(cvs.run(spark, sys.argv[1], as_of=sys.argv[2], partitions=3))
"""


def test_a_spark_run_publishes_what_the_cli_does_and_a_kill_leaves_the_last_run(
    spark, inputs, cli_tables, tmp_path
):
    import customer_value.spark as cvs

    config, files = inputs
    import tomllib

    out = Path(tomllib.loads(config.read_text())["output"]["path"])
    shutil.rmtree(out, ignore_errors=True)
    [manifest] = cvs.run(spark, config, as_of=AS_OF, partitions=3)
    got = read_output(out, AS_OF)
    assert_tables_equal(by_customer(got), by_customer(cli_tables))
    m, want = got["_manifest"], cli_tables["_manifest"]
    assert manifest.endswith(f"as_of={AS_OF}.json") and m["status"] == "complete"
    for key in ("rows_read", "rows_used", "rows_rejected", "rows_after_as_of", "reject_ratio",
                "rejects_by_reason", "customers", "orders", "settings", "newest_transaction_at"):
        assert m[key] == want[key], key
    # (The CLI ran with --input and --output, so its configuration hash differs.)
    assert m["config_hash"].startswith("sha256:") and m["job"] == "customer-value"
    def per_file(man):
        return sorted((Path(f["url"]).name, f["rows_read"], f["rows_used"], f["rows_rejected"],
                       f["rows_after_as_of"], f["size"]) for f in man["inputs"])
    assert per_file(m) == per_file(want)
    assert {t: e["rows"] for t, e in m["tables"].items()} == {
        t: e["rows"] for t, e in want["tables"].items()
    }
    run_id = m["run_id"]
    assert_one_file_per_table_but_customers(out, m)
    assert not (out / "_staging").exists(), "the tasks' staged files are gone"

    # A second run killed after swapping two tables in: the partition and manifest stay the
    # first run's; the next run recovers and publishes.
    before = (out / "_manifests" / f"as_of={AS_OF}.json").read_text()
    hold = tmp_path / "hold"
    env = dict(os.environ, CUSTOMER_VALUE_TEST_HOLD=f"publish:swapped:2={hold}")
    env.pop("CUSTOMER_VALUE_SPARK_FAIL_ONCE", None)
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(config), AS_OF], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reached = Path(f"{hold}.reached")
    for _ in range(1200):
        if reached.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert reached.exists(), proc.communicate()[1].decode()[-2000:]
    proc.kill()
    proc.wait()
    # The manifest is the first run's; the next run rolls the two swaps back (the CLI's
    # journal), then publishes its own.
    assert (out / "_manifests" / f"as_of={AS_OF}.json").read_text() == before
    cvs.run(spark, config, as_of=AS_OF, partitions=2)
    rerun = read_output(out, AS_OF)
    assert rerun["_manifest"]["run_id"] not in (run_id, None)
    assert_tables_equal(by_customer(rerun), by_customer(cli_tables))
    # The new run's files only: nothing of the killed run is left, staged files included.
    assert_one_file_per_table_but_customers(out, rerun["_manifest"])
    assert not (out / "_staging").exists()


def assert_one_file_per_table_but_customers(out: Path, m: dict) -> None:
    """Every table partition holds exactly the files the manifest lists, the run's: one per
    table, and for customers one per partition the tasks wrote (``part-<run>-NNNNN``)."""
    run_id = m["run_id"]
    for name, entry in m["tables"].items():
        listed = sorted(Path(f["path"]).name for f in entry["files"])
        found = sorted(p.name for p in (out / name / f"as_of={AS_OF}").iterdir())
        assert found == listed, (name, found, listed)
        if name == "customers":
            assert 1 <= len(listed) <= 3
            assert listed == [f"part-{run_id}-{i:05d}.parquet" for i in range(len(listed))]
        else:
            assert listed == [f"part-{run_id}.parquet"], (name, listed)


def test_the_driver_of_a_run_receives_no_customer_rows(spark, inputs):
    """Pass 1 of `run` sends the driver partials without customer rows and censuses; the
    customers reach the manifest's count through the censuses."""
    import customer_value.spark as cvs
    from customer_value import config_toml

    config, _ = inputs
    toml = config_toml(config)
    shuffled = cvs._shuffled(spark, toml, 3, None)
    merged, censuses, _, _, _ = cvs._partials(toml, [AS_OF], shuffled, None, census=True)
    assert merged[AS_OF].customers == 0
    assert 1 <= len(censuses[AS_OF]) <= 3


def test_input_that_changes_between_the_passes_is_named():
    """`run` reads the input twice; a file that grew, appeared or went in between fails the
    run before anything is published (the comparison of the two scans' splits)."""
    import pyarrow as pa

    import customer_value.spark as cvs

    def scan(files: dict[str, tuple[int, int]]) -> "cvs._Splits":
        s = cvs._Splits()
        s.add(pa.RecordBatch.from_pydict({
            "f": list(files), "b": [0] * len(files), "size": [v[0] for v in files.values()],
            "mtime": [1_700_000_000] * len(files), "min": [0] * len(files),
            "n": [v[1] for v in files.values()],
        }))
        return s

    first = scan({"a.csv": (100, 5), "b.csv": (50, 2)})
    assert scan({"a.csv": (100, 5), "b.csv": (50, 2)}).changed_since(first) is None
    assert scan({"a.csv": (120, 6), "b.csv": (50, 2)}).changed_since(first) == "changed: a.csv"
    assert scan({"a.csv": (100, 5)}).changed_since(first) == "gone: b.csv"
    assert scan({"a.csv": (100, 5), "b.csv": (50, 2), "c.csv": (9, 1)}).changed_since(first) == "new: c.csv"
    assert scan({"a.csv": (100, 4), "b.csv": (50, 2)}).changed_since(first) == "rows per file split differ"


def test_a_scoring_task_that_fails_after_staging_its_file_publishes_no_duplicate(
    spark, inputs, cli_tables
):
    import customer_value.spark as cvs
    import tomllib

    config, _ = inputs
    out = Path(tomllib.loads(config.read_text())["output"]["path"])
    shutil.rmtree(out, ignore_errors=True)
    SCORE_MARKER.unlink()
    cvs.run(spark, config, as_of=AS_OF, partitions=3)
    assert SCORE_MARKER.exists(), "the first scoring attempt of partition 0 failed"
    got = read_output(out, AS_OF)
    assert_tables_equal(by_customer(got), by_customer(cli_tables))
    assert_one_file_per_table_but_customers(out, got["_manifest"])
    assert not (out / "_staging").exists()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto():
    """moto's S3 server on 127.0.0.1 (from the test venv `.ci/run` makes), with a bucket."""
    import socket
    import urllib.request

    python = os.environ.get(
        "CUSTOMER_VALUE_TEST_PYTHON", str(Path.home() / ".cache/customer-value/venv/bin/python")
    )
    server = Path(python).parent / "moto_server"
    need(f"moto_server ({server})", server.exists())
    port = free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/cv-spark", method="PUT"))
        yield endpoint
    finally:
        proc.kill()
        proc.wait()


def test_a_spark_run_to_s3_publishes_the_cli_tables(spark, inputs, cli_tables, moto):
    """The tasks stage their customers files in the bucket; the driver copies them into the
    partition and deletes the staged ones."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    import customer_value.spark as cvs

    config, _ = inputs
    text = config.read_text()
    out_line = next(line for line in text.splitlines() if line.startswith("path = "))
    s3 = config.with_name("config-s3.toml")
    assert "\n[storage.options]\n" in text
    s3.write_text(
        text.replace(out_line, 'path = "s3://cv-spark/out"').replace(
            "\n[storage.options]\n",
            "\n[storage.options]\n"
            + f'aws_endpoint = "{moto}"\naws_allow_http = "true"\naws_access_key_id = "test"\n'
            + 'aws_secret_access_key = "test"\naws_region = "us-east-1"\n',
        )
    )
    [manifest] = cvs.run(spark, s3, as_of=AS_OF, partitions=3)
    assert manifest == f"s3://cv-spark/out/_manifests/as_of={AS_OF}.json"
    bucket = fs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                             endpoint_override=moto, scheme="http")
    with bucket.open_input_stream(f"cv-spark/out/_manifests/as_of={AS_OF}.json") as f:
        m = json.loads(f.read())
    got = {"_manifest": m}
    for name, entry in m["tables"].items():
        got[name] = pa.concat_tables(
            [pq.read_table(f"cv-spark/out/{e['path']}", filesystem=bucket) for e in entry["files"]]
        )
    assert_tables_equal(by_customer(got), by_customer(cli_tables))
    assert len(m["tables"]["customers"]["files"]) >= 1
    every = bucket.get_file_info(fs.FileSelector("cv-spark/out", recursive=True))
    assert not [i.path for i in every if "/_staging/" in i.path]
    # Exactly the listed data files are in the partitions.
    data = sorted(i.path for i in every if i.path.endswith(".parquet"))
    listed = sorted(f"cv-spark/out/{e['path']}" for t in m["tables"].values() for e in t["files"])
    assert data == listed


def test_the_spark_sql_statements_read_every_table(spark, inputs, cli_tables, tmp_path):
    """`customer-value schema --format sql --dialect spark` run by Spark SQL over a CLI output:
    tables with the documented types, partitions registered by MSCK REPAIR, every row there."""
    config, files = inputs
    cli_run(tmp_path, files, config, AS_OF)
    out = tmp_path / "out"  # where cli_run publishes
    done = subprocess.run(
        [cli_bin(), "schema", "--format", "sql", "--dialect", "spark", "--database", "cv_sql",
         "--config", str(config), "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    # One statement per `;` at a line end (a comment's `;` is inside a quoted literal).
    statements = [s for s in done.stdout.split(";\n") if s.strip() and not all(
        line.startswith("--") or not line.strip() for line in s.splitlines())]
    for statement in statements:
        spark.sql(statement)
    import customer_value as cv

    for name in cv.TABLES:
        want = cli_tables[name]
        got = spark.sql(f"SELECT count(*) AS n FROM cv_sql.{name} WHERE as_of = DATE'{AS_OF}'").first().n
        assert got == (want.num_rows if want is not None else 0), name
        columns = {f.name: f.dataType.simpleString() for f in spark.table(f"cv_sql.{name}").schema}
        assert columns["as_of"] == "date", name
        if want is not None:
            assert [c for c in columns if c != "as_of"] == want.schema.names, name
    customers = {f.name: f.dataType.simpleString() for f in spark.table("cv_sql.customers").schema}
    assert customers["first_purchase_at"] == "timestamp"
    assert customers["orders"] == "bigint" and customers["channel"] == "string"
    revenue = spark.sql(f"SELECT sum(revenue) AS r FROM cv_sql.customers WHERE as_of = DATE'{AS_OF}'").first().r
    assert abs(revenue - sum(cli_tables["customers"].column("revenue").to_pylist())) < 1e-6
    comment = spark.sql("DESCRIBE TABLE EXTENDED cv_sql.ltv").filter("col_name = 'Comment'").first()
    assert comment is not None and "one row per" in comment.data_type
