"""Benchmark of pipeline.features.build on a synthetic lake (``make bench``).

1. Synthesises (numpy + pyarrow, self-contained) a lake in the pipeline's earlier layout
   ``<data_dir>/lake/<table>/date=YYYY-MM-DD/part-0.parquet`` (arrival order), then migrates it
   (:func:`pipeline.ingestion.lake.migrate`: customer order, closed months compacted): by default 1,000,000 customers
   and ~100,000,000 events over one year, or reuses the lake under ``--data-dir``.
2. Times :func:`pipeline.features.build.write_features` for one as_of date and for six monthly
   snapshots, each in a fresh process so that its peak RSS (``ru_maxrss``) is its own.
3. Times a straightforward pandas implementation of the same job for the single date (the
   features, written to Parquet like ``write_features`` does), checks that both agree on a
   sample of customers and prints the time ratio.

Targets (issue): one as_of <= 15 s and <= 4 GiB peak; six snapshots <= 90 s; the single date
at least 5x faster than the pandas reference in the same run.

Usage: ``python bench/bench_features.py [--customers N] [--events N] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnflow_sim.common import CHANNELS, GENDERS, PAYMENT_METHODS, PLAN_FEES, PLANS, REGIONS
from pipeline.config import Settings, load_settings
from pipeline.features import build as F
from pipeline.features import catalogue as C
from pipeline.ingestion.contract import (
    EVENT_TYPES,
    LAKE_TABLES,
)
from pipeline.ingestion.lake import LEGACY_PART_NAME, lake_files, migrate, table_dir

HISTORY_START = dt.date(2023, 1, 1)  # first signup
EVENTS_START = dt.date(2024, 1, 1)  # first event day
DATA_END = dt.date(2025, 1, 1)  # exclusive end of all data
SINGLE_AS_OF = dt.date(2024, 12, 1)
SNAPSHOTS = [dt.date(2024, m, 1) for m in range(7, 13)]
DAY_US = 86_400_000_000
TARGETS = {"one as_of": (15.0, 4.0), "6 snapshots": (90.0, None)}
MIN_SPEEDUP_VS_PANDAS = 5.0


# --------------------------------------------------------------------------- synthetic lake
def _us(day: dt.date) -> int:
    return int(pd.Timestamp(day).value // 1000)


def _pick(rng: np.random.Generator, values: tuple[str, ...], n: int) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]


def _write_partitioned(data_dir: Path, table: str, columns: dict[str, np.ndarray]) -> int:
    """Write columns (numpy; NaN / None = null) as one Parquet file per day of the time column."""
    settings = load_settings(config_file=None, data_dir=data_dir)
    schema, time_col = LAKE_TABLES[table]
    order = np.argsort(columns[time_col], kind="stable")
    cols = {k: v[order] for k, v in columns.items()}
    day = cols[time_col] // DAY_US
    cuts = np.flatnonzero(np.diff(day)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(day)], strict=True):
        part = table_dir(settings, table) / f"date={(dt.date(1970, 1, 1) + dt.timedelta(int(day[lo]))).isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        arrays = [_arrow(cols[f.name][lo:hi], f.type) if f.name in cols else pa.nulls(hi - lo, f.type) for f in schema]
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), part / LEGACY_PART_NAME)
    return len(day)


def _arrow(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(typ):
        return pa.array(values.astype("datetime64[us]"), type=typ)
    if pa.types.is_floating(typ):
        return pa.array(values, type=typ, from_pandas=True)
    if pa.types.is_integer(typ) and values.dtype.kind == "f":
        return pa.array(values, type=pa.float64(), from_pandas=True).cast(typ)
    return pa.array(values, type=typ, from_pandas=True)


def synthesize_lake(data_dir: Path, n_customers: int, n_events: int, seed: int = 7) -> dict[str, int]:
    """Write a synthetic lake; returns the row count per table."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_customers + 1, dtype=np.int64)
    signup = _us(HISTORY_START) + rng.integers(0, _us(dt.date(2024, 12, 1)) - _us(HISTORY_START), n_customers)
    cancels = rng.random(n_customers) < 0.35
    cancel_at = signup + rng.exponential(200 * DAY_US, n_customers).astype(np.int64)
    cancels &= cancel_at < _us(DATA_END)
    stop = np.where(cancels, cancel_at, _us(DATA_END))
    counts = {
        "customers": _customers(data_dir, rng, ids, signup, stop),
        "cancellations": _write_partitioned(
            data_dir,
            "cancellations",
            {"customer_id": ids[cancels], "cancelled_at": cancel_at[cancels],
             "reason": _pick(rng, ("price", "not_using", "other"), int(cancels.sum()))},
        ),
    }
    counts.update(_subscriptions(data_dir, rng, ids, signup, stop))
    counts["payments"] = _payments(data_dir, rng, ids, signup, stop)
    counts["support_tickets"] = _tickets(data_dir, rng, ids, signup, stop)
    counts["events"] = _events(data_dir, rng, ids, signup, stop, n_events)
    return counts


