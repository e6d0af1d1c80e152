"""The readiness gate: is a night's data there?

A nightly run for logical date D ingests the window ``[D - lookback_days, D)``. It may start
only when

- every day of the window has a landing partition ``landing/events/date=DAY/`` holding at
  least one event row, and
- the source database is fresh: its newest row (the latest time-column value of any
  source table) is at most ``source_max_lag_hours`` before the window end.

:func:`check` says which of these hold. ``gap`` marks data that waiting cannot bring: a
missing day while later days have already landed (landing is in day order), so the gate
can fail at once instead of waiting out its timeout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.ingestion.contract import SOURCE_TABLES
from pipeline.ingestion.lake import days
from pipeline.ingestion.source import as_datetime


@dataclass(frozen=True)
class Readiness:
    window_start: dt.date
    window_end: dt.date
    #: window days without a landing partition / with partitions that hold no rows
    missing_days: list[dt.date] = field(default_factory=list)
    empty_days: list[dt.date] = field(default_factory=list)
    #: newest row of the source database (None: no rows at all) and the oldest value that is fresh
    source_latest: dt.datetime | None = None
    fresh_from: dt.datetime | None = None
    #: later days have landed, so the missing ones will not arrive by waiting
    gap: bool = False

    @property
    def source_fresh(self) -> bool:
        return self.source_latest is not None and self.fresh_from is not None and self.source_latest >= self.fresh_from

    @property
    def ready(self) -> bool:
        return not self.missing_days and not self.empty_days and self.source_fresh

    def message(self) -> str:
        """One line: what is missing (or that all is there)."""
        window = f"[{self.window_start}, {self.window_end})"
        if self.ready:
            return f"data for {window} is ready (source fresh up to {self.source_latest})"
        problems = []
        if self.missing_days:
            problems.append(f"no landing partition for day(s) {days_list(self.missing_days)} (landing/events/date=DAY/)")
        if self.empty_days:
            problems.append(f"empty landing partition for day(s) {days_list(self.empty_days)}")
        if not self.source_fresh:
            latest = "no rows at all" if self.source_latest is None else f"newest row {self.source_latest}"
            problems.append(f"source database not fresh ({latest}; needs one at or after {self.fresh_from})")
        hint = ("; later days have landed, so waiting will not bring it: land the day(s) or choose another date"
                if self.gap else "")
        return f"data for the window {window} is not ready: " + "; ".join(problems) + hint


def days_list(values: list[dt.date], shown: int = 5) -> str:
    """``2025-03-01, 2025-03-02 and 3 more``: the first ``shown`` days, then how many are left."""
    listed = ", ".join(d.isoformat() for d in values[:shown])
    return listed + (f" and {len(values) - shown} more" if len(values) > shown else "")


def _partition_rows(folder: Path) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows = 0
    for path in folder.iterdir():
        try:
            if path.suffix == ".parquet":
                rows += pq.ParquetFile(path).metadata.num_rows
            elif path.suffix == ".csv":
                rows += pacsv.read_csv(path).num_rows
        except (pa.ArrowException, OSError):
            return 1  # something landed that cannot be read: ingest names the file (it must not pass as "empty")
        if rows:
            break
    return rows


def source_latest(settings: Settings, since: dt.datetime | None = None) -> dt.datetime | None:
    """The newest time-column value over the declared source tables (``source_tables``), read
    through their ingest SQL (yours with ``sql_dir``); None when they hold no rows. With
    ``since``, the rows from its day on are asked first (a night's question, answered without
    reading the history: 7 s at a million customers), the whole tables only when none is."""
    from pipeline.ingestion.extract import time_bound

    far = dt.date(9999, 1, 1)
    first = since.date() if since is not None else None
    latest = [as_datetime(v) for name in SOURCE_TABLES if name in settings.source_table_names
              if (v := time_bound(settings, name, far, "max", *([first] if first else []))) is not None]
    if not latest and first is not None:
        return source_latest(settings)
    return max(latest, default=None)


def landing_gaps(settings: Settings, start: dt.date, end: dt.date) -> tuple[list[dt.date], list[dt.date]]:
    """Days of ``[start, end)`` whose landing partition is missing, and those whose files hold no rows."""
    root = settings.landing_dir / "events"
    missing, empty = [], []
    for day in days(start, end):
        folder = root / f"date={day.isoformat()}"
        if not folder.is_dir():
            missing.append(day)
        elif not _partition_rows(folder):
            empty.append(day)
    return missing, empty


def check(settings: Settings, window_start: str | dt.date, window_end: str | dt.date) -> Readiness:
    """Readiness of the landing partitions and the source for ``[window_start, window_end)``."""
    start, end = as_date(window_start), as_date(window_end)
    root = settings.landing_dir / "events"
    missing: list[dt.date] = []
    empty: list[dt.date] = []
    if "events" in settings.source_table_names:  # a business without event files waits for none
        missing, empty = landing_gaps(settings, start, end)
    later = any(p.name > f"date={(end - dt.timedelta(days=1)).isoformat()}" for p in root.glob("date=*")) \
        if root.is_dir() else False
    fresh_from = dt.datetime.combine(end, dt.time()) - dt.timedelta(hours=settings.source_max_lag_hours)
    return Readiness(start, end, missing, empty, source_latest(settings, fresh_from), fresh_from,
                     gap=bool(missing or empty) and later)


def require_complete_landing(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Every day of ``[start, end)`` must have landed event files with rows: a missing or empty
    day would otherwise pass as a day without activity (and drop those customers' usage)."""
    from pipeline.errors import IncompleteDataError

    missing, empty = landing_gaps(settings, start, end)
    if missing or empty:
        problems = ([f"no partition for {len(missing)} day(s): {days_list(missing, 10)}"] if missing else []) + \
            ([f"only empty files for {len(empty)} day(s): {days_list(empty, 10)}"] if empty else [])
        raise IncompleteDataError(
            f"events [{start}, {end}): the landing ({settings.landing_dir / 'events'}/date=DAY/) has "
            + " and ".join(problems) + "; nothing was ingested and the lake keeps what it had. "
            "Land the missing day(s), then rerun this date")
