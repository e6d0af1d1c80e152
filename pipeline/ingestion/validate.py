"""Validation gate: a batch run through its Great Expectations 1.x suite, with row-level quarantine.

Every lake table (and the feature table) has a suite ``expectations/<table>.json`` in GX's
own suite JSON format (``ExpectationSuite.to_json_dict()``: ``name``, ``expectations`` of
``{"type", "kwargs", "meta"}``). :func:`validate_batch` runs the table's suite on a
DataFrame with GX (an ephemeral context, a pandas dataframe asset, ``result_format``
COMPLETE) and splits the batch:

* the verdict is GX's: any failed expectation fails the batch (an expectation with a
  ``mostly`` kwarg fails only below that fraction, as in GX);
* *row-level* rules (GX map expectations: not-null, in-set, between, unique, column-pair,
  compound-unique, ...) report the rows that broke them. Those rows are *rejected*, with
  ``_reason`` (``"payments.amount: expect_column_values_to_be_between(min_value=0) ; ..."``)
  and ``_rules`` (``"amount:expect_column_values_to_be_between;status:..."``); every other
  row is *clean*. ``len(clean) + len(rejected) == len(df)`` always. Rows that break a rule
  whose ``mostly`` still holds are rejected too, but do not fail the batch;
* *table-level* rules (``expect_column_to_exist``, row counts, ...) fail the batch without
  rejecting rows. A row-level rule on a missing column cannot run: it is reported as a
  failure "not evaluated" instead of crashing.

The suites (their files and conventions: run-time window parameters, column globs, closed
vocabularies) are built by :mod:`pipeline.ingestion.suites`; the rejected rows are kept by
:mod:`pipeline.ingestion.quarantine`. GX is imported lazily (it is slow to import) and its context
and dataframe assets are cached per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.errors import DataError
from pipeline.ingestion.quarantine import REASON_COLUMN, REASON_SEP, RULES_COLUMN, RULES_SEP, quarantine, quarantine_path
from pipeline.ingestion.suites import build_suite, closed_sets, gx, load_suite, run_parameters, suite_parts

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    from pipeline.storage import Location

log = logging.getLogger(__name__)

#: COMPLETE gives every unexpected row's index; the index query string is not needed
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 5,
    "return_unexpected_index_query": False,
}
#: kwargs that name the checked column(s); the rest describe the rule
_COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
_UNIQUE_RULES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
_TABLE_LEVEL_DETAIL = {"expect_column_to_exist": "column is missing from the batch"}


class DataValidationError(DataError):
    """A batch failed its expectation suite; the message lists every failed rule."""

    def __init__(self, result: ValidationResult | BatchSummary, quarantined: Path | None) -> None:
        self.result = result
        self.quarantined = quarantined
        super().__init__(_error_message(result, quarantined))

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[ValidationResult | BatchSummary, Path | None]]:
        return type(self), (self.result, self.quarantined)


@dataclass(frozen=True)
class RuleFailure:
    """One failed expectation of a batch."""

    table: str
    #: the checked column; several joined by "," (column pairs, compound keys); None for table rules
    column: str | None
    #: the GX expectation type, e.g. ``expect_column_values_to_be_between``
    rule: str
    #: rows that broke it; every row of the batch for a table-level or unevaluated rule
    unexpected_count: int
    #: the rule's parameters and examples of unexpected values, or why it could not run
    detail: str

    def describe(self, rows: int) -> str:
        """One line for error messages: table, column, rule, count and detail."""
        line = f"{self.table}.{self.column or '<table>'}: {self.rule} failed for {self.unexpected_count} of {rows} rows"
        return f"{line} ({self.detail})" if self.detail else line


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one batch of one table."""

    table: str
    rows: int
    passed: bool
    failures: list[RuleFailure]
    #: rows that broke no row-level rule (original index and columns)
    clean: pd.DataFrame
    #: rows that broke >= 1 row-level rule, plus ``_reason`` and ``_rules``
    rejected: pd.DataFrame

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)


@dataclass(frozen=True)
class BatchSummary:
    """The outcome of validating one batch chunk by chunk (:class:`ChunkedValidator`)."""

    table: str
    rows: int
    passed: bool
    #: every failed rule once, its unexpected rows summed over the chunks
    failures: list[RuleFailure]
    rejected_count: int
    quarantine: Path | None
    chunks: int


