"""Nightly batch scoring with the champion model."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date, nan_to_none, write_parquet
from pipeline.config import Settings
from pipeline.model import registry
from pipeline.model.explain import REASON_COLUMNS
from pipeline.results import SCORES, night, replace_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    path: Path
    rows: int
    model_version: str
    #: :func:`high_risk_share` of the scores at ``threshold``, the model's campaign threshold
    #: (:meth:`pipeline.model.registry.ModelVersion.threshold`)
    high_risk_share: float
    threshold: float

    def to_dict(self) -> dict:
        return nan_to_none({
            "path": str(self.path),
            "rows": self.rows,
            "model_version": self.model_version,
            "high_risk_share": self.high_risk_share,
            "threshold": self.threshold,
        })


def is_high_risk(proba: np.ndarray | pd.Series, threshold: float) -> np.ndarray:
    """The one definition of "high risk": churn probability at or above the campaign threshold."""
    return np.asarray(proba, dtype="float64") >= threshold


def high_risk_share(proba: np.ndarray | pd.Series, threshold: float) -> float:
    """Share of scored customers that are :func:`is_high_risk`; NaN when none were scored."""
    flags = is_high_risk(proba, threshold)
    return float(flags.mean()) if flags.size else math.nan


def campaign_list(scores: pd.DataFrame, threshold: float, capacity: int) -> pd.DataFrame:
    """Tonight's campaign: the high-risk customers, highest churn probability first (ties by
    customer id), at most ``capacity`` of them (0: no limit), ranked from 1."""
    eligible = scores[is_high_risk(scores["churn_probability"], threshold)]
    ranked = eligible.sort_values(["churn_probability", "customer_id"], ascending=[False, True])
    ranked = ranked.head(capacity) if capacity > 0 else ranked
    columns = ["customer_id", "churn_probability", "risk_band", *[c for c in REASON_COLUMNS if c in ranked.columns]]
    return ranked[columns].assign(rank=np.arange(1, len(ranked) + 1)).reset_index(drop=True)


def risk_band(proba: np.ndarray, high: float, medium: float) -> np.ndarray:
    """'high' at or above ``high``, 'medium' at or above ``medium``, else 'low'."""
    if not 0 <= medium <= high <= 1:
        raise ValueError(f"risk bands need 0 <= medium ({medium}) <= high ({high}) <= 1")
    return np.select([proba >= high, proba >= medium], ["high", "medium"], default="low")


def score_frame(model: Any, features: pd.DataFrame, feature_columns: list[str], settings: Settings, version: str) -> pd.DataFrame:
    """Churn probability and risk band for every row of ``features`` (pure)."""
    missing = [c for c in feature_columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature table lacks columns the model was trained on: {missing}")
    proba = model.predict_proba(features[feature_columns])[:, 1] if len(features) else np.array([])
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": pd.to_datetime(features["as_of"]).to_numpy(),
            "churn_probability": proba.astype("float64"),
            "risk_band": risk_band(proba, settings.risk_band_high, settings.risk_band_medium),
            "model_version": version,
        }
    )


def reasons_of(model: registry.ModelVersion, fitted: Any, features: pd.DataFrame) -> pd.DataFrame:
    """Each customer's top reasons (:mod:`pipeline.model.explain`) against the model's training
    reference; index aligned with ``features``."""
    import time

    from pipeline.model.explain import explain

    started = time.monotonic()
    reference = pd.read_parquet(model.reference_path)
    why = explain(fitted, features.reset_index(drop=True), reference, list(model.params["numeric_features"]),
                  list(model.params["categorical_features"]))
    log.info("score: reasons for %d customers in %.1fs", len(why), time.monotonic() - started)
    return why


def publish_scores(settings: Settings, scores_path: Path, as_of: str | dt.date) -> int:
    """Replace the ``churn_scores`` rows of ``as_of`` with the night's scores file, in one
    transaction (a rerun of the same date leaves one set of scores; a failure leaves the
    previous set)."""
    scores = pd.read_parquet(scores_path)
    day = as_date(as_of)
    rows = replace_rows(settings, SCORES, scores, "as_of", night(day))
    log.info("publish %s: %d scores -> table %s of the results store", day, rows, SCORES.name)
    return rows


def score(settings: Settings, model: registry.ModelVersion, fitted: Any, features_path: Path, as_of: str | dt.date,
          out_path: Path) -> ScoreResult:
    """Score the feature table of ``as_of`` with ``model`` (the run's pinned version;
    ``fitted``: its loaded estimator) into Parquet (the night's artifact).
    :func:`publish_scores` makes them the ``churn_scores`` rows of that date once the rest of
    the night (report, monitoring) has been written too."""
    feats = pd.read_parquet(features_path)
    day = as_date(as_of)
    stale = pd.to_datetime(feats["as_of"]).dt.date != day
    if stale.any():
        raise ValueError(f"{features_path}: {int(stale.sum())} rows are not as of {day}")
    scores = score_frame(fitted, feats, model.feature_columns, settings, model.version)
    scores = pd.concat([scores, reasons_of(model, fitted, feats)], axis=1)
    write_parquet(scores, out_path)
    threshold = model.threshold(settings.risk_band_high)
    high = high_risk_share(scores["churn_probability"], threshold)
    log.info("score %s: %d customers with %s, high-risk share %.3f (>= %.3f) -> %s", day, len(scores), model.version,
             high, threshold, out_path)
    return ScoreResult(Path(out_path), len(scores), model.version, high, threshold)
