"""The Parquet lake: one folder per table, one partition per day of the table's time column,
day partitions compacted into one file per month once the month has closed and settled (and, for
the slowly changing tables, months into one file per year once the year has).

Layout: ``<lake>/<table>/date=YYYY-MM-DD/part-1.parquet`` (a day of an open month),
``<lake>/<table>/month=YYYY-MM/days-01-31.parquet`` (a closed month; the name lists the days it
holds, ``days-01-05_07-31`` where one is missing, so that one listing tells which days the lake
has, without opening a file) and ``<lake>/<table>/year=YYYY/days-0101-1231.parquet`` (a closed
year of a table of :data:`YEARLY_TABLES`; the name lists its days too); ``<lake>`` is
``<data_dir>/lake``, or ``lake_url`` (a folder, or ``s3://bucket/prefix``: every read and write
goes through :mod:`pipeline.storage`).

Customer order (:mod:`pipeline.ingestion.buckets`): every file of a table with a ``customer_id``
holds its rows sorted by the stored ``customer_hash`` column, in small row groups (a month file
of events: each day's row groups in turn, so both the day and the hash prune; a compacted file of
the other tables, :data:`FILE_ORDER_TABLES`, whose day is a row group or less: sorted across the
file). A nightly piece
over one bucket of customers reads only its row groups (:func:`register_lake_table` ``hashes``).
A file written before this layout (``part-0.parquet``, in arrival order) is read as before, its
bucket computed from the ids, until ``python -m pipeline migrate-lake`` rewrites it
(:func:`migrate`).

Why compaction: the slowly changing tables (customers, subscriptions, plan changes, tickets,
cancellations) gain a few rows a day, and a feature build reads all their history: on an object
store a file is a GET, so two years of day files cost ~730 GETs per table where two year files
and the months of this one cost a dozen. A month is compacted only ``lake_compact_after_days``
after it ended, so the nights that re-ingest its last days rewrite a day file, not the month.

Writing a batch for the half-open window ``[start, end)`` replaces every day of that window for
which the batch has rows, so re-ingesting a window replaces it instead of duplicating rows,
whatever windows were ingested before (a day of a closed month or year: its file is rewritten
with the day replaced). A day without rows never deletes a day the lake holds (event days
must be complete before a batch is read at all:
:func:`pipeline.ingestion.readiness.require_complete_landing`).
Each file is written atomically (a rename, or one upload of the complete object); a compacted
file is in place before the files it replaces go, and a reader takes a year's file over any
month or day file left of that year (a month's over its days), so no reader sees a row twice.
Batches are staged chunk by chunk first (:class:`DayStager`, on local disk, in the lake's own
layout) and published only once the whole batch passed validation, so memory is bounded by a
chunk (a day of events, ``ingest_chunk_rows`` database rows), not by the history, and a failed
batch publishes nothing; publishing a period the batch holds whole is a rename.

Readers of the lake use DuckDB over the files they need (:func:`duckdb_connection`,
:func:`register_lake_table`): the features, the labels and validation's cross-chunk checks. A
lake on an object store is read by DuckDB through the registered fsspec filesystem: an object
up to 16 MiB is fetched once per connection into a local copy
(:class:`~pipeline.storage.ObjectCopies`), a larger one read by byte ranges on demand.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.artifacts import as_date, atomic_path
from pipeline.config import Settings
from pipeline.ingestion.buckets import (
    HASH_COLUMN,
    HASH_SQL,
    HashLookup,
    has_customers,
    in_customer_order,
    row_group_rows,
)
from pipeline.ingestion.contract import ID, LAKE_TABLES, TABLES, schema_with_ids
from pipeline.storage import Location

#: a day partition's file (layout 1: customer order, with ``customer_hash``)
PART_NAME = "part-1.parquet"
#: a day partition written before the customer order (arrival order, no ``customer_hash``)
LEGACY_PART_NAME = "part-0.parquet"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeFile:
    """One file of a lake table: the days it holds (a day partition: one), and whether its rows
    are in customer order with a ``customer_hash`` column."""

    path: Location
    days: tuple[dt.date, ...]
    ordered: bool

    @property
    def period(self) -> str | None:
        """``YYYY-MM`` for a month file, ``YYYY`` for a year file, None for a day partition."""
        return _period(self.path)

    @property
    def month(self) -> str | None:
        """``YYYY-MM`` for a month file, None otherwise."""
        period = self.period
        return period if period is not None and len(period) == 7 else None


def _runs(days: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """The runs of consecutive days in ``days``: (first, last) each, in order."""
    runs: list[list[dt.date]] = []
    for d in sorted(set(days)):
        if runs and d == runs[-1][-1] + dt.timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return [(r[0], r[-1]) for r in runs]


def month_file_name(days: Sequence[dt.date]) -> str:
    """The name of the month file holding ``days`` (of one month): ``days-01-31.parquet``, runs of
    consecutive days joined by ``_`` (``days-01-05_07-31.parquet``)."""
    return "days-" + "_".join(f"{lo:%d}-{hi:%d}" for lo, hi in _runs(days)) + ".parquet"


def year_file_name(days: Sequence[dt.date]) -> str:
    """The name of the year file holding ``days`` (of one year): ``days-0101-1231.parquet``, runs
    of consecutive days (``MMDD``) joined by ``_``; where that would be long (a table with rows
    on scattered days), ``days-x<hex>.parquet``: bit ``i`` of the number set for the year's day
    ``i`` (0: January 1), at most 92 digits (a file name has at most 255 bytes)."""
    runs = _runs(days)
    if len(runs) <= YEAR_NAME_RUNS:
        return "days-" + "_".join(f"{lo:%m%d}-{hi:%m%d}" for lo, hi in runs) + ".parquet"
    return f"days-x{sum(1 << (d.timetuple().tm_yday - 1) for d in set(days)):x}.parquet"


#: at most this many runs of days are listed in a year file's name (else its bitmap)
YEAR_NAME_RUNS = 8


def _year_days(year: str, name: str) -> tuple[dt.date, ...]:
    text = name.removeprefix("days-").removesuffix(".parquet")
    first = dt.date(int(year), 1, 1)
    if text.startswith("x"):
        bits = int(text[1:], 16)
        return tuple(first + dt.timedelta(days=i) for i in range(bits.bit_length()) if bits >> i & 1)
    out: list[dt.date] = []
    for run in text.split("_"):
        lo, _, hi = run.partition("-")
        start = dt.date(int(year), int(lo[:2]), int(lo[2:]))
        last = dt.date(int(year), int((hi or lo)[:2]), int((hi or lo)[2:]))
        out += [start + dt.timedelta(days=i) for i in range((last - start).days + 1)]
    return tuple(out)


def _period(path: Location) -> str | None:
    """The period a compacted file's folder names (``month=YYYY-MM``, ``year=YYYY``), else None."""
    folder = path.parent.name
    for prefix in ("month=", "year="):
        if folder.startswith(prefix):
            return folder.removeprefix(prefix)
    return None


