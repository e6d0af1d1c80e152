"""Point-in-time-correct features, computed by DuckDB SQL (``sql/features*.sql``) over the lake.

A feature row is ``(customer_id, as_of)``; ``as_of`` is a date, read as midnight. Every
feature uses only source rows whose time column is ``< as_of`` (customer attributes: the
latest version with ``updated_at < as_of``; subscription: the latest period with
``start_date < as_of``). Look-back windows are half-open: the N-day window is
``[as_of - N days, as_of)``, so an event exactly at ``as_of`` is excluded and one exactly at
``as_of - 7 days`` is inside the 7-day window.

Population at ``as_of``: customers known before ``as_of`` whose ``signup_date < as_of`` and
who have no cancellation with ``cancelled_at < as_of`` (``sql/features_population.sql``,
shared with :mod:`pipeline.features.labels`).

One code path serves one or many snapshot dates: the dates become a small table that the
SQL joins, so a customer's row on date D is the same whether D is computed alone or in a
batch. Values never reach the SQL text: dates, window lengths and look-backs are bound
parameters; only the per-window column list is generated, from identifiers.

The columns, their names, groups and windows, are the catalogue's
(:mod:`pipeline.features.catalogue`).

Performance: each lake table is read only from the day partitions the requested windows
need (the file list is built here), the snapshot dates are a small table of
``(as_of, day, age)`` rows that the sources hash-join on their calendar day, and DuckDB runs
with ``settings.n_jobs`` threads and :data:`DUCKDB_MEMORY_LIMIT`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence

import duckdb
import pandas as pd

from pipeline import storage
from pipeline.artifacts import as_date, atomic_path
from pipeline.config import SQL_DIR, Settings
from pipeline.features.catalogue import (
    BILLING_CHANGE_DAYS,
    DEFAULT_WINDOWS,
    DOWNGRADE_DAYS,
    PAYMENT_LOOKBACK_DAYS,
    PLAN_CHANGE_LOOKBACK_DAYS,
    PURCHASE_WINDOWS,
    TICKET_WINDOW_DAYS,
    WINDOW_METRICS,
    check_windows,
    fill,
    window_columns,
)
from pipeline.features.partitions import Part, hash_range
from pipeline.ingestion.lake import DayRange, duckdb_connection, register_lake_table
from pipeline.storage import Location

#: microseconds per second: durations are summed as whole microseconds (see catalogue.WindowMetric)
US_PER_S = 1_000_000

# SQL fragments expanded once per metric (stage 1, per interval) or per (metric, window)
# (stage 2); the placeholders are identifiers and parameter names only, never values.
_PARTIAL_TEMPLATES = {
    "count": "count(*) FILTER (WHERE {column}) AS {prefix}",
    "sum": "sum({column})::BIGINT AS {prefix}",
}
_AGGREGATE_TEMPLATES = {
    "count": "CAST(sum(p.{prefix}) FILTER (WHERE p.lo >= d.as_of - ${param}) AS BIGINT) AS {name}",
    "sum": "CAST(sum(p.{prefix}) FILTER (WHERE p.lo >= d.as_of - ${param}) AS DOUBLE) / ${unit} AS {name}",
}

#: feature groups (temp tables f_<group> from sql/features_<group>.sql) that sql/features.sql joins
_FEATURE_GROUPS: tuple[str, ...] = (
    "f_subscription",
    "f_events",
    "f_payments",  # the payments and purchases groups: one scan of the payments
    "f_plan_changes",
    "f_support",
)


def _check_dates(as_of_dates: Sequence[dt.date | str]) -> list[dt.date]:
    dates = sorted({as_date(d) for d in as_of_dates})
    if not dates:
        raise ValueError("at least one as_of date is required")
    return dates


# --------------------------------------------------------------------------- DuckDB plumbing
def read_sql(name: str, **fragments: str) -> str:
    """Text of ``sql/<name>.sql`` with ``{placeholders}`` replaced by generated fragments.

    Fragments are SQL built by this module from identifiers only; every value is a bound
    parameter.
    """
    text = (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
    return text.format(**fragments) if fragments else text


def register_as_of_dates(con: duckdb.DuckDBPyConnection, dates: Sequence[dt.date]) -> None:
    """Create the temp table ``as_of_dates(as_of DATE)``."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE as_of_dates AS SELECT DISTINCT unnest($dates::DATE[]) AS as_of",
        {"dates": list(dates)},
    )


