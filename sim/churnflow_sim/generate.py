"""Synthetic subscription-service data: the customer database, daily event files and the truth.

:func:`generate` is the entry point (``python -m pipeline generate``, :mod:`churnflow_sim.cli`). The
work is split by job: :mod:`churnflow_sim.constants` (the parameters), :mod:`churnflow_sim.behaviour`
(the population, the hidden satisfaction and the churn hazard: the mechanism is described there),
:mod:`churnflow_sim.tables` (each table sampled month by month and day by day, in contract form) and
:mod:`churnflow_sim.writers` (the database, the events files and the truth).

Everything is vectorized over customers with numpy; the only Python loops run over
months and days. Each month's events are generated right after the month is simulated (its
cancellations are known by then), so the next month start can count them.

Drift (``drift_from``: a price rise and a ``tiktok`` channel) and concept drift
(``concept_drift_from``: the basic plan's customers churn more often, nothing observable moves)
are described with the mechanism in :mod:`churnflow_sim.behaviour`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import sqlalchemy as sa

from churnflow_sim.behaviour import Customers, History, population
from churnflow_sim.common import US_PER_DAY, WINDOW_DAYS, Calendar, Columns, Progress
from churnflow_sim.constants import CONCEPT_HAZARD_FACTOR, CONCEPT_SEGMENT_PLAN, NEVER
from churnflow_sim.tables import Rows, add_subscriptions, simulate_month, table_columns
from churnflow_sim.writers import write_database, write_month_events, write_truth
from pipeline.config import Settings

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
    (:func:`~churnflow_sim.behaviour.concept_shift`); the truth records it (``concept_drift.json``, and the summary's
    ``concept_drift``).
    """
    _validate(customers, months, seed, start, drift_from, hold_from, concept_drift_from)
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    cal = Calendar.of(start, months)
    drift_us = NEVER if drift_from is None else cal.day_us((drift_from - start).days)
    rng = np.random.default_rng([seed, 0])
    cust = population(rng, cal, customers, drift_us)
    at_start = int((cust.signup_us < cal.start_us).sum())
    rows, history = Rows(), History(cal, cust.n)
    add_subscriptions(rows, cust, np.arange(cust.n), cust.plan, cust.signup_us)
    say(f"population: {customers:,} customers, {at_start:,} subscribed before {start}")
    shutil.rmtree(settings.landing_dir / "events", ignore_errors=True)
    shutil.rmtree(settings.simulator_dir, ignore_errors=True)
    n_events = 0
    concept_us = NEVER if concept_drift_from is None else cal.day_us((concept_drift_from - start).days)
    for m in range(months):
        state = simulate_month(rng, rows, cust, cal, m, history, concept_us, concept_drift_factor)
        n_events += write_month_events(settings, seed, cal, cust, state, history, m, hold_from)
        say(f"simulated {cal.label(m)}, {n_events / 1e6:.1f}M events so far, {time.perf_counter() - t0:.0f}s")
    counts = write_database(settings, lambda name: table_columns(name, rows, cust), say, hold_from)
    counts["events"] = n_events
    truth = rows.columns("truth")
    truth_path = write_truth(settings, truth, concept_truth(concept_drift_from, concept_drift_factor))
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
