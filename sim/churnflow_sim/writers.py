"""Writing the generated business out (:mod:`churnflow_sim.generate`): the source tables to the
database (SQLite or PostgreSQL, through SQLAlchemy), one Parquet events file per day into the landing
folder (or the simulator's pending store) and the truth beside them."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from churnflow_sim.behaviour import Customers, History
from churnflow_sim.common import Calendar, Columns, Progress, insert
from churnflow_sim.constants import NULLABLE, TABLES
from churnflow_sim.simulator import pending_db_url
from churnflow_sim.tables import Lifetimes, MonthState, day_events, generated_fields
from pipeline.artifacts import write_parquet, write_text
from pipeline.config import Settings
from pipeline.ingestion.contract import EVENTS_SCHEMA, SOURCE_TABLES, TS, SourceTable
from pipeline.ingestion.source import engine_for

TRUTH_FILE = "churn_probability.parquet"
#: what the concept drift changed (written beside the truth when there is one)
CONCEPT_TRUTH_FILE = "concept_drift.json"
TRUTH_SCHEMA = pa.schema(
    [("customer_id", pa.int64()), ("month_start", TS), ("p_cancel_30d", pa.float64())]
)
EVENTS_FILE = "events.parquet"


def write_month_events(
    settings: Settings, seed: int, cal: Calendar, cust: Customers, state: MonthState, history: History, m: int,
    hold_from: dt.date | None = None,
) -> int:
    """Write one Parquet file per day of month ``m`` into the events landing folder; returns the row count.

    Every cancellation that can fall in month ``m`` is known once the month is simulated, so
    its events (none after a cancellation) can be generated then; they are also counted into
    ``history`` for the next month start. Days on or after ``hold_from`` are written to the
    simulator's pending folder instead (:mod:`churnflow_sim.simulator` lands them as days pass).
    """
    life = Lifetimes.of(cust, cal)
    total = 0
    for day in range(int(cal.month_day[m]), int(cal.month_day[m + 1])):
        history.start_day(day)
        events = day_events(np.random.default_rng([seed, 1, day]), cal, life, state, day)
        history.add_events(events["customer_id"].to_numpy() - 1)
        date = cal.start + dt.timedelta(days=day)
        root = settings.landing_dir if hold_from is None or date < hold_from else settings.simulator_dir
        path = root / "events" / f"date={date.isoformat()}" / EVENTS_FILE
        write_parquet(events, path, schema=EVENTS_SCHEMA)
        total += len(events)
    return total


# --- database ------------------------------------------------------------------------------------


def _sql_type(dtype: pa.DataType) -> sa.types.TypeEngine:
    """Plain, portable SQL types for the contract's Arrow types."""
    if pa.types.is_int64(dtype):
        return sa.BigInteger()
    if pa.types.is_int32(dtype):
        return sa.Integer()
    if pa.types.is_float64(dtype):
        return sa.Double()
    if pa.types.is_string(dtype):
        return sa.String(32)
    if pa.types.is_timestamp(dtype):
        return sa.TIMESTAMP()
    raise TypeError(f"no SQL type for {dtype}")


def sql_table(source: SourceTable, metadata: sa.MetaData) -> sa.Table:
    """DDL of a source table: typed columns and the contract's primary key (index added after load)."""
    columns = [
        sa.Column(f.name, _sql_type(f.type), nullable=(source.name, f.name) in NULLABLE) for f in generated_fields(source)
    ]
    return sa.Table(source.name, metadata, *columns, sa.PrimaryKeyConstraint(*source.key))


def write_database(
    settings: Settings, build: Callable[[str], Columns], say: Progress, hold_from: dt.date | None = None
) -> dict[str, int]:
    """Drop, recreate and fill the source tables with ``build(name)``'s columns; returns row counts.

    Runs in one transaction (so atomically where DDL is transactional, as in PostgreSQL).
    Each table's time-column index is built after its rows are loaded (faster). With
    ``hold_from``, rows whose time column is on or after that day go to the simulator's
    pending database (same tables) instead, to be landed later by :mod:`churnflow_sim.simulator`.
    """
    metadata = sa.MetaData()
    sql_tables = {name: sql_table(SOURCE_TABLES[name], metadata) for name in TABLES}
    counts: dict[str, int] = {}
    pending = engine_for(pending_db_url(settings)) if hold_from is not None else None
    with engine_for(settings.db_url).begin() as conn, (pending.begin() if pending else contextlib.nullcontext()) as held:
        for target in (conn, held) if held is not None else (conn,):
            metadata.drop_all(target)
            metadata.create_all(target)
        for name in TABLES:
            t0 = time.perf_counter()
            columns = build(name)
            time_column = SOURCE_TABLES[name].time_column
            parts = [(conn, columns)]
            if held is not None:
                now = columns[time_column] < np.datetime64(hold_from, "us")
                parts = [(conn, {k: v[now] for k, v in columns.items()}),
                         (held, {k: v[~now] for k, v in columns.items()})]
            for target, part in parts:
                insert(target, sql_tables[name], part)
                sa.Index(f"ix_{name}_{time_column}", sql_tables[name].c[time_column]).create(target)
            counts[name] = len(parts[0][1][time_column])
            say(f"db: {name} {counts[name]:,} rows"
                + (f" (+{len(parts[1][1][time_column]):,} pending)" if held is not None else "")
                + f", {time.perf_counter() - t0:.1f}s")
    return counts


# --- truth -------------------------------------------------------------------------------------


def write_truth(settings: Settings, truth: Columns, concept: dict | None = None) -> Path:
    concept_file = settings.truth_dir / CONCEPT_TRUTH_FILE
    if concept is None:
        concept_file.unlink(missing_ok=True)
    else:
        write_text(json.dumps(concept, indent=2), concept_file)
    frame = pd.DataFrame(
        {
            "customer_id": truth["customer_id"],
            "month_start": truth["month_start"].astype("datetime64[us]"),
            "p_cancel_30d": truth["p_cancel_30d"],
        }
    )
    return write_parquet(frame, settings.truth_dir / TRUTH_FILE, schema=TRUTH_SCHEMA)