def create_population(con: duckdb.DuckDBPyConnection, active_days: int | None = None,
                      due_days: int | None = None) -> None:
    """Materialise the temp table ``population`` (needs as_of_dates, customers, cancellations).

    With ``active_days`` (inactivity churn, :func:`population_active_days`) only customers with
    an event or a successful payment in ``[as_of - active_days, as_of)`` stay (needs events and
    payments views covering that look-back). With ``due_days`` (non-renewal churn,
    :func:`population_due_days`) only customers whose paid-through date falls in ``[as_of,
    as_of + due_days)`` stay (needs the subscriptions view)."""
    con.execute(read_sql("features_population"))
    if active_days:
        con.execute(read_sql("features_population_active"), {"active_days": int(active_days)})
    if due_days:
        con.execute(read_sql("features_population_due"), {"due_days": int(due_days)})


def population_due_days(settings: Settings) -> int | None:
    """The horizon of the "due for renewal" filter: ``horizon_days`` for non-renewal churn (only a
    customer whose period ends soon can fail to renew it), none otherwise."""
    return settings.horizon_days if settings.label_kind == "non_renewal" else None


def population_active_days(settings: Settings) -> int | None:
    """The look-back of the "active customer" filter: ``inactivity_days`` for inactivity churn
    (a customer is at risk of going quiet only while active), none for cancellation churn."""
    return settings.inactivity_days if settings.label_kind == "inactivity" else None


def _windows_back(dates: Sequence[dt.date], days: int) -> list[DayRange]:
    return [(d - dt.timedelta(days=days), d) for d in dates]


def _prepare(
    con: duckdb.DuckDBPyConnection, settings: Settings, dates: list[dt.date], windows: tuple[int, ...],
    part: Part | None = None,
) -> None:
    """Register the pruned lake views and the helper tables the feature SQL reads. With
    ``part``, the population is that bucket's customers, and every per-customer table is read
    for them only (the lake's files are in customer order: a piece reads its bucket's row
    groups); the plan ranks, a statistic over every customer's subscriptions, come from all of
    them (``all_subscriptions``), so a customer's row is the same whatever the partitioning."""
    everything_before: list[DayRange] = [(None, dates[-1])]
    hashes = hash_range(part) if part is not None else None
    if part is not None:
        register_lake_table(con, settings, "subscriptions", everything_before, name="all_subscriptions")
    # read once into the connection: several queries read each of them
    for table in ("customers", "subscriptions", "cancellations", "support_tickets"):
        register_lake_table(con, settings, table, everything_before, hashes=hashes, materialize=True)
    register_lake_table(con, settings, "plan_changes", _windows_back(dates, PLAN_CHANGE_LOOKBACK_DAYS), hashes=hashes,
                        materialize=True)
    active = population_active_days(settings) or 0
    # so are the events and payments: on an object store each query would open (GET) every file
    # again, so there they are read once too (spilling past the connection's memory limit); on a
    # disk a view costs less than the copy
    remote = isinstance(storage.lake_root(settings), storage.ObjectPath)
    register_lake_table(con, settings, "events", _windows_back(dates, max(windows[-1], active)), hashes=hashes,
                        materialize=remote)
    register_lake_table(con, settings, "payments",
                        _windows_back(dates, max(PAYMENT_LOOKBACK_DAYS, PURCHASE_WINDOWS[-1], active)), hashes=hashes,
                        materialize=remote)
    register_as_of_dates(con, dates)
    max_lookback = max(windows[-1], PAYMENT_LOOKBACK_DAYS, PLAN_CHANGE_LOOKBACK_DAYS, PURCHASE_WINDOWS[-1])
    con.execute(read_sql("features_asof_days"), {"max_lookback_days": max_lookback})
    # a plan's rank is its typical monthly fee in the periods started before as_of: a business's
    # own plan names need no configured order (a plan seen without a fee has no rank: no downgrade)
    every = "all_subscriptions" if part is not None else "subscriptions"  # a view name, not a value
    con.execute(
        "CREATE OR REPLACE TEMP TABLE plan_rank AS "
        f"SELECT a.as_of, s.plan, median(s.monthly_fee) AS rank FROM {every} AS s "
        "JOIN as_of_dates AS a ON s.start_date < a.as_of::TIMESTAMP "
        "WHERE s.plan IS NOT NULL AND s.monthly_fee IS NOT NULL GROUP BY ALL")
    text_ids = con.execute(f"SELECT typeof(subscription_id) FROM {every} LIMIT 1").fetchone()
    con.execute(read_sql("features_macros", latest_key=LATEST_KEY_TEXT if text_ids and text_ids[0] == "VARCHAR"
                         else LATEST_KEY_INTEGER))
    # with ``part`` the customers are the bucket's already (read by their stored hash range)
    create_population(con, population_active_days(settings), population_due_days(settings))