def period_dir(period: str) -> str:
    """The folder of a compacted period: ``month=YYYY-MM`` or ``year=YYYY``."""
    return f"year={period}" if len(period) == 4 else f"month={period}"


def _period_days(period: str, name: str) -> tuple[dt.date, ...]:
    return _year_days(period, name) if len(period) == 4 else _month_days(period, name)


def _in_period(path: Location, period: str) -> bool:
    """Whether a lake file's folder (a day, a month or a year) lies inside ``period``."""
    value = path.parent.name.partition("=")[2]
    return value[:len(period)] == period if len(value) >= len(period) else False


def _month_days(month: str, name: str) -> tuple[dt.date, ...]:
    first = dt.date.fromisoformat(month + "-01")
    out: list[dt.date] = []
    for run in name.removeprefix("days-").removesuffix(".parquet").split("_"):
        lo, _, hi = run.partition("-")
        out += [first.replace(day=d) for d in range(int(lo), int(hi or lo) + 1)]
    return tuple(out)


def table_dir(settings: Settings, table: str) -> Location:
    if table not in LAKE_TABLES:
        raise KeyError(f"unknown lake table {table!r}; known: {sorted(LAKE_TABLES)}")
    return storage.lake_root(settings) / table


def table_files(settings: Settings, table: str, listing: Sequence[Location] | None = None) -> list[LakeFile]:
    """The files of ``table`` a reader takes, sorted by their first day (one listing, or
    ``listing``): a month's file over any day file left of that month (a compaction that stopped
    half-way), a day's customer-ordered file over its legacy one (a migration that stopped
    half-way)."""
    periods: dict[str, list[Location]] = {}
    day_dirs: dict[str, list[Location]] = {}
    if listing is None:
        listing = storage.glob(table_dir(settings, table), "*=*/*.parquet")
    for path in listing:
        period = _period(path)
        if period is not None:
            periods.setdefault(period, []).append(path)
        elif path.parent.name.startswith("date="):
            day_dirs.setdefault(path.parent.name.removeprefix("date="), []).append(path)
    out: list[LakeFile] = []
    for period, paths in periods.items():
        if len(period) == 7 and period[:4] in periods:
            continue  # a year file over the month files left of that year (a compaction that stopped)
        # a rewrite only ever adds days, so the file with the most days is the newest
        best = max(paths, key=lambda p: (len(_period_days(period, p.name)), p.name))
        out.append(LakeFile(best, _period_days(period, best.name), True))
    for day, paths in day_dirs.items():
        if day[:7] in periods or day[:4] in periods:
            continue
        names = {p.name for p in paths}
        chosen = [p for p in paths if not (p.name == LEGACY_PART_NAME and PART_NAME in names)]
        out += [LakeFile(p, (dt.date.fromisoformat(day),), p.name == PART_NAME) for p in chosen]
    return sorted(out, key=lambda f: (f.days[0], str(f.path)))


