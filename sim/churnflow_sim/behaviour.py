"""How the generated subscription business's customers behave (:mod:`churnflow_sim.generate`):
the population, the hidden satisfaction and the churn hazard from what the business observes.

Everything is vectorized over customers with numpy. Internally timestamps are int64
microseconds since the Unix epoch (``*_us``) and days are indexes relative to ``start``
(``*_day``). :mod:`churnflow_sim.tables` samples what the customers do from this state, and
:mod:`churnflow_sim.constants` holds the parameters.

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

from dataclasses import dataclass

import numpy as np

from churnflow_sim.common import CHANNELS, GENDERS, PAYMENT_METHODS, PLANS, REGIONS, US_PER_DAY, Calendar
from churnflow_sim.constants import (
    ACTIVITY_LOG_SD,
    AGE_MAX,
    AGE_MEAN,
    AGE_MIN,
    AGE_SD,
    BASE_MAX_TENURE_DAYS,
    BASE_SHARE,
    BASE_TENURE_SCALE_DAYS,
    CHANNEL_EFFECT,
    CHANNEL_P,
    CONCEPT_HAZARD_FACTOR,
    CONCEPT_SEGMENT_PLAN,
    DOWNGRADE_DAYS,
    EVENTS_PER_DAY,
    FAILED_PAYMENT_DAYS,
    GENDER_P,
    LOG_BASE_HAZARD,
    MAX_DAILY_HAZARD,
    METHOD_P,
    NEVER,
    NEW_CUSTOMER_DAYS,
    PLAN_P,
    PRICES,
    RATE_PRIOR_DAYS,
    REGION_P,
    S_MEAN,
    S_RANGE,
    S_REVERSION,
    S_SD,
    S_TENURE_BONUS,
    SHOCK_MEAN,
    SHOCK_P,
    SHOCK_SHAPE,
    SIGNUP_TOD_MAX_US,
    TICKET_DAYS,
    TIKTOK_AGE_MEAN,
    TIKTOK_AGE_SD,
    TIKTOK_SHARE,
    USAGE_WINDOWS,
    V_MOMENTUM,
    V_NOISE_SD,
    W_DOWNGRADE,
    W_FAILED_PAYMENT,
    W_NEW_CUSTOMER,
    W_PRICE,
    W_TICKET,
    W_USAGE,
    W_USAGE_DROP,
    W_YOUTH,
    YOUTH_CLIP,
    YOUTH_PIVOT,
    code,
    probs,
)


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


def population(rng: np.random.Generator, cal: Calendar, n: int, drift_us: int) -> Customers:
    signup_us = _signup_us(rng, cal, n)
    signup_day = signup_us.astype("datetime64[us]").astype("datetime64[D]")
    dom = (signup_day - signup_day.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    channel = rng.choice(len(CHANNELS), size=n, p=probs(CHANNEL_P, CHANNELS))
    tiktok = (signup_us >= drift_us) & (rng.random(n) < TIKTOK_SHARE)
    channel = np.where(tiktok, code(CHANNELS, "tiktok"), channel)
    age = np.where(tiktok, rng.normal(TIKTOK_AGE_MEAN, TIKTOK_AGE_SD, n), rng.normal(AGE_MEAN, AGE_SD, n))
    signup_year = signup_day.astype("datetime64[Y]").astype(np.int64) + 1970
    tenure_days = np.maximum(cal.start_us - signup_us, 0) / US_PER_DAY
    plan = rng.choice(len(PLANS), size=n, p=probs(PLAN_P, PLANS))
    s = rng.normal(S_MEAN, S_SD, n) + S_TENURE_BONUS * -np.expm1(-tenure_days / 365)
    return Customers(
        signup_us=signup_us,
        birth_year=(signup_year - np.clip(np.rint(age), AGE_MIN, AGE_MAX)).astype(np.int32),
        gender=rng.choice(len(GENDERS), size=n, p=probs(GENDER_P, GENDERS)),
        region=rng.choice(len(REGIONS), size=n, p=probs(REGION_P, REGIONS)),
        channel=channel,
        method=rng.choice(len(PAYMENT_METHODS), size=n, p=probs(METHOD_P, PAYMENT_METHODS)),
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


def update_satisfaction(rng: np.random.Generator, cust: Customers, ms_us: int) -> None:
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


def concept_shift(hazard: np.ndarray, plan: np.ndarray, factor: float = CONCEPT_HAZARD_FACTOR) -> np.ndarray:
    """The daily hazards once the competitor's offer is out: the basic plan's customers churn
    ``factor`` times as often (capped as every hazard is); what they do is unchanged."""
    basic = plan == code(PLANS, CONCEPT_SEGMENT_PLAN)
    return np.where(basic, np.minimum(hazard * factor, MAX_DAILY_HAZARD), hazard)