#: ``latest_key(ts, id)``: orders rows as (ts, id) does. For integer ids one HUGEINT (the
#: microsecond timestamp above any BIGINT id, shifted to be non-negative): max_by over it runs
#: ~2x faster than over a STRUCT at a million customers (make bench); text ids use the STRUCT.
LATEST_KEY_INTEGER = "epoch_us(ts)::HUGEINT * 18446744073709551616 + (id::HUGEINT + 9223372036854775808)"
LATEST_KEY_TEXT = "{'ts': ts, 'id': id}"


def _feature_query(windows: tuple[int, ...]) -> tuple[dict[str, str], str, dict[str, object]]:
    """The per-group SELECTs (``f_events`` ...), the final SELECT joining them, and the parameters.

    ``f_events`` is the stage 2 of the behavioural windows for one ``$as_of`` (see
    :func:`_materialise_events`); the other groups cover every date at once.
    """
    aggregates = []
    for metric in WINDOW_METRICS:
        for i, w in enumerate(windows, start=1):
            aggregates.append(
                fill(
                    _AGGREGATE_TEMPLATES[metric.aggregate],
                    param=f"window_{i}",
                    prefix=metric.prefix,
                    name=f"{metric.prefix}_{w}d",
                    **({"unit": metric.unit_param} if metric.unit_param else {}),
                )
            )
    partials = [fill(_PARTIAL_TEMPLATES[m.aggregate], column=m.column, prefix=m.prefix) for m in WINDOW_METRICS]
    columns = [sql for _, sql in window_columns(windows)]
    groups = {
        "event_partials": read_sql("features_event_partials", partial_aggregates=",\n    ".join(partials)),
        "f_events": read_sql("features_events", window_aggregates=",\n    ".join(aggregates)),
        **{g: read_sql(g.replace("f_", "features_", 1)) for g in _FEATURE_GROUPS if g != "f_events"},
    }
    body = read_sql("features", window_columns=",\n    ".join(columns))
    params: dict[str, object] = {f"window_{i}": w for i, w in enumerate(windows, start=1)}
    params.update(
        windows=list(windows),
        max_window=windows[-1],
        us_per_s=US_PER_S,
        one=1,
        payment_lookback_days=PAYMENT_LOOKBACK_DAYS,
        plan_change_lookback_days=PLAN_CHANGE_LOOKBACK_DAYS,
        downgrade_days=DOWNGRADE_DAYS,
        ticket_window_days=TICKET_WINDOW_DAYS,
        billing_change_days=BILLING_CHANGE_DAYS,
        **{f"purchase_window_{i}": w for i, w in enumerate(PURCHASE_WINDOWS, start=1)},
    )
    return groups, body, params


