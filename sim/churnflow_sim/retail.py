"""Synthetic *non-contractual* business: a shop whose customers only ever place orders.

There are no subscriptions, cancellations, tickets or app events: a customer churns when
their purchase hazard drops to zero, which the shop never sees happen - it only sees the
orders stop. The source database has the shop's own schema, not churnflow's contract::

    shop_customers(customer_no, registered_at, year_of_birth, sex, region, source)
    orders(order_no, customer_no, ordered_at, quantity, unit_price, state)

``examples/retail/sql/ingest_*.sql`` map it onto the contract (``customers`` and
``payments``): that mapping is the worked example of README "Map your data in".

Hidden mechanism
----------------
The shop opens on ``start``: a launch campaign brings ``LAUNCH_SHARE`` of the customers in
the first month, the rest sign up uniformly over the period. Registration is the first
order. At each month start ``m`` every living customer has, from what the shop has
observed before that instant (and from nothing else, :func:`rates` of an :class:`Observed`):

* a purchase rate ``lam`` (successful orders per day for the month): the geometric mean of
  the order rates of the last 90 and 365 days, each shrunk towards a prior rate of the
  customer's channel, region and age (``K_PRIOR_DAYS`` days of prior weight) - buying
  habits persist but drift with what the customer actually did;
* a probability ``q`` of *dying* at that month start (never ordering again): higher for a
  recent slowdown (30- against 90-day rate), shrinking baskets (average order value of 90
  against 365 days), days since the last order, a low 365-day rate, a new customer, the
  channel and youth.

A latent basket mood ``e`` (a random walk with occasional negative shocks) sets how many
units an order holds. It is not observed, and reaches churn only through the basket sizes
the shop sees. Deaths happen only at month starts, so a customer who ordered in the last
``WINDOW_DAYS`` (28) days before a month start is alive at it (every month is at least 28
days long). The truth of such a customer - exactly churnflow's inactivity population with
``inactivity_days: 28`` - is therefore exact and a function of the observable history::

    p_inactive_28d = q + (1 - q) * exp(-28 lam)

(dead, or alive and no successful order in the 28 days by chance). Returned orders
(``state = 'returned'``, a refund in the contract) come on top at ``RETURN_RATIO`` x ``lam``
and are not activity, in the generator as in churnflow's inactivity label.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from churnflow_sim.common import US_PER_DAY, Calendar, Columns, Progress, insert, summary_lines
from pipeline.artifacts import write_parquet
from pipeline.config import Settings
from pipeline.ingestion.contract import TS
from pipeline.ingestion.source import engine_for

TRUTH_FILE = "inactivity_probability.parquet"
WINDOW_DAYS = 28  # the truth's label window: inactivity_days of examples/retail/churnflow.yaml
TRUTH_COLUMN = f"p_inactive_{WINDOW_DAYS}d"
TRUTH_SCHEMA = pa.schema([("customer_id", pa.int64()), ("month_start", TS), (TRUTH_COLUMN, pa.float64())])

# --- the shop's own vocabulary (the example's ingest SQL maps it onto the contract) ---------
SEXES = ("female", "male", "unspecified")
SEX_P = (0.52, 0.45, 0.03)
REGIONS = ("north", "south", "east", "west", "central")
REGION_P = (0.2, 0.22, 0.18, 0.2, 0.2)
SOURCES = ("organic", "search_ad", "social", "friend", "partner")  # contract: ..., paid_search, ..., referral
SOURCE_P = (0.35, 0.25, 0.15, 0.15, 0.10)
STATES = ("complete", "returned")
NEVER = np.iinfo(np.int64).max  # "not dead"

# --- population ------------------------------------------------------------------------------
LAUNCH_SHARE = 0.3  # of the customers sign up in the first month (the launch campaign)
AGE_MEAN, AGE_SD, AGE_MIN, AGE_MAX = 40.0, 13.0, 18, 85
PRICE_LEVEL_MEDIAN, PRICE_LEVEL_LOG_SD = 14.0, 0.4  # a customer's typical unit price
UNIT_PRICE_LOG_SD = 0.15
QTY_EXTRA, QTY_MOOD_SLOPE = 1.5, 0.5  # units: 1 + Poisson(1.5 exp(0.5 e))

# --- latent basket mood ----------------------------------------------------------------------
E_SD0, E_MOMENTUM, E_NOISE_SD = 0.5, 0.7, 0.25
SHOCK_P, SHOCK_MEAN, SHOCK_SHAPE = 0.08, 1.0, 4.0  # the noise has mean E[shock]: no drift overall

# --- purchase rate (successful orders per day) -----------------------------------------------
LAMBDA0 = 0.12  # between three and four orders a month
K_PRIOR_DAYS = 30.0
RATE_WINDOWS = (30, 90, 365)
LAMBDA_MAX = 1.0
RATE_SOURCE = dict(zip(SOURCES, (0.1, -0.1, -0.2, 0.2, 0.0), strict=True))
RATE_REGION = dict(zip(REGIONS, (0.0, 0.1, -0.1, 0.05, -0.05), strict=True))
W_RATE_AGE, RATE_AGE_PIVOT, RATE_AGE_CLIP = 0.01, 40, (-20, 25)
RETURN_RATIO = 0.03

# --- death at a month start ------------------------------------------------------------------
LOG_Q0 = -3.6
Q_MAX = 0.5
W_FREQ = -1.0  # x log(365-day rate / LAMBDA0)
W_DROP = -2.0  # x log(30-day rate / 90-day rate)
W_AOV = -2.5  # x log(average order value 90 d / 365 d), clipped to AOV_CLIP
AOV_CLIP = (0.2, 5.0)
W_RECENCY, RECENCY_DAYS = 0.06, 180  # per day since the last order (look-back 180 days, as the feature)
W_NEW, NEW_DAYS = 1.0, 60.0  # x exp(-tenure / 60 days)
W_YOUTH, YOUTH_PIVOT, YOUTH_CLIP = 0.02, 35, (-15, 20)
Q_SOURCE = dict(zip(SOURCES, (-0.2, 0.2, 0.35, -0.3, 0.0), strict=True))


@dataclass(frozen=True)
class Observed:
    """What the shop sees of each customer at a month start (one array entry each).

    Each field is a churnflow feature at ``as_of`` = that month start (``n_purchases_*``,
    ``aov_trend_90d_vs_365d``, ``days_since_last_success_payment``, ``tenure_days``, ``age``,
    ``acquisition_channel``, ``region``): tests/test_retail.py recomputes the truth from the
    pipeline's own feature rows with :func:`rates`.
    """

    orders: dict[int, np.ndarray]  # window days -> successful orders in [ms - w days, ms)
    aov_trend: np.ndarray  # average order value 90 d / 365 d; 1.0 when either window has no order
    recency_days: np.ndarray  # days since the last successful order; min(tenure, 180) without one
    tenure_days: np.ndarray
    age: np.ndarray
    source: np.ndarray  # index into SOURCES
    region: np.ndarray  # index into REGIONS


def prior_rate(source: np.ndarray, region: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Orders per day expected of a customer with no history, from who they are."""
    rs = np.array([RATE_SOURCE[s] for s in SOURCES])[source]
    rr = np.array([RATE_REGION[r] for r in REGIONS])[region]
    return LAMBDA0 * np.exp(rs + rr + W_RATE_AGE * np.clip(age - RATE_AGE_PIVOT, *RATE_AGE_CLIP))