def _customers(data_dir: Path, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray, stop: np.ndarray) -> int:
    n = len(ids)
    moved = rng.random(n) < 0.1
    moved_at = signup + ((stop - signup) * rng.random(n)).astype(np.int64)
    birth = rng.integers(1945, 2006, n).astype(float)
    birth[rng.random(n) < 0.01] = np.nan
    rows = np.r_[np.arange(n), np.flatnonzero(moved)]
    return _write_partitioned(
        data_dir,
        "customers",
        {
            "customer_id": ids[rows],
            "signup_date": signup[rows],
            "birth_year": birth[rows],
            "gender": _pick(rng, GENDERS, n)[rows],
            "region": _pick(rng, REGIONS, len(rows)),
            "acquisition_channel": _pick(rng, CHANNELS, n)[rows],
            "updated_at": np.r_[signup, moved_at[moved]],
        },
    )


def _subscriptions(
    data_dir: Path, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray, stop: np.ndarray
) -> dict[str, int]:
    n = len(ids)
    plan0 = rng.integers(0, len(PLANS), n)
    changed = rng.random(n) < 0.3
    change_at = signup + 1 + ((stop - signup - 1) * rng.random(n)).astype(np.int64)
    plan1 = (plan0 + rng.integers(1, len(PLANS), n)) % len(PLANS)
    plans = np.asarray(PLANS, dtype=object)
    fees = np.asarray([PLAN_FEES[p] for p in PLANS])
    rows = np.r_[np.arange(n), np.flatnonzero(changed)]
    plan_idx = np.r_[plan0, plan1[changed]]
    sub = _write_partitioned(
        data_dir,
        "subscriptions",
        {
            "subscription_id": np.arange(1, len(rows) + 1, dtype=np.int64),
            "customer_id": ids[rows],
            "plan": plans[plan_idx],
            "monthly_fee": fees[plan_idx] * np.where(rng.random(len(rows)) < 0.2, 1.1, 1.0),
            "payment_method": _pick(rng, PAYMENT_METHODS, len(rows)),
            "start_date": np.r_[signup, change_at[changed]],
        },
    )
    ch = np.flatnonzero(changed)
    changes = _write_partitioned(
        data_dir,
        "plan_changes",
        {
            "change_id": np.arange(1, len(ch) + 1, dtype=np.int64),
            "customer_id": ids[ch],
            "changed_at": change_at[ch],
            "old_plan": plans[plan0[ch]],
            "new_plan": plans[plan1[ch]],
        },
    )
    return {"subscriptions": sub, "plan_changes": changes}


