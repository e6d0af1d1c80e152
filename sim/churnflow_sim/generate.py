"""Synthetic subscription-service data: the customer database, daily event files and the truth.

Everything is vectorized over customers with numpy; the only Python loops run over
months and days. Internally timestamps are int64 microseconds since the Unix epoch
(``*_us``) and days are indexes relative to ``start`` (``*_day``).

Hidden mechanism
----------------
Every customer has a latent *satisfaction* ``s`` and *trend* ``v``. At each month start
the trend decays and picks up noise, and some customers take a negative shock that keeps
pulling satisfaction down for a few months (momentum)::

    v <- 0.5 v + N(E[shock], 0.15) - shock,    shock ~ Bernoulli(6%) x Gamma(4, mean 0.9)
    s <- clip(s + v + 0.2 (0.4 - s), 0.4 - 4, 0.4 + 4)

Satisfaction drives what can be observed: event rates (``exp(0.9 (s - 0.4))`` times a
personal activity level), session/content durations, payment failures, support tickets
(more of them, and more "cancellation" ones, when dissatisfied) and downgrades.

The churn hazard is a *daily* probability ``h`` fixed at a month start from what the
business has observed before that instant, and from nothing else (:func:`daily_hazard` of
an :class:`Observed`): the usage rate of the last 30 days and its drop against the last 90
days, failed payments (180 days), support tickets (90 days), a downgrade (90 days), short
tenure, the price paid against the plan's list price, the acquisition channel and age.
Dissatisfaction reaches churn only through behaviour the company can see, so the truth is
the best score achievable from the observable history, not just an upper bound: that is
what the model-quality bars compare a trained model with. (When the hazard read the latent
state directly, the best feature-based model stayed ~0.06 ROC-AUC below the truth, and the
latent state as an extra feature closed the gap to 0.002: the gap measured what no model
can see, not how well training works.)

Month ``m``'s hazard governs the days ``[max(ms_m, ms_{m-1} + 30), max(ms_{m+1}, ms_m + 30))``
(``ms`` are the month starts): the 30-day window after a month start is covered by at
most two hazards, both known at that month start (a February hazard runs two days into
March). The truth ``p_cancel_30d`` of a customer active at month start ``m`` is thus exact::

    p = 1 - (1 - h_{m-1})^spill_m * (1 - h_m)^(30 - spill_m)

where ``spill_m`` is the number of window days still governed by month ``m - 1``.
Cancellations are sampled with the same daily hazards (a geometric waiting time per
month, which equals one Bernoulli(h) draw per day). Each month's events are generated
right after the month is simulated (its cancellations are known by then), so the next
month start can count them.

Drift (``drift_from``): existing customers pay 20% more from their first billing on or
after that date (a new subscription row at that billing), new customers pay the new
prices from sign-up, and a ``tiktok`` channel (much younger, churns more) takes a quarter
of the sign-ups from that date.

Concept drift (``concept_drift_from``, a month start): a competitor's offer aimed at the basic
plan: from that month start on, the daily hazard of every customer on the basic plan is
multiplied by ``concept_drift_factor`` (default ``CONCEPT_HAZARD_FACTOR``, 3). Nothing observable
moves (the same behaviour, prices and plans); only P(churn | features) changes. The truth says so: ``p_cancel_30d`` follows the
new hazards, and ``concept_drift.json`` beside it records the date, the segment and the factor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from churnflow_sim.common import (
    CANCEL_REASONS,
    CHANNELS,
    GENDERS,
    PAYMENT_METHODS,
    PLAN_FEES,
    PLANS,
    REGIONS,
    TICKET_CATEGORIES,
    US_PER_DAY,
    US_PER_HOUR,
    US_PER_S,
    WINDOW_DAYS,
    Calendar,
    Columns,
    Progress,
    insert,
)
from churnflow_sim.simulator import pending_db_url
from pipeline.artifacts import write_parquet, write_text
from pipeline.config import Settings
from pipeline.ingestion.contract import (
    EVENT_TYPES,
    EVENTS_SCHEMA,
    PAYMENT_STATUSES,
    SOURCE_TABLES,
    TS,
    SourceTable,
)
from pipeline.ingestion.source import engine_for

TRUTH_FILE = "churn_probability.parquet"
#: what the concept drift changed (written beside the truth when there is one)
CONCEPT_TRUTH_FILE = "concept_drift.json"
TRUTH_SCHEMA = pa.schema(
    [("customer_id", pa.int64()), ("month_start", TS), ("p_cancel_30d", pa.float64())]
)
EVENTS_FILE = "events.parquet"

NEVER = np.iinfo(np.int64).max  # "no such instant" (not cancelled, not resolved, ...)

# --- population ------------------------------------------------------------------------
BASE_SHARE = 0.6  # share of customers already subscribed at ``start``
BASE_MAX_TENURE_DAYS = 3 * 365
BASE_TENURE_SCALE_DAYS = 540.0  # recent sign-ups are more common among survivors
PAYMENT_DELAY_MAX_US = 300 * US_PER_S  # a payment lands up to 5 min after billing
SIGNUP_TOD_MAX_US = US_PER_DAY - PAYMENT_DELAY_MAX_US  # keeps payments on the billing day
GENDER_P = {"F": 0.49, "M": 0.48, "X": 0.03}
REGION_P = {"north": 0.20, "south": 0.22, "east": 0.18, "west": 0.20, "central": 0.20}
CHANNEL_P = {"organic": 0.35, "paid_search": 0.22, "social": 0.15, "referral": 0.14, "partner": 0.14}
PLAN_P = {"basic": 0.45, "standard": 0.38, "premium": 0.17}
METHOD_P = {"card": 0.62, "paypal": 0.25, "bank_transfer": 0.13}
AGE_MEAN, AGE_SD = 38.0, 12.0
TIKTOK_AGE_MEAN, TIKTOK_AGE_SD = 25.0, 5.0
AGE_MIN, AGE_MAX = 18, 80
TIKTOK_SHARE = 0.25  # of the sign-ups from the drift date
PRICE_RISE = 1.2
ACTIVITY_LOG_SD = 0.5  # personal activity level: log-normal with mean 1
#: concept drift: a competitor's offer for the basic plan multiplies its customers' hazard
CONCEPT_SEGMENT_PLAN, CONCEPT_HAZARD_FACTOR = "basic", 3.0

# --- satisfaction ------------------------------------------------------------------------
S_MEAN, S_SD = 0.4, 1.0
S_TENURE_BONUS = 0.3  # long-standing customers are the satisfied survivors
S_REVERSION = 0.2
V_MOMENTUM, V_NOISE_SD = 0.5, 0.15  # the noise has mean E[shock]: no drift overall
SHOCK_P, SHOCK_MEAN, SHOCK_SHAPE = 0.06, 0.9, 4.0  # shock ~ Gamma(4, mean 0.9)
S_RANGE = 4.0  # satisfaction stays within S_MEAN +- 4

# --- churn hazard: log of the daily cancellation probability, from observable history ---------
LOG_BASE_HAZARD = -7.1
MAX_DAILY_HAZARD = 0.05
USAGE_WINDOWS = (30, 90)  # days: the recent usage rate and the baseline it is compared with
RATE_PRIOR_DAYS = 7.0  # a usage rate over few days is shrunk towards EVENTS_PER_DAY
W_USAGE = -1.0  # x log(30-day usage rate / EVENTS_PER_DAY)
W_USAGE_DROP = -2.5  # x log(30-day rate / 90-day rate): customers disengage before they leave
FAILED_PAYMENT_DAYS, W_FAILED_PAYMENT = 180, 0.7  # per failed payment (at most 3 count)
TICKET_DAYS, W_TICKET = 90, 0.4  # per ticket (at most 3 count)
DOWNGRADE_DAYS, W_DOWNGRADE = 90, 0.6  # a downgrade in the window
W_NEW_CUSTOMER, NEW_CUSTOMER_DAYS = 0.8, 90.0  # x exp(-tenure / 90 days)
W_PRICE = 2.0  # x log(fee / list fee of the plan)
W_YOUTH, YOUTH_PIVOT, YOUTH_CLIP = 0.02, 35, (-15, 20)  # x clip(35 - age)
CHANNEL_EFFECT = {
    "organic": -0.2,
    "paid_search": 0.2,
    "social": 0.35,
    "referral": -0.3,
    "partner": 0.0,
    "tiktok": 0.7,
}

# --- observable behaviour ------------------------------------------------------------------
METHOD_FAIL_P = {"card": 0.03, "paypal": 0.02, "bank_transfer": 0.07}
FAIL_SLOPE, MAX_FAIL_P = -0.5, 0.5
REFUND_P = 0.004
UPGRADE_P, UPGRADE_SLOPE = 0.012, 0.5
DOWNGRADE_P, DOWNGRADE_SLOPE = 0.010, -0.6
TICKETS_PER_MONTH, TICKET_SLOPE, TICKET_FAILED_BOOST = 0.06, -0.6, 2.0
MAX_TICKETS_PER_MONTH = 2.0
CANCEL_TICKET_SLOPE = -0.8  # dissatisfied customers open more "cancellation" tickets
TICKET_CATEGORY_W = {"billing": 0.25, "technical": 0.3, "content": 0.2, "account": 0.15, "cancellation": 0.1}
TICKET_RESOLVE_MEDIAN_H, TICKET_RESOLVE_LOG_SD = 16.0, 1.0
EVENTS_PER_DAY = 0.4  # average customer at mean satisfaction (population mean ~0.55)
ENGAGEMENT_SLOPE = 0.9
DURATION_SLOPE = 0.15
WEEKDAY_FACTOR = np.array([0.93, 0.93, 0.93, 0.95, 1.0, 1.13, 1.13])  # Monday .. Sunday
EVENT_TYPE_P = {"login": 0.5, "session": 0.32, "content": 0.18}
DURATION_MEDIAN_S = {"session": 420.0, "content": 1500.0}
DURATION_LOG_SD = 0.8
CONTENT_UNITS_EXTRA = 1.2  # a content event has 1 + Poisson(1.2) units

CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "region": REGIONS,
    "acquisition_channel": CHANNELS,
    "plan": PLANS,
    "old_plan": PLANS,
    "new_plan": PLANS,
    "payment_method": PAYMENT_METHODS,
    "status": PAYMENT_STATUSES,
    "category": TICKET_CATEGORIES,
    "reason": CANCEL_REASONS,
}
#: fee per (price raised?, plan code)
PRICES = np.round(np.array([[PLAN_FEES[p] for p in PLANS]]) * np.array([[1.0], [PRICE_RISE]]), 2)
NULLABLE = {("support_tickets", "resolved_at")}
#: the contract's tables this generator writes (labels: only a business that supplies its own)
TABLES = tuple(n for n in SOURCE_TABLES if n != "labels")
#: optional contract columns the generated subscription business does not have
NOT_GENERATED = frozenset({"end_date", "auto_renew"})


def generated_fields(source: SourceTable) -> list[pa.Field]:
    """The columns of ``source`` this generator writes."""
    return [f for f in source.schema if f.name not in NOT_GENERATED]


def _probs(weights: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """Probabilities over ``names`` (in contract order) from a name -> weight mapping."""
    p = np.array([weights.get(name, 0.0) for name in names], dtype=float)
    return p / p.sum()


def _code(names: tuple[str, ...], name: str) -> int:
    return names.index(name)


@dataclass
class Customers:
    """Attributes and evolving hidden state; index ``i`` is ``customer_id - 1``."""

    signup_us: np.ndarray
    birth_year: np.ndarray
    gender: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    method: np.ndarray
    activity: np.ndarray
    #: billing day of month (the sign-up day)
    dom: np.ndarray
    #: first instant at the raised price (sign-up for new customers; NEVER without drift)
    raised_us: np.ndarray
    plan: np.ndarray
    s: np.ndarray
    v: np.ndarray
    cancel_us: np.ndarray
    hazard_last: np.ndarray  # last month's daily hazard

    @property
    def n(self) -> int:
        return len(self.signup_us)

    @property
    def tod_us(self) -> np.ndarray:
        return self.signup_us % US_PER_DAY

    def fee(self, plan: np.ndarray, at_us: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Monthly fee of ``plan`` at ``at_us`` for the customers ``idx``."""
        return PRICES[(at_us >= self.raised_us[idx]).astype(np.int64), plan]


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