def rates(obs: Observed) -> tuple[np.ndarray, np.ndarray]:
    """``(lam, q)``: the month's purchase rate per day and the probability of dying at its start."""
    prior = prior_rate(obs.source, obs.region, obs.age)
    shrunk = {w: (obs.orders[w] + K_PRIOR_DAYS * prior) / (np.minimum(w, obs.tenure_days) + K_PRIOR_DAYS)
              for w in RATE_WINDOWS}
    lam = np.minimum(np.sqrt(shrunk[90] * shrunk[365]), LAMBDA_MAX)
    log_q = (
        LOG_Q0
        + W_FREQ * np.log(shrunk[365] / LAMBDA0)
        + W_DROP * np.log(shrunk[30] / shrunk[90])
        + W_AOV * np.log(np.clip(obs.aov_trend, *AOV_CLIP))
        + W_RECENCY * obs.recency_days
        + W_NEW * np.exp(-obs.tenure_days / NEW_DAYS)
        + np.array([Q_SOURCE[s] for s in SOURCES])[obs.source]
        + W_YOUTH * np.clip(YOUTH_PIVOT - obs.age, *YOUTH_CLIP)
    )
    return lam, np.minimum(np.exp(log_q), Q_MAX)


def p_inactive(lam: np.ndarray, q: np.ndarray, days: int = WINDOW_DAYS) -> np.ndarray:
    """Probability of no successful order in ``days`` days from a month start (days <= 28)."""
    return q + (1 - q) * np.exp(-days * lam)


