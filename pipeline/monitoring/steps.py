"""The monitoring steps the DAGs and the command line run: data drift, the night's monitoring
(prediction drift, matured-label performance, fairness, alerts), the drift report and the
analysts' e-mail."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.artifacts import nan_to_none
from pipeline.context import RunContext
from pipeline.model.pinning import pinned_estimator, pinned_model

log = logging.getLogger(__name__)


def _reference_and_current(ctx: RunContext, features: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(pinned_model(ctx).reference_path), storage.read_parquet(storage.location(features["path"]))


def drift_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """Data drift of tonight's features against the pinned model's training reference, on all
    rows: ``drift_summary.json`` under ``reports/<D>/`` and the night's ``drift_metrics`` rows."""
    from pipeline.monitoring.drift import compute_drift, write_summary
    from pipeline.monitoring.store import store_drift_metrics

    model = pinned_model(ctx)
    reference, current = _reference_and_current(ctx, features)
    summary = compute_drift(reference, current, model.params["numeric_features"], model.params["categorical_features"],
                            share_threshold=ctx.settings.drift_share_threshold)
    summary_json = write_summary(summary, ctx.settings.reports_dir / ctx.day.isoformat())
    store_drift_metrics(ctx.settings, ctx.day, model.version, summary)
    drifted = [f.column for f in summary.features if f.drifted]
    with_psi = [f for f in summary.features if f.psi == f.psi]  # not NaN
    top = max(with_psi, key=lambda f: f.psi, default=None)
    log.info("drift %s: %d/%d features drifted (share %.2f)", ctx.day, len(drifted), len(summary.features),
             summary.drift_share)
    return nan_to_none({
        "summary": str(summary_json),
        "drift_share": summary.drift_share,
        "dataset_drift": summary.dataset_drift,
        "drifted": drifted,
        "max_psi": top.psi if top else float("nan"),
        "max_psi_feature": top.column if top else None,
        "model_version": model.version,
    })


