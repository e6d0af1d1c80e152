"""Task definitions shared by the churnflow DAGs (wiring only: each task calls one
function of ``pipeline.flows`` and returns its small dict of paths and counts to XCom).

Heavy libraries (pandas, Great Expectations, Evidently, XGBoost) are imported inside the
tasks, never here, so the DAG files parse in a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from airflow.sdk import Param, task

from pipeline.config import Settings, load_settings
from pipeline.tables import LAKE_TABLE_NAMES

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")

#: retries cover passing infrastructure faults (database, disk); data errors don't heal by retrying
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "churnflow",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
}
NO_RETRY = {"retries": 0}


def run_date(context: Any) -> dt.date:
    """The run's logical date; a manual run triggered without one uses its run_after."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(when).in_tz("UTC").date()


def settings_for(context: Any) -> Settings:
    """Settings from env/YAML, with the run's Params applied where they name a setting."""
    params = context["params"]
    overrides = {k: params[k] for k in ("horizon_days", "training_snapshots", "drift_report_sample_rows",
                                        "promotion_min_improvement", "search_iterations", "cv_folds") if k in params}
    return load_settings().replace(**overrides)


@task
def ingest(table: str, **context: Any) -> dict[str, Any]:
    from pipeline.flows import ingest_step

    return ingest_step(settings_for(context), context["dag"].dag_id, run_date(context), table,
                       lookback_days=int(context["params"].get("lookback_days", 1)))


@task(**NO_RETRY)
def validate(ingested: dict[str, Any], **context: Any) -> dict[str, Any]:
    from pipeline.flows import validate_step

    return validate_step(settings_for(context), context["dag"].dag_id, run_date(context), ingested)


@task(**NO_RETRY)
def validate_features(built: dict[str, Any], **context: Any) -> dict[str, Any]:
    from pipeline.flows import validate_features_step

    return validate_features_step(settings_for(context), context["dag"].dag_id, run_date(context), built)


def ingest_and_validate() -> list[Any]:
    """One ingest -> validate pair per lake input; returns the validate tasks' outputs."""
    return [
        validate.override(task_id=f"validate_{table}")(ingest.override(task_id=f"ingest_{table}")(table))
        for table in LAKE_TABLE_NAMES
    ]


def common_params() -> dict[str, Param]:
    return {
        "horizon_days": Param(load_settings().horizon_days, type="integer", minimum=1, maximum=365,
                              title="Churn horizon (days)",
                              description="A customer churns when they cancel within this many days."),
    }