@dataclass
class Shop:
    """The customers (index ``i`` is ``customer_no - 1``) and their evolving hidden state."""

    signup_us: np.ndarray
    birth_year: np.ndarray
    sex: np.ndarray
    region: np.ndarray
    source: np.ndarray
    price_level: np.ndarray
    mood: np.ndarray
    dead_us: np.ndarray  # the month start from which the customer never orders again (NEVER: alive)

    @property
    def n(self) -> int:
        return len(self.signup_us)


def _shop(rng: np.random.Generator, cal: Calendar, n: int) -> Shop:
    n_launch = round(LAUNCH_SHARE * n)
    day = np.concatenate([rng.integers(0, cal.month_len(0), n_launch), rng.integers(0, cal.n_days, n - n_launch)])
    signup_us = np.sort(cal.start_us + day * US_PER_DAY + rng.integers(0, US_PER_DAY, n))
    year = signup_us.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970
    age = np.clip(np.rint(rng.normal(AGE_MEAN, AGE_SD, n)), AGE_MIN, AGE_MAX)
    return Shop(
        signup_us=signup_us,
        birth_year=(year - age).astype(np.int32),
        sex=rng.choice(len(SEXES), size=n, p=SEX_P),
        region=rng.choice(len(REGIONS), size=n, p=REGION_P),
        source=rng.choice(len(SOURCES), size=n, p=SOURCE_P),
        price_level=rng.lognormal(np.log(PRICE_LEVEL_MEDIAN), PRICE_LEVEL_LOG_SD, n),
        mood=rng.normal(0.0, E_SD0, n),
        dead_us=np.full(n, NEVER),
    )


class OrderLog:
    """The successful orders so far, as (customer index, day index, amount in cents) arrays."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64),) * 3]

    def add(self, idx: np.ndarray, day: np.ndarray, cents: np.ndarray) -> None:
        self._parts.append((idx, day, cents))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self._parts) > 1:
            self._parts = [tuple(np.concatenate(a) for a in zip(*self._parts, strict=True))]  # type: ignore[list-item]
        return self._parts[0]

    def counts(self, ms_day: int, days: int, weighted: bool = False) -> np.ndarray:
        """Per customer: successful orders (or their cents) on the ``days`` days before day ``ms_day``."""
        idx, day, cents = self._arrays()
        keep = (ms_day - day >= 1) & (ms_day - day <= days)  # 1..days back, as the feature SQL counts them
        return np.bincount(idx[keep], weights=cents[keep].astype(np.float64) if weighted else None, minlength=self.n)

    def observe(self, shop: Shop, cal: Calendar, m: int) -> Observed:
        """The :class:`Observed` state at month start ``m`` (orders on the days before it)."""
        ms_day = int(cal.month_day[m])
        orders = {w: self.counts(ms_day, w) for w in RATE_WINDOWS}
        spend = {w: self.counts(ms_day, w, weighted=True) for w in (90, 365)}
        with np.errstate(divide="ignore", invalid="ignore"):
            trend = (spend[90] / orders[90]) / (spend[365] / orders[365])
        aov_trend = np.where((orders[90] == 0) | (orders[365] == 0), 1.0, trend)
        tenure_days = np.maximum(ms_day - (shop.signup_us - cal.start_us) // US_PER_DAY, 0)
        idx, day, _ = self._arrays()
        recent = (ms_day - day >= 1) & (ms_day - day <= RECENCY_DAYS)
        last = np.full(self.n, -1, dtype=np.int64)
        np.maximum.at(last, idx[recent], day[recent])
        recency = np.where(last >= 0, ms_day - last, np.minimum(tenure_days, RECENCY_DAYS))
        return Observed(orders=orders, aov_trend=aov_trend, recency_days=recency, tenure_days=tenure_days,
                        age=cal.year(m) - shop.birth_year, source=shop.source, region=shop.region)


def _orders(rng: np.random.Generator, shop: Shop, who: np.ndarray, at_us: np.ndarray, returned: np.ndarray) -> Columns:
    """Order rows for the customers ``who`` at ``at_us``: units from the mood, prices from the level."""
    qty = 1 + rng.poisson(QTY_EXTRA * np.exp(QTY_MOOD_SLOPE * shop.mood[who]))
    unit_cents = np.maximum(np.rint(100 * shop.price_level[who] * rng.lognormal(0.0, UNIT_PRICE_LOG_SD, len(who))), 1)
    return {"customer_no": who + 1, "ordered_at": at_us, "quantity": qty.astype(np.int64),
            "unit_cents": unit_cents.astype(np.int64), "state": returned.astype(np.int64)}


def _simulate_month(
    rng: np.random.Generator, shop: Shop, cal: Calendar, m: int, log: OrderLog, rows: list[Columns],
    truth: list[Columns],
) -> None:
    """Month ``m``: rates and deaths from the observed history, the truth, then the month's orders."""
    ms_us, me_us = cal.month_us(m), cal.month_us(m + 1)
    obs = log.observe(shop, cal, m)
    lam, q = rates(obs)
    signed, alive = shop.signup_us < ms_us, shop.dead_us == NEVER
    # ordered in the last 28 days: alive at the month start (deaths happen only at month starts)
    active = np.flatnonzero(signed & alive & (log.counts(int(cal.month_day[m]), WINDOW_DAYS) > 0))
    truth.append({"customer_id": active + 1, "month_start": np.full(len(active), ms_us),
                  TRUTH_COLUMN: p_inactive(lam[active], q[active])})
    dies = signed & alive & (rng.random(shop.n) < q)
    shop.dead_us[dies] = ms_us
    # the basket mood moves (shocks make baskets smaller)
    shock = np.where(rng.random(shop.n) < SHOCK_P, rng.gamma(SHOCK_SHAPE, SHOCK_MEAN / SHOCK_SHAPE, shop.n), 0.0)
    mood = E_MOMENTUM * shop.mood + rng.normal(SHOCK_P * SHOCK_MEAN, E_NOISE_SD, shop.n) - shock
    shop.mood = np.where(signed, mood, shop.mood)
    # registrations this month are first orders; everyone alive orders at rate lam over their part of it
    new = np.flatnonzero((shop.signup_us >= ms_us) & (shop.signup_us < me_us))
    lo = np.maximum(ms_us, shop.signup_us + 1)
    span = np.where(shop.dead_us == NEVER, np.maximum(me_us - lo, 0), 0)
    n_ok, n_back = rng.poisson(lam * span / US_PER_DAY), rng.poisson(RETURN_RATIO * lam * span / US_PER_DAY)
    per = n_ok + n_back
    owner = np.repeat(np.arange(shop.n), per)
    at = lo[owner] + (rng.random(len(owner)) * span[owner]).astype(np.int64)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)  # 0, 1, .. within a customer's orders
    back = rank >= n_ok[owner]  # each customer's last n_back orders are the returned ones
    month = _orders(rng, shop, np.concatenate([new, owner]), np.concatenate([shop.signup_us[new], at]),
                    np.concatenate([np.zeros(len(new), bool), back]))
    rows.append(month)
    ok = month["state"] == 0
    log.add(month["customer_no"][ok] - 1, (month["ordered_at"][ok] - cal.start_us) // US_PER_DAY,
            month["quantity"][ok] * month["unit_cents"][ok])