def partition_files(settings: Settings, table: str) -> list[Location]:
    """Every file of ``table`` a reader takes, sorted by day (one listing)."""
    return [f.path for f in table_files(settings, table)]


def has_data(settings: Settings, table: str) -> bool:
    return bool(partition_files(settings, table))


def id_type(settings: Settings) -> pa.DataType | None:
    """The business's identifier type: ``customers.customer_id`` as the lake holds it (int64 for
    integer ids, string for text ids); None while the lake holds no customers."""
    files = partition_files(settings, "customers")
    if not files:
        return None
    with storage.parquet_file(files[-1]) as last:
        return last.schema_arrow.field("customer_id").type


def schema_of(settings: Settings, table: str, ids: pa.DataType | None = None) -> pa.Schema:
    """``table``'s lake schema for this business: the contract's, its ids typed ``ids`` (default:
    :func:`id_type`, or integers for a lake without customers)."""
    return schema_with_ids(table, ids or id_type(settings) or ID)


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Days of the half-open window [start, end)."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


#: one day's staged rows: its staged month file and, per chunk that had rows of the day, the row
#: groups that chunk wrote (each run in customer order)
StagedDay = tuple[Path, tuple[tuple[int, ...], ...]]


@dataclass
class _Staged:
    """One staging file: a closed month's (every chunk's rows of it) or an open month's day's, a
    day's rows in row groups of their own (each chunk's slice of a day in customer order)."""

    path: Path
    writer: pq.ParquetWriter | None
    groups: int = 0
    days: dict[dt.date, list[tuple[int, ...]]] = dataclasses.field(default_factory=dict)

    def staged(self, day: dt.date) -> StagedDay:
        return self.path, tuple(self.days[day])


