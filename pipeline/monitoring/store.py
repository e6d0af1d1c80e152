"""The monitoring tables of the results store (:mod:`pipeline.results`): a night's rows
written (a rerun of the night replaces them) and what monitoring reads back (the recent
nights' high-risk shares, a night's published scores, the trend over recent nights). Labels
are the features stage's (:func:`pipeline.features.labels.matured`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.monitoring.concept import ConceptDrift
from pipeline.monitoring.drift import DriftSummary
from pipeline.monitoring.metrics import Performance, PredictionDrift
from pipeline.monitoring.night import PerformanceNight
from pipeline.results import (
    CHALLENGER_PERFORMANCE,
    CONCEPT,
    DRIFT,
    FAIRNESS,
    IMPORTANCE,
    PERFORMANCE,
    PREDICTION,
    SCORES,
    night,
    replace_rows,
)


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


def scores_of(settings: Settings, day: dt.date | str, tbl: sa.Table = SCORES) -> pd.DataFrame:
    """The published scores of night ``day`` (customer, probability, model version); empty when
    that night was not scored. ``tbl``: ``challenger_scores`` for the challenger's shadow scores."""
    with results.results_engine(settings).connect() as conn:
        query = sa.select(tbl.c.customer_id, tbl.c.churn_probability, tbl.c.model_version)
        return pd.read_sql(query.where(tbl.c.as_of == night(as_date(day))), conn)


def store_performance(settings: Settings, result: Performance) -> None:
    row = pd.DataFrame([asdict(result)])
    row["run_date"] = night(result.run_date)
    replace_rows(settings, PERFORMANCE, row, "run_date", night(result.run_date))


def store_fairness(settings: Settings, day: dt.date | str, table: pd.DataFrame) -> None:
    replace_rows(settings, FAIRNESS, table, "run_date", night(day))


def concept_states_before(settings: Settings, day: dt.date | str, model_version: str) -> dict[str, bytes]:
    """Each concept-drift detector's state (pickled) as the latest night before ``day`` of
    ``model_version`` left it: where night ``day`` starts (a rerun of a night starts from the
    same state, so a replay of the nights gives the same states)."""
    tbl = CONCEPT
    with results.results_engine(settings).connect() as conn:
        rows = conn.execute(
            sa.select(tbl.c.detector, tbl.c.state)
            .where(tbl.c.model_version == model_version, tbl.c.run_date < night(as_date(day)))
            .order_by(tbl.c.run_date.desc())
        ).all()
    latest: dict[str, bytes] = {}
    for detector, state in rows:
        latest.setdefault(detector, bytes(state))
    return latest


def store_performance_night(settings: Settings, part: PerformanceNight) -> None:
    """The night's rows of ``prediction_drift``, ``model_performance`` (none written when nothing
    matured tonight) and ``fairness_metrics``."""
    store_prediction_drift(settings, part.prediction)
    if part.performance is not None:
        store_performance(settings, part.performance)
    store_fairness(settings, part.prediction.run_date, part.fairness)


def store_importance(settings: Settings, day: dt.date | str, importance: pd.DataFrame | None) -> None:
    """The night's ``feature_importance_drift`` rows (none: the night's earlier ones are removed)."""
    replace_rows(settings, IMPORTANCE, importance if importance is not None else pd.DataFrame(), "run_date", night(day))


def store_challenger(settings: Settings, day: dt.date | str, comparison: pd.DataFrame | None) -> None:
    """The night's ``challenger_performance`` rows (none when no challenger was compared: the
    night's earlier ones are removed)."""
    replace_rows(settings, CHALLENGER_PERFORMANCE, comparison if comparison is not None else pd.DataFrame(), "run_date",
                 night(day))


def challenger_nights_before(settings: Settings, day: dt.date | str, nights: int) -> pd.DataFrame:
    """The ``challenger_performance`` rows of the latest ``nights`` nights before ``day`` (both
    roles), oldest first."""
    tbl = CHALLENGER_PERFORMANCE
    with results.results_engine(settings).connect() as conn:
        latest = conn.execute(
            sa.select(tbl.c.run_date).distinct().where(tbl.c.run_date < night(as_date(day)))
            .order_by(tbl.c.run_date.desc()).limit(nights)
        ).scalars().all()
        if not latest:
            return pd.DataFrame(columns=[c.name for c in tbl.c])
        return pd.read_sql(sa.select(tbl).where(tbl.c.run_date.in_(latest)).order_by(tbl.c.run_date), conn)