def _payments(data_dir: Path, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray, stop: np.ndarray) -> int:
    period = 30 * DAY_US
    k = (stop - signup - 1) // period + 1
    cust = np.repeat(np.arange(len(ids)), k)
    nth = np.arange(len(cust)) - np.repeat(np.cumsum(k) - k, k)
    paid_at = signup[cust] + nth * period + rng.integers(0, 3_600_000_000, len(cust))
    keep = paid_at < stop[cust]
    cust, paid_at = cust[keep], paid_at[keep]
    status = np.asarray(("success", "failed", "refunded"), dtype=object)[
        rng.choice(3, len(cust), p=(0.93, 0.05, 0.02))
    ]
    return _write_partitioned(
        data_dir,
        "payments",
        {
            "payment_id": np.arange(1, len(cust) + 1, dtype=np.int64),
            "customer_id": ids[cust],
            "paid_at": paid_at,
            "amount": np.full(len(cust), 15.99),
            "status": status,
        },
    )


def _tickets(data_dir: Path, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray, stop: np.ndarray) -> int:
    k = rng.poisson(0.8, len(ids))
    cust = np.repeat(np.arange(len(ids)), k)
    opened = signup[cust] + ((stop[cust] - signup[cust]) * rng.random(len(cust))).astype(np.int64)
    resolved = (opened + rng.exponential(4 * DAY_US, len(cust))).astype("datetime64[us]")
    resolved[rng.random(len(cust)) < 0.1] = np.datetime64("NaT")
    return _write_partitioned(
        data_dir,
        "support_tickets",
        {
            "ticket_id": np.arange(1, len(cust) + 1, dtype=np.int64),
            "customer_id": ids[cust],
            "opened_at": opened,
            "category": _pick(rng, ("billing", "technical", "content"), len(cust)),
            "resolved_at": resolved,
        },
    )


