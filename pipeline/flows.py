"""The steps of the two flows, shared by the Airflow DAGs and the command line.

Each step takes the run's :class:`~pipeline.context.RunContext` (settings, DAG, logical
date, window and, for a nightly run, the pinned champion version) plus the small dicts
earlier steps returned, loads its inputs, calls the pure functions of its stage module,
saves what they return under ``runs/<dag_id>/<date>/<step>/`` and returns a small JSON-able
dict (paths and counts) - exactly what an Airflow task pushes to XCom. ``run_training`` and ``run_nightly`` chain
the steps in-process for ``python -m pipeline run-training|run-nightly``; the DAGs chain
the very same functions as tasks.

Windows: the nightly run for logical date D ingests ``[D - lookback_days, D)`` and scores
every customer active at ``as_of = D``. The training run on D re-extracts the database
tables from ``history_start``, catches the event lake up to D, and trains on month-start
snapshots whose label window is complete before D.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import lake
from pipeline.artifacts import as_date, nan_to_none
from pipeline.config import Settings
from pipeline.context import NIGHTLY_DAG, TRAINING_DAG, RunContext
from pipeline.tables import LAKE_TABLE_NAMES

log = logging.getLogger(__name__)

__all__ = ["NIGHTLY_DAG", "TRAINING_DAG", "RunContext"]


# ------------------------------------------------------------------ ingest + validate
def ingest_window(ctx: RunContext, table: str) -> tuple[dt.date, dt.date]:
    """The window a run ingests for ``table``."""
    settings, end = ctx.settings, ctx.day
    if ctx.dag_id != TRAINING_DAG:
        return ctx.window
    from pipeline.ingest import EARLIEST, earliest_day, event_files

    if table != "events":
        if settings.history_start:
            return as_date(settings.history_start), end
        return min(earliest_day(settings, table, end) or end, end), end
    # events are large: catch the lake up from its last day instead of re-reading history
    have = lake.partition_dates(settings, "events")
    if have:
        return have[-1] + dt.timedelta(days=1), end
    files = event_files(settings, as_date(settings.history_start) if settings.history_start else EARLIEST, end)
    first = min((as_date(f.parent.name.removeprefix("date=")) for f in files), default=end)
    return first, end


def ingest_step(ctx: RunContext, table: str, *, known_customers: Any = None) -> dict[str, Any]:
    """Extract, validate and publish one table's window, one bounded chunk at a time.

    Each chunk (``ingest_chunk_rows`` database rows, or one event file) is validated with
    the table's expectation suite; its rejected rows are appended to the run's quarantine
    file ``quarantine/<table>/<dag>__<date>.parquet`` with their reason, its clean rows
    staged by day. Only when every chunk passed (and no key repeats across chunks) are the
    staged days published as the window's lake partitions; a failed batch publishes nothing.
    Memory is bounded by a chunk, not by the window, so the nightly's one day and the first
    training run's whole history take the same path. Returns the counts (the task's XCom).
    ``known_customers`` (sorted ids, from :func:`pipeline.lake.customer_ids`) is read from
    the lake when not given.
    """
    from pipeline.ingest import chunks
    from pipeline.progress import Progress
    from pipeline.schemas import LAKE_TABLES
    from pipeline.validate import ChunkedValidator

    settings = ctx.settings
    start, end = ingest_window(ctx, table)
    summary: dict[str, Any] = {"table": table, "rows": 0, "rejected": 0, "quarantine": None, "partitions": 0,
                               "chunks": 0, "window_start": str(start), "window_end": str(end)}
    if start >= end:
        log.info("ingest %s: lake already holds [.., %s); nothing to extract", table, end)
        return {**summary, "window_start": str(end)}
    if table == "events":
        _require_complete_landing(settings, start, end)
    key = ctx.key
    schema, time_col = LAKE_TABLES[table]
    stager = lake.DayStager(settings, table, start, end, lake.staging_dir(settings, table, key))
    progress = Progress(f"ingest {table} [{start}, {end})", (end - start).days, "days")
    try:
        known = None if table == "customers" else (
            known_customers if known_customers is not None else lake.customer_ids(settings))
        with ChunkedValidator(table, settings, key, window_start=dt.datetime.combine(start, dt.time()),
                              window_end=dt.datetime.combine(end, dt.time()), schema=schema,
                              known_customers=known) as validator:
            first: dt.date | None = None  # the window's first day with rows: the progress is over the rest
            for chunk in chunks(settings, table, start, end):
                stager.add(validator.validate(chunk.to_pandas()))
                latest, earliest = _day_range(chunk, time_col)
                if first is None and earliest is not None:
                    first = max(start, earliest)
                    progress.total = float((end - first).days)
                if latest is not None and first is not None:
                    progress.update((min(latest, end - dt.timedelta(days=1)) - first).days + 1,
                                    f"{validator.rows:,} rows, {validator.rejected:,} rejected")
            if validator.chunks == 0:  # an empty window still runs its suite (table-level rules)
                validator.validate(schema.empty_table().to_pandas())
            validator.check_unique_across_chunks(stager.staged_glob())
            result = validator.finish()
        parts = stager.publish()
    finally:
        stager.discard()
    progress.finish(f"{result.rows:,} rows, {result.rejected_count:,} rejected, {len(parts)} partitions")
    return {**summary, "rows": result.rows, "rejected": result.rejected_count,
            "quarantine": str(result.quarantine) if result.quarantine else None,
            "partitions": len(parts), "chunks": result.chunks, "tolerated": validator.tolerated}


def _require_complete_landing(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Every day of the window must have landed event files with rows: a missing or empty day
    would otherwise pass as a day without activity (and drop those customers' usage)."""
    from pipeline.errors import IncompleteDataError
    from pipeline.readiness import days_list, landing_gaps

    missing, empty = landing_gaps(settings, start, end)
    if missing or empty:
        problems = ([f"no partition for {len(missing)} day(s): {days_list(missing, 10)}"] if missing else []) + \
            ([f"only empty files for {len(empty)} day(s): {days_list(empty, 10)}"] if empty else [])
        raise IncompleteDataError(
            f"events [{start}, {end}): the landing ({settings.landing_dir / 'events'}/date=DAY/) has "
            + " and ".join(problems) + "; nothing was ingested and the lake keeps what it had. "
            "Land the missing day(s), then rerun this date")


