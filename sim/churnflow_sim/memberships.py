"""Synthetic *membership* business: a subscription service whose churn is a membership that
expires and is not renewed (as in "no renewal within 30 days after the membership expires").

Its source database has its own schema, not churnflow's contract, and the habits of a real
service: text member keys (base64-like), its own plan codes (a free 7-day trial, monthly,
quarterly and annual plans of 30 to 410 days), payment method ids ("36", "38", "40", "41"),
prices that are not per month (a promotional first month), an auto-renew flag, and no
demographics at all::

    members(member_key, joined_on, signup_source)
    memberships(txn_ref, member_key, plan_code, plan_days, price, pay_method, started_at, expires_at, auto_renew)

``examples/memberships/sql/ingest_*.sql`` map it onto the contract (``customers`` and
``subscriptions`` with ``end_date`` and ``auto_renew``), and its configuration trains with
``label_kind: non_renewal``.

Hidden mechanism
----------------
A member joins with a trial (``TRIAL_SHARE``) or a paid plan and buys one membership period
after another. Whether a period that expires at ``E`` is followed by another decides
everything: with probability ``q`` the member does not renew and never comes back; otherwise
the next period starts at ``E`` (or a few days later, always before ``E + GRACE_DAYS``). ``q``
is a function of what the service observes of the *period that expires* (and of the member
when it started) - its plan, auto-renew flag, payment method, price per month and whether the
price went up against the period before - and of the member's signup source and of how many
periods they had bought before it. So for a member due for renewal at a month start
``as_of`` (their paid-through date ``E`` in ``[as_of, as_of + 30)``: churnflow's non-renewal
population with ``horizon_days: 30``), the truth ``P(not renewed within GRACE_DAYS of E)`` is
exactly that period's ``q``, known before ``as_of``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import shutil
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from churnflow_sim.common import Progress, insert, summary_lines
from pipeline.artifacts import write_parquet
from pipeline.config import Settings
from pipeline.ingestion.contract import TS
from pipeline.ingestion.source import engine_for

#: the plans: code -> (days, price); the trial is free
PLANS: dict[str, tuple[int, float]] = {"TRIAL-7": (7, 0.0), "M1": (30, 149.0), "M3": (90, 399.0), "Y1": (410, 1490.0)}
FIRST_PAID = {"M1": 0.62, "M3": 0.24, "Y1": 0.14}
METHODS = {"41": 0.55, "40": 0.25, "38": 0.12, "36": 0.08}
SOURCES = {"web": 0.45, "ios": 0.25, "android": 0.2, "partner-7": 0.1}
TRIAL_SHARE = 0.45
AUTO_RENEW_P = 0.7
GRACE_DAYS = 30
HORIZON_DAYS = 30
#: the first paid monthly period after a trial is at a promotional price with this probability
PROMO_P, PROMO_PRICE = 0.35, 99.0
#: a member who renews late starts the next period within (0, GRACE_DAYS) days with this probability
LATE_P = 0.15

#: the churn hazard of a period: logit q = ...
Q_BASE = -0.9
Q_AUTO_RENEW = -1.6
Q_PLAN = {"TRIAL-7": 1.0, "M1": 0.0, "M3": -0.3, "Y1": -0.7}
Q_METHOD = {"41": 0.0, "40": 0.15, "38": 0.4, "36": 0.9}
Q_SOURCE = {"web": 0.0, "ios": -0.2, "android": 0.1, "partner-7": 0.6}
Q_PRICE_UP = 0.9
Q_LOYALTY = -0.35  # x log(1 + periods bought before this one)

TRUTH_FILE = "non_renewal_probability.parquet"
TRUTH_COLUMN = "p_not_renewed"
TRUTH_SCHEMA = pa.schema([("customer_id", pa.string()), ("month_start", TS), (TRUTH_COLUMN, pa.float64())])
TIME_COLUMNS = {"members": "joined_on", "memberships": "started_at"}


def q_not_renewed(plan: str, auto_renew: bool, method: str, source: str, price_up: bool, bought_before: int) -> float:
    """The probability that a period with these attributes is not renewed."""
    logit = (Q_BASE + Q_AUTO_RENEW * auto_renew + Q_PLAN[plan] + Q_METHOD[method] + Q_SOURCE[source]
             + Q_PRICE_UP * price_up + Q_LOYALTY * np.log1p(bought_before))
    return float(1 / (1 + np.exp(-logit)))


def member_key(rng: np.random.Generator) -> str:
    """A text member key like a real service's (22 characters of URL-safe base64)."""
    return base64.urlsafe_b64encode(rng.bytes(16)).decode("ascii").rstrip("=")


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    return str(names[int(rng.choice(len(names), p=np.array(list(weights.values())) / sum(weights.values())))])


