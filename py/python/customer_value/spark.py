"""customer-value on Apache Spark (3.4 and later): Spark reads the inputs and shuffles the rows by
customer; each task folds its customer partition with the core (``mapInArrow``, a whole
partition per call); the driver merges the small partials and finishes every table, equal to
a CLI run over the same files.

>>> from pyspark.sql import SparkSession
>>> import customer_value.spark as cvs
>>> spark = SparkSession.builder.getOrCreate()
>>> tables = cvs.compute(spark, "config/default.toml", as_of="2024-12-31")

Rejected rows name their file and row as the CLI does: each row carries its file, the start of
the file split Spark read it in (``_metadata``) and a monotonically increasing id from the
scan; the tasks report the first id and the row count of every split they saw, and the driver
turns (split, id) into the row number within the file.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import defaultdict
from datetime import date, datetime, timezone
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from . import Computation, Config, Partial, _core, config_toml

__all__ = ["compute", "main", "read_rows", "run"]

FILE = "__file"
BLOCK = "__block"
SIZE = "__file_size"
MTIME = "__file_mtime"
ROW_ID = "__row_id"
CORRUPT = "__corrupt_record"
WIDTH = "__csv_width"

# Input formats by file name, as the CLI detects them (`input.format = "auto"`).
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}


def _format_of(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    name = path.lower()
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise _core.ConfigError(
        f"input.format: cannot tell the format of {path} from its name; set input.format"
    )


def _mapped(columns: dict) -> list[str]:
    names = [columns["customer_id"], columns["ts"], columns["amount"]]
    names += [columns[k] for k in ("order_id", "cost") if columns.get(k)]
    names += list(columns.get("segments", []))
    return list(dict.fromkeys(names))


def read_rows(spark, config: Config, paths: Sequence[str] | None = None):
    """The input rows as a Spark DataFrame: the mapped columns (CSV as text, as the CLI reads
    it) and each row's file, file split and scan id."""
    from pyspark.sql import functions as F

    toml = config_toml(config)
    cfg = json.loads(_core.config_json(toml))
    inp = cfg["input"]
    paths = list(paths or inp["paths"])
    if not paths:
        raise _core.ConfigError("input.paths: must list at least one file, glob or folder")
    formats = {_format_of(p, inp["format"]) for p in paths}
    if len(formats) > 1:
        raise _core.ConfigError(
            f"input.paths: files of several formats ({', '.join(sorted(formats))}); "
            "run one format at a time or set input.format"
        )
    fmt = formats.pop()
    reader = spark.read
    if fmt == "csv":
        csv = inp["csv"]
        quote = csv["quote"]
        reader = (
            reader.format("csv")
            .option("header", csv["has_header"])
            .option("sep", csv["delimiter"])
            # "" = no quoting; a doubled quote inside quotes is a quote (RFC 4180).
            .option("quote", quote if quote else "\u0000")
            .option("escape", quote if quote else "\\")
            .option("multiLine", csv["allow_quoted_newlines"])
            .option("inferSchema", False)
            .option("ignoreLeadingWhiteSpace", False)
            .option("ignoreTrailingWhiteSpace", False)
            .option("mode", "PERMISSIVE")
        )
    elif fmt == "parquet":
        reader = reader.format("parquet")
    else:
        reader = reader.format("json")
    width = 0
    if fmt == "csv":
        # Every column as text, plus the record of a row Spark's parser flags as malformed (a
        # field count other than the header's, an unbalanced quote): such rows are rejected
        # with the CLI's reasons in the fold (`_structural`).
        from pyspark.sql.types import StringType, StructField, StructType

        header = reader.load(paths).columns
        width = len(header)
        schema = StructType(
            [StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())]
        )
        reader = reader.schema(schema).option("columnNameOfCorruptRecord", CORRUPT)
    df = reader.load(paths)
    columns = inp["columns"]
    if fmt == "csv" and not inp["csv"]["has_header"]:
        # The CLI names headerless columns column_1, column_2, …
        df = df.toDF(*[f"column_{i + 1}" for i in range(width)], CORRUPT)
    missing = [c for c in _mapped(columns) if c not in df.columns]
    if missing:
        raise _core.InputError(
            f"input: column '{missing[0]}' not found; columns are: {', '.join(df.columns)}"
        )
    return df.select(
        *[F.col(f"`{c}`") for c in _mapped(columns)],
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(BLOCK),
        F.col("_metadata.file_size").alias(SIZE),
        # Seconds since the epoch (the manifest writes them as UTC RFC 3339, as the CLI).
        F.col("_metadata.file_modification_time").cast("long").alias(MTIME),
        F.monotonically_increasing_id().alias(ROW_ID),
        (F.col(CORRUPT) if fmt == "csv" else F.lit(None).cast("string")).alias(CORRUPT),
        F.lit(width).alias(WIDTH),
    )