def _materialise_events(
    con: duckdb.DuckDBPyConnection, dates: list[dt.date], groups: dict[str, str], params: dict[str, object]
) -> None:
    """The behavioural windows in two stages (``sql/features_event_partials.sql``).

    Stage 1 reads the events once and sums them per customer and calendar interval (the
    intervals between all window edges of all dates); stage 2 adds up, per date, the
    intervals inside each window. Stage 2 runs one date at a time so its hash table holds
    one date's customers, however many snapshots a training set has.
    """
    for statement in _statements(groups["event_partials"]):
        con.execute(statement, _bound(statement, params))
    for i, day in enumerate(dates):
        sql = groups["f_events"]
        verb = "CREATE OR REPLACE TEMP TABLE f_events AS" if i == 0 else "INSERT INTO f_events"
        con.execute(f"{verb}\n{sql}", _bound(sql, {**params, "as_of": day}))


def _statements(script: str) -> list[str]:
    """The statements of a SQL script (statements end with ``;`` at the end of a line)."""
    return [s.strip() for s in re.split(r";\s*$", script, flags=re.MULTILINE) if s.strip() and not all(
        line.strip().startswith("--") or not line.strip() for line in s.splitlines())]


def _bound(sql: str, params: dict[str, object]) -> dict[str, object]:
    """The parameters a statement uses (DuckDB rejects unused named parameters)."""
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)}


@contextlib.contextmanager
def feature_relation(
    settings: Settings, as_of_dates: Sequence[dt.date | str], windows: Sequence[int] = DEFAULT_WINDOWS,
    part: Part | None = None,
) -> Iterator[duckdb.DuckDBPyRelation]:
    """The lazy DuckDB relation of feature rows (customer_id, as_of, features...).

    Each feature group is materialised as a temp table first, then one SELECT joins them
    to the population. As a single statement with CTEs the optimiser interleaved the
    groups and it ran ~1.5x slower at a million customers (``make bench``); the events go
    through two stages (:func:`_materialise_events`).
    """
    dates = _check_dates(as_of_dates)
    ws = check_windows(windows)
    with duckdb_connection(settings) as con:
        # the lake's footers parsed once per build: the views read them when created and each scan
        # would read them again (a month of events: ~1,200 row groups, a 0.9 MB footer per file)
        con.execute("SET parquet_metadata_cache = true")
        _prepare(con, settings, dates, ws, part)
        groups, body, params = _feature_query(ws)
        _materialise_events(con, dates, groups, params)
        for name in _FEATURE_GROUPS:
            if name != "f_events":
                sql = groups[name]
                con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS\n{sql}", _bound(sql, params))
        yield con.sql(body, params=_bound(body, params))


# --------------------------------------------------------------------------- public API
def build_features(
    settings: Settings,
    as_of_dates: Sequence[dt.date | str],
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> pd.DataFrame:
    """Feature rows for every population customer at every as_of date.

    Columns: ``customer_id``, ``as_of`` (datetime64), then :func:`~pipeline.features.catalogue.feature_specs`
    ``(windows)`` (:data:`~pipeline.features.catalogue.FEATURES` for the default windows); sorted by as_of, customer_id.
    """
    with feature_relation(settings, as_of_dates, windows) as rel:
        return rel.df()


def write_features(
    settings: Settings,
    as_of_dates: Sequence[dt.date | str],
    out_path: Location,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    part: Part | None = None,
) -> Location:
    """Like :func:`build_features`, but DuckDB writes Parquet directly (atomic rename, or one
    upload to an object store); with ``part``, the rows of that customer bucket only
    (:mod:`pipeline.features.partitions`)."""
    with feature_relation(settings, as_of_dates, windows, part) as rel, atomic_path(out_path) as tmp:
        rel.to_parquet(str(tmp))
    return out_path