def generate_memberships(settings: Settings, members: int, months: int, seed: int,
                         start: dt.date = dt.date(2025, 1, 1), progress: Progress | None = print) -> dict:
    """A membership service of ``members`` over ``[start, start + months)`` (some joined up to a
    year before ``start``), written to ``settings.db_url`` in its own schema; the truth of every
    member due for renewal at each month start to ``settings.truth_dir``. Deterministic in ``seed``."""
    if members < 1 or months < 2 or start.day != 1:
        raise ValueError(f"need members >= 1, months >= 2 and start on a month's first day, got {members=} "
                         f"{months=} {start=}")
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 3])
    end = (pd.Timestamp(start) + pd.DateOffset(months=months)).date()
    first_join = start - dt.timedelta(days=365)
    span = (end - first_join).days - 30
    member_rows: dict[str, list] = {"member_key": [], "joined_on": [], "signup_source": []}
    period_rows: dict[str, list] = {k: [] for k in ("txn_ref", "member_key", "plan_code", "plan_days", "price",
                                                   "pay_method", "started_at", "expires_at", "auto_renew")}
    #: per period: (member, start, end, q) for the truth
    periods: list[tuple[str, dt.datetime, dt.datetime, float]] = []
    txn = 0
    for _ in range(members):
        key = member_key(rng)
        joined = dt.datetime.combine(first_join + dt.timedelta(days=int(rng.integers(0, span))), dt.time()) \
            + dt.timedelta(seconds=int(rng.integers(0, 86_400)))
        source = _pick(rng, SOURCES)
        member_rows["member_key"].append(key)
        member_rows["joined_on"].append(joined)
        member_rows["signup_source"].append(source)
        plan = "TRIAL-7" if rng.random() < TRIAL_SHARE else _pick(rng, FIRST_PAID)
        method, auto = _pick(rng, METHODS), bool(rng.random() < AUTO_RENEW_P)
        begin, bought, last_fee, promo = joined, 0, None, False
        while begin.date() < end:
            days, price = PLANS[plan]
            price = PROMO_PRICE if promo else price
            fee = price * 30 / days
            expires = begin + dt.timedelta(days=days)
            q = q_not_renewed(plan, auto, method, source, last_fee is not None and fee > last_fee + 1e-9, bought)
            txn += 1
            for k, v in (("txn_ref", f"T{txn:08d}-{key[:4]}"), ("member_key", key), ("plan_code", plan),
                         ("plan_days", days), ("price", price), ("pay_method", method), ("started_at", begin),
                         ("expires_at", expires), ("auto_renew", int(auto))):
                period_rows[k].append(v)
            periods.append((key, begin, expires, q))
            if rng.random() < q:
                break  # not renewed: the member is gone
            bought, last_fee = bought + 1, (fee if plan != "TRIAL-7" else None)
            late = rng.random() < LATE_P
            begin = expires + dt.timedelta(days=int(rng.integers(1, GRACE_DAYS)) if late else 0)
            promo = False
            if plan == "TRIAL-7":
                plan = _pick(rng, FIRST_PAID)
                promo = plan == "M1" and rng.random() < PROMO_P  # the next period's price goes up after it
            elif rng.random() < 0.05:
                plan = _pick(rng, FIRST_PAID)
            if rng.random() < 0.05:
                auto = not auto
    # what the database holds: periods started before the end of the period
    keep = [i for i, s in enumerate(period_rows["started_at"]) if s.date() < end]
    period_rows = {k: [v[i] for i in keep] for k, v in period_rows.items()}
    say(f"simulated {members:,} members: {len(keep):,} membership periods")
    counts = _write_database(settings, member_rows, period_rows)
    shutil.rmtree(settings.landing_dir / "events", ignore_errors=True)
    truth = _truth(periods, start, end)
    truth_path = write_parquet(truth, settings.truth_dir / TRUTH_FILE, schema=TRUTH_SCHEMA)
    return {"business": "memberships", "customers": members, "start": start.isoformat(), "end": end.isoformat(),
            "months": months, "seed": seed, "rows": counts, "due_rows": len(truth),
            "mean_truth": float(truth[TRUTH_COLUMN].mean()) if len(truth) else float("nan"),
            "db_url": sa.make_url(settings.db_url).render_as_string(hide_password=True),
            "truth_path": str(truth_path), "seconds": round(time.perf_counter() - t0, 1)}


