"""Nightly batch scoring with the champion model."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date, nan_to_none, write_parquet
from pipeline.config import Settings
from pipeline.model import registry
from pipeline.model.evaluate import CONTACT_NOBODY
from pipeline.model.explain import REASON_COLUMNS
from pipeline.results import SCORES, publish_night
from pipeline.storage import Location, read_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    path: Location
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
    """Tonight's campaign: the customers whose band is "high" (:func:`risk_bands`: at or above
    the threshold, the ``capacity`` highest), highest churn probability first, ranked from 1."""
    chosen = scores[risk_bands(scores, threshold, capacity) == "high"]
    ranked = chosen.sort_values(["churn_probability", "customer_id"], ascending=[False, True])
    columns = ["customer_id", "churn_probability", "risk_band", *[c for c in REASON_COLUMNS if c in ranked.columns]]
    return ranked[columns].assign(risk_band="high", rank=np.arange(1, len(ranked) + 1)).reset_index(drop=True)


def ranks(scores: pd.DataFrame) -> np.ndarray:
    """Each customer's place in the night, from 1 (the highest churn probability; ties by customer
    id, as :func:`risk_bands` orders them): the campaign's customers are ranks 1 .. its size, in
    :func:`campaign_list`'s order and with its ``rank``."""
    proba = scores["churn_probability"].to_numpy(dtype="float64")
    order = np.lexsort((scores["customer_id"].astype(str).to_numpy(), -proba))
    out = np.empty(len(order), dtype="int64")
    out[order] = np.arange(1, len(order) + 1)
    return out


def risk_bands(scores: pd.DataFrame, threshold: float, capacity: int) -> np.ndarray:
    """The night's decision per customer: "high", tonight's campaign (at or above the model's
    campaign ``threshold``, the ``capacity`` highest probabilities, ties by customer id; 0: no
    limit); "medium", at or above the threshold but over the capacity; "low", below it."""
    if not 0 <= threshold <= CONTACT_NOBODY:  # above 1: the model's campaign pays for nobody
        raise ValueError(f"the campaign threshold must be in [0, 1], got {threshold}")
    proba = scores["churn_probability"].to_numpy(dtype="float64")
    at_risk = is_high_risk(proba, threshold)
    bands = np.where(at_risk, "medium", "low").astype(object)
    order = np.lexsort((scores["customer_id"].astype(str).to_numpy(), -proba))  # highest first, ties by id
    picked = order[at_risk[order]]
    bands[picked[:capacity] if capacity > 0 else picked] = "high"
    return bands


def score_frame(model: Any, features: pd.DataFrame, feature_columns: list[str], version: str, threshold: float,
                capacity: int) -> pd.DataFrame:
    """Churn probability and risk band (:func:`risk_bands` at the model's ``threshold`` and the
    daily ``capacity``) for every row of ``features`` (pure)."""
    missing = [c for c in feature_columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature table lacks columns the model was trained on: {missing}")
    proba = model.predict_proba(features[feature_columns])[:, 1] if len(features) else np.array([])
    scores = pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": pd.to_datetime(features["as_of"]).to_numpy(),
            "churn_probability": proba.astype("float64"),
        }
    )
    return scores.assign(risk_band=risk_bands(scores, threshold, capacity), model_version=version)


def reasons_of(model: registry.ModelVersion, fitted: Any, features: pd.DataFrame, at_risk: np.ndarray) -> pd.DataFrame:
    """Each customer's top reasons (:mod:`pipeline.model.explain`) against the model's training
    reference, exact SHAP values for the customers ``at_risk``; index aligned with ``features``."""
    import time

    from pipeline.model.explain import explain

    started = time.monotonic()
    reference = pd.read_parquet(model.reference_path)
    why = explain(fitted, features.reset_index(drop=True), reference, list(model.params["numeric_features"]),
                  list(model.params["categorical_features"]), exact=at_risk)
    log.info("score: reasons for %d customers in %.1fs (exact SHAP for the %d at risk)", len(why),
             time.monotonic() - started, int(np.sum(at_risk)))
    return why


def publish_scores(settings: Settings, scores_path: Location, as_of: str | dt.date) -> int:
    """Replace the ``churn_scores`` rows of ``as_of`` with the night's scores file and their
    :func:`ranks`, with the night's ``published_nights`` row, in one transaction (a rerun of the
    same date leaves one set of scores; a failure leaves the previous set; a reader sees one or
    the other: :func:`pipeline.results.publish_night`)."""
    scores = read_parquet(scores_path)
    day = as_date(as_of)
    scores["rank"] = ranks(scores)  # in place: a copy of a million rows' frame costs more than the ranks
    rows = publish_night(settings, scores, day)
    log.info("publish %s: %d scores -> table %s of the results store", day, rows, SCORES.name)
    return rows


def score(settings: Settings, model: registry.ModelVersion, fitted: Any, features_path: Location, as_of: str | dt.date,
          out_path: Location) -> ScoreResult:
    """Score the feature table of ``as_of`` with ``model`` (the run's pinned version;
    ``fitted``: its loaded estimator) into Parquet (the night's artifact).
    :func:`publish_scores` makes them the ``churn_scores`` rows of that date once the rest of
    the night (report, monitoring) has been written too."""
    feats = read_parquet(features_path)
    day = as_date(as_of)
    stale = pd.to_datetime(feats["as_of"]).dt.date != day
    if stale.any():
        raise ValueError(f"{features_path}: {int(stale.sum())} rows are not as of {day}")
    threshold = model.threshold(settings.default_threshold)
    scores = score_frame(fitted, feats, model.feature_columns, model.version, threshold,
                         settings.campaign_daily_capacity)
    at_risk = is_high_risk(scores["churn_probability"], threshold)
    scores = pd.concat([scores, reasons_of(model, fitted, feats, at_risk)], axis=1)
    write_parquet(scores, out_path)
    high = high_risk_share(scores["churn_probability"], threshold)
    bands = scores["risk_band"].value_counts()
    log.info("score %s: %d customers with %s, %.3f at or above the threshold %.3f: %d high (tonight's campaign, "
             "campaign_daily_capacity %d), %d medium, %d low -> %s", day, len(scores), model.version, high, threshold,
             bands.get("high", 0), settings.campaign_daily_capacity, bands.get("medium", 0), bands.get("low", 0),
             out_path)
    return ScoreResult(out_path, len(scores), model.version, high, threshold)
