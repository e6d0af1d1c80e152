"""The steps of the two flows, shared by the Airflow DAGs and the command line.

Each step takes the settings, the DAG id and the logical date (plus the small dicts
earlier steps returned), reads and writes artifacts under
``runs/<dag_id>/<date>/<step>/``, and returns a small JSON-able dict (paths and counts)
- exactly what an Airflow task pushes to XCom. ``run_training`` and ``run_nightly`` chain
the steps in-process for ``python -m pipeline run-training|run-nightly``; the DAGs chain
the very same functions as tasks.

Windows: the nightly run for logical date D ingests ``[D - lookback_days, D)`` and scores
every customer active at ``as_of = D``. The training run on D re-extracts the database
tables from ``history_start``, catches the event lake up to D, and trains on month-start
snapshots whose label window is complete before D.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import lake
from pipeline.artifacts import as_date, nan_to_none, run_dir
from pipeline.config import Settings
from pipeline.tables import LAKE_TABLE_NAMES

log = logging.getLogger(__name__)

TRAINING_DAG = "churn_training"
NIGHTLY_DAG = "churn_nightly"


# ------------------------------------------------------------------ ingest + validate
def ingest_window(
    settings: Settings, dag_id: str, table: str, logical_date: str | dt.date, *, lookback_days: int = 1
) -> tuple[dt.date, dt.date]:
    """The window a run ingests for ``table``."""
    end = as_date(logical_date)
    if dag_id != TRAINING_DAG:
        return end - dt.timedelta(days=lookback_days), end
    if table != "events":
        return as_date(settings.history_start), end
    # events are large: catch the lake up from its last day instead of re-reading history
    have = lake.partition_dates(settings, "events")
    if have:
        return have[-1] + dt.timedelta(days=1), end
    from pipeline.ingest import event_files

    files = event_files(settings, as_date(settings.history_start), end)
    first = min((as_date(f.parent.name.removeprefix("date=")) for f in files), default=end)
    return first, end


def ingest_step(
    settings: Settings, dag_id: str, logical_date: str | dt.date, table: str, *, lookback_days: int = 1,
    known_customers: Any = None,
) -> dict[str, Any]:
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

    start, end = ingest_window(settings, dag_id, table, logical_date, lookback_days=lookback_days)
    summary: dict[str, Any] = {"table": table, "rows": 0, "rejected": 0, "quarantine": None, "partitions": 0,
                               "chunks": 0, "window_start": str(start), "window_end": str(end)}
    if start >= end:
        log.info("ingest %s: lake already holds [.., %s); nothing to extract", table, end)
        return {**summary, "window_start": str(end)}
    if table == "events":
        _require_complete_landing(settings, start, end)
    key = run_key(dag_id, logical_date)
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


def ingest_all_step(
    settings: Settings, dag_id: str, logical_date: str | dt.date, *, lookback_days: int = 1
) -> list[dict[str, Any]]:
    """:func:`ingest_step` for every lake input, in one process (Great Expectations is
    imported once, not once per table).

    Every table is tried, so one error lists every table whose batch failed (each
    quarantine file is written); returns the per-table validation summaries.
    """
    from pipeline.artifacts import check_writable
    from pipeline.errors import DataError

    check_writable(settings)
    results, failed = [], []
    known = None  # the customer ids, read once the customers batch is in the lake (it comes first)
    for table in LAKE_TABLE_NAMES:
        if table != "customers" and known is None:
            known = lake.customer_ids(settings)
        try:
            results.append(ingest_step(settings, dag_id, logical_date, table, lookback_days=lookback_days,
                                       known_customers=known))
        except DataError as exc:
            log.error("%s", exc)
            failed.append((table, exc))
    if failed:
        if len(failed) == 1:
            raise failed[0][1]
        raise DataError(f"{len(failed)} of {len(LAKE_TABLE_NAMES)} input batches failed validation "
                        f"({', '.join(t for t, _ in failed)}):\n" + "\n".join(str(e) for _, e in failed))
    log.info("ingested %s: %d rows, %d quarantined", as_date(logical_date),
             sum(r["rows"] for r in results), sum(r["rejected"] for r in results))
    return results


def run_key(dag_id: str, logical_date: str | dt.date) -> str:
    return f"{dag_id}__{as_date(logical_date).isoformat()}"


# ------------------------------------------------------------------------- features
def features_step(settings: Settings, dag_id: str, logical_date: str | dt.date) -> dict[str, Any]:
    """Point-in-time features of every customer active at ``as_of = logical date``."""
    from pipeline.features import write_features

    out = run_dir(settings, dag_id, logical_date, "build_features") / "features.parquet"
    write_features(settings, [as_date(logical_date)], out)
    return {"path": str(out), "rows": _rows(out), "as_of": str(as_date(logical_date))}


def validate_features_step(settings: Settings, dag_id: str, logical_date: str | dt.date, built: dict[str, Any]) -> dict[str, Any]:
    """The feature table's own expectation suite: a gate before training or scoring.

    The file is read and validated ``ingest_chunk_rows`` rows at a time (a training set of
    millions of rows never sits in memory twice); rejected rows go to its quarantine file.
    """
    import pyarrow.parquet as pq

    from pipeline.validate import ChunkedValidator

    with ChunkedValidator("features", settings, run_key(dag_id, logical_date)) as validator:
        for batch in pq.ParquetFile(built["path"]).iter_batches(batch_size=settings.ingest_chunk_rows):
            validator.validate(batch.to_pandas())
        if validator.chunks == 0:  # no rows: the suite still runs (table-level rules)
            validator.validate(pq.read_table(built["path"]).to_pandas())
        result = validator.finish()
    return {**built, "rejected": result.rejected_count}


def training_set_step(settings: Settings, dag_id: str, logical_date: str | dt.date, *,
                      snapshots: int | None = None) -> dict[str, Any]:
    """Features + labels at month-start snapshots whose label window closed before D."""
    from pipeline.labels import training_snapshot_dates
    from pipeline.train import TrainingError, build_training_set

    have = lake.partition_dates(settings, "events")
    if not have:
        raise TrainingError(f"the lake has no events under {settings.lake_dir}: ingest data first")
    end = as_date(logical_date)
    wanted = snapshots or settings.training_snapshots
    try:
        dates = training_snapshot_dates(have[0], end, wanted, settings.horizon_days)
    except ValueError as exc:
        raise TrainingError(f"training as of {end} on events from {have[0]}: {exc}") from exc
    needed = settings.holdout_snapshots + 2  # the holdout, and one time-CV fold: two training-side snapshots
    if len(dates) < needed:
        raise TrainingError(
            f"training as of {end}: only {len(dates)} month-start snapshot(s) {[str(d) for d in dates]} have a "
            f"complete {settings.horizon_days}-day label window in the events from {have[0]}; at least {needed} "
            f"are needed ({settings.holdout_snapshots} holdout + 2 for a time-CV fold). Train on a later date or "
            "with more history")
    out = run_dir(settings, dag_id, logical_date, "build_training_set") / "training_set.parquet"
    build_training_set(settings, dates, end, out)
    return {"path": str(out), "rows": _rows(out), "snapshots": [str(d) for d in dates]}


# ------------------------------------------------------------------- train + score
def train_step(settings: Settings, dag_id: str, logical_date: str | dt.date, training_set: dict[str, Any]) -> dict[str, Any]:
    from pipeline.train import train

    result = train(settings, Path(training_set["path"]), min_improvement=settings.promotion_min_improvement)
    summary = result.to_dict()
    out = run_dir(settings, dag_id, logical_date, "train") / "result.json"
    from pipeline.artifacts import write_text

    write_text(json.dumps(summary, indent=2, default=str), out)
    return summary


def score_step(settings: Settings, dag_id: str, logical_date: str | dt.date, features: dict[str, Any]) -> dict[str, Any]:
    from pipeline.score import score

    out = run_dir(settings, dag_id, logical_date, "score") / "scores.parquet"
    return score(settings, Path(features["path"]), logical_date, out).to_dict()


def publish_step(settings: Settings, dag_id: str, logical_date: str | dt.date, scores: dict[str, Any]) -> dict[str, Any]:
    """The night's scores become its ``churn_scores`` rows: the last write of a night, after
    its report and monitoring, so a night that fails half-way (a full disk) publishes no scores."""
    from pipeline.results import SCORES
    from pipeline.score import publish_scores

    rows = publish_scores(settings, Path(scores["path"]), logical_date)
    return {"table": SCORES.name, "rows": rows, "as_of": str(as_date(logical_date))}


# ------------------------------------------------------------------ monitoring + email
def drift_step(settings: Settings, dag_id: str, logical_date: str | dt.date, features: dict[str, Any]) -> dict[str, Any]:
    """Evidently report of tonight's features against the champion's training reference."""
    from pipeline import registry
    from pipeline.drift import drift_report

    champ = registry.require_champion(settings)
    params = json.loads((champ.path / "params.json").read_text())
    numeric, categorical = params["numeric_features"], params["categorical_features"]
    reference = pd.read_parquet(champ.reference_path)
    current = pd.read_parquet(features["path"])
    out_dir = settings.reports_dir / as_date(logical_date).isoformat()
    html, summary_json, summary = drift_report(
        reference, current, numeric, categorical, out_dir,
        sample_rows=settings.drift_report_sample_rows, share_threshold=settings.drift_share_threshold,
    )
    from pipeline.monitor import store_drift_metrics

    store_drift_metrics(settings, logical_date, champ.version, summary)
    drifted = [f.column for f in summary.features if f.drifted]
    with_psi = [f for f in summary.features if f.psi == f.psi]  # not NaN
    top = max(with_psi, key=lambda f: f.psi, default=None)
    log.info("drift %s: %d/%d features drifted (share %.2f) -> %s", as_date(logical_date), len(drifted),
             len(summary.features), summary.drift_share, html)
    return {
        "report": str(html),
        "summary": str(summary_json),
        "drift_share": summary.drift_share,
        "dataset_drift": summary.dataset_drift,
        "drifted": drifted,
        "max_psi": top.psi if top else float("nan"),
        "max_psi_feature": top.column if top else None,
        "model_version": champ.version,
    }


def monitor_step(
    settings: Settings,
    dag_id: str,
    logical_date: str | dt.date,
    features: dict[str, Any],
    scores: dict[str, Any],
    drift: dict[str, Any],
    *,
    rejected_rows: int = 0,
) -> dict[str, Any]:
    """Prediction drift, matured-label performance, fairness and alerts for one night.

    Writes ``runs/<dag>/<date>/monitor/monitoring.json`` and the monitoring tables; tonight's
    alerts are stored ``pending`` (or ``suppressed``) until an e-mail carrying them is accepted.
    ``retrain`` is true when a critical drift/performance alert was raised tonight (not
    suppressed), whatever becomes of the e-mail, and ``retrain_on_critical`` is on.
    """
    from pipeline import monitor, registry
    from pipeline.alerts import RETRAIN_RULES, SUPPRESSED, evaluate_rules, highest_severity, record_alerts
    from pipeline.artifacts import write_text
    from pipeline.score import score_frame

    day = as_date(logical_date)
    champ = registry.require_champion(settings)
    threshold = float(champ.metrics().get("threshold", settings.risk_band_high))
    params = json.loads((champ.path / "params.json").read_text())
    reference = pd.read_parquet(champ.reference_path)
    model = champ.load()
    ref_scores = score_frame(model, reference, params["numeric_features"] + params["categorical_features"],
                             settings, champ.version)["churn_probability"].to_numpy()
    tonight = pd.read_parquet(scores["path"])
    feats = pd.read_parquet(features["path"])
    prediction = monitor.prediction_drift(settings, day, tonight, ref_scores, threshold, champ.version)
    monitor.store_prediction_drift(settings, prediction)

    labelled = monitor.matured_labels(settings, day)
    perf = None
    labelled_feats = None
    if labelled is not None and len(labelled):
        perf = monitor.performance(labelled, day, threshold, champ.metrics(), settings.performance_drop_margin,
                                   min_positives=settings.performance_min_positives)
        monitor.store_performance(settings, perf)
        earlier = run_dir(settings, dag_id, labelled.attrs["scored_on"], "build_features") / "features.parquet"
        labelled_feats = pd.read_parquet(earlier) if earlier.is_file() else None
    fair = monitor.fairness(day, settings.segments, feats, tonight, threshold, labelled, labelled_feats)
    # the same table on the champion's scored training reference: a disparity it already had is
    # reported, not re-alerted every night; the alert is for fairness getting worse than that
    ref_rows = reference.assign(customer_id=np.arange(len(reference)))
    ref_fair = monitor.fairness(day, settings.segments, ref_rows,
                                pd.DataFrame({"customer_id": ref_rows["customer_id"], "churn_probability": ref_scores}),
                                threshold)
    fair = fair.merge(ref_fair[["segment", "group", "positive_rate_ratio"]].rename(
        columns={"positive_rate_ratio": "reference_ratio"}), on=["segment", "group"], how="left")
    monitor.store_fairness(settings, day, fair)

    result: dict[str, Any] = {
        "threshold": threshold,
        "model_version": champ.version,
        "drift": {k: drift[k] for k in ("drift_share", "drifted", "max_psi", "max_psi_feature")},
        "prediction": dataclasses.asdict(prediction),
        "performance": dataclasses.asdict(perf) if perf else None,
        "fairness": fair.drop(columns="run_date").to_dict("records"),
        "rejected_rows": rejected_rows,
    }
    alerts = record_alerts(settings, day, champ.version, evaluate_rules(settings, result))
    raised = alerts[alerts["status"] != SUPPRESSED]
    result["alerts"] = alerts.drop(columns="run_date").to_dict("records")
    result["severity"] = highest_severity(raised["severity"])
    result["retrain"] = bool(settings.retrain_on_critical and (
        (raised["severity"] == "critical") & raised["rule"].isin(list(RETRAIN_RULES))).any())
    trend = monitor.trend_frame(settings, day)
    if not trend.empty and Path(drift["report"]).is_file():  # the attached report shows the trend too
        from pipeline.drift import add_report_section
        from pipeline.notify import trend_html

        chart = monitor.png_img_tag(monitor.trend_chart_png(settings, day, trend))
        add_report_section(Path(drift["report"]), "trend", trend_html(trend, chart, settings.trend_nights))
    out = run_dir(settings, dag_id, day, "monitor") / "monitoring.json"
    write_text(json.dumps(result, indent=2, default=str), out)
    result["path"] = str(out)
    log.info("monitor %s: severity %s, %d alerts (%d not suppressed), retrain %s", day, result["severity"], len(alerts),
             len(raised), result["retrain"])
    return nan_to_none(json.loads(json.dumps(result, default=str)))  # XCom JSON has no NaN


def email_step(
    settings: Settings,
    logical_date: str | dt.date,
    drift: dict[str, Any],
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
    from pipeline.drift import EMAIL_REPORT_FILE, REPORT_FILE, DriftSummary, copy_report_sections
    from pipeline.monitor import png_img_tag, trend_chart_png
    from pipeline.notify import CampaignFile, EmailDeliveryError, NightlyReport, build_report_email, send_email
    from pipeline.score import campaign_list, is_high_risk

    day = as_date(logical_date).isoformat()
    out = run_dir(settings, NIGHTLY_DAG, day, "email_report")
    report = Path(drift["report"])
    light = report.with_name(EMAIL_REPORT_FILE)
    if light.is_file():
        copy_report_sections(report, light)  # the trend section monitor_step added to the full report
    attached = [write_zip(light if light.is_file() else report, out / f"{REPORT_FILE}.zip", arcname=REPORT_FILE)]
    scored = pd.read_parquet(scores["path"], columns=["customer_id", "churn_probability", "risk_band"])
    campaign = campaign_list(scored, scores["threshold"], settings.campaign_daily_capacity)
    attached.append(write_text(campaign.to_csv(index=False), out / f"campaign_{day}.csv"))
    listed, delivered = alerts_for_email(settings, day) if monitoring is not None else (pd.DataFrame(), pd.DataFrame())
    facts = NightlyReport(
        logical_date=day, drift=DriftSummary.from_dict(json.loads(Path(drift["summary"]).read_text())),
        scored=scores["rows"], high_risk_share=scores["high_risk_share"], threshold=scores["threshold"],
        campaign=CampaignFile(attached[1].name, len(campaign),
                              int(is_high_risk(scored["churn_probability"], scores["threshold"]).sum()),
                              settings.campaign_daily_capacity),
        monitoring=monitoring, alerts=listed.to_dict("records"), attachments=[p.name for p in attached],
    )
    chart = png_img_tag(trend_chart_png(settings, day)) if monitoring is not None else ""
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
    return {r["table"]: r for r in ingest_all_step(settings, dag_id, logical_date, lookback_days=lookback_days)}


def run_training(settings: Settings, logical_date: str | dt.date, *, snapshots: int | None = None) -> dict[str, Any]:
    """The churn_training flow in-process (what the DAG does, task by task)."""
    dag = TRAINING_DAG
    validated = run_ingestion(settings, dag, logical_date)
    built = training_set_step(settings, dag, logical_date, snapshots=snapshots)
    tset = validate_features_step(settings, dag, logical_date, built)
    return {"validated": validated, "training_set": tset, "train": train_step(settings, dag, logical_date, tset)}


def run_nightly(
    settings: Settings,
    logical_date: str | dt.date,
    *,
    lookback_days: int = 1,
    send: bool = False,
    smtp: Any = None,
    recipients: list[str] | None = None,
) -> dict[str, Any]:
    """The churn_nightly flow in-process."""
    from pipeline.registry import check_champion

    dag = NIGHTLY_DAG
    check_champion(settings)  # before any heavy work
    validated = run_ingestion(settings, dag, logical_date, lookback_days=lookback_days)
    feats = validate_features_step(settings, dag, logical_date, features_step(settings, dag, logical_date))
    scores = score_step(settings, dag, logical_date, feats)
    drift = drift_step(settings, dag, logical_date, feats)
    rejected = sum(v.get("rejected", 0) for v in validated.values()) + feats.get("rejected", 0)
    monitoring = monitor_step(settings, dag, logical_date, feats, scores, drift, rejected_rows=rejected)
    published = publish_step(settings, dag, logical_date, scores)
    out: dict[str, Any] = {"validated": validated, "features": feats, "scores": scores, "drift": drift,
                           "monitoring": monitoring, "published": published}
    if send:
        out["email"] = email_step(settings, logical_date, drift, scores, smtp=smtp,
                                  recipients=recipients or settings.recipients, monitoring=monitoring)
    return out


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