class DayStager:
    """Stage the rows of the window ``[start, end)`` of ``table``, chunk by chunk, under
    ``staging`` (one file per closed month, each day in row groups of its own, and one per day of
    an open month); :meth:`publish` then replaces the lake's days with them.

    Memory is bounded by one chunk while staging and by one day while publishing. Nothing
    reaches the lake before :meth:`publish`, so a batch that fails validation half-way
    leaves the lake as it was; :meth:`discard` removes the staged files.

    Staging files are written in the lake's own layout, so publishing a closed month that the
    batch holds whole (a training's re-extract, a first ingest) is a rename, and so is a day of an
    open month (a night's events): a row is written once, not staged and then rewritten.
    """

    def __init__(self, settings: Settings, table: str, start: str | dt.date, end: str | dt.date,
                 staging: Path, schema: pa.Schema | None = None, known: np.ndarray | None = None,
                 ranges: Sequence[tuple[dt.date, dt.date]] | None = None) -> None:
        self.schema = schema or schema_of(settings, table)
        #: the customer hashes (``known``: the lake's customer ids, hashed once where that is cheaper)
        self._hashes = HashLookup(known)
        self.time_col = TABLES[table].time_column
        self.settings, self.table = settings, table
        self.start, self.end = as_date(start), as_date(end)
        #: the windows inside [start, end) the batch reads (a training's re-extract of the days that
        #: changed): only their days without rows are said to be kept (default: the whole window)
        self.ranges = list(ranges) if ranges is not None else [(self.start, self.end)]
        self.staging = Path(staging)
        shutil.rmtree(self.staging, ignore_errors=True)  # a rerun's leftovers
        self.staging.mkdir(parents=True)
        self.rows = 0
        self._files: dict[str, _Staged] = {}
        #: periods staged whole into one file: closed ones, and those the lake has compacted already
        self._compacted = {period for path in storage.glob(table_dir(settings, table), "*=*/*.parquet")
                           if (period := _period(path)) is not None}

    def add(self, df: pd.DataFrame) -> None:
        """Stage ``df``'s rows: converted to Arrow, hashed and put in customer order once for the
        chunk, then each day's slice appended to its month's staging file (a chunk of database
        rows spans years of days: per-day conversions and files cost more than the rows).

        Every row's time column must fall inside the window (a row outside it is a bug in
        the caller, as validation rejects such rows, and raises).
        """
        if df.empty:
            return
        ts = pd.to_datetime(df[self.time_col])
        outside = (ts < pd.Timestamp(self.start)) | (ts >= pd.Timestamp(self.end))
        if outside.any():
            raise ValueError(
                f"lake table {self.table}: {int(outside.sum())} rows have {self.time_col} outside "
                f"the window [{self.start}, {self.end})"
            )
        # a column missing from the batch is staged as (typed) nulls
        present = pa.schema([f for f in self.schema if f.name in df.columns])
        table = pa.Table.from_pandas(df[present.names], schema=present, preserve_index=False)
        for column in self.schema:
            if column.name not in present.names:
                table = table.append_column(column, pa.nulls(len(df), column.type))
        table = table.select(self.schema.names)
        if has_customers(table.schema):
            table = in_customer_order(table, self._hashes)
        day_numbers = pc.cast(table.column(self.time_col), pa.date32()).to_numpy(zero_copy_only=False).astype("int64")
        order = np.argsort(day_numbers, kind="stable")  # a day's rows keep their customer order
        table, day_numbers = table.take(pa.array(order)), day_numbers[order]
        cuts = [0, *(np.flatnonzero(np.diff(day_numbers)) + 1).tolist(), len(day_numbers)]
        for lo, hi in itertools.pairwise(cuts):
            day = dt.date(1970, 1, 1) + dt.timedelta(days=int(day_numbers[lo]))
            staged = self._file(day, table.schema)
            assert staged.writer is not None, "a sealed stager takes no more rows"
            size = row_group_rows(hi - lo)
            staged.writer.write_table(table.slice(lo, hi - lo), row_group_size=size)
            count = -(-(hi - lo) // size)
            staged.days.setdefault(day, []).append(tuple(range(staged.groups, staged.groups + count)))
            staged.groups += count
        self.rows += len(df)

    def _unit(self, day: dt.date) -> str:
        """The staging file a day's rows go to: its period's (``year=YYYY``, ``month=YYYY-MM``)
        where the lake keeps that period as one file (:func:`compacted_period`), else its own
        (``date=YYYY-MM-DD``)."""
        period = compacted_period(self.table, day, self.end, self.settings.lake_compact_after_days, self._compacted)
        return period_dir(period) if period else f"date={day.isoformat()}"

    def _file(self, day: dt.date, schema: pa.Schema) -> _Staged:
        unit = self._unit(day)
        if unit not in self._files:
            path = self.staging / f"{unit}.parquet"
            self._files[unit] = _Staged(path, pq.ParquetWriter(path, schema))
        return self._files[unit]

    def seal(self) -> None:
        """Close the staging files (no more rows); checks each holds the row groups it was given."""
        for staged in self._files.values():
            if staged.writer is not None:
                staged.writer.close()
                staged.writer = None
                written = pq.ParquetFile(staged.path).metadata.num_row_groups
                if written != staged.groups:
                    raise RuntimeError(f"staging {staged.path}: {written} row groups written, {staged.groups} expected")

    def staged_glob(self) -> str:
        """The staged files (sealed first: no more rows once they are read)."""
        self.seal()
        return str(self.staging / "*.parquet")

    def publish(self) -> list[Location]:
        """Replace the days of the window that have staged rows: a day of an open month as its
        day partition, a day of a compacted period (:func:`compacted_period`: a month whose last
        day is ``lake_compact_after_days`` before the window's end, a closed year of a slowly
        changing table, or one the lake has compacted already) inside that period's file, which
        then also takes the period's other days (its day and month files are merged into it; a
        period the batch holds whole is its staging file, renamed). A day without rows never
        deletes or empties a day the lake already holds (it is kept, with a warning): "no rows"
        is never evidence that the rows are gone. Returns the files written."""
        self.seal()
        listing = storage.glob(table_dir(self.settings, self.table), "*=*/*.parquet")
        held = table_files(self.settings, self.table, listing)
        compacted = {f.period for f in held if f.period}
        staged = {day: f.staged(day) for f in self._files.values() for day in sorted(f.days)}
        held_days = {d for f in held for d in f.days}
        kept = [d.isoformat() for lo, hi in self.ranges for d in days(lo, hi) if d not in staged and d in held_days]
        settle = self.settings.lake_compact_after_days
        periods = {p for d in staged if (p := compacted_period(self.table, d, self.end, settle, compacted))}
        # the files of closed periods left over (a batch ended before the period did; not a
        # legacy lake: that one is compacted by migrate-lake, not by a night)
        periods |= {p for f in held if f.ordered and f.period != (p := compacted_period(
            self.table, f.days[0], self.end, settle, compacted)) and p is not None}
        written: list[Location] = []
        for period in sorted(periods, key=lambda p: (len(p), p)):  # years first: they take their months
            mine = [p for p in listing if _in_period(p, period)]
            whole = self._files.get(period_dir(period))
            if whole is not None and {d for f in table_files(self.settings, self.table, mine) for d in f.days} <= set(whole.days):
                written.append(self._publish_period(period, whole, mine))
            else:
                written.append(write_period(self.settings, self.table, period, listing,
                                           {d: p for d, p in staged.items() if d.isoformat().startswith(period)},
                                           self.schema))
        for day, pieces in sorted(staged.items()):
            if not any(day.isoformat().startswith(p) for p in periods):
                written.append(self._publish_day(day, pieces, [p for p in listing
                                                               if p.parent.name == f"date={day.isoformat()}"]))
        if kept:
            log.warning("lake %s: kept the existing partition(s) of %d day(s) with no rows in this batch: %s",
                        self.table, len(kept), ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else ""))
        self.discard()
        return written

    def _publish_period(self, period: str, staged: _Staged, held: list[Location]) -> Location:
        """A period the batch holds every lake day of: its staging file becomes the period's file
        (a rename, or one upload), then the period's other files go."""
        name = (year_file_name if len(period) == 4 else month_file_name)(sorted(staged.days))
        final = table_dir(self.settings, self.table) / period_dir(period) / name
        if self.table in FILE_ORDER_TABLES:  # in customer order across the period (one sort)
            write_lake_file(pq.read_table(staged.path), final)
        else:
            storage.publish_file(staged.path, final)
        for stale in held:
            if stale != final:
                _remove(stale)
        return final

    def _publish_day(self, day: dt.date, pieces: StagedDay, held: list[Location]) -> Location:
        final = table_dir(self.settings, self.table) / f"date={day.isoformat()}" / PART_NAME
        if pieces[0].name == f"date={day.isoformat()}.parquet" and len(pieces[1]) == 1:
            # a day's own staging file, of one chunk (in customer order): it is the day file
            storage.publish_file(pieces[0], final)
        else:
            write_lake_file(_staged_day(pieces, self.schema), final)
        # a partition is exactly one file: the new one is in place, then any other goes
        for stale in held:
            if stale != final:
                _remove(stale)
        return final

    def discard(self) -> None:
        for staged in self._files.values():
            if staged.writer is not None:
                staged.writer.close()
                staged.writer = None
        shutil.rmtree(self.staging, ignore_errors=True)


