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

Naming convention of the catalogue :data:`FEATURES`:

* ``n_*``: counts (0 when nothing happened, never NULL); ``total_*``: sums;
* ``*_<N>d``: computed over the N-day look-back window ``[as_of - N days, as_of)``;
* ``days_since_*``: recency in whole days; when nothing falls in the look-back the value is
  the sentinel ``min(tenure_days, look-back)`` and ``days_since_*_missing`` is 1;
* ``*_flag`` and ``*_missing``: 0/1 indicators;
* ``trend_*`` and ``*_pct``: ratios (see the descriptions for the zero-denominator rule);
* categorical columns are never NULL either (``'unknown'`` / ``'none'``).

Performance: each lake table is read only from the day partitions the requested windows
need (the file list is built here), the snapshot dates are a small table of
``(as_of, day, age)`` rows that the sources hash-join on their calendar day, and DuckDB runs
with ``settings.n_jobs`` threads and :data:`DUCKDB_MEMORY_LIMIT`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from pipeline.artifacts import as_date, atomic_path
from pipeline.config import SQL_DIR, Settings, load_settings
from pipeline.features.partitions import Part, register_part
from pipeline.ingestion.lake import DayRange, duckdb_connection, register_lake_table
from pipeline.storage import Location

DEFAULT_WINDOWS: tuple[int, ...] = (7, 30, 90)
#: look-back of failed payments and of the last successful payment
PAYMENT_LOOKBACK_DAYS = 180
#: look-back of the plan-change count
PLAN_CHANGE_LOOKBACK_DAYS = 365
#: look-back of the downgrade flag
DOWNGRADE_DAYS = 90
#: the billing change compares the fee at as_of with the fee this many days earlier
BILLING_CHANGE_DAYS = 90
#: look-back of the support-ticket count
TICKET_WINDOW_DAYS = 90
#: the purchase (RFM) windows: order counts and spend from successful payments (sql/features_purchases.sql
#: names its columns after these four; a test keeps them in lockstep)
PURCHASE_WINDOWS: tuple[int, ...] = (30, 90, 180, 365)


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the feature table."""

    name: str
    kind: Literal["numeric", "categorical"]
    #: look-back window such as ``"30d"``; None for a state at as_of
    window: str | None
    description: str
    #: the feature group (:data:`GROUPS`): the model uses a group only when it is enabled
    #: (``feature_groups``) and its source table is declared and holds data (:func:`model_features`)
    group: str = "customer"


#: feature group -> (the lake table it reads, name patterns of its columns); the rest are "customer"
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "customer": ("customers", ()),
    "subscription": ("subscriptions", ("plan", "monthly_fee", "payment_method", "billing_change_pct_*")),
    "events": ("events", ("n_events_*", "n_logins_*", "n_sessions_*", "n_content_*", "total_duration_s_*",
                          "total_content_units_*", "trend_events_*", "no_events_*", "days_since_last_login*")),
    "payments": ("payments", ("days_since_last_success_payment*", "n_failed_payments_*")),
    "plan_changes": ("plan_changes", ("n_plan_changes_*", "downgrade_*")),
    "support": ("support_tickets", ("n_tickets_*", "n_open_tickets")),
    "purchases": ("payments", ("n_purchases_*", "total_spend_*", "avg_order_value_*", "aov_trend_*")),
    "renewal": ("subscriptions", ("days_to_period_end*", "period_days", "auto_renew", "n_periods_*")),
}

#: feature name patterns -> the optional contract columns ("table.column") they are computed from: a
#: feature whose inputs are null in every row of the lake (or absent from the source) is left out
INPUTS: dict[str, tuple[str, ...]] = {
    "age*": ("customers.birth_year",),
    "gender": ("customers.gender",),
    "region": ("customers.region",),
    "acquisition_channel": ("customers.acquisition_channel",),
    "plan": ("subscriptions.plan",),
    "monthly_fee": ("subscriptions.monthly_fee",),
    "billing_change_pct_*": ("subscriptions.monthly_fee",),
    "payment_method": ("subscriptions.payment_method",),
    "downgrade_*": ("subscriptions.monthly_fee", "subscriptions.plan"),
    "total_duration_s_*": ("events.duration_s",),
    "total_content_units_*": ("events.content_units",),
    "total_spend_*": ("payments.amount",),
    "avg_order_value_*": ("payments.amount",),
    "aov_trend_*": ("payments.amount",),
    "days_to_period_end*": ("subscriptions.end_date",),
    "period_days": ("subscriptions.end_date",),
    "auto_renew": ("subscriptions.auto_renew",),
}


def inputs_of(name: str) -> tuple[str, ...]:
    """The optional contract columns feature ``name`` is computed from (:data:`INPUTS`)."""
    import fnmatch

    return next((cols for pattern, cols in INPUTS.items() if fnmatch.fnmatchcase(name, pattern)), ())


def _group_of(name: str) -> str:
    import fnmatch

    for group, (_, patterns) in GROUPS.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return group
    return "customer"


@dataclass(frozen=True)
class _WindowMetric:
    """A behavioural metric computed for every window (see ``sql/features_events.sql``)."""

    prefix: str
    #: column of the per-event sub-query (sql/features_event_partials.sql): a BOOLEAN to count
    #: or a BIGINT to sum (exact integer sums: the result does not depend on how the rows
    #: are grouped, so a date's features are bit-identical alone or in a batch)
    column: str
    aggregate: Literal["count", "sum"]
    description: str
    #: bound parameter the integer sum is divided by (``us_per_s``: microseconds to seconds)
    unit_param: str | None = None


_WINDOW_METRICS: tuple[_WindowMetric, ...] = (
    _WindowMetric("n_events", "is_event", "count", "events of any type"),
    _WindowMetric("n_logins", "is_login", "count", "login events"),
    _WindowMetric("n_sessions", "is_session", "count", "session events"),
    _WindowMetric("n_content", "is_content", "count", "content events"),
    _WindowMetric("total_duration_s", "duration_us", "sum",
                  "sum of duration_s (session time, s; each event to the microsecond)", "us_per_s"),
    _WindowMetric("total_content_units", "content_units", "sum", "sum of content_units consumed", "one"),
)
#: microseconds per second: durations are summed as whole microseconds (see _WindowMetric)
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
_COALESCE_TEMPLATE = "coalesce(e.{name}, 0) AS {name}"
_TREND_TEMPLATE = (
    "trend_ratio(e.{short}, ${short_param}, e.{long}, ${long_param}) AS {name}"
)
_NO_EVENTS_TEMPLATE = "(coalesce(e.{long}, 0) = 0)::TINYINT AS {name}"

#: feature groups (temp tables f_<group> from sql/features_<group>.sql) that sql/features.sql joins
_FEATURE_GROUPS: tuple[str, ...] = (
    "f_subscription",
    "f_events",
    "f_payments",
    "f_plan_changes",
    "f_support",
    "f_purchases",
)


def _fill(template: str, **identifiers: str) -> str:
    """Fill a SQL fragment template; only identifiers (column/parameter names) may go in."""
    for value in identifiers.values():
        if not _IDENTIFIER.match(value):
            raise ValueError(f"not an SQL identifier: {value!r}")
    return template.format(**identifiers)


# --------------------------------------------------------------------------- catalogue
def _check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    ws = tuple(sorted({int(w) for w in windows}))
    if not ws or ws[0] <= 0 or len(ws) != len(tuple(windows)):
        raise ValueError(f"windows must be distinct positive day counts, got {tuple(windows)}")
    return ws


def _check_dates(as_of_dates: Sequence[dt.date | str]) -> list[dt.date]:
    dates = sorted({as_date(d) for d in as_of_dates})
    if not dates:
        raise ValueError("at least one as_of date is required")
    return dates


def _num(name: str, description: str, window: str | None = None) -> FeatureSpec:
    return FeatureSpec(name, "numeric", window, description)


def _cat(name: str, description: str) -> FeatureSpec:
    return FeatureSpec(name, "categorical", None, description)


_HEAD_FEATURES: tuple[FeatureSpec, ...] = (
    _num("age", "age in years at as_of: year(as_of) - birth_year; 0 when birth_year is missing"),
    _num("age_missing", "1 when birth_year is missing"),
    _cat("gender", "gender of the latest customer version before as_of ('unknown' if missing)"),
    _cat("region", "region of the latest customer version before as_of ('unknown' if missing)"),
    _cat("acquisition_channel", "acquisition channel ('unknown' if missing)"),
    _cat("plan", "plan of the latest subscription period started before as_of ('none' if none)"),
    _num("monthly_fee", "monthly fee of that subscription period; 0.0 when none"),
    _cat("payment_method", "payment method of that subscription period ('none' if none)"),
    _num("tenure_days", "whole days from the signup date to as_of (>= 1)"),
)


def _tail_features(longest: int) -> tuple[FeatureSpec, ...]:
    """Recency, transaction and support features (static names; the login look-back varies)."""
    lb = f"{longest}d"
    pay = f"{PAYMENT_LOOKBACK_DAYS}d"
    return (
        _num(
            "days_since_last_login",
            f"days from the last login day to as_of; min(tenure_days, {longest}) "
            "when no login in the look-back",
            lb,
        ),
        _num("days_since_last_login_missing", "1 when no login in the look-back", lb),
        _num(
            "days_since_last_success_payment",
            "days from the last successful payment day to as_of; "
            f"min(tenure_days, {PAYMENT_LOOKBACK_DAYS}) when none in the look-back",
            pay,
        ),
        _num(
            "days_since_last_success_payment_missing",
            "1 when no successful payment in the look-back",
            pay,
        ),
        _num(f"n_failed_payments_{pay}", "failed payments", pay),
        _num(
            f"n_plan_changes_{PLAN_CHANGE_LOOKBACK_DAYS}d",
            "plan changes",
            f"{PLAN_CHANGE_LOOKBACK_DAYS}d",
        ),
        _num(
            f"downgrade_{DOWNGRADE_DAYS}d_flag",
            "1 when a plan change moved to a plan with a lower typical monthly fee (the median fee of its periods "
            "started before as_of)",
            f"{DOWNGRADE_DAYS}d",
        ),
        _num(
            f"billing_change_pct_{BILLING_CHANGE_DAYS}d",
            f"100 * (monthly_fee - fee in force {BILLING_CHANGE_DAYS} days before as_of) / that "
            "fee; 0.0 when no subscription (or a zero fee) then or none now",
            f"{BILLING_CHANGE_DAYS}d",
        ),
        _num(f"n_tickets_{TICKET_WINDOW_DAYS}d", "support tickets opened", f"{TICKET_WINDOW_DAYS}d"),
        _num("n_open_tickets", "tickets opened before as_of and not resolved before as_of"),
        *_purchase_features(),
        *_renewal_features(),
    )


def _purchase_features() -> tuple[FeatureSpec, ...]:
    """Purchase (RFM) features from successful payments: frequency and spend per window, the
    average order value and its trend (recency: ``days_since_last_success_payment``)."""
    longest, recent = f"{PURCHASE_WINDOWS[-1]}d", f"{PURCHASE_WINDOWS[1]}d"
    return (
        *(_num(f"n_purchases_{w}d", "successful payments (purchases)", f"{w}d") for w in PURCHASE_WINDOWS),
        *(_num(f"total_spend_{w}d", "sum of the successful payments' amounts", f"{w}d") for w in PURCHASE_WINDOWS),
        _num(f"avg_order_value_{longest}", f"total_spend_{longest} / n_purchases_{longest}; 0.0 when no purchase",
             longest),
        _num(f"aov_trend_{recent}_vs_{longest}",
             f"average order value over {recent} / over {longest}; 1.0 when no purchase in either",
             f"{recent}/{longest}"),
    )


def _renewal_features() -> tuple[FeatureSpec, ...]:
    """Renewal features of a subscription business whose periods have an end (``end_date``) and
    an auto-renew flag: how soon the paid period ends, how long it is, and the renewals so far."""
    return (
        _num("days_to_period_end", "days from as_of to the paid-through date (the latest end_date of the periods "
                                   "started before as_of; negative when it has passed); 0 when none"),
        _num("days_to_period_end_missing", "1 when no period with an end_date started before as_of"),
        _num("period_days", "length in days of the latest period started before as_of (end_date - start_date); "
                            "0 when none"),
        _num("auto_renew", "1 when the latest period started before as_of renews by itself"),
        _num(f"n_periods_{PLAN_CHANGE_LOOKBACK_DAYS}d", "subscription periods started (sign-up, renewals, changes)",
             f"{PLAN_CHANGE_LOOKBACK_DAYS}d"),
    )


def _window_columns(windows: tuple[int, ...]) -> list[tuple[FeatureSpec, str]]:
    """Behavioural and trend features with their SQL select expressions, in output order."""
    params = {w: f"window_{i}" for i, w in enumerate(windows, start=1)}
    longest = windows[-1]
    out: list[tuple[FeatureSpec, str]] = []
    for metric in _WINDOW_METRICS:
        for w in windows:
            name = f"{metric.prefix}_{w}d"
            spec = _num(name, f"{metric.description} in the window", f"{w}d")
            out.append((spec, _fill(_COALESCE_TEMPLATE, name=name)))
    long_name = f"n_events_{longest}d"
    for w in windows[:-1]:
        name = f"trend_events_{w}d_vs_{longest}d"
        spec = _num(
            name,
            f"daily event rate over {w}d / over {longest}d; 1.0 when no events in {longest}d",
            f"{w}d/{longest}d",
        )
        sql = _fill(
            _TREND_TEMPLATE,
            short=f"n_events_{w}d",
            short_param=params[w],
            long=long_name,
            long_param=params[longest],
            name=name,
        )
        out.append((spec, sql))
    flag = f"no_events_{longest}d_flag"
    out.append(
        (
            _num(flag, "1 when there is no event in the window", f"{longest}d"),
            _fill(_NO_EVENTS_TEMPLATE, long=long_name, name=flag),
        )
    )
    return out


def feature_specs(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[FeatureSpec]:
    """The feature catalogue for the given behavioural windows, in output column order."""
    import dataclasses

    ws = _check_windows(windows)
    specs = [*_HEAD_FEATURES, *(spec for spec, _ in _window_columns(ws)), *_tail_features(ws[-1])]
    return [dataclasses.replace(s, group=_group_of(s.name)) for s in specs]


FEATURES: list[FeatureSpec] = feature_specs()
NUMERIC_FEATURES: list[str] = [f.name for f in FEATURES if f.kind == "numeric"]
CATEGORICAL_FEATURES: list[str] = [f.name for f in FEATURES if f.kind == "categorical"]


def feature_catalogue_markdown(windows: Sequence[int] = DEFAULT_WINDOWS) -> str:
    """The catalogue as a Markdown table (name, group, kind, window, description)."""
    lines = ["| name | group | kind | window | description |", "| --- | --- | --- | --- | --- |"]
    for f in feature_specs(windows):
        lines.append(f"| `{f.name}` | {f.group} | {f.kind} | {f.window or 'at as_of'} | {f.description} |")
    return "\n".join(lines) + "\n"


def active_groups(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The feature groups a model is trained on, and why each other one is left out: a group
    is used when it is enabled (``feature_groups``) and its source table is declared
    (``source_tables``) and holds data in the lake (an empty table would only feed constants)."""
    from pipeline.ingestion.lake import partition_dates

    enabled, declared = settings.feature_group_names, settings.source_table_names
    active, left_out = [], {}
    for group, (table, _) in GROUPS.items():
        if group not in enabled:
            left_out[group] = "not enabled (feature_groups)"
        elif table not in declared:
            left_out[group] = f"its table {table} is not declared (source_tables)"
        elif not partition_dates(settings, table):
            left_out[group] = f"its table {table} holds no data in the lake"
        else:
            active.append(group)
    return active, left_out