@dataclass(frozen=True)
class _Outcome:
    """One expectation's GX result, in this module's terms."""

    column: str | None
    rule: str
    #: ``rule(kwarg=value, ...)`` with the values used at run time
    label: str
    success: bool
    unexpected_count: int | None
    #: positions of the rows that broke it (row-level rules only)
    positions: np.ndarray | None
    detail: str


# ---------------------------------------------------------------------------- GX runtime
@functools.cache
def _pandas_datasource() -> Any:
    """A pandas datasource in a process-wide ephemeral GX context (quiet: no progress bars)."""
    context = gx().get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("churnflow")


@functools.cache
def _batch_definition(table: str) -> BatchDefinition:
    """A whole-dataframe batch definition on the dataframe asset named after ``table``."""
    return _pandas_datasource().add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("batch")


def _gx_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The copy of ``df`` that GX validates.

    Its index is positional, so GX's unexpected indices are row positions of ``df``.
    Narrow numeric and non-nanosecond datetime columns are widened to int64 / float64 /
    datetime64[ns] (same values): GX 1.24 vectorises range checks only for those dtypes
    and maps a Python function over every value otherwise (~2.5 s per million rows per rule).
    """
    view = df.reset_index(drop=True)
    for i, dtype in enumerate(view.dtypes):
        wide = _wide_dtype(dtype)
        if wide is not None:
            # a year-3000 timestamp cannot widen: GX's slow path still checks it correctly
            with contextlib.suppress(pd.errors.OutOfBoundsDatetime):
                view.isetitem(i, view.iloc[:, i].astype(wide))
    # one block per dtype: GX copies the frame for most rules, and a frame of a block per column
    # (Arrow's, or the widened ones) is merged anew on every copy (~30 s per night at 1M features)
    return view.copy()


def _wide_dtype(dtype: Any) -> str | None:
    """The dtype GX checks fast that holds every value of ``dtype``, if that differs."""
    if not isinstance(dtype, np.dtype):
        return None
    if dtype.kind in "iu" and dtype.itemsize < 8:
        return "int64"
    if dtype.kind == "f" and dtype.itemsize < 8:
        return "float64"
    if dtype.kind == "M" and dtype != np.dtype("datetime64[ns]"):
        return "datetime64[ns]"
    return None


def _run_suite(df: pd.DataFrame, table: str, parameters: dict[str, Any],
               closed: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> list[_Outcome]:
    """The outcome of every expectation of ``table``'s suite (plus the declared closed sets) on
    ``df``, in the suite's order."""
    names = tuple(map(str, df.columns))
    suite = build_suite(table, names, closed)
    frame = _gx_frame(df)
    results = []
    for columns, part in suite_parts(table, names, closed):  # narrow frames: GX copies what it validates
        batch = _batch_definition(table).get_batch(
            batch_parameters={"dataframe": frame if columns is None else frame[list(columns)]})
        results += batch.validate(part, result_format=RESULT_FORMAT, expectation_parameters=parameters).results
    rank: dict[tuple[str, str | None], int] = {}
    for i, expectation in enumerate(suite.expectations):
        rank.setdefault((expectation.expectation_type, _column_of(expectation.configuration.kwargs)), i)
    return sorted((_outcome(r) for r in results), key=lambda o: rank.get((o.rule, o.column), len(rank)))


# ------------------------------------------------------------------------ interpretation
def _outcome(result: ExpectationValidationResult) -> _Outcome:
    config = result.expectation_config
    assert config is not None, "GX returned a result without its expectation"
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id" and v is not None}
    described = {k: v for k, v in kwargs.items() if k not in _COLUMN_KWARGS and k not in ("row_condition",
                                                                                          "condition_parser")}
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in described.items())
    condition = kwargs.get("row_condition")
    if condition:  # the rows a rule applies to, in words
        where = condition.get("pass_through_filter", condition) if isinstance(condition, dict) else condition
        params = f"{params}, where {where}" if params else f"where {where}"
    label = f"{config.type}({params})" if params else config.type
    details = result.result or {}
    indices = details.get("unexpected_index_list")
    return _Outcome(
        column=_column_of(kwargs),
        rule=config.type,
        label=label,
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        positions=np.asarray(indices, dtype=np.int64) if indices else None,
        detail=_detail(config.type, params, details, _error_of(result)),
    )


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(map(str, kwargs["column_list"]))
    return None