def _closed(day: dt.date, end: dt.date, settle_days: int) -> bool:
    """Whether ``day``'s month is closed for a batch ending at ``end``: its last day is at least
    ``settle_days`` before it (``lake_compact_after_days``: the nights that re-ingest a month's
    last days then rewrite a day file, not the whole month file)."""
    return _next_month(day) + dt.timedelta(days=settle_days) <= end


#: the slowly changing tables, read whole by every feature build: their closed years are one file
#: each (on an object store a file is a GET; the events and payments are read by their window, and
#: a year of them is too large to rewrite for one day's rerun)
YEARLY_TABLES = frozenset({"customers", "subscriptions", "plan_changes", "support_tickets", "cancellations"})

#: the tables whose compacted files (a closed month's, a closed year's) hold their rows in customer
#: order across the whole file, not each day's row groups in turn: a day of them fills a row group
#: or a few (a slowly changing table's day: part of one), each spanning every customer hash, so only
#: the file's own order lets a nightly piece skip the other buckets' row groups; their readers take a
#: year of days or the whole history, where the day pruned little inside a file. The events keep
#: each day's row groups (a day is dozens of them: both the day and the hash prune).
FILE_ORDER_TABLES = YEARLY_TABLES | {"payments"}


def compacted_period(table: str, day: dt.date, end: dt.date, settle_days: int,
                     compacted: Iterable[str] = ()) -> str | None:
    """The compacted file ``day`` belongs in for a batch ending at ``end``: its year's (``YYYY``:
    a table of :data:`YEARLY_TABLES` whose year closed ``settle_days`` before ``end``, or already
    compacted), else its month's (``YYYY-MM``: closed, or already compacted), else None (a day
    file)."""
    year, month = str(day.year), day.isoformat()[:7]
    if table in YEARLY_TABLES and (year in compacted or dt.date(day.year + 1, 1, 1) + dt.timedelta(days=settle_days) <= end):
        return year
    if month in compacted or _closed(day, end, settle_days):
        return month
    return None


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def file_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of a lake file of a table whose contract schema is ``schema``: with
    ``customer_hash`` where the table has customer ids."""
    return schema.append(pa.field(HASH_COLUMN, pa.int64())) if has_customers(schema) else schema


def write_lake_file(table: pa.Table, final: Location) -> Location:
    """Write one day's file: in customer order where the table has customer ids (the hash column
    computed anew), in row groups of :func:`~pipeline.ingestion.buckets.row_group_rows` rows."""
    if has_customers(table.schema):
        table = in_customer_order(table)
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows(table.num_rows))
    return final


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the contract's columns of ``schema`` (one its file lacks: nulls), and its
    ``customer_hash`` if it has one."""
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    names = schema.names + ([HASH_COLUMN] if HASH_COLUMN in table.column_names else [])
    return table.select(names).cast(file_schema(schema) if HASH_COLUMN in names else schema)


def _day_tables(path: Location, schema: pa.Schema, ordered: bool, time_col: str,
                wanted: frozenset[dt.date]) -> Iterator[pa.Table]:
    """The rows of the days ``wanted`` of one lake file, a day at a time, in customer order (a
    month file is read row group by row group: each holds one day, or in a file of
    :data:`FILE_ORDER_TABLES` part of several; an ordered file's rows keep
    their stored hash and order, a legacy file's are ordered here)."""
    with storage.parquet_file(path) as source:
        groups = range(source.metadata.num_row_groups) if ordered else [None]
        for group in groups:
            table = _conformed(source.read_row_group(group) if group is not None else source.read(), schema)
            day_of = pc.cast(table.column(time_col), pa.date32())
            for day in sorted(set(day_of.to_pylist()) & wanted):
                rows = table.filter(pc.equal(day_of, pa.scalar(day, pa.date32())))
                yield rows if HASH_COLUMN in rows.column_names or not has_customers(schema) else in_customer_order(rows)


