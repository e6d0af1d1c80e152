"""Ingestion: the customer database (SQLAlchemy) and the daily event files, into Parquet.

Each source is read as a stream of bounded chunks of one half-open window ``[start, end)``
(:func:`chunks`): database rows ``ingest_chunk_rows`` at a time, event files in day order.
Values are *conformed* to the contract's types where the column exists, but nothing is
judged here: missing columns, nulls and out-of-range values travel on to validation
(``pipeline.ingestion.validate``), which names them and quarantines the bad rows.
``pipeline.ingestion.steps.ingest_step`` validates and stages chunk by chunk and publishes the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipeline.artifacts import ParquetAppender, as_date
from pipeline.config import Settings
from pipeline.errors import DataError, first_line
from pipeline.ingestion.contract import EVENTS, EVENTS_SCHEMA, LAKE_TABLES, SOURCE_TABLES, TABLES
from pipeline.ingestion.source import load_sql, masked, source_engine

log = logging.getLogger(__name__)


class IngestionError(RuntimeError):
    """A source could not be read or conformed to the contract."""


class LandingFileError(IngestionError, DataError):
    """A landed file cannot be parsed or lacks contract columns: rereading it cannot help."""


class ConformError(IngestionError, DataError):
    """A source column's values cannot be read as the contract's type (one line naming the table
    and column): rereading the same rows cannot help."""


@dataclass(frozen=True)
class IngestResult:
    table: str
    path: Path
    rows: int
    window_start: dt.date
    window_end: dt.date
    missing_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "path": str(self.path),
            "rows": self.rows,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "missing_columns": list(self.missing_columns),
        }


def _contract_fields(columns: list[str], schema: pa.Schema, table: str) -> list[pa.Field]:
    """The contract's fields that ``columns`` has, in contract order; columns it does not know are logged."""
    extra = [c for c in columns if c not in schema.names]
    if extra:
        log.warning("ingest %s: ignoring columns not in the contract: %s", table, extra)
    return [f for f in schema if f.name in columns]


#: (table, column) of optional columns already reported absent by this process (said once)
_ABSENT_SAID: set[tuple[str, str]] = set()


def _absent_optional(table: str, present: list[str]) -> list[str]:
    """The optional contract columns ``present`` lacks (filled with nulls), said once per process."""
    spec = TABLES[table]
    absent = [c.name for c in spec.columns if not c.required and c.name not in present]
    new = [c for c in absent if (table, c) not in _ABSENT_SAID]
    if new:
        _ABSENT_SAID.update((table, c) for c in new)
        needs = {c: ", ".join(spec.column(c).used_by) or "nothing" for c in new}
        log.info("ingest %s: optional column(s) not in the source, read as null: %s",
                 table, "; ".join(f"{c} (used by {needs[c]})" for c in new))
    return absent


#: schema metadata key of a conformed chunk: its optional columns the source did not return (comma-separated)
ABSENT_KEY = b"churnflow.absent"


def absent_metadata(absent: set[str] | list[str]) -> dict[bytes, bytes] | None:
    """The schema metadata that marks a conformed chunk's ``absent`` columns (None: none)."""
    return {ABSENT_KEY: ",".join(sorted(absent)).encode()} if absent else None


def absent_columns(table: pa.Table) -> list[str]:
    """The optional columns the source did not return for this conformed chunk (read as null)."""
    value = (table.schema.metadata or {}).get(ABSENT_KEY, b"")
    return [c for c in value.decode().split(",") if c]