def _events(
    data_dir: Path, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray, stop: np.ndarray, n_events: int
) -> int:
    """Day by day: every customer active that day draws Poisson(rate) events."""
    settings = load_settings(config_file=None, data_dir=data_dir)
    schema = LAKE_TABLES["events"][0]
    rate = rng.gamma(1.2, 1.0, len(ids))
    first = np.maximum(signup, _us(EVENTS_START)) // DAY_US
    last = (stop - 1) // DAY_US
    active_days = np.clip(last - first + 1, 0, None)
    rate *= n_events / float((rate * active_days).sum())
    types = np.asarray(EVENT_TYPES, dtype=object)
    total = 0
    for day in range(_us(EVENTS_START) // DAY_US, _us(DATA_END) // DAY_US):
        active = np.flatnonzero((first <= day) & (day <= last))
        n = rng.poisson(rate[active])
        cust = np.repeat(active, n)
        ts = day * DAY_US + np.sort(rng.integers(0, DAY_US, len(cust)))
        kind = rng.choice(3, len(cust), p=(0.35, 0.40, 0.25))
        duration = np.where(kind == 1, rng.exponential(900.0, len(cust)), np.nan)
        units = np.where(kind == 2, 1 + rng.poisson(2.0, len(cust)), np.nan)
        arrays = [
            pa.array(ids[cust]),
            pa.array(ts.astype("datetime64[us]"), type=schema.field("event_ts").type),
            pa.array(types[kind], type=pa.string()),
            pa.array(duration, from_pandas=True),
            pa.array(units, type=pa.float64(), from_pandas=True).cast(pa.int32()),
        ]
        part = table_dir(settings, "events") / f"date={(dt.date(1970, 1, 1) + dt.timedelta(day)).isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), part / LEGACY_PART_NAME)
        total += len(cust)
    return total


# --------------------------------------------------------------------------- pandas reference
def _read(settings: Settings, table: str, lo: dt.date | None, hi: dt.date) -> pd.DataFrame:
    schema, _ = LAKE_TABLES[table]
    files = lake_files(settings, table, [(lo, hi)])
    if not files:
        return schema.empty_table().to_pandas()
    return pa.concat_tables(pq.read_table(f, schema=schema) for f in files).to_pandas()


def _latest_before(df: pd.DataFrame, time_col: str, cutoff: pd.Timestamp, order: list[str]) -> pd.DataFrame:
    return df[df[time_col] < cutoff].sort_values(order).groupby("customer_id").tail(1).set_index("customer_id")


def pandas_features(settings: Settings, as_of: dt.date, windows: tuple[int, ...] = C.DEFAULT_WINDOWS) -> pd.DataFrame:
    """The same features for one date in plain pandas (an independent reference)."""
    ts = pd.Timestamp(as_of)
    cust = _latest_before(_read(settings, "customers", None, as_of), "updated_at", ts, ["customer_id", "updated_at"])
    cancelled = _read(settings, "cancellations", None, as_of)
    cust = cust[(cust["signup_date"] < ts) & ~cust.index.isin(cancelled.loc[cancelled["cancelled_at"] < ts, "customer_id"])]
    out = pd.DataFrame(index=cust.index.sort_values())
    cust = cust.loc[out.index]
    out["as_of"] = ts
    out["age"] = (as_of.year - cust["birth_year"]).fillna(0).astype(int)
    out["age_missing"] = cust["birth_year"].isna().astype(int)
    for col in ("gender", "region", "acquisition_channel"):
        out[col] = cust[col].fillna("unknown")
    subs = _read(settings, "subscriptions", None, as_of)
    now = _latest_before(subs, "start_date", ts, ["customer_id", "start_date", "subscription_id"]).reindex(out.index)
    before = _latest_before(
        subs, "start_date", ts - pd.Timedelta(days=C.BILLING_CHANGE_DAYS), ["customer_id", "start_date", "subscription_id"]
    ).reindex(out.index)
    out["plan"] = now["plan"].fillna("none")
    out["monthly_fee"] = now["monthly_fee"].fillna(0.0)
    out["payment_method"] = now["payment_method"].fillna("none")
    tenure = (ts - cust["signup_date"].dt.normalize()).dt.days
    out["tenure_days"] = tenure
    _pandas_events(settings, as_of, windows, out, tenure)
    _pandas_transactions(settings, as_of, out, tenure, now["monthly_fee"], before["monthly_fee"])
    return out.reset_index()


def _window_frame(settings: Settings, table: str, time_col: str, as_of: dt.date, days: int) -> pd.DataFrame:
    df = _read(settings, table, as_of - dt.timedelta(days=days), as_of)
    ts = pd.Timestamp(as_of)
    df = df[(df[time_col] >= ts - pd.Timedelta(days=days)) & (df[time_col] < ts)].copy()
    df["age"] = (ts - df[time_col].dt.normalize()).dt.days
    return df


def _pandas_events(settings: Settings, as_of: dt.date, windows: tuple[int, ...], out: pd.DataFrame, tenure: pd.Series) -> None:
    longest = windows[-1]
    ev = _window_frame(settings, "events", "event_ts", as_of, longest)
    ev["n_events"] = 1
    for kind, name in (("login", "n_logins"), ("session", "n_sessions"), ("content", "n_content")):
        ev[name] = (ev["event_type"] == kind).astype(int)
    # as the SQL: each duration to the whole microsecond, summed exactly
    ev["total_duration_s"] = np.floor(ev["duration_s"].fillna(0.0) * F.US_PER_S + 0.5).astype("int64")
    ev["total_content_units"] = ev["content_units"].fillna(0).astype(float)
    metrics = ["n_events", "n_logins", "n_sessions", "n_content", "total_duration_s", "total_content_units"]
    per_window = {w: ev[ev["age"] <= w].groupby("customer_id")[metrics].sum().reindex(out.index, fill_value=0) for w in windows}
    for w in windows:
        per_window[w]["total_duration_s"] = per_window[w]["total_duration_s"] / F.US_PER_S
    for m in metrics:
        for w in windows:
            out[f"{m}_{w}d"] = per_window[w][m]
    long_rate = out[f"n_events_{longest}d"] / longest
    for w in windows[:-1]:
        ratio = (out[f"n_events_{w}d"] / w) / long_rate
        out[f"trend_events_{w}d_vs_{longest}d"] = ratio.where(long_rate > 0, 1.0)
    out[f"no_events_{longest}d_flag"] = (out[f"n_events_{longest}d"] == 0).astype(int)
    last_login = ev[ev["event_type"] == "login"].groupby("customer_id")["age"].min().reindex(out.index)
    out["days_since_last_login"] = last_login.fillna(np.minimum(tenure, longest)).astype(int)
    out["days_since_last_login_missing"] = last_login.isna().astype(int)


def _pandas_transactions(
    settings: Settings, as_of: dt.date, out: pd.DataFrame, tenure: pd.Series, fee: pd.Series, fee_before: pd.Series
) -> None:
    ts = pd.Timestamp(as_of)
    pay = _window_frame(settings, "payments", "paid_at", as_of, C.PAYMENT_LOOKBACK_DAYS)
    last_ok = pay[pay["status"] == "success"].groupby("customer_id")["age"].min().reindex(out.index)
    out["days_since_last_success_payment"] = last_ok.fillna(np.minimum(tenure, C.PAYMENT_LOOKBACK_DAYS)).astype(int)
    out["days_since_last_success_payment_missing"] = last_ok.isna().astype(int)
    failed = pay[pay["status"] == "failed"].groupby("customer_id").size()
    out["n_failed_payments_180d"] = failed.reindex(out.index, fill_value=0)
    pc = _window_frame(settings, "plan_changes", "changed_at", as_of, C.PLAN_CHANGE_LOOKBACK_DAYS)
    out["n_plan_changes_365d"] = pc.groupby("customer_id").size().reindex(out.index, fill_value=0)
    down = (pc["age"] <= C.DOWNGRADE_DAYS) & (pc["new_plan"].map(PLAN_FEES) < pc["old_plan"].map(PLAN_FEES))
    out["downgrade_90d_flag"] = out.index.isin(pc.loc[down, "customer_id"]).astype(int)
    pct = 100.0 * (fee - fee_before) / fee_before
    out["billing_change_pct_90d"] = pct.where(fee.notna() & (fee_before.fillna(0) != 0), 0.0)
    tickets = _read(settings, "support_tickets", None, as_of)
    tickets = tickets[tickets["opened_at"] < ts]
    recent = tickets["opened_at"] >= ts - pd.Timedelta(days=C.TICKET_WINDOW_DAYS)
    out["n_tickets_90d"] = tickets[recent].groupby("customer_id").size().reindex(out.index, fill_value=0)
    still_open = tickets["resolved_at"].isna() | (tickets["resolved_at"] >= ts)
    out["n_open_tickets"] = tickets[still_open].groupby("customer_id").size().reindex(out.index, fill_value=0)


def compare_with_pandas(duck: pd.DataFrame, ref: pd.DataFrame, sample: int, seed: int = 0) -> int:
    """Assert equal values on a random sample of customers; returns the sample size."""
    if len(duck) != len(ref):
        raise AssertionError(f"row counts differ: duckdb {len(duck)} vs pandas {len(ref)}")
    ids = pd.Series(duck["customer_id"].unique()).sample(min(sample, len(duck)), random_state=seed)
    a = duck[duck["customer_id"].isin(ids)].sort_values("customer_id").reset_index(drop=True)
    b = ref[ref["customer_id"].isin(ids)].sort_values("customer_id").reset_index(drop=True)[a.columns]
    a["as_of"], b["as_of"] = pd.to_datetime(a["as_of"]), pd.to_datetime(b["as_of"])
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)
    return len(ids)


