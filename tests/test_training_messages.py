"""What training says when its data bound it (issue 32, point 5): a training set with no row
says why in the words of its own label kind (non-renewal churn with nobody due for renewal is
not "nobody was active"), and the events' landed history bounding the snapshots of a model
whose label does not need events is named, with how to change it."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3

import pytest
from conftest import ROOT, RUN_DATE

from pipeline.config import load_settings
from pipeline.errors import TrainingError

EXAMPLE = ROOT / "examples" / "memberships" / "churnflow.yaml"
CHEAP = {"CHURNFLOW_CANDIDATES": "logreg", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1",
         "CHURNFLOW_PROMOTION_MIN_ROC_AUC": "0", "CHURNFLOW_CONCEPT_DRIFT_DETECTORS": "",
         "CHURNFLOW_IMPORTANCE_SAMPLE_ROWS": "0"}


def test_non_renewal_with_nobody_due_says_nobody_was_due(tmp_path, monkeypatch, capsys):
    """Was: "training set is empty for snapshots [...]: no customer was active at them" although
    every member was ingested; none was due for renewal (every membership runs to 2031)."""
    from churnflow_sim.memberships import generate_memberships
    from pipeline.__main__ import main

    data_dir = tmp_path / "data"
    generate_memberships(load_settings(EXAMPLE, data_dir=data_dir), members=300, months=6, seed=5, progress=None)
    with sqlite3.connect(data_dir / "source.db") as conn:
        conn.execute("UPDATE memberships SET expires_at = '2031-01-01 00:00:00'")
        members = conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
    for key, value in {**CHEAP, "CHURNFLOW_CONFIG": str(EXAMPLE), "CHURNFLOW_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["run-training", "--date", RUN_DATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "training set is empty for snapshots" in err[0], err[0]
    assert "no customer's period ended in the label window of them (label_kind non_renewal: customers are due " \
           "when their paid-through date" in err[0], err[0]
    assert "falls in [as_of, as_of + horizon_days=30))" in err[0] and "subscriptions.end_date" in err[0], err[0]
    assert "active" not in err[0], err[0]
    assert members == 300


def test_the_events_bounding_the_snapshots_of_a_label_without_events_are_named(source_data, monkeypatch, caplog):
    """Cancellation churn does not need events; with event files landed only from May (the
    database goes back to January) the events' history left one snapshot, silently. Now a
    warning names the events table and how to change it, the model trains on that snapshot
    (stratified), and leaving the events features out bounds the snapshots by the payments."""
    from pipeline.features.dataset import history_table, plan_snapshots
    from pipeline.flows import run_training
    from pipeline.ingestion import lake

    for day in (source_data.landing_dir / "events").glob("date=*"):
        if day.name < "date=2025-05-01":
            shutil.rmtree(day)
    for key, value in CHEAP.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    with caplog.at_level("INFO"):
        result = run_training(settings, RUN_DATE)
    assert result["training_set"]["snapshots"] == ["2025-06-01"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "events table bounds" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "its landed history starts 2025-05-01 while subscriptions go back to" in warned[0], warned[0]
    assert "label_kind cancellation does not need events" in warned[0], warned[0]
    assert "land the older event files under" in warned[0] and "remove events from feature_groups" in warned[0]
    assert "or from source_tables" in warned[0], warned[0]
    assert result["train"]["metrics"]["validation"] == "stratified (1 snapshot: no out-of-time validation)"

    # events from March leave enough snapshots for the time split: the bound is said, at INFO
    caplog.clear()
    with caplog.at_level("INFO"):
        dates = plan_snapshots(settings, [dt.date(2025, 3, 1)], dt.date.fromisoformat(RUN_DATE), "events")
    assert [str(d) for d in dates] == ["2025-04-01", "2025-05-01", "2025-06-01"]
    said = [r for r in caplog.records if "events table bounds them" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"] and "stratified" not in caplog.text, caplog.text
    assert "its landed history starts 2025-03-01" in said[0].getMessage()

    # the remedy works: without the events features the payments' history bounds the snapshots
    end = dt.date.fromisoformat(RUN_DATE)
    without = settings.replace(feature_groups="customer,subscription,payments,plan_changes,support")
    assert history_table(settings) == "events" and history_table(without) == "payments"
    caplog.clear()
    with caplog.at_level("INFO"):
        dates = plan_snapshots(without, lake.partition_dates(without, "payments"), end, "payments")
    assert len(dates) >= 4 and "bounds" not in caplog.text and "stratified" not in caplog.text, (dates, caplog.text)
    # inactivity churn needs the events: they bound its snapshots, and that is no news
    inactivity = settings.replace(label_kind="inactivity")
    assert history_table(inactivity.replace(feature_groups="customer,payments")) == "events"
    caplog.clear()
    with caplog.at_level("INFO"):
        plan_snapshots(inactivity, lake.partition_dates(settings, "events"), end, "events")
    assert "events table bounds" not in caplog.text

    # events landed only in June leave no snapshot: the error names the events and the way out
    june = [d for d in lake.partition_dates(settings, "events") if d >= dt.date(2025, 6, 1)]
    with pytest.raises(TrainingError) as raised:
        plan_snapshots(settings, june, end, "events")
    message = str(raised.value)
    assert "\n" not in message and "on events from 2025-06-01" in message, message
    assert "the events table bounds them" in message and "remove events from feature_groups" in message, message
