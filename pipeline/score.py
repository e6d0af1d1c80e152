"""Nightly batch scoring with the champion model."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import registry
from pipeline.artifacts import as_date, write_parquet
from pipeline.config import Settings
from pipeline.db import replace_rows

log = logging.getLogger(__name__)

SCORES_TABLE = "churn_scores"


@dataclass(frozen=True)
class ScoreResult:
    path: Path
    rows: int
    model_version: str
    high_risk_share: float

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "model_version": self.model_version,
            "high_risk_share": self.high_risk_share,
        }


def risk_band(proba: np.ndarray, high: float, medium: float) -> np.ndarray:
    """'high' at or above ``high``, 'medium' at or above ``medium``, else 'low'."""
    if not 0 <= medium <= high <= 1:
        raise ValueError(f"risk bands need 0 <= medium ({medium}) <= high ({high}) <= 1")
    return np.select([proba >= high, proba >= medium], ["high", "medium"], default="low")


def score_frame(model, features: pd.DataFrame, feature_columns: list[str], settings: Settings, version: str) -> pd.DataFrame:
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


def score(settings: Settings, features_path: Path, as_of: str | dt.date, out_path: Path) -> ScoreResult:
    """Score the feature table of ``as_of`` with the champion; write Parquet and the DB table.

    The ``churn_scores`` rows of that ``as_of`` are replaced in one transaction, so a
    rerun of the same date leaves one set of scores.
    """
    import json

    champ = registry.require_champion(settings)
    params = json.loads((champ.path / "params.json").read_text())
    columns = params["numeric_features"] + params["categorical_features"]
    feats = pd.read_parquet(features_path)
    day = as_date(as_of)
    stale = pd.to_datetime(feats["as_of"]).dt.date != day
    if stale.any():
        raise ValueError(f"{features_path}: {int(stale.sum())} rows are not as of {day}")
    scores = score_frame(champ.load(), feats, columns, settings, champ.version)
    write_parquet(scores, out_path)
    replace_rows(settings, SCORES_TABLE, scores, "as_of", dt.datetime.combine(day, dt.time()))
    high = float((scores["risk_band"] == "high").mean()) if len(scores) else 0.0
    log.info("score %s: %d customers with %s, high-risk share %.3f -> %s", day, len(scores), champ.version, high, out_path)
    return ScoreResult(Path(out_path), len(scores), champ.version, high)
