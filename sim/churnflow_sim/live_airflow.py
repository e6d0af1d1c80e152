"""Drive a running churnflow Airflow (the ``make airflow`` launcher) through the REST API v2.

Used by the real-Airflow tests (tests/test_live_airflow.py) and the overhead benchmark
(bench/bench_live.py): :func:`launch` starts ``make airflow``'s launcher
(:mod:`churnflow_sim.standalone`) as a user
would, from a bare PATH, with its own AIRFLOW_HOME, data dir, ports and outbox, waits until
the UI serves and the DAGs are parsed, and stops it with Ctrl-C (SIGINT) at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

DAG_IDS = frozenset({"churn_nightly", "churn_training", "churn_landing_simulator"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: what the API server logs when an action's audit-log row could not be written: on SQLite (make airflow's
#: metadata) Airflow 3.3 writes it from the server's event loop (``action_logging``), and when a task-start
#: call in the same server holds SQLite's one write lock and waits for that event loop to finish, the write
#: gives up after SQLite's 5 s and the action (a trigger, a pause) answers 500 "Database error"; tried
#: again, it goes through (docs/operations.md). PostgreSQL has no such limit (make airflow-cluster).
AUDIT_LOG_LOCKED = "statement: INSERT INTO log ("


class Api:
    """A logged-in REST API v2 client (SimpleAuthManager: admin/admin)."""

    def __init__(self, base: str, log: Path | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.log = log  # the launcher's log: the API server writes its errors there
        self.retried: list[str] = []

    def login(self) -> None:
        r = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def __call__(self, method: str, path: str, **kw):
        r = self.request(method, path, **kw)
        assert r.status_code < 300, (method, path, r.status_code, r.text[:500], self.server_log(r))
        return r.json() if r.content else None

    def request(self, method: str, path: str, tries: int = 3, **kw) -> requests.Response:
        """One REST API v2 call, tried again (up to ``tries`` times) only where it failed on
        :data:`AUDIT_LOG_LOCKED`: Airflow's known SQLite limit, not the call's answer (each retry is
        kept in :attr:`retried`)."""
        for _ in range(tries - 1):
            r = self.session.request(method, f"{self.base}/api/v2{path}", timeout=30, **kw)
            if not self.audit_log_locked(r):
                return r
            self.retried.append(f"{method} {path}: {r.status_code} on the audit log's write")
            time.sleep(1)
        return self.session.request(method, f"{self.base}/api/v2{path}", timeout=30, **kw)

    def server_log(self, r: requests.Response, wait: float = 5.0) -> str:
        """For a 5xx answer, the API server's log from the line naming the error ID it gives (the
        statement and its traceback; waited for up to ``wait`` seconds: the launcher's log is
        written through a pipe); else ""."""
        found = re.search(r"look for ID (\w+)", r.text)
        if r.status_code < 500 or self.log is None or found is None:
            return ""
        deadline = time.monotonic() + wait
        while True:
            lines = self.log.read_text(errors="replace").splitlines()
            at = [i for i, line in enumerate(lines) if found.group(1) in line]
            if at:
                return "\n".join(lines[at[0]:at[-1] + 60])
            if time.monotonic() > deadline:
                return f"(no line of {self.log} names error ID {found.group(1)})"
            time.sleep(0.5)

    def audit_log_locked(self, r: requests.Response) -> bool:
        """Whether ``r`` failed on :data:`AUDIT_LOG_LOCKED` (the line naming its error ID says so)."""
        return AUDIT_LOG_LOCKED in self.server_log(r).split("\n", 1)[0]

    def runs(self, dag_id: str) -> list[dict]:
        return self("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}

    def wait_run(self, dag_id: str, match: Callable[[dict], bool], timeout: float, log: Path) -> dict:
        """The first run ``match`` accepts once it has finished (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if match(run) and run["state"] in ("success", "failed"):
                    return run
            time.sleep(2)
        raise AssertionError(f"no finished {dag_id} run within {timeout}s: {self.runs(dag_id)}\n"
                             f"launcher log tail:\n{log.read_text()[-3000:]}")

    def log_text(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> str:
        r = self.session.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/"
                             f"{attempt}", headers={"Accept": "application/json"}, timeout=30)
        return r.text


def our_processes(home: str) -> list[int]:
    """PIDs whose environment carries this AIRFLOW_HOME (every component the launcher started)."""
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


def ctrl_c(proc: subprocess.Popen, home: str, limit: float) -> tuple[int | None, list[int]]:
    """Send the launcher what Ctrl-C sends; wait up to ``limit`` seconds for it to exit and for
    every process of its AIRFLOW_HOME to be gone. Returns its exit status and what is left."""
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    while (proc.poll() is None or our_processes(home)) and time.monotonic() - started < limit:
        time.sleep(0.5)
    return proc.poll(), our_processes(home)


@dataclass
class Live:
    api: Api
    data: Path
    outbox: Path
    home: str
    log: Path
    proc: subprocess.Popen
    port: int


@contextlib.contextmanager
def launch(tmp: Path, extra_env: dict[str, str], startup_timeout: float = 300,
           dags: frozenset[str] = DAG_IDS, launcher: str = "churnflow_sim.standalone",
           home_name: str = "airflow") -> Iterator[Live]:
    """The ``launcher`` module (``make airflow``'s, or ``make airflow-cluster``'s:
    churnflow_sim.cluster) in ``tmp`` (AIRFLOW_HOME ``tmp/home_name``, data dir, outbox and log
    inside), from a bare PATH; ready once the dag-processor has parsed ``dags`` (without a live
    business, no simulator DAG)."""
    home, data, outbox = tmp / home_name, tmp / "data", tmp / "outbox"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        # a fresh shell: no virtualenv on PATH, no CHURNFLOW_/AIRFLOW_ settings of the caller
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHURNFLOW_", "AIRFLOW", "VIRTUAL_ENV"))},
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "AIRFLOW_HOME": str(home), "AIRFLOW_PORT": str(port), "LIVE_SMTP_PORT": str(free_port()),
        "CHURNFLOW_DATA_DIR": str(data), "CHURNFLOW_OUTBOX": str(outbox),
        **extra_env,
    }
    log = tmp / "launcher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", launcher], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    api = Api(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + startup_timeout
        while f"http://localhost:{port}  (user admin" not in log.read_text():  # the launcher's banner
            assert proc.poll() is None, f"launcher exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no UI within {startup_timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        api.login()
        while True:  # the dag-processor has parsed our DAGs
            r = api.session.get(f"{api.base}/api/v2/dags", params={"dag_id_pattern": "churn"}, timeout=30)
            if r.ok and {d["dag_id"] for d in r.json()["dags"]} >= dags:
                break
            assert time.monotonic() < deadline, f"DAGs not parsed: {r.text[:500]}\n{log.read_text()[-3000:]}"
            time.sleep(2)
        yield Live(api, data, outbox, str(home), log, proc, port)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in our_processes(str(home)):
            os.kill(pid, signal.SIGKILL)
