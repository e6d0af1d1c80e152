"""Tests of pipeline.features.labels: half-open label windows, population, completeness, inactivity,
and the choice of training snapshot dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.config import Settings, load_settings
from pipeline.features import build as F
from pipeline.features.labels import (
    IncompleteLabelWindowError,
    build_labels,
    month_starts,
    training_snapshot_dates,
)
from pipeline.ingestion.contract import LAKE_TABLES
from pipeline.ingestion.lake import write_window

T = pd.Timestamp
AS_OF = dt.date(2024, 6, 1)
A = T(AS_OF)
DAY = pd.Timedelta(days=1)
DATA_END = dt.date(2024, 9, 1)


def write(settings: Settings, table: str, rows: list[dict[str, Any]]) -> None:
    schema, _ = LAKE_TABLES[table]
    frame = pa.Table.from_pylist(rows, schema=schema).to_pandas()
    write_window(settings, table, frame, dt.date(2023, 1, 1), DATA_END)


def customers(settings: Settings, n: int) -> None:
    write(settings, "customers", [
        dict(customer_id=i, signup_date=T("2024-01-01"), birth_year=1990, gender="F", region="north",
             acquisition_channel="organic", updated_at=T("2024-01-01"))
        for i in range(1, n + 1)
    ])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(config_file=None, data_dir=tmp_path)


def labels_of(df: pd.DataFrame, as_of: dt.date = AS_OF) -> dict[int, int]:
    rows = df[df["as_of"] == T(as_of)]
    return dict(zip(rows["customer_id"].tolist(), rows["label"].tolist(), strict=True))


def test_cancellation_window_is_half_open_and_cancelled_customers_are_not_rows(settings: Settings) -> None:
    customers(settings, 6)
    write(settings, "cancellations", [
        dict(customer_id=1, cancelled_at=A, reason="price"),  # at as_of: inside
        dict(customer_id=2, cancelled_at=A + 30 * DAY - pd.Timedelta(microseconds=1), reason="price"),  # last instant
        dict(customer_id=3, cancelled_at=A + 30 * DAY, reason="price"),  # at as_of + horizon: outside
        dict(customer_id=4, cancelled_at=A - pd.Timedelta(seconds=1), reason="price"),  # already gone
        dict(customer_id=5, cancelled_at=A + 60 * DAY, reason="price"),
    ])
    df = build_labels(settings, [AS_OF], horizon_days=30, data_end=DATA_END)
    assert list(df.columns) == ["customer_id", "as_of", "label"] and df["label"].dtype == "int8"
    assert labels_of(df) == {1: 1, 2: 1, 3: 0, 5: 0, 6: 0}


def test_labels_rows_are_the_feature_population_for_many_dates(settings: Settings) -> None:
    customers(settings, 4)
    write(settings, "cancellations", [dict(customer_id=2, cancelled_at=A + 40 * DAY, reason="other")])
    dates = [AS_OF, dt.date(2024, 7, 1)]
    labels = build_labels(settings, dates, horizon_days=30, data_end=DATA_END)
    features = F.build_features(settings, dates)
    pd.testing.assert_frame_equal(labels[["customer_id", "as_of"]], features[["customer_id", "as_of"]])
    assert labels_of(labels, AS_OF)[2] == 0 and labels_of(labels, dt.date(2024, 7, 1))[2] == 1


def test_incomplete_label_window_raises(settings: Settings) -> None:
    customers(settings, 1)
    last_ok = dt.date(2024, 8, 2)  # + 30 days == data_end
    assert len(build_labels(settings, [last_ok], horizon_days=30, data_end=DATA_END)) == 1
    with pytest.raises(IncompleteLabelWindowError, match="2024-08-03"):
        build_labels(settings, [AS_OF, dt.date(2024, 8, 3)], horizon_days=30, data_end=DATA_END)
    with pytest.raises(IncompleteLabelWindowError):
        build_labels(settings, [dt.date(2024, 8, 20)], horizon_days=7, data_end=DATA_END,
                     kind="inactivity", inactivity_days=30)
    with pytest.raises(ValueError, match="unknown label kind"):
        build_labels(settings, [AS_OF], horizon_days=30, data_end=DATA_END, kind="churn")  # type: ignore[arg-type]


def test_inactivity_label(settings: Settings) -> None:
    customers(settings, 6)
    looked_back = [dict(customer_id=c, event_ts=A - 10 * DAY, event_type="login") for c in (1, 2, 4, 5)]
    write(settings, "events", [*looked_back,
        dict(customer_id=1, event_ts=A, event_type="login"),  # active at the first instant
        dict(customer_id=3, event_ts=A + 30 * DAY, event_type="login"),  # just after the window
        dict(customer_id=3, event_ts=A - DAY, event_type="login"),  # before as_of: does not count
    ])
    write(settings, "payments", [
        dict(payment_id=1, customer_id=2, paid_at=A + 29 * DAY, amount=9.99, status="success"),
        dict(payment_id=2, customer_id=4, paid_at=A + 5 * DAY, amount=9.99, status="failed"),
    ])
    df = build_labels(settings, [AS_OF], horizon_days=90, data_end=dt.date(2024, 7, 1),
                      kind="inactivity", inactivity_days=30)
    # customer 6 had no activity in the look-back [as_of - 30 days, as_of): not an active customer, not a row
    assert labels_of(df) == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}


def test_month_starts() -> None:
    assert month_starts(dt.date(2023, 11, 15), dt.date(2024, 2, 1)) == [
        dt.date(2023, 12, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    assert month_starts(dt.date(2024, 1, 1), dt.date(2024, 1, 31)) == [dt.date(2024, 1, 1)]
    assert month_starts(dt.date(2024, 1, 2), dt.date(2024, 1, 31)) == []


def test_training_snapshot_dates() -> None:
    start, end = dt.date(2023, 1, 1), dt.date(2024, 1, 15)
    # label windows must end by 2024-01-15: the latest usable month start is 2023-12-01
    assert training_snapshot_dates(start, end, 3, 30) == [
        dt.date(2023, 10, 1), dt.date(2023, 11, 1), dt.date(2023, 12, 1)]
    # 90 days of history: 2023-04-01 is the first full one; shorter history only fills up
    assert training_snapshot_dates(start, dt.date(2023, 6, 1), 6, 30)[:2] == [
        dt.date(2023, 2, 1), dt.date(2023, 3, 1)]
    assert training_snapshot_dates(start, dt.date(2023, 6, 1), 2, 30) == [dt.date(2023, 4, 1), dt.date(2023, 5, 1)]
    with pytest.raises(ValueError):
        training_snapshot_dates(start, dt.date(2023, 1, 20), 1, 30)


def test_inactivity_label_sees_only_its_window_and_features_never_see_it(settings: Settings) -> None:
    """Leakage, as for the cancellation label: activity outside [as_of, as_of + N) never changes
    an inactivity label, and activity inside it never changes the features at as_of."""
    customers(settings, 3)
    base = [dict(customer_id=c, event_ts=A - 10 * DAY, event_type="login") for c in (1, 2, 3)]  # active customers
    inside = [dict(customer_id=1, event_ts=A + 3 * DAY, event_type="session", duration_s=60.0)]
    outside = [dict(customer_id=2, event_ts=A - pd.Timedelta(microseconds=1), event_type="login"),  # just before
               dict(customer_id=2, event_ts=A + 30 * DAY, event_type="login"),  # at the window end: outside
               dict(customer_id=3, event_ts=A + 45 * DAY, event_type="content", content_units=3)]
    inactive = {"horizon_days": 30, "data_end": DATA_END, "kind": "inactivity", "inactivity_days": 30}
    write(settings, "events", base + outside)
    only_outside = build_labels(settings, [AS_OF], **inactive)
    features_before = F.build_features(settings, [AS_OF])
    write(settings, "events", base + inside + outside)
    assert labels_of(only_outside) == {1: 1, 2: 1, 3: 1}  # activity outside the window makes no one active
    assert labels_of(build_labels(settings, [AS_OF], **inactive)) == {1: 0, 2: 1, 3: 1}
    pd.testing.assert_frame_equal(F.build_features(settings, [AS_OF]), features_before)


def test_label_kind_is_a_setting_and_names_its_window(settings: Settings) -> None:
    from pipeline.features.labels import label_spec

    assert label_spec(settings) == {"kind": "cancellation", "window_days": 30,
                                    "definition": label_spec(settings)["definition"]}
    inactive = settings.replace(label_kind="inactivity", inactivity_days=45)
    assert inactive.label_window_days == 45 and "no event and no successful payment" in label_spec(inactive)["definition"]
    with pytest.raises(ValueError, match="config label_kind: 'purchases' is not one of cancellation, inactivity"):
        settings.replace(label_kind="purchases")


def _period(sid: int, cid: int, start: pd.Timestamp, end: pd.Timestamp, plan: str = "M1") -> dict[str, Any]:
    return dict(subscription_id=sid, customer_id=cid, plan=plan, monthly_fee=0.0 if plan == "TRIAL" else 9.0,
                payment_method="41", start_date=start, end_date=end, auto_renew=True)


def test_non_renewal_label_is_a_period_due_in_the_horizon_and_not_renewed_within_the_grace(settings: Settings) -> None:
    """Due: the paid-through date E (latest end of the periods started before as_of) falls in
    [as_of, as_of + 30); churned: no period starts in [as_of, E + 30 days)."""
    customers(settings, 8)
    E = A + 9 * DAY
    write(settings, "subscriptions", [
        _period(1, 1, A - 30 * DAY, E), _period(11, 1, E, E + 30 * DAY),  # renewed on time
        _period(2, 2, A - 7 * DAY, E, plan="TRIAL"),  # a free trial that is not followed by a paid period
        _period(3, 3, A - 30 * DAY, E), _period(13, 3, E + 30 * DAY - pd.Timedelta(seconds=1), E + 60 * DAY),  # late, in grace
        _period(4, 4, A - 30 * DAY, E), _period(14, 4, E + 30 * DAY, E + 60 * DAY),  # at E + grace: too late
        _period(5, 5, A - 30 * DAY, A + 60 * DAY),  # runs on past the horizon: not due
        _period(6, 6, A - 60 * DAY, A - 20 * DAY),  # ran out before as_of: not due
        _period(7, 7, A - 30 * DAY, A),  # ends at as_of: due (the window is half-open)
        _period(8, 8, A - 30 * DAY, A + 30 * DAY),  # ends at as_of + horizon: not due
    ])
    df = build_labels(settings, [AS_OF], horizon_days=30, data_end=DATA_END, kind="non_renewal", grace_days=30)
    assert labels_of(df) == {1: 0, 2: 1, 3: 0, 4: 1, 7: 1}
    # the features' population is the labels' rows (the members due for renewal)
    features = F.build_features(settings.replace(label_kind="non_renewal", horizon_days=30), [AS_OF])
    assert features["customer_id"].tolist() == df["customer_id"].tolist()
    with pytest.raises(IncompleteLabelWindowError):  # the window is the horizon plus the grace
        build_labels(settings, [dt.date(2024, 7, 5)], horizon_days=30, data_end=DATA_END, kind="non_renewal",
                     grace_days=30)


def test_non_renewal_needs_no_end_date_from_a_business_without_one(settings: Settings) -> None:
    """Periods with no end date (an open-ended subscription) are never due: no row, no crash."""
    customers(settings, 2)
    write(settings, "subscriptions", [_period(1, 1, A - 30 * DAY, A + 5 * DAY) | {"end_date": None},
                                      _period(2, 2, A - 30 * DAY, A + 5 * DAY)])
    df = build_labels(settings, [AS_OF], horizon_days=30, data_end=DATA_END, kind="non_renewal", grace_days=30)
    assert labels_of(df) == {2: 1}


def test_provided_labels_are_the_businesss_own_for_the_snapshot_date(settings: Settings) -> None:
    """A label of (customer, label_date) is the row (customer, as_of = label_date); customers
    outside the population and rows without a label are not rows; the features of the row are
    computed from the data known before label_date, like every snapshot's."""
    customers(settings, 4)
    write(settings, "labels", [
        dict(customer_id=1, label_date=A, churned=1), dict(customer_id=2, label_date=A, churned=0),
        dict(customer_id=3, label_date=A + 14 * DAY, churned=1),  # another date: not this snapshot's
        dict(customer_id=99, label_date=A, churned=1),  # no such customer: not a row
    ])
    df = build_labels(settings, [AS_OF], horizon_days=30, data_end=DATA_END, kind="provided")
    assert labels_of(df) == {1: 1, 2: 0}
    with pytest.raises(IncompleteLabelWindowError):
        build_labels(settings, [dt.date(2024, 8, 15)], horizon_days=30, data_end=DATA_END, kind="provided")


def test_every_label_kind_says_what_churn_means(settings: Settings) -> None:
    from pipeline.features.labels import label_spec, settings_for_label

    renewal = settings.replace(label_kind="non_renewal", horizon_days=30, renewal_grace_days=14)
    spec = label_spec(renewal)
    assert spec["window_days"] == 44 and spec["grace_days"] == 14 and "not renewed within 14 days" in spec["definition"]
    assert settings_for_label(settings, spec).label_window_days == 44
    provided = label_spec(settings.replace(label_kind="provided", horizon_days=60))
    assert provided["window_days"] == 60 and "the business's own label" in provided["definition"]
