"""The two flows, step by step, in-process: what ``python -m pipeline run-training`` and
``run-nightly`` run, and the very same steps the DAGs run as tasks.

Each step (``pipeline.<stage>.steps``) takes the run's :class:`~pipeline.context.RunContext`
(settings, DAG, logical date, window and, for a nightly run, the pinned champion version)
plus the small dicts earlier steps returned, loads its inputs, calls its stage's functions,
saves what they return under ``runs/<dag_id>/<date>/<step>/`` and returns a small JSON-able
dict (paths and counts): exactly what an Airflow task pushes to XCom. Nothing but the chains
lives here.

Windows: the nightly run for logical date D ingests ``[D - lookback_days, D)`` and scores
every customer active at ``as_of = D``. The training run on D re-extracts the database
tables' days that changed since the last training (``training_reextract: changed``; every day
from ``history_start`` with ``full``: :mod:`pipeline.ingestion.reconcile`), catches the event
lake up to D, and trains on month-start snapshots whose label window is complete before D.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline.config import Settings
from pipeline.context import NIGHTLY_DAG, TRAINING_DAG, RunContext
from pipeline.features.partitions import all_parts
from pipeline.features.steps import combine_features, features_step, training_set_step, validate_features_step
from pipeline.ingestion.steps import ingest_all_step
from pipeline.model.pinning import pin
from pipeline.model.steps import combine_scores, publish_step, score_challenger_step, score_step, train_step
from pipeline.monitoring.part_steps import (
    alerts_step,
    challenger_comparison_step,
    concept_drift_step,
    estimated_performance_step,
    importance_drift_step,
    matured_labels_step,
    performance_step,
    schema_drift_step,
)
from pipeline.monitoring.steps import dashboard_step, drift_step, email_step, report_step


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
    reports: bool = True,
) -> dict[str, Any]:
    """The churn_nightly flow in-process: the champion is pinned first (and checked, before
    any heavy work); every step uses that version. ``reports=False`` (a backfill of nights:
    ``run-nightly --no-reports``) writes every results table but no drift report, dashboard
    snapshot or e-mail."""
    ctx = pin(settings, NIGHTLY_DAG, logical_date, lookback_days=lookback_days)
    validated = ingest_all_step(ctx)
    # the DAG's mapped pieces, one after the other (partitions = 1: one piece, the whole night)
    built = [validate_features_step(ctx, features_step(ctx, part)) for part in all_parts(settings.partitions)]
    feats = combine_features(ctx, built)
    scores = combine_scores(ctx, [score_step(ctx, part) for part in built])
    challenger = score_challenger_step(ctx, feats)  # in shadow: never the campaign
    drift = drift_step(ctx, feats)
    # the night's monitoring, part by part (each its own task in the DAG), then the alerts gathered from the parts
    matured = matured_labels_step(ctx)
    parts = {"performance": performance_step(ctx, feats, scores, matured), "concept": concept_drift_step(ctx, matured),
             "importance": importance_drift_step(ctx, feats)}
    parts["schema"] = schema_drift_step(ctx, validated, parts["importance"])
    parts["challenger"] = challenger_comparison_step(ctx, matured, challenger)
    parts["estimate"] = estimated_performance_step(ctx, scores, matured)
    monitoring = alerts_step(ctx, validated, feats, drift, **parts)
    report = report_step(ctx, feats, drift, monitoring) if reports else None
    published = publish_step(ctx, scores)
    out: dict[str, Any] = {"run": ctx.to_xcom(), "validated": {r["table"]: r for r in validated}, "features": feats,
                           "scores": scores, "challenger": challenger, "drift": drift, "matured": matured,
                           "parts": parts, "monitoring": monitoring, "report": report, "published": published,
                           "dashboard": dashboard_step(ctx) if reports else None}
    if send and report is not None:
        out["email"] = email_step(ctx, report, scores, smtp=smtp, recipients=recipients or settings.recipients,
                                  monitoring=monitoring)
    return out
