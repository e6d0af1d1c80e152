"""The Parquet lake: one folder per table, one partition per day of the table's time column.

Layout: ``<data_dir>/lake/<table>/date=YYYY-MM-DD/part-0.parquet``.

Writing a batch for the half-open window ``[start, end)`` replaces *every* day partition
in that window (days of the window without rows are removed), so re-ingesting a window
replaces it instead of duplicating rows, whatever windows were ingested before.
Each partition is written atomically.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.artifacts import as_date, write_parquet
from pipeline.config import Settings
from pipeline.schemas import LAKE_TABLES

PART_NAME = "part-0.parquet"


def table_dir(settings: Settings, table: str) -> Path:
    if table not in LAKE_TABLES:
        raise KeyError(f"unknown lake table {table!r}; known: {sorted(LAKE_TABLES)}")
    return settings.lake_dir / table


def table_glob(settings: Settings, table: str) -> str:
    """Glob over all partitions of a table (for DuckDB ``read_parquet``)."""
    return str(table_dir(settings, table) / "date=*" / "*.parquet")


def has_data(settings: Settings, table: str) -> bool:
    return any(table_dir(settings, table).glob("date=*/*.parquet"))


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Days of the half-open window [start, end)."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def write_window(
    settings: Settings,
    table: str,
    df: pd.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
) -> list[Path]:
    """Replace the day partitions of ``table`` in ``[start, end)`` with the rows of ``df``.

    Every row's time column must fall inside the window (a row outside it is a bug in
    the caller and raises). Returns the partition files written.
    """
    schema, time_col = LAKE_TABLES[table]
    start_d, end_d = as_date(start), as_date(end)
    ts = pd.to_datetime(df[time_col])
    outside = (ts < pd.Timestamp(start_d)) | (ts >= pd.Timestamp(end_d))
    if outside.any():
        raise ValueError(
            f"lake table {table}: {int(outside.sum())} rows have {time_col} outside "
            f"the window [{start_d}, {end_d})"
        )
    base = table_dir(settings, table)
    written: list[Path] = []
    day_of_row = ts.dt.normalize()
    groups = dict(tuple(df.groupby(day_of_row, sort=True))) if len(df) else {}
    for day in days(start_d, end_d):
        part_dir = base / f"date={day.isoformat()}"
        rows = groups.get(pd.Timestamp(day))
        if rows is None or rows.empty:
            if part_dir.exists():
                shutil.rmtree(part_dir)
            continue
        written.append(write_parquet(rows[schema.names], part_dir / PART_NAME, schema=schema))
    return written


def read_table(settings: Settings, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole lake table (small tables and tests; large scans belong in DuckDB)."""
    schema, _ = LAKE_TABLES[table]
    files = sorted(table_dir(settings, table).glob("date=*/*.parquet"))
    if not files:
        return pa.Table.from_pylist([], schema=schema).to_pandas()[columns or schema.names]
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(f, columns=columns, schema=schema) for f in files]).to_pandas()


def partition_dates(settings: Settings, table: str) -> list[dt.date]:
    """Sorted days for which ``table`` has a partition in the lake."""
    out = []
    for part in table_dir(settings, table).glob("date=*"):
        if any(part.glob("*.parquet")):
            out.append(dt.date.fromisoformat(part.name.removeprefix("date=")))
    return sorted(out)
