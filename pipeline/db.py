"""SQLAlchemy access to the customer database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from pipeline.config import SQL_DIR, Settings


@functools.lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """A process-wide, cached engine for ``url`` (SQLite's folder is created)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url, future=True, pool_pre_ping=True)


def as_datetime(value: object) -> dt.datetime:
    """A timestamp as the driver returns it (a datetime, or text from SQLite's MAX()) as a datetime."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def engine(settings: Settings) -> sa.Engine:
    """The (process-wide, cached) engine for the configured source database."""
    return engine_for(settings.db_url)


def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql``; values are always bound parameters, never formatted in."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} not found")
    return path.read_text()


def replace_rows(
    settings: Settings, table: str, df: pd.DataFrame, key_column: str, key_value: object
) -> int:
    """Replace the rows of ``table`` whose ``key_column`` equals ``key_value`` with ``df``.

    Delete and insert run in one transaction, so a rerun for the same key replaces its
    rows and a failure leaves the previous rows in place. The table is created from
    ``df``'s columns on first use.
    """
    eng = engine(settings)
    with eng.begin() as conn:
        if sa.inspect(conn).has_table(table):
            tbl = sa.Table(table, sa.MetaData(), autoload_with=conn)
            conn.execute(sa.delete(tbl).where(tbl.c[key_column] == key_value))
        df.to_sql(table, conn, if_exists="append", index=False, chunksize=10_000)
    return len(df)
