"""Tests of pipeline.features.build: hand-computed values per feature group, window boundaries,
point-in-time leakage (property test), batch-vs-single consistency and the catalogue
(pipeline.features.catalogue)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.__main__ import main as cli_main
from pipeline.config import Settings, load_settings
from pipeline.features import build as F
from pipeline.features import catalogue as C
from pipeline.ingestion.contract import LAKE_TABLES
from pipeline.ingestion.lake import write_window

T = pd.Timestamp
AS_OF = dt.date(2024, 6, 1)
A = T(AS_OF)


class Lake:
    """Hand-made lake: collect rows per table, then write them with ``lake.write_window``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, table: str, **row: Any) -> Lake:
        self.rows[table].append(row)
        return self

    def customer(self, cid: int, signup: pd.Timestamp, **attrs: Any) -> Lake:
        row = dict(
            customer_id=cid, signup_date=signup, birth_year=1990, gender="F", region="north",
            acquisition_channel="organic", updated_at=signup,
        )
        return self.add("customers", **{**row, **attrs})

    def event(self, cid: int, ts: pd.Timestamp, kind: str = "login", duration: float | None = None,
              units: int | None = None) -> Lake:
        return self.add("events", customer_id=cid, event_ts=ts, event_type=kind,
                        duration_s=duration, content_units=units)

    def frame(self, table: str, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
        schema, _ = LAKE_TABLES[table]
        rows = self.rows.get(table, []) if rows is None else rows
        if not rows:
            return schema.empty_table().to_pandas()
        return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema).to_pandas()

    def write(self) -> Settings:
        """Write every table (over the days its rows span) and return the settings."""
        for table, rows in self.rows.items():
            if not rows:
                continue
            times = [r[LAKE_TABLES[table][1]] for r in rows]
            start, end = min(times).normalize(), max(times).normalize() + pd.Timedelta(days=1)
            write_window(self.settings, table, self.frame(table), start, end)
        return self.settings


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(load_settings(config_file=None, data_dir=tmp_path))


def one(df: pd.DataFrame, cid: int, as_of: dt.date = AS_OF) -> pd.Series:
    rows = df[(df["customer_id"] == cid) & (df["as_of"] == T(as_of))]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# --------------------------------------------------------------------------- catalogue
def test_sql_columns_match_catalogue_in_order(lake: Lake) -> None:
    settings = lake.customer(1, A - pd.Timedelta(days=10)).write()
    names = [f.name for f in C.FEATURES]
    assert list(F.build_features(settings, [AS_OF]).columns) == ["customer_id", "as_of", *names]
    custom = F.build_features(settings, [AS_OF], windows=(14, 60))
    assert list(custom.columns[2:]) == [f.name for f in C.feature_specs((14, 60))]
    assert "n_events_14d" in custom and "trend_events_14d_vs_60d" in custom


def test_catalogue_partition_and_markdown() -> None:
    names = [f.name for f in C.FEATURES]
    assert len(set(names)) == len(names)
    assert sorted(C.NUMERIC_FEATURES + C.CATEGORICAL_FEATURES) == sorted(names)
    assert C.CATEGORICAL_FEATURES == ["gender", "region", "acquisition_channel", "plan", "payment_method"]
    md = C.feature_catalogue_markdown()
    assert md.startswith("| name | group | kind | window | description |")
    assert all(f"| `{n}` |" in md for n in names)
    # every column is in a group of its own kind of source, and the groups are the config's
    from pipeline.tables import FEATURE_GROUP_NAMES

    assert tuple(C.GROUPS) == FEATURE_GROUP_NAMES
    groups = {f.name: f.group for f in C.FEATURES}
    assert groups["n_events_7d"] == "events" and groups["monthly_fee"] == "subscription"
    assert groups["n_purchases_365d"] == "purchases" and groups["n_failed_payments_180d"] == "payments"
    assert groups["n_open_tickets"] == "support" and groups["downgrade_90d_flag"] == "plan_changes"
    assert {g for n, g in groups.items() if n in ("age", "gender", "tenure_days")} == {"customer"}


