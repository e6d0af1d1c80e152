"""
### churn_nightly

Every night, for logical date D: a churn probability for every customer active at D,
and a drift report for the analysts.

1. **wait_for_data** - the readiness gate: the landing partitions of `[D - lookback_days, D)`
   exist and hold rows, and the source database has rows up to the window end. It waits
   (reschedule mode, `readiness_poke_seconds`) up to `readiness_timeout_minutes`, then fails
   naming the missing day(s); it fails at once when later days have landed but these have
   not. Nothing downstream runs without data. It also refuses unknown conf keys. Once the
   data is there it **pins the champion** (checked readable): its XCom carries the run context
   (date, window, model version) that every later task pulls (it travels once: the graph's edges
   are each task's real inputs), so a promotion during the night cannot make one night use two models.
2. **ingest** - the window's database rows and event files, each table gated by Great
   Expectations; bad rows are quarantined with their reason.
3. **build_features** - point-in-time features as of D, gated by their own expectation suite;
   one mapped task instance per customer-hash bucket (`plan_partitions`: the `partitions`
   setting, default 1; each instance named "bucket i of n"), each reading its customers' rows only.
4. **score** - the pinned model's scores, one mapped instance per bucket; **combine_partitions**
   makes them the night's one features and scores files (ordered by customer, risk bands decided
   over every customer): the same files whatever `partitions`.
   **score_challenger** - the challenger in shadow (the newest version registered after the champion
   and never promoted, or `challenger_version`) scores the night's combined features beside the
   champion: table `challenger_scores`, never the campaign; no challenger is said and the night goes on.
5. **data_drift** - data drift of every feature vs the pinned model's training reference, on all rows
   (`drift_summary.json`, table `drift_metrics`).
6. **Monitoring, part by part** - each its own task, its own artifact under `runs/churn_nightly/D/<task>/`
   and its own tables of the results store:
   **matured_labels** - the scores of D - horizon joined to their labels (`matured_labels.parquet`; none
   when that night was not scored); **performance** - prediction drift, performance on the matured labels
   and fairness by segment (tables `prediction_drift`, `model_performance`, `fairness_metrics`);
   **concept_drift** - the sequential detectors fed with the matured errors (`concept_drift`);
   **importance_drift** - the model's mean |SHAP| per feature tonight vs its training (`feature_importance_drift`);
   **schema_drift** - the source columns the champion was trained with vs tonight's ingested ones;
   **challenger_comparison** - champion vs challenger on the same matured labels (`challenger_performance`);
   **estimated_performance** - ROC-AUC, PR-AUC and precision at capacity estimated from the night's calibrated
   scores before their labels mature, with a band, and the realised metrics of the night that matured tonight
   (`performance_estimates`).
   Then **alerts** gathers the parts and evaluates the rules (both pure), then stores the deduplicated
   alerts (table `alerts`; `promotion_review` when the challenger keeps winning, `schema_drift` when a
   trained-on column is absent or null beyond training) and `alerts/monitoring.json`.
7. **drift_report** - the Evidently HTML report and its e-mail copy under `data/reports/D/`,
   assembled once, with the trend over recent nights.
8. **publish_scores** - the scores become the `churn_scores` rows of D (a rerun of D replaces
   D): the night's last write, so a night that fails before it (a full disk while writing the
   report) publishes no scores. It updates the `churnflow://scores-published` Asset with
   `extra={"date": D, "rows": ..., "model_version": ...}`: a DAG of your own (a CRM sync) can be
   scheduled on it; the score API (`python -m pipeline serve`) answers from the night at once.
9. **dashboard_snapshot** - the night's snapshot in the Evidently dashboard (`make dashboard`):
   the figures it published (drift share, highest PSIs, score distribution, at-risk share,
   matured-label ROC-AUC/recall, fairness ratios, alerts by severity), one panel each over the
   nights. Beside the e-mail: a dashboard that cannot be written fails this task only.
10. **email_report** - subject with the highest alert severity; the summary (HTML and the same
   facts as plain text: scored customers, high-risk share at the campaign threshold, drift,
   alerts, matured-label performance, trend chart), the drift report's e-mail copy (zipped)
   and tonight's campaign list (CSV) attached, through the Airflow SMTP connection
   `smtp_default` (fails at once, saying how to set it, when there is none). Alerts become
   `sent` only once the server accepted the message; until then they stay `pending`.
11. **request_retraining** - emits the `churnflow://retraining-requested` Asset with
   `extra={"date": D, "snapshots": [...], "rule": ..., "change_date": ...}` (churn_training then trains
   as of D, on those month-start snapshots) only when the alerts task requested retraining tonight: a
   critical alert of a retraining rule (`estimated_performance`, `performance_drop`, `concept_drift`;
   data drift never), a retrain as of D whose snapshots reach the change, no request for the champion
   within `alert_cooldown_days`, and `retrain_on_critical` on. Skipped otherwise, with the one-sentence
   reason (`pipeline/monitoring/retraining.py`: when it cannot help yet, from when it could).

Trigger it by hand from the UI to choose the date, recipients or skip the e-mail.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, dag, task

from churnflow_airflow.params import parse_settings, setting_params
from churnflow_airflow.tasks import (
    DataReadySensor,
    common_params,
    ingest,
    nightly_dag_args,
    pipeline_task,
    run_context,
    run_date,
    smtp_settings,
)

#: emitted when a critical alert asks for a new model; churn_training is scheduled on it
RETRAINING_REQUESTED = Asset("churnflow://retraining-requested")
#: updated by every night that publishes its scores, extra {"date": D, ...}: what a CRM sync is scheduled on
SCORES_PUBLISHED = Asset("churnflow://scores-published")
#: a mapped task's name in the UI: its customer-hash bucket (``part``: a Jinja expression of the task's
#: ``index``/``count`` dict; ``WHOLE``: the one bucket of an unpartitioned night, whose pieces carry none)
BUCKET = ("{{% set WHOLE = {{'index': 0, 'count': 1}} %}}{{% set p = {part} %}}"
          "bucket {{{{ p['index'] + 1 }}}} of {{{{ p['count'] }}}}")


@dag(
    dag_id="churn_nightly",
    description=("Nightly churn scores with their reasons for every active customer, the campaign list, drift and "
                 "performance monitoring, alerts and the analysts' e-mail"),
    **nightly_dag_args(),
    tags=["churnflow", "scoring", "monitoring"],
    doc_md=__doc__,
    params={
        **common_params(),
        # empty = the configured list, read when the task runs (a config change needs no re-parse)
        "recipients": Param([], type="array", items={"type": "string", "format": "email"},
                            title="Report recipients",
                            description="Analysts who receive the drift report. Leave empty for the configured "
                                        f"list (email_recipients, now: {', '.join(parse_settings().recipients)})."),
        "send_email": Param(parse_settings().email_enabled, type="boolean", title="Send the e-mail",
                            description="Switch off to run without e-mailing the report."),
        "lookback_days": Param(1, type="integer", minimum=1, maximum=31, title="Days to ingest",
                               description="Ingest this many days before the logical date (catch up missed nights)."),
        **setting_params(parse_settings(), "drift_report_sample_rows"),  # from the setting's field
    },
)
def churn_nightly() -> None:
    # wait_for_data's XCom (the run context with the pinned model version) travels once: each task pulls it in
    # run_context, so the graph shows only each task's real inputs

    @task
    def plan_partitions(**context: Any) -> list[dict[str, int]]:
        from pipeline.features.partitions import all_parts

        return [p.to_dict() for p in all_parts(run_context(context).settings.partitions)]

    @task(map_index_template=BUCKET.format(part="task.op_kwargs['part']"))
    @pipeline_task
    def build_features(part: dict[str, int], validated: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
        from pipeline.features.partitions import Part
        from pipeline.features.steps import features_step, validate_features_step

        ctx = run_context(context)
        return validate_features_step(ctx, features_step(ctx, Part.from_dict(part)))

    @task(map_index_template=BUCKET.format(part="task.op_kwargs['features'].get('part', WHOLE)"))
    @pipeline_task
    def score(features: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import score_step

        return score_step(run_context(context), features)

    @task(multiple_outputs=True)
    @pipeline_task
    def combine_partitions(built: list[dict[str, Any]], scored: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
        from pipeline.features.steps import combine_features
        from pipeline.model.steps import combine_scores

        ctx = run_context(context)
        # the mapped pieces as one slice: a single request for all of them, in map-index order. Iterating the lazy
        # sequence instead (list(built)) asks for one piece past the last, which Airflow answers 404 and its client
        # logs as "[error] XCom not found" on every healthy night
        return {"features": combine_features(ctx, built[:]), "scores": combine_scores(ctx, scored[:])}

    @task
    @pipeline_task
    def score_challenger(features: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import score_challenger_step

        return score_challenger_step(run_context(context), features)

    @task
    @pipeline_task
    def data_drift(features: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import drift_step

        return drift_step(run_context(context), features)

    @task
    @pipeline_task
    def matured_labels(**context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import matured_labels_step

        return matured_labels_step(run_context(context))

    @task
    @pipeline_task
    def performance(features: dict[str, Any], scores: dict[str, Any], matured: dict[str, Any],
                    **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import performance_step

        return performance_step(run_context(context), features, scores, matured)

    @task
    @pipeline_task
    def concept_drift(matured: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import concept_drift_step

        return concept_drift_step(run_context(context), matured)

    @task
    @pipeline_task
    def importance_drift(features: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import importance_drift_step

        return importance_drift_step(run_context(context), features)

    @task
    @pipeline_task
    def schema_drift(validated: list[dict[str, Any]], importance: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import schema_drift_step

        return schema_drift_step(run_context(context), validated, importance)

    @task
    @pipeline_task
    def challenger_comparison(matured: dict[str, Any], challenger: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import challenger_comparison_step

        return challenger_comparison_step(run_context(context), matured, challenger)

    @task
    @pipeline_task
    def estimated_performance(scores: dict[str, Any], matured: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import estimated_performance_step

        return estimated_performance_step(run_context(context), scores, matured)

    @task
    @pipeline_task
    def alerts(validated: list[dict[str, Any]], features: dict[str, Any], drift: dict[str, Any],
               performance: dict[str, Any], concept: dict[str, Any], importance: dict[str, Any],
               schema: dict[str, Any], challenger: dict[str, Any], estimate: dict[str, Any],
               **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.part_steps import alerts_step

        return alerts_step(run_context(context), validated, features, drift, performance, concept, importance, schema,
                           challenger, estimate)

    @task
    @pipeline_task
    def drift_report(features: dict[str, Any], drift: dict[str, Any], monitoring: dict[str, Any],
                     **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import report_step

        return report_step(run_context(context), features, drift, monitoring)

    @task(outlets=[SCORES_PUBLISHED])
    @pipeline_task
    def publish_scores(scores: dict[str, Any], report: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import publish_step

        published = publish_step(run_context(context), scores)
        # a business's own DAG (a CRM sync) is scheduled on it; the extra names the night published
        context["outlet_events"][SCORES_PUBLISHED].extra = {"date": published["as_of"], "rows": published["rows"],
                                                            "model_version": scores.get("model_version")}
        return published

    @task
    @pipeline_task
    def dashboard_snapshot(published: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import dashboard_step

        return dashboard_step(run_context(context))

    @task(outlets=[RETRAINING_REQUESTED])
    def request_retraining(monitoring: dict[str, Any], **context: Any) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        decision = monitoring.get("retraining") or {}
        if not monitoring["retrain"]:  # the one-sentence reason (pipeline.monitoring.retraining)
            raise AirflowSkipException(decision.get("reason") or "no retraining requested tonight")
        day = str(run_date(context))
        # churn_training trains as of this date (churnflow_airflow.tasks.run_date), on these snapshots
        context["outlet_events"][RETRAINING_REQUESTED].extra = {
            "date": day, "severity": monitoring["severity"], "model_version": monitoring.get("model_version"),
            "snapshots": decision.get("snapshots", []), "rule": decision.get("rule"),
            "change_date": decision.get("change_date")}
        return decision.get("reason") or f"retraining requested as of {day}: severity {monitoring['severity']}"

    @task
    @pipeline_task
    def email_report(report: dict[str, Any], scores: dict[str, Any], monitoring: dict[str, Any],
                     **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.monitoring.steps import email_step

        ctx = run_context(context)
        if not context["params"]["send_email"]:
            raise AirflowSkipException("send_email is off for this run")
        return email_step(ctx, report, scores, smtp=smtp_settings(ctx.settings.smtp_conn_id),
                          recipients=list(context["params"]["recipients"]) or ctx.settings.recipients,
                          monitoring=monitoring)

    validated = ingest(DataReadySensor(task_id="wait_for_data").output)
    # features and scores as `partitions` mapped pieces (customer-hash buckets), combined into the night's files
    # (TaskFlow: an XComArg stands for the value; mapped tasks and multiple_outputs are typed loosely)
    parts = plan_partitions()
    validated >> parts  # the buckets are planned once the night's data is in
    built = build_features.partial(validated=validated).expand(part=parts)
    combined: Any = combine_partitions(built, score.expand(features=built))
    features, scores = combined["features"], combined["scores"]
    drift = data_drift(features)
    # the monitoring parts, each from its real inputs; the alerts are gathered from their outputs
    matured = matured_labels()
    validated >> matured  # labels are built from the lake ingest has just caught up
    importance = importance_drift(features)
    monitoring = alerts(validated, features, drift, performance(features, scores, matured), concept_drift(matured),
                        importance, schema_drift(validated, importance),
                        challenger_comparison(matured, score_challenger(features)),
                        estimated_performance(scores, matured))
    report = drift_report(features, drift, monitoring)
    published = publish_scores(scores, report)
    published >> email_report(report, scores, monitoring)
    dashboard_snapshot(published)
    request_retraining(monitoring)  # type: ignore[arg-type]  # TaskFlow: an XComArg stands for the value


churn_nightly()