def _day_range(chunk: Any, time_col: str) -> tuple[dt.date | None, dt.date | None]:
    """(latest, earliest) day of the time column of an Arrow chunk (for progress lines)."""
    import pyarrow.compute as pc

    if time_col not in chunk.column_names or chunk.num_rows == 0:
        return None, None
    bounds = pc.min_max(chunk.column(time_col)).as_py()
    as_day = lambda v: v.date() if v is not None else None
    return as_day(bounds["max"]), as_day(bounds["min"])


def ingest_all_step(ctx: RunContext) -> list[dict[str, Any]]:
    """:func:`ingest_step` for every lake input, in one process (Great Expectations is
    imported once, not once per table).

    Every table is tried, so one error lists every table whose batch failed (each
    quarantine file is written); returns the per-table validation summaries.
    """
    from pipeline.artifacts import check_writable
    from pipeline.errors import DataError

    settings = ctx.settings
    check_writable(settings)
    results, failed = [], []
    known = None  # the customer ids, read once the customers batch is in the lake (it comes first)
    declared = settings.source_table_names
    skipped = [t for t in LAKE_TABLE_NAMES if t not in declared]
    if skipped:
        log.info("ingest: %s not declared in source_tables: not ingested", ", ".join(skipped))
    for table in (t for t in LAKE_TABLE_NAMES if t in declared):
        if table != "customers" and known is None:
            known = lake.customer_ids(settings)
        try:
            results.append(ingest_step(ctx, table, known_customers=known))
        except DataError as exc:
            log.error("%s", exc)
            failed.append((table, exc))
    if failed:
        if len(failed) == 1:
            raise failed[0][1]
        raise DataError(f"{len(failed)} of {len(results) + len(failed)} input batches failed validation "
                        f"({', '.join(t for t, _ in failed)}):\n" + "\n".join(str(e) for _, e in failed))
    log.info("ingested %s: %d rows, %d quarantined", ctx.day,
             sum(r["rows"] for r in results), sum(r["rejected"] for r in results))
    return results


# ------------------------------------------------------------------------- features
def features_step(ctx: RunContext) -> dict[str, Any]:
    """Point-in-time features of every customer active at ``as_of = logical date``."""
    from pipeline.features import write_features

    out = ctx.dir("build_features") / "features.parquet"
    write_features(_label_settings(ctx), [ctx.day], out)
    return {"path": str(out), "rows": _rows(out), "as_of": str(ctx.day)}


