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
   (date, window, model version) that every later task uses, so a promotion during the night
   cannot make one night use two models.
2. **ingest** - the window's database rows and event files, each table gated by Great
   Expectations; bad rows are quarantined with their reason.
3. **build_features** - point-in-time features as of D, gated by their own expectation suite;
   one mapped task instance per customer-hash bucket (`plan_partitions`: the `partitions`
   setting, default 1), each reading its customers' rows only.
4. **score** - the pinned model's scores, one mapped instance per bucket; **combine_partitions**
   makes them the night's one features and scores files (ordered by customer, risk bands decided
   over every customer): the same files whatever `partitions`.
   **score_challenger** - the challenger in shadow (the newest version registered after the champion
   and never promoted, or `challenger_version`) scores the night's combined features beside the
   champion: table `challenger_scores`, never the campaign; no challenger is said and the night goes on.
5. **drift** - data drift of every feature vs the pinned model's training reference, on all rows
   (`drift_summary.json`, table `drift_metrics`).
6. **monitor** - prediction drift, performance on matured labels (scores of D - horizon),
   fairness by segment, champion vs challenger on the same matured labels, the source columns the
   champion was trained with vs tonight's ingested ones (schema drift), and deduplicated alerts
   (tables `prediction_drift`, `model_performance`, `fairness_metrics`, `challenger_performance`,
   `alerts` of the results store; `promotion_review` when the challenger keeps winning,
   `schema_drift` when a trained-on column is absent or null beyond training).
7. **drift_report** - the Evidently HTML report and its e-mail copy under `data/reports/D/`,
   assembled once, with the trend over recent nights.
8. **publish_scores** - the scores become the `churn_scores` rows of D (a rerun of D replaces
   D): the night's last write, so a night that fails before it (a full disk while writing the
   report) publishes no scores.
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
   `extra={"date": D}` (churn_training then trains as of D) only when a critical
   drift/performance alert was raised and `retrain_on_critical` is on; skipped otherwise.

Trigger it by hand from the UI to choose the date, recipients or skip the e-mail.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, dag, task

from churnflow_airflow.tasks import (
    DataReadySensor,
    common_params,
    ingest,
    nightly_dag_args,
    pipeline_task,
    run_context,
    run_date,
)
from pipeline.config import load_settings

#: emitted when a critical alert asks for a new model; churn_training is scheduled on it
RETRAINING_REQUESTED = Asset("churnflow://retraining-requested")