# --- population ------------------------------------------------------------------------------


def _signup_us(rng: np.random.Generator, cal: Calendar, n: int) -> np.ndarray:
    """Sorted sign-up instants: a base before ``start`` and steady acquisition during the period."""
    n_base = round(BASE_SHARE * n)
    cap = 1.0 - np.exp(-BASE_MAX_TENURE_DAYS / BASE_TENURE_SCALE_DAYS)
    tenure = -BASE_TENURE_SCALE_DAYS * np.log1p(-cap * rng.random(n_base))  # truncated exponential
    day = np.concatenate([-1 - np.floor(tenure).astype(np.int64), rng.integers(0, cal.n_days, n - n_base)])
    tod = rng.integers(0, SIGNUP_TOD_MAX_US, n)
    return np.sort(cal.start_us + day * US_PER_DAY + tod)


def _raised_us(cal: Calendar, signup_us: np.ndarray, dom: np.ndarray, drift_us: int) -> np.ndarray:
    """First billing at or after the drift instant (sign-up for later customers)."""
    if drift_us == NEVER:
        return np.full(len(signup_us), NEVER)
    m = cal.month_of_day((drift_us - cal.start_us) // US_PER_DAY)
    tod = signup_us % US_PER_DAY
    this, following = cal.billing_us(m, dom, tod), cal.billing_us(m + 1, dom, tod)
    billing = np.where(this >= drift_us, this, following)
    billing = np.where(billing < cal.end_us, billing, NEVER)
    return np.where(signup_us >= drift_us, signup_us, billing)


def _population(rng: np.random.Generator, cal: Calendar, n: int, drift_us: int) -> Customers:
    signup_us = _signup_us(rng, cal, n)
    signup_day = signup_us.astype("datetime64[us]").astype("datetime64[D]")
    dom = (signup_day - signup_day.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    channel = rng.choice(len(CHANNELS), size=n, p=_probs(CHANNEL_P, CHANNELS))
    tiktok = (signup_us >= drift_us) & (rng.random(n) < TIKTOK_SHARE)
    channel = np.where(tiktok, _code(CHANNELS, "tiktok"), channel)
    age = np.where(tiktok, rng.normal(TIKTOK_AGE_MEAN, TIKTOK_AGE_SD, n), rng.normal(AGE_MEAN, AGE_SD, n))
    signup_year = signup_day.astype("datetime64[Y]").astype(np.int64) + 1970
    tenure_days = np.maximum(cal.start_us - signup_us, 0) / US_PER_DAY
    plan = rng.choice(len(PLANS), size=n, p=_probs(PLAN_P, PLANS))
    s = rng.normal(S_MEAN, S_SD, n) + S_TENURE_BONUS * -np.expm1(-tenure_days / 365)
    return Customers(
        signup_us=signup_us,
        birth_year=(signup_year - np.clip(np.rint(age), AGE_MIN, AGE_MAX)).astype(np.int32),
        gender=rng.choice(len(GENDERS), size=n, p=_probs(GENDER_P, GENDERS)),
        region=rng.choice(len(REGIONS), size=n, p=_probs(REGION_P, REGIONS)),
        channel=channel,
        method=rng.choice(len(PAYMENT_METHODS), size=n, p=_probs(METHOD_P, PAYMENT_METHODS)),
        activity=rng.lognormal(-ACTIVITY_LOG_SD**2 / 2, ACTIVITY_LOG_SD, n),
        dom=dom,
        raised_us=_raised_us(cal, signup_us, dom, drift_us),
        plan=plan,
        s=s,
        v=np.zeros(n),
        cancel_us=np.full(n, NEVER),
        hazard_last=np.zeros(n),
    )


# --- one month of the hidden mechanism ----------------------------------------------------------


def _update_satisfaction(rng: np.random.Generator, cust: Customers, ms_us: int) -> None:
    """Month-start random walk with momentum and occasional negative shocks."""
    n = cust.n
    shock = np.where(rng.random(n) < SHOCK_P, rng.gamma(SHOCK_SHAPE, SHOCK_MEAN / SHOCK_SHAPE, n), 0.0)
    v = V_MOMENTUM * cust.v + rng.normal(SHOCK_P * SHOCK_MEAN, V_NOISE_SD, n) - shock
    s = np.clip(cust.s + v + S_REVERSION * (S_MEAN - cust.s), S_MEAN - S_RANGE, S_MEAN + S_RANGE)
    signed = cust.signup_us < ms_us
    cust.v = np.where(signed, v, cust.v)
    cust.s = np.where(signed, s, cust.s)


class History:
    """What the business has seen so far, per customer: enough to build :class:`Observed`.

    Events are counted with a running per-customer total, copied at the day boundaries the
    usage windows need; failed payments, tickets and downgrades are kept as sparse
    (customer, instant) logs.
    """

    def __init__(self, cal: Calendar, n: int) -> None:
        self.n = n
        self._events = np.zeros(n, dtype=np.int64)
        self._next_day = 0  # the day after the last started one: the totals are the events before it
        self._at_day: dict[int, np.ndarray] = {}
        self._needed = {int(cal.month_day[m]) - w for m in range(cal.months) for w in (0, *USAGE_WINDOWS)}
        self._logs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def start_day(self, day: int) -> None:
        """Call before adding ``day``'s events: keeps the totals before it if a window needs them."""
        if day in self._needed:
            self._at_day[day] = self._events.copy()
        self._next_day = day + 1
        for old in [d for d in self._at_day if d < day - max(USAGE_WINDOWS)]:
            del self._at_day[old]

    def add_events(self, who: np.ndarray) -> None:
        self._events += np.bincount(who, minlength=self.n)

    def events_between(self, first_day: int, end_day: int) -> np.ndarray:
        """Events per customer on the days ``[first_day, end_day)`` (none before the period)."""

        def before(day: int) -> np.ndarray | int:
            if day <= 0:
                return 0
            return self._events if day == self._next_day else self._at_day[day]

        return np.asarray(before(end_day) - before(first_day))

    def log(self, kind: str, idx: np.ndarray, at_us: np.ndarray) -> None:
        self._logs.setdefault(kind, []).append((idx, at_us))

    def count(self, kind: str, lo_us: int, hi_us: int) -> np.ndarray:
        """Logged ``kind`` instants in ``[lo_us, hi_us)`` per customer."""
        counts = np.zeros(self.n, dtype=np.int64)
        for idx, at_us in self._logs.get(kind, []):
            counts += np.bincount(idx[(at_us >= lo_us) & (at_us < hi_us)], minlength=self.n)
        return counts


@dataclass(frozen=True)
class Observed:
    """What the business can see of each customer at a month start (one array entry each).

    Every field is also a feature of ``pipeline.features.build`` at ``as_of`` = that month start
    (or, for ``usage_days``, follows from ``tenure_days``), which is what makes the truth
    the best achievable score: see
    tests/test_generate.py::test_truth_is_the_hazard_of_the_observable_features.
    """

    events: dict[int, np.ndarray]  # window days -> events in the window
    usage_days: dict[int, np.ndarray]  # window days -> days of it the customer could use the service
    tenure_days: np.ndarray  # whole days from the sign-up day to the month start
    failed_payments: np.ndarray  # in the last FAILED_PAYMENT_DAYS
    tickets: np.ndarray  # opened in the last TICKET_DAYS
    downgraded: np.ndarray  # 1 when a downgrade happened in the last DOWNGRADE_DAYS
    price_ratio: np.ndarray  # monthly fee in force / list fee of the plan
    channel: np.ndarray  # index into CHANNELS
    age: np.ndarray  # year of the month start - birth year


def observe(cust: Customers, cal: Calendar, history: History, m: int) -> Observed:
    """The :class:`Observed` state of every customer at month start ``m`` (from data before it)."""
    ms_day, ms_us = int(cal.month_day[m]), cal.month_us(m)
    tenure_days = np.maximum(ms_day - (cust.signup_us - cal.start_us) // US_PER_DAY, 0)
    raised = (cust.raised_us < ms_us).astype(np.int64)

    def since(days: int) -> int:
        return ms_us - days * US_PER_DAY

    return Observed(
        events={w: history.events_between(ms_day - w, ms_day) for w in USAGE_WINDOWS},
        usage_days={w: np.minimum(tenure_days, min(w, ms_day)) for w in USAGE_WINDOWS},
        tenure_days=tenure_days,
        failed_payments=history.count("failed_payment", since(FAILED_PAYMENT_DAYS), ms_us),
        tickets=history.count("ticket", since(TICKET_DAYS), ms_us),
        downgraded=np.minimum(history.count("downgrade", since(DOWNGRADE_DAYS), ms_us), 1),
        price_ratio=PRICES[raised, cust.plan] / PRICES[0, cust.plan],
        channel=cust.channel,
        age=cal.year(m) - cust.birth_year,
    )


def usage_rate(events: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Events per day, shrunk towards EVENTS_PER_DAY when the window holds few days."""
    return (events + RATE_PRIOR_DAYS * EVENTS_PER_DAY) / (days + RATE_PRIOR_DAYS)


def daily_hazard(obs: Observed) -> np.ndarray:
    """Daily cancellation probability for a month, from what is observed at its start."""
    recent, baseline = (usage_rate(obs.events[w], obs.usage_days[w]) for w in USAGE_WINDOWS)
    channel_effect = np.array([CHANNEL_EFFECT[c] for c in CHANNELS])[obs.channel]
    log_h = (
        LOG_BASE_HAZARD
        + W_USAGE * np.log(recent / EVENTS_PER_DAY)
        + W_USAGE_DROP * np.log(recent / baseline)
        + W_FAILED_PAYMENT * np.minimum(obs.failed_payments, 3)
        + W_TICKET * np.minimum(obs.tickets, 3)
        + W_DOWNGRADE * obs.downgraded
        + W_NEW_CUSTOMER * np.exp(-obs.tenure_days / NEW_CUSTOMER_DAYS)
        + W_PRICE * np.log(obs.price_ratio)
        + channel_effect
        + W_YOUTH * np.clip(YOUTH_PIVOT - obs.age, *YOUTH_CLIP)
    )
    return np.minimum(np.exp(log_h), MAX_DAILY_HAZARD)


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
    weights[:, _code(CANCEL_REASONS, "price")] = 0.6 + 3.0 * (cust.raised_us[idx] <= ms_us)
    weights[:, _code(CANCEL_REASONS, "not_using")] = 0.8 + 1.5 * np.maximum(S_MEAN - cust.s[idx], 0.0)
    weights[:, _code(CANCEL_REASONS, "technical")] = 0.4 + 1.5 * (obs.tickets[idx] > 0)
    weights[:, _code(CANCEL_REASONS, "competitor")] = 0.8
    weights[:, _code(CANCEL_REASONS, "other")] = 0.5
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
    _add_subscriptions(rows, cust, idx, new_plan[idx], at[idx])
    return np.where(up | down, at, NEVER), new_plan, down


def _add_subscriptions(rows: Rows, cust: Customers, idx: np.ndarray, plan: np.ndarray, at_us: np.ndarray) -> None:
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
        _code(PAYMENT_STATUSES, "failed"),
        np.where(u < p_fail + REFUND_P, _code(PAYMENT_STATUSES, "refunded"), _code(PAYMENT_STATUSES, "success")),
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
    _add_subscriptions(rows, cust, rise, plan_billed, billing_us[rise])
    return bills & (status == _code(PAYMENT_STATUSES, "failed")), paid_us


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
    weights = np.tile(_probs(TICKET_CATEGORY_W, TICKET_CATEGORIES), (len(owner), 1))
    weights[:, _code(TICKET_CATEGORIES, "billing")] += failed[owner]
    weights[:, _code(TICKET_CATEGORIES, "cancellation")] *= np.exp(CANCEL_TICKET_SLOPE * (cust.s[owner] - S_MEAN))
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


def concept_shift(hazard: np.ndarray, plan: np.ndarray, factor: float = CONCEPT_HAZARD_FACTOR) -> np.ndarray:
    """The daily hazards once the competitor's offer is out: the basic plan's customers churn
    ``factor`` times as often (capped as every hazard is); what they do is unchanged."""
    basic = plan == _code(PLANS, CONCEPT_SEGMENT_PLAN)
    return np.where(basic, np.minimum(hazard * factor, MAX_DAILY_HAZARD), hazard)


def _simulate_month(
    rng: np.random.Generator, rows: Rows, cust: Customers, cal: Calendar, m: int, history: History,
    concept_us: int = NEVER, concept_factor: float = CONCEPT_HAZARD_FACTOR,
) -> MonthState:
    """Advance the hidden state to month ``m``, sample what happens in it and record the truth.

    The hazard comes from ``history`` (everything observed before the month start); the
    month's payments, tickets and plan changes are added to it (its events by the caller).
    From ``concept_us`` (a month start) on, the hazard is :func:`concept_shift`'s.
    """
    ms_us, me_us = cal.month_us(m), cal.month_us(m + 1)
    _update_satisfaction(rng, cust, ms_us)
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


def _table_columns(name: str, rows: Rows, cust: Customers) -> Columns:
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


def _day_events(rng: np.random.Generator, cal: Calendar, life: Lifetimes, state: MonthState, day: int) -> pd.DataFrame:
    """One day of events: Poisson counts per active customer, spread over their part of the day."""
    active = np.flatnonzero((life.first_day <= day) & (life.last_day >= day))
    lo = np.where(life.first_day[active] == day, life.first_tod[active], 0)
    hi = np.where(life.last_day[active] == day, life.last_tod[active], US_PER_DAY)
    weekday = (cal.start.weekday() + day) % 7
    count = rng.poisson(state.rate[active] * WEEKDAY_FACTOR[weekday] * ((hi - lo) / US_PER_DAY))
    k = np.repeat(np.arange(len(active)), count)
    n, who = len(k), active[k]
    event_us = cal.day_us(day) + lo[k] + (rng.random(n) * (hi - lo)[k]).astype(np.int64)
    cdf = np.cumsum(_probs(EVENT_TYPE_P, EVENT_TYPES))
    kind = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(EVENT_TYPES) - 1)
    median = np.array([DURATION_MEDIAN_S.get(t, 0.0) for t in EVENT_TYPES])
    duration = median[kind] * state.duration_factor[who] * rng.lognormal(0.0, DURATION_LOG_SD, n)
    duration = np.where(median[kind] > 0, np.maximum(np.round(duration, 1), 0.1), 0.0)
    content = kind == _code(EVENT_TYPES, "content")
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


def _write_month_events(
    settings: Settings, seed: int, cal: Calendar, cust: Customers, state: MonthState, history: History, m: int,
    hold_from: dt.date | None = None,
) -> int:
    """Write one Parquet file per day of month ``m`` into the events landing folder; returns the row count.

    Every cancellation that can fall in month ``m`` is known once the month is simulated, so
    its events (none after a cancellation) can be generated then; they are also counted into
    ``history`` for the next month start. Days on or after ``hold_from`` are written to the
    simulator's pending folder instead (:mod:`churnflow_sim.simulator` lands them as days pass).
    """
    life = Lifetimes.of(cust, cal)
    total = 0
    for day in range(int(cal.month_day[m]), int(cal.month_day[m + 1])):
        history.start_day(day)
        events = _day_events(np.random.default_rng([seed, 1, day]), cal, life, state, day)
        history.add_events(events["customer_id"].to_numpy() - 1)
        date = cal.start + dt.timedelta(days=day)
        root = settings.landing_dir if hold_from is None or date < hold_from else settings.simulator_dir
        path = root / "events" / f"date={date.isoformat()}" / EVENTS_FILE
        write_parquet(events, path, schema=EVENTS_SCHEMA)
        total += len(events)
    return total


# --- database ------------------------------------------------------------------------------------


def _sql_type(dtype: pa.DataType) -> sa.types.TypeEngine:
    """Plain, portable SQL types for the contract's Arrow types."""
    if pa.types.is_int64(dtype):
        return sa.BigInteger()
    if pa.types.is_int32(dtype):
        return sa.Integer()
    if pa.types.is_float64(dtype):
        return sa.Double()
    if pa.types.is_string(dtype):
        return sa.String(32)
    if pa.types.is_timestamp(dtype):
        return sa.TIMESTAMP()
    raise TypeError(f"no SQL type for {dtype}")


def sql_table(source: SourceTable, metadata: sa.MetaData) -> sa.Table:
    """DDL of a source table: typed columns and the contract's primary key (index added after load)."""
    columns = [
        sa.Column(f.name, _sql_type(f.type), nullable=(source.name, f.name) in NULLABLE) for f in generated_fields(source)
    ]
    return sa.Table(source.name, metadata, *columns, sa.PrimaryKeyConstraint(*source.key))


def _write_database(
    settings: Settings, build: Callable[[str], Columns], say: Progress, hold_from: dt.date | None = None
) -> dict[str, int]:
    """Drop, recreate and fill the source tables with ``build(name)``'s columns; returns row counts.

    Runs in one transaction (so atomically where DDL is transactional, as in PostgreSQL).
    Each table's time-column index is built after its rows are loaded (faster). With
    ``hold_from``, rows whose time column is on or after that day go to the simulator's
    pending database (same tables) instead, to be landed later by :mod:`churnflow_sim.simulator`.
    """
    metadata = sa.MetaData()
    sql_tables = {name: sql_table(SOURCE_TABLES[name], metadata) for name in TABLES}
    counts: dict[str, int] = {}
    pending = engine_for(pending_db_url(settings)) if hold_from is not None else None
    with engine_for(settings.db_url).begin() as conn, (pending.begin() if pending else contextlib.nullcontext()) as held:
        for target in (conn, held) if held is not None else (conn,):
            metadata.drop_all(target)
            metadata.create_all(target)
        for name in TABLES:
            t0 = time.perf_counter()
            columns = build(name)
            time_column = SOURCE_TABLES[name].time_column
            parts = [(conn, columns)]
            if held is not None:
                now = columns[time_column] < np.datetime64(hold_from, "us")
                parts = [(conn, {k: v[now] for k, v in columns.items()}),
                         (held, {k: v[~now] for k, v in columns.items()})]
            for target, part in parts:
                insert(target, sql_tables[name], part)
                sa.Index(f"ix_{name}_{time_column}", sql_tables[name].c[time_column]).create(target)
            counts[name] = len(parts[0][1][time_column])
            say(f"db: {name} {counts[name]:,} rows"
                + (f" (+{len(parts[1][1][time_column]):,} pending)" if held is not None else "")
                + f", {time.perf_counter() - t0:.1f}s")
    return counts


# --- truth -------------------------------------------------------------------------------------


def concept_truth(concept_drift_from: dt.date | None, factor: float = CONCEPT_HAZARD_FACTOR) -> dict | None:
    """What the concept drift changed (None: none injected)."""
    if concept_drift_from is None:
        return None
    if factor <= 0:
        raise ValueError(f"concept_drift_factor must be positive, got {factor}")
    return {"from": concept_drift_from.isoformat(), "segment": f"plan = {CONCEPT_SEGMENT_PLAN}",
            "hazard_factor": factor,
            "what": "a competitor's offer: the segment's customers churn more often; no feature moves"}


def _write_truth(settings: Settings, truth: Columns, concept: dict | None = None) -> Path:
    import json

    concept_file = settings.truth_dir / CONCEPT_TRUTH_FILE
    if concept is None:
        concept_file.unlink(missing_ok=True)
    else:
        write_text(json.dumps(concept, indent=2), concept_file)
    frame = pd.DataFrame(
        {
            "customer_id": truth["customer_id"],
            "month_start": truth["month_start"].astype("datetime64[us]"),
            "p_cancel_30d": truth["p_cancel_30d"],
        }
    )
    return write_parquet(frame, settings.truth_dir / TRUTH_FILE, schema=TRUTH_SCHEMA)


def _churn_rates(truth: Columns, cust: Customers, cal: Calendar) -> tuple[float, float]:
    """(realised, expected) 30-day cancellation rate over month starts whose window lies in the period."""
    window_end = truth["month_start"] + WINDOW_DAYS * US_PER_DAY
    matured = window_end <= cal.end_us
    if not matured.any():
        return float("nan"), float("nan")
    cancelled = cust.cancel_us[truth["customer_id"][matured] - 1] < window_end[matured]
    return float(cancelled.mean()), float(truth["p_cancel_30d"][matured].mean())


# --- entry points ----------------------------------------------------------------------------------


def _validate(
    customers: int, months: int, seed: int, start: dt.date, drift_from: dt.date | None, hold_from: dt.date | None = None,
    concept_drift_from: dt.date | None = None,
) -> None:
    if customers < 1 or months < 1:
        raise ValueError(f"need at least one customer and one month, got {customers=} {months=}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start.day != 1:
        raise ValueError(f"start must be the first day of a month, got {start}")
    end = start + dt.timedelta(days=Calendar.of(start, months).n_days)
    if drift_from is not None and not start <= drift_from < end:
        raise ValueError(f"drift_from {drift_from} is outside the period starting {start}")
    if concept_drift_from is not None and (concept_drift_from.day != 1 or not start < concept_drift_from < end):
        raise ValueError(f"concept_drift_from {concept_drift_from} must be a month start after {start} and before "
                         f"{end} (the hazards are set at month starts)")
    if hold_from is not None and not start < hold_from < end:
        raise ValueError(f"the live cut-off {hold_from} must fall inside the period [{start}, {end})")


def live_period(until: dt.date, history_months: int, ahead_days: int) -> tuple[dt.date, int]:
    """``(start, months)`` of a live business: at least ``history_months`` whole months of
    history before ``until`` and at least ``ahead_days`` days still to land after it."""
    if history_months < 1 or ahead_days < 1:
        raise ValueError(f"need history_months >= 1 and ahead_days >= 1, got {history_months}, {ahead_days}")
    first = np.datetime64(until, "M") - history_months
    start = first.astype("datetime64[D]").item()
    months = history_months
    while start + dt.timedelta(days=Calendar.of(start, months).n_days) < until + dt.timedelta(days=ahead_days):
        months += 1
    return start, months


def generate(
    settings: Settings,
    customers: int,
    months: int,
    seed: int,
    start: dt.date = dt.date(2025, 1, 1),
    drift_from: dt.date | None = None,
    progress: Progress | None = print,
    hold_from: dt.date | None = None,
    concept_drift_from: dt.date | None = None,
    concept_drift_factor: float = CONCEPT_HAZARD_FACTOR,
) -> dict:
    """Generate ``customers`` customers' data for ``[start, start + months)`` and write it out.

    Writes the six source tables to ``settings.db_url`` (dropped and recreated), one events
    file per day under ``settings.landing_dir / "events"`` (the folder is replaced) and the
    true 30-day cancellation probabilities to ``settings.truth_dir``. The same arguments
    always produce the same data. ``start`` must be the first day of a month; from
    ``drift_from`` (inside the period) prices rise and the ``tiktok`` channel appears.

    Returns a summary: ``customers``, ``customers_at_start``, ``start`` / ``end`` (ISO dates,
    end exclusive), ``months``, ``seed``, ``drift_from``, ``rows`` (per table and
    ``events``), ``churn_rate_30d`` (realised) and ``mean_p_cancel_30d`` (truth) over the
    month starts whose 30-day window ends inside the period, ``db_url`` (password hidden),
    ``events_dir``, ``truth_path`` and ``seconds``.

    ``hold_from`` (inside the period) makes a *live* business: only what happened before that
    day is written to the source database and the landing folder; the rest waits in the
    simulator's pending store (``settings.simulator_dir``), which :func:`churnflow_sim.simulator.land`
    releases day by day. ``pending_until`` in the summary is the first day it cannot land.

    ``concept_drift_from`` (a month start inside the period): from then on the basic plan's
    customers churn ``concept_drift_factor`` times as often, nothing observable changing
    (:func:`concept_shift`); the truth records it (``concept_drift.json``, and the summary's
    ``concept_drift``).
    """
    _validate(customers, months, seed, start, drift_from, hold_from, concept_drift_from)
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    cal = Calendar.of(start, months)
    drift_us = NEVER if drift_from is None else cal.day_us((drift_from - start).days)
    rng = np.random.default_rng([seed, 0])
    cust = _population(rng, cal, customers, drift_us)
    at_start = int((cust.signup_us < cal.start_us).sum())
    rows, history = Rows(), History(cal, cust.n)
    _add_subscriptions(rows, cust, np.arange(cust.n), cust.plan, cust.signup_us)
    say(f"population: {customers:,} customers, {at_start:,} subscribed before {start}")
    shutil.rmtree(settings.landing_dir / "events", ignore_errors=True)
    shutil.rmtree(settings.simulator_dir, ignore_errors=True)
    n_events = 0
    concept_us = NEVER if concept_drift_from is None else cal.day_us((concept_drift_from - start).days)
    for m in range(months):
        state = _simulate_month(rng, rows, cust, cal, m, history, concept_us, concept_drift_factor)
        n_events += _write_month_events(settings, seed, cal, cust, state, history, m, hold_from)
        say(f"simulated {cal.label(m)}, {n_events / 1e6:.1f}M events so far, {time.perf_counter() - t0:.0f}s")
    counts = _write_database(settings, lambda name: _table_columns(name, rows, cust), say, hold_from)
    counts["events"] = n_events
    truth = rows.columns("truth")
    truth_path = _write_truth(settings, truth, concept_truth(concept_drift_from, concept_drift_factor))
    realised, expected = _churn_rates(truth, cust, cal)
    return {
        "customers": customers,
        "customers_at_start": at_start,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(days=cal.n_days)).isoformat(),
        "months": months,
        "seed": seed,
        "drift_from": drift_from.isoformat() if drift_from else None,
        "concept_drift": concept_truth(concept_drift_from, concept_drift_factor),
        "rows": counts,
        "churn_rate_30d": realised,
        "mean_p_cancel_30d": expected,
        "db_url": sa.make_url(settings.db_url).render_as_string(hide_password=True),
        "events_dir": str(settings.landing_dir / "events"),
        "truth_path": str(truth_path),
        "landed_until": (hold_from or start + dt.timedelta(days=cal.n_days)).isoformat(),
        "pending_until": (start + dt.timedelta(days=cal.n_days)).isoformat() if hold_from else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines for a :func:`generate` summary."""
    rows = ", ".join(f"{name} {n:,}" for name, n in summary["rows"].items())
    drift = f", drift from {summary['drift_from']}" if summary["drift_from"] else ""
    if summary.get("concept_drift"):
        concept = summary["concept_drift"]
        drift += (f", concept drift from {concept['from']} ({concept['segment']} churns "
                  f"{concept['hazard_factor']:g}x as often)")
    lines = [
        f"generated {summary['customers']:,} customers ({summary['customers_at_start']:,} at start), "
        f"[{summary['start']}, {summary['end']}){drift}, seed {summary['seed']}, {summary['seconds']}s",
        f"rows: {rows}",
        f"30-day churn: realised {summary['churn_rate_30d']:.2%}, true mean {summary['mean_p_cancel_30d']:.2%}",
        f"database: {summary['db_url']}",
        f"events:   {summary['events_dir']}",
        f"truth:    {summary['truth_path']}",
    ]
    if summary.get("pending_until"):
        lines.append(f"live:     landed up to {summary['landed_until']} (exclusive); the days up to "
                     f"{summary['pending_until']} land as they pass (churn_landing_simulator / "
                     "python -m pipeline land)")
    return "\n".join(lines)