def _label_settings(ctx: RunContext) -> Settings:
    """The settings with the pinned model's own label (its population: inactivity churn scores
    only customers active in the look-back), whatever the configuration says tonight."""
    label = ctx.model.params.get("label") if ctx.model_version else None
    if not isinstance(label, dict) or label.get("kind") not in ("cancellation", "inactivity"):
        return ctx.settings
    window = {"inactivity_days" if label["kind"] == "inactivity" else "horizon_days": int(label["window_days"])}
    return ctx.settings.replace(label_kind=label["kind"], **window)


def validate_features_step(ctx: RunContext, built: dict[str, Any]) -> dict[str, Any]:
    """The feature table's own expectation suite: a gate before training or scoring.

    The file is read and validated ``ingest_chunk_rows`` rows at a time (a training set of
    millions of rows never sits in memory twice); rejected rows go to its quarantine file.
    """
    import pyarrow.parquet as pq

    from pipeline.validate import ChunkedValidator

    with ChunkedValidator("features", ctx.settings, ctx.key) as validator:
        for batch in pq.ParquetFile(built["path"]).iter_batches(batch_size=ctx.settings.ingest_chunk_rows):
            validator.validate(batch.to_pandas())
        if validator.chunks == 0:  # no rows: the suite still runs (table-level rules)
            validator.validate(pq.read_table(built["path"]).to_pandas())
        result = validator.finish()
    return {**built, "rejected": result.rejected_count}


def training_set_step(ctx: RunContext, *, snapshots: int | None = None) -> dict[str, Any]:
    """Features + labels at month-start snapshots whose label window closed before D."""
    from pipeline.dataset import build_training_set
    from pipeline.errors import TrainingError
    from pipeline.labels import training_snapshot_dates

    settings, end = ctx.settings, ctx.day
    # the activity the history is measured on: the event files, or the payments of a business without them
    activity = "events" if "events" in settings.source_table_names else "payments"
    have = lake.partition_dates(settings, activity)
    if not have:
        bound = (f"from history_start {settings.history_start} " if settings.history_start
                 else "(history_start unset: from the earliest row) ")
        where = (f"from {settings.landing_dir / 'events'}/date=DAY/; land event files there" if activity == "events"
                 else "from the source's payments; check ingest_payments.sql (sql_dir)")
        raise TrainingError(
            f"nothing to train on: the lake has no {activity} under {settings.lake_dir} and none were ingested "
            f"{bound}before {end} {where}, or set history_start earlier")
    wanted = snapshots or settings.training_snapshots
    try:
        dates = training_snapshot_dates(have[0], end, wanted, settings.label_window_days)
    except ValueError as exc:
        raise TrainingError(f"training as of {end} on {activity} from {have[0]}: {exc}") from exc
    needed = settings.holdout_snapshots + 2  # the holdout, and one time-CV fold: two training-side snapshots
    if len(dates) < needed:
        raise TrainingError(
            f"training as of {end}: only {len(dates)} month-start snapshot(s) {[str(d) for d in dates]} have a "
            f"complete {settings.label_window_days}-day label window in the {activity} from {have[0]}; at least {needed} "
            f"are needed ({settings.holdout_snapshots} holdout + 2 for a time-CV fold). Train on a later date or "
            "with more history")
    out = ctx.dir("build_training_set") / "training_set.parquet"
    build_training_set(settings, dates, end, out)
    return {"path": str(out), "rows": _rows(out), "snapshots": [str(d) for d in dates]}


# ------------------------------------------------------------------- train + score
def train_step(ctx: RunContext, training_set: dict[str, Any]) -> dict[str, Any]:
    """Train on the training set and register the model as a new, immutable version of the
    registered model; it is served only if it clears the gate against the serving champion
    (a rerun of a date is no exception)."""
    from pipeline.train import train

    result = train(ctx.settings, Path(training_set["path"]), min_improvement=ctx.settings.promotion_min_improvement,
                   training_date=ctx.day.isoformat())
    summary = result.to_dict()
    out = ctx.dir("train") / "result.json"
    from pipeline.artifacts import write_text

    write_text(json.dumps(summary, indent=2, default=str), out)
    return summary


def score_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """The pinned model's scores of the night's features (the night's Parquet artifact)."""
    from pipeline.score import score

    out = ctx.dir("score") / "scores.parquet"
    return score(ctx.settings, ctx.model, ctx.fitted, Path(features["path"]), ctx.day, out).to_dict()