def _truth(periods: list[tuple[str, dt.datetime, dt.datetime, float]], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Every member due for renewal at a month start ``m`` in ``(start, end]`` - their latest period
    started before ``m`` expires in ``[m, m + 30 days)`` - with that period's ``q``."""
    frame = pd.DataFrame(periods, columns=["customer_id", "start", "end", TRUTH_COLUMN])
    out = []
    m = (pd.Timestamp(start) + pd.DateOffset(months=1))
    while m.date() <= end:
        before = frame[frame["start"] < m].sort_values("start").groupby("customer_id").tail(1)
        due = before[(before["end"] >= m) & (before["end"] < m + pd.Timedelta(days=HORIZON_DAYS))]
        out.append(pd.DataFrame({"customer_id": due["customer_id"], "month_start": m, TRUTH_COLUMN: due[TRUTH_COLUMN]}))
        m = m + pd.DateOffset(months=1)
    result = pd.concat(out, ignore_index=True)
    result["month_start"] = result["month_start"].astype("datetime64[us]")
    return result.sort_values(["month_start", "customer_id"]).reset_index(drop=True)


def service_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """The service's own DDL (text keys, a price per period, the plan's length)."""
    return {
        "members": sa.Table("members", metadata, sa.Column("member_key", sa.String(32), primary_key=True),
                            sa.Column("joined_on", sa.TIMESTAMP(), nullable=False),
                            sa.Column("signup_source", sa.String(32))),
        "memberships": sa.Table(
            "memberships", metadata, sa.Column("txn_ref", sa.String(32), primary_key=True),
            sa.Column("member_key", sa.String(32), nullable=False), sa.Column("plan_code", sa.String(16)),
            sa.Column("plan_days", sa.Integer()), sa.Column("price", sa.Numeric(10, 2)),
            sa.Column("pay_method", sa.String(8)), sa.Column("started_at", sa.TIMESTAMP(), nullable=False),
            sa.Column("expires_at", sa.TIMESTAMP()), sa.Column("auto_renew", sa.Integer())),
    }


def _write_database(settings: Settings, member_rows: dict[str, list], period_rows: dict[str, list]) -> dict[str, int]:
    metadata = sa.MetaData()
    tables = service_tables(metadata)
    columns = {"members": {k: np.asarray(v, dtype=object) for k, v in member_rows.items()},
               "memberships": {k: np.asarray(v, dtype=object) for k, v in period_rows.items()}}
    with engine_for(settings.db_url).begin() as conn:
        for name in ("memberships", "members"):  # a source that held another business's tables starts clean
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        metadata.create_all(conn)
        for name, table in tables.items():
            insert(conn, table, columns[name], use_driver=False)
            sa.Index(f"ix_{name}_{TIME_COLUMNS[name]}", table.c[TIME_COLUMNS[name]]).create(conn)
    return {name: len(c[next(iter(c))]) for name, c in columns.items()}


def format_summary(summary: dict) -> str:
    return summary_lines(summary, "a membership service", "memberships",
                         f"members due for renewal at month starts: {summary['due_rows']:,}, true mean P(not renewed) "
                         f"{summary['mean_truth']:.2%}")


def main(args: argparse.Namespace, settings: Settings) -> int:
    summary = generate_memberships(settings, args.customers, args.months, args.seed,
                                   start=args.start or dt.date(2025, 1, 1))
    print(format_summary(summary))
    return 0