# --------------------------------------------------------------------------- measurement
def _measured(fn: Callable[[], object]) -> tuple[float, float, object]:
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, result


def _child_duckdb(data_dir: str, dates: list[dt.date], out: str) -> tuple[float, float, int]:
    settings = load_settings(config_file=None, data_dir=data_dir)
    wall, peak, _ = _measured(lambda: F.write_features(settings, dates, Path(out)))
    return wall, peak, pq.ParquetFile(out).metadata.num_rows


def _child_pandas(data_dir: str, as_of: dt.date, out: str) -> tuple[float, float, int]:
    """The same job as :func:`_child_duckdb`: features for the date, written to Parquet."""
    settings = load_settings(config_file=None, data_dir=data_dir)

    def job() -> int:
        df = pandas_features(settings, as_of)
        df.to_parquet(out)
        return len(df)

    return _measured(job)


def _in_fresh_process(fn: Callable[..., tuple[float, float, int]], *args: object) -> tuple[float, float, int]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def run(data_dir: Path, sample: int, with_pandas: bool) -> dict[str, dict[str, float]]:
    """Time the feature builds (and the pandas reference) on the lake under ``data_dir``."""
    results: dict[str, dict[str, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        for label, dates in (("one as_of", [SINGLE_AS_OF]), ("6 snapshots", SNAPSHOTS)):
            wall, peak, rows = _in_fresh_process(_child_duckdb, str(data_dir), dates, str(work / f"{len(dates)}.parquet"))
            results[label] = {"wall_s": wall, "peak_rss_gib": peak, "rows": rows}
            print(f"duckdb  {label:12s}: {wall:7.1f} s  peak RSS {peak:5.2f} GiB  rows {rows:,}", flush=True)
        if with_pandas:
            wall, peak, rows = _in_fresh_process(_child_pandas, str(data_dir), SINGLE_AS_OF, str(work / "pandas.parquet"))
            results["pandas one as_of"] = {"wall_s": wall, "peak_rss_gib": peak, "rows": rows}
            ratio = wall / results["one as_of"]["wall_s"]
            print(f"pandas  one as_of   : {wall:7.1f} s  peak RSS {peak:5.2f} GiB  ({ratio:.1f}x the duckdb time)")
            duck = pd.read_parquet(work / "1.parquet")
            n = compare_with_pandas(duck, pd.read_parquet(work / "pandas.parquet"), sample)
            print(f"pandas reference matches duckdb on a sample of {n:,} customers")
            results["pandas one as_of"]["ratio_vs_duckdb"] = ratio
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _verdict(results: dict[str, dict[str, float]]) -> bool:
    ok = True
    for label, (max_s, max_gib) in TARGETS.items():
        r = results[label]
        good = r["wall_s"] <= max_s and (max_gib is None or r["peak_rss_gib"] <= max_gib)
        ok &= good
        limit = f"<= {max_s:.0f} s" + (f", <= {max_gib:.0f} GiB" if max_gib else "")
        print(f"target {label:12s} ({limit}): {'OK' if good else 'MISSED'}")
    if "pandas one as_of" in results:
        ratio = results["pandas one as_of"]["ratio_vs_duckdb"]
        good = ratio >= MIN_SPEEDUP_VS_PANDAS
        ok &= good
        print(f"target vs pandas   (>= {MIN_SPEEDUP_VS_PANDAS:.0f}x faster): {ratio:.1f}x {'OK' if good else 'MISSED'}")
    else:
        print("target vs pandas: not measured (--no-pandas)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--data-dir", type=Path, help="lake to reuse, or where to synthesise it (kept)")
    parser.add_argument("--sample", type=int, default=20_000, help="customers compared with pandas")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-lake-"))
    try:
        if not (data_dir / "lake" / "events").exists():
            print(f"synthesising {args.customers:,} customers / ~{args.events:,} events in {data_dir} ...", flush=True)
            start = time.perf_counter()
            counts = synthesize_lake(data_dir, args.customers, args.events)
            print(f"  done in {time.perf_counter() - start:.0f} s: {counts}", flush=True)
            start = time.perf_counter()
            migrate(load_settings(config_file=None, data_dir=data_dir))  # the lake's layout: customer order, months
            print(f"  migrated to the customer order in {time.perf_counter() - start:.0f} s", flush=True)
        results = run(data_dir, args.sample, not args.no_pandas)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if _verdict(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