def infer_id_type(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.DataType | None:
    """int64 for integer identifiers (also integral floats, as a nullable integer column reads),
    string for anything else: identifiers are kept as the business gives them. None when there
    is no value to tell."""
    if values.null_count == len(values) if not isinstance(values, pd.Series) else values.notna().sum() == 0:
        return None
    if isinstance(values, pd.Series):
        if pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            return pa.int64()
        if pd.api.types.is_float_dtype(values.dtype):
            finite = values.dropna()
            return pa.int64() if bool((finite == finite.round()).all()) else pa.string()
        return pa.string()
    kind = values.type
    if pa.types.is_integer(kind):
        return pa.int64()
    if pa.types.is_floating(kind):
        finite = pc.drop_null(values)
        integral = len(finite) == 0 or pc.all(pc.equal(finite, pc.round(finite))).as_py()
        return pa.int64() if integral else pa.string()
    return pa.string()


def _id_array(col: pd.Series, id_type: pa.DataType, table: str, name: str) -> pa.Array:
    """An identifier column as ``id_type``: text ids as given (integers as their digits);
    integer ids from integer-like values, anything else null (and said): such a row names no
    customer the business has, and validation quarantines it with its reason."""
    if pa.types.is_string(id_type):
        as_text = col.astype(object).where(col.notna(), None)
        if pd.api.types.is_float_dtype(col.dtype):  # 42.0 -> "42" (a nullable integer column read as float)
            as_text = col.astype("Int64").astype(object).where(col.notna(), None)
        return pa.array([None if v is None else str(v) for v in as_text], type=pa.string())
    numbers = pd.to_numeric(col, errors="coerce")
    bad = numbers.isna() & col.notna()
    bad |= numbers.notna() & (numbers != numbers.round())
    if bad.any():
        log.warning("ingest %s: %d %s value(s) are not integer ids like the business's customers (e.g. %r): read as "
                    "null, those rows are quarantined", table, int(bad.sum()), name, col[bad].iloc[0])
    return pa.array(numbers.where(~bad).astype("Int64"), type=pa.int64(), from_pandas=True)


def codes(values: pa.Array | pa.ChunkedArray, table: str, name: str) -> pa.Array | pa.ChunkedArray:
    """A category column as text codes, never as numbers: text as given, integer codes as their
    digits, integral floats (a nullable integer column as SQLite or pandas reads it: 40.0) as
    their integer ("40", never "40.0"), other floats as written (2.5 -> "2.5"), booleans as
    true/false. Values of any other type (times, lists) are a :class:`ConformError` naming the
    table and column."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = pc.cast(values, kind.value_type)
        kind = values.type
    try:
        if pa.types.is_decimal(kind) or pa.types.is_floating(kind):
            numbers = pc.cast(values, pa.float64(), safe=False)
            numbers = pc.if_else(pc.is_nan(numbers), pa.scalar(None, pa.float64()), numbers)
            whole = pc.and_(pc.equal(numbers, pc.round(numbers)), pc.less(pc.abs(numbers), 2.0**63))
            digits = pc.cast(pc.cast(pc.if_else(whole, numbers, 0.0), pa.int64()), pa.string())
            return pc.if_else(whole, digits, pc.cast(numbers, pa.string()))
        if (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind) or pa.types.is_null(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind)):
            return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # e.g. bytes that are not UTF-8 text
        raise ConformError(f"table {table}, column {name}: cannot read as text codes: {first_line(exc)}") from exc
    raise ConformError(f"table {table}, column {name}: values of type {kind} are not codes (a category column "
                       "takes text, integer or boolean codes)")


def _code_array(col: pd.Series, table: str, name: str) -> pa.Array:
    """:func:`codes` of a pandas column; a column of mixed Python types (text and integer codes
    from one SQLite column) is converted type by type."""
    try:
        return codes(pa.array(col, from_pandas=True), table, name)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    kinds = col.map(type)
    out = pd.Series(None, index=col.index, dtype=object)
    for kind in kinds.unique():
        rows = (kinds == kind).to_numpy()
        try:
            part = pa.array(col[rows], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConformError(f"table {table}, column {name}: {kind.__name__} values cannot be read as text codes: "
                               f"{first_line(exc)}") from exc
        out[rows] = codes(part, table, name).to_pylist()
    return pa.array(out, type=pa.string(), from_pandas=True)


def _flag_array(col: pd.Series) -> pa.Array:
    """A yes/no column from booleans, 0/1 or text (true/false, yes/no, y/n, t/f)."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return pa.array(col.astype("boolean"), type=pa.bool_(), from_pandas=True)
    text = col.astype("string").str.strip().str.lower()
    mapped = text.map({"true": True, "t": True, "yes": True, "y": True, "1": True,
                       "false": False, "f": False, "no": False, "n": False, "0": False})
    return pa.array(mapped.astype("boolean"), type=pa.bool_(), from_pandas=True)


def conform(df: pd.DataFrame, schema: pa.Schema, table: str, id_type: pa.DataType | None = None) -> pa.Table:
    """Cast ``df`` to the contract's types (``schema``), identifiers to ``id_type`` (default: as
    the values are, :func:`infer_id_type`).

    Columns the contract does not know are dropped (and logged). A required column ``df``
    lacks is left out, so validation names it; an optional one is added as nulls.
    """
    spec = TABLES[table]
    present = list(df.columns)
    _contract_fields(present, schema, table)  # says which columns it ignores
    absent = set(_absent_optional(table, present))
    out_fields, arrays = [], []
    for field in schema:
        if field.name not in present and field.name not in absent:
            continue
        kind = spec.column(field.name).kind if field.name in {c.name for c in spec.columns} else ""
        if field.name in absent:
            typ = (id_type or field.type) if kind == "id" else field.type
            out_fields.append(pa.field(field.name, typ))
            arrays.append(pa.nulls(len(df), typ))
            continue
        col = df[field.name]
        try:
            if kind == "id":
                typ = id_type or infer_id_type(col) or pa.int64()
                arrays.append(_id_array(col, typ, table, field.name))
                out_fields.append(pa.field(field.name, typ))
                continue
            if pa.types.is_boolean(field.type):
                arrays.append(_flag_array(col))
            elif kind in ("category", "contact"):  # codes and contact fields: text as given ("0612..." too)
                arrays.append(_code_array(col, table, field.name))
            else:
                if pa.types.is_timestamp(field.type):
                    col = pd.to_datetime(col, errors="raise", format="mixed")
                arrays.append(pa.array(col, type=field.type, from_pandas=True))
            out_fields.append(field)
        except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConformError(
                f"table {table}, column {field.name}: cannot convert to {field.type}: {first_line(exc)}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=pa.schema(out_fields, metadata=absent_metadata(absent)))


def _same_id_kind(have: pa.DataType, want: pa.DataType) -> bool:
    """Both text or both integers: a cast serves; otherwise :func:`_id_array` converts."""
    return (pa.types.is_string(have) and pa.types.is_string(want)) or (
        pa.types.is_integer(have) and pa.types.is_integer(want))


def conform_arrow(table: pa.Table, schema: pa.Schema, name: str, id_type: pa.DataType | None = None) -> pa.Table:
    """:func:`conform` for an Arrow table (event files are read as Arrow: no pandas round trip)."""
    spec = TABLES[name]
    present = table.column_names
    _contract_fields(present, schema, name)
    absent = set(_absent_optional(name, present))
    out_fields, arrays = [], []
    for field in schema:
        if field.name not in present and field.name not in absent:
            continue
        kind = spec.column(field.name).kind
        typ = (id_type or (infer_id_type(table.column(field.name)) if field.name in present else None) or field.type) \
            if kind == "id" else field.type
        if field.name in absent:
            arrays.append(pa.nulls(table.num_rows, typ))
        elif kind == "id" and not _same_id_kind(table.column(field.name).type, typ):  # text <-> integer ids
            arrays.append(_id_array(table.column(field.name).to_pandas(), typ, name, field.name))
        elif kind in ("category", "contact"):
            arrays.append(codes(table.column(field.name), name, field.name))
        else:
            try:
                # safe casts (no silent integer overflow), but sub-microsecond stamps may be truncated
                arrays.append(pc.cast(table.column(field.name),
                                      options=pc.CastOptions(typ, allow_time_truncate=True)))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ConformError(f"table {name}, column {field.name}: cannot convert to {typ}: "
                                   f"{first_line(exc)}") from exc
        out_fields.append(pa.field(field.name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(out_fields, metadata=absent_metadata(absent)))


def _write_chunks(chunks: Iterable[pa.Table], schema: pa.Schema, out_path: Path) -> tuple[int, tuple[str, ...]]:
    """Stream conformed chunks into one Parquet file written atomically (the full contract
    schema when there are no rows)."""
    with ParquetAppender(out_path, keep_empty=True) as out:
        for chunk in chunks:
            out.write(chunk)
        if out.rows == 0:
            out.schema = schema
    present = out.schema or schema
    return out.rows, tuple(n for n in schema.names if n not in present.names)


def _window(table: str, start: str | dt.date, end: str | dt.date) -> tuple[dt.date, dt.date]:
    start_d, end_d = as_date(start), as_date(end)
    if start_d >= end_d:
        raise ValueError(f"ingest {table}: empty window [{start_d}, {end_d})")
    return start_d, end_d


def window_query(sql: str, engine: sa.Engine, start: dt.date, end: dt.date) -> tuple[sa.TextClause, dict[str, Any]]:
    """``sql`` with its ``:window_start`` and ``:window_end`` bound to the days ``[start, end)``.

    SQLite keeps times as text and compares them as text: a bound ``2025-03-01 00:00:00.000000``
    is greater than a row's ``2025-03-01 00:00:00`` or ``2025-03-01``, so the rows at the first
    instant of a window fell into none. The bounds are whole days, so SQLite gets the day
    itself (``2025-03-01``), which sorts before every time of that day in any ISO spelling;
    other databases get timestamps."""
    if engine.dialect.name == "sqlite":
        kind: sa.types.TypeEngine[Any] = sa.String()
        params: dict[str, Any] = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    else:
        kind = sa.DateTime()
        params = {"window_start": dt.datetime.combine(start, dt.time()), "window_end": dt.datetime.combine(end, dt.time())}
    query = sa.text(sql).bindparams(sa.bindparam("window_start", type_=kind), sa.bindparam("window_end", type_=kind))
    return query, params


def table_chunks(settings: Settings, table: str, start: str | dt.date, end: str | dt.date,
                 id_type: pa.DataType | None = None) -> Iterator[pa.Table]:
    """Rows of a customer-database ``table`` whose time column is in ``[start, end)``,
    conformed, ``settings.ingest_chunk_rows`` at a time; identifiers as ``id_type`` (default:
    as the first chunk's are, then the same for every chunk).

    The query is ``sql/ingest_<table>.sql`` with bound parameters, ordered by the time
    column (so a chunk covers a few consecutive days); the cursor streams (server-side
    where the database has them), so memory is bounded by a chunk.
    """
    if table not in SOURCE_TABLES:
        raise KeyError(f"unknown source table {table!r}; known: {sorted(SOURCE_TABLES)}")
    start_d, end_d = _window(table, start, end)
    eng = source_engine(settings)
    query, params = window_query(load_sql(f"ingest_{table}", settings), eng, start_d, end_d)
    rows = settings.ingest_chunk_rows
    try:
        with eng.connect() as conn:
            conn = conn.execution_options(stream_results=True, max_row_buffer=rows)
            for chunk in pd.read_sql(query, conn, params=params, chunksize=rows):
                conformed = conform(chunk, SOURCE_TABLES[table].schema, table, id_type)
                id_type = id_type or (_ids_of(conformed) if conformed.num_rows else None)
                yield conformed
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database {masked(settings.db_url)} "
                             f"(setting source_db_url) failed: {exc}") from exc


#: the lower bound of "from the earliest row" (history_start unset)
EARLIEST = dt.date(1900, 1, 1)


def time_bound(settings: Settings, table: str, end: dt.date, which: str = "min",
               start: dt.date = EARLIEST) -> dt.datetime | None:
    """The earliest (``which="min"``) or latest (``"max"``) time-column value of the rows that
    ``ingest_<table>.sql`` (yours, with ``sql_dir``) returns in ``[start, end)``; None: no row."""
    _, time_col = LAKE_TABLES[table]
    fn = {"min": "MIN", "max": "MAX"}[which]
    inner = load_sql(f"ingest_{table}", settings).strip().rstrip(";")
    eng = source_engine(settings)
    query, params = window_query(f"SELECT {fn}(q.{time_col}) FROM ({inner}) AS q", eng, start, end)  # identifiers only
    try:
        with eng.connect() as conn:
            value = conn.execute(query, params).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database {masked(settings.db_url)} "
                             f"(setting source_db_url) failed: {exc}") from exc
    if value is None:
        return None
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def day_expression(engine: sa.Engine, column: str) -> str:
    """SQL for the day of ``q.<column>`` as :func:`window_query` places a row: SQLite keeps times
    as text and compares text, so a row's day is its first ten characters (whatever follows
    them); other databases cast the timestamp to a date."""
    if engine.dialect.name == "sqlite":
        return f"substr(CAST(q.{column} AS TEXT), 1, 10)"
    return f"CAST(q.{column} AS DATE)"


def filled_later(table: str) -> list[str]:
    """The nullable time columns of ``table`` besides its time column: values written after the
    row itself (a ticket's ``resolved_at``, a period's ``end_date``), which a day's profile counts."""
    spec = TABLES[table]
    return [c.name for c in spec.columns if c.kind == "time" and c.nullable and c.name != spec.time_column]


#: a trailing ORDER BY of column names
_TRAILING_ORDER = re.compile(r"\s+ORDER\s+BY\s+[\w\s.,\"]+$", re.IGNORECASE)
_ROW_LIMITS = re.compile(r"\b(LIMIT|OFFSET|FETCH|TOP)\b", re.IGNORECASE)


def unordered(sql: str) -> str:
    """``sql`` without its trailing ``ORDER BY`` of column names: a count needs no order, and
    SQLite runs an aggregate over an ordered subquery row by row instead of from the time
    column's index (7.6M payments: 4 s -> 2 s). Anything else at its end (a ``LIMIT``, a
    comment) keeps the SQL as it is."""
    match = _TRAILING_ORDER.search(sql)
    if match is None or _ROW_LIMITS.search(match.group()):
        return sql
    return sql[:match.start()]


@dataclass(frozen=True)
class DayProfile:
    """What the database holds of one table, per day of its time column: the row count, then the
    number of values of each column of :attr:`columns` after the first (``rows``)."""

    columns: tuple[str, ...]
    days: dict[dt.date, tuple[int, ...]]
    #: rows whose time value the database spells as no ISO day (they cannot be placed in a day)
    unplaced: int = 0


def day_profile(settings: Settings, table: str, start: dt.date, end: dt.date) -> DayProfile:
    """The :class:`DayProfile` of the rows ``ingest_<table>.sql`` (yours, with ``sql_dir``) returns
    in ``[start, end)``: one ``GROUP BY`` query over that SQL (the rows a re-extract would read)."""
    time_col = TABLES[table].time_column
    inner = unordered(load_sql(f"ingest_{table}", settings).strip().rstrip(";").rstrip())
    eng = source_engine(settings)
    try:
        with eng.connect() as conn:
            query, params = window_query(f"SELECT * FROM ({inner}\n) AS q LIMIT 0", eng, start, end)
            returned = set(conn.execute(query, params).keys())
            counted = [c for c in filled_later(table) if c in returned]
            day = day_expression(eng, time_col)
            values = "".join(f", COUNT(q.{c})" for c in counted)  # identifiers of the contract only
            query, params = window_query(f"SELECT {day} AS day, COUNT(*){values} FROM ({inner}\n) AS q "
                                         f"GROUP BY {day}", eng, start, end)
            rows = conn.execute(query, params).all()
    except sa.exc.SQLAlchemyError as exc:
        raise IngestionError(f"table {table}: reading the source database {masked(settings.db_url)} "
                             f"(setting source_db_url) failed: {exc}") from exc
    days: dict[dt.date, tuple[int, ...]] = {}
    unplaced = 0
    for value, *counts in rows:
        try:
            days[dt.date.fromisoformat(str(value)[:10])] = tuple(int(n) for n in counts)
        except ValueError:
            unplaced += int(counts[0])
    return DayProfile(("rows", *counted), days, unplaced)


def earliest_day(settings: Settings, table: str, end: dt.date) -> dt.date | None:
    """The day of the earliest row of ``table`` before ``end`` (None: no row): where a first
    training run starts a table's history when ``history_start`` is unset."""
    first = time_bound(settings, table, end, "min")
    return first.date() if first is not None else None


def ingest_table(
    settings: Settings, table: str, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """:func:`table_chunks` of one window streamed into one Parquet file (``python -m pipeline ingest``)."""
    start_d, end_d = _window(table, start, end)
    rows, missing = _write_chunks(table_chunks(settings, table, start_d, end_d), SOURCE_TABLES[table].schema,
                                  Path(out_path))
    log.info("ingest %s [%s, %s): %d rows -> %s", table, start_d, end_d, rows, out_path)
    return IngestResult(table, Path(out_path), rows, start_d, end_d, missing)


def event_files(settings: Settings, start: dt.date, end: dt.date) -> list[Path]:
    """Landed event files (Parquet or CSV) for the days in ``[start, end)``, in day order."""
    root = settings.landing_dir / "events"
    files: list[Path] = []
    for day_dir in sorted(root.glob("date=*")):
        try:
            day = dt.date.fromisoformat(day_dir.name.removeprefix("date="))
        except ValueError:
            log.warning("ingest events: ignoring folder with a bad date name: %s", day_dir)
            continue
        if start <= day < end:
            files.extend(sorted(p for p in day_dir.iterdir() if p.suffix in {".parquet", ".csv"}))
    return files


def _event_file_batches(path: Path, rows: int) -> Iterator[pa.Table]:
    """Batches of one landed file; a file that cannot be parsed, or that lacks contract
    columns, is a :class:`LandingFileError` naming the file (and, for a CSV, the header
    it found: a wrong delimiter shows as one long column name)."""
    kind = "CSV" if path.suffix == ".csv" else "Parquet"
    try:
        if path.suffix == ".csv":
            # ids as text, as written ("00042" keeps its zeros); conformed to the business's id type
            types = {f.name: (pa.string() if f.name == "customer_id" else f.type) for f in EVENTS_SCHEMA}
            reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
            columns = reader.schema.names
            batches: Iterable[pa.RecordBatch] = reader
        else:
            parquet = pq.ParquetFile(path)
            columns = parquet.schema_arrow.names
            batches = parquet.iter_batches(batch_size=rows)
        missing = [n for n in EVENTS.required if n not in columns]
        if missing:
            raise LandingFileError(
                f"events landing file {path}: no column(s) {missing}; its columns are {columns}"
                + (" (a CSV must be comma-separated with a header row)" if kind == "CSV" else ""))
        for batch in batches:
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, UnicodeDecodeError, OSError) as exc:
        raise LandingFileError(f"events landing file {path} cannot be read as {kind}: {exc}") from exc


def _ids_of(table: pa.Table) -> pa.DataType | None:
    return table.schema.field("customer_id").type if "customer_id" in table.column_names else None


def event_chunks(settings: Settings, start: str | dt.date, end: str | dt.date,
                 id_type: pa.DataType | None = None) -> Iterator[pa.Table]:
    """The event files landed for the days in ``[start, end)``, conformed, in day order, in
    chunks of at most ``settings.ingest_chunk_rows`` rows: consecutive small files share a
    chunk (validation costs a fixed overhead per chunk), a large file is read in batches."""
    limit = settings.ingest_chunk_rows
    pending: list[pa.Table] = []
    rows = 0
    for path in event_files(settings, *_window("events", start, end)):
        for batch in _event_file_batches(path, limit):
            table = conform_arrow(batch, EVENTS_SCHEMA, "events", id_type)
            id_type = id_type or (_ids_of(table) if table.num_rows else None)
            # a file without an optional column is not merged with one that has it (absent_columns)
            if pending and (rows + table.num_rows > limit
                            or not table.schema.equals(pending[0].schema, check_metadata=True)):
                yield pa.concat_tables(pending)
                pending, rows = [], 0
            pending.append(table)
            rows += table.num_rows
    if pending:
        yield pa.concat_tables(pending)


def ingest_events(
    settings: Settings, start: str | dt.date, end: str | dt.date, out_path: Path
) -> IngestResult:
    """:func:`event_chunks` of one window streamed into one Parquet file."""
    start_d, end_d = _window("events", start, end)
    rows, missing = _write_chunks(event_chunks(settings, start_d, end_d), EVENTS_SCHEMA, Path(out_path))
    log.info("ingest events [%s, %s): %d rows -> %s", start_d, end_d, rows, out_path)
    return IngestResult("events", Path(out_path), rows, start_d, end_d, missing)


def chunks(settings: Settings, table: str, start: str | dt.date, end: str | dt.date,
           id_type: pa.DataType | None = None) -> Iterator[pa.Table]:
    """The conformed chunks of any lake input's window: :func:`event_chunks` or :func:`table_chunks`."""
    if table == "events":
        return event_chunks(settings, start, end, id_type)
    return table_chunks(settings, table, start, end, id_type)


def range_chunks(settings: Settings, table: str, ranges: Iterable[tuple[dt.date, dt.date]],
                 id_type: pa.DataType | None = None) -> Iterator[pa.Table]:
    """:func:`chunks` of each window of ``ranges`` in turn (a training's re-extract of the days
    that changed), every chunk's identifiers typed as the first's."""
    for start, end in ranges:
        for chunk in chunks(settings, table, start, end, id_type):
            id_type = id_type or (_ids_of(chunk) if chunk.num_rows else None)
            yield chunk


def window_for(settings: Settings, table: str, end: dt.date, nightly: tuple[dt.date, dt.date] | None) -> tuple[dt.date, dt.date]:
    """The window ``[start, end)`` a run ingests for ``table``.

    A nightly run (``nightly``: its window) takes exactly that window. A training run takes
    the database tables from ``history_start`` (or each table's earliest row: the window
    ``training_reextract: full`` reads whole, ``changed`` only its days that changed,
    :mod:`pipeline.ingestion.reconcile`) and catches the event lake up from its last day
    (events are large: history is not re-read), or, on an empty lake, from the first landed day.
    """
    from pipeline.ingestion import lake

    if nightly is not None:
        return nightly
    if table != "events":
        if settings.history_start:
            return as_date(settings.history_start), end
        return min(earliest_day(settings, table, end) or end, end), end
    have = lake.partition_dates(settings, "events")
    if have:
        return have[-1] + dt.timedelta(days=1), end
    files = event_files(settings, as_date(settings.history_start) if settings.history_start else EARLIEST, end)
    first = min((as_date(f.parent.name.removeprefix("date=")) for f in files), default=end)
    return first, end
