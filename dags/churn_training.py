"""
### churn_training

Weekly (and on demand) retraining of the churn model, as of the run's date:

- a scheduled (weekly) run: its logical date;
- a run triggered by the `churnflow://retraining-requested` Asset (churn_nightly's retraining
  request): the date of the night that asked, carried in the asset event's `extra`, so it trains on
  the month-start snapshots that night's request named (`extra["snapshots"]`: those whose labels
  matured by then, which reach the change the alert found);
- a manual run: the logical date chosen in the trigger form.

1. **ingest** - the declared (`source_tables`) customer-database tables from their earliest row
   (or from `history_start` when set) and the event files the lake does not hold yet, each
   table gated by Great Expectations (`expectations/<table>.json`);
   bad rows are quarantined with their reason; a failing batch stops the run here. Read,
   validated and staged in chunks of `ingest_chunk_rows`, so the first run's whole history
   needs no more memory than a night (progress lines with an ETA in the task log).
2. **build_training_set** - point-in-time features at month-start snapshots and their labels,
   gated by the feature table's expectation suite.
3. **train** - candidates (logistic regression, random forest, XGBoost, SMOTE variants) searched
   with expanding-window time CV on a stratified sample (`search_sample_rows`), the best fitted
   on every row and calibrated, evaluated out of time on the latest
   snapshot, a campaign-value threshold, registry with model card, champion gate (an absolute
   ROC-AUC floor, `promotion_min_roc_auc`; ROC-AUC above the champion's on the same holdout by
   more than `promotion_min_improvement` beyond noise: with `promotion_test` bootstrap (the
   default) the lower bound of the difference's one-sided `promotion_confidence` interval, from a
   paired bootstrap over the holdout rows, must be above the margin too; a tie never promotes; and
   no worse on PR-AUC or the campaign's value at its capacity beyond `promotion_pr_auc_tolerance` /
   `promotion_value_tolerance`). The decision, every metric of both models and the test are in the
   task log, `metrics.json` (`gate`), the MLflow run and the next nightly e-mail. Every model is
   a new, immutable version of the MLflow registered model (`model_name`); it is served (the
   `champion` alias moves to it) only if it clears the gate against the serving champion, a
   rerun of a date included. The MLflow run holds the data window, label, features, candidates
   with their CV scores, holdout metrics, the gate's verdict, the model card and its plots.

A manual run dated in the future is refused when triggered (it would wait for its date and
hold back every later run); a run still going after `training_run_timeout_minutes` is failed.

A training set that cannot train (one class, too few snapshots) fails with a `TrainingError`
naming the dates and counts, without retries; only infrastructure errors are retried.
Tasks exchange only paths and counts through XCom; each task's wall time and own peak RSS
are in `runs/churn_training/<date>/<task>/resources.json`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, dag, task
from airflow.timetables.assets import AssetOrTimeSchedule

from churnflow_airflow.params import parse_settings, setting_params
from churnflow_airflow.tasks import (
    DEFAULT_ARGS,
    common_params,
    ingest,
    pipeline_task,
    run_context,
)
from churnflow_airflow.timetables import NoFutureCronTimetable


@dag(
    dag_id="churn_training",
    description=("Weekly (or on request) training of the churn model as of the run's date, gated against the serving "
                 "champion"),
    # no start_date and run_immediately=0: unpausing does not start a training at once (the
    # launcher or the last champion covers today); the next one is Sunday 00:00 UTC or an asset
    # event. A manual run dated in the future is refused; a run going on past the timeout fails.
    schedule=AssetOrTimeSchedule(
        timetable=NoFutureCronTimetable("@weekly", timezone="UTC", run_immediately=dt.timedelta(0)),
        assets=[Asset("churnflow://retraining-requested")]),  # type: ignore[list-item]  # core schedule, SDK asset
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=parse_settings().training_run_timeout_minutes),
    default_args=DEFAULT_ARGS,
    tags=["churnflow", "training"],
    doc_md=__doc__,
    params={
        **common_params(),
        # each from its setting's field: the type, range, choices and help of the setting, its value as default
        **setting_params(parse_settings(), "label_kind", "renewal_grace_days", "inactivity_days", "training_snapshots",
                         "promotion_min_improvement", "promotion_test", "promotion_pr_auc_tolerance",
                         "promotion_value_tolerance",
                         "search_iterations", "cv_folds", "training_reextract"),
    },
)
def churn_training() -> None:
    @task
    @pipeline_task
    def build_training_set(validated: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
        from pipeline.features.steps import training_set_step, validate_features_step

        ctx = run_context(context)
        return validate_features_step(ctx, training_set_step(ctx))

    @task
    @pipeline_task
    def train(training_set: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import train_step

        return train_step(run_context(context), training_set)

    train(build_training_set(ingest()))


churn_training()