def model_features(settings: Settings, groups: Sequence[str],
                   left_out: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The numeric and categorical feature columns of ``groups``, in catalogue order (without the
    features of ``left_out``)."""
    specs = [f for f in FEATURES if f.group in set(groups) and f.name not in (left_out or {})]
    return [f.name for f in specs if f.kind == "numeric"], [f.name for f in specs if f.kind == "categorical"]


def null_columns(settings: Settings, columns: Sequence[str]) -> list[str]:
    """Which of the contract columns ``columns`` ("table.column") hold no value in the lake (the
    source did not return them, or only nulls)."""
    counts = column_null_counts(settings, columns)
    return [c for c in columns if counts[c][1] >= counts[c][0]]


def column_null_counts(settings: Settings, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per contract column ``"table.column"``: the rows its table holds in the lake and how many
    of them hold no value in it (a column missing from the lake's files counts as null in every
    row; a table without files as ``(0, 0)``)."""
    from pipeline.ingestion.lake import duckdb_connection, lake_files

    out: dict[str, tuple[int, int]] = {}
    by_table: dict[str, list[str]] = {}
    for qualified in columns:
        table, _, column = qualified.partition(".")
        by_table.setdefault(table, []).append(column)
    with duckdb_connection(settings) as con:
        for table, cols in by_table.items():
            files = lake_files(settings, table, [(None, dt.date.max)])
            if not files:
                out.update({f"{table}.{c}": (0, 0) for c in cols})
                continue
            rel = con.read_parquet(files, hive_partitioning=False, union_by_name=True)
            have = [c for c in cols if c in rel.columns]
            rel.create_view("columns_checked")
            (row,) = con.execute("SELECT " + ", ".join(["count(*)", *(f'count("{c}")' for c in have)])
                                 + " FROM columns_checked").fetchall()
            rows, valued = int(row[0]), dict(zip(have, row[1:], strict=True))
            out.update({f"{table}.{c}": (rows, rows - int(valued.get(c, 0))) for c in cols})
    return out


#: fairness segments derived from a feature (the rest are the feature of that name)
DERIVED_SEGMENTS = {"age_band": "age"}


def fairness_segments(segments: Sequence[str], features: Sequence[str],
                      why_not: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The ``segments`` a model can be judged by (their column is one of its ``features``), and
    why each other one is skipped (``why_not``: feature -> reason it is not a model feature)."""
    usable, skipped = [], {}
    for segment in segments:
        column = DERIVED_SEGMENTS.get(segment, segment)
        if column in features:
            usable.append(segment)
        else:
            skipped[segment] = why_not.get(column, f"{column} is not a feature column")
    return usable, skipped


@dataclass(frozen=True)
class Available:
    """What a training run can use (:func:`available_features`)."""

    groups: list[str]
    #: group -> why it is left out (not enabled, table not declared or empty, every input null)
    left_out_groups: dict[str, str]
    #: feature of an active group -> why it is left out (its inputs null in every row)
    left_out_features: dict[str, str]
    numeric: list[str]
    categorical: list[str]


def available_features(settings: Settings) -> Available:
    """What a training run can use: the active groups, why each other group (and each feature of
    an active group whose inputs are all null) is left out, and the numeric and categorical
    columns. A group whose every feature is left out is left out itself."""
    groups, left_out = active_groups(settings)
    candidates = [f for f in FEATURES if f.group in set(groups)]
    wanted = sorted({c for f in candidates for c in inputs_of(f.name)})
    empty = set(null_columns(settings, wanted)) if wanted else set()
    dropped = {f.name: f"{', '.join(c for c in inputs_of(f.name) if c in empty)} absent or null in every row"
               for f in candidates if any(c in empty for c in inputs_of(f.name))}
    for group in list(groups):
        names = [f.name for f in candidates if f.group == group]
        if names and all(n in dropped for n in names):
            groups.remove(group)
            left_out[group] = "its columns " + ", ".join(sorted({c for n in names for c in inputs_of(n)})) + \
                " are null in every row (or absent from the source)"
            for n in names:
                dropped.pop(n)
    numeric, categorical = model_features(settings, groups, dropped)
    return Available(groups, left_out, dropped, numeric, categorical)


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
    ``part``, the population is that bucket's customers, and the per-customer event and
    payment rows are read for them only (the tables that feed a statistic over all customers,
    like the plan ranks from the subscriptions, are read whole: a customer's row is the same
    whatever the partitioning)."""
    everything_before: list[DayRange] = [(None, dates[-1])]
    if part is not None:
        register_part(con, part)
    for table in ("customers", "subscriptions", "cancellations", "support_tickets"):
        register_lake_table(con, settings, table, everything_before)
    active = population_active_days(settings) or 0
    register_lake_table(con, settings, "events", _windows_back(dates, max(windows[-1], active)),
                        in_part=part is not None)
    register_lake_table(con, settings, "payments",
                        _windows_back(dates, max(PAYMENT_LOOKBACK_DAYS, PURCHASE_WINDOWS[-1], active)),
                        in_part=part is not None)
    register_lake_table(
        con, settings, "plan_changes", _windows_back(dates, PLAN_CHANGE_LOOKBACK_DAYS)
    )
    register_as_of_dates(con, dates)
    max_lookback = max(windows[-1], PAYMENT_LOOKBACK_DAYS, PLAN_CHANGE_LOOKBACK_DAYS, PURCHASE_WINDOWS[-1])
    con.execute(read_sql("features_asof_days"), {"max_lookback_days": max_lookback})
    # a plan's rank is its typical monthly fee in the periods started before as_of: a business's
    # own plan names need no configured order (a plan seen without a fee has no rank: no downgrade)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE plan_rank AS "
        "SELECT a.as_of, s.plan, median(s.monthly_fee) AS rank FROM subscriptions AS s "
        "JOIN as_of_dates AS a ON s.start_date < a.as_of::TIMESTAMP "
        "WHERE s.plan IS NOT NULL AND s.monthly_fee IS NOT NULL GROUP BY ALL")
    text_ids = con.execute("SELECT typeof(subscription_id) FROM subscriptions LIMIT 1").fetchone()
    con.execute(read_sql("features_macros", latest_key=LATEST_KEY_TEXT if text_ids and text_ids[0] == "VARCHAR"
                         else LATEST_KEY_INTEGER))
    create_population(con, population_active_days(settings), population_due_days(settings))
    if part is not None:
        con.execute("DELETE FROM population WHERE NOT in_part(customer_id)")


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
    for metric in _WINDOW_METRICS:
        for i, w in enumerate(windows, start=1):
            aggregates.append(
                _fill(
                    _AGGREGATE_TEMPLATES[metric.aggregate],
                    param=f"window_{i}",
                    prefix=metric.prefix,
                    name=f"{metric.prefix}_{w}d",
                    **({"unit": metric.unit_param} if metric.unit_param else {}),
                )
            )
    partials = [_fill(_PARTIAL_TEMPLATES[m.aggregate], column=m.column, prefix=m.prefix) for m in _WINDOW_METRICS]
    columns = [sql for _, sql in _window_columns(windows)]
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
    ws = _check_windows(windows)
    with duckdb_connection(settings) as con:
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

    Columns: ``customer_id``, ``as_of`` (datetime64), then :func:`feature_specs` ``(windows)``
    (:data:`FEATURES` for the default windows); sorted by as_of, customer_id.
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


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m pipeline features``."""
    parser.add_argument(
        "--as-of",
        dest="as_of",
        action="append",
        required=True,
        type=dt.date.fromisoformat,
        help="snapshot date YYYY-MM-DD (repeat for several)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output Parquet file")


def main(args: argparse.Namespace) -> int:
    """Compute features for ``args.as_of`` with the configured settings into ``args.out``."""
    path = write_features(load_settings(), args.as_of, args.out)
    print(path)
    return 0
