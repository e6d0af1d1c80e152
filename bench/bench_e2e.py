"""End-to-end benchmark through the real DAGs at the size churnflow is for (``make bench-e2e``).

    python bench/bench_e2e.py [--customers 1000000] [--months 12] [--data-dir DIR] [--reuse]

1. Generates a live business: ``--customers`` x ``--months`` of history before DAY
   (2026-01-01), and a week more held back to land later (``pipeline generate --live``).
2. ``churn_training`` for DAY: the first run, ingesting the whole history into an empty lake.
3. ``churn_nightly`` for DAY: scores every active customer with the new champion, drift
   report, monitoring, e-mail (to a local SMTP server).
4. Lands the next 7 days (``pipeline land``) and runs ``churn_training`` for DAY + 7 days:
   the weekly rerun, with the lake already caught up.
5. ``python -m pipeline run-nightly`` for DAY + 7 days: the night in-process (the same steps,
   one interpreter, no Airflow task runner), reasons included.

Each DAG runs with ``dag.test()`` in a fresh interpreter (its own Airflow home in the data
dir). Each task records its own wall time and peak RSS (``runs/<dag>/<date>/<task>/
resources.json``, :mod:`pipeline.resources`; tasks that share the ``dag.test`` process start
from what the earlier ones left resident, so a later task's peak is an upper bound).
The champion's out-of-time ROC-AUC is compared with the generator's true probabilities on
the same holdout rows.

Targets (issue 35; issue 11's were 20 min, 12 min and 90 s): first training <= 12 min and every
task <= 6 GiB; weekly rerun <= 8 min; the nightly <= 60 s in-process and <= 75 s through Airflow
(here ``dag.test``; a scheduled run in ``make airflow``: ``bench_cluster.py --local-only``), every
task <= 3 GiB; champion ROC-AUC within 0.002 of the truth's on the out-of-time holdout (issue 36;
measured 0.0016).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DAY = dt.date(2026, 1, 1)
WEEK = dt.timedelta(days=7)
GIB = 2**30
TARGETS = {  # phase: (most wall seconds, most peak RSS per task in bytes); issue 35's times
    "churn_training (first)": (12 * 60, 6 * GIB),
    "churn_nightly (dag.test)": (75, 3 * GIB),
    "run-nightly (in-process)": (60, 3 * GIB),
    "churn_training (weekly)": (8 * 60, 6 * GIB),
}
#: issue 36's oracle-gap bar at 1M (measured 2026-12-07: 0.0016, the first training and the weekly rerun)
MAX_TRUTH_GAP = 0.002
#: what a rerun of the benchmark on a reused source must start without
DERIVED = ("lake", "quarantine", "runs", "models", "mlflow", "model_cache", "reports", "outbox", "airflow", "bench_airflow.log")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``cmd``; return its wall seconds and its peak RSS (bytes, from wait4)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return time.monotonic() - started, usage.ru_maxrss * 1024


def _goal(target: tuple[float, float]) -> str:
    wall = f"{target[0] / 60:.0f} min" if target[0] >= 120 else f"{target[0]:.0f} s"
    return f"<= {wall}, tasks <= {target[1] / GIB:.0f} GiB"


def _run_dag_child(dag_id: str, day: dt.date, data_dir: Path) -> int:
    """In the child: one ``dag.test()`` (with a local SMTP server for the e-mail task)."""
    from churnflow_sim.dagrun import run_dag
    from churnflow_sim.smtp_sink import SmtpSink

    with SmtpSink(outbox=data_dir / "outbox") as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = sink.airflow_connection_uri()
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            print(bag.import_errors, file=sys.stderr)
            return 1
        started = time.monotonic()
        state = run_dag(bag, dag_id, day, data_dir / "bench_airflow.log")
        wall = time.monotonic() - started
    (data_dir / "runs" / dag_id / day.isoformat()).mkdir(parents=True, exist_ok=True)
    (data_dir / "runs" / dag_id / day.isoformat() / "dag_test.json").write_text(
        json.dumps({"state": state, "wall_s": wall, "mails": len(sink.messages)}))
    return 0 if state == "success" else 1


def _truth_gap(data_dir: Path, day: dt.date) -> dict[str, float]:
    """The ROC-AUC of the model trained on ``day`` on its out-of-time holdout, next to the
    generator's true probabilities' on the same rows."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from churnflow_sim.writers import TRUTH_FILE
    from pipeline.config import load_settings

    settings = load_settings(data_dir=data_dir)
    run = settings.runs_dir / "churn_training" / day.isoformat()
    result = json.loads((run / "train" / "result.json").read_text())
    metrics = result["metrics"]
    holdout_days = list(pd.to_datetime(pd.Series(metrics["holdout_snapshots"])))
    rows = pd.read_parquet(run / "build_training_set" / "training_set.parquet",
                           columns=["customer_id", "as_of", "label"], filters=[("as_of", "in", holdout_days)])
    truth = pd.read_parquet(settings.truth_dir / TRUTH_FILE, columns=["customer_id", "month_start", "p_cancel_30d"])
    truth["as_of"] = pd.to_datetime(truth["month_start"])
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    rows = rows.merge(truth[["customer_id", "as_of", "p_cancel_30d"]], on=["customer_id", "as_of"], how="left")
    known = rows["p_cancel_30d"].notna()
    return {"day": day.isoformat(), "version": result["version"], "model": metrics["model"],
            "promoted": result["promoted"], "champion": float(metrics["roc_auc"]),
            "truth": float(roc_auc_score(rows.loc[known, "label"], rows.loc[known, "p_cancel_30d"])),
            "holdout_rows": len(rows), "missing_truth": int((~known).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12, help="months of history before the first training")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "bench_e2e")
    parser.add_argument("--reuse", action="store_true", help="keep a source generated by an earlier run")
    parser.add_argument("--run-dag", nargs=2, metavar=("DAG", "DATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    if args.run_dag:
        return _run_dag_child(args.run_dag[0], dt.date.fromisoformat(args.run_dag[1]), data_dir)

    env = {**os.environ, "CHURNFLOW_DATA_DIR": str(data_dir), "AIRFLOW_HOME": str(data_dir / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    py = sys.executable
    phases: list[dict] = []
    if not (args.reuse and (data_dir / "source.db").is_file()):
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"### generate {args.customers:,} customers x {args.months} months before {DAY} in {data_dir}", flush=True)
        wall, peak = _run([py, "-m", "pipeline", "generate", "--live", "--customers", str(args.customers),
                           "--months", str(args.months), "--until", DAY.isoformat(), "--ahead-days", "8"], env)
        phases.append({"phase": "generate (not a target)", "wall_s": wall, "peak": peak, "tasks": []})
    for sub in DERIVED:
        path = data_dir / sub
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    _run([py, "-m", "airflow", "db", "migrate"], {**env, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})

    from pipeline import resources
    from pipeline.config import load_settings

    runs_dir = load_settings(data_dir=data_dir).runs_dir
    plan = [("churn_training (first)", "churn_training", DAY), ("churn_nightly (dag.test)", "churn_nightly", DAY),
            ("churn_training (weekly)", "churn_training", DAY + WEEK)]
    for name, dag_id, day in plan:
        if dag_id == "churn_training" and day != DAY:
            print(f"### land the days before {day}", flush=True)
            _run([py, "-m", "pipeline", "land", "--until", day.isoformat()], env)
        print(f"### {name}: {dag_id} for {day}", flush=True)
        wall, peak = _run([py, str(Path(__file__).resolve()), "--data-dir", str(data_dir), "--run-dag", dag_id,
                           day.isoformat()], env)
        done = json.loads((runs_dir / dag_id / day.isoformat() / "dag_test.json").read_text())
        phases.append({"phase": name, "wall_s": done["wall_s"], "peak": peak,
                       "tasks": resources.read(runs_dir, dag_id, day.isoformat())})
    night = DAY + WEEK
    print(f"### run-nightly (in-process) for {night}", flush=True)
    wall, peak = _run([py, "-m", "pipeline", "run-nightly", "--date", night.isoformat()], env)
    phases.append({"phase": "run-nightly (in-process)", "wall_s": wall, "peak": peak,
                   "tasks": resources.read(runs_dir, "churn_nightly", night.isoformat())})
    gaps = [_truth_gap(data_dir, day) for _, dag_id, day in plan if dag_id == "churn_training"]

    missed = []
    print(f"\n{'phase / task':<34} {'wall':>9} {'peak RSS':>10}   target")
    for phase in phases:
        target = TARGETS.get(phase["phase"])
        goal = _goal(target) if target else ""
        print(f"{phase['phase']:<34} {phase['wall_s']:>8.1f}s {resources.gib(phase['peak']):>10}   {goal}")
        if target and phase["wall_s"] > target[0]:
            missed.append(f"{phase['phase']}: {phase['wall_s']:.0f} s > {target[0]} s")
        for task in phase["tasks"]:
            print(f"  {task['task']:<32} {task['wall_s']:>8.1f}s {resources.gib(task['peak_rss_bytes']):>10}")
            if target and task["peak_rss_bytes"] > target[1]:
                missed.append(f"{phase['phase']} / {task['task']}: peak {resources.gib(task['peak_rss_bytes'])}")
    for gap in gaps:
        delta = gap["truth"] - gap["champion"]
        print(f"\nmodel of {gap['day']} {gap['version']} ({gap['model']}, promoted: {gap['promoted']}): out-of-time "
              f"ROC-AUC {gap['champion']:.4f}; true probabilities on the same {gap['holdout_rows']:,} holdout rows "
              f"{gap['truth']:.4f}; gap {delta:.4f} (target <= {MAX_TRUTH_GAP})")
        if delta > MAX_TRUTH_GAP or gap["missing_truth"]:
            missed.append(f"model of {gap['day']}: truth gap {delta:.4f} ({gap['missing_truth']} holdout rows "
                          "without truth)")
    (data_dir / "bench_e2e.json").write_text(json.dumps({"phases": phases, "truth": gaps}, default=str, indent=1))
    if missed:
        print("\nmissed targets:\n  " + "\n  ".join(missed), file=sys.stderr)
        return 1
    print(f"\nall targets met (figures in {data_dir / 'bench_e2e.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
