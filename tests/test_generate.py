"""Tests of the synthetic data generator (sim/churnflow_sim/generate.py and the modules it drives:
constants, behaviour, tables, writers)."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from churnflow_sim import behaviour, cli, constants, tables, writers
from churnflow_sim import generate as gen
from churnflow_sim.common import (
    CANCEL_REASONS,
    CHANNELS,
    GENDERS,
    PAYMENT_METHODS,
    PLAN_FEES,
    PLANS,
    REGIONS,
    TICKET_CATEGORIES,
    WINDOW_DAYS,
    insert,
)
from pipeline.config import Settings, load_settings
from pipeline.ingestion.contract import (
    EVENT_TYPES,
    EVENTS_SCHEMA,
    PAYMENT_STATUSES,
    SOURCE_TABLES,
    TS,
)

START = pd.Timestamp("2025-01-01")
END = pd.Timestamp("2025-07-01")
DRIFT = dt.date(2025, 4, 1)
DAY = pd.Timedelta(days=1)
WINDOW = pd.Timedelta(days=WINDOW_DAYS)
RAISED_FEES = {plan: round(fee * constants.PRICE_RISE, 2) for plan, fee in PLAN_FEES.items()}


@dataclass
class Dataset:
    settings: Settings
    summary: dict
    tables: dict[str, pd.DataFrame]
    events: pd.DataFrame
    truth: pd.DataFrame


def _settings(data_dir: Path) -> Settings:
    return load_settings(config_file=None, data_dir=data_dir, source_db_url="")


def _read_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    eng = sa.create_engine(settings.db_url)
    try:
        return {name: pd.read_sql_table(name, eng) for name in constants.TABLES}
    finally:
        eng.dispose()


def _read_events(settings: Settings) -> pd.DataFrame:
    dataset = pads.dataset(settings.landing_dir / "events", format="parquet", partitioning="hive")
    return dataset.to_table().to_pandas()


def _read_truth(settings: Settings) -> pd.DataFrame:
    return pd.read_parquet(settings.truth_dir / writers.TRUTH_FILE)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """5,000 customers, Jan-Jun 2025, price rise and tiktok from April."""
    settings = _settings(tmp_path_factory.mktemp("gen"))
    summary = gen.generate(settings, 5_000, 6, seed=1, drift_from=DRIFT, progress=None)
    return Dataset(settings, summary, _read_tables(settings), _read_events(settings), _read_truth(settings))


@pytest.fixture(scope="module")
def labelled(data: Dataset) -> pd.DataFrame:
    """Truth rows whose 30-day window lies inside the period, with the realised label."""
    cancelled = data.tables["cancellations"].set_index("customer_id")["cancelled_at"]
    truth = data.truth[data.truth["month_start"] + WINDOW <= END].copy()
    truth["y"] = (truth["customer_id"].map(cancelled) < truth["month_start"] + WINDOW).astype(int)
    return truth


# --- contract ---------------------------------------------------------------------------------


def test_database_tables_have_the_contract_columns_types_keys_and_indexes(data: Dataset) -> None:
    inspector = sa.inspect(sa.create_engine(data.settings.db_url))
    for name in constants.TABLES:
        source = SOURCE_TABLES[name]
        columns = inspector.get_columns(name)
        fields = tables.generated_fields(source)
        assert [c["name"] for c in columns] == [f.name for f in fields], name
        for column, field in zip(columns, fields, strict=True):
            assert isinstance(column["type"], type(writers._sql_type(field.type))), (name, field.name)
        assert inspector.get_pk_constraint(name)["constrained_columns"] == list(source.key)
        assert [source.time_column] in [ix["column_names"] for ix in inspector.get_indexes(name)]


def test_values_are_in_the_allowed_sets_and_timestamps_are_datetimes(data: Dataset) -> None:
    t = data.tables
    allowed = {
        ("customers", "gender"): GENDERS,
        ("customers", "region"): REGIONS,
        ("customers", "acquisition_channel"): CHANNELS,
        ("subscriptions", "plan"): PLANS,
        ("subscriptions", "payment_method"): PAYMENT_METHODS,
        ("payments", "status"): PAYMENT_STATUSES,
        ("plan_changes", "old_plan"): PLANS,
        ("plan_changes", "new_plan"): PLANS,
        ("support_tickets", "category"): TICKET_CATEGORIES,
        ("cancellations", "reason"): CANCEL_REASONS,
    }
    for (table, column), values in allowed.items():
        assert set(t[table][column]) <= set(values), (table, column)
    for name in constants.TABLES:
        for field in tables.generated_fields(SOURCE_TABLES[name]):
            if field.type == TS:
                assert pd.api.types.is_datetime64_any_dtype(t[name][field.name]), (name, field.name)
    assert set(t["payments"]["status"]) == set(PAYMENT_STATUSES)
    assert (t["payments"]["amount"] > 0).all()
    tickets = t["support_tickets"]
    resolved = tickets["resolved_at"].notna()
    assert (tickets.loc[resolved, "resolved_at"] > tickets.loc[resolved, "opened_at"]).all()
    assert (tickets.loc[~resolved, "opened_at"] > END - pd.Timedelta(days=30)).all()


def test_customers_base_signups_and_first_subscriptions(data: Dataset) -> None:
    customers = data.tables["customers"]
    assert len(customers) == 5_000
    assert (customers["updated_at"] == customers["signup_date"]).all()
    assert 0.55 < (customers["signup_date"] < START).mean() < 0.65
    assert customers["signup_date"].min() >= START - pd.Timedelta(days=3 * 366)
    assert customers["signup_date"].max() < END
    first = data.tables["subscriptions"].sort_values("start_date").groupby("customer_id").first()
    signup = customers.set_index("customer_id")["signup_date"]
    assert first["start_date"].equals(signup.reindex(first.index))
    assert len(first) == len(customers)


def test_activity_stops_at_cancellation(data: Dataset) -> None:
    t = data.tables
    cancelled = t["cancellations"].set_index("customer_id")["cancelled_at"]
    signup = t["customers"].set_index("customer_id")["signup_date"]
    assert t["cancellations"]["customer_id"].is_unique
    for table, column in [("payments", "paid_at"), ("plan_changes", "changed_at"), ("support_tickets", "opened_at")]:
        rows = t[table]
        assert (rows[column] < rows["customer_id"].map(cancelled).fillna(END)).all(), table
        assert (rows[column] >= rows["customer_id"].map(signup)).all(), table
    assert (cancelled > signup.reindex(cancelled.index)).all()


def test_plan_changes_and_payments_agree_with_subscription_periods(data: Dataset) -> None:
    t = data.tables
    subs = t["subscriptions"].sort_values(["start_date", "subscription_id"])
    changes = t["plan_changes"].merge(
        subs, left_on=["customer_id", "changed_at"], right_on=["customer_id", "start_date"], how="left"
    )
    assert (changes["plan"] == changes["new_plan"]).all()
    assert (changes["new_plan"] != changes["old_plan"]).all()
    current = pd.merge_asof(
        t["payments"].sort_values("paid_at"), subs, left_on="paid_at", right_on="start_date", by="customer_id"
    )
    assert np.allclose(current["amount"], current["monthly_fee"])
    assert (current.groupby(["customer_id", current["paid_at"].dt.to_period("M")]).size() == 1).all()


def test_event_files_match_the_schema_and_rules(data: Dataset) -> None:
    root = data.settings.landing_dir / "events"
    days = pd.date_range(START, END - DAY, freq="D")
    files = sorted(root.glob("date=*/events.parquet"))
    assert [f.parent.name for f in files] == [f"date={d.date().isoformat()}" for d in days]
    assert pq.read_schema(files[0]).remove_metadata().equals(EVENTS_SCHEMA)
    ev = data.events
    assert (ev["event_ts"].dt.normalize() == pd.to_datetime(ev["date"].astype(str))).all()
    assert set(ev["event_type"]) == set(EVENT_TYPES)
    login, content = ev["event_type"] == "login", ev["event_type"] == "content"
    assert (ev.loc[login, "duration_s"] == 0).all() and (ev.loc[~login, "duration_s"] > 0).all()
    assert (ev.loc[content, "content_units"] > 0).all() and (ev.loc[~content, "content_units"] == 0).all()
    signup = data.tables["customers"].set_index("customer_id")["signup_date"]
    cancelled = data.tables["cancellations"].set_index("customer_id")["cancelled_at"]
    assert (ev["event_ts"] >= ev["customer_id"].map(signup)).all()
    assert (ev["event_ts"] < ev["customer_id"].map(cancelled).fillna(END)).all()
    per_active_day = len(ev) / data.truth.groupby("month_start").size().mean() / len(days)
    assert 0.4 < per_active_day < 0.8


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path: Path) -> None:
    runs = {}
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        settings = _settings(tmp_path / name)
        gen.generate(settings, 400, 2, seed=seed, drift_from=dt.date(2025, 2, 10), progress=None)
        runs[name] = (_read_tables(settings), _read_events(settings), _read_truth(settings))
    (tables_a, events_a, truth_a), (tables_b, events_b, truth_b), (tables_c, events_c, _) = runs.values()
    for name in constants.TABLES:
        pd.testing.assert_frame_equal(tables_a[name], tables_b[name])
    pd.testing.assert_frame_equal(events_a, events_b)
    pd.testing.assert_frame_equal(truth_a, truth_b)
    assert not tables_a["customers"].equals(tables_c["customers"])
    assert len(events_a) != len(events_c) or not events_a.equals(events_c)


def test_rerun_replaces_previous_output(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    gen.generate(settings, 300, 2, seed=3, progress=None)
    summary = gen.generate(settings, 200, 1, seed=3, progress=None)
    assert len(_read_tables(settings)["customers"]) == 200
    assert len(list((settings.landing_dir / "events").glob("date=*"))) == 31
    assert len(_read_events(settings)) == summary["rows"]["events"]


# --- truth and learnability ---------------------------------------------------------------------


def test_truth_covers_exactly_the_active_customers(data: Dataset) -> None:
    customers = data.tables["customers"].set_index("customer_id")
    cancelled = data.tables["cancellations"].set_index("customer_id")["cancelled_at"].reindex(customers.index)
    truth = data.truth
    assert truth["month_start"].drop_duplicates().tolist() == list(pd.date_range(START, periods=6, freq="MS"))
    for month_start, rows in truth.groupby("month_start"):
        active = customers.index[(customers["signup_date"] < month_start) & ~(cancelled < month_start)]
        assert sorted(rows["customer_id"]) == sorted(active)
    assert truth["p_cancel_30d"].between(0, 1, inclusive="neither").all()
    assert str(truth["month_start"].dtype).startswith("datetime64")


def test_truth_matches_the_realised_cancellation_rate(data: Dataset, labelled: pd.DataFrame) -> None:
    p = labelled["p_cancel_30d"]
    z = (labelled["y"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4
    assert 0.03 < labelled["y"].mean() < 0.08
    assert data.summary["churn_rate_30d"] == pytest.approx(labelled["y"].mean())
    assert roc_auc_score(labelled["y"], p) > 0.75


def test_churners_engagement_drops_before_cancellation(data: Dataset) -> None:
    signup = data.tables["customers"].set_index("customer_id")["signup_date"]
    churn = data.tables["cancellations"]
    churn = churn[(churn["cancelled_at"] >= START + 90 * DAY)]
    churn = churn[churn["customer_id"].map(signup) < churn["cancelled_at"] - 90 * DAY]
    ev = data.events.merge(churn[["customer_id", "cancelled_at"]], on="customer_id")
    before = (ev["cancelled_at"] - ev["event_ts"]) / DAY
    recent_rate = (before <= 30).sum() / 30
    earlier_rate = ((before > 30) & (before <= 90)).sum() / 60
    assert len(churn) > 100
    assert recent_rate < 0.9 * earlier_rate


def _features(data: Dataset, rows: pd.DataFrame, month_start: pd.Timestamp) -> pd.DataFrame:
    """A few hand-made point-in-time features for the customers in ``rows``."""
    ids = rows["customer_id"]
    ev = data.events[data.events["event_ts"] < month_start]
    pay = data.tables["payments"]
    tickets = data.tables["support_tickets"]

    def count(frame: pd.DataFrame, column: str, days: int) -> np.ndarray:
        recent = frame[frame[column] >= month_start - days * DAY]
        return recent.groupby("customer_id").size().reindex(ids).fillna(0).to_numpy()

    logins = ev[ev["event_type"] == "login"]
    failed = pay[(pay["status"] == "failed") & (pay["paid_at"] < month_start)]
    signup = data.tables["customers"].set_index("customer_id")["signup_date"].reindex(ids)
    return pd.DataFrame(
        {
            "logins_30": np.log1p(count(logins, "event_ts", 30)),
            "trend": np.log1p(count(ev, "event_ts", 30)) - np.log1p(count(ev, "event_ts", 90) / 3),
            "failed_90": count(failed, "paid_at", 90),
            "tickets_60": count(tickets[tickets["opened_at"] < month_start], "opened_at", 60),
            "tenure": np.log1p((month_start - signup).dt.days.to_numpy()),
        }
    )


def test_trivial_model_on_hand_made_features_beats_chance(data: Dataset, labelled: pd.DataFrame) -> None:
    frames = []
    for month_start in pd.date_range("2025-03-01", "2025-05-01", freq="MS"):
        rows = labelled[labelled["month_start"] == month_start]
        frames.append((_features(data, rows, month_start), rows))
    train_x = pd.concat([x for x, _ in frames[:-1]])
    train_y = pd.concat([r["y"] for _, r in frames[:-1]])
    test_x, test_rows = frames[-1]
    model = LogisticRegression(max_iter=1_000).fit(train_x, train_y)
    auc = roc_auc_score(test_rows["y"], model.predict_proba(test_x)[:, 1])
    assert auc > 0.65
    assert roc_auc_score(test_rows["y"], test_rows["p_cancel_30d"]) > auc


def test_truth_is_the_hazard_of_the_observable_features(source_data: Settings) -> None:
    """The truth is the best achievable score: a function of what the pipeline's features see.

    The generator's hazard, fed with the feature values that pipeline.features.build computes
    from the ingested lake (an independent implementation of the same counts), gives back
    the recorded truth for every active customer. Month starts with no spill-over from a
    short previous month and a full 90-day history: 1 May and 1 June 2025.
    """
    from pipeline.context import TRAINING_DAG
    from pipeline.features.build import build_features
    from pipeline.flows import run_ingestion

    run_ingestion(source_data, TRAINING_DAG, "2025-07-01")
    features = build_features(source_data, ["2025-05-01", "2025-06-01"])
    truth = _read_truth(source_data).rename(columns={"month_start": "as_of"})
    rows = features.merge(truth, on=["customer_id", "as_of"], how="outer", validate="one_to_one", indicator=True)
    rows = rows[rows["as_of"].isin(features["as_of"].unique())]
    assert (rows["_merge"] == "both").all(), rows["_merge"].value_counts()  # the same customers are active
    tenure = rows["tenure_days"].to_numpy()
    observed = behaviour.Observed(
        events={w: rows[f"n_events_{w}d"].to_numpy() for w in constants.USAGE_WINDOWS},
        usage_days={w: np.minimum(tenure, w) for w in constants.USAGE_WINDOWS},
        tenure_days=tenure,
        failed_payments=rows[f"n_failed_payments_{constants.FAILED_PAYMENT_DAYS}d"].to_numpy(),
        tickets=rows[f"n_tickets_{constants.TICKET_DAYS}d"].to_numpy(),
        downgraded=rows[f"downgrade_{constants.DOWNGRADE_DAYS}d_flag"].to_numpy(),
        price_ratio=(rows["monthly_fee"] / rows["plan"].map(PLAN_FEES)).to_numpy(),
        channel=rows["acquisition_channel"].map(CHANNELS.index).to_numpy(),
        age=rows["age"].to_numpy(),
    )
    p = -np.expm1(WINDOW_DAYS * np.log1p(-behaviour.daily_hazard(observed)))
    assert len(rows) > 1_000 and rows["downgrade_90d_flag"].sum() > 0 and rows["n_failed_payments_180d"].sum() > 0
    np.testing.assert_allclose(p, rows["p_cancel_30d"], rtol=1e-9)


# --- drift ---------------------------------------------------------------------------------------


def test_drift_brings_tiktok_and_a_price_rise(data: Dataset) -> None:
    customers = data.tables["customers"]
    drift = pd.Timestamp(DRIFT)
    tiktok = customers["acquisition_channel"] == "tiktok"
    assert (customers.loc[tiktok, "signup_date"] >= drift).all()
    assert tiktok[customers["signup_date"] >= drift].mean() > 0.15
    assert customers.loc[tiktok, "birth_year"].mean() > customers.loc[~tiktok, "birth_year"].mean() + 8

    subs = data.tables["subscriptions"]
    list_fee = subs["plan"].map(PLAN_FEES)
    raised_fee = subs["plan"].map(RAISED_FEES)
    before, repriced = subs["start_date"] < drift, subs["start_date"] >= pd.Timestamp("2025-05-01")
    assert (subs.loc[before, "monthly_fee"] == list_fee[before]).all()
    assert (subs.loc[repriced, "monthly_fee"] == raised_fee[repriced]).all()
    # existing customers get a new period at their first billing from the drift date
    april = subs[~before & ~repriced].merge(customers, on="customer_id")
    raised = april["monthly_fee"] == april["plan"].map(RAISED_FEES)
    price_rows = april[(april["start_date"] > april["signup_date"]) & raised]
    assert price_rows["customer_id"].nunique() > 2_000

    pay = data.tables["payments"]
    assert (pay.loc[pay["paid_at"] < drift, "amount"].isin(PLAN_FEES.values())).all()
    june = pay[pay["paid_at"] >= pd.Timestamp("2025-06-01")]
    assert june["amount"].isin(RAISED_FEES.values()).all()
    assert data.truth.groupby("month_start")["p_cancel_30d"].mean().loc["2025-05-01"] > (
        data.truth.groupby("month_start")["p_cancel_30d"].mean().loc["2025-03-01"]
    )


def test_without_drift_there_is_no_tiktok_and_no_price_change(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    gen.generate(settings, 1_000, 3, seed=5, progress=None)
    tables = _read_tables(settings)
    assert "tiktok" not in set(tables["customers"]["acquisition_channel"])
    assert tables["subscriptions"]["monthly_fee"].isin(PLAN_FEES.values()).all()
    assert len(tables["subscriptions"]) == len(tables["customers"]) + len(tables["plan_changes"])


# --- database writing and the command line ----------------------------------------------------------


def test_core_insert_and_driver_executemany_store_the_same_values(tmp_path: Path) -> None:
    """The SQLite fast path binds values exactly like SQLAlchemy Core (the path other databases use)."""
    source = SOURCE_TABLES["support_tickets"]
    columns = {
        "ticket_id": np.array([1, 2]),
        "customer_id": np.array([10, 11]),
        "opened_at": np.array(["2025-01-01T10:00:00.123456", "2025-01-02T00:00:00"], dtype="datetime64[us]"),
        "category": np.array(["billing", "technical"], dtype=object),
        "resolved_at": np.array(["2025-01-01T12:00:00", "NaT"], dtype="datetime64[us]"),
    }
    stored = []
    for use_driver in (True, False):
        eng = sa.create_engine(f"sqlite:///{tmp_path / f'{use_driver}.db'}")
        table = writers.sql_table(source, sa.MetaData())
        with eng.begin() as conn:
            table.create(conn)
            insert(conn, table, columns, use_driver=use_driver)
        with eng.connect() as conn:
            stored.append(conn.exec_driver_sql("SELECT * FROM support_tickets ORDER BY ticket_id").fetchall())
            typed = conn.execute(sa.select(table).order_by(table.c.ticket_id)).fetchall()
        eng.dispose()
        assert typed[0].opened_at == dt.datetime(2025, 1, 1, 10, 0, 0, 123456)
        assert typed[1].resolved_at is None
    assert stored[0] == stored[1]


@pytest.mark.parametrize(
    ("start", "drift_from"),
    [(dt.date(2025, 1, 15), None), (dt.date(2025, 1, 1), dt.date(2024, 12, 31)), (dt.date(2025, 1, 1), dt.date(2025, 3, 1))],
)
def test_invalid_arguments_are_rejected(tmp_path: Path, start: dt.date, drift_from: dt.date | None) -> None:
    with pytest.raises(ValueError):
        gen.generate(_settings(tmp_path), 10, 2, seed=1, start=start, drift_from=drift_from, progress=None)


def test_command_line_generates_into_the_configured_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CHURNFLOW_SOURCE_DB_URL", raising=False)
    monkeypatch.delenv("CHURNFLOW_CONFIG", raising=False)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--customers", "150", "--months", "1", "--seed", "4", "--start", "2025-03-01"])
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "simulated 2025-03, " in out and "database: sqlite:///" in out
    assert (tmp_path / "data" / "source.db").is_file()
    assert (tmp_path / "data" / "truth" / writers.TRUTH_FILE).is_file()


# --- slow ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_truth_is_calibrated_per_month_and_decile(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    gen.generate(settings, 40_000, 6, seed=11, progress=None)
    cancelled = _read_tables(settings)["cancellations"].set_index("customer_id")["cancelled_at"]
    truth = _read_truth(settings)
    truth = truth[truth["month_start"] + WINDOW <= END]
    y = (truth["customer_id"].map(cancelled) < truth["month_start"] + WINDOW).astype(int)
    groups = [truth["month_start"], pd.qcut(truth["p_cancel_30d"], 10, labels=False)]
    for key in groups:
        p = truth["p_cancel_30d"]
        stats = pd.DataFrame({"y": y, "p": p, "v": p * (1 - p), "key": key}).groupby("key").sum()
        z = (stats["y"] - stats["p"]) / np.sqrt(stats["v"])
        assert (z.abs() < 4).all(), z
