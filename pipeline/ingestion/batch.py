"""One table's window as one batch: extracted, validated and staged chunk by chunk, published
into the lake only when the whole batch passed.

Each chunk (``ingest_chunk_rows`` database rows, or one event file) is validated with the
table's expectation suite; its rejected rows are appended to the run's quarantine file
``quarantine/<table>/<run_key>.parquet`` with their reason, its clean rows staged by day.
Only when every chunk passed (and no key repeats across chunks) are the staged days
published as the window's lake partitions; a failed batch publishes nothing. Memory is
bounded by a chunk, not by the window, so a night's one day and a first training's whole
history take the same path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.ingestion import lake
from pipeline.ingestion.contract import TABLES

log = logging.getLogger(__name__)


def ingest_batch(settings: Settings, table: str, start: dt.date, end: dt.date, run_key: str, *,
                 known_customers: np.ndarray | None = None,
                 ranges: Sequence[tuple[dt.date, dt.date]] | None = None) -> dict[str, Any]:
    """Extract, validate and publish ``table`` over ``[start, end)``; returns the counts (rows,
    rejected, quarantine file, partitions, chunks, tolerated faults). ``known_customers``
    (sorted ids, :func:`pipeline.ingestion.lake.customer_ids`) is read from the lake when not
    given (not for ``customers`` itself). ``ranges``: the sorted, disjoint windows inside
    ``[start, end)`` to read, as one batch (a training's re-extract of the days that changed,
    :mod:`pipeline.ingestion.reconcile`); default: the whole window."""
    import itertools

    from pipeline.ingestion.extract import absent_columns, range_chunks
    from pipeline.ingestion.readiness import require_complete_landing
    from pipeline.ingestion.validate import ChunkedValidator
    from pipeline.progress import Progress

    summary: dict[str, Any] = {"table": table, "rows": 0, "rejected": 0, "quarantine": None, "partitions": 0,
                               "chunks": 0, "window_start": str(start), "window_end": str(end)}
    spans = [(start, end)] if ranges is None else [(lo, hi) for lo, hi in ranges if lo < hi]
    if start >= end or not spans:
        log.info("ingest %s: %s; nothing to extract", table,
                 f"lake already holds [.., {end})" if ranges is None else "no day to re-extract")
        return {**summary, "window_start": str(end)}
    if any(lo < start or hi > end for lo, hi in spans) or any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise ValueError(f"ingest {table}: ranges {spans} are not sorted, disjoint windows inside [{start}, {end})")
    if table == "events":
        for lo, hi in spans:
            require_complete_landing(settings, lo, hi)
    # identifiers keep the business's type: the lake's customers' (the first customers batch: as given)
    ids = lake.id_type(settings)
    batches = range_chunks(settings, table, spans, ids)
    head = next(batches, None)
    if head is not None and head.num_rows and "customer_id" in head.column_names:
        ids = head.schema.field("customer_id").type
    batches = itertools.chain([head] if head is not None else [], batches)
    schema = lake.schema_of(settings, table, ids)
    time_col = TABLES[table].time_column
    columns = ColumnCounts([c.name for c in TABLES[table].columns if not c.required])
    known = None if table == "customers" else (
        known_customers if known_customers is not None else lake.customer_ids(settings))
    stager = lake.DayStager(settings, table, start, end, lake.staging_dir(settings, table, run_key), schema, known,
                            ranges=None if ranges is None else spans)
    label = f"[{start}, {end})" if ranges is None else f"{_days_in(spans, end)} day(s) of [{start}, {end})"
    progress = Progress(f"ingest {table} {label}", _days_in(spans, end), "days")
    try:
        with ChunkedValidator(table, settings, run_key, window_start=dt.datetime.combine(start, dt.time()),
                              window_end=dt.datetime.combine(end, dt.time()), schema=schema,
                              known_customers=known) as validator:
            first: dt.date | None = None  # the window's first day with rows: the progress is over the rest
            for chunk in batches:
                clean = validator.validate(chunk.to_pandas())
                columns.add(clean, absent_columns(chunk))
                stager.add(clean)
                latest, earliest = _day_range(chunk, time_col)
                if first is None and earliest is not None:
                    first = max(start, earliest)
                    progress.total = float(_days_in(spans, end) - _days_in(spans, first))
                if latest is not None and first is not None:
                    progress.update(_days_in(spans, min(latest + dt.timedelta(days=1), end)) - _days_in(spans, first),
                                    f"{validator.rows:,} rows, {validator.rejected:,} rejected")
            if validator.chunks == 0:  # an empty window still runs its suite (table-level rules)
                validator.validate(schema.empty_table().to_pandas())
            validator.check_unique_across_chunks(stager.staged_glob())
            result = validator.finish()
        parts = stager.publish()
    finally:
        stager.discard()
    progress.finish(f"{result.rows:,} rows, {result.rejected_count:,} rejected, {len(parts)} partitions")
    return {**summary, "rows": result.rows, "rejected": result.rejected_count,
            "quarantine": str(result.quarantine) if result.quarantine else None,
            "partitions": len(parts), "chunks": result.chunks, "tolerated": validator.tolerated,
            "columns": columns.to_dict()}


class ColumnCounts:
    """Per optional column of a batch: its rows published to the lake that hold no value, and of
    them those whose source did not return the column at all (what the night's schema-drift
    check, :mod:`pipeline.monitoring.schema_drift`, compares with the model's training)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        #: rows published (the clean rows of every chunk)
        self.rows = 0
        self.nulls = dict.fromkeys(names, 0)
        self.absent = dict.fromkeys(names, 0)

    def add(self, clean: Any, absent: list[str]) -> None:
        """Count one chunk's clean rows (a DataFrame) whose source lacked the ``absent`` columns."""
        self.rows += len(clean)
        for name in self.names:
            if name in absent or name not in clean.columns:
                self.absent[name] += len(clean)
                self.nulls[name] += len(clean)
            else:
                self.nulls[name] += int(clean[name].isna().sum())

    def to_dict(self) -> dict[str, Any]:
        """``{"rows": n, "nulls": {column: n}, "absent": {column: n}}`` (JSON-able, for XCom)."""
        return {"rows": self.rows, "nulls": self.nulls, "absent": self.absent}


def _days_in(spans: Sequence[tuple[dt.date, dt.date]], before: dt.date) -> int:
    """The days of the windows ``spans`` before ``before`` (for progress lines)."""
    return sum(max(0, (min(hi, before) - lo).days) for lo, hi in spans)


def _day_range(chunk: Any, time_col: str) -> tuple[dt.date | None, dt.date | None]:
    """(latest, earliest) day of the time column of an Arrow chunk (for progress lines)."""
    import pyarrow.compute as pc

    if time_col not in chunk.column_names or chunk.num_rows == 0:
        return None, None
    bounds = pc.min_max(chunk.column(time_col)).as_py()
    as_day = lambda v: v.date() if v is not None else None
    return as_day(bounds["max"]), as_day(bounds["min"])