# --- the shop's database -----------------------------------------------------------------------


#: the column each of the shop's tables is indexed (and windowed by the example's ingest SQL) on
TIME_COLUMNS = {"shop_customers": "registered_at", "orders": "ordered_at"}


def shop_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """DDL of the shop's own schema (not churnflow's contract)."""
    return {
        "shop_customers": sa.Table(
            "shop_customers", metadata,
            sa.Column("customer_no", sa.BigInteger(), primary_key=True),
            sa.Column("registered_at", sa.TIMESTAMP(), nullable=False),
            sa.Column("year_of_birth", sa.Integer()),
            sa.Column("sex", sa.String(16)),
            sa.Column("region", sa.String(16)),
            sa.Column("source", sa.String(16)),
        ),
        "orders": sa.Table(
            "orders", metadata,
            sa.Column("order_no", sa.BigInteger(), primary_key=True),
            sa.Column("customer_no", sa.BigInteger(), nullable=False),
            sa.Column("ordered_at", sa.TIMESTAMP(), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
        ),
    }


def _table_columns(shop: Shop, orders: Columns) -> dict[str, Columns]:
    order = np.lexsort((orders["customer_no"], orders["ordered_at"]))
    o = {k: v[order] for k, v in orders.items()}
    return {
        "shop_customers": {
            "customer_no": np.arange(1, shop.n + 1),
            "registered_at": shop.signup_us.astype("datetime64[us]"),
            "year_of_birth": shop.birth_year,
            "sex": np.asarray(SEXES, dtype=object)[shop.sex],
            "region": np.asarray(REGIONS, dtype=object)[shop.region],
            "source": np.asarray(SOURCES, dtype=object)[shop.source],
        },
        "orders": {
            "order_no": np.arange(1, len(order) + 1),
            "customer_no": o["customer_no"],
            "ordered_at": o["ordered_at"].astype("datetime64[us]"),
            "quantity": o["quantity"],
            "unit_price": o["unit_cents"] / 100,
            "state": np.asarray(STATES, dtype=object)[o["state"]],
        },
    }


def _write_database(settings: Settings, columns: dict[str, Columns], say: Progress) -> dict[str, int]:
    """Drop, recreate and fill the shop's tables in one transaction; returns row counts."""
    metadata = sa.MetaData()
    tables = shop_tables(metadata)
    with engine_for(settings.db_url).begin() as conn:
        metadata.drop_all(conn)
        metadata.create_all(conn)
        for name, table in tables.items():
            insert(conn, table, columns[name])
            time_column = TIME_COLUMNS[name]
            sa.Index(f"ix_{name}_{time_column}", table.c[time_column]).create(conn)
            say(f"db: {name} {len(columns[name][time_column]):,} rows")
    return {name: len(c[next(iter(c))]) for name, c in columns.items()}


# --- entry point -----------------------------------------------------------------------------------


def generate_retail(
    settings: Settings, customers: int, months: int, seed: int, start: dt.date = dt.date(2025, 1, 1),
    progress: Progress | None = print,
) -> dict:
    """Generate a shop's ``customers`` over ``[start, start + months)`` and write it out.

    Writes ``shop_customers`` and ``orders`` to ``settings.db_url`` (dropped and recreated;
    no event files: the landing folder's events are removed) and the true probabilities of
    28 days without a successful order, for the customers who ordered in the 28 days before
    each month start, to ``settings.truth_dir``. The same arguments give the same data.
    """
    if customers < 1 or months < 2:
        raise ValueError(f"need at least one customer and two months, got {customers=} {months=}")
    if seed < 0 or start.day != 1:
        raise ValueError(f"need seed >= 0 and start on the first of a month, got {seed=} {start=}")
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    cal = Calendar.of(start, months)
    rng = np.random.default_rng([seed, 2])
    shop = _shop(rng, cal, customers)
    log, rows, truth = OrderLog(shop.n), list[Columns](), list[Columns]()
    for m in range(months):
        _simulate_month(rng, shop, cal, m, log, rows, truth)
        n_orders = sum(len(r["customer_no"]) for r in rows)
        say(f"simulated {cal.label(m)}: {n_orders:,} orders so far")
    orders = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    shutil.rmtree(settings.landing_dir / "events", ignore_errors=True)
    counts = _write_database(settings, _table_columns(shop, orders), say)
    t = {k: np.concatenate([r[k] for r in truth]) for k in truth[0]}
    frame = pd.DataFrame({"customer_id": t["customer_id"], "month_start": t["month_start"].astype("datetime64[us]"),
                          TRUTH_COLUMN: t[TRUTH_COLUMN]})
    truth_path = write_parquet(frame, settings.truth_dir / TRUTH_FILE, schema=TRUTH_SCHEMA)
    realised, expected = _inactive_rates(truth, log, cal)
    return {
        "business": "retail", "customers": customers, "start": start.isoformat(),
        "end": (start + dt.timedelta(days=cal.n_days)).isoformat(), "months": months, "seed": seed,
        "rows": counts, "inactive_rate": realised, "mean_truth": expected,
        "db_url": sa.make_url(settings.db_url).render_as_string(hide_password=True),
        "truth_path": str(truth_path), "seconds": round(time.perf_counter() - t0, 1),
    }


def _inactive_rates(truth: list[Columns], log: OrderLog, cal: Calendar) -> tuple[float, float]:
    """(realised, expected) share without a successful order in the 28 days from a month start,
    over the month starts (``truth[m]`` is month ``m``'s) whose 28 days end inside the period."""
    inactive, expected = [], []
    for m, part in enumerate(truth):
        label_end = int(cal.month_day[m]) + WINDOW_DAYS
        if label_end <= cal.n_days:  # the orders of days [month start, + 28): 1..28 days before label_end
            inactive.append(log.counts(label_end, WINDOW_DAYS)[part["customer_id"] - 1] == 0)
            expected.append(part[TRUTH_COLUMN])
    if not inactive or not len(np.concatenate(inactive)):
        return float("nan"), float("nan")
    return float(np.concatenate(inactive).mean()), float(np.concatenate(expected).mean())


def format_summary(summary: dict) -> str:
    return summary_lines(summary, "a shop", "retail", f"{WINDOW_DAYS} days without an order: realised "
                         f"{summary['inactive_rate']:.2%}, true mean {summary['mean_truth']:.2%}")


def main(args: argparse.Namespace, settings: Settings) -> int:
    summary = generate_retail(settings, args.customers, args.months, args.seed, start=args.start or dt.date(2025, 1, 1))
    print(format_summary(summary))
    return 0