def publish_step(ctx: RunContext, scores: dict[str, Any]) -> dict[str, Any]:
    """The night's scores become its ``churn_scores`` rows: the last write of a night, after
    its report and monitoring, so a night that fails half-way (a full disk) publishes no scores."""
    from pipeline.results import SCORES
    from pipeline.score import publish_scores

    rows = publish_scores(ctx.settings, Path(scores["path"]), ctx.day)
    return {"table": SCORES.name, "rows": rows, "as_of": str(ctx.day)}


# ------------------------------------------------------------------ monitoring + email
def _reference_and_current(ctx: RunContext, features: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(ctx.model.reference_path), pd.read_parquet(features["path"])


def drift_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """Data drift of tonight's features against the pinned model's training reference, on all
    rows: ``drift_summary.json`` under ``reports/<D>/`` and the night's ``drift_metrics`` rows."""
    from pipeline.drift import compute_drift, write_summary
    from pipeline.monitor_store import store_drift_metrics

    model = ctx.model
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
) -> dict[str, Any]:
    """Prediction drift, matured-label performance, fairness and alerts for one night.

    Loads the night's scores and features, the pinned model's reference, the recent nights'
    scores and the matured labels; :func:`pipeline.monitor.monitor_night` computes; the
    monitoring tables, ``runs/<dag>/<date>/monitor/monitoring.json`` and the alerts are saved.
    Tonight's alerts are stored ``pending`` (or ``suppressed``) until an e-mail carrying them is
    accepted. ``retrain`` is true when a critical alert of a retraining rule was raised tonight
    (not suppressed), whatever becomes of the e-mail, and ``retrain_on_critical`` is on.
    """
    from pipeline import monitor, monitor_store
    from pipeline.alerts import SUPPRESSED, evaluate_rules, highest_severity, record_alerts, retrain_requested
    from pipeline.artifacts import write_text
    from pipeline.score import score_frame

    settings, day, model = ctx.settings, ctx.day, ctx.model
    threshold = model.threshold(settings.risk_band_high)
    reference = pd.read_parquet(model.reference_path)
    ref_scores = score_frame(ctx.fitted, reference, model.feature_columns, settings, model.version)["churn_probability"]
    labelled = monitor_store.matured_labels(settings, day, model.params.get("label"))
    earlier = (ctx.dir("build_features", day=labelled.attrs["scored_on"]) / "features.parquet"
               if labelled is not None and len(labelled) else None)
    result = monitor.monitor_night(
        day, model_version=model.version, threshold=threshold, champion_metrics=model.metrics(), settings=settings,
        tonight=pd.read_parquet(scores["path"]), features=pd.read_parquet(features["path"]), reference=reference,
        reference_scores=ref_scores.to_numpy(), baseline=monitor_store.recent_high_risk_shares(settings, day, threshold),
        drift=monitor.DriftFacts.from_dict(drift), labelled=labelled,
        labelled_features=pd.read_parquet(earlier) if earlier is not None and earlier.is_file() else None,
        rejected_rows=rejected_rows)
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


