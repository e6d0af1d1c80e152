"""SQLAlchemy access to the customer database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import sqlite3
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from pipeline.config import SQL_DIR, Settings


@functools.lru_cache(maxsize=8)
def engine_for(url: str, readonly: bool = False) -> sa.Engine:
    """A process-wide, cached engine for ``url``. SQLite: the folder is created, or with
    ``readonly`` the file is opened read-only (``mode=ro``) and never created."""
    if url.startswith("sqlite:///") and readonly:
        path = url.removeprefix("sqlite:///")
        return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True),
                                future=True, pool_pre_ping=True)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url, future=True, pool_pre_ping=True)


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also when it does not parse)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"([^:/@\s]+:)[^@/\s]+@", r"\1***@", url)


def _setting(settings: Settings) -> str:
    return "source_db_url" if settings.source_db_url else "source_db_url (unset: SQLite at <data_dir>/source.db)"


def source_engine(settings: Settings) -> sa.Engine:
    """The engine the pipeline *reads* the customer database with.

    A URL that does not parse, or an SQLite file that does not exist, is a
    :class:`~pipeline.errors.DataError` naming the setting and the (password-masked) value,
    raised before any work; SQLite is opened read-only, so a misspelt path is never created
    as an empty database.
    """
    from pipeline.errors import DataError

    try:
        url = sa.engine.make_url(settings.db_url)
    except sa.exc.ArgumentError as exc:
        raise DataError(f"config {_setting(settings)}: {masked(settings.db_url)!r} is not an SQLAlchemy URL "
                        "(e.g. sqlite:////srv/churn/source.db, postgresql+psycopg://user:pw@host/db)") from exc
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise DataError(f"config {_setting(settings)}: the source database {path or '(no file)'} does not "
                            "exist; it is opened read-only and never created: check the path, or generate data "
                            "first (python -m pipeline generate)")
        return engine_for(settings.db_url, readonly=True)
    try:
        return engine_for(settings.db_url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataError(f"config {_setting(settings)}: cannot use {masked(settings.db_url)!r}: {exc}") from exc


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
