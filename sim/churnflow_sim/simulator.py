"""The landing simulator of a *live* generated business (``generate --live``).

A live business is generated up to a future day, but only what happened before the
cut-off is in the source database and the landing folder; the rest waits in a pending
store under ``settings.simulator_dir``: ``pending.db`` (the six source tables) and
``events/date=YYYY-MM-DD/``. :func:`land` releases everything that happened before a given
day, as a real business's systems would as time passes: rows move into the source
database, event day folders into ``landing/events/``. ``churn_landing_simulator`` (a DAG
that exists only where a pending store does) calls it every night; the command line is
``python -m pipeline land [--until DAY]``.

Generator-side only: the pipeline never reads the pending store.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.ingestion.contract import SOURCE_TABLES
from pipeline.ingestion.source import as_datetime, engine_for

log = logging.getLogger(__name__)


def pending_db_url(settings: Settings) -> str:
    return f"sqlite:///{settings.simulator_db.resolve()}"


def is_live(settings: Settings) -> bool:
    """Does the data dir hold a live simulated business (a pending store)?"""
    return settings.simulator_db.is_file()


def _event_days(root: Path) -> list[tuple[dt.date, Path]]:
    out = []
    for folder in root.glob("date=*"):
        try:
            out.append((dt.date.fromisoformat(folder.name.removeprefix("date=")), folder))
        except ValueError:
            continue
    return sorted(out)


def land(settings: Settings, until: str | dt.date) -> dict[str, Any]:
    """Move every pending row and event day before ``until`` into the source and landing.

    Idempotent and safe to rerun after a crash: a table's rows are replaced in the source
    (one transaction: delete the landed time range, insert) before they leave the pending
    store, and an event day folder moves with one rename. Returns the counts landed and
    ``pending_from``, the first day still pending (None when the store is used up).
    """
    if not is_live(settings):
        raise FileNotFoundError(
            f"no live business to land: {settings.simulator_db} does not exist "
            "(generate one with: python -m pipeline generate --live)")
    until_d = as_date(until)
    cutoff = dt.datetime.combine(until_d, dt.time())
    rows: dict[str, int] = {}
    pending_from: list[dt.datetime] = []
    with engine_for(pending_db_url(settings)).begin() as held, engine_for(settings.db_url).begin() as source:
        for name, table in SOURCE_TABLES.items():
            if not sa.inspect(held).has_table(name):  # a table this business does not have
                continue
            src = sa.Table(name, sa.MetaData(), autoload_with=source)
            tbl = sa.Table(name, sa.MetaData(), autoload_with=held)
            col = tbl.c[table.time_column]
            batch = [dict(r._mapping) for r in held.execute(sa.select(tbl).where(col < cutoff).order_by(col))]
            if batch:
                first = min(r[table.time_column] for r in batch)
                source.execute(sa.delete(src).where(src.c[table.time_column] >= first,
                                                    src.c[table.time_column] < cutoff))
                source.execute(sa.insert(src), batch)
                held.execute(sa.delete(tbl).where(col < cutoff))
            rows[name] = len(batch)
            nxt = held.execute(sa.select(sa.func.min(col))).scalar()
            if nxt is not None:
                pending_from.append(as_datetime(nxt))
    landed_days = []
    target_root = settings.landing_dir / "events"
    target_root.mkdir(parents=True, exist_ok=True)
    for day, folder in _event_days(settings.simulator_dir / "events"):
        if day >= until_d:
            pending_from.append(dt.datetime.combine(day, dt.time()))
            break
        target = target_root / folder.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        landed_days.append(day.isoformat())
    first_pending = min(pending_from).date().isoformat() if pending_from else None
    log.info("land until %s: %s rows, %d event day(s) %s; pending from %s", until_d,
             sum(rows.values()), len(landed_days), landed_days[:1] + landed_days[-1:], first_pending)
    if first_pending is None:
        log.warning("the simulated business has nothing left to land after %s: generate a new one "
                    "(python -m pipeline generate --live)", until_d)
    return {"until": until_d.isoformat(), "rows": rows, "event_days": landed_days, "pending_from": first_pending}