def _ipc(batches: Iterable[pa.RecordBatch]) -> bytes:
    """Batches (of different schemas) as one byte string: IPC streams, each length-prefixed."""
    out = io.BytesIO()
    for b in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, b.schema) as w:
            w.write_batch(b)
        data = sink.getvalue().to_pybytes()
        out.write(len(data).to_bytes(8, "little"))
        out.write(data)
    return out.getvalue()


def _batches(payload: bytes) -> list[pa.RecordBatch]:
    out, at = [], 0
    while at < len(payload):
        n = int.from_bytes(payload[at : at + 8], "little")
        at += 8
        reader = pa.ipc.open_stream(pa.py_buffer(payload[at : at + n]))
        batch = reader.read_next_batch()
        out.append(pa.RecordBatch.from_arrays(batch.columns, schema=reader.schema))
        at += n
    return out


OUT_SCHEMA = "as_of string, kind string, payload binary"


def _structural(table: pa.Table, csv_options: dict) -> pa.Array:
    """The CLI's reason for each row Spark's CSV parser flagged (its raw record in CORRUPT), null
    for the others: an odd number of quotes is an unbalanced (or, with quoted newlines, an
    unclosed) quote, else the record has more or fewer fields than the header."""
    import csv

    column = table.column(CORRUPT)
    none = pa.nulls(table.num_rows, pa.string())
    if column.null_count == table.num_rows:
        return none
    flagged = pc.is_valid(column)
    width = table.column(WIDTH)[0].as_py()
    quote = csv_options.get("quote") or None
    reasons = []
    for record in pc.filter(column, flagged).to_pylist():
        if quote and record.count(quote) % 2 == 1:
            reasons.append(UNCLOSED if csv_options.get("allow_quoted_newlines") else UNBALANCED)
        else:
            delimiter = csv_options.get("delimiter", ",")
            reader = (
                csv.reader([record], delimiter=delimiter, quotechar=quote)
                if quote
                else csv.reader([record], delimiter=delimiter, quoting=csv.QUOTE_NONE)
            )
            fields = len(next(reader, []))
            reasons.append(MORE_FIELDS if fields > width else FEWER_FIELDS)
    return pc.replace_with_mask(none, flagged.combine_chunks(), pa.array(reasons, pa.string()))


# The CLI's reasons for malformed CSV records (src/source/records/mod.rs).
UNBALANCED = (
    "csv: unbalanced quotes (a quoted value may not span lines unless "
    "input.csv.allow_quoted_newlines)"
)
UNCLOSED = "csv: a quote opened here never closes"
MORE_FIELDS = "csv: more fields than the header"
FEWER_FIELDS = "csv: fewer fields than the header"


def _task():
    """This Spark task's context, with the core's threads sized to its cores (rayon starts in
    this worker process, after the fork)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    _core.set_threads(max(1, int(ctx.cpus())) if ctx is not None else 1)
    return ctx


def _fail_once(ctx, hook: str) -> None:
    """For the tests: the task of partition 0 fails once when the environment variable
    ``hook`` names a marker file that does not exist yet (the file remembers it failed)."""
    marker = os.environ.get(hook)
    if marker and ctx is not None and ctx.partitionId() == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("customer-value test: this task fails once")


def _split_counts(table: pa.Table) -> bytes:
    """The file splits a task read: each split's first scan id and rows (see ``_Splits``)."""
    splits = table.group_by([FILE, BLOCK, SIZE, MTIME]).aggregate(
        [(ROW_ID, "min"), (ROW_ID, "count")]
    )
    return _ipc(splits.to_batches())


