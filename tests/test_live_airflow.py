"""Tests against a running Airflow: the real launcher (``make airflow``'s script) started from a
bare PATH, its scheduler, dag-processor, triggerer and API server, driven through the REST API v2.

What ``dag.test()`` on fixed dates cannot show: that the launcher serves at all from a fresh
shell, that an unpaused nightly gets a run for *today* and scores it with data, that a night
without data stops at the readiness gate, that an asset-triggered training (no logical date)
trains on the date the asset event carries, and that Ctrl-C leaves no component behind.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

import pytest
import requests

from churnflow_sim.live_airflow import ctrl_c, launch, our_processes

pytestmark = pytest.mark.live

TODAY = dt.datetime.now(dt.UTC).date()
REQUESTED = TODAY - dt.timedelta(days=2)  # the night an asset event asks to retrain for


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    env = {
        "LIVE_CUSTOMERS": "600", "LIVE_MONTHS": "5", "LIVE_SEED": "5", "LIVE_DRIFT_FROM": "",
        # small, quick models: the wiring is under test here, not the model
        "CHURNFLOW_CANDIDATES": "logreg,xgboost", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1",
        "CHURNFLOW_READINESS_POKE_SECONDS": "5", "CHURNFLOW_RETRAIN_ON_CRITICAL": "false",
        "CHURNFLOW_EMAIL_RECIPIENTS": "ana@example.com",
        # short enough to watch a stuck run fail: a night gets 2 minutes (it needs ~20 s here)
        "CHURNFLOW_READINESS_TIMEOUT_MINUTES": "1", "CHURNFLOW_NIGHTLY_RUN_TIMEOUT_MINUTES": "2",
    }
    with launch(tmp_path_factory.mktemp("live"), env) as running:
        yield running


def test_launcher_serves_the_ui_from_a_bare_path(live):
    r = requests.get(f"http://127.0.0.1:{live.port}/", timeout=30)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert "user admin, password admin" in live.log.read_text()
    simulator = live.api("GET", "/dags/churn_landing_simulator")
    assert simulator["is_paused"] is False  # the simulated business goes on by itself
    assert live.api("GET", "/dags/churn_nightly")["is_paused"] is True


FUTURE = "2031-01-01T00:00:00Z"


def test_a_future_dated_run_is_refused_and_a_stuck_run_does_not_hold_back_the_schedule(live):
    """The bug: a churn_nightly run triggered for 2031-01-01 stayed "running" with no task
    started (Airflow starts none before the logical date), and with one run at a time every
    later night waited behind it, silently."""
    api = live.api
    for dag_id in ("churn_nightly", "churn_training"):  # what the Trigger form and the REST API get
        r = api.session.post(f"{api.base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": FUTURE, "conf": {}},
                             timeout=30)
        assert r.status_code == 400, (dag_id, r.status_code, r.text)
        assert "logical date 2031-01-01" in r.text and "is in the future" in r.text, r.text
    assert api.runs("churn_nightly") == []
    # a run that gets in anyway (an explicit data interval: Airflow does not ask the timetable), queued
    # before tonight's scheduled run, cannot progress: the DAG's run timeout fails it, then the night runs
    stuck = api("POST", "/dags/churn_nightly/dagRuns", json={
        "logical_date": FUTURE, "data_interval_start": "2030-12-31T00:00:00Z", "data_interval_end": FUTURE,
        "run_after": f"{(TODAY - dt.timedelta(days=1)).isoformat()}T00:00:00Z", "conf": {}})
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    failed = api.wait_run("churn_nightly", lambda r: r["dag_run_id"] == stuck["dag_run_id"], 300, live.log)
    assert failed["state"] == "failed"
    tasks = api.task_instances("churn_nightly", stuck["dag_run_id"])  # skipped by the timeout, none ever started
    assert {t["state"] for t in tasks} <= {None, "skipped"} and all(t["start_date"] is None for t in tasks), tasks
    night = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 300, live.log)
    assert night["state"] == "success", api.states("churn_nightly", night["dag_run_id"])
    assert night["start_date"] >= failed["end_date"], (night, failed)  # it had waited behind the stuck run


def test_unpaused_nightly_scores_today_with_data_and_emails(live):
    api = live.api
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    run = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 240, live.log)
    states = api.states("churn_nightly", run["dag_run_id"])
    assert run["state"] == "success", states
    assert run["logical_date"].startswith(TODAY.isoformat())
    import pandas as pd

    scores = pd.read_parquet(live.data / "runs" / "churn_nightly" / TODAY.isoformat() / "score" / "scores.parquet")
    assert len(scores) > 100
    entry = api("GET", f"/dags/churn_nightly/dagRuns/{run['dag_run_id']}/taskInstances/ingest/xcomEntries/"
                       "return_value")["value"]
    ingested = json.loads(entry) if isinstance(entry, str) else entry
    events = next(t for t in ingested if t["table"] == "events")
    assert events["rows"] > 0, ingested  # yesterday's events, really ingested
    mails = sorted(live.outbox.glob("*.eml"))
    assert mails, "no e-mail in the outbox"
    msg = email.message_from_bytes(mails[-1].read_bytes(), policy=email.policy.default)
    assert TODAY.isoformat() in msg["Subject"]
    # the night's publish updated the asset a CRM sync is scheduled on, with the night's date (issue 38)
    published = api("GET", "/assets", params={"uri_pattern": "scores-published"})["assets"]
    assert [a["uri"].rstrip("/") for a in published] == ["churnflow://scores-published"], published
    asset_events = api("GET", "/assets/events", params={"asset_id": published[0]["id"], "source_dag_id": "churn_nightly",
                                                        "source_run_id": run["dag_run_id"]})["asset_events"]
    assert [(e["source_task_id"], e["extra"]["date"]) for e in asset_events] == [("publish_scores", TODAY.isoformat())], \
        asset_events


def test_night_without_data_fails_at_the_readiness_gate(live):
    api = live.api
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    day = TODAY - dt.timedelta(days=400)  # long before the business's first landed day
    created = api("POST", "/dags/churn_nightly/dagRuns",
                  json={"logical_date": f"{day.isoformat()}T00:00:00Z", "conf": {}})
    run = api.wait_run("churn_nightly", lambda r: r["dag_run_id"] == created["dag_run_id"], 180, live.log)
    states = api.states("churn_nightly", run["dag_run_id"])
    assert run["state"] == "failed"
    assert states["wait_for_data"] == "failed", states
    assert all(s in (None, "upstream_failed") for t, s in states.items() if t != "wait_for_data"), states
    text = api.log_text("churn_nightly", run["dag_run_id"], "wait_for_data")
    assert "no landing partition for day(s)" in text and (day - dt.timedelta(days=1)).isoformat() in text, text[-2000:]
    assert not (live.data / "runs" / "churn_nightly" / day.isoformat()).exists()


def test_asset_triggered_training_trains_on_the_requesting_date(live):
    api = live.api
    api("PATCH", "/dags/churn_training", json={"is_paused": False})
    assets = api("GET", "/assets", params={"uri_pattern": "retraining-requested"})["assets"]
    api("POST", "/assets/events", json={"asset_id": assets[0]["id"], "extra": {"date": REQUESTED.isoformat()}})
    run = api.wait_run("churn_training", lambda r: r["run_type"] == "asset_triggered", 300, live.log)
    states = api.states("churn_training", run["dag_run_id"])
    assert run["state"] == "success", (states, api.log_text("churn_training", run["dag_run_id"], "train")[-3000:])
    assert run["logical_date"] is None
    result = json.loads((live.data / "runs" / "churn_training" / REQUESTED.isoformat() / "train" /
                         "result.json").read_text())
    assert result["version"]
    assert not any(r["run_type"] == "scheduled" for r in api.runs("churn_training")), "unpausing trained at once"


def test_retraining_from_the_form_on_the_champions_date_keeps_the_champion(live):
    """The bug: a churn_training run triggered with the form's defaults on the champion's own date
    (same data, same model) became the new champion on a tie; the gate wants evidence."""
    from pipeline.config import load_settings
    from pipeline.model import registry

    settings = load_settings(data_dir=live.data)
    champion = registry.champion_number(settings)
    assert champion is not None
    info = {v.number: v for v in registry.list_versions(settings)}[champion]
    trained_on = info.tags["churnflow.training_date"]
    api = live.api
    api("PATCH", "/dags/churn_training", json={"is_paused": False})
    created = api("POST", "/dags/churn_training/dagRuns",
                  json={"logical_date": f"{trained_on}T00:00:00Z", "conf": {}})  # the Trigger form, its defaults
    run = api.wait_run("churn_training", lambda r: r["dag_run_id"] == created["dag_run_id"], 480, live.log)
    log_text = api.log_text("churn_training", run["dag_run_id"], "train")
    assert run["state"] == "success", (api.states("churn_training", run["dag_run_id"]), log_text[-3000:])
    result = json.loads((live.data / "runs" / "churn_training" / trained_on / "train" / "result.json").read_text())
    assert result["promoted"] is False and result["version"] != registry.label(champion), result
    assert registry.champion_number(settings) == champion
    assert "not promoted" in result["decision"], result["decision"]
    assert "not promoted" in log_text and result["version"] in log_text, log_text[-3000:]
    # the form's default test: a paired bootstrap, whose record says why (a tie, or not beyond noise)
    record = result["metrics"]["gate"]
    assert record["test"] == "bootstrap" and record["served"] is False, record
    assert "paired bootstrap resamples" in result["decision"], result["decision"]


def test_ctrl_c_stops_every_component(live):
    proc = live.proc
    assert our_processes(live.home), "the components should be running"
    status, left = ctrl_c(proc, live.home, 15)
    assert status == 0, "the launcher did not exit cleanly within 15 s"
    assert not left, f"processes left running 15 s after Ctrl-C: {left}"
