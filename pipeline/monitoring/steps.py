"""The monitoring steps the DAGs and the command line run around the night's monitoring parts
(:mod:`pipeline.monitoring.part_steps`): data drift, the drift report, the dashboard snapshot
and the analysts' e-mail."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.artifacts import nan_to_none, write_text
from pipeline.context import RunContext
from pipeline.model.pinning import pinned_model, pinned_reference, run_frame

log = logging.getLogger(__name__)


def _reference_and_current(ctx: RunContext, features: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pinned_reference(ctx), run_frame(ctx, features["path"])


#: the data-drift step's name: its task id in the nightly DAG and its folder under runs/<dag>/<date>/
DATA_DRIFT = "data_drift"


def drift_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """Data drift of tonight's features against the pinned model's training reference, on all
    rows: ``drift_summary.json`` under ``reports/<D>/`` (what the report and the e-mail read),
    the night's ``drift_metrics`` rows and the facts the alerts read (``data_drift/drift.json``)."""
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
    out = nan_to_none({
        "summary": str(summary_json),
        "drift_share": summary.drift_share,
        "dataset_drift": summary.dataset_drift,
        "drifted": drifted,
        "max_psi": top.psi if top else float("nan"),
        "max_psi_feature": top.column if top else None,
        "psi": {f.column: f.psi for f in summary.features},  # per feature: the alerts weigh it by importance
        "model_version": model.version,
    })
    path = write_text(json.dumps(out, indent=2), ctx.dir(DATA_DRIFT) / "drift.json")
    return {**out, "facts": str(path)}


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
        first = first_night(settings)
        chart = png_img_tag(trend_chart_png(trend, ctx.day, settings.trend_nights, first))
        sections.append(("trend", trend_html(trend, chart, settings.trend_nights, first)))
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


def first_night(settings: Any) -> Any:
    """The first night the results store holds (its drift rows): the trend says "so far" until
    its window reaches back to it."""
    import sqlalchemy as sa

    from pipeline import results
    from pipeline.artifacts import as_date

    with results.results_engine(settings).connect() as conn:
        first = conn.execute(sa.select(sa.func.min(results.DRIFT.c.run_date))).scalar()
    return None if first is None else as_date(first)


def dashboard_step(ctx: RunContext) -> dict[str, Any]:
    """The night's snapshot in the Evidently dashboard (``dashboard_workspace``), built from
    what the night published in the results store; a rerun of the night replaces it. The night
    whose labels matured tonight is added again, with its realised performance beside its estimate."""
    from pipeline.monitoring.dashboard import add_night, matured_tonight, published_nights

    out = add_night(ctx.settings, ctx.day)
    published = set(published_nights(ctx.settings))
    out["refreshed"] = [add_night(ctx.settings, d)["snapshot_id"] for d in matured_tonight(ctx.settings, ctx.day)
                        if d in published and d != ctx.day]
    return out


def dashboard_line(settings: Any, day: Any) -> str:
    """Where the analysts find tonight's page and the nights over time: the link of the night's page
    in the dashboard (:func:`pipeline.monitoring.dashboard.night_link`; none when no address is set or the
    dashboard cannot be reached: said so), never a server path."""
    from pipeline.monitoring.dashboard import night_link

    project = f"the dashboard of nights, Evidently project '{settings.dashboard_project}'"
    try:
        link = night_link(settings, day)
    except OSError as exc:
        log.warning("dashboard link of %s: %s", day, exc)
        link = ""
    if link:
        return f"Tonight and the nights before, every figure: {project}, tonight's page: {link}"
    return f"Over time: {project} (make dashboard opens it on the churnflow server; dashboard_url gives the link)."


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
    from pipeline.artifacts import write_zip
    from pipeline.model.score import campaign_file, is_high_risk
    from pipeline.monitoring.alerts import alerts_for_email, mark_sent
    from pipeline.monitoring.charts import png_img_tag, trend_chart_png, trend_title
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
    # the complete report when the message stays under its size limit; else its e-mail copy (below)
    report_zip = write_zip(full if full.is_file() else light, out / f"{REPORT_FILE}.zip", arcname=REPORT_FILE)
    # only the customers at or above the threshold can be on tonight's list (campaign_list) or count as at risk:
    # the night's other rows (a million, with their reasons) are left unread
    scored = storage.read_arrow(storage.location(scores["path"]),
                                filters=[("churn_probability", ">=", float(scores["threshold"]))]).to_pandas()
    campaign = campaign_file(settings, scored, scores["threshold"], day)  # for the agents: rounded, why, campaign_columns
    campaign_csv = write_text(campaign.to_csv(index=False), out / f"campaign_{day}.csv")
    attached = [report_zip, campaign_csv]
    listed, delivered = alerts_for_email(settings, day) if monitoring is not None else (pd.DataFrame(), pd.DataFrame())
    trend = trend_frame(settings, day) if monitoring is not None else pd.DataFrame()
    first = first_night(settings) if not trend.empty else None
    chart = png_img_tag(trend_chart_png(trend, day, settings.trend_nights, first)) if not trend.empty else ""
    chart_title = trend_title(trend, day, settings.trend_nights, first) if not trend.empty else ""
    dashboard = dashboard_line(settings, day)
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
            dashboard=dashboard,
        )
        return facts, build_report_email(sender=settings.email_sender, recipients=recipients, subject=facts.subject(),
                                         summary_html=facts.html(chart, chart_title), summary_text=facts.text(),
                                         attachments=attached)

    facts, message = compose()
    limit = settings.email_max_bytes
    # over the limit: lighter attachments, one step at a time, each said in the message
    where = "; tonight's figures are on the dashboard (below)" if "http" in dashboard else ""
    if len(message.as_bytes()) > limit and full.is_file() and light.is_file():
        attached[0] = report_zip = write_zip(light, report_zip, arcname=REPORT_FILE)
        notes.append(f"The drift report is attached as its e-mail copy (detail plots for the most drifted columns; "
                     f"every column's row and verdict are there): the complete one would take this message over "
                     f"{limit:,} bytes (email_max_bytes){where}.")
        facts, message = compose()
    if len(message.as_bytes()) > limit and full.is_file():
        lightest = write_text(email_copy(full.read_text(encoding="utf-8"), []), out / "drift_report_light.html")
        attached[0] = report_zip = write_zip(lightest, report_zip, arcname=REPORT_FILE)
        notes[-1:] = [f"The drift report is attached without its detail plots (every column's row and verdict are "
                      f"there) to keep this message under {limit:,} bytes (email_max_bytes){where}."]
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
                     f"{limit:,} bytes (email_max_bytes)" + (
                         f"; the score API serves the campaign (GET /v1/campaigns/{day})" if left == campaign_csv
                         else where) + ".")
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
