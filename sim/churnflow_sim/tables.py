"""The generated business's tables (:mod:`churnflow_sim.generate`): what happens each month
(cancellations, plan changes, payments, support tickets, the truth) and each day (events), sampled
from :mod:`churnflow_sim.behaviour`'s customers, and every table in the contract's form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from churnflow_sim.behaviour import (
    Customers,
    History,
    Observed,
    concept_shift,
    daily_hazard,
    observe,
    update_satisfaction,
)
from churnflow_sim.common import (
    CANCEL_REASONS,
    PAYMENT_METHODS,
    PLANS,
    TICKET_CATEGORIES,
    US_PER_DAY,
    US_PER_HOUR,
    WINDOW_DAYS,
    Calendar,
    Columns,
)
from churnflow_sim.constants import (
    CANCEL_TICKET_SLOPE,
    CATEGORIES,
    CONCEPT_HAZARD_FACTOR,
    CONTENT_UNITS_EXTRA,
    DOWNGRADE_P,
    DOWNGRADE_SLOPE,
    DURATION_LOG_SD,
    DURATION_MEDIAN_S,
    DURATION_SLOPE,
    ENGAGEMENT_SLOPE,
    EVENT_TYPE_P,
    EVENTS_PER_DAY,
    FAIL_SLOPE,
    MAX_FAIL_P,
    MAX_TICKETS_PER_MONTH,
    METHOD_FAIL_P,
    NEVER,
    NOT_GENERATED,
    PAYMENT_DELAY_MAX_US,
    REFUND_P,
    S_MEAN,
    TICKET_CATEGORY_W,
    TICKET_FAILED_BOOST,
    TICKET_RESOLVE_LOG_SD,
    TICKET_RESOLVE_MEDIAN_H,
    TICKET_SLOPE,
    TICKETS_PER_MONTH,
    UPGRADE_P,
    UPGRADE_SLOPE,
    WEEKDAY_FACTOR,
    code,
    probs,
)
from pipeline.ingestion.contract import EVENT_TYPES, PAYMENT_STATUSES, SOURCE_TABLES, SourceTable


class Rows:
    """Column batches per table, concatenated at the end."""

    def __init__(self) -> None:
        self._batches: dict[str, list[Columns]] = {}

    def add(self, table: str, **columns: np.ndarray) -> None:
        self._batches.setdefault(table, []).append(columns)

    def columns(self, table: str) -> Columns:
        batches = self._batches[table]
        return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


@dataclass(frozen=True)
class MonthState:
    """What the day-by-day event generation needs from one simulated month."""

    rate: np.ndarray  # expected events per day (float32)
    duration_factor: np.ndarray  # multiplier of session/content durations (float32)


def _record_truth(rows: Rows, cust: Customers, cal: Calendar, m: int, hazard: np.ndarray) -> None:
    """Exact probability of cancelling within 30 days for customers active at month start ``m``."""
    ms_us = cal.month_us(m)
    active = np.flatnonzero((cust.signup_us < ms_us) & (cust.cancel_us >= ms_us))
    spill = cal.spill(m)
    log_survive = spill * np.log1p(-cust.hazard_last[active]) + (WINDOW_DAYS - spill) * np.log1p(-hazard[active])
    rows.add(
        "truth",
        customer_id=active + 1,
        month_start=np.full(len(active), ms_us),
        p_cancel_30d=-np.expm1(log_survive),
    )


def _cancel_reasons(
    rng: np.random.Generator, cust: Customers, obs: Observed, idx: np.ndarray, ms_us: int
) -> np.ndarray:
    weights = np.zeros((len(idx), len(CANCEL_REASONS)))
    weights[:, code(CANCEL_REASONS, "price")] = 0.6 + 3.0 * (cust.raised_us[idx] <= ms_us)
    weights[:, code(CANCEL_REASONS, "not_using")] = 0.8 + 1.5 * np.maximum(S_MEAN - cust.s[idx], 0.0)
    weights[:, code(CANCEL_REASONS, "technical")] = 0.4 + 1.5 * (obs.tickets[idx] > 0)
    weights[:, code(CANCEL_REASONS, "competitor")] = 0.8
    weights[:, code(CANCEL_REASONS, "other")] = 0.5
    return _choice_rows(rng, weights)


def _choice_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category per row, drawn with probabilities proportional to that row's weights."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), weights.shape[1] - 1)


def _cancellations(
    rng: np.random.Generator, rows: Rows, cust: Customers, cal: Calendar, m: int, obs: Observed, hazard: np.ndarray
) -> None:
    """Sample cancellations on the days governed by month ``m``'s hazard (from the day after sign-up)."""
    first, end = cal.hazard_days(m)
    signup_day = (cust.signup_us - cal.start_us) // US_PER_DAY
    day = np.maximum(first, signup_day + 1) + rng.geometric(hazard) - 1
    tod = rng.integers(0, US_PER_DAY, cust.n)
    idx = np.flatnonzero((cust.cancel_us == NEVER) & (day < end))
    cancel_us = cal.start_us + day[idx] * US_PER_DAY + tod[idx]
    cust.cancel_us[idx] = cancel_us
    reason = _cancel_reasons(rng, cust, obs, idx, cal.month_us(m))
    rows.add("cancellations", customer_id=idx + 1, cancelled_at=cancel_us, reason=reason)


