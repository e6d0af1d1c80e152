"""The training run's re-extract of the customer-database tables: only the days that changed.

Why a training run re-extracts at all: a night ingests only its window ``[D - lookback_days,
D)``, so a row the database gains *behind* that window (inserted late with a time in the past, a
day the business reloads, a ticket resolved after the night that read it) reaches the lake only
when its day is read again. The training run reads the database tables again, so what it trains
on, and what the nights after it read, is the database as it is now: it heals the lake. Reading
the whole history again cost ~100 s at a million customers, for a handful of days that changed.

With ``training_reextract: changed`` (the default) the run asks the database for each table's
:class:`~pipeline.ingestion.extract.DayProfile` over ``[history_start, D)`` (one ``GROUP BY``
query through the table's ingest SQL: per day, its rows and the values of the columns filled in
after a row is written, ``resolved_at`` and ``end_date``), compares it with the profile the last
training run recorded (``<lake>/<table>/_source_profile.json``, written once its batch was
published) and re-extracts, as one validated batch, only

- the days whose profile differs (a row inserted or deleted late, a ticket resolved since);
- the days without a record: those since the last training run (the new window, which the
  nights ingested), or every day where no training run recorded one (the first run after an
  upgrade is a full re-extract, once);
- the days whose last re-extract quarantined rows of customers unknown then (their customer may
  have arrived since: then those rows are accepted);
- the days the database has rows of and the lake holds none (a partition removed by hand).

The record is the database's own profile, not a count of the lake: a row quarantined (an exact
copy, a row of an unknown customer) is in the profile both times, so it never looks like a
difference. (The lake's counts plus the quarantine's would not do: quarantine files overlap
across runs, keep rows the business has fixed since, and stay on the disk of the worker that
wrote them.)

What the counts cannot see: an in-place update that keeps every count (a payment's amount
corrected, a plan renamed in place; the contract's customers and subscriptions are append-only,
so their changes are new rows), and a key repeated across days that are not read again (a full
re-extract checks uniqueness over the whole history). ``training_reextract: full`` re-extracts
every day from ``history_start`` as before, and records the profile too: run it after such a
correction. A database whose time values are not ISO text (SQLite) is re-extracted whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.artifacts import as_date, write_text
from pipeline.config import Settings
from pipeline.ingestion import lake
from pipeline.ingestion.batch import ingest_batch
from pipeline.ingestion.contract import TABLES
from pipeline.ingestion.extract import EARLIEST, DayProfile, day_profile, window_for
from pipeline.storage import Location

log = logging.getLogger(__name__)

#: the record of the database's profile at the last training run, in each table's lake folder
#: (a name starting with ``_``: no reader of the lake takes it for data)
PROFILE_FILE = "_source_profile.json"
#: the format of :data:`PROFILE_FILE`
PROFILE_VERSION = 1
#: the ``_rules`` value of a row quarantined for naming a customer the lake did not hold
UNKNOWN_RULE = "customer_id:unknown_customer"

#: why a day is re-extracted
NEW, CHANGED, UNKNOWN, MISSING, UNRECORDED = ("new", "changed", "unknown customers", "missing from the lake",
                                             "no record")
#: at most this many days of each kind are listed in a step's output (the counts are whole)
SHOWN = 10


@dataclass(frozen=True)
class Record:
    """The profile of one table the last training run recorded, and the rows of unknown customers
    its batch quarantined, per day."""

    columns: tuple[str, ...]
    days: dict[dt.date, tuple[int, ...]]
    unknown: dict[dt.date, int] = field(default_factory=dict)
    checked: str = ""


@dataclass(frozen=True)
class Plan:
    """What a training run re-extracts of one table, and why."""

    mode: str
    #: sorted, disjoint windows ``[lo, hi)``
    ranges: list[tuple[dt.date, dt.date]]
    #: per day re-extracted because of what it is, the reason (:data:`NEW`, ...); empty for a full one
    reasons: dict[dt.date, str] = field(default_factory=dict)
    #: for the days whose profile changed: (the database's now, the record's)
    changes: dict[dt.date, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    columns: tuple[str, ...] = ("rows",)
    #: days the database's profile covers (with rows)
    checked_days: int = 0
    why_full: str = ""

    @property
    def days(self) -> int:
        return sum((hi - lo).days for lo, hi in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able for the step's output (XCom): counts whole, lists cut at :data:`SHOWN`."""
        out: dict[str, Any] = {"mode": self.mode, "days": self.days, "checked_days": self.checked_days,
                               "ranges": [[lo.isoformat(), hi.isoformat()] for lo, hi in self.ranges[:SHOWN]],
                               "ranges_total": len(self.ranges)}
        if self.why_full:
            out["why_full"] = self.why_full
        by_reason: dict[str, list[dt.date]] = {}
        for day, reason in sorted(self.reasons.items()):
            by_reason.setdefault(reason, []).append(day)
        out["reasons"] = {reason: len(days) for reason, days in by_reason.items()}
        out["examples"] = {reason: [d.isoformat() for d in days[:SHOWN]] for reason, days in by_reason.items()}
        out["changed"] = [{"day": day.isoformat(), "source": dict(zip(self.columns, now, strict=True)),
                           "recorded": dict(zip(self.columns, then, strict=True))}
                          for day, (now, then) in sorted(self.changes.items())[:SHOWN]]
        return out

    def describe(self, table: str) -> str:
        """One log line: what is re-extracted and why."""
        if self.mode == "full":
            return f"re-extract {table}: every day of {_spans(self.ranges)} ({self.why_full or 'training_reextract full'})"
        counts = self.to_dict()["reasons"]
        why = ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "nothing changed"
        return (f"re-extract {table}: {len(self.reasons)} of the {self.checked_days} day(s) the database has rows of "
                f"({why})" + (f": {_spans(self.ranges)}" if self.ranges else ""))