def _error_of(result: ExpectationValidationResult) -> str | None:
    """The message of the exception that kept GX from evaluating the expectation, if any."""
    info = result.exception_info or {}
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message") or "unknown error")
    return None


def _detail(rule: str, params: str, details: dict[str, Any], error: str | None) -> str:
    """The rule's parameters and what went wrong: examples, an observed value or an error."""
    if error is not None:
        note = f"not evaluated: {error}"
    elif rule in _TABLE_LEVEL_DETAIL:
        note = _TABLE_LEVEL_DETAIL[rule]
    elif "observed_value" in details:
        note = f"observed {_fmt(details['observed_value'])}"
    else:
        examples = [v for v in details.get("partial_unexpected_list") or [] if not _is_null(v)]
        note = f"e.g. {', '.join(_fmt(v) for v in examples[:3])}" if examples else ""
    return "; ".join(part for part in (params, note) if part)


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    """Short, stable rendering of a rule parameter or value for messages and ``_reason``."""
    if isinstance(value, dt.datetime | np.datetime64):
        return str(pd.Timestamp(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _failure(table: str, outcome: _Outcome, rows: int) -> RuleFailure:
    count = outcome.unexpected_count if outcome.unexpected_count is not None else rows
    return RuleFailure(table, outcome.column, outcome.rule, int(count), outcome.detail)


def _split(df: pd.DataFrame, table: str, outcomes: list[_Outcome]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clean, rejected): rejected rows carry every row-level rule they broke."""
    hits = [o for o in outcomes if o.positions is not None]
    bad = np.zeros(len(df), dtype=bool)
    for outcome in hits:
        bad[outcome.positions] = True
    slot = np.cumsum(bad) - 1  # position of a rejected row within `rejected`
    reasons = np.full(int(bad.sum()), "", dtype=object)
    rules = np.full(len(reasons), "", dtype=object)
    for outcome in hits:
        at = slot[outcome.positions]
        reasons[at] = _append(reasons[at], f"{table}.{outcome.column}: {outcome.label}", REASON_SEP)
        rules[at] = _append(rules[at], f"{outcome.column}:{outcome.rule}", RULES_SEP)
    rejected = df.iloc[np.flatnonzero(bad)].assign(**{REASON_COLUMN: reasons, RULES_COLUMN: rules})
    return df.iloc[np.flatnonzero(~bad)], rejected


def _append(current: np.ndarray, text: str, sep: str) -> np.ndarray:
    return np.where(current == "", text, current + sep + text)


def _error_message(result: ValidationResult | BatchSummary, quarantined: Path | None) -> str:
    """Every failed rule on its own line, then where the rejected rows went."""
    broken = len(result.failures)
    chunks = f" ({result.chunks} chunks)" if isinstance(result, BatchSummary) and result.chunks > 1 else ""
    lines = [f"validation of {result.table} failed: {broken} rule(s) broken in a batch of {result.rows} rows{chunks}"]
    lines += [f"  {failure.describe(result.rows)}" for failure in result.failures]
    if quarantined is not None:
        lines.append(f"{result.rejected_count} rejected rows quarantined -> {quarantined}")
    else:
        lines.append("no rows quarantined (only table-level rules failed)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- API
def validate_batch(
    df: pd.DataFrame,
    table: str,
    *,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    settings: Settings | None = None,
) -> ValidationResult:
    """Validate ``df`` with the suite of ``table``; split it into clean and rejected rows.

    ``window_start``/``window_end`` fill the suite's run-time parameters (the batch's
    ingestion window ``[start, end)``); ``settings`` the category bound and the declared closed
    sets; see the module docstring.
    """
    outcomes = _run_suite(df, table, run_parameters(window_start, window_end, settings), closed_sets(settings, table))
    clean, rejected = _split(df, table, outcomes)
    failures = [_failure(table, o, len(df)) for o in outcomes if not o.success]
    return ValidationResult(table, len(df), not failures, failures, clean, rejected)


def validate_and_quarantine(
    df: pd.DataFrame,
    table: str,
    settings: Settings,
    run_key: str,
    *,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    raise_on_failure: bool = True,
) -> ValidationResult:
    """Validate, quarantine the rejected rows, log one line; raise if the batch failed."""
    result = validate_batch(df, table, window_start=window_start, window_end=window_end, settings=settings)
    path = quarantine(result, settings, run_key)
    log.info("validate %s: %d rows, %d rejected%s", table, result.rows, len(result.rejected),
             f" -> {path}" if path else "")
    if raise_on_failure and not result.passed:
        raise DataValidationError(result, path)
    return result


class ChunkedValidator:
    """Validate one table's batch chunk by chunk, each chunk with the table's whole suite.

    Rejected rows stream into the batch's one quarantine file (:func:`~pipeline.ingestion.quarantine.quarantine_path`,
    published when the batch ends, removed when it rejected nothing), so memory is bounded
    by a chunk however long the batch. The batch fails when any chunk breaks a rule (a
    ``mostly`` rule is judged per chunk: a bad day is not averaged away by good ones);
    :meth:`finish` sums each rule's unexpected rows over the chunks.

    Usage: ``with ChunkedValidator(...) as v: for chunk in chunks: clean = v.validate(chunk)``
    then ``summary = v.finish()``.
    """

    def __init__(self, table: str, settings: Settings, run_key: str, *, window_start: dt.datetime | None = None,
                 window_end: dt.datetime | None = None, schema: Any = None,
                 known_customers: np.ndarray | None = None) -> None:
        from pipeline.artifacts import ParquetAppender

        self.table = table
        #: sorted ids of the customers that exist; rows naming another are quarantined (None: not checked)
        self.known_customers = pd.Index(known_customers) if known_customers is not None else None
        #: rows quarantined by the tolerated checks (they do not fail the batch), by reason
        self.tolerated: dict[str, int] = {}
        self.settings = settings
        self.parameters = run_parameters(window_start, window_end, settings)
        self.closed = closed_sets(settings, table)
        if schema is not None:
            import pyarrow as pa

            schema = pa.schema([*schema, pa.field(REASON_COLUMN, pa.string()), pa.field(RULES_COLUMN, pa.string())])
        self._quarantine = ParquetAppender(quarantine_path(settings, table, run_key), schema)
        self._failures: dict[tuple[str | None, str], RuleFailure] = {}
        self.rows = 0
        self.chunks = 0

    @property
    def rejected(self) -> int:
        """Rows quarantined so far."""
        return self._quarantine.rows

    def validate(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate one chunk; quarantine its rejected rows; return its clean rows.

        Before the suite, two checks quarantine rows *without* failing the batch (each is
        counted in :attr:`tolerated` and in the rejected rows the nightly alerts on):
        exact copies of an earlier row of the chunk (the first is kept: at-least-once
        delivery, not a conflict; rows that share a key but differ still fail the suite's
        uniqueness rule) and rows naming a customer id that is not in ``known_customers``.
        """
        self.rows += len(df)
        self.chunks += 1
        df = self._tolerate(df, df.duplicated(keep="first").to_numpy(), "*", "duplicate_row",
                            "exact copy of an earlier row of the batch (one copy kept)")
        if self.known_customers is not None and "customer_id" in df.columns and len(df):
            ids = df["customer_id"]
            known = ids.isin(self.known_customers).to_numpy()
            df = self._tolerate(df, ~known & ids.notna().to_numpy(), "customer_id", "unknown_customer",
                                "no such customer in the customers table")
        outcomes = _run_suite(df, self.table, self.parameters, self.closed)
        clean, rejected = _split(df, self.table, outcomes)
        for outcome in outcomes:
            if not outcome.success:
                self._add_failure(_failure(self.table, outcome, len(df)))
        if len(rejected):
            self._quarantine.write(rejected)
        return clean

    def _tolerate(self, df: pd.DataFrame, bad: np.ndarray, column: str, rule: str, detail: str) -> pd.DataFrame:
        """Quarantine the rows of ``df`` flagged ``bad`` without failing the batch; return the rest."""
        if not bad.any():
            return df
        reason = self._quarantine_rows(df[bad], column, rule, f"{rule} ({detail})")
        self.tolerated[rule] = self.tolerated.get(rule, 0) + int(bad.sum())
        log.warning("validate %s: %d row(s) quarantined: %s", self.table, int(bad.sum()), reason)
        return df[~bad]

    def reject(self, rows: pd.DataFrame, column: str, rule: str, detail: str) -> None:
        """Quarantine ``rows`` found bad outside the suite run (e.g. keys duplicated across
        chunks) with that reason, and fail the batch for it."""
        self._quarantine_rows(rows, column, rule, f"{rule}({detail})" if detail else rule)
        self._add_failure(RuleFailure(self.table, column, rule, len(rows), detail))

    def _quarantine_rows(self, rows: pd.DataFrame, column: str, rule: str, label: str) -> str:
        """Append ``rows`` to the quarantine file with the reason ``<table>.<column>: <label>``; return it."""
        reason = f"{self.table}.{column}: {label}"
        self._quarantine.write(rows.assign(**{REASON_COLUMN: reason, RULES_COLUMN: f"{column}:{rule}"}))
        return reason

    def check_unique_across_chunks(self, clean_glob: str) -> None:
        """The suite's uniqueness rules over the whole batch, not only within each chunk.

        ``clean_glob`` holds the clean rows of every chunk (the staged pieces): a key seen
        in two chunks is found with one DuckDB aggregation, its rows quarantined and the
        batch failed (a ``mostly`` on a uniqueness rule is judged per chunk only).
        """
        if self.chunks < 2:
            return
        from pipeline.ingestion.buckets import HASH_COLUMN
        from pipeline.ingestion.lake import duckdb_connection

        for expectation in load_suite(self.table).expectations:
            if expectation.expectation_type not in _UNIQUE_RULES:
                continue
            kwargs = expectation.configuration.kwargs
            columns = [kwargs["column"]] if "column" in kwargs else list(kwargs["column_list"])
            keys = ", ".join(f'"{c}"' for c in columns)
            with duckdb_connection(self.settings) as con:
                dups = con.execute(
                    f"SELECT t.* FROM read_parquet($glob, hive_partitioning = false) t SEMI JOIN "
                    f"(SELECT {keys} FROM read_parquet($glob, hive_partitioning = false) "
                    f"GROUP BY ALL HAVING count(*) > 1) d USING ({keys})", {"glob": clean_glob}).df()
            dups = dups.drop(columns=[HASH_COLUMN], errors="ignore")  # the staged pieces' customer order
            if len(dups):
                log.warning("validate %s: %d rows share a %s with a row of another chunk", self.table, len(dups),
                            "/".join(columns))
                self.reject(dups, ",".join(columns), expectation.expectation_type, "across chunks")

    def _add_failure(self, failure: RuleFailure) -> None:
        key = (failure.column, failure.rule)
        seen = self._failures.get(key)
        self._failures[key] = failure if seen is None else dataclasses.replace(
            seen, unexpected_count=seen.unexpected_count + failure.unexpected_count)

    def finish(self, *, raise_on_failure: bool = True) -> BatchSummary:
        """Publish the quarantine file, log one line, raise :class:`DataValidationError` if
        any chunk failed."""
        path = self._quarantine.close()
        failures = list(self._failures.values())
        summary = BatchSummary(self.table, self.rows, not failures, failures, self._quarantine.rows, path, self.chunks)
        log.info("validate %s: %d rows in %d chunk(s), %d rejected%s", self.table, self.rows, self.chunks,
                 summary.rejected_count, f" -> {path}" if path else "")
        if raise_on_failure and failures:
            raise DataValidationError(summary, path)
        return summary

    def abort(self) -> None:
        self._quarantine.abort()

    def __enter__(self) -> ChunkedValidator:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def validate_parquet_file(table: str, settings: Settings, run_key: str, path: Location) -> BatchSummary:
    """The suite of ``table`` over a Parquet file, ``ingest_chunk_rows`` rows at a time (a file of
    millions of rows never sits in memory twice); rejected rows go to the run's quarantine file,
    and a failing file raises :class:`DataValidationError`. An empty file still runs the suite
    (table-level rules). The features' gate before training or scoring. ``path``: a local file
    or an object (a run artifact on ``artifacts_url``)."""
    from pipeline import storage

    with ChunkedValidator(table, settings, run_key) as validator:
        with storage.parquet_file(path) as file:
            for batch in file.iter_batches(batch_size=settings.ingest_chunk_rows):
                validator.validate(batch.to_pandas())
        if validator.chunks == 0:
            validator.validate(storage.read_arrow(path).to_pandas())
        return validator.finish()
