"""
### churn_training

Weekly (and on demand) retraining of the churn model.

1. **ingest_*** - customer-database tables from `history_start` and the event files the lake
   does not hold yet, each into a Parquet artifact.
2. **validate_*** - Great Expectations gate (`expectations/<table>.json`); bad rows are
   quarantined with their reason; a failing batch stops the run here.
3. **build_training_set** - point-in-time features at month-start snapshots and their labels.
4. **validate_features** - the feature table's expectation suite.
5. **train** - candidates (logistic regression, random forest, XGBoost, SMOTE variants) searched
   with expanding-window time CV, the best calibrated, evaluated out of time on the latest
   snapshot, a campaign-value threshold, registry with model card, champion gate.

Tasks exchange only paths and counts through XCom.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

# Airflow 3 does not put the DAGs folder on sys.path; the shared task module lives beside us.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from churnflow_common import (  # noqa: E402
    DEFAULT_ARGS,
    START_DATE,
    common_params,
    ingest_and_validate,
    run_date,
    settings_for,
    validate_features,
)
from pipeline.config import load_settings


@dag(
    dag_id="churn_training",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@weekly", timezone="UTC"),
                                 assets=[Asset("churnflow://retraining-requested")]),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["churnflow", "training"],
    doc_md=__doc__,
    params={
        **common_params(),
        "training_snapshots": Param(load_settings().training_snapshots, type="integer", minimum=2, maximum=36,
                                    title="Month-start snapshots",
                                    description="How many monthly snapshots to train and evaluate on."),
        "promotion_min_improvement": Param(load_settings().promotion_min_improvement, type="number",
                                           minimum=0, maximum=0.2, title="Promotion margin (ROC-AUC)",
                                           description="A new model replaces the champion only if it beats it "
                                                       "by this much on the same holdout."),
        "search_iterations": Param(load_settings().search_iterations, type="integer", minimum=1, maximum=50,
                                   title="Search budget",
                                   description="Randomized hyperparameter draws per candidate family."),
        "cv_folds": Param(load_settings().cv_folds, type="integer", minimum=1, maximum=12,
                          title="Time CV folds",
                          description="Expanding-window folds over the latest training snapshots."),
    },
)
def churn_training() -> None:
    @task
    def build_training_set(validated: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
        from pipeline.flows import training_set_step

        return training_set_step(settings_for(context), context["dag"].dag_id, run_date(context))

    @task
    def train(training_set: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.flows import train_step

        return train_step(settings_for(context), context["dag"].dag_id, run_date(context), training_set)

    train(validate_features(build_training_set(ingest_and_validate())))


churn_training()