def test_windows_must_be_distinct_positive() -> None:
    with pytest.raises(ValueError):
        C.feature_specs((7, 7))
    with pytest.raises(ValueError):
        C.feature_specs((0, 30))


# --------------------------------------------------------------------------- population and demographics
def test_population_and_customer_versions(lake: Lake) -> None:
    lake.customer(1, T("2020-01-01"), birth_year=1980, region="north")
    lake.add("customers", **{**lake.rows["customers"][0], "region": "south", "updated_at": A - pd.Timedelta(hours=1)})
    lake.add("customers", **{**lake.rows["customers"][0], "region": "west", "updated_at": A})  # at as_of: unseen
    lake.customer(2, A)  # signs up at as_of: not yet a customer
    lake.customer(3, T("2023-01-01"), birth_year=None, gender=None)
    lake.customer(4, T("2023-01-01"))
    lake.customer(5, T("2023-01-01"))
    lake.customer(6, T("2023-01-01"), updated_at=A + pd.Timedelta(days=1))  # row only known later
    lake.add("cancellations", customer_id=4, cancelled_at=A - pd.Timedelta(seconds=1), reason="price")
    lake.add("cancellations", customer_id=5, cancelled_at=A, reason="price")  # cancels at as_of: still a row
    df = F.build_features(lake.write(), [AS_OF])
    assert df["customer_id"].tolist() == [1, 3, 5]
    c1 = one(df, 1)
    assert (c1["age"], c1["age_missing"], c1["region"], c1["tenure_days"]) == (44, 0, "south", 1613)
    c3 = one(df, 3)
    assert (c3["age"], c3["age_missing"], c3["gender"]) == (0, 1, "unknown")


# --------------------------------------------------------------------------- subscription
def test_subscription_at_as_of_and_billing_change(lake: Lake) -> None:
    lake.customer(1, T("2024-01-01"))
    lake.customer(2, T("2024-05-30"))  # no subscription yet
    for sid, start, plan, fee, method in [
        (1, T("2024-01-01"), "basic", 10.0, "card"),
        (2, A - pd.Timedelta(days=30), "standard", 12.5, "paypal"),
        (3, A, "premium", 30.0, "card"),  # starts at as_of: not yet in force
        (4, T("2024-01-01"), "premium", 20.0, "card"),  # same start as 1: the higher id wins
    ]:
        lake.add("subscriptions", subscription_id=sid, customer_id=1, plan=plan, monthly_fee=fee,
                 payment_method=method, start_date=start)
    df = F.build_features(lake.write(), [AS_OF])
    c1, c2 = one(df, 1), one(df, 2)
    assert (c1["plan"], c1["monthly_fee"], c1["payment_method"]) == ("standard", 12.5, "paypal")
    assert c1["billing_change_pct_90d"] == pytest.approx(-37.5)  # 20.0 (id 4, not 1) -> 12.5
    assert c1["tenure_days"] == (A - T("2024-01-01")).days
    assert (c2["plan"], c2["monthly_fee"], c2["payment_method"], c2["billing_change_pct_90d"]) == (
        "none", 0.0, "none", 0.0)
    assert c2["tenure_days"] == 2


@pytest.mark.parametrize("text_ids", [False, True])
def test_latest_key_orders_rows_by_time_then_id(text_ids: bool) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(F.read_sql("features_macros", latest_key=F.LATEST_KEY_TEXT if text_ids else F.LATEST_KEY_INTEGER))
    rng = np.random.default_rng(0)
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 3, 400), unit="us")
    ids = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 396, dtype=np.int64),
                          [-(2**63), 2**63 - 1, 0, -1]])
    frame = pd.DataFrame({"ts": ts, "id": ids.astype(str) if text_ids else ids})  # noqa: F841 (read by DuckDB)
    by_key = con.execute("SELECT ts, id FROM frame ORDER BY latest_key(ts, id)").df()
    by_pair = con.execute("SELECT ts, id FROM frame ORDER BY ts, id").df()
    pd.testing.assert_frame_equal(by_key, by_pair)


