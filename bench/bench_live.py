"""Benchmark the nightly run in a running Airflow against the same work in-process.

    python bench/bench_live.py [--customers 3000] [--months 6]

1. The ``make airflow`` launcher on a live business of the demo's size (3,000 customers,
   6 months of history, data up to yesterday) in a temporary folder: it trains a first
   champion, starts Airflow (standalone: LocalExecutor), and the scheduled nightly for today
   runs once churn_nightly is unpaused through the REST API. Its wall time is the dag run's
   start to end; each task's own duration is printed too.
2. The same night in-process (``python -m pipeline run-nightly --date TODAY --send-email``
   in a fresh interpreter, imports included) on the same data dir, e-mailing a local SMTP
   server, which replaces that night's outputs.

Target: Airflow within 1.5x of in-process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from churnflow_sim.live_airflow import launch

TARGET_RATIO = 1.5


def _seconds(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=6)
    args = parser.parse_args(argv)
    today = dt.datetime.now(dt.UTC).date()
    tmp = Path(tempfile.mkdtemp(prefix="churnflow-bench-live-"))
    env = {"LIVE_CUSTOMERS": str(args.customers), "LIVE_MONTHS": str(args.months),
           "LIVE_DRIFT_FROM": (today - dt.timedelta(days=10)).isoformat(),
           "CHURNFLOW_RETRAIN_ON_CRITICAL": "false"}
    print(f"live business {args.customers:,} customers x {args.months} months in {tmp}", flush=True)
    with launch(tmp, env, startup_timeout=900) as live:
        live.api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
        run = live.api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 900, live.log)
        if run["state"] != "success":
            print(f"the scheduled nightly failed: {live.api.states('churn_nightly', run['dag_run_id'])}")
            return 1
        airflow_s = _seconds(run["start_date"], run["end_date"])
        print(f"\nchurn_nightly for {today} in Airflow (LocalExecutor): {airflow_s:.1f} s")
        for ti in sorted(live.api.task_instances("churn_nightly", run["dag_run_id"]),
                         key=lambda t: t["start_date"] or ""):
            print(f"  {ti['task_id']:<20} {ti['state']:<10} {ti['duration'] or 0:6.1f} s")
    from churnflow_sim.smtp_sink import SmtpSink

    with SmtpSink() as sink:
        env_in = {**os.environ, "CHURNFLOW_DATA_DIR": str(live.data), "CHURNFLOW_SMTP_HOST": sink.host,
                  "CHURNFLOW_SMTP_PORT": str(sink.port), "CHURNFLOW_RETRAIN_ON_CRITICAL": "false"}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "run-nightly", "--date", today.isoformat(), "--send-email"],
                       env=env_in, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inproc_s = time.perf_counter() - t0
        assert len(sink.messages) == 1
    ratio = airflow_s / inproc_s
    print(f"the same night in-process (python -m pipeline run-nightly, imports included): {inproc_s:.1f} s")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
