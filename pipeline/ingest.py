"""Ingestion: the customer database (SQLAlchemy) and the daily event files, into Parquet.

Each call extracts one half-open window ``[start, end)`` of one table into one Parquet
artifact. Values are *conformed* to the contract's types where the column exists, but
nothing is judged here: missing columns, nulls and out-of-range values travel on to
validation (``pipeline.validate``), which names them and quarantines the bad rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipeline.artifacts import as_date, atomic_path
from pipeline.config import Settings
from pipeline.db import engine, load_sql
from pipeline.schemas import EVENTS_SCHEMA, SOURCE_TABLES

log = logging.getLogger(__name__)


class IngestionError(RuntimeError):
    """A source could not be read or conformed to the contract."""


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


def conform(df: pd.DataFrame, schema: pa.Schema, table: str) -> pa.Table:
    """Cast ``df`` to the contract's types for the columns it has.

    Columns the contract does not know are dropped (and logged); columns it expects but
    ``df`` lacks are left out, so validation reports them by name.
    """
    extra = [c for c in df.columns if c not in schema.names]
    if extra:
        log.warning("ingest %s: ignoring columns not in the contract: %s", table, extra)
    fields = [f for f in schema if f.name in df.columns]
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


def _write_chunks(chunks, schema: pa.Schema, table: str, out_path: Path) -> tuple[int, tuple[str, ...]]:
    """Stream conformed chunks into one Parquet file written atomically."""
    rows = 0
    writer: pq.ParquetWriter | None = None
    present: pa.Schema | None = None
    with atomic_path(out_path) as tmp:
        try:
            for chunk in chunks:
                arrow = conform(chunk, schema, table)
                if writer is None:
                    present = arrow.schema
                    writer = pq.ParquetWriter(tmp, present)
                writer.write_table(arrow.cast(present))
                rows += arrow.num_rows
            if writer is None:  # no rows: write an empty file with the full contract schema
                present = schema
                pq.write_table(schema.empty_table(), tmp)
        finally:
            if writer is not None:
                writer.close()
    assert present is not None
    missing = tuple(n for n in schema.names if n not in present.names)
    return rows, missing


def ingest_table(
    settings: Settings, table: str, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """Extract rows of a customer-database ``table`` whose time column is in ``[start, end)``.

    The query is ``sql/ingest_<table>.sql`` with bound parameters; rows are fetched in
    chunks of ``settings.ingest_chunk_rows`` and streamed to ``out_path``.
    """
    if table not in SOURCE_TABLES:
        raise KeyError(f"unknown source table {table!r}; known: {sorted(SOURCE_TABLES)}")
    start_d, end_d = as_date(start), as_date(end)
    if start_d >= end_d:
        raise ValueError(f"ingest {table}: empty window [{start_d}, {end_d})")
    query = sa.text(load_sql(f"ingest_{table}")).bindparams(
        sa.bindparam("window_start", type_=sa.DateTime()),
        sa.bindparam("window_end", type_=sa.DateTime()),
    )
    params = {
        "window_start": dt.datetime.combine(start_d, dt.time()),
        "window_end": dt.datetime.combine(end_d, dt.time()),
    }
    try:
        with engine(settings).connect() as conn:
            chunks = pd.read_sql(query, conn, params=params, chunksize=settings.ingest_chunk_rows)
            rows, missing = _write_chunks(chunks, SOURCE_TABLES[table].schema, table, Path(out_path))
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database failed: {exc}") from exc
    log.info("ingest %s [%s, %s): %d rows -> %s", table, start_d, end_d, rows, out_path)
    return IngestResult(table, Path(out_path), rows, start_d, end_d, missing)


def event_files(settings: Settings, start: dt.date, end: dt.date) -> list[Path]:
    """Landed event files (Parquet or CSV) for the days in ``[start, end)``."""
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


def _read_event_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        types = {f.name: f.type for f in EVENTS_SCHEMA}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    else:
        table = pq.read_table(path)
    return table.to_pandas()


def ingest_events(
    settings: Settings, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """Read the event files landed for the days in ``[start, end)`` into one Parquet artifact."""
    start_d, end_d = as_date(start), as_date(end)
    files = event_files(settings, start_d, end_d)
    chunks = (_read_event_file(f) for f in files)
    rows, missing = _write_chunks(chunks, EVENTS_SCHEMA, "events", Path(out_path))
    log.info("ingest events [%s, %s): %d files, %d rows -> %s", start_d, end_d, len(files), rows, out_path)
    return IngestResult("events", Path(out_path), rows, start_d, end_d, missing)