@dag(
    dag_id="churn_nightly",
    **nightly_dag_args(),
    tags=["churnflow", "scoring", "monitoring"],
    doc_md=__doc__,
    params={
        **common_params(),
        # empty = the configured list, read when the task runs (a config change needs no re-parse)
        "recipients": Param([], type="array", items={"type": "string", "format": "email"},
                            title="Report recipients",
                            description="Analysts who receive the drift report. Leave empty for the configured "
                                        f"list (email_recipients, now: {', '.join(load_settings().recipients)})."),
        "send_email": Param(load_settings().email_enabled, type="boolean", title="Send the e-mail",
                            description="Switch off to run without e-mailing the report."),
        "lookback_days": Param(1, type="integer", minimum=1, maximum=31, title="Days to ingest",
                               description="Ingest this many days before the logical date (catch up missed nights)."),
        "drift_report_sample_rows": Param(load_settings().drift_report_sample_rows, type="integer",
                                          minimum=1000, maximum=200000, title="Rows in the visual drift report",
                                          description="Statistics always use all rows; the HTML shows a sample."),
    },
)
def churn_nightly() -> None:
    # every task after wait_for_data gets its XCom (`ready`): the run context with the pinned model version

    @task
    def plan_partitions(ready: dict[str, Any], **context: Any) -> list[dict[str, int]]:
        from pipeline.features.partitions import all_parts

        return [p.to_dict() for p in all_parts(run_context(context, ready).settings.partitions)]

    @task
    @pipeline_task
    def build_features(part: dict[str, int], validated: list[dict[str, Any]], ready: dict[str, Any],
                       **context: Any) -> dict[str, Any]:
        from pipeline.features.partitions import Part
        from pipeline.features.steps import features_step, validate_features_step

        ctx = run_context(context, ready)
        return validate_features_step(ctx, features_step(ctx, Part.from_dict(part)))

    @task
    @pipeline_task
    def score(features: dict[str, Any], ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import score_step

        return score_step(run_context(context, ready), features)

    @task(multiple_outputs=True)
    @pipeline_task
    def combine_partitions(built: list[dict[str, Any]], scored: list[dict[str, Any]], ready: dict[str, Any],
                           **context: Any) -> dict[str, Any]:
        from pipeline.features.steps import combine_features
        from pipeline.model.steps import combine_scores

        ctx = run_context(context, ready)
        return {"features": combine_features(ctx, list(built)), "scores": combine_scores(ctx, list(scored))}

    @task
    @pipeline_task
    def score_challenger(features: dict[str, Any], ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import score_challenger_step

        return score_challenger_step(run_context(context, ready), features)

    @task
    @pipeline_task
    def drift(features: dict[str, Any], ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import drift_step

        return drift_step(run_context(context, ready), features)

    @task
    @pipeline_task
    def monitor(features: dict[str, Any], scores: dict[str, Any], drift: dict[str, Any],
                validated: list[dict[str, Any]], ready: dict[str, Any], challenger: dict[str, Any],
                **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import monitor_step

        rejected = sum(v.get("rejected", 0) for v in validated) + features.get("rejected", 0)
        return monitor_step(run_context(context, ready), features, scores, drift, rejected_rows=rejected,
                            challenger=challenger, validated=validated)

    @task
    @pipeline_task
    def drift_report(features: dict[str, Any], drift: dict[str, Any], monitoring: dict[str, Any],
                     ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import report_step

        return report_step(run_context(context, ready), features, drift, monitoring)

    @task
    @pipeline_task
    def publish_scores(scores: dict[str, Any], report: dict[str, Any], ready: dict[str, Any],
                       **context: Any) -> dict[str, Any]:
        from pipeline.model.steps import publish_step

        return publish_step(run_context(context, ready), scores)

    @task
    @pipeline_task
    def dashboard_snapshot(published: dict[str, Any], ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.monitoring.steps import dashboard_step

        return dashboard_step(run_context(context, ready))

    @task(outlets=[RETRAINING_REQUESTED])
    def request_retraining(monitoring: dict[str, Any], **context: Any) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        if not monitoring["retrain"]:
            raise AirflowSkipException("no critical drift/performance alert (or retrain_on_critical is off)")
        day = str(run_date(context))
        context["outlet_events"][RETRAINING_REQUESTED].extra = {"date": day, "severity": monitoring["severity"],
                                                                "model_version": monitoring.get("model_version")}
        return f"retraining requested as of {day}: severity {monitoring['severity']}"

    @task
    @pipeline_task
    def email_report(report: dict[str, Any], scores: dict[str, Any], monitoring: dict[str, Any],
                     ready: dict[str, Any], **context: Any) -> dict[str, Any]:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

        from pipeline.monitoring.notify import SmtpSettings
        from pipeline.monitoring.steps import email_step

        ctx = run_context(context, ready)
        settings = ctx.settings
        if not context["params"]["send_email"]:
            raise AirflowSkipException("send_email is off for this run")
        try:
            conn = BaseHook.get_connection(settings.smtp_conn_id)
        except AirflowNotFoundException as exc:
            raise AirflowFailException(
                f"no Airflow connection {settings.smtp_conn_id!r} to send the report with: create it in the UI "
                f"(Admin > Connections, type smtp), with 'airflow connections add {settings.smtp_conn_id} "
                "--conn-uri smtp://user:pass@host:587', or as the environment variable "
                f"AIRFLOW_CONN_{settings.smtp_conn_id.upper()}; or trigger with send_email=false") from exc
        extra = conn.extra_dejson
        # same meaning as the Airflow SMTP provider's connection extras
        ssl = not extra.get("disable_ssl", False)
        smtp = SmtpSettings(host=conn.host or "localhost", port=int(conn.port or (465 if ssl else 25)),
                            login=conn.login or None, password=conn.password or None,
                            ssl=ssl, starttls=not ssl and not extra.get("disable_tls", False),
                            timeout=float(extra.get("timeout", 30)))
        return email_step(ctx, report, scores, smtp=smtp,
                          recipients=list(context["params"]["recipients"]) or settings.recipients,
                          monitoring=monitoring)

    ready = DataReadySensor(task_id="wait_for_data").output
    validated = ingest(ready)
    # features and scores as `partitions` mapped pieces (customer-hash buckets), combined into the night's files
    # (TaskFlow: an XComArg stands for the value; mapped tasks and multiple_outputs are typed loosely)
    built = build_features.partial(validated=validated, ready=ready).expand(part=plan_partitions(ready))  # type: ignore[arg-type]
    combined: Any = combine_partitions(built, score.partial(ready=ready).expand(features=built), ready)
    features, scores = combined["features"], combined["scores"]
    measured = drift(features, ready)
    monitoring = monitor(features, scores, measured, validated, ready, score_challenger(features, ready))
    report = drift_report(features, measured, monitoring, ready)
    published = publish_scores(scores, report, ready)
    published >> email_report(report, scores, monitoring, ready)
    dashboard_snapshot(published, ready)
    request_retraining(monitoring)  # type: ignore[arg-type]  # TaskFlow: an XComArg stands for the value


churn_nightly()