def store_concept(settings: Settings, day: dt.date | str, concept: ConceptDrift | None) -> None:
    """The night's ``concept_drift`` rows (none: the night's earlier ones are removed)."""
    replace_rows(settings, CONCEPT, concept.frame() if concept is not None else pd.DataFrame(), "run_date", night(day))


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


def retraining_requests_before(settings: Settings, day: dt.date | str, days: int) -> pd.DataFrame:
    """The ``retraining_requests`` rows of the ``days`` nights before ``day`` (exclusive)."""
    before = as_date(day) - dt.timedelta(days=1)
    return results.read(settings, results.RETRAINING_REQUESTS, before - dt.timedelta(days=max(days - 1, 0)), before)


def store_retraining_request(settings: Settings, day: dt.date | str, row: pd.DataFrame) -> None:
    """The night's retraining decision (:meth:`pipeline.monitoring.retraining.RetrainingDecision.row`),
    replacing the row an earlier run of the night wrote."""
    replace_rows(settings, results.RETRAINING_REQUESTS, row, "run_date", night(day))


# ------------------------------------------------------------------ estimated performance
def _estimate_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``performance_estimates`` rows as :class:`~pipeline.monitoring.estimate.PerformanceEstimate`
    fields (dates as ISO text, None where absent)."""
    out = []
    for row in frame.to_dict("records"):
        for name in ("run_date", "calibration_scored_on", "below_since", "realised_on"):
            value = row.get(name)
            row[name] = None if value is None or pd.isna(value) else as_date(pd.Timestamp(value).date()).isoformat()
        row["reliable"], row["below"] = bool(row["reliable"]), bool(row["below"])
        out.append(row)
    return out


def estimates_before(settings: Settings, day: dt.date | str, model_version: str, nights: int | None = None,
                     *, matured_only: bool = False) -> list[dict[str, Any]]:
    """``model_version``'s ``performance_estimates`` rows before ``day``, newest first (at most
    ``nights``; ``matured_only``: those whose realised metrics are known)."""
    tbl = results.PERFORMANCE_ESTIMATES
    query = sa.select(tbl).where(tbl.c.model_version == model_version, tbl.c.run_date < night(as_date(day)))
    if matured_only:
        query = query.where(tbl.c.realised_on.is_not(None))
    query = query.order_by(tbl.c.run_date.desc())
    with results.results_engine(settings).connect() as conn:
        frame = pd.read_sql(query.limit(nights) if nights else query, conn)
    return _estimate_records(frame)


def estimate_of(settings: Settings, day: dt.date | str) -> dict[str, Any] | None:
    """Night ``day``'s ``performance_estimates`` row (None: not estimated)."""
    tbl = results.PERFORMANCE_ESTIMATES
    with results.results_engine(settings).connect() as conn:
        frame = pd.read_sql(sa.select(tbl).where(tbl.c.run_date == night(as_date(day))), conn)
    rows = _estimate_records(frame)
    return rows[0] if rows else None


def store_estimate(settings: Settings, row: dict[str, Any]) -> None:
    """The night's ``performance_estimates`` row (replacing an earlier run's)."""
    frame = pd.DataFrame([row])
    frame["run_date"] = night(str(row["run_date"]))
    replace_rows(settings, results.PERFORMANCE_ESTIMATES, frame, "run_date", night(str(row["run_date"])))


def store_realised(settings: Settings, scored_on: dt.date | str, values: dict[str, float],
                   realised_on: dt.date | str) -> bool:
    """The metrics night ``scored_on``'s scores reached once their labels matured (on
    ``realised_on``), beside that night's estimate; False when that night was not estimated."""
    tbl = results.PERFORMANCE_ESTIMATES
    clean = {f"realised_{k}": (None if v is None or np.isnan(v) else float(v)) for k, v in values.items()}
    with results.results_engine(settings).begin() as conn:
        done = conn.execute(sa.update(tbl).where(tbl.c.run_date == night(as_date(scored_on)))
                            .values(**clean, realised_on=as_date(realised_on)))
    return bool(done.rowcount)