def monitor_step(
    ctx: RunContext, features: dict[str, Any], scores: dict[str, Any], drift: dict[str, Any], *, rejected_rows: int = 0,
    challenger: dict[str, Any] | None = None, validated: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Prediction drift, matured-label performance, fairness, the challenger in shadow, schema
    drift and alerts for one night (``challenger``: what :func:`pipeline.model.steps.score_challenger_step`
    said tonight; ``validated``: the night's ingest summaries, whose column counts the schema-drift
    check compares with the model's training: None, not checked).

    Loads the night's scores and features, the pinned model's reference, the recent nights'
    scores and the matured labels; :func:`pipeline.monitoring.night.monitor_night` computes; the
    monitoring tables, ``runs/<dag>/<date>/monitor/monitoring.json`` and the alerts are saved.
    Tonight's alerts are stored ``pending`` (or ``suppressed``) until an e-mail carrying them is
    accepted. ``retrain`` is true when a critical alert of a retraining rule was raised tonight
    (not suppressed), whatever becomes of the e-mail, and ``retrain_on_critical`` is on.
    """
    from pipeline.artifacts import write_text
    from pipeline.features.labels import matured, matured_night
    from pipeline.model.score import score_frame
    from pipeline.monitoring import night as monitor
    from pipeline.monitoring import store as monitor_store
    from pipeline.monitoring.alerts import SUPPRESSED, evaluate_rules, highest_severity, record_alerts, retrain_requested

    settings, day, model = ctx.settings, ctx.day, pinned_model(ctx)
    threshold = model.threshold(settings.default_threshold)
    reference = pd.read_parquet(model.reference_path)
    ref_scores = score_frame(pinned_estimator(ctx), reference, model.feature_columns, model.version, threshold,
                             0)["churn_probability"]
    label = model.params.get("label") or None
    scored_on = matured_night(settings, day, label)
    scores_then = monitor_store.scores_of(settings, scored_on)
    labelled = matured(settings, scores_then, scored_on, day, label) if len(scores_then) else None
    earlier = (ctx.dir("build_features", day=scored_on) / "features.parquet"
               if labelled is not None and len(labelled) else None)
    tonight_features = storage.read_parquet(storage.location(features["path"]))
    importance = importance_night(ctx, tonight_features, reference)
    result = monitor.monitor_night(
        day, model_version=model.version, threshold=threshold, champion_metrics=model.metrics(), settings=settings,
        tonight=storage.read_parquet(storage.location(scores["path"])),
        features=tonight_features, reference=reference,
        reference_scores=ref_scores.to_numpy(), baseline=monitor_store.recent_high_risk_shares(settings, day, threshold),
        drift=monitor.DriftFacts.from_dict(drift), labelled=labelled,
        labelled_features=storage.read_parquet(earlier) if earlier is not None and storage.is_file(earlier) else None,
        rejected_rows=rejected_rows, params=model.params,
        concept=concept_night(ctx, labelled, threshold) if labelled is not None and len(labelled) else None,
        importance=importance,
        challenger=challenger_night(ctx, labelled, threshold, challenger),
        schema_drift=schema_drift_night(ctx, validated, reference, importance) if validated is not None else None)
    monitor_store.store_monitoring(settings, result)
    alerts = record_alerts(settings, day, model.version, evaluate_rules(settings, result))
    raised = alerts[alerts["status"] != SUPPRESSED]
    out = {**result.to_dict(), "alerts": alerts.drop(columns="run_date").to_dict("records"),
           "severity": highest_severity(raised["severity"]), "retrain": retrain_requested(settings, raised)}
    path = ctx.dir("monitor") / "monitoring.json"
    write_text(json.dumps(out, indent=2, default=str), path)
    out["path"] = str(path)
    log.info("monitor %s: severity %s, %d alerts (%d not suppressed), retrain %s", day, out["severity"], len(alerts),
             len(raised), out["retrain"])
    return nan_to_none(json.loads(json.dumps(out, default=str)))  # XCom JSON has no NaN


def importance_night(ctx: RunContext, features: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame | None:
    """Feature-importance drift: the pinned model's mean |SHAP| per feature tonight vs on its
    training reference (:func:`pipeline.monitoring.metrics.importance_drift`), each on at most
    ``importance_sample_rows`` rows (a fixed sample); None when that setting is 0."""
    from pipeline.monitoring.metrics import importance_drift

    rows = ctx.settings.importance_sample_rows
    if not rows:
        return None
    return importance_drift(ctx.day, pinned_model(ctx).version, mean_abs_shap(ctx, features, reference, rows),
                            mean_abs_shap(ctx, reference, reference, rows))


def mean_abs_shap(ctx: RunContext, frame: pd.DataFrame, reference: pd.DataFrame, rows: int) -> pd.Series:
    """The pinned model's mean |SHAP| per feature over at most ``rows`` rows of ``frame`` (a fixed,
    seeded sample; :func:`pipeline.model.explain.mean_abs_contributions` against ``reference``)."""
    from pipeline.model.explain import mean_abs_contributions

    params = pinned_model(ctx).params
    sample = frame if len(frame) <= rows else frame.sample(rows, random_state=ctx.settings.random_seed)
    return mean_abs_contributions(pinned_estimator(ctx), sample.reset_index(drop=True), reference,
                                  list(params["numeric_features"]), list(params["categorical_features"]))


def schema_drift_night(ctx: RunContext, validated: list[dict[str, Any]], reference: pd.DataFrame,
                       importance: pd.DataFrame | None) -> Any:
    """The pinned model's recorded source columns against tonight's ingested batches
    (:func:`pipeline.monitoring.schema_drift.find`), each finding weighed by its features' share
    of the model's mean |SHAP| on its training reference (tonight's importance drift's reference
    figures, or computed on at most :data:`SCHEMA_DRIFT_SHAP_ROWS` reference rows when it is off).
    A version without a record is said once (:data:`~pipeline.monitoring.schema_drift.NOT_RECORDED`)."""
    from pipeline.monitoring.schema_drift import NOT_RECORDED, PARAMS_KEY, SchemaDrift, find, night_counts, with_importance

    model = pinned_model(ctx)
    record = model.params.get(PARAMS_KEY)
    if not isinstance(record, dict):
        log.warning("schema drift %s: %s: %s", ctx.day, model.version, NOT_RECORDED)
        return SchemaDrift(model.version, False, note=NOT_RECORDED)
    night = night_counts(validated)
    findings = find(record, night, ctx.settings.schema_drift_null_margin)
    if findings:
        if importance is not None and len(importance):
            shap = importance.set_index("feature")["reference_mean_abs_shap"]
        else:
            shap = mean_abs_shap(ctx, reference, reference, SCHEMA_DRIFT_SHAP_ROWS)
        findings = with_importance(findings, shap)
    for f in findings:
        log.warning("schema drift %s: %s", ctx.day, f.describe())
    checked = sorted(c for c in record.get("columns", {}) if c in night)
    log.info("schema drift %s: %d source column(s) of %s checked, %d finding(s)", ctx.day, len(checked),
             model.version, len(findings))
    return SchemaDrift(model.version, True, checked, findings)


#: reference rows whose SHAP values weigh a schema-drift finding when importance drift is off
SCHEMA_DRIFT_SHAP_ROWS = 5_000


def challenger_night(ctx: RunContext, labelled: pd.DataFrame | None, threshold: float,
                     tonight: dict[str, Any] | None) -> Any:
    """The challenger's night (:class:`pipeline.monitoring.challenger.ChallengerNight`): tonight's
    challenger (or why there is none) and, when a night scored by a challenger has matured, both
    models judged on its labels with the nights compared before it; None when no challenger step
    ran tonight and nothing it scored has matured."""
    from pipeline.model.registry import get_version
    from pipeline.monitoring.challenger import ChallengerNight, compare, side_by_side
    from pipeline.monitoring.store import challenger_nights_before, scores_of
    from pipeline.results import CHALLENGER_SCORES

    settings, day = ctx.settings, ctx.day
    comparison = None
    if labelled is not None and len(labelled):
        shadow = scores_of(settings, labelled.attrs["scored_on"], CHALLENGER_SCORES)
        if len(shadow):
            version = str(shadow["model_version"].iloc[0])
            comparison = compare(day, labelled, shadow, threshold,
                                 get_version(settings, version).threshold(settings.default_threshold),
                                 margin=settings.promotion_min_improvement,
                                 min_positives=settings.performance_min_positives)
    if tonight is None and comparison is None:
        return None
    needed = settings.challenger_min_nights
    before = challenger_nights_before(settings, day, max(needed, 1) - (comparison is not None))
    nights = side_by_side(pd.concat([before, comparison], ignore_index=True) if comparison is not None and len(before)
                          else before if comparison is None else comparison)
    return ChallengerNight(day.isoformat(), pinned_model(ctx).version, (tonight or {}).get("version"),
                           (tonight or {}).get("reason", "the challenger was not scored tonight"), needed,
                           settings.promotion_min_improvement, comparison, nights)


def concept_night(ctx: RunContext, labelled: pd.DataFrame, threshold: float) -> Any:
    """The concept-drift detectors fed with tonight's matured errors
    (:func:`pipeline.monitoring.concept.run_night`), from the state the latest earlier night of
    the predicting model version left; None when no detector is configured."""
    from pipeline.artifacts import as_date
    from pipeline.model.registry import get_version
    from pipeline.monitoring.concept import run_night
    from pipeline.monitoring.store import concept_states_before

    settings = ctx.settings
    if not settings.concept_detectors:
        return None
    version = str(labelled["model_version"].iloc[0])  # the errors are the predicting version's
    if version != pinned_model(ctx).version:
        threshold = get_version(settings, version).threshold(settings.default_threshold)
    scored_on = as_date(labelled.attrs["scored_on"])
    return run_night(ctx.day, version, labelled, threshold, (ctx.day - scored_on).days,
                     concept_states_before(settings, ctx.day, version), detectors=settings.concept_detectors,
                     adwin_delta=settings.concept_drift_adwin_delta, ddm_threshold=settings.concept_drift_ddm_threshold,
                     warm_start=settings.concept_drift_warm_start)


def report_step(ctx: RunContext, features: dict[str, Any], drift: dict[str, Any],
                monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    """The night's Evidently drift report (``drift_report.html`` and its e-mail copy under
    ``reports/<D>/``), assembled once: the all-rows verdicts of :func:`drift_step` in the
    banner, the trend over recent nights from the monitoring tables below it."""
    from pipeline.monitoring.charts import png_img_tag, trend_chart_png
    from pipeline.monitoring.drift import DriftSummary
    from pipeline.monitoring.notify import importance_html, trend_html
    from pipeline.monitoring.report import drift_report
    from pipeline.monitoring.store import trend_frame

    settings, model = ctx.settings, pinned_model(ctx)
    summary = DriftSummary.from_dict(json.loads(Path(drift["summary"]).read_text()))
    sections = []
    trend = trend_frame(settings, ctx.day) if monitoring is not None else pd.DataFrame()
    if not trend.empty:
        chart = png_img_tag(trend_chart_png(trend, ctx.day, settings.trend_nights))
        sections.append(("trend", trend_html(trend, chart, settings.trend_nights)))
    if monitoring is not None and monitoring.get("importance"):
        sections.append(("importance", importance_html(monitoring["importance"])))
    reference, current = _reference_and_current(ctx, features)
    html, _, _ = drift_report(
        reference, current, model.params["numeric_features"], model.params["categorical_features"],
        settings.reports_dir / ctx.day.isoformat(), sample_rows=settings.drift_report_sample_rows,
        share_threshold=settings.drift_share_threshold, summary=summary, sections=sections,
        reference_label=f"training reference of {model.version}", current_label=f"as of {ctx.day}")
    log.info("report %s -> %s", ctx.day, html)
    return {**drift, "report": str(html), "email_report": str(html.with_name("drift_report_email.html"))}


def dashboard_step(ctx: RunContext) -> dict[str, Any]:
    """The night's snapshot in the Evidently dashboard (``dashboard_workspace``), built from
    what the night published in the results store; a rerun of the night replaces it."""
    from pipeline.monitoring.dashboard import add_night

    return add_night(ctx.settings, ctx.day)


def dashboard_line(settings: Any) -> str:
    """Where the analysts find the nights over time (a URL when the dashboard is a served one;
    no server path otherwise)."""
    where = f" at {settings.dashboard_location}" if settings.dashboard_location.startswith("http") else \
        " (make dashboard opens it on the churnflow server)"
    return f"Over time: the dashboard of nights, Evidently project '{settings.dashboard_project}'{where}."


def email_step(
    ctx: RunContext,
    report: dict[str, Any],
    scores: dict[str, Any],
    *,
    smtp: Any,
    recipients: list[str],
    monitoring: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """E-mail the analysts the night's summary (HTML and the same facts as plain text) with the
    drift report (its e-mail copy, zipped) and tonight's campaign list attached.

    The subject carries the date and the highest severity of the alerts it delivers: tonight's
    and those still ``pending`` from nights whose e-mail did not go out. They become ``sent``
    only once the SMTP server has accepted the message; when sending fails they stay pending
    and the next e-mail carries them. Attachments are written to ``runs/<dag>/<date>/email_report/``
    (composed in a local folder and uploaded when the artifacts are on an object store).
    """
    with storage.local_dir(ctx.dir("email_report")) as out:
        return _email(ctx, out, report, scores, smtp=smtp, recipients=recipients, monitoring=monitoring)


def _email(ctx: RunContext, out: Path, report: dict[str, Any], scores: dict[str, Any], *, smtp: Any,
           recipients: list[str], monitoring: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`email_step` with its attachments written in the local folder ``out``."""
    from pipeline.artifacts import write_text, write_zip
    from pipeline.model.score import campaign_list, is_high_risk
    from pipeline.monitoring.alerts import alerts_for_email, mark_sent
    from pipeline.monitoring.charts import png_img_tag, trend_chart_png
    from pipeline.monitoring.drift import REPORT_FILE, DriftSummary
    from pipeline.monitoring.notify import (
        CampaignFile,
        EmailDeliveryError,
        NightlyReport,
        build_report_email,
        left_out_lines,
        send_email,
    )
    from pipeline.monitoring.report import email_copy
    from pipeline.monitoring.store import trend_frame

    settings, day = ctx.settings, ctx.day.isoformat()
    full, light = Path(report["report"]), Path(report["email_report"])
    report_zip = write_zip(light if light.is_file() else full, out / f"{REPORT_FILE}.zip", arcname=REPORT_FILE)
    scored = storage.read_parquet(storage.location(scores["path"]))
    campaign = campaign_list(scored, scores["threshold"], settings.campaign_daily_capacity)
    campaign_csv = write_text(campaign.to_csv(index=False), out / f"campaign_{day}.csv")
    attached = [report_zip, campaign_csv]
    listed, delivered = alerts_for_email(settings, day) if monitoring is not None else (pd.DataFrame(), pd.DataFrame())
    chart = png_img_tag(trend_chart_png(trend_frame(settings, day), day, settings.trend_nights)) if monitoring is not None else ""
    notes: list[str] = []

    def compose() -> tuple[NightlyReport, Any]:
        facts = NightlyReport(
            logical_date=day, drift=DriftSummary.from_dict(json.loads(Path(report["summary"]).read_text())),
            scored=scores["rows"], high_risk_share=scores["high_risk_share"], threshold=scores["threshold"],
            campaign=CampaignFile(campaign_csv.name, len(campaign),
                                  int(is_high_risk(scored["churn_probability"], scores["threshold"]).sum()),
                                  settings.campaign_daily_capacity),
            monitoring=monitoring, alerts=listed.to_dict("records"), attachments=[p.name for p in attached],
            churn_definition=str((pinned_model(ctx).params.get("label") or {}).get("definition", "")),
            models=ctx.model_facts, left_out=left_out_lines(pinned_model(ctx).params, monitoring), attachment_notes=notes,
            dashboard=dashboard_line(settings),
        )
        return facts, build_report_email(sender=settings.email_sender, recipients=recipients, subject=facts.subject(),
                                         summary_html=facts.html(chart), summary_text=facts.text(), attachments=attached)

    facts, message = compose()
    limit = settings.email_max_bytes
    # over the limit: lighter attachments, one step at a time, each said in the message
    if len(message.as_bytes()) > limit and full.is_file():
        lightest = write_text(email_copy(full.read_text(encoding="utf-8"), []), out / "drift_report_light.html")
        attached[0] = report_zip = write_zip(lightest, report_zip, arcname=REPORT_FILE)
        notes.append(f"The drift report is attached without its detail plots (every column's row and verdict are "
                     f"there) to keep this message under {limit:,} bytes (email_max_bytes); the complete report is "
                     f"kept with the night's outputs as {REPORT_FILE}.")
        facts, message = compose()
    if len(message.as_bytes()) > limit:
        attached[1] = campaign_csv = write_zip(campaign_csv, out / f"{campaign_csv.name}.zip", arcname=campaign_csv.name)
        notes.append(f"The campaign list is zipped to keep this message under {limit:,} bytes (email_max_bytes).")
        facts, message = compose()
    for left in list(attached):  # what still does not fit stays on disk, named
        if len(message.as_bytes()) <= limit:
            break
        attached.remove(left)
        notes.append(f"Not attached: {left.name} ({left.stat().st_size:,} bytes) would take this message over "
                     f"{limit:,} bytes (email_max_bytes); it is kept with the night's outputs (email_report).")
        facts, message = compose()
    try:
        send_email(message, smtp)
    except EmailDeliveryError as exc:
        raise EmailDeliveryError(f"{exc}; its {len(delivered)} alert(s) stay pending for the next e-mail") from exc
    marked = mark_sent(settings, delivered)
    size = len(message.as_bytes())
    log.info("email %s: report sent to %s via %s:%s (%d bytes); %d alerts now sent", day, ", ".join(recipients),
             smtp.host, smtp.port, size, marked)
    return {"recipients": recipients, "subject": message["Subject"], "severity": facts.severity,
            "attachments": [p.name for p in attached], "bytes": size, "alerts_sent": marked}
