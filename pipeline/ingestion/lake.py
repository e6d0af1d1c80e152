"""The Parquet lake: one folder per table, one partition per day of the table's time column.

Layout: ``<lake>/<table>/date=YYYY-MM-DD/part-0.parquet``; ``<lake>`` is ``<data_dir>/lake``, or
``lake_url`` (a folder, or ``s3://bucket/prefix``: every read and write goes through
:mod:`pipeline.storage`).

Writing a batch for the half-open window ``[start, end)`` replaces every day partition of
that window for which the batch has rows, so re-ingesting a window replaces it instead of
duplicating rows, whatever windows were ingested before. A day without rows never deletes
a partition the lake holds (event days must be complete before a batch is read at all:
:func:`pipeline.ingestion.readiness.require_complete_landing`).
Each partition is written atomically (a rename, or one upload of the complete object).
Batches are staged chunk by chunk first (:class:`DayStager`, on local disk) and published only
once the whole batch passed validation, so memory is bounded by a chunk (a day of events,
``ingest_chunk_rows`` database rows), not by the history, and a failed batch publishes nothing.

Readers of the lake use DuckDB over the day partitions they need (:func:`duckdb_connection`,
:func:`register_lake_table`): the features, the labels and validation's cross-chunk checks. A
lake on an object store is read by DuckDB through the registered fsspec filesystem (byte
ranges on demand), never downloaded first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.artifacts import as_date, atomic_path
from pipeline.config import Settings
from pipeline.ingestion.contract import ID, LAKE_TABLES, TABLES, schema_with_ids
from pipeline.storage import Location

PART_NAME = "part-0.parquet"

log = logging.getLogger(__name__)


def table_dir(settings: Settings, table: str) -> Location:
    if table not in LAKE_TABLES:
        raise KeyError(f"unknown lake table {table!r}; known: {sorted(LAKE_TABLES)}")
    return storage.lake_root(settings) / table


def partition_files(settings: Settings, table: str) -> list[Location]:
    """Every partition file of ``table``, sorted by day (one listing)."""
    return storage.glob(table_dir(settings, table), "date=*/*.parquet")


def table_glob(settings: Settings, table: str) -> str:
    """Glob over all partitions of a table (for DuckDB ``read_parquet``)."""
    return str(table_dir(settings, table) / "date=*" / "*.parquet")


def has_data(settings: Settings, table: str) -> bool:
    return bool(partition_files(settings, table))


def id_type(settings: Settings) -> pa.DataType | None:
    """The business's identifier type: ``customers.customer_id`` as the lake holds it (int64 for
    integer ids, string for text ids); None while the lake holds no customers."""
    files = partition_files(settings, "customers")
    if not files:
        return None
    with storage.parquet_file(files[-1]) as last:
        return last.schema_arrow.field("customer_id").type


def schema_of(settings: Settings, table: str, ids: pa.DataType | None = None) -> pa.Schema:
    """``table``'s lake schema for this business: the contract's, its ids typed ``ids`` (default:
    :func:`id_type`, or integers for a lake without customers)."""
    return schema_with_ids(table, ids or id_type(settings) or ID)


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Days of the half-open window [start, end)."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


class DayStager:
    """Stage the rows of the window ``[start, end)`` of ``table``, chunk by chunk, as day
    pieces under ``staging``; :meth:`publish` then replaces the lake's day partitions.

    Memory is bounded by one chunk while staging and by one day while publishing. Nothing
    reaches the lake before :meth:`publish`, so a batch that fails validation half-way
    leaves the lake as it was; :meth:`discard` removes the staged pieces.
    """

    def __init__(self, settings: Settings, table: str, start: str | dt.date, end: str | dt.date,
                 staging: Path, schema: pa.Schema | None = None) -> None:
        self.schema = schema or schema_of(settings, table)
        self.time_col = TABLES[table].time_column
        self.settings, self.table = settings, table
        self.start, self.end = as_date(start), as_date(end)
        self.staging = Path(staging)
        shutil.rmtree(self.staging, ignore_errors=True)  # a rerun's leftovers
        self.staging.mkdir(parents=True)
        self.rows = 0
        self._pieces = 0

    def add(self, df: pd.DataFrame) -> None:
        """Split ``df`` by the day of its time column into staged pieces.

        Every row's time column must fall inside the window (a row outside it is a bug in
        the caller, as validation rejects such rows, and raises).
        """
        if df.empty:
            return
        ts = pd.to_datetime(df[self.time_col])
        outside = (ts < pd.Timestamp(self.start)) | (ts >= pd.Timestamp(self.end))
        if outside.any():
            raise ValueError(
                f"lake table {self.table}: {int(outside.sum())} rows have {self.time_col} outside "
                f"the window [{self.start}, {self.end})"
            )
        for day, rows in df.groupby(ts.dt.normalize(), sort=True):
            self._pieces += 1
            piece = self.staging / f"date={pd.Timestamp(day).date().isoformat()}" / f"piece-{self._pieces:06d}.parquet"
            # a column missing from the batch is staged as (typed) nulls
            present = pa.schema([f for f in self.schema if f.name in rows.columns])
            table = pa.Table.from_pandas(rows[present.names], schema=present, preserve_index=False)
            for field in self.schema:
                if field.name not in present.names:
                    table = table.append_column(field, pa.nulls(len(rows), field.type))
            with atomic_path(piece) as tmp:
                pq.write_table(table.select(self.schema.names), tmp)
        self.rows += len(df)

    def staged_glob(self) -> str:
        return str(self.staging / "date=*" / "*.parquet")

    def publish(self) -> list[Location]:
        """Replace the day partitions of the window that have staged rows. A day without rows
        never deletes or empties a partition the lake already holds (it is kept, with a
        warning): "no rows" is never evidence that the rows are gone. Returns the partition
        files written."""
        base = table_dir(self.settings, self.table)
        held: dict[str, list[Location]] = {}  # the lake's files by day, listed once
        for file in partition_files(self.settings, self.table):
            held.setdefault(file.parent.name, []).append(file)
        written: list[Location] = []
        kept: list[str] = []
        for day in days(self.start, self.end):
            part_dir = base / f"date={day.isoformat()}"
            pieces = sorted((self.staging / f"date={day.isoformat()}").glob("*.parquet"))
            if not pieces:
                if held.get(part_dir.name):
                    kept.append(day.isoformat())
                continue
            final = part_dir / PART_NAME
            if len(pieces) == 1:  # the usual case for time-ordered input: a rename (or one upload), no copy
                storage.publish_file(pieces[0], final)
            else:
                table = pa.concat_tables([pq.read_table(p, schema=self.schema) for p in pieces])
                with atomic_path(final) as tmp:
                    pq.write_table(table, tmp)
            # a partition is exactly one file: the new one is in place, then any other goes
            for stale in held.get(part_dir.name, []):
                if stale != final:
                    storage.remove(stale)
            written.append(final)
        if kept:
            log.warning("lake %s: kept the existing partition(s) of %d day(s) with no rows in this batch: %s",
                        self.table, len(kept), ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else ""))
        self.discard()
        return written

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def staging_dir(settings: Settings, table: str, run_key: str | None = None) -> Path:
    """The staging folder of one run's batch inside a local lake (same file system: publishing
    is a rename; DuckDB's ``date=*`` globs never see it), or ``<data_dir>/lake-staging/`` for a
    lake on an object store (publishing uploads). Without ``run_key``, a fresh one."""
    root = storage.lake_root(settings)
    base = root / ".staging" if isinstance(root, Path) else settings.data_dir / "lake-staging"
    return base / table / (run_key or uuid.uuid4().hex)


def write_window(
    settings: Settings,
    table: str,
    df: pd.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
) -> list[Location]:
    """Replace the day partitions of ``table`` in ``[start, end)`` with the rows of ``df``
    (one chunk through :class:`DayStager`). Returns the partition files written."""
    stager = DayStager(settings, table, start, end, staging_dir(settings, table))
    try:
        stager.add(df)
        return stager.publish()
    finally:
        stager.discard()


def read_table(settings: Settings, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole lake table (small tables and tests; large scans belong in DuckDB)."""
    schema = schema_of(settings, table)
    files = partition_files(settings, table)
    if not files:
        return pa.Table.from_pylist([], schema=schema).to_pandas()[columns or schema.names]
    return pa.concat_tables([storage.read_arrow(f, columns=columns, schema=schema) for f in files]).to_pandas()


