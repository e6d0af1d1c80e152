"""Run a churnflow DAG in-process with ``dag.test()`` and say how each task went: what
``make demo`` and the end-to-end benchmark do (a real DAG run, no scheduler)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


@contextlib.contextmanager
def _output_to(path: Path, keep: bool) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so Airflow's log handlers
    too) to ``path`` for the duration; ``keep`` leaves them on the terminal."""
    if keep:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def add_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    return dt.date(day.year + y, m + 1, 1)


def run_dag(bag: Any, dag_id: str, day: dt.date, log_path: Path) -> str:
    """``dag.test()`` of one DAG for logical date ``day`` (task logs appended to ``log_path``);
    prints each task's state and duration and returns the run's state."""
    import pendulum

    step(f"airflow: {dag_id} for logical date {day} (dag.test; task logs in {log_path})")
    started = time.time()
    with _output_to(log_path, keep=bool(os.environ.get("DEMO_VERBOSE"))):
        run = bag.get_dag(dag_id).test(logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC"))
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date or 0)):
        took = f"{ti.duration:5.1f} s" if ti.duration is not None else "      "
        print(f"    {ti.task_id:<28} {ti.state!s:<10} {took}", flush=True)
    print(f"    {dag_id}: {run.state} in {time.time() - started:.0f} s", flush=True)
    if run.state != "success":
        print(f"{dag_id} finished in state {run.state}; see {log_path}", file=sys.stderr)
    return str(run.state)