def report_step(ctx: RunContext, features: dict[str, Any], drift: dict[str, Any],
                monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    """The night's Evidently drift report (``drift_report.html`` and its e-mail copy under
    ``reports/<D>/``), assembled once: the all-rows verdicts of :func:`drift_step` in the
    banner, the trend over recent nights from the monitoring tables below it."""
    from pipeline.charts import png_img_tag, trend_chart_png
    from pipeline.drift import DriftSummary, drift_report
    from pipeline.monitor_store import trend_frame
    from pipeline.notify import trend_html

    settings, model = ctx.settings, ctx.model
    summary = DriftSummary.from_dict(json.loads(Path(drift["summary"]).read_text()))
    sections = []
    trend = trend_frame(settings, ctx.day) if monitoring is not None else pd.DataFrame()
    if not trend.empty:
        chart = png_img_tag(trend_chart_png(trend, ctx.day))
        sections.append(("trend", trend_html(trend, chart, settings.trend_nights)))
    reference, current = _reference_and_current(ctx, features)
    html, _, _ = drift_report(
        reference, current, model.params["numeric_features"], model.params["categorical_features"],
        settings.reports_dir / ctx.day.isoformat(), sample_rows=settings.drift_report_sample_rows,
        share_threshold=settings.drift_share_threshold, summary=summary, sections=sections,
        reference_label=f"training reference of {model.version}", current_label=f"as of {ctx.day}")
    log.info("report %s -> %s", ctx.day, html)
    return {**drift, "report": str(html), "email_report": str(html.with_name("drift_report_email.html"))}


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
    and the next e-mail carries them. Attachments are written to ``runs/<dag>/<date>/email_report/``.
    """
    from pipeline.alerts import alerts_for_email, mark_sent
    from pipeline.artifacts import write_text, write_zip
    from pipeline.charts import png_img_tag, trend_chart_png
    from pipeline.drift import REPORT_FILE, DriftSummary
    from pipeline.monitor_store import trend_frame
    from pipeline.notify import CampaignFile, EmailDeliveryError, NightlyReport, build_report_email, send_email
    from pipeline.score import campaign_list, is_high_risk

    settings, day = ctx.settings, ctx.day.isoformat()
    out = ctx.dir("email_report")
    light = Path(report["email_report"])
    attached = [write_zip(light if light.is_file() else Path(report["report"]), out / f"{REPORT_FILE}.zip",
                          arcname=REPORT_FILE)]
    scored = pd.read_parquet(scores["path"], columns=["customer_id", "churn_probability", "risk_band"])
    campaign = campaign_list(scored, scores["threshold"], settings.campaign_daily_capacity)
    attached.append(write_text(campaign.to_csv(index=False), out / f"campaign_{day}.csv"))
    listed, delivered = alerts_for_email(settings, day) if monitoring is not None else (pd.DataFrame(), pd.DataFrame())
    facts = NightlyReport(
        logical_date=day, drift=DriftSummary.from_dict(json.loads(Path(report["summary"]).read_text())),
        scored=scores["rows"], high_risk_share=scores["high_risk_share"], threshold=scores["threshold"],
        campaign=CampaignFile(attached[1].name, len(campaign),
                              int(is_high_risk(scored["churn_probability"], scores["threshold"]).sum()),
                              settings.campaign_daily_capacity),
        monitoring=monitoring, alerts=listed.to_dict("records"), attachments=[p.name for p in attached],
        churn_definition=str((ctx.model.params.get("label") or {}).get("definition", "")),
        models=ctx.model_facts,
    )
    chart = png_img_tag(trend_chart_png(trend_frame(settings, day), day)) if monitoring is not None else ""
    message = build_report_email(sender=settings.email_sender, recipients=recipients, subject=facts.subject(),
                                 summary_html=facts.html(chart), summary_text=facts.text(), attachments=attached)
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


# ------------------------------------------------------------------------ whole flows
def run_ingestion(settings: Settings, dag_id: str, logical_date: str | dt.date, *, lookback_days: int = 1) -> dict[str, Any]:
    ctx = RunContext.of(settings, dag_id, logical_date, lookback_days=lookback_days)
    return {r["table"]: r for r in ingest_all_step(ctx)}


def run_training(settings: Settings, logical_date: str | dt.date, *, snapshots: int | None = None) -> dict[str, Any]:
    """The churn_training flow in-process (what the DAG does, task by task)."""
    ctx = RunContext.of(settings, TRAINING_DAG, logical_date)
    validated = {r["table"]: r for r in ingest_all_step(ctx)}
    tset = validate_features_step(ctx, training_set_step(ctx, snapshots=snapshots))
    return {"validated": validated, "training_set": tset, "train": train_step(ctx, tset)}


def run_nightly(
    settings: Settings,
    logical_date: str | dt.date,
    *,
    lookback_days: int = 1,
    send: bool = False,
    smtp: Any = None,
    recipients: list[str] | None = None,
) -> dict[str, Any]:
    """The churn_nightly flow in-process: the champion is pinned first (and checked readable,
    before any heavy work); every step uses that version."""
    ctx = RunContext.pinned(settings, NIGHTLY_DAG, logical_date, lookback_days=lookback_days)
    validated = {r["table"]: r for r in ingest_all_step(ctx)}
    feats = validate_features_step(ctx, features_step(ctx))
    scores = score_step(ctx, feats)
    drift = drift_step(ctx, feats)
    rejected = sum(v.get("rejected", 0) for v in validated.values()) + feats.get("rejected", 0)
    monitoring = monitor_step(ctx, feats, scores, drift, rejected_rows=rejected)
    report = report_step(ctx, feats, drift, monitoring)
    published = publish_step(ctx, scores)
    out: dict[str, Any] = {"run": ctx.to_xcom(), "validated": validated, "features": feats, "scores": scores,
                           "drift": drift, "monitoring": monitoring, "report": report, "published": published}
    if send:
        out["email"] = email_step(ctx, report, scores, smtp=smtp, recipients=recipients or settings.recipients,
                                  monitoring=monitoring)
    return out


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