def customer_ids(settings: Settings) -> np.ndarray | None:
    """Sorted ids of every customer in the lake, in the lake's id type (None when the lake holds
    no customers: the references of other tables cannot be checked then)."""
    if not has_data(settings, "customers"):
        log.info("lake holds no customers yet: customer references are not checked")
        return None
    import duckdb

    with duckdb.connect() as con:
        storage.register_duckdb(con, settings)
        ids = con.execute("SELECT DISTINCT customer_id FROM read_parquet($glob, hive_partitioning = false) "
                          "WHERE customer_id IS NOT NULL ORDER BY 1",
                          {"glob": table_glob(settings, "customers")}).fetchnumpy()["customer_id"]
    return np.asarray(ids)


def partition_dates(settings: Settings, table: str) -> list[dt.date]:
    """Sorted days for which ``table`` has a partition in the lake."""
    return sorted({dt.date.fromisoformat(f.parent.name.removeprefix("date=")) for f in partition_files(settings, table)})


# --------------------------------------------------------------- DuckDB over the lake
#: DuckDB's buffer limit; it spills to a temporary directory beyond it
DUCKDB_MEMORY_LIMIT = "3GB"
#: read the footers of all files up front when a table view has at most this many files
EAGER_FOOTERS_MAX_FILES = 400


