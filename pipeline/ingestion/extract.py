"""Ingestion: the customer database (SQLAlchemy) and the daily event files, into Parquet.

Each source is read as a stream of bounded chunks of one half-open window ``[start, end)``
(:func:`chunks`): database rows ``ingest_chunk_rows`` at a time, event files in day order.
Values are *conformed* to the contract's types where the column exists, but nothing is
judged here: missing columns, nulls and out-of-range values travel on to validation
(``pipeline.ingestion.validate``), which names them and quarantines the bad rows.
``pipeline.ingestion.steps.ingest_step`` validates and stages chunk by chunk and publishes the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipeline.artifacts import ParquetAppender, as_date
from pipeline.config import Settings
from pipeline.errors import DataError
from pipeline.ingestion.contract import EVENTS_SCHEMA, LAKE_TABLES, SOURCE_TABLES
from pipeline.ingestion.source import load_sql, masked, source_engine

log = logging.getLogger(__name__)


class IngestionError(RuntimeError):
    """A source could not be read or conformed to the contract."""


class LandingFileError(IngestionError, DataError):
    """A landed file cannot be parsed or lacks contract columns: rereading it cannot help."""


@dataclass(frozen=True)
class IngestResult:
    table: str
    path: Path
    rows: int
    window_start: dt.date
    window_end: dt.date
    missing_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "path": str(self.path),
            "rows": self.rows,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "missing_columns": list(self.missing_columns),
        }


def _contract_fields(columns: list[str], schema: pa.Schema, table: str) -> list[pa.Field]:
    """The contract's fields that ``columns`` has, in contract order; columns it does not know are logged."""
    extra = [c for c in columns if c not in schema.names]
    if extra:
        log.warning("ingest %s: ignoring columns not in the contract: %s", table, extra)
    return [f for f in schema if f.name in columns]