# --------------------------------------------------------------------------- behavioural windows, trend, recency
def test_behavioural_window_boundaries(lake: Lake) -> None:
    lake.customer(1, T("2023-01-01"))
    day = pd.Timedelta(days=1)
    lake.event(1, A)  # exactly at as_of: excluded everywhere
    lake.event(1, A - pd.Timedelta(microseconds=1), "session", duration=100.0)  # in 7d
    lake.event(1, A - 7 * day, "content", units=3)  # exactly at as_of - 7d: inside 7d
    lake.event(1, A - 7 * day - pd.Timedelta(microseconds=1), "session", duration=50.0)  # 30d, not 7d
    lake.event(1, A - 30 * day, "login")  # inside 30d
    lake.event(1, A - 90 * day, "content", units=None)  # inside 90d, units missing
    lake.event(1, A - 90 * day - pd.Timedelta(seconds=1), "login")  # outside every window
    df = F.build_features(lake.write(), [AS_OF])
    c = one(df, 1)
    expected = {
        "n_events_7d": 2, "n_events_30d": 4, "n_events_90d": 5,
        "n_logins_7d": 0, "n_logins_30d": 1, "n_logins_90d": 1,
        "n_sessions_7d": 1, "n_sessions_30d": 2, "n_sessions_90d": 2,
        "n_content_7d": 1, "n_content_30d": 1, "n_content_90d": 2,
        "total_duration_s_7d": 100.0, "total_duration_s_30d": 150.0, "total_duration_s_90d": 150.0,
        "total_content_units_7d": 3.0, "total_content_units_30d": 3.0, "total_content_units_90d": 3.0,
        "trend_events_7d_vs_90d": (2 / 7) / (5 / 90), "trend_events_30d_vs_90d": (4 / 30) / (5 / 90),
        "no_events_90d_flag": 0, "days_since_last_login": 30, "days_since_last_login_missing": 0,
    }
    assert c[list(expected)].to_dict() == pytest.approx(expected)


def test_custom_windows_are_bound_parameters(lake: Lake) -> None:
    lake.customer(1, T("2023-01-01"))
    for days in (1, 14, 15, 60):
        lake.event(1, A - pd.Timedelta(days=days))
    c = one(F.build_features(lake.write(), [AS_OF], windows=(14, 60)), 1)
    assert (c["n_events_14d"], c["n_events_60d"]) == (2, 4)
    assert c["trend_events_14d_vs_60d"] == pytest.approx((2 / 14) / (4 / 60))
    assert c["days_since_last_login"] == 1


def test_new_customer_has_zero_counts_and_sentinels(lake: Lake) -> None:
    lake.customer(1, A - pd.Timedelta(days=3, hours=5))
    lake.customer(2, T("2020-01-01"))  # long-standing, silent customer
    df = F.build_features(lake.write(), [AS_OF])
    new, old = one(df, 1), one(df, 2)
    counts = [c for c in C.NUMERIC_FEATURES if c.startswith(("n_", "total_"))]
    assert (new[counts] == 0).all() and (old[counts] == 0).all()
    assert new["trend_events_7d_vs_90d"] == 1.0 and new["no_events_90d_flag"] == 1
    assert (new["tenure_days"], new["days_since_last_login"], new["days_since_last_success_payment"]) == (4, 4, 4)
    assert (old["days_since_last_login"], old["days_since_last_success_payment"]) == (90, 180)
    assert new["days_since_last_login_missing"] == 1 and new["days_since_last_success_payment_missing"] == 1