def _duck_type(dtype: pa.DataType) -> str:
    """The DuckDB type of a contract column's Arrow type."""
    return {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
            pa.bool_(): "BOOLEAN"}.get(dtype, "TIMESTAMP")


@contextlib.contextmanager
def duckdb_connection(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with bounded threads and memory, spilling to a temp dir."""
    with tempfile.TemporaryDirectory(prefix="churnflow-duckdb-") as spill:
        con = duckdb.connect(
            config={
                "threads": max(1, settings.n_jobs),
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "temp_directory": spill,
                "preserve_insertion_order": False,
            }
        )
        try:
            con.execute("SET enable_progress_bar = false")
            storage.register_duckdb(con, settings)
            yield con
        finally:
            con.close()


DayRange = tuple[dt.date | None, dt.date]


def lake_files(settings: Settings, table: str, ranges: Sequence[DayRange]) -> list[str]:
    """Parquet files of ``table`` whose day partition lies in one of the half-open ranges.

    A range ``(None, end)`` is unbounded below. Pruning is only an optimisation: the SQL
    applies the exact time filters itself.
    """
    files: list[str] = []
    for path in partition_files(settings, table):
        day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
        if any((lo is None or lo <= day) and day < hi for lo, hi in ranges):
            files.append(str(path))
    return files


def register_lake_table(
    con: duckdb.DuckDBPyConnection, settings: Settings, table: str, ranges: Sequence[DayRange], *,
    in_part: bool = False,
) -> None:
    """Expose the pruned partitions of a lake table as the view ``table`` (empty if none). A
    column its files lack (written before the contract had it) reads as nulls. ``in_part``:
    only the rows of the customers of the connection's partition
    (:func:`pipeline.features.partitions.register_part`)."""
    schema = schema_of(settings, table)
    files = lake_files(settings, table, ranges)
    if files:
        # Columns are matched by name either way; without union_by_name a file missing one
        # fails loudly (the lake is written with the contract schema). union_by_name reads
        # every footer up front: it costs ~0.3 s for two years of daily partitions, but on
        # the ~90 files of an event window the scan then runs ~0.5 s faster (make bench).
        rel = con.read_parquet(files, hive_partitioning=False, union_by_name=len(files) <= EAGER_FOOTERS_MAX_FILES)
        have = set(rel.columns)
        rel = rel.project(", ".join(f'"{f.name}"' if f.name in have else f'NULL::{_duck_type(f.type)} AS "{f.name}"'
                                    for f in schema))
        (rel.filter("in_part(customer_id)") if in_part else rel).create_view(table)
    else:
        con.register(table, schema.empty_table())
