"""Churn labels for (customer_id, as_of) rows, and the choice of training snapshot dates.

Rows are exactly the feature population at ``as_of`` (``sql/features_population.sql``):
customers known and signed up before ``as_of`` and not cancelled before it, so a customer
already cancelled at ``as_of`` is never a row.

Label windows are half-open, ``[as_of, as_of + N days)``. DESIGN.md writes the cancellation
window as ``(as_of, as_of + horizon]``; the half-open form partitions time without gaps or
overlaps: features see ``[.., as_of)``, the label sees ``[as_of, ..)``, and consecutive
windows tile the time line (a cancellation at exactly ``as_of`` belongs to the label of the
snapshot at ``as_of``; that customer is no longer in the population at any later date).

Kinds:

* ``"cancellation"`` (default): 1 when the customer has a cancellation with
  ``cancelled_at`` in ``[as_of, as_of + horizon_days)``.
* ``"inactivity"``: 1 when the customer has no event and no successful payment in
  ``[as_of, as_of + inactivity_days)``; the window length is ``inactivity_days`` and
  ``horizon_days`` is not used. The population is then also restricted to the customers
  *active in the look-back*: an event or a successful payment in ``[as_of - inactivity_days,
  as_of)`` (``sql/features_population_active.sql``, shared with the features), so a customer
  who had already gone quiet is not a row, neither in training nor when scored.
* ``"non_renewal"`` (a subscription business whose churn is a period not renewed, as in
  "no renewal within 30 days after the membership expires"): the population is restricted to
  the customers *due for renewal*: their paid-through date ``E`` (the latest ``end_date`` of
  the periods started before ``as_of``) falls in ``[as_of, as_of + horizon_days)``
  (``sql/features_population_due.sql``); 1 when no new period starts in ``[as_of, E +
  renewal_grace_days)``. The window is ``horizon_days + renewal_grace_days``.
* ``"provided"``: the business's own labels, the ``labels`` table ``(customer_id, label_date,
  churned)``. Point-in-time rule: a row says whether the customer churned, in the business's
  definition, within ``horizon_days`` of ``label_date``; it is used as the label of the
  snapshot ``as_of = label_date`` (features see only data before it) once ``label_date +
  horizon_days`` has passed (training, the holdout purge and matured-label monitoring all
  treat ``horizon_days`` as its window). Training snapshots are the label dates; the rows are
  the labelled customers of the population (the labelled customers who are not in it -
  signed up after, or cancelled before, the label date - are left out and counted).

A label needs its whole window to be observed: with data known strictly before
``data_end``, a window ``[as_of, as_of + N)`` is complete when ``as_of + N <= data_end``.
:func:`build_labels` raises :class:`IncompleteLabelWindowError` otherwise; it never
returns a label computed on a partial window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.features.build import create_population, read_sql, register_as_of_dates
from pipeline.features.catalogue import DEFAULT_WINDOWS
from pipeline.ingestion.lake import duckdb_connection, register_lake_table

LabelKind = Literal["cancellation", "inactivity", "non_renewal", "provided"]
#: history wanted before a training snapshot: the longest behavioural window
MIN_HISTORY_DAYS = max(DEFAULT_WINDOWS)


class IncompleteLabelWindowError(ValueError):
    """A label window reaches past the end of the known data."""


def definition(kind: str, window_days: int, events: bool = True, grace_days: int = 0) -> str:
    """What a positive label means, in words (model card, e-mail, README); ``events``: whether
    the business has events (without them, inactivity is only the absence of payments)."""
    if kind == "inactivity":
        activity = "no event and no successful payment" if events else "no successful payment"
        return f"{activity} in the {window_days} days from the snapshot (inactivity churn, inactivity_days={window_days})"
    if kind == "non_renewal":
        horizon = window_days - grace_days
        return (f"a subscription period ending in the {horizon} days from the snapshot is not renewed within "
                f"{grace_days} days after it ends (non-renewal churn, horizon_days={horizon}, "
                f"renewal_grace_days={grace_days})")
    if kind == "provided":
        return (f"the business's own label (labels.churned = 1) for the {window_days} days from the snapshot "
                f"(provided labels, horizon_days={window_days})")
    return f"a cancellation in the {window_days} days from the snapshot (cancellation churn, horizon_days={window_days})"


def empty_population(kind: str, horizon_days: int, inactivity_days: int) -> str:
    """Why a snapshot has no row, in words true for ``kind``'s own population rule (each kind
    restricts the customers signed up and not cancelled before ``as_of`` in its own way)."""
    if kind == "non_renewal":
        return (f"no customer's period ended in the label window of them (label_kind non_renewal: customers are due "
                f"when their paid-through date, the latest subscriptions.end_date, falls in [as_of, as_of + "
                f"horizon_days={horizon_days})); check subscriptions.end_date or choose a longer horizon_days")
    if kind == "inactivity":
        return (f"no customer was active in the look-back of them (label_kind inactivity: the rows are the customers "
                f"with an event or a successful payment in [as_of - inactivity_days={inactivity_days}, as_of))")
    if kind == "provided":
        return ("no labelled customer was in the population at them (label_kind provided: the rows are the customers "
                "with a labels row for label_date = as_of who signed up and were not cancelled before it; a customer "
                "signed up on or after the label date, or cancelled before it, is left out); check labels.label_date "
                "and labels.customer_id against customers.signup_date and cancellations")
    return ("no customer was signed up and not cancelled before them (label_kind cancellation: the rows are the "
            "customers with customers.signup_date before as_of and no cancellation before it)")


def label_spec(settings: Settings) -> dict[str, Any]:
    """The label a model is trained on (saved in its params.json as ``label``)."""
    window = settings.label_window_days
    grace = settings.renewal_grace_days if settings.label_kind == "non_renewal" else 0
    meaning = definition(settings.label_kind, window, events="events" in settings.source_table_names, grace_days=grace)
    spec: dict[str, Any] = {"kind": settings.label_kind, "window_days": window, "definition": meaning}
    if settings.label_kind == "non_renewal":
        spec.update(horizon_days=settings.horizon_days, grace_days=grace)
    return spec


def label_window_days(kind: LabelKind, horizon_days: int, inactivity_days: int, grace_days: int = 0) -> int:
    """Length of the label window ``[as_of, as_of + N)`` for a label kind."""
    if kind in ("cancellation", "provided"):
        days = horizon_days
    elif kind == "inactivity":
        days = inactivity_days
    elif kind == "non_renewal":
        days = horizon_days + grace_days
    else:
        raise ValueError(f"unknown label kind {kind!r}; expected one of cancellation, inactivity, non_renewal, "
                         "provided")
    if days <= 0:
        raise ValueError(f"the label window must be at least one day, got {days}")
    return days


def _check_complete(dates: Sequence[dt.date], window_days: int, data_end: dt.date) -> None:
    late = [d for d in dates if d + dt.timedelta(days=window_days) > data_end]
    if late:
        raise IncompleteLabelWindowError(
            f"label window of {window_days} days is incomplete for as_of "
            f"{', '.join(d.isoformat() for d in late)}: it must end on or before the data end "
            f"{data_end.isoformat()} (as_of <= {(data_end - dt.timedelta(days=window_days)).isoformat()})"
        )


def build_labels(
    settings: Settings,
    as_of_dates: Sequence[dt.date | str],
    *,
    horizon_days: int,
    data_end: dt.date | str,
    kind: LabelKind = "cancellation",
    inactivity_days: int = 30,
    grace_days: int = 0,
) -> pd.DataFrame:
    """Labels of the population rows: columns customer_id, as_of, label (int8).

    ``data_end`` is exclusive: the lake holds the data known strictly before it. Sorted by
    as_of, customer_id, like :func:`pipeline.features.build.build_features`.
    """
    dates = sorted({as_date(d) for d in as_of_dates})
    if not dates:
        raise ValueError("at least one as_of date is required")
    window = label_window_days(kind, horizon_days, inactivity_days, grace_days)
    _check_complete(dates, window, as_date(data_end))
    label_end = dates[-1] + dt.timedelta(days=window)
    with duckdb_connection(settings) as con:
        register_lake_table(con, settings, "customers", [(None, dates[-1])])
        register_lake_table(con, settings, "cancellations", [(None, label_end)])
        if kind == "inactivity":  # the look-back of the active-customer filter and the label window
            around = [(d - dt.timedelta(days=window), d + dt.timedelta(days=window)) for d in dates]
            register_lake_table(con, settings, "events", around)
            register_lake_table(con, settings, "payments", around)
        if kind == "non_renewal":  # the periods in force, and the renewals after them
            register_lake_table(con, settings, "subscriptions", [(None, label_end)])
        if kind == "provided":
            register_lake_table(con, settings, "labels", [(d, d + dt.timedelta(days=1)) for d in dates])
        register_as_of_dates(con, dates)
        create_population(con, window if kind == "inactivity" else None,
                          horizon_days if kind == "non_renewal" else None)
        sql = read_sql(f"labels_{kind}")
        params = {"window_days": window} if kind in ("cancellation", "inactivity") else \
            {"grace_days": grace_days} if kind == "non_renewal" else {}
        df = con.execute(sql, params).df()
    df["label"] = df["label"].astype("int8")
    return df


def month_starts(first: dt.date | str, last: dt.date | str) -> list[dt.date]:
    """Every first day of a month ``d`` with ``first <= d <= last``, ascending."""
    lo, hi = as_date(first), as_date(last)
    d = dt.date(lo.year, lo.month, 1)
    if d < lo:
        d = _next_month(d)
    out = []
    while d <= hi:
        out.append(d)
        d = _next_month(d)
    return out



def _next_month(d: dt.date) -> dt.date:
    return dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)


def training_snapshot_dates(
    data_start: dt.date | str, data_end: dt.date | str, n: int, horizon_days: int
) -> list[dt.date]:
    """The latest ``n`` month starts usable as training snapshots, ascending.

    A snapshot ``d`` needs a complete label window (``d + horizon_days <= data_end``) and
    should have at least :data:`MIN_HISTORY_DAYS` of history (``d >= data_start + 90 days``)
    so that the longest feature window is filled. When fewer than ``n`` month starts have
    that much history, the latest ones with less history (but after ``data_start``) fill up.
    Raises ValueError when no month start qualifies at all.
    """
    start, end = as_date(data_start), as_date(data_end)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    candidates = [
        d
        for d in month_starts(start + dt.timedelta(days=1), end)
        if d + dt.timedelta(days=horizon_days) <= end
    ]
    if not candidates:
        raise ValueError(
            f"no month start in ({start}, {end}] leaves a complete {horizon_days}-day label window"
        )
    full_history = [d for d in candidates if d >= start + dt.timedelta(days=MIN_HISTORY_DAYS)]
    short_history = [d for d in candidates if d not in full_history]
    chosen = full_history[-n:]
    missing = n - len(chosen)
    if missing > 0:
        chosen = short_history[-missing:] + chosen
    return chosen


def settings_for_label(settings: Settings, label: dict[str, Any] | None) -> Settings:
    """``settings`` with a model's own label (its params' ``label``: kind and window), whatever
    the configuration says tonight: a night scores the population of the pinned model's label
    (inactivity churn scores only customers active in the look-back). Unchanged for a model
    without one, or with a label churnflow does not compute (a train-table column)."""
    if not isinstance(label, dict) or label.get("kind") not in ("cancellation", "inactivity", "non_renewal",
                                                                 "provided"):
        return settings
    if label["kind"] == "non_renewal":
        return settings.replace(label_kind="non_renewal", horizon_days=int(label["horizon_days"]),
                                renewal_grace_days=int(label["grace_days"]))
    window = {"inactivity_days" if label["kind"] == "inactivity" else "horizon_days": int(label["window_days"])}
    return settings.replace(label_kind=label["kind"], **window)


def matured_night(settings: Settings, day: dt.date | str, label: dict[str, Any] | None = None) -> dt.date:
    """The night whose label window has just closed on ``day``: ``day - N`` for the model's
    label (``label``: its params' ``label``; default the settings' own), ``N`` its window."""
    return as_date(day) - dt.timedelta(days=int((label or label_spec(settings))["window_days"]))


def matured(settings: Settings, scores: pd.DataFrame, scored_on: dt.date, day: dt.date | str,
            label: dict[str, Any] | None = None) -> pd.DataFrame:
    """The scores of night ``scored_on`` joined with their label over ``[scored_on, day)`` for
    the label the model was trained on (``label``: its params' ``label``; default the
    settings' own), from lake data known before ``day``. ``attrs["scored_on"]`` is set."""
    own = settings_for_label(settings, label or label_spec(settings))
    labels = build_labels(own, [scored_on], horizon_days=own.horizon_days, data_end=as_date(day),
                          kind=own.label_kind,  # type: ignore[arg-type]
                          inactivity_days=own.inactivity_days, grace_days=own.renewal_grace_days)
    # the results store keeps ids as text: join on the text, keep the lake's ids
    as_text = lambda s: s.astype(str)
    joined = (scores.assign(_key=as_text(scores["customer_id"])).drop(columns="customer_id")
              .merge(labels[["customer_id", "label"]].assign(_key=lambda f: as_text(f["customer_id"])), on="_key",
                     how="inner").drop(columns="_key"))
    joined.attrs["scored_on"] = scored_on
    return joined
