"""Tests against a running Airflow: the real launcher (``make airflow``'s script) started from a
bare PATH, its scheduler, dag-processor, triggerer and API server, driven through the REST API v2.

What ``dag.test()`` on fixed dates cannot show: that the launcher serves at all from a fresh
shell, that an unpaused nightly gets a run for *today* and scores it with data (in two buckets:
``partitions: 2``), that a night without data stops at the readiness gate, that an asset-triggered
training (no logical date) trains on the date the asset event carries, that Ctrl-C leaves no
component behind, and, in a real browser (headless Chromium), what a person sees in the UI: no run
of ``make demo``, mapped pieces named by their bucket, and a scheduler log without errors.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from browser import chromium
from conftest import ROOT, RUN_DATE

from churnflow_sim.live_airflow import ctrl_c, launch, our_processes

pytestmark = pytest.mark.live

TODAY = dt.datetime.now(dt.UTC).date()
REQUESTED = TODAY - dt.timedelta(days=2)  # the night an asset event asks to retrain for


def make_airflow_homes() -> tuple[str, str]:
    """The folder names of the Airflow homes ``make airflow`` and ``make demo`` use, as the Makefile sets them."""
    def make(*args: str) -> str:
        return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout

    live = make("--eval", "print-airflow-home: ; @echo $$AIRFLOW_HOME", "print-airflow-home").strip()
    demo = re.search(r"AIRFLOW_HOME=(\S+) \S+ scripts/demo\.py", make("-n", "demo"))
    assert live and demo, "the Makefile no longer says where make airflow and make demo keep their Airflow homes"
    return Path(live).name, Path(demo.group(1)).name


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
        # the nights' features and scores as mapped pieces, one per customer bucket
        "CHURNFLOW_PARTITIONS": "2",
    }
    # the checkout's layout: make airflow's home beside make demo's, each named as the Makefile names it
    with launch(tmp_path_factory.mktemp("live"), env, home_name=make_airflow_homes()[0]) as running:
        yield running


def test_launcher_serves_the_ui_from_a_bare_path(live):
    r = requests.get(f"http://127.0.0.1:{live.port}/", timeout=30)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert "user admin, password admin" in live.log.read_text()
    # third-party start-up noise is not what a user reads: Great Expectations' 209 "Skipping registering function"
    # info lines and its "Multiple declarations of metric" notes, once the scheduler has preloaded the libraries
    deadline = time.monotonic() + 120
    while "preloaded" not in (log := live.log.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(1)
    assert "preloaded" in log, log[-3000:]
    assert "Skipping registering function" not in log and "Multiple declarations of metric" not in log
    assert not [line for line in log.splitlines() if "[info" in line and "[mail.log]" in line]  # the SMTP sink's
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
        r = api.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": FUTURE, "conf": {}})
        assert r.status_code == 400, (dag_id, r.status_code, r.text, api.server_log(r))
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


def make_demo_run(live) -> str:
    """A run of churn_nightly for the demo's date made as ``make demo`` makes its runs: in the Airflow
    home the Makefile gives the demo, beside ``make airflow``'s (the bug: both were .airflow/, so the
    live UI listed the demo's 2025-07-01 night, its logs "not found on worker"). Its run id."""
    home = Path(live.home).parent / make_airflow_homes()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CHURNFLOW_", "AIRFLOW"))},
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "CHURNFLOW_DATA_DIR": str(live.data)}
    airflow = [sys.executable, "-m", "airflow"]
    run_id = f"manual__{RUN_DATE}T00:00:00+00:00"
    for args in (["db", "migrate"], ["dags", "reserialize"],
                 ["dags", "trigger", "churn_nightly", "--run-id", run_id, "--logical-date", f"{RUN_DATE}T00:00:00+00:00"]):
        done = subprocess.run([*airflow, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    return run_id


def sign_in(driver, base: str) -> None:
    """Through the UI's own login form, as a person does (admin/admin)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/")
    wait = WebDriverWait(driver, 60)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/" not in d.current_url)


def page_text(driver, url: str, expected: str, timeout: float = 60) -> str:
    """The visible text of ``url`` once it shows ``expected`` (the UI fills its pages in after loading)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element(By.TAG_NAME, "body").text
        if expected in text:
            return text
        time.sleep(1)
    raise AssertionError(f"{url} never showed {expected!r}; it shows:\n{text[:3000]}")


def test_the_ui_shows_live_runs_only_buckets_by_name_and_a_healthy_night_logs_no_error(live):
    """In a real browser, after a scheduled partitioned night and a run made as ``make demo`` makes them:
    the UI's runs are the live Airflow's (none for the demo's date), the night's mapped pieces are named
    "bucket i of 2" (not ``build_features [0]``), and the scheduler logged no "XCom not found" error for it
    (the bug: combining the mapped pieces asked for one past the last, every night)."""
    api = live.api
    with chromium() as driver:
        api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
        night = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 300, live.log)
        assert night["state"] == "success", api.states("churn_nightly", night["dag_run_id"])
        demo_run = make_demo_run(live)
        base = f"http://127.0.0.1:{live.port}"
        sign_in(driver, base)
        shown = page_text(driver, f"{base}/dags/churn_nightly/runs", night["dag_run_id"])
        assert demo_run not in shown and RUN_DATE not in shown, shown[:3000]
        assert all(not r["logical_date"] or not r["logical_date"].startswith(RUN_DATE) for r in api.runs("churn_nightly"))
        for task_id in ("build_features", "score"):
            mapped = page_text(driver, f"{base}/dags/churn_nightly/runs/{night['dag_run_id']}/tasks/{task_id}/mapped",
                               "bucket 2 of 2")
            assert "bucket 1 of 2" in mapped, mapped[:3000]
            named = sorted(t["rendered_map_index"] for t in api.task_instances("churn_nightly", night["dag_run_id"])
                           if t["task_id"] == task_id)
            assert named == ["bucket 1 of 2", "bucket 2 of 2"], named
    scheduler = [line for line in live.log.read_text(errors="replace").splitlines() if "XCom not found" in line]
    assert not scheduler, "\n".join(scheduler[:5])


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
