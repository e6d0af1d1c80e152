"""Benchmark the nightly on the two-worker Celery cluster over 4 partitions against the
LocalExecutor over 1, on the same business and the same night.

    python bench/bench_cluster.py [--customers 1000000] [--months 12] [--partitions 4] [--keep] [--local-only]

1. ``make airflow``'s launcher (standalone, LocalExecutor) with ``partitions: 1`` on a live
   business of ``--customers`` x ``--months`` (data up to yesterday, generated in a temporary
   folder; the launcher trains the first champion before Airflow starts). churn_nightly is
   unpaused through the REST API; the scheduled run for today is timed (dag run start to end).
2. ``make airflow-cluster``'s launcher (CeleryExecutor, PostgreSQL, 2 workers) on the *same*
   data dir with ``partitions: --partitions``: its own metadata, so the scheduler creates
   today's run again, which replaces that night's outputs. Timed the same way.
3. Prints both, each task's duration (mapped instances with the worker that ran them), and the
   ratio cluster / local. Both nights must succeed and score the same customers.

On one machine the cluster's workers share its cores with the scheduler and the database; the
figure says what partitions buy (and cost: a task's start on a worker, the reduce step) there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

from churnflow_sim.live_airflow import Live, launch


def _seconds(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


#: the nightly's readiness gate (a sensor): its wait is not the night's work (issue 35's 75 s target)
WAIT_TASK = "wait_for_data"
NIGHT_TARGET_S = 75.0


def _night(live: Live, label: str, timeout: float) -> float | None:
    live.api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
    run = live.api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", timeout, live.log)
    tis = sorted(live.api.task_instances("churn_nightly", run["dag_run_id"]),
                 key=lambda t: (t["start_date"] or "", t["map_index"]))
    if run["state"] != "success":
        print(f"{label}: the scheduled nightly failed: {[(t['task_id'], t['state']) for t in tis]}", flush=True)
        return None
    wall = _seconds(run["start_date"], run["end_date"])
    # a rescheduled sensor's duration is its last poke: the wait is the run's start to the sensor's end
    wait = max((_seconds(run["start_date"], t["end_date"]) for t in tis if t["task_id"] == WAIT_TASK and t["end_date"]),
               default=0.0)
    print(f"\n{label}: churn_nightly {run['logical_date'][:10]} in {wall:.1f} s (dag run start to end), "
          f"{wall - wait:.1f} s without the readiness wait ({wait:.1f} s)", flush=True)
    for t in tis:
        name = t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "")
        print(f"  {name:<22} {t['state']:<9} {t['duration'] or 0:7.1f} s  {t['hostname'] or ''}", flush=True)
    return wall - wait


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (business, logs)")
    parser.add_argument("--local-only", action="store_true",
                        help="only the LocalExecutor night (make airflow, one partition): the issue-35 75 s target")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="churnflow-bench-cluster-"))
    data = tmp / "local" / "data"
    timeout = max(900.0, args.customers / 1000)  # seconds: 1M customers get 1,000 s a night
    env = {"LIVE_CUSTOMERS": str(args.customers), "LIVE_MONTHS": str(args.months), "LIVE_DRIFT_FROM": "",
           "CHURNFLOW_RETRAIN_ON_CRITICAL": "false", "CHURNFLOW_NIGHTLY_RUN_TIMEOUT_MINUTES": "60",
           "CHURNFLOW_READINESS_TIMEOUT_MINUTES": "30"}
    print(f"live business {args.customers:,} customers x {args.months} months in {tmp}", flush=True)
    try:
        with launch(tmp / "local", {**env, "CHURNFLOW_PARTITIONS": "1"}, startup_timeout=6 * 3600) as live:
            local = _night(live, "LocalExecutor (make airflow), partitions 1", timeout)
        if local is not None:
            print(f"target: the scheduled night at 1M within {NIGHT_TARGET_S:.0f} s without the readiness wait "
                  f"(LocalExecutor, one partition; issue 35): {local:.1f} s: "
                  f"{'met' if local <= NIGHT_TARGET_S else 'MISSED'}", flush=True)
        if args.local_only:
            return 0 if local is not None and local <= NIGHT_TARGET_S else 1
        today = dt.datetime.now(dt.UTC).date().isoformat()
        scores = data / "runs" / "churn_nightly" / today / "score" / "scores.parquet"
        if local is not None:
            shutil.copy(scores, tmp / "local-scores.parquet")
        with launch(tmp / "cluster", {**env, "CHURNFLOW_PARTITIONS": str(args.partitions),
                                      "CHURNFLOW_DATA_DIR": str(data)},
                    startup_timeout=1800, launcher="churnflow_sim.cluster") as live:
            cluster = _night(live, f"CeleryExecutor (make airflow-cluster, 2 workers), partitions {args.partitions}",
                             timeout)
        if local is None or cluster is None:
            return 1
        import pandas as pd

        same = pd.read_parquet(tmp / "local-scores.parquet").equals(pd.read_parquet(scores))
        print(f"the two nights' scores are {'identical' if same else 'DIFFERENT'}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nnightly, {args.customers:,} customers: cluster/{args.partitions} partitions {cluster:.1f} s vs "
          f"local/1 partition {local:.1f} s: ratio {cluster / local:.2f}x", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