# --------------------------------------------------------------------------- transactions and support
def test_payments_plan_changes_and_support(lake: Lake) -> None:
    lake.customer(1, T("2022-06-01"))
    day = pd.Timedelta(days=1)
    for pid, (ts, status) in enumerate([
        (A - 20 * day + pd.Timedelta(hours=3), "success"),
        (A - 10 * day, "failed"),
        (A - 180 * day, "failed"),  # first day of the 180-day window
        (A - 181 * day, "failed"),  # outside
        (A, "success"),  # at as_of: unseen
    ]):
        lake.add("payments", payment_id=pid, customer_id=1, paid_at=ts, amount=9.99, status=status)
    for cid, (ts, old, new) in enumerate([
        (A - 30 * day, "premium", "standard"),  # downgrade inside 90d
        (A - 200 * day, "basic", "premium"),
        (A - 366 * day, "basic", "standard"),  # outside 365d
    ]):
        lake.add("plan_changes", change_id=cid, customer_id=1, changed_at=ts, old_plan=old, new_plan=new)
    lake.customer(2, T("2022-06-01"))
    # a plan's rank is its typical fee in the periods started before as_of (the business's own plan names)
    for sid, (plan, fee) in enumerate([("basic", 9.99), ("standard", 15.99), ("premium", 22.99), ("premium", 24.99)]):
        lake.add("subscriptions", subscription_id=100 + sid, customer_id=3, plan=plan, monthly_fee=fee,
                 payment_method="card", start_date=A - (400 - sid) * day)
    lake.add("plan_changes", change_id=9, customer_id=2, changed_at=A - 100 * day, old_plan="premium", new_plan="basic")
    lake.add("plan_changes", change_id=10, customer_id=2, changed_at=A - 5 * day, old_plan="basic", new_plan="standard")
    for tid, (opened, resolved) in enumerate([
        (A - 5 * day, None),  # open
        (A - 100 * day, A + day),  # resolved after as_of: open at as_of; outside 90d
        (A - 50 * day, A - 40 * day),  # resolved: closed
        (A, None),  # opened at as_of: unseen
    ]):
        lake.add("support_tickets", ticket_id=tid, customer_id=1, opened_at=opened, category="billing",
                 resolved_at=resolved)
    df = F.build_features(lake.write(), [AS_OF])
    c1, c2 = one(df, 1), one(df, 2)
    assert (c1["days_since_last_success_payment"], c1["days_since_last_success_payment_missing"]) == (20, 0)
    assert c1["n_failed_payments_180d"] == 2
    assert (c1["n_plan_changes_365d"], c1["downgrade_90d_flag"]) == (2, 1)
    assert (c2["n_plan_changes_365d"], c2["downgrade_90d_flag"]) == (2, 0)
    assert (c1["n_tickets_90d"], c1["n_open_tickets"]) == (2, 2)


def test_purchase_rfm_windows_are_half_open_and_count_successful_payments_only(lake: Lake) -> None:
    lake.customer(1, T("2022-06-01"))
    lake.customer(2, T("2022-06-01"))  # never bought: zeros, neutral trend
    day = pd.Timedelta(days=1)
    for pid, (ts, amount, status) in enumerate([
        (A - 1 * day + pd.Timedelta(hours=23), 10.10, "success"),  # last instant before as_of
        (A - 30 * day, 20.00, "success"),  # first day of the 30-day window
        (A - 31 * day, 40.00, "success"),  # outside 30d, inside 90d
        (A - 200 * day, 0.05, "success"),  # inside 365d only
        (A - 365 * day, 1.00, "success"),  # first day of the 365-day window
        (A - 366 * day, 500.0, "success"),  # outside every window
        (A - 5 * day, 99.0, "failed"),  # not a purchase
        (A, 77.0, "success"),  # at as_of: unseen
    ]):
        lake.add("payments", payment_id=pid, customer_id=1, paid_at=ts, amount=amount, status=status)
    df = F.build_features(lake.write(), [AS_OF])
    c1, c2 = one(df, 1), one(df, 2)
    counts = [c1[f"n_purchases_{w}d"] for w in C.PURCHASE_WINDOWS]
    spend = [round(c1[f"total_spend_{w}d"], 2) for w in C.PURCHASE_WINDOWS]
    assert counts == [2, 3, 3, 5] and spend == [30.10, 70.10, 70.10, 71.15]
    assert c1["avg_order_value_365d"] == pytest.approx(71.15 / 5)
    assert c1["aov_trend_90d_vs_365d"] == pytest.approx((70.10 / 3) / (71.15 / 5))
    assert [c2[f"n_purchases_{w}d"] for w in C.PURCHASE_WINDOWS] == [0, 0, 0, 0]
    assert (c2["total_spend_365d"], c2["avg_order_value_365d"], c2["aov_trend_90d_vs_365d"]) == (0.0, 0.0, 1.0)


