"""SQLAlchemy access to the customer database (SQLite by default, PostgreSQL by URL), which
churnflow only reads; what it writes goes to the results store (:mod:`pipeline.results`)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import sqlite3
from pathlib import Path

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


def url_setting(name: str, value: str, default_file: str) -> str:
    """How an error names a database URL setting: ``name``, or, when it is unset, where its
    SQLite default lives."""
    return name if value else f"{name} (unset: SQLite at <data_dir>/{default_file})"


def _setting(settings: Settings) -> str:
    return url_setting("source_db_url", settings.source_db_url, "source.db")


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


def load_sql(name: str, settings: Settings | None = None) -> str:
    """Text of ``<name>.sql``: from ``settings.sql_dir`` when that folder has it (your own
    mapping of your schema onto the contract), else the packaged ``sql/<name>.sql``. Values
    are always bound parameters, never formatted in."""
    if settings is not None and settings.sql_dir:
        folder = Path(settings.sql_dir)
        if not folder.is_dir():
            from pipeline.errors import DataError

            raise DataError(f"config sql_dir: {folder} is not a folder (it holds your ingest_<table>.sql files)")
        own = folder / f"{name}.sql"
        if own.is_file():
            return own.read_text(encoding="utf-8")
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} not found")
    return path.read_text(encoding="utf-8")