def _plan_changes(
    rng: np.random.Generator, rows: Rows, cust: Customers, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most one up- or downgrade per customer in ``[lo, hi)``; returns (when, new plan, downgraded)."""
    n = cust.n
    ds = cust.s - S_MEAN
    p_down = np.where(cust.plan > 0, DOWNGRADE_P * np.exp(DOWNGRADE_SLOPE * ds), 0.0)
    p_up = np.where(cust.plan < len(PLANS) - 1, UPGRADE_P * np.exp(UPGRADE_SLOPE * ds), 0.0)
    u = rng.random(n)
    at = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    present = lo < hi
    down = present & (u < p_down)
    up = present & ~down & (u < p_down + p_up)
    new_plan = cust.plan + up - down
    idx = np.flatnonzero(up | down)
    rows.add(
        "plan_changes",
        customer_id=idx + 1,
        changed_at=at[idx],
        old_plan=cust.plan[idx],
        new_plan=new_plan[idx],
    )
    add_subscriptions(rows, cust, idx, new_plan[idx], at[idx])
    return np.where(up | down, at, NEVER), new_plan, down


def add_subscriptions(rows: Rows, cust: Customers, idx: np.ndarray, plan: np.ndarray, at_us: np.ndarray) -> None:
    rows.add(
        "subscriptions",
        customer_id=idx + 1,
        plan=plan,
        monthly_fee=cust.fee(plan, at_us, idx),
        payment_method=cust.method[idx],
        start_date=at_us,
    )


def _payments(
    rng: np.random.Generator,
    rows: Rows,
    cust: Customers,
    cal: Calendar,
    m: int,
    changed_us: np.ndarray,
    new_plan: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Month ``m``'s billing: one payment per subscribed customer; returns (who failed to pay, when).

    The first billing at the raised price also appends a subscription row (price change).
    """
    n = cust.n
    billing_us = cal.billing_us(m, cust.dom, cust.tod_us)
    paid_us = billing_us + rng.integers(0, PAYMENT_DELAY_MAX_US, n)
    base_fail = np.array([METHOD_FAIL_P[x] for x in PAYMENT_METHODS])[cust.method]
    p_fail = np.minimum(base_fail * np.exp(FAIL_SLOPE * (cust.s - S_MEAN)), MAX_FAIL_P)
    u = rng.random(n)
    status = np.where(
        u < p_fail,
        code(PAYMENT_STATUSES, "failed"),
        np.where(u < p_fail + REFUND_P, code(PAYMENT_STATUSES, "refunded"), code(PAYMENT_STATUSES, "success")),
    )
    bills = (billing_us >= cust.signup_us) & (paid_us < cust.cancel_us)
    idx = np.flatnonzero(bills)
    plan_paid = np.where(changed_us[idx] <= paid_us[idx], new_plan[idx], cust.plan[idx])
    rows.add(
        "payments",
        customer_id=idx + 1,
        paid_at=paid_us[idx],
        amount=cust.fee(plan_paid, paid_us[idx], idx),
        status=status[idx],
    )
    rise = np.flatnonzero(bills & (cust.raised_us == billing_us) & (cust.raised_us > cust.signup_us))
    plan_billed = np.where(changed_us[rise] <= billing_us[rise], new_plan[rise], cust.plan[rise])
    add_subscriptions(rows, cust, rise, plan_billed, billing_us[rise])
    return bills & (status == code(PAYMENT_STATUSES, "failed")), paid_us


def _tickets(
    rng: np.random.Generator,
    rows: Rows,
    cust: Customers,
    cal: Calendar,
    m: int,
    lo: np.ndarray,
    hi: np.ndarray,
    failed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Tickets opened in ``[lo, hi)`` of month ``m``; returns (customer index, opened) per ticket."""
    span = np.maximum(hi - lo, 0)
    exposure = span / (cal.month_len(m) * US_PER_DAY)
    rate = TICKETS_PER_MONTH * np.exp(TICKET_SLOPE * (cust.s - S_MEAN)) * (1 + TICKET_FAILED_BOOST * failed)
    count = rng.poisson(np.minimum(rate, MAX_TICKETS_PER_MONTH) * exposure)
    owner = np.repeat(np.arange(cust.n), count)
    opened = lo[owner] + (rng.random(len(owner)) * span[owner]).astype(np.int64)
    weights = np.tile(probs(TICKET_CATEGORY_W, TICKET_CATEGORIES), (len(owner), 1))
    weights[:, code(TICKET_CATEGORIES, "billing")] += failed[owner]
    weights[:, code(TICKET_CATEGORIES, "cancellation")] *= np.exp(CANCEL_TICKET_SLOPE * (cust.s[owner] - S_MEAN))
    category = _choice_rows(rng, weights)
    hours = rng.lognormal(np.log(TICKET_RESOLVE_MEDIAN_H), TICKET_RESOLVE_LOG_SD, len(owner))
    resolved = opened + (hours * US_PER_HOUR).astype(np.int64)
    rows.add(
        "support_tickets",
        customer_id=owner + 1,
        opened_at=opened,
        category=category,
        resolved_at=np.where(resolved < cal.end_us, resolved, NEVER),
    )
    return owner, opened


def simulate_month(
    rng: np.random.Generator, rows: Rows, cust: Customers, cal: Calendar, m: int, history: History,
    concept_us: int = NEVER, concept_factor: float = CONCEPT_HAZARD_FACTOR,
) -> MonthState:
    """Advance the hidden state to month ``m``, sample what happens in it and record the truth.

    The hazard comes from ``history`` (everything observed before the month start); the
    month's payments, tickets and plan changes are added to it (its events by the caller).
    From ``concept_us`` (a month start) on, the hazard is :func:`~churnflow_sim.behaviour.concept_shift`'s.
    """
    ms_us, me_us = cal.month_us(m), cal.month_us(m + 1)
    update_satisfaction(rng, cust, ms_us)
    obs = observe(cust, cal, history, m)
    hazard = daily_hazard(obs)
    if ms_us >= concept_us:
        hazard = concept_shift(hazard, cust.plan, concept_factor)
    _record_truth(rows, cust, cal, m, hazard)
    _cancellations(rng, rows, cust, cal, m, obs, hazard)
    lo = np.maximum(ms_us, cust.signup_us + 1)
    hi = np.minimum(me_us, cust.cancel_us)
    changed_us, new_plan, down = _plan_changes(rng, rows, cust, lo, hi)
    failed, paid_us = _payments(rng, rows, cust, cal, m, changed_us, new_plan)
    ticket_owner, opened_us = _tickets(rng, rows, cust, cal, m, lo, hi, failed)
    history.log("failed_payment", np.flatnonzero(failed), paid_us[failed])
    history.log("ticket", ticket_owner, opened_us)
    history.log("downgrade", np.flatnonzero(down), changed_us[down])
    cust.plan, cust.hazard_last = new_plan, hazard
    ds = cust.s - S_MEAN
    return MonthState(
        rate=(EVENTS_PER_DAY * cust.activity * np.exp(ENGAGEMENT_SLOPE * ds)).astype(np.float32),
        duration_factor=np.exp(DURATION_SLOPE * ds).astype(np.float32),
    )


# --- tables ------------------------------------------------------------------------------------


def generated_fields(source: SourceTable) -> list[pa.Field]:
    """The columns of ``source`` this generator writes."""
    return [f for f in source.schema if f.name not in NOT_GENERATED]


def _customer_columns(cust: Customers) -> Columns:
    return {
        "customer_id": np.arange(1, cust.n + 1),
        "signup_date": cust.signup_us,
        "birth_year": cust.birth_year,
        "gender": cust.gender,
        "region": cust.region,
        "acquisition_channel": cust.channel,
        "updated_at": cust.signup_us,
    }


def _contract_values(field: pa.Field, values: np.ndarray) -> np.ndarray:
    """Internal codes -> the contract's values and dtypes (timestamps as datetime64[us], NULL = NaT)."""
    if pa.types.is_timestamp(field.type):
        return np.where(values == NEVER, np.iinfo(np.int64).min, values).astype("datetime64[us]")
    if field.name in CATEGORIES:
        return np.asarray(CATEGORIES[field.name], dtype=object)[values]
    return values.astype(field.type.to_pandas_dtype())


def table_columns(name: str, rows: Rows, cust: Customers) -> Columns:
    """A source table's columns in contract form (see :func:`_source_table`)."""
    columns = _customer_columns(cust) if name == "customers" else rows.columns(name)
    return _source_table(SOURCE_TABLES[name], columns)


def _source_table(source: SourceTable, columns: Columns) -> Columns:
    """Rows ordered by time column and customer, surrogate ids numbered from 1, contract dtypes."""
    order = np.lexsort((columns["customer_id"], columns[source.time_column]))
    ordered = {name: values[order] for name, values in columns.items()}
    ordered.setdefault(source.key[0], np.arange(1, len(order) + 1))
    return {f.name: _contract_values(f, ordered[f.name]) for f in generated_fields(source)}


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lifetimes:
    """Per customer: the first day and instant of day with events, and the last ones."""

    first_day: np.ndarray
    first_tod: np.ndarray
    last_day: np.ndarray
    last_tod: np.ndarray

    @classmethod
    def of(cls, cust: Customers, cal: Calendar) -> Lifetimes:
        cancelled = cust.cancel_us != NEVER
        since_start = np.where(cancelled, cust.cancel_us - cal.start_us, cal.n_days * US_PER_DAY)
        return cls(
            first_day=(cust.signup_us - cal.start_us) // US_PER_DAY,
            first_tod=cust.tod_us,
            last_day=since_start // US_PER_DAY,
            last_tod=np.where(cancelled, since_start % US_PER_DAY, US_PER_DAY),
        )


def day_events(rng: np.random.Generator, cal: Calendar, life: Lifetimes, state: MonthState, day: int) -> pd.DataFrame:
    """One day of events: Poisson counts per active customer, spread over their part of the day."""
    active = np.flatnonzero((life.first_day <= day) & (life.last_day >= day))
    lo = np.where(life.first_day[active] == day, life.first_tod[active], 0)
    hi = np.where(life.last_day[active] == day, life.last_tod[active], US_PER_DAY)
    weekday = (cal.start.weekday() + day) % 7
    count = rng.poisson(state.rate[active] * WEEKDAY_FACTOR[weekday] * ((hi - lo) / US_PER_DAY))
    k = np.repeat(np.arange(len(active)), count)
    n, who = len(k), active[k]
    event_us = cal.day_us(day) + lo[k] + (rng.random(n) * (hi - lo)[k]).astype(np.int64)
    cdf = np.cumsum(probs(EVENT_TYPE_P, EVENT_TYPES))
    kind = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(EVENT_TYPES) - 1)
    median = np.array([DURATION_MEDIAN_S.get(t, 0.0) for t in EVENT_TYPES])
    duration = median[kind] * state.duration_factor[who] * rng.lognormal(0.0, DURATION_LOG_SD, n)
    duration = np.where(median[kind] > 0, np.maximum(np.round(duration, 1), 0.1), 0.0)
    content = kind == code(EVENT_TYPES, "content")
    units = np.where(content, 1 + rng.poisson(CONTENT_UNITS_EXTRA, n), 0).astype(np.int32)
    return pd.DataFrame(
        {
            "customer_id": who + 1,
            "event_ts": event_us.astype("datetime64[us]"),
            "event_type": pd.Categorical.from_codes(kind, EVENT_TYPES),
            "duration_s": duration,
            "content_units": units,
        }
    )