def test_no_nulls_in_any_feature(lake: Lake) -> None:
    rng = np.random.default_rng(3)
    settings = _random_lake(lake, rng).write()
    df = F.build_features(settings, SNAPSHOTS)
    assert len(df) > 0
    assert not df.isna().any().any(), df.columns[df.isna().any()].tolist()
    assert all(pd.api.types.is_numeric_dtype(df[c]) for c in C.NUMERIC_FEATURES)


def test_empty_lake_gives_empty_frame_with_all_columns(lake: Lake) -> None:
    df = F.build_features(lake.settings, [AS_OF])
    assert df.empty and list(df.columns[2:]) == [f.name for f in C.FEATURES]


def test_write_features_matches_build_and_cli(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _random_lake(lake, np.random.default_rng(5)).write()
    out = tmp_path / "out" / "features.parquet"
    assert F.write_features(settings, SNAPSHOTS[-2:], out) == out
    written = pd.read_parquet(out)
    written["as_of"] = pd.to_datetime(written["as_of"]).astype("datetime64[us]")
    pd.testing.assert_frame_equal(written, F.build_features(settings, SNAPSHOTS[-2:]), check_dtype=False)
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]

    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(settings.data_dir))
    cli_out = tmp_path / "cli.parquet"
    assert cli_main(["features", "--as-of", "2024-05-01", "--as-of", "2024-06-01", "--out", str(cli_out)]) == 0
    assert len(pd.read_parquet(cli_out)) == len(written)


# --------------------------------------------------------------------------- batch vs single, leakage
SNAPSHOTS = [dt.date(2024, m, 1) for m in range(1, 7)]
IDS = range(1, 13)


def _random_lake(lake: Lake, rng: np.random.Generator) -> Lake:
    """A small random lake around SNAPSHOTS that touches every table and feature.

    Timestamps fall on days near the window boundaries of the snapshots (few partitions,
    many boundary cases), at a random time of day or exactly at midnight.
    """
    offsets = (-366, -365, -181, -91, -90, -31, -30, -8, -7, -1, 0, 1, 2)
    days = sorted({T(s) + pd.Timedelta(days=k) for s in SNAPSHOTS for k in offsets})

    def ts() -> pd.Timestamp:
        midnight = rng.random() < 0.3
        return days[rng.integers(len(days))] + pd.Timedelta(seconds=0 if midnight else int(rng.integers(86_400)))

    plans = ["basic", "standard", "premium"]
    for cid in IDS:
        signup = ts() if cid > 10 else T("2023-01-01") + pd.Timedelta(hours=int(rng.integers(24 * 360)))
        lake.customer(cid, signup, birth_year=int(rng.integers(1950, 2005)))
        lake.add("subscriptions", subscription_id=cid * 10, customer_id=cid, plan=plans[cid % 3],
                 monthly_fee=10.0 + cid, payment_method="card", start_date=signup)
        if cid % 4 == 0:
            lake.add("cancellations", customer_id=cid, cancelled_at=max(ts(), signup), reason="price")
    for _ in range(400):
        lake.event(int(rng.choice(IDS)), ts(), str(rng.choice(["login", "session", "content"])),
                   duration=float(rng.integers(1, 900)), units=int(rng.integers(0, 5)))
    for i in range(120):
        lake.add("payments", payment_id=i, customer_id=int(rng.choice(IDS)), paid_at=ts(), amount=10.0,
                 status=str(rng.choice(["success", "success", "failed", "refunded"])))
    for i in range(20):
        old, new = rng.choice(plans, 2, replace=False)
        lake.add("plan_changes", change_id=i, customer_id=int(rng.choice(IDS)), changed_at=ts(),
                 old_plan=str(old), new_plan=str(new))
        lake.add("subscriptions", subscription_id=1000 + i, customer_id=int(rng.choice(IDS)), plan=str(new),
                 monthly_fee=float(rng.integers(5, 30)), payment_method="paypal", start_date=ts())
    for i in range(30):
        opened = ts()
        resolved = None if i % 3 == 0 else opened + pd.Timedelta(days=int(rng.integers(1, 60)))
        lake.add("support_tickets", ticket_id=i, customer_id=int(rng.choice(IDS)), opened_at=opened,
                 category="technical", resolved_at=resolved)
    return lake