def write_period(settings: Settings, table: str, period: str, listing: Sequence[Location],
                 staged: dict[dt.date, StagedDay], schema: pa.Schema) -> Location:
    """Write the file of ``table``'s ``period`` (a month ``YYYY-MM``: ``month=YYYY-MM/days-...``;
    a year ``YYYY``: ``year=YYYY/days-...``): the ``staged`` days, and every other day the lake
    holds of that period (from its compacted files, else from its day files), each day's rows in
    customer order in row groups of their own (a table of :data:`FILE_ORDER_TABLES`: the period's
    rows in customer order across the file); then remove the period's other files. Memory: one
    day (a row group); a period of a :data:`FILE_ORDER_TABLES` table."""
    time_col = TABLES[table].time_column
    target = file_schema(schema)
    mine = [p for p in listing if _in_period(p, period)]
    held = table_files(settings, table, mine)
    parts: list[tuple[dt.date, Callable[[], Iterator[pa.Table]]]] = [
        (day, functools.partial(_staged_days, pieces, schema)) for day, pieces in staged.items()]
    taken = set(staged)
    for f in held:  # table_files drops the files a compacted one supersedes
        todo = frozenset(f.days) - taken
        if todo:
            taken |= todo
            parts.append((min(todo), functools.partial(_day_tables, f.path, schema, f.ordered, time_col, todo)))
    name = (year_file_name if len(period) == 4 else month_file_name)(sorted(taken))
    final = table_dir(settings, table) / period_dir(period) / name
    day_rows = (_conformed(rows, schema) for _, rows_of in sorted(parts, key=lambda part: part[0]) for rows in rows_of())
    if table in FILE_ORDER_TABLES:  # the period's rows at once, in customer order across the file
        write_lake_file(pa.concat_tables(day_rows), final)
    else:
        with atomic_path(final) as tmp, pq.ParquetWriter(tmp, target) as writer:
            for rows in day_rows:
                writer.write_table(rows, row_group_size=row_group_rows(rows.num_rows))
    for stale in mine:
        if stale != final:
            _remove(stale)
    return final


def _remove(path: Location) -> None:
    """Delete a lake file, and its folder once empty (a day's or a month's merged away)."""
    storage.remove(path)
    if isinstance(path, Path):
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def _staged_days(pieces: StagedDay, schema: pa.Schema) -> Iterator[pa.Table]:
    yield _staged_day(pieces, schema)


def _staged_day(pieces: StagedDay, schema: pa.Schema) -> pa.Table:
    """One staged day's rows in customer order (the row groups of one chunk are already)."""
    path, runs = pieces
    rows = pq.ParquetFile(path).read_row_groups([g for run in runs for g in run])
    return in_customer_order(rows) if len(runs) > 1 and has_customers(schema) else rows


def _day_by_day(f: LakeFile) -> bool:
    """Whether a compacted file holds each day's row groups in turn (a file of a
    :data:`FILE_ORDER_TABLES` table written before its order across the file): the customer hash
    ranges of its row groups overlap."""
    with storage.parquet_file(f.path) as source:
        meta, at = source.metadata, source.schema_arrow.get_field_index(HASH_COLUMN)
        spans = [(stats.min, stats.max) for i in range(meta.num_row_groups)
                 if (stats := meta.row_group(i).column(at).statistics) is not None and stats.has_min_max]
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def legacy_files(settings: Settings) -> dict[str, list[LakeFile]]:
    """Per lake table, its files written before the customer order (``part-0.parquet``), and the
    compacted files of a :data:`FILE_ORDER_TABLES` table that hold a day's row groups in turn."""
    out = {}
    for table in sorted(LAKE_TABLES):
        old = [f for f in table_files(settings, table) if not f.ordered
               or (table in FILE_ORDER_TABLES and f.period is not None and _day_by_day(f))]
        if old:
            out[table] = old
    return out