def conform(df: pd.DataFrame, schema: pa.Schema, table: str) -> pa.Table:
    """Cast ``df`` to the contract's types for the columns it has.

    Columns the contract does not know are dropped (and logged); columns it expects but
    ``df`` lacks are left out, so validation reports them by name.
    """
    fields = _contract_fields(list(df.columns), schema, table)
    arrays = []
    for field in fields:
        col = df[field.name]
        try:
            if pa.types.is_timestamp(field.type):
                col = pd.to_datetime(col, errors="raise", format="mixed")
            arrays.append(pa.array(col, type=field.type, from_pandas=True))
        except (ValueError, TypeError, pa.ArrowInvalid) as exc:
            raise IngestionError(
                f"table {table}, column {field.name}: cannot convert to {field.type}: {exc}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def conform_arrow(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """:func:`conform` for an Arrow table (event files are read as Arrow: no pandas round trip)."""
    fields = _contract_fields(table.column_names, schema, name)
    arrays = []
    for field in fields:
        try:
            # safe casts (no silent integer overflow), but sub-microsecond stamps may be truncated
            arrays.append(pc.cast(table.column(field.name),
                                  options=pc.CastOptions(field.type, allow_time_truncate=True)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise IngestionError(f"table {name}, column {field.name}: cannot convert to {field.type}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _write_chunks(chunks: Iterable[pa.Table], schema: pa.Schema, out_path: Path) -> tuple[int, tuple[str, ...]]:
    """Stream conformed chunks into one Parquet file written atomically (the full contract
    schema when there are no rows)."""
    with ParquetAppender(out_path, keep_empty=True) as out:
        for chunk in chunks:
            out.write(chunk)
        if out.rows == 0:
            out.schema = schema
    present = out.schema or schema
    return out.rows, tuple(n for n in schema.names if n not in present.names)


def _window(table: str, start: str | dt.date, end: str | dt.date) -> tuple[dt.date, dt.date]:
    start_d, end_d = as_date(start), as_date(end)
    if start_d >= end_d:
        raise ValueError(f"ingest {table}: empty window [{start_d}, {end_d})")
    return start_d, end_d


def table_chunks(settings: Settings, table: str, start: str | dt.date, end: str | dt.date) -> Iterator[pa.Table]:
    """Rows of a customer-database ``table`` whose time column is in ``[start, end)``,
    conformed, ``settings.ingest_chunk_rows`` at a time.

    The query is ``sql/ingest_<table>.sql`` with bound parameters, ordered by the time
    column (so a chunk covers a few consecutive days); the cursor streams (server-side
    where the database has them), so memory is bounded by a chunk.
    """
    if table not in SOURCE_TABLES:
        raise KeyError(f"unknown source table {table!r}; known: {sorted(SOURCE_TABLES)}")
    start_d, end_d = _window(table, start, end)
    query = sa.text(load_sql(f"ingest_{table}", settings)).bindparams(
        sa.bindparam("window_start", type_=sa.DateTime()),
        sa.bindparam("window_end", type_=sa.DateTime()),
    )
    params = {
        "window_start": dt.datetime.combine(start_d, dt.time()),
        "window_end": dt.datetime.combine(end_d, dt.time()),
    }
    rows = settings.ingest_chunk_rows
    eng = source_engine(settings)
    try:
        with eng.connect() as conn:
            conn = conn.execution_options(stream_results=True, max_row_buffer=rows)
            for chunk in pd.read_sql(query, conn, params=params, chunksize=rows):
                yield conform(chunk, SOURCE_TABLES[table].schema, table)
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database {masked(settings.db_url)} "
                             f"(setting source_db_url) failed: {exc}") from exc


#: the lower bound of "from the earliest row" (history_start unset)
EARLIEST = dt.date(1900, 1, 1)


def time_bound(settings: Settings, table: str, end: dt.date, which: str = "min") -> dt.datetime | None:
    """The earliest (``which="min"``) or latest (``"max"``) time-column value of the rows that
    ``ingest_<table>.sql`` (yours, with ``sql_dir``) returns before ``end``; None: no row."""
    _, time_col = LAKE_TABLES[table]
    fn = {"min": "MIN", "max": "MAX"}[which]
    inner = load_sql(f"ingest_{table}", settings).strip().rstrip(";")
    query = sa.text(f"SELECT {fn}(q.{time_col}) FROM ({inner}) AS q").bindparams(  # identifiers only
        sa.bindparam("window_start", type_=sa.DateTime()), sa.bindparam("window_end", type_=sa.DateTime()))
    try:
        with source_engine(settings).connect() as conn:
            value = conn.execute(query, {"window_start": dt.datetime.combine(EARLIEST, dt.time()),
                                         "window_end": dt.datetime.combine(end, dt.time())}).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database {masked(settings.db_url)} "
                             f"(setting source_db_url) failed: {exc}") from exc
    if value is None:
        return None
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def earliest_day(settings: Settings, table: str, end: dt.date) -> dt.date | None:
    """The day of the earliest row of ``table`` before ``end`` (None: no row): where a first
    training run starts a table's history when ``history_start`` is unset."""
    first = time_bound(settings, table, end, "min")
    return first.date() if first is not None else None


def ingest_table(
    settings: Settings, table: str, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """:func:`table_chunks` of one window streamed into one Parquet file (``python -m pipeline ingest``)."""
    start_d, end_d = _window(table, start, end)
    rows, missing = _write_chunks(table_chunks(settings, table, start_d, end_d), SOURCE_TABLES[table].schema,
                                  Path(out_path))
    log.info("ingest %s [%s, %s): %d rows -> %s", table, start_d, end_d, rows, out_path)
    return IngestResult(table, Path(out_path), rows, start_d, end_d, missing)


def event_files(settings: Settings, start: dt.date, end: dt.date) -> list[Path]:
    """Landed event files (Parquet or CSV) for the days in ``[start, end)``, in day order."""
    root = settings.landing_dir / "events"
    files: list[Path] = []
    for day_dir in sorted(root.glob("date=*")):
        try:
            day = dt.date.fromisoformat(day_dir.name.removeprefix("date="))
        except ValueError:
            log.warning("ingest events: ignoring folder with a bad date name: %s", day_dir)
            continue
        if start <= day < end:
            files.extend(sorted(p for p in day_dir.iterdir() if p.suffix in {".parquet", ".csv"}))
    return files


def _event_file_batches(path: Path, rows: int) -> Iterator[pa.Table]:
    """Batches of one landed file; a file that cannot be parsed, or that lacks contract
    columns, is a :class:`LandingFileError` naming the file (and, for a CSV, the header
    it found: a wrong delimiter shows as one long column name)."""
    kind = "CSV" if path.suffix == ".csv" else "Parquet"
    try:
        if path.suffix == ".csv":
            types = {f.name: f.type for f in EVENTS_SCHEMA}
            reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
            columns = reader.schema.names
            batches: Iterable[pa.RecordBatch] = reader
        else:
            parquet = pq.ParquetFile(path)
            columns = parquet.schema_arrow.names
            batches = parquet.iter_batches(batch_size=rows)
        missing = [n for n in EVENTS_SCHEMA.names if n not in columns]
        if missing:
            raise LandingFileError(
                f"events landing file {path}: no column(s) {missing}; its columns are {columns}"
                + (" (a CSV must be comma-separated with a header row)" if kind == "CSV" else ""))
        for batch in batches:
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, UnicodeDecodeError, OSError) as exc:
        raise LandingFileError(f"events landing file {path} cannot be read as {kind}: {exc}") from exc


def event_chunks(settings: Settings, start: str | dt.date, end: str | dt.date) -> Iterator[pa.Table]:
    """The event files landed for the days in ``[start, end)``, conformed, in day order, in
    chunks of at most ``settings.ingest_chunk_rows`` rows: consecutive small files share a
    chunk (validation costs a fixed overhead per chunk), a large file is read in batches."""
    limit = settings.ingest_chunk_rows
    pending: list[pa.Table] = []
    rows = 0
    for path in event_files(settings, *_window("events", start, end)):
        for batch in _event_file_batches(path, limit):
            table = conform_arrow(batch, EVENTS_SCHEMA, "events")
            if pending and (rows + table.num_rows > limit or table.schema != pending[0].schema):
                yield pa.concat_tables(pending)
                pending, rows = [], 0
            pending.append(table)
            rows += table.num_rows
    if pending:
        yield pa.concat_tables(pending)


def ingest_events(
    settings: Settings, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """:func:`event_chunks` of one window streamed into one Parquet file."""
    start_d, end_d = _window("events", start, end)
    rows, missing = _write_chunks(event_chunks(settings, start_d, end_d), EVENTS_SCHEMA, Path(out_path))
    log.info("ingest events [%s, %s): %d rows -> %s", start_d, end_d, rows, out_path)
    return IngestResult("events", Path(out_path), rows, start_d, end_d, missing)


def chunks(settings: Settings, table: str, start: str | dt.date, end: str | dt.date) -> Iterator[pa.Table]:
    """The conformed chunks of any lake input's window: :func:`event_chunks` or :func:`table_chunks`."""
    if table == "events":
        return event_chunks(settings, start, end)
    return table_chunks(settings, table, start, end)


def window_for(settings: Settings, table: str, end: dt.date, nightly: tuple[dt.date, dt.date] | None) -> tuple[dt.date, dt.date]:
    """The window ``[start, end)`` a run ingests for ``table``.

    A nightly run (``nightly``: its window) takes exactly that window. A training run takes
    the database tables from ``history_start`` (or each table's earliest row) and catches the
    event lake up from its last day (events are large: history is not re-read), or, on an
    empty lake, from the first landed day.
    """
    from pipeline.ingestion import lake

    if nightly is not None:
        return nightly
    if table != "events":
        if settings.history_start:
            return as_date(settings.history_start), end
        return min(earliest_day(settings, table, end) or end, end), end
    have = lake.partition_dates(settings, "events")
    if have:
        return have[-1] + dt.timedelta(days=1), end
    files = event_files(settings, as_date(settings.history_start) if settings.history_start else EARLIEST, end)
    first = min((as_date(f.parent.name.removeprefix("date=")) for f in files), default=end)
    return first, end