@pytest.fixture(scope="module")
def base_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, pd.DataFrame]:
    lake = Lake(load_settings(config_file=None, data_dir=tmp_path_factory.mktemp("base")))
    settings = _random_lake(lake, np.random.default_rng(42)).write()
    return lake, F.build_features(settings, SNAPSHOTS)


def test_batch_and_single_dates_give_identical_rows(base_lake: tuple[Lake, pd.DataFrame]) -> None:
    lake, batch = base_lake
    assert batch["as_of"].nunique() == len(SNAPSHOTS)
    for day in SNAPSHOTS:
        alone = F.build_features(lake.settings, [day])
        part = batch[batch["as_of"] == T(day)].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, part, check_exact=True)


# Mutations of rows whose time is >= a cut-off as_of. Each returns the table it changed.
TIME_COLUMNS = {t: col for t, (_, col) in LAKE_TABLES.items() if t != "labels"}  # labels: not features


def _mutate(rows: dict[str, list[dict[str, Any]]], table: str, op: str, when: pd.Timestamp,
            pick: int, cid: int) -> None:
    """Add, change or delete one row of ``table`` timed at/after ``when``; rows before it stay.

    ``resolve`` (support tickets only) flips ``resolved_at`` (missing <-> a time >= ``when``)
    of a ticket still open at ``when``.
    """
    col = TIME_COLUMNS[table]
    later = [r for r in rows[table] if r[col] >= when]
    if op == "resolve":
        still_open = [r for r in rows[table] if r["opened_at"] < when and (r["resolved_at"] or when) >= when]
        if still_open:
            ticket = still_open[pick % len(still_open)]
            ticket["resolved_at"] = None if ticket["resolved_at"] is not None else when + pd.Timedelta(hours=pick)
        return
    if op == "delete" and later:
        rows[table].remove(later[pick % len(later)])
        return
    if op == "change" and later:
        row = later[pick % len(later)]
        row[col] = when
        row["customer_id"] = cid if table != "cancellations" else row["customer_id"]
        return
    template = dict(rows[table][pick % len(rows[table])])
    template.update({col: when, "customer_id": cid})
    if table == "cancellations" and any(r["customer_id"] == cid for r in rows[table]):
        return
    if table == "customers":
        template.update(region="east", birth_year=1901, signup_date=min(template["signup_date"], when))
    for key in ("payment_id", "change_id", "ticket_id", "subscription_id"):
        if key in template:
            template[key] = 10_000 + len(rows[table])
    rows[table].append(template)