def migrate(settings: Settings) -> dict[str, int]:
    """Rewrite a lake written before the customer order into it (``python -m pipeline
    migrate-lake``): every closed month into its month file (a closed year of a slowly changing
    table, :data:`YEARLY_TABLES`, into its year file), the days of the month a table's newest day
    is in into customer-ordered day files; a compacted file of a :data:`FILE_ORDER_TABLES` table
    written a day at a time into its order across the file. Each file is replaced atomically, so a
    migration that stops can be run again; until then the lake is read as before. Returns the
    legacy files rewritten per table; logs its progress."""
    from pipeline.progress import Progress

    todo = legacy_files(settings)
    total = sum(len(files) for files in todo.values())
    if not total:
        log.info("migrate-lake: %s is in customer order already: nothing to do", storage.lake_root(settings))
        return {}
    progress = Progress("migrate-lake", total, "files")
    done = 0
    for table, files in todo.items():
        schema = schema_of(settings, table)
        listing = storage.glob(table_dir(settings, table), "*=*/*.parquet")
        newest = max(d for f in table_files(settings, table, listing) for d in f.days)

        def period_of(day: dt.date, newest: dt.date = newest, table: str = table) -> str:
            """A closed year of a slowly changing table, else a closed month, else the day."""
            if table in YEARLY_TABLES and day.year < newest.year:
                return str(day.year)
            return day.isoformat()[:7] if day.isoformat()[:7] < newest.isoformat()[:7] else day.isoformat()

        for period in sorted({period_of(f.days[0]) for f in files}):
            mine = [f for f in files if period_of(f.days[0]) == period]
            if len(period) < 10:
                write_period(settings, table, period, listing, {}, schema)
            else:
                for f in mine:
                    rows = pa.concat_tables(list(_day_tables(f.path, schema, False, TABLES[table].time_column,
                                                             frozenset(f.days))))
                    final = f.path.parent / PART_NAME
                    write_lake_file(rows, final)
                    _remove(f.path)
            done += len(mine)
            progress.update(done, f"{table} {period}")
    progress.finish(", ".join(f"{table} {len(files)}" for table, files in todo.items()))
    return {table: len(files) for table, files in todo.items()}


def staging_dir(settings: Settings, table: str, run_key: str | None = None) -> Path:
    """The staging folder of one run's batch inside a local lake (same file system: publishing
    is a rename; DuckDB's ``date=*`` globs never see it), or ``<data_dir>/lake-staging/`` for a
    lake on an object store (publishing uploads). Without ``run_key``, a fresh one."""
    root = storage.lake_root(settings)
    base = root / ".staging" if isinstance(root, Path) else settings.data_dir / "lake-staging"
    return base / table / (run_key or uuid.uuid4().hex)


def write_window(
    settings: Settings,
    table: str,
    df: pd.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
) -> list[Location]:
    """Replace the day partitions of ``table`` in ``[start, end)`` with the rows of ``df``
    (one chunk through :class:`DayStager`). Returns the partition files written."""
    stager = DayStager(settings, table, start, end, staging_dir(settings, table))
    try:
        stager.add(df)
        return stager.publish()
    finally:
        stager.discard()


def read_table(settings: Settings, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole lake table (small tables and tests; large scans belong in DuckDB)."""
    schema = schema_of(settings, table)
    files = partition_files(settings, table)
    if not files:
        return pa.Table.from_pylist([], schema=schema).to_pandas()[columns or schema.names]
    return pa.concat_tables([storage.read_arrow(f, columns=columns, schema=schema) for f in files]).to_pandas()


def customer_ids(settings: Settings) -> np.ndarray | None:
    """Sorted ids of every customer in the lake, in the lake's id type (None when the lake holds
    no customers: the references of other tables cannot be checked then)."""
    if not has_data(settings, "customers"):
        log.info("lake holds no customers yet: customer references are not checked")
        return None
    import duckdb

    with duckdb.connect() as con:
        storage.register_duckdb(con, settings)
        ids = con.execute("SELECT DISTINCT customer_id FROM read_parquet($files, hive_partitioning = false) "
                          "WHERE customer_id IS NOT NULL ORDER BY 1",
                          {"files": lake_files(settings, "customers", [(None, dt.date.max)])}).fetchnumpy()["customer_id"]
    return np.asarray(ids)


def partition_dates(settings: Settings, table: str) -> list[dt.date]:
    """Sorted days for which ``table`` holds rows in the lake (a day file, or a day of a month file)."""
    return sorted({day for f in table_files(settings, table) for day in f.days})


# --------------------------------------------------------------- DuckDB over the lake
#: DuckDB's buffer limit; it spills to a temporary directory beyond it
DUCKDB_MEMORY_LIMIT = "3GB"


def _duck_type(dtype: pa.DataType) -> str:
    """The DuckDB type of a contract column's Arrow type."""
    return {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
            pa.bool_(): "BOOLEAN"}.get(dtype, "TIMESTAMP")


