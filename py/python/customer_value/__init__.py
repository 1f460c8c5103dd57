"""customer-value for Python: customer retention, lifetime value, churn cohorts and predicted
CLV per segment, computed by the same Rust core as the ``customer-value`` command-line job.

>>> import customer_value, pyarrow.csv
>>> rows = pyarrow.csv.read_csv("transactions.csv")
>>> tables = customer_value.compute(rows, config="config/default.toml", as_of="2025-12-31")
>>> tables["ltv"].to_pandas()

``compute`` takes rows as an input file holds them (the columns ``[input.columns]`` names,
values as text or typed) and applies the job's input rules: a bad row is a reject in
``tables["rejects"]``, never an error. For engines, :class:`Computation` exposes the
partition-level API: fold each customer partition into a :class:`Partial`, merge the partials,
finish the tables (``customer_value.spark`` runs it on Apache Spark).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Union

import pyarrow as pa

from . import _core
from ._core import ConfigError, DataError, Error, InputError, Partial, set_threads

__all__ = [
    "TABLES",
    "Computation",
    "ConfigError",
    "DataError",
    "Error",
    "InputError",
    "Partial",
    "compute",
    "config_toml",
    "set_threads",
]

#: Every table, in the order the job publishes them.
TABLES = ("customers", "retention", "cohorts", "ltv", "rejects", "models")

Config = Union[Mapping[str, Any], str, "os.PathLike[str]"]


def config_toml(config: Config) -> str:
    """The TOML text of ``config``: a nested dict with the TOML file's keys, the path of a TOML
    file, or TOML text itself."""
    if isinstance(config, Mapping):
        return _core.toml_from_json(json.dumps(config))
    if isinstance(config, os.PathLike) or (
        isinstance(config, str) and "\n" not in config and "=" not in config
    ):
        path = os.fspath(config)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
    if isinstance(config, str):
        return config
    raise TypeError(
        f"config must be a dict, a TOML file's path or TOML text, not {type(config).__name__}"
    )


def to_arrow(data: Any) -> pa.Table:
    """``data`` as a ``pyarrow.Table``: a pyarrow Table or RecordBatch, a polars or pandas
    DataFrame, or anything with ``__arrow_c_stream__``."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        return data.to_arrow()
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise TypeError(
        "lines must be a pyarrow Table, a polars or a pandas DataFrame, "
        f"not {type(data).__module__}.{type(data).__name__}"
    )


class Computation:
    """One as_of date's computation under one configuration: the partition-level API.

    Customers are split into partitions by the caller (every row of a customer in one);
    :meth:`fold_rows` turns each partition's rows into a :class:`Partial`; partials merge in
    any grouping and order (:meth:`Partial.merge`, or across processes as Arrow with
    :meth:`Partial.to_arrow` / :meth:`Partial.from_arrow`); :meth:`check` runs the job's data
    checks and :meth:`finish` gives the tables, equal to a CLI run over the same rows.
    """

    def __init__(self, config: Config, as_of: str):
        self._inner = _core.Computation(config_toml(config), str(as_of))

    @property
    def as_of(self) -> str:
        return self._inner.as_of

    def fold_rows(self, rows: Any, source: str = "lines", first_row: int = 1) -> Partial:
        """Folds the input rows of one partition. ``rows`` is a table (see :func:`to_arrow`)
        or a mapping of source name to table (rejects name their source and row, counted
        from ``first_row``)."""
        if isinstance(rows, Mapping):
            sources = [(str(name), first_row, to_arrow(t)) for name, t in rows.items()]
        else:
            sources = [(source, first_row, to_arrow(rows))]
        return self._inner.fold_rows(sources)

    def fold_lines(self, lines: Any) -> Partial:
        """Folds normalized lines (amounts in minor units; see the Rust API's docs)."""
        return self._inner.fold_lines(to_arrow(lines))

    def check(self, partial: Partial) -> None:
        """The job's data checks on the merged partial: raises :class:`DataError` (the CLI's
        exit 3) on too many rejects, no usable rows by as_of, or stale input."""
        self._inner.check(partial)

    def finish(self, partial: Partial) -> dict[str, pa.Table]:
        """Every table of the merged partial of all partitions, keyed by name."""
        return dict(self._inner.finish(partial))

    # A run spread over machines in two passes, so no driver holds customer rows (the Rust
    # core's ``api::spread``; ``customer_value.spark.run`` uses it).

    def census(self, partial: Partial) -> bytes:
        """Pass 1, per partition: takes the customer rows out of ``partial`` (which then
        merges as before) and returns what the plan needs of them."""
        return self._inner.census(partial)

    def plan(self, partial: Partial, censuses: list[bytes]) -> bytes:
        """From the merged partial and every partition's census: the plan of pass 2 (the
        whole base's RFM cut points and fitted models), the same for every partition."""
        return self._inner.plan(partial, list(censuses))

    def score(self, plan: bytes, partial: Partial) -> tuple[pa.RecordBatch, bytes]:
        """Pass 2, per partition (folded again): its customers table and its ltv sums."""
        return self._inner.score(plan, partial)


def compute(
    lines: Any, config: Config, as_of: str, *, source: str = "lines", check: bool = True
) -> dict[str, pa.Table]:
    """Every table (customers, retention, cohorts, ltv, rejects, models) of ``lines`` as of
    ``as_of`` (YYYY-MM-DD) under ``config`` (a dict with the TOML keys, a TOML path or text;
    ``input.paths`` and ``[output]`` are not used), as a dict of ``pyarrow.Table``.

    ``lines`` holds the rows as an input file does (a pyarrow Table, a polars or pandas
    DataFrame), or is a mapping of source name to such a table. Rejected rows name their
    source (``source`` for a single table) and row. With ``check``, the job's data checks
    raise :class:`DataError` as the CLI exits 3.
    """
    job = Computation(config, as_of)
    partial = job.fold_rows(lines, source=source)
    if check:
        job.check(partial)
    return job.finish(partial)