def _changed_days(
    old: list[dict[str, Any]], new: list[dict[str, Any]], col: str
) -> dict[pd.Timestamp, list[dict[str, Any]]]:
    """The day partitions whose rows differ, with their new rows."""
    def by_day(rows: list[dict[str, Any]]) -> dict[pd.Timestamp, list[dict[str, Any]]]:
        out: dict[pd.Timestamp, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            out[r[col].normalize()].append(r)
        return out

    a, b = by_day(old), by_day(new)
    return {day: b.get(day, []) for day in a.keys() | b.keys() if a.get(day) != b.get(day)}


def _mutation(table: str) -> st.SearchStrategy[tuple[str, int, int, int]]:
    """(op, seconds after the cut-off, row pick, customer id) for one table; "none" shrinks best."""
    ops = ["none", "add", "change", "delete"] + (["resolve"] if table == "support_tickets" else [])
    offset_s = st.one_of(st.just(0), st.integers(0, 86_400), st.integers(0, 60 * 86_400))
    return st.tuples(st.sampled_from(ops), offset_s, st.integers(0, 1_000), st.sampled_from(list(IDS)))


@hsettings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(
    cut=st.integers(0, len(SNAPSHOTS) - 1),
    plan=st.fixed_dictionaries({t: _mutation(t) for t in sorted(TIME_COLUMNS)}),
)
def test_rows_at_or_after_as_of_never_change_features(
    base_lake: tuple[Lake, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory,
    cut: int, plan: dict[str, tuple[str, int, int, int]],
) -> None:
    """Leakage property: mutating source rows timed >= as_of leaves that as_of's rows bit-identical.

    Every example mutates (adds, changes, deletes; re-resolves a ticket) rows of several
    tables at or after the cut-off snapshot, then compares the feature rows of every
    snapshot <= the cut-off. The six dates are computed in one batch, so rows after the
    earlier cut-offs are read from the lake and must be filtered by the SQL itself, not
    by partition pruning.

    The check can fail: each of these one-token leaks in the SQL makes it fail (tried while
    writing it): ``range(1, ...)`` -> ``range(0, ...)`` in sql/features_asof_days.sql;
    ``t.opened_at < a.as_of`` -> ``TRUE`` or dropping ``OR t.resolved_at >= a.as_of`` in
    sql/features_support.sql; ``<`` -> ``<=`` in the ASOF / cancellation conditions of
    sql/features_population.sql and sql/features_subscription.sql.
    """
    base, before = base_lake
    lake = Lake(load_settings(config_file=None, data_dir=tmp_path_factory.mktemp("mutated")))
    lake.rows = defaultdict(list, {t: [dict(r) for r in rs] for t, rs in base.rows.items()})
    for table, (op, offset_s, pick, cid) in plan.items():
        if op != "none":
            _mutate(lake.rows, table, op, T(SNAPSHOTS[cut]) + pd.Timedelta(seconds=offset_s), pick, cid)
    shutil.copytree(base.settings.lake_dir, lake.settings.lake_dir)
    for table, (_, time_col) in LAKE_TABLES.items():
        for day, rows in _changed_days(base.rows[table], lake.rows[table], time_col).items():
            write_window(lake.settings, table, lake.frame(table, rows), day, day + pd.Timedelta(days=1))
    after = F.build_features(lake.settings, SNAPSHOTS)
    seen = T(SNAPSHOTS[cut])
    pd.testing.assert_frame_equal(
        after[after["as_of"] <= seen].reset_index(drop=True),
        before[before["as_of"] <= seen].reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize("table", sorted(TIME_COLUMNS))
def test_same_mutation_before_as_of_is_visible(
    base_lake: tuple[Lake, pd.DataFrame], tmp_path: Path, table: str
) -> None:
    """Control for the property test: the mutations do reach the features when timed before as_of."""
    base, before = base_lake
    lake = Lake(load_settings(config_file=None, data_dir=tmp_path))
    lake.rows = defaultdict(list, {t: [dict(r) for r in rs] for t, rs in base.rows.items()})
    day = SNAPSHOTS[-1]
    victim = int(before.loc[before["as_of"] == T(day), "customer_id"].iloc[0])
    when = T(day) - pd.Timedelta(days=3)
    if table == "cancellations":
        lake.rows[table] = [r for r in lake.rows[table] if r["customer_id"] != victim]
    _mutate(lake.rows, table, "add", when, 0, victim)
    lake.rows[table][-1].update({"payments": {"status": "failed"}, "subscriptions": {"monthly_fee": 99.0}}.get(table, {}))
    after = F.build_features(lake.write(), [day])
    assert not after.equals(before[before["as_of"] == T(day)].reset_index(drop=True))


def test_readme_catalogue_is_the_codes() -> None:
    """The analysts' feature catalogue (docs/features.md) is generated from the code, not hand-kept."""
    from conftest import ROOT

    assert C.feature_catalogue_markdown().strip() in (ROOT / "docs" / "features.md").read_text()