@contextlib.contextmanager
def duckdb_connection(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with bounded threads and memory, spilling to a temp dir."""
    with tempfile.TemporaryDirectory(prefix="churnflow-duckdb-") as spill:
        con = duckdb.connect(
            config={
                "threads": max(1, settings.n_jobs),
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "temp_directory": spill,
                "preserve_insertion_order": False,
            }
        )
        try:
            con.execute("SET enable_progress_bar = false")
            # an object-store lake's small objects are read from local copies, gone with the folder
            storage.register_duckdb(con, settings, Path(spill) / "objects")
            yield con
        finally:
            con.close()


DayRange = tuple[dt.date | None, dt.date]


def _in_ranges(day: dt.date, ranges: Sequence[DayRange]) -> bool:
    return any((lo is None or lo <= day) and day < hi for lo, hi in ranges)


def files_in(settings: Settings, table: str, ranges: Sequence[DayRange]) -> list[LakeFile]:
    """The files of ``table`` holding a day in one of the half-open ranges (a range ``(None,
    end)`` is unbounded below)."""
    return [f for f in table_files(settings, table) if any(_in_ranges(d, ranges) for d in f.days)]


def lake_files(settings: Settings, table: str, ranges: Sequence[DayRange]) -> list[str]:
    """Parquet files of ``table`` that hold a day in one of the half-open ranges. A month file
    also holds other days: readers filter on the time column (:func:`register_lake_table`)."""
    return [str(f.path) for f in files_in(settings, table, ranges)]


def _time_filter(column: str, ranges: Sequence[DayRange]) -> duckdb.Expression:
    """``column`` inside one of the day ranges, as a DuckDB expression of constants (pushed into
    the Parquet scan: a month file's row groups of other days are skipped)."""
    col = duckdb.ColumnExpression(column)
    out: duckdb.Expression | None = None
    for lo, hi in ranges:
        term = col < duckdb.ConstantExpression(dt.datetime.combine(min(hi, dt.date(9999, 12, 31)), dt.time()))
        if lo is not None:
            term = term & (col >= duckdb.ConstantExpression(dt.datetime.combine(lo, dt.time())))
        out = term if out is None else out | term
    assert out is not None
    return out


def _hash_filter(hashes: tuple[int, int], ordered: bool) -> duckdb.Expression:
    """The rows of the customers whose hash is in ``[lo, hi)``: on the stored ``customer_hash``
    (row groups outside the range are skipped), or computed from the ids (a legacy file)."""
    lo, hi = (duckdb.ConstantExpression(v) for v in hashes)
    value = (duckdb.ColumnExpression(HASH_COLUMN) if ordered
             else duckdb.SQLExpression(HASH_SQL.format(id='"customer_id"')))
    return (value >= lo) & (value < hi)


#: the business's id type per DuckDB connection, once known (:func:`_connection_id_type`)
_ID_TYPES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, pa.DataType] = weakref.WeakKeyDictionary()


def _connection_id_type(con: duckdb.DuckDBPyConnection, settings: Settings) -> pa.DataType | None:
    """:func:`id_type`, read once per connection (a listing and a footer read: on an object
    store, requests; a build registers seven tables). None, not kept, while the lake holds no
    customers."""
    if con not in _ID_TYPES and (found := id_type(settings)) is not None:
        _ID_TYPES[con] = found
    return _ID_TYPES.get(con)


def register_lake_table(
    con: duckdb.DuckDBPyConnection, settings: Settings, table: str, ranges: Sequence[DayRange], *,
    hashes: tuple[int, int] | None = None, materialize: bool = False, name: str | None = None,
) -> None:
    """Expose the rows of a lake table in the day ranges as the view ``table`` (empty if none). A
    column its files lack (written before the contract had it) reads as nulls. ``hashes``: only
    the rows of the customers whose hash is in ``[lo, hi)`` (a nightly piece's bucket:
    :func:`pipeline.features.partitions.hash_range`). ``materialize``: a table read once, for a
    table that many queries read whole (each query over a view opens every file again: on an
    object store, GETs each time of an object too large for a local copy:
    :class:`~pipeline.storage.ObjectCopies`). ``name``: the view's name (default: the table's)."""
    schema = schema_of(settings, table, _connection_id_type(con, settings))
    files = files_in(settings, table, ranges)
    name = name or table
    if not files:
        con.register(name, schema.empty_table())
        return
    time_col = TABLES[table].time_column
    views = []
    for ordered in (True, False):
        # on an object store, small objects as local copies: one GET each however often DuckDB opens them
        group = storage.duckdb_paths(con, [f.path for f in files if f.ordered == ordered])
        if not group:
            continue
        # Columns are matched by name: union_by_name reads every footer up front, so a file
        # written before the contract had a column reads it as nulls (closed months are one
        # file each: a table is at most a few dozen files, and on the ~90 files of an event
        # window the scan runs ~0.5 s faster with it than without, make bench)
        rel = con.read_parquet(group, hive_partitioning=False, union_by_name=True)
        have = set(rel.columns)
        if any(f.period for f in files if f.ordered == ordered):
            rel = rel.filter(_time_filter(time_col, ranges))
        if hashes is not None:
            rel = rel.filter(_hash_filter(hashes, ordered))
        views.append(rel.project(", ".join(f'"{f.name}"' if f.name in have else f'NULL::{_duck_type(f.type)} AS "{f.name}"'
                                           for f in schema)))
    view = views[0] if len(views) == 1 else views[0].union(views[1])
    if materialize:
        view.to_table(name)
    else:
        view.create_view(name)
