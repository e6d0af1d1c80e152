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
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT

pytestmark = pytest.mark.live

TODAY = dt.datetime.now(dt.timezone.utc).date()
REQUESTED = TODAY - dt.timedelta(days=2)  # the night an asset event asks to retrain for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def login(self) -> None:
        r = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def __call__(self, method: str, path: str, **kw):
        r = self.session.request(method, f"{self.base}/api/v2{path}", timeout=30, **kw)
        assert r.status_code < 300, (method, path, r.status_code, r.text[:500])
        return r.json() if r.content else None

    def runs(self, dag_id: str) -> list[dict]:
        return self("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after"})["dag_runs"]

    def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def wait_run(self, dag_id: str, match, timeout: float, log: Path) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if match(run) and run["state"] in ("success", "failed"):
                    return run
            time.sleep(2)
        raise AssertionError(f"no finished {dag_id} run within {timeout}s: {self.runs(dag_id)}\n"
                             f"launcher log tail:\n{log.read_text()[-3000:]}")

    def log_text(self, dag_id: str, run_id: str, task_id: str) -> str:
        r = self.session.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                             headers={"Accept": "application/json"}, timeout=30)
        return r.text


def _our_processes(home: str) -> list[int]:
    """PIDs whose environment carries our AIRFLOW_HOME (every component the launcher started)."""
    out = []
    needle = f"AIRFLOW_HOME={home}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    home, data, outbox = tmp / "airflow", tmp / "data", tmp / "outbox"
    port, smtp_port = _free_port(), _free_port()
    env = {
        # a fresh shell: no virtualenv on PATH, no CHURNFLOW_/AIRFLOW_ settings of the developer
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHURNFLOW_", "AIRFLOW", "VIRTUAL_ENV"))},
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "AIRFLOW_HOME": str(home), "AIRFLOW_PORT": str(port), "LIVE_SMTP_PORT": str(smtp_port),
        "CHURNFLOW_DATA_DIR": str(data), "CHURNFLOW_OUTBOX": str(outbox),
        "LIVE_CUSTOMERS": "600", "LIVE_MONTHS": "5", "LIVE_SEED": "5", "LIVE_DRIFT_FROM": "",
        # small, quick models: the wiring is under test here, not the model
        "CHURNFLOW_CANDIDATES": "logreg,xgboost", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1",
        "CHURNFLOW_READINESS_POKE_SECONDS": "5", "CHURNFLOW_RETRAIN_ON_CRITICAL": "false",
        "CHURNFLOW_EMAIL_RECIPIENTS": "ana@example.com",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    log = tmp / "launcher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "airflow_standalone.py")], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    api = Api(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 240
        while "churnflow Airflow: http://localhost" not in log.read_text():
            assert proc.poll() is None, f"launcher exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no UI within 240 s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        api.login()
        while True:  # the dag-processor has parsed our DAGs
            r = api.session.get(f"{api.base}/api/v2/dags", params={"dag_id_pattern": "churn"}, timeout=30)
            if r.ok and {"churn_nightly", "churn_training", "churn_landing_simulator"} <= {
                    d["dag_id"] for d in r.json()["dags"]}:
                break
            assert time.monotonic() < deadline, f"DAGs not parsed: {r.text[:500]}\n{log.read_text()[-3000:]}"
            time.sleep(2)
        yield {"api": api, "data": data, "outbox": outbox, "home": str(home), "log": log, "proc": proc,
               "port": port}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in _our_processes(str(home)):
            os.kill(pid, signal.SIGKILL)


def test_launcher_serves_the_ui_from_a_bare_path(live):
    r = requests.get(f"http://127.0.0.1:{live['port']}/", timeout=30)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert "user admin, password admin" in live["log"].read_text()
    simulator = live["api"]("GET", "/dags/churn_landing_simulator")
    assert simulator["is_paused"] is False  # the simulated business goes on by itself
    assert live["api"]("GET", "/dags/churn_nightly")["is_paused"] is True


def test_unpaused_nightly_scores_today_with_data_and_emails(live):
    api = live["api"]
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    run = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 240, live["log"])
    states = api.states("churn_nightly", run["dag_run_id"])
    assert run["state"] == "success", states
    assert run["logical_date"].startswith(TODAY.isoformat())
    import pandas as pd

    scores = pd.read_parquet(live["data"] / "runs" / "churn_nightly" / TODAY.isoformat() / "score" / "scores.parquet")
    assert len(scores) > 100
    ingested = json.loads(json.dumps(api("GET", f"/dags/churn_nightly/dagRuns/{run['dag_run_id']}/taskInstances/"
                                               "ingest/xcomEntries/return_value")["value"]))
    events = next(t for t in ingested if t["table"] == "events")
    assert events["rows"] > 0, ingested  # yesterday's events, really ingested
    mails = sorted(live["outbox"].glob("*.eml"))
    assert mails, "no e-mail in the outbox"
    msg = email.message_from_bytes(mails[-1].read_bytes(), policy=email.policy.default)
    assert TODAY.isoformat() in msg["Subject"]


def test_night_without_data_fails_at_the_readiness_gate(live):
    api = live["api"]
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    day = TODAY - dt.timedelta(days=400)  # long before the business's first landed day
    created = api("POST", "/dags/churn_nightly/dagRuns",
                  json={"logical_date": f"{day.isoformat()}T00:00:00Z", "conf": {}})
    run = api.wait_run("churn_nightly", lambda r: r["dag_run_id"] == created["dag_run_id"], 180, live["log"])
    states = api.states("churn_nightly", run["dag_run_id"])
    assert run["state"] == "failed"
    assert states["wait_for_data"] == "failed", states
    assert all(s in (None, "upstream_failed") for t, s in states.items() if t != "wait_for_data"), states
    text = api.log_text("churn_nightly", run["dag_run_id"], "wait_for_data")
    assert "no landing partition for day(s)" in text and (day - dt.timedelta(days=1)).isoformat() in text, text[-2000:]
    assert not (live["data"] / "runs" / "churn_nightly" / day.isoformat()).exists()


def test_asset_triggered_training_trains_on_the_requesting_date(live):
    api = live["api"]
    api("PATCH", "/dags/churn_training", json={"is_paused": False})
    assets = api("GET", "/assets", params={"uri_pattern": "retraining-requested"})["assets"]
    api("POST", "/assets/events", json={"asset_id": assets[0]["id"], "extra": {"date": REQUESTED.isoformat()}})
    run = api.wait_run("churn_training", lambda r: r["run_type"] == "asset_triggered", 300, live["log"])
    states = api.states("churn_training", run["dag_run_id"])
    assert run["state"] == "success", (states, api.log_text("churn_training", run["dag_run_id"], "train")[-3000:])
    assert run["logical_date"] is None
    result = json.loads((live["data"] / "runs" / "churn_training" / REQUESTED.isoformat() / "train" /
                         "result.json").read_text())
    assert result["version"]
    assert not any(r["run_type"] == "scheduled" for r in api.runs("churn_training")), "unpausing trained at once"


def test_ctrl_c_stops_every_component(live):
    proc = live["proc"]
    assert _our_processes(live["home"]), "the components should be running"
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    while (proc.poll() is None or _our_processes(live["home"])) and time.monotonic() - started < 15:
        time.sleep(0.5)
    assert proc.poll() == 0, "the launcher did not exit cleanly within 15 s"
    assert not _our_processes(live["home"]), "components left running 15 s after Ctrl-C"
