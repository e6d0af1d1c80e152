"""``make demo``: generate a small realistic dataset, run churn_training and one
churn_nightly run through the real Airflow DAGs (``dag.test()``), and say where the
scores, the drift report and the e-mail are.

Sizes and dates can be changed with environment variables:
DEMO_CUSTOMERS (3000), DEMO_MONTHS (6), DEMO_SEED (7), DEMO_START (2025-01-01),
DEMO_DRIFT_FROM (start + months - 1 month; "" for none). The Airflow task logs go to
data/demo_airflow.log; DEMO_VERBOSE=1 prints them as well.

DEMO_BUSINESS=retail (``make demo-retail``) runs the worked example of a transactions-only
shop instead: the generated shop (its own schema, no events) in data/retail/, with the
configuration examples/retail/churnflow.yaml (its ingest SQL, inactivity churn).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RETAIL_CONFIG = ROOT / "examples" / "retail" / "churnflow.yaml"
# its own Airflow home: the dag.test runs of a demo never show in the live UI of make airflow (.airflow/)
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-demo"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from churnflow_sim.dagrun import add_months, run_dag, step  # noqa: E402  (Airflow reads its settings on import)


def main() -> int:
    t0 = time.time()
    customers = int(os.environ.get("DEMO_CUSTOMERS", 3000))
    months = int(os.environ.get("DEMO_MONTHS", 6))
    seed = int(os.environ.get("DEMO_SEED", 7))
    start = dt.date.fromisoformat(os.environ.get("DEMO_START", "2025-01-01"))
    end = add_months(start, months)  # data covers [start, end); the runs' logical date is `end`
    drift_from = os.environ.get("DEMO_DRIFT_FROM", add_months(start, months - 1).isoformat())
    business = os.environ.get("DEMO_BUSINESS", "subscription")
    if business not in ("subscription", "retail"):
        print(f"DEMO_BUSINESS={business!r}: expected subscription or retail", file=sys.stderr)
        return 2
    if business == "retail":  # the worked example: its configuration, its own data folder
        os.environ["CHURNFLOW_CONFIG"] = str(RETAIL_CONFIG)
        os.environ.setdefault("CHURNFLOW_DATA_DIR", str(ROOT / "data" / "retail"))
        drift_from = ""

    from pipeline.config import load_settings

    settings = load_settings()
    what = "a shop of " if business == "retail" else ""
    step(f"generating {what}{customers} customers x {months} months into {settings.data_dir}")
    cmd = [sys.executable, "-m", "pipeline", "generate", "--business", business, "--customers", str(customers),
           "--months", str(months), "--seed", str(seed), "--start", start.isoformat()]
    if drift_from:
        cmd += ["--drift-from", drift_from]
    subprocess.run(cmd, check=True)
    # outbox/: messages have unique names
    # a demo starts afresh: an earlier demo's nights (its alerts already e-mailed, its estimates, its
    # dashboard) would be read as this business's history. Only what lives inside the data dir by default:
    # a results store or dashboard configured elsewhere (results_db_url, dashboard_workspace) is left alone
    derived = ["lake", "quarantine", "runs", "models", "mlflow", "model_cache", "reports"]
    if not settings.results_db_url:
        derived.append("results.db")
    if not settings.dashboard_workspace:
        derived.append("dashboard")
    for sub in derived:
        subprocess.run(["rm", "-rf", str(settings.data_dir / sub)], check=True)

    step(f"preparing the Airflow metadata database in {os.environ['AIRFLOW_HOME']}")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)

    from churnflow_sim.smtp_sink import SmtpSink

    with SmtpSink(outbox=settings.data_dir / "outbox") as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = sink.airflow_connection_uri()
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            print(bag.import_errors, file=sys.stderr)
            return 1
        log_path = settings.data_dir / "demo_airflow.log"
        log_path.unlink(missing_ok=True)
        for dag_id in ("churn_training", "churn_nightly"):
            if run_dag(bag, dag_id, end, log_path) != "success":
                return 1
        n_mail = len(sink.messages)

    from pipeline.model import registry

    champ = registry.require_champion(settings)
    metrics = champ.metrics()
    day = end.isoformat()
    scores = settings.runs_dir / "churn_nightly" / day / "score" / "scores.parquet"
    report = settings.reports_dir / day / "drift_report.html"
    print(f"""
================================================================ churnflow demo done in {time.time() - t0:.0f}s
model         {settings.model_name} {champ.version} (MLflow registry {registry.where(settings)}, alias champion)
              local copy {champ.path}; `make mlflow` opens the MLflow UI on it
model card    {champ.model_card_path}
churn means   {champ.params['label']['definition']}
              out-of-time ROC-AUC {metrics['roc_auc']:.3f}, PR-AUC {metrics['pr_auc']:.3f} (base rate {metrics['base_rate']:.3f})
scores        {scores}
              and table churn_scores of the results store {settings.results_url}
drift report  {report}
drift summary {report.with_name('drift_summary.json')}
monitoring    {settings.runs_dir / 'churn_nightly' / day / 'alerts' / 'monitoring.json'} (alerts, prediction drift, fairness)
e-mail        {n_mail} message(s) received by the local SMTP server, saved in {settings.data_dir / 'outbox'}
dashboard     {settings.dashboard_location} (one Evidently snapshot per night); `make dashboard` opens it

next          make airflow: the same DAGs in a running Airflow on a live business anchored on today
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
