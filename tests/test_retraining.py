"""Retraining is requested only when it can help (issue 34, part 5): a retrain as of tonight trains on
the month starts whose labels have matured; a change after the latest of them cannot be seen (no
request, and the date from which one could help), a change before it can (requested, with the
snapshots), and one request per champion within alert_cooldown_days."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipeline.config import load_settings
from pipeline.features.labels import training_snapshot_dates
from pipeline.monitoring.retraining import change_date, decide, first_snapshot_from, matured_snapshots

NIGHT = "2026-12-06"


@pytest.fixture
def settings(tmp_path):
    """A 30-day cancellation label and six month-start snapshots (the defaults)."""
    return load_settings(data_dir=tmp_path / "data", horizon_days=30, training_snapshots=6, alert_cooldown_days=7)


def _concept(change_at: str) -> dict:
    return {"concept_drift": {"detections": [
        {"detector": "adwin", "change_at": "2026-01-01", "rate_before": 0.3, "rate_after": 0.1},  # a drop: no alarm
        {"detector": "adwin", "change_at": change_at, "rate_before": 0.1, "rate_after": 0.3}]}}


CRITICAL_ADWIN = [{"rule": "concept_drift", "severity": "critical", "alert_group": "adwin", "status": "pending"}]


def test_the_snapshots_are_the_month_starts_whose_labels_matured_by_the_night():
    assert matured_snapshots(NIGHT, 30, 3) == [dt.date(2026, 9, 1), dt.date(2026, 10, 1), dt.date(2026, 11, 1)]
    assert matured_snapshots("2026-12-01", 30, 2) == [dt.date(2026, 10, 1), dt.date(2026, 11, 1)]  # 11-01 + 30 days
    assert matured_snapshots("2026-11-30", 30, 2) == [dt.date(2026, 9, 1), dt.date(2026, 10, 1)]
    # what a training run as of the night picks, given enough history (pipeline.features.dataset.plan_snapshots)
    for night in ("2026-12-06", "2026-12-01", "2026-11-30", "2027-03-02"):
        assert matured_snapshots(night, 30, 6) == training_snapshot_dates("2024-01-01", night, 6, 30), night
    assert matured_snapshots("2026-01-31", 30, 2) == [dt.date(2025, 12, 1), dt.date(2026, 1, 1)]
    assert first_snapshot_from(dt.date(2026, 11, 26)) == dt.date(2026, 12, 1)
    assert first_snapshot_from(dt.date(2026, 12, 1)) == dt.date(2026, 12, 1)


def test_each_rule_dates_its_change():
    assert change_date("concept_drift", "adwin", _concept("2026-10-15")) == dt.date(2026, 10, 15)
    assert change_date("concept_drift", "ddm", _concept("2026-10-15")) is None
    assert change_date("performance_drop", "matured", {"performance": {"scored_on": "2026-11-06"}}) == dt.date(2026, 11, 6)
    assert change_date("estimated_performance", "roc_auc", {"estimate": {"below_since": "2026-11-26"}}) == \
        dt.date(2026, 11, 26)
    assert change_date("estimated_performance", "roc_auc", {"estimate": None}) is None  # null-safe


def test_a_change_after_the_latest_matured_snapshot_requests_nothing_and_says_when_one_could_help(settings):
    decision = decide(settings, NIGHT, "v4", CRITICAL_ADWIN, _concept("2026-11-26"))
    assert not decision.requested and decision.rule == "concept_drift" and decision.change_date == "2026-11-26"
    assert decision.snapshots[-1] == "2026-11-01" and len(decision.snapshots) == 6
    assert decision.could_help_from == "2026-12-31"  # the 2026-12-01 snapshot's 30-day labels
    assert decision.reason == (
        "no retraining requested: the change the concept_drift alert found is at 2026-11-26, after the latest "
        "snapshot whose labels have matured by tonight (2026-11-01; a retrain as of tonight trains on 2026-06-01 .. "
        "2026-11-01 (6 month starts)), so it could not see it; one could help from 2026-12-31, when the labels of the "
        "2026-12-01 snapshot mature (30-day label window)")
    # the estimate's drop dated the same way
    estimated = [{"rule": "estimated_performance", "severity": "critical", "alert_group": "roc_auc"}]
    late = decide(settings, NIGHT, "v4", estimated, {"estimate": {"below_since": "2026-11-26"}})
    assert not late.requested and late.could_help_from == "2026-12-31"


def test_a_change_before_it_requests_retraining_on_the_snapshots(settings):
    decision = decide(settings, NIGHT, "v4", CRITICAL_ADWIN, _concept("2026-10-15"))
    assert decision.requested and decision.change_date == "2026-10-15" and decision.could_help_from is None
    assert decision.snapshots == ("2026-06-01", "2026-07-01", "2026-08-01", "2026-09-01", "2026-10-01", "2026-11-01")
    assert decision.reason.startswith("retraining requested: trains on snapshots 2026-06-01 .. 2026-11-01")
    assert "(2026-10-15) is within them" in decision.reason
    # an alert that does not date its change may be seen: requested, and said
    unknown = decide(settings, NIGHT, "v4", [{"rule": "estimated_performance", "severity": "critical",
                                              "alert_group": "roc_auc"}], {})
    assert unknown.requested and "does not say when the change began" in unknown.reason
    # nothing that asks, a warning, or retrain_on_critical off: nothing requested, and why
    assert "no critical alert of a retraining rule" in decide(settings, NIGHT, "v4", [], {}).reason
    assert not decide(settings, NIGHT, "v4", [{**CRITICAL_ADWIN[0], "severity": "warning"}], _concept("2026-10-15")).requested
    off = decide(settings.replace(retrain_on_critical=False), NIGHT, "v4", CRITICAL_ADWIN, _concept("2026-10-15"))
    assert not off.requested and "retrain_on_critical is off" in off.reason
    # raw data drift never asks
    drift = [{"rule": r, "severity": "critical", "alert_group": "features"} for r in ("data_drift", "feature_psi")]
    assert not decide(settings, NIGHT, "v4", drift, {}).requested


def test_one_request_per_champion_within_the_cooldown(settings):
    """Stored per night in retraining_requests (a rerun replaces its row); the next night within
    alert_cooldown_days asks for nothing new, another champion or a night after the cooldown does."""
    from pipeline.monitoring.store import retraining_requests_before, store_retraining_request
    from pipeline.results import RETRAINING_REQUESTS, read

    def night(day: str, version: str = "v4"):
        decision = decide(settings, day, version, CRITICAL_ADWIN, _concept("2026-10-15"),
                          retraining_requests_before(settings, day, settings.alert_cooldown_days))
        store_retraining_request(settings, day, decision.row())
        return decision

    assert night(NIGHT).requested
    assert night(NIGHT).requested  # a rerun of the night replaces its own row: not a duplicate of itself
    again = night("2026-12-08")
    assert not again.requested
    assert again.reason == ("no retraining requested: one was already requested on 2026-12-06 for v4 (within "
                            "alert_cooldown_days 7); its training run answers tonight's alerts too")
    assert night("2026-12-09", "v5").requested  # a new champion
    assert night("2026-12-14").requested  # 8 nights after v4's request
    rows = read(settings, RETRAINING_REQUESTS)
    assert list(rows["run_date"].dt.strftime("%Y-%m-%d")) == ["2026-12-06", "2026-12-08", "2026-12-09", "2026-12-14"]
    assert list(rows["requested"]) == [True, False, True, True]
    first = rows.iloc[0]
    assert first["snapshots"].split(",")[-1] == "2026-11-01" and str(first["change_date"])[:10] == "2026-10-15"
    assert pd.isna(first["could_help_from"]) and first["rule"] == "concept_drift"
