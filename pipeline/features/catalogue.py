"""The feature catalogue: every column of the feature table, its group, kind, window and meaning.

:func:`feature_specs` lists the columns for a set of behavioural windows (:data:`FEATURES` for the
default ones), each in a feature group (:data:`GROUPS`, the lake table it reads) and computed from
the optional contract columns of :data:`INPUTS`; :mod:`pipeline.features.build` computes them with
DuckDB SQL, each window column with the select expression :func:`window_columns` gives it.

Naming convention of the catalogue :data:`FEATURES`:

* ``n_*``: counts (0 when nothing happened, never NULL); ``total_*``: sums;
* ``*_<N>d``: computed over the N-day look-back window ``[as_of - N days, as_of)``;
* ``days_since_*``: recency in whole days; when nothing falls in the look-back the value is
  the sentinel ``min(tenure_days, look-back)`` and ``days_since_*_missing`` is 1;
* ``*_flag`` and ``*_missing``: 0/1 indicators;
* ``trend_*`` and ``*_pct``: ratios (see the descriptions for the zero-denominator rule);
* categorical columns are never NULL either (``'unknown'`` / ``'none'``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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
#: the purchase (RFM) windows: order counts and spend from successful payments (sql/features_payments.sql
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
    #: (``feature_groups``) and its source table is declared and holds data (:func:`~pipeline.features.selection.model_features`)
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
class WindowMetric:
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


WINDOW_METRICS: tuple[WindowMetric, ...] = (
    WindowMetric("n_events", "is_event", "count", "events of any type"),
    WindowMetric("n_logins", "is_login", "count", "login events"),
    WindowMetric("n_sessions", "is_session", "count", "session events"),
    WindowMetric("n_content", "is_content", "count", "content events"),
    WindowMetric("total_duration_s", "duration_us", "sum",
                  "sum of duration_s (session time, s; each event to the microsecond)", "us_per_s"),
    WindowMetric("total_content_units", "content_units", "sum", "sum of content_units consumed", "one"),
)
_COALESCE_TEMPLATE = "coalesce(e.{name}, 0) AS {name}"
_TREND_TEMPLATE = (
    "trend_ratio(e.{short}, ${short_param}, e.{long}, ${long_param}) AS {name}"
)
_NO_EVENTS_TEMPLATE = "(coalesce(e.{long}, 0) = 0)::TINYINT AS {name}"


def fill(template: str, **identifiers: str) -> str:
    """Fill a SQL fragment template; only identifiers (column/parameter names) may go in."""
    for value in identifiers.values():
        if not _IDENTIFIER.match(value):
            raise ValueError(f"not an SQL identifier: {value!r}")
    return template.format(**identifiers)


def check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    ws = tuple(sorted({int(w) for w in windows}))
    if not ws or ws[0] <= 0 or len(ws) != len(tuple(windows)):
        raise ValueError(f"windows must be distinct positive day counts, got {tuple(windows)}")
    return ws


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


def window_columns(windows: tuple[int, ...]) -> list[tuple[FeatureSpec, str]]:
    """Behavioural and trend features with their SQL select expressions, in output order."""
    params = {w: f"window_{i}" for i, w in enumerate(windows, start=1)}
    longest = windows[-1]
    out: list[tuple[FeatureSpec, str]] = []
    for metric in WINDOW_METRICS:
        for w in windows:
            name = f"{metric.prefix}_{w}d"
            spec = _num(name, f"{metric.description} in the window", f"{w}d")
            out.append((spec, fill(_COALESCE_TEMPLATE, name=name)))
    long_name = f"n_events_{longest}d"
    for w in windows[:-1]:
        name = f"trend_events_{w}d_vs_{longest}d"
        spec = _num(
            name,
            f"daily event rate over {w}d / over {longest}d; 1.0 when no events in {longest}d",
            f"{w}d/{longest}d",
        )
        sql = fill(
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
            fill(_NO_EVENTS_TEMPLATE, long=long_name, name=flag),
        )
    )
    return out


def feature_specs(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[FeatureSpec]:
    """The feature catalogue for the given behavioural windows, in output column order."""
    import dataclasses

    ws = check_windows(windows)
    specs = [*_HEAD_FEATURES, *(spec for spec, _ in window_columns(ws)), *_tail_features(ws[-1])]
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



# --------------------------------------------------------------- the words a person reads
#: each feature as a retention agent or analyst reads it (the reasons of a score, the campaign file):
#: name pattern -> label, ``{w}`` and ``{v}`` standing for a window's days
_LABELS: tuple[tuple[str, str], ...] = (
    ("age", "age"),
    ("age_missing", "age unknown"),
    ("gender", "gender"),
    ("region", "region"),
    ("acquisition_channel", "acquisition channel"),
    ("plan", "plan"),
    ("monthly_fee", "monthly fee"),
    ("payment_method", "payment method"),
    ("tenure_days", "days as a customer"),
    ("n_events_{w}d", "activity (events) in the last {w} days"),
    ("n_logins_{w}d", "logins in the last {w} days"),
    ("n_sessions_{w}d", "sessions in the last {w} days"),
    ("n_content_{w}d", "content views in the last {w} days"),
    ("total_duration_s_{w}d", "time in sessions in the last {w} days"),
    ("total_content_units_{w}d", "content consumed in the last {w} days"),
    ("trend_events_{w}d_vs_{v}d", "daily activity, last {w} days vs last {v} days (ratio)"),
    ("no_events_{w}d_flag", "no activity in the last {w} days"),
    ("days_since_last_login", "days since the last login"),
    ("days_since_last_login_missing", "no login in the look-back"),
    ("days_since_last_success_payment", "days since the last successful payment"),
    ("days_since_last_success_payment_missing", "no successful payment in the look-back"),
    ("n_failed_payments_{w}d", "failed payments in the last {w} days"),
    ("n_plan_changes_{w}d", "plan changes in the last {w} days"),
    ("downgrade_{w}d_flag", "downgraded in the last {w} days"),
    ("billing_change_pct_{w}d", "price change over the last {w} days"),
    ("n_tickets_{w}d", "support tickets in the last {w} days"),
    ("n_open_tickets", "open support tickets"),
    ("n_purchases_{w}d", "purchases in the last {w} days"),
    ("total_spend_{w}d", "spend in the last {w} days"),
    ("avg_order_value_{w}d", "average order value over the last {w} days"),
    ("aov_trend_{w}d_vs_{v}d", "average order value, last {w} days vs last {v} days (ratio)"),
    ("days_to_period_end", "days until the paid period ends"),
    ("days_to_period_end_missing", "no end of the paid period known"),
    ("period_days", "length of the paid period (days)"),
    ("auto_renew", "renews automatically"),
    ("n_periods_{w}d", "subscription periods started in the last {w} days"),
)
_LABEL_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(re.escape(pattern).replace(r"\{w\}", r"(?P<w>\d+)").replace(r"\{v\}", r"(?P<v>\d+)")), text)
    for pattern, text in _LABELS)
#: how a feature's value reads (:func:`value_unit`): name pattern -> unit
_UNITS: dict[str, str] = {"total_duration_s_*": "seconds", "billing_change_pct_*": "percent"}


def human_label(name: str) -> str:
    """Feature ``name`` in words (``total_duration_s_7d`` -> "time in sessions in the last 7 days");
    a column the catalogue does not know (a train-table model's) has its underscores as spaces
    and its ``_<N>d`` windows as "in N days"."""
    for pattern, text in _LABEL_RULES:
        found = pattern.fullmatch(name)
        if found:
            return text.format(**found.groupdict())
    text = re.sub(r"^n_", "", name)
    text = re.sub(r"_flag$", "", text)
    text = re.sub(r"_(\d+)d_vs_(\d+)d$", r" (\1 vs \2 days)", text)
    text = re.sub(r"_(\d+)d\b", r" in \1 days", text)
    return text.replace("_", " ")


def value_unit(name: str) -> str:
    """How a value of feature ``name`` reads: "seconds" (shown as minutes or hours), "percent", or ""."""
    import fnmatch

    return next((unit for pattern, unit in _UNITS.items() if fnmatch.fnmatchcase(name, pattern)), "")
