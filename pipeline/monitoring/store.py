"""The monitoring tables of the results store (:mod:`pipeline.results`): a night's rows
written (a rerun of the night replaces them) and what monitoring reads back (the recent
nights' high-risk shares, a night's published scores, the trend over recent nights). Labels
are the features stage's (:func:`pipeline.features.labels.matured`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.monitoring.drift import DriftSummary
from pipeline.monitoring.metrics import MonitoringResult, Performance, PredictionDrift
from pipeline.results import DRIFT, FAIRNESS, PERFORMANCE, PREDICTION, SCORES, night, replace_rows


def store_drift_metrics(settings: Settings, day: dt.date | str, model_version: str, summary: DriftSummary) -> int:
    """One ``drift_metrics`` row per feature for the night (replacing that night's rows)."""
    rows = pd.DataFrame([asdict(f) for f in summary.features])
    rows = rows.rename(columns={"column": "feature"})
    rows.insert(0, "run_date", night(day))
    rows["model_version"] = model_version
    rows["drifted"] = rows["drifted"].astype(bool)
    return replace_rows(settings, DRIFT, rows, "run_date", night(day))


def recent_high_risk_shares(settings: Settings, day: dt.date, threshold: float) -> list[float]:
    """The high-risk share at ``threshold`` of each of the ``prediction_baseline_nights``
    nights before ``day`` that have ``churn_scores``."""
    since, before = day - dt.timedelta(days=settings.prediction_baseline_nights), day
    tbl = SCORES
    with results.results_engine(settings).connect() as conn:
        # pipeline.model.score.high_risk_share of each night, evaluated in the database
        high = sa.func.avg(sa.case((tbl.c.churn_probability >= threshold, 1.0), else_=0.0))
        rows = conn.execute(
            sa.select(tbl.c.as_of, high)
            .where(tbl.c.as_of >= night(since), tbl.c.as_of < night(before))
            .group_by(tbl.c.as_of)
        ).all()
    return [float(r[1]) for r in rows]


def store_prediction_drift(settings: Settings, result: PredictionDrift) -> None:
    row = pd.DataFrame([asdict(result)])
    row["run_date"] = night(result.run_date)
    replace_rows(settings, PREDICTION, row, "run_date", night(result.run_date))


def scores_of(settings: Settings, day: dt.date | str) -> pd.DataFrame:
    """The published scores of night ``day`` (customer, probability, model version); empty when
    that night was not scored."""
    tbl = SCORES
    with results.results_engine(settings).connect() as conn:
        query = sa.select(tbl.c.customer_id, tbl.c.churn_probability, tbl.c.model_version)
        return pd.read_sql(query.where(tbl.c.as_of == night(as_date(day))), conn)


def store_performance(settings: Settings, result: Performance) -> None:
    row = pd.DataFrame([asdict(result)])
    row["run_date"] = night(result.run_date)
    replace_rows(settings, PERFORMANCE, row, "run_date", night(result.run_date))


def store_fairness(settings: Settings, day: dt.date | str, table: pd.DataFrame) -> None:
    replace_rows(settings, FAIRNESS, table, "run_date", night(day))


def store_monitoring(settings: Settings, result: MonitoringResult) -> None:
    """The night's rows of ``prediction_drift``, ``model_performance`` and ``fairness_metrics``."""
    store_prediction_drift(settings, result.prediction)
    if result.performance is not None:
        store_performance(settings, result.performance)
    store_fairness(settings, result.run_date, result.fairness)


def trend_frame(settings: Settings, day: dt.date | str) -> pd.DataFrame:
    """One row per recent night (``settings.trend_nights`` up to ``day``): drift share of the
    features, high-risk share of the scores and ROC-AUC on matured labels (NaN where absent)."""
    day = as_date(day)
    since = day - dt.timedelta(days=settings.trend_nights)
    drift = results.read(settings, DRIFT, since, day)
    if drift.empty:
        return pd.DataFrame(columns=["drift_share", "high_risk_share", "roc_auc"])
    out = drift.groupby("run_date")["drifted"].mean().rename("drift_share").to_frame()
    for table, column in ((PREDICTION, "high_risk_share"), (PERFORMANCE, "roc_auc")):
        rows = results.read(settings, table, since, day)
        out[column] = rows.set_index("run_date")[column] if not rows.empty else np.nan
    return out.sort_index()