def _spans(ranges: list[tuple[dt.date, dt.date]]) -> str:
    shown = ", ".join(f"[{lo}, {hi})" for lo, hi in ranges[:5])
    return shown + (f" and {len(ranges) - 5} more" if len(ranges) > 5 else "")


# ------------------------------------------------------------------------------ the record
def profile_path(settings: Settings, table: str) -> Location:
    """``<lake>/<table>/_source_profile.json``."""
    return lake.table_dir(settings, table) / PROFILE_FILE


def read_record(settings: Settings, table: str) -> Record | None:
    """The last training run's record of ``table`` (None: there is none, or it cannot be read: then
    every day is re-extracted, and a new one written)."""
    path = profile_path(settings, table)
    if not storage.is_file(path):
        return None
    try:
        data = json.loads(storage.read_text(path))
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {PROFILE_VERSION}")
        return Record(tuple(data["columns"]),
                      {dt.date.fromisoformat(d): tuple(int(n) for n in v) for d, v in data["days"].items()},
                      {dt.date.fromisoformat(d): int(n) for d, n in data.get("unknown", {}).items()},
                      str(data.get("checked", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("re-extract %s: the record %s cannot be read (%s): every day is re-extracted", table, path, exc)
        return None


def write_record(settings: Settings, table: str, profile: DayProfile, unknown: dict[dt.date, int],
                 checked: dt.date) -> Location:
    """Record ``profile`` (the database's, taken before the batch read it) and the rows of
    unknown customers the batch quarantined, atomically."""
    data = {"version": PROFILE_VERSION, "table": table, "checked": checked.isoformat(),
            "columns": list(profile.columns),
            "days": {d.isoformat(): list(v) for d, v in sorted(profile.days.items())},
            "unknown": {d.isoformat(): n for d, n in sorted(unknown.items()) if n}}
    return write_text(json.dumps(data, separators=(",", ":")), profile_path(settings, table))


def unknown_by_day(quarantine: str | Path | None, table: str) -> dict[dt.date, int]:
    """Per day of ``table``'s time column, the rows of a quarantine file rejected for naming an
    unknown customer."""
    if not quarantine or not Path(quarantine).is_file():
        return {}
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    time_col = TABLES[table].time_column
    rows = pq.read_table(quarantine, columns=[time_col, "_rules"])
    rows = rows.filter(pc.equal(rows.column("_rules"), UNKNOWN_RULE))
    days = pc.cast(rows.column(time_col), "date32").to_pylist()
    out: dict[dt.date, int] = {}
    for day in days:
        if day is not None:
            out[day] = out.get(day, 0) + 1
    return out


# -------------------------------------------------------------------------------- the plan
def plan(profile: DayProfile, record: Record | None, lake_days: set[dt.date], start: dt.date,
         end: dt.date) -> Plan:
    """The days of ``[start, end)`` to re-extract: those whose ``profile`` differs from the
    ``record`` or that it lacks, those whose rows of unknown customers it quarantined, and those
    the database has rows of and the lake (``lake_days``) holds none of. Adjacent runs of them
    are joined where the days between have no rows in the database (nothing to read there)."""
    reasons: dict[dt.date, str] = {}
    changes: dict[dt.date, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    if record is None or record.columns != profile.columns:
        reasons = dict.fromkeys(profile.days, UNRECORDED)
    else:
        checked = as_date(record.checked) if record.checked else end
        zeros = (0,) * len(profile.columns)
        for day in sorted(set(profile.days) | {d for d in record.days if start <= d < end}):
            now, then = profile.days.get(day), record.days.get(day)
            if now == then:
                if record.unknown.get(day):
                    reasons[day] = UNKNOWN
                elif now is not None and now[0] > 0 and day not in lake_days:
                    reasons[day] = MISSING
            elif then is None and day >= checked:
                reasons[day] = NEW  # since the last training run (the nights ingested them)
            else:
                reasons[day] = CHANGED
                changes[day] = (now or zeros, then or zeros)
    return Plan("changed", _ranges(sorted(reasons), profile), reasons, changes, profile.columns,
                len(profile.days))


def _ranges(days: list[dt.date], profile: DayProfile) -> list[tuple[dt.date, dt.date]]:
    """Runs of ``days`` as windows ``[first, last + 1)``, a run joined to the next where every day
    between has no rows in the database."""
    one = dt.timedelta(days=1)
    out: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if out:
            lo, hi = out[-1]
            gap = [hi + one * i for i in range((day - hi).days)]
            if all(not profile.days.get(d, (0,))[0] for d in gap):
                out[-1] = (lo, day + one)
                continue
        out.append((day, day + one))
    return out


# ---------------------------------------------------------------------------------- the run
def reextract(settings: Settings, table: str, end: dt.date, run_key: str, *,
              known_customers: np.ndarray | None = None) -> dict[str, Any]:
    """A training run's batch of the database table ``table`` before ``end``: the days
    :func:`plan` names (``training_reextract: changed``) or every day from ``history_start``
    (``full``), as one validated batch; the database's profile recorded once it is published.
    Returns the batch's counts with ``reextract``: what was read and why."""
    start = as_date(settings.history_start) if settings.history_start else EARLIEST
    profile = day_profile(settings, table, start, end)  # before the batch reads: a row written meanwhile is read again
    if settings.training_reextract == "full" or profile.unplaced:
        lo, hi = window_for(settings, table, end, None)
        why = "" if settings.training_reextract == "full" else (
            f"{profile.unplaced} row(s) whose time the database does not spell as an ISO day")
        todo = Plan("full", [(lo, hi)] if lo < hi else [], columns=profile.columns, checked_days=len(profile.days),
                    why_full=why)
    else:
        todo = plan(profile, read_record(settings, table), set(lake.partition_dates(settings, table)), start, end)
    log.info("%s", todo.describe(table))
    first = todo.ranges[0][0] if todo.ranges else end
    result = ingest_batch(settings, table, first, end, run_key, known_customers=known_customers,
                          ranges=None if todo.mode == "full" else todo.ranges)
    write_record(settings, table, profile, unknown_by_day(result.get("quarantine"), table), end)
    return {**result, "reextract": todo.to_dict()}