def _prepared(table: pa.Table, csv_options: dict) -> pa.Table:
    """The rows of a task as the core folds them: each row's source (file and split) and scan
    id, and the reason of a malformed CSV record."""
    source = pc.binary_join_element_wise(
        table.column(FILE), pc.cast(table.column(BLOCK), pa.string()), "\n"
    )
    rows = table.append_column(_SOURCE_FILE, source).append_column(
        _SOURCE_ROW, table.column(ROW_ID)
    )
    return rows.append_column(_REJECT, _structural(table, csv_options))


def _rows_out(out: list[tuple[str, str, bytes]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "as_of": [o[0] for o in out],
            "kind": [o[1] for o in out],
            "payload": [o[2] for o in out],
        },
        schema=pa.schema([("as_of", pa.string()), ("kind", pa.string()), ("payload", pa.binary())]),
    )


def _folder(toml: str, dates: list[str], census: bool):
    """The mapInArrow function of pass 1: one customer partition's rows → a partial per date
    (with ``census``: without its customer rows, plus its census) and the splits' first ids
    and row counts."""
    csv_options = json.loads(_core.config_json(toml))["input"]["csv"]

    def fold(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        _fail_once(_task(), "CUSTOMER_VALUE_SPARK_FAIL_ONCE")
        started = time.perf_counter()
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        received = time.perf_counter()
        rows = _prepared(table, csv_options)
        out = [("", "splits", _split_counts(table))]
        for d in dates:
            job = Computation(toml, d)
            partial = job.fold_rows(rows, source="spark")
            if census:
                out.append((d, "census", job.census(partial)))
            out.append((d, "partial", _ipc(partial.to_arrow())))
        stats = {
            "rows": table.num_rows,
            # Waiting for the shuffled rows to arrive in Arrow, then folding every date.
            "receive_ms": round((received - started) * 1000),
            "fold_ms": round((time.perf_counter() - received) * 1000),
        }
        out.append(("", "stats", json.dumps(stats).encode()))
        yield _rows_out(out)

    return fold


def _scorer(toml: str, plans: dict[str, bytes], run_id: str):
    """The mapInArrow function of pass 2: one customer partition's rows, folded again and
    scored against each date's plan → its customers file, staged in the output under a name
    unique to this task attempt, and its ltv sums."""
    csv_options = json.loads(_core.config_json(toml))["input"]["csv"]

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ctx = _task()
        started = time.perf_counter()
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        rows = _prepared(table, csv_options)
        partition, attempt = (ctx.partitionId(), ctx.taskAttemptId()) if ctx else (0, 0)
        out = [("", "splits", _split_counts(table))]
        for d, plan in plans.items():
            job = Computation(toml, d)
            customers, sums = job.score(plan, job.fold_rows(rows, source="spark"))
            out.append((d, "sums", sums))
            if customers.num_rows:
                name = f"part-{partition:05d}-attempt-{attempt}.parquet"
                path, n, size = _core.stage_part(toml, run_id, d, "customers", name, customers)
                out.append((d, "file", json.dumps([path, n, size]).encode()))
        # A test: the attempt fails after staging its files (the retry stages others).
        _fail_once(ctx, "CUSTOMER_VALUE_SPARK_FAIL_ONCE_SCORE_AFTER")
        stats = {"score_ms": round((time.perf_counter() - started) * 1000)}
        out.append(("", "stats", json.dumps(stats).encode()))
        yield _rows_out(out)

    return score


_SOURCE_FILE = "__source_file"
_SOURCE_ROW = "__source_row"
_REJECT = "__reject"


def _namer(paths: Sequence[str]):
    """A file URL → the file's name as the CLI gives it: a configured file as it is written in
    the configuration, another local file (found in a folder or by a glob) by its path, other
    URLs as they are."""
    given = {os.path.abspath(p): p for p in paths if "://" not in p}

    def name(url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            return url
        path = unquote(parsed.path)
        return given.get(path, path)

    return name


class _Splits:
    """Where each file split starts, in rows: turns (split, scan id) into a row number."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.count: dict[tuple[str, int], int] = defaultdict(int)
        self.files: dict[str, tuple[int, str]] = {}

    @classmethod
    def collected(cls, rows) -> "_Splits":
        """The splits the tasks of one scan reported (their ``splits`` rows)."""
        splits = cls()
        for r in rows:
            if r["kind"] == "splits":
                for b in _batches(r["payload"]):
                    splits.add(b)
        return splits

    def add(self, batch: pa.RecordBatch) -> None:
        for f, b, size, mtime, m, n in zip(*(c.to_pylist() for c in batch.columns)):
            key = (f, b)
            self.first[key] = min(self.first.get(key, m), m)
            self.count[key] += n
            when = datetime.fromtimestamp(mtime, timezone.utc) if mtime is not None else None
            self.files[f] = (size, when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None)

    def changed_since(self, first: "_Splits") -> str | None:
        """How the input this scan read differs from ``first``'s (files, sizes, modification
        times, rows per file split), or None when it is the same."""
        if self.files != first.files:
            gone = sorted(set(first.files) - set(self.files))
            new = sorted(set(self.files) - set(first.files))
            resized = sorted(f for f in self.files if f in first.files and self.files[f] != first.files[f])
            parts = [f"{what}: {', '.join(fs[:3])}" for what, fs in
                     (("gone", gone), ("new", new), ("changed", resized)) if fs]
            return "; ".join(parts)
        if dict(self.count) != dict(first.count):
            return "rows per file split differ"
        return None

    def offsets(self) -> dict[tuple[str, int], int]:
        """Rows of the file before each split."""
        by_file: dict[str, list[int]] = defaultdict(list)
        for f, b in self.count:
            by_file[f].append(b)
        out = {}
        for f, blocks in by_file.items():
            before = 0
            for b in sorted(blocks):
                out[(f, b)] = before
                before += self.count[(f, b)]
        return out


def _renumber(rejects: pa.RecordBatch, splits: _Splits, offsets, name) -> pa.RecordBatch:
    """The rejects with the CLI's file names and 1-based row numbers, and the row counts per
    file instead of per file split (in the batch's metadata)."""
    files, rows = [], []
    for source, row_id in zip(
        rejects.column("source_file").to_pylist(), rejects.column("source_row").to_pylist()
    ):
        url, block = source.rsplit("\n", 1)
        key = (url, int(block))
        files.append(name(url))
        rows.append(offsets[key] + (row_id - splits.first[key]) + 1)
    cols = dict(zip(rejects.schema.names, rejects.columns))
    cols["source_file"] = pa.array(files, pa.string())
    cols["source_row"] = pa.array(rows, pa.int64())
    meta = dict(rejects.schema.metadata)
    counts = json.loads(meta[_ROWS])
    per_file: dict[str, dict[str, int]] = {}
    for source, c in counts.get("sources", {}).items():
        f = per_file.setdefault(name(source.rsplit("\n", 1)[0]), dict.fromkeys(c, 0))
        for k, v in c.items():
            f[k] += v
    counts["sources"] = per_file
    meta[_ROWS] = json.dumps(counts)
    return pa.RecordBatch.from_arrays(
        list(cols.values()), schema=rejects.schema.with_metadata(meta)
    )


_ROWS = b"customer_value.rows"


def _shuffled(spark, toml: str, partitions, paths):
    """The input rows, every customer's in one of ``partitions`` partitions: by the id as the
    core reads it (as text, without leading or trailing Unicode whitespace), so " c1" and "c1"
    are one customer in one partition."""
    from pyspark.sql import functions as F

    cfg = json.loads(_core.config_json(toml))
    rows = read_rows(spark, toml, list(paths or cfg["input"]["paths"]))
    customer = cfg["input"]["columns"]["customer_id"]
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    key = F.regexp_replace(F.col(f"`{customer}`").cast("string"), r"(?U)^\s+|\s+$", "")
    return rows.repartition(n, key)


def _partials(toml: str, days: list[str], shuffled, paths, census: bool = False):
    """Every date's merged partial of the shuffled rows (with ``census``: without customer
    rows, and every partition's census of each date), and the input files as the manifest
    lists them."""
    cfg = json.loads(_core.config_json(toml))
    paths = list(paths or cfg["input"]["paths"])
    out = shuffled.mapInArrow(_folder(toml, days, census), OUT_SCHEMA).collect()
    censuses: dict[str, list[bytes]] = {d: [] for d in days}
    for r in out:
        if r["kind"] == "census":
            censuses[r["as_of"]].append(bytes(r["payload"]))

    splits = _Splits.collected(out)
    tasks = [json.loads(r["payload"]) for r in out if r["kind"] == "stats"]
    offsets = splits.offsets()
    name = _namer(paths)
    merged: dict[str, Partial] = {}
    for r in out:
        if r["kind"] != "partial":
            continue
        sums, customers, rejects = _batches(r["payload"])
        p = Partial.from_arrow(sums, customers, _renumber(rejects, splits, offsets, name))
        if r["as_of"] in merged:
            merged[r["as_of"]].merge(p)
        else:
            merged[r["as_of"]] = p
    for d in days:
        if d not in merged:
            # No rows at all: an empty fold, which the data checks then refuse.
            empty = pa.table({c: pa.array([], pa.string()) for c in _mapped(cfg["input"]["columns"])})
            merged[d] = Computation(toml, d).fold_rows(empty)
            if census:
                censuses[d].append(Computation(toml, d).census(merged[d]))
    fmt = {p: _format_of(p, cfg["input"]["format"]) for p in paths}
    inputs = []
    for url, (size, mtime) in sorted(splits.files.items(), key=lambda kv: name(kv[0])):
        shown = name(url)
        inputs.append(
            {
                "url": shown,
                "format": fmt.get(shown, _format_of(shown, cfg["input"]["format"])),
                "size": size,
                "mtime": mtime,
                "etag": None,
                "rows_read": 0,
                "rows_used": 0,
                "rows_rejected": 0,
                "rows_after_as_of": 0,
            }
        )
    timings = [
        ("spark_tasks", len(tasks)),
        ("spark_task_rows_max", max((t["rows"] for t in tasks), default=0)),
        ("spark_task_receive_ms_max", max((t["receive_ms"] for t in tasks), default=0)),
        ("spark_task_fold_ms_max", max((t["fold_ms"] for t in tasks), default=0)),
        ("spark_task_fold_ms_sum", sum(t["fold_ms"] for t in tasks)),
    ]
    return merged, censuses, inputs, timings, splits


def _days(as_of, dates) -> list[str]:
    if (as_of is None) == (dates is None):
        raise TypeError("give as_of or dates, not both")
    days = [str(as_of)] if as_of is not None else sorted({str(d) for d in dates})
    for d in days:
        try:
            date.fromisoformat(d)
        except ValueError:
            raise _core.ConfigError(f"as_of: '{d}' is not a date YYYY-MM-DD") from None
    return days


def compute(
    spark,
    config: Config,
    as_of: str | None = None,
    *,
    dates: Sequence[str] | None = None,
    partitions: int | None = None,
    paths: Sequence[str] | None = None,
    check: bool = True,
) -> dict:
    """Every table of the configured inputs as of ``as_of`` (or of each of ``dates``: a
    backfill, each date computed on the rows up to it), computed on Spark, returned to the
    driver: ``{table name: pyarrow.Table}``, or ``{as_of: {…}}`` for ``dates``.

    ``partitions``: customer partitions of the shuffle (default: the session's
    ``spark.sql.shuffle.partitions``). ``paths`` overrides ``input.paths``. With ``check``,
    the job's data checks raise :class:`customer_value.DataError`.
    """
    days = _days(as_of, dates)
    toml = config_toml(config)
    merged, _, _, _, _ = _partials(toml, days, _shuffled(spark, toml, partitions, paths), paths)
    result = {}
    for d in days:
        job = Computation(toml, d)
        if check:
            job.check(merged[d])
        result[d] = job.finish(merged[d])
    return result[days[0]] if as_of is not None else result


def run(
    spark,
    config: Config,
    as_of: str | None = None,
    *,
    dates: Sequence[str] | None = None,
    partitions: int | None = None,
    paths: Sequence[str] | None = None,
    force_unlock: bool = False,
    persist: bool = False,
) -> list[str]:
    """A run (or, with ``dates``, a backfill) of the job on Spark, published to ``[output]
    path`` (local or an object store) exactly as the CLI publishes: every table staged and
    swapped in, then the manifest; a run that fails or is killed leaves the previous partitions
    and manifests as they were. Returns the manifests' paths.

    It holds the output's lock from start to end and runs in two passes over the shuffled
    rows (Spark reads and shuffles the input again for the second; ``persist`` keeps the
    shuffled rows instead, which cost more than it saved on one machine), so the driver never
    holds customer rows: pass 1 folds each partition into its sums,
    rejects and census (the RFM measures counted by value, the model summaries); the driver
    merges them and plans (RFM cut points, fitted models); pass 2 folds each partition again,
    scores it against the plan, and writes its customers file into the output's staging
    folder under a name unique to the task attempt. The driver publishes the files of the
    attempts Spark kept (retried and speculative attempts never duplicate a row), then deletes
    the staging folder.
    """
    from pyspark import StorageLevel

    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    days = _days(as_of, dates)
    toml = config_toml(config)
    stamp = started.strftime("%Y%m%dT%H%M%S") + f"{started.microsecond // 1000:03d}Z"
    run_id = f"{stamp}-{os.urandom(4).hex()}"
    output = _core.Output(toml, run_id, force_unlock)
    shuffled = None
    try:
        shuffled = _shuffled(spark, toml, partitions, paths)
        if persist:
            shuffled = shuffled.persist(StorageLevel.MEMORY_AND_DISK)
        merged, censuses, inputs, task_timings, first = _partials(toml, days, shuffled, paths, True)
        for d in days:
            # The data checks before the second pass (the publish checks again).
            Computation(toml, d).check(merged[d])
        pass1_ms = int((time.monotonic() - t0) * 1000)
        plans = {d: Computation(toml, d).plan(merged[d], censuses[d]) for d in days}
        plan_ms = int((time.monotonic() - t0) * 1000) - pass1_ms
        scored = shuffled.mapInArrow(_scorer(toml, plans, run_id), OUT_SCHEMA).collect()
        sums: dict[str, list[bytes]] = {d: [] for d in days}
        files: dict[str, list[tuple[str, int, int]]] = {d: [] for d in days}
        score_ms = []
        second = _Splits.collected(scored)
        for r in scored:
            if r["kind"] == "sums":
                sums[r["as_of"]].append(bytes(r["payload"]))
            elif r["kind"] == "file":
                files[r["as_of"]].append(tuple(json.loads(r["payload"])))
            elif r["kind"] == "stats":
                score_ms.append(json.loads(r["payload"])["score_ms"])
        # Pass 2 read the input again: it must have read the same rows.
        changed = second.changed_since(first)
        if changed:
            raise _core.Error(
                f"input: the files changed between the two passes of the run ({changed}); "
                "nothing was published: rerun once they are complete"
            )
        compute_ms = int((time.monotonic() - t0) * 1000)
        timings = [
            ("spark", compute_ms),
            ("spark_pass1", pass1_ms),
            ("spark_plan", plan_ms),
            *task_timings,
            ("spark_task_score_ms_max", max(score_ms, default=0)),
        ]
        return output.publish(
            toml,
            [(d, merged[d], (plans[d], sums[d], sorted(files[d]))) for d in days],
            json.dumps(inputs),
            started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            timings,
        )
    finally:
        if persist and shuffled is not None:
            shuffled.unpersist()
        left = output.close()
        if left:
            import warnings

            warnings.warn(f"customer-value: {left}", stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit`` entry point: ``python -m customer_value.spark --config F --as-of D``
    (or ``--dates D1,D2,…`` for a backfill). Exit codes as the CLI's: 2 bad configuration, 3
    data checks failed, 1 anything else."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="customer_value.spark", description=main.__doc__)
    parser.add_argument("--config", required=True, help="TOML configuration (a local path)")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--as-of", help="YYYY-MM-DD")
    when.add_argument("--dates", help="comma-separated YYYY-MM-DD dates (a backfill)")
    parser.add_argument("--partitions", type=int, help="customer partitions of the shuffle")
    parser.add_argument("--force-unlock", action="store_true")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("customer-value").getOrCreate()
    try:
        manifests = run(
            spark,
            args.config,
            args.as_of,
            dates=args.dates.split(",") if args.dates else None,
            partitions=args.partitions,
            force_unlock=args.force_unlock,
        )
    except _core.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _core.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except _core.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for m in manifests:
        print(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
