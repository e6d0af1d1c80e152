"""Model monitoring beyond data drift, as pure functions: prediction drift, matured-label
performance and fairness of one night (gathered with the rest of the night's monitoring by
:func:`pipeline.monitoring.night.performance_night`, gathered by :func:`pipeline.monitoring.night.gather` into the
:class:`~pipeline.monitoring.night.MonitoringResult`
that the alert rules of :mod:`pipeline.monitoring.alerts` read).

Where the results are kept (the results store's monitoring tables) is
:mod:`pipeline.monitoring.store`; the trend chart is :mod:`pipeline.monitoring.charts`:

* ``prediction_drift`` - tonight's score distribution vs the champion's reference and recent nights;
* ``model_performance`` - metrics of the scores of night ``D - horizon`` against what happened
  in ``[D - horizon, D)`` (labels from :func:`pipeline.features.labels.build_labels`);
* ``fairness_metrics`` - per segment: positive-rate ratio (80% rule) and TPR gap.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date
from pipeline.monitoring.drift import NUMERIC, psi
from pipeline.results import night

log = logging.getLogger(__name__)


#: upper edges (exclusive) of the age bands; ages at or above the last edge form "65+"
AGE_BANDS = ((25, "<25"), (35, "25-34"), (50, "35-49"), (65, "50-64"))


@dataclass(frozen=True)
class PredictionDrift:
    run_date: str
    model_version: str
    mean_score: float
    high_risk_share: float
    reference_mean_score: float
    reference_high_risk_share: float
    #: PSI of tonight's scores against the reference's scores
    psi_vs_reference: float
    #: mean high-risk share of the previous nights (NaN when none)
    baseline_high_risk_share: float
    baseline_nights: int


def prediction_drift(
    day: dt.date | str, scores: pd.DataFrame, reference_scores: np.ndarray, threshold: float,
    model_version: str, baseline: list[float],
) -> PredictionDrift:
    """Tonight's score distribution and high-risk share vs the reference and the last nights
    (``baseline``: their high-risk shares, :func:`recent_high_risk_shares`)."""
    from pipeline.model.score import high_risk_share

    day = as_date(day)
    proba = scores["churn_probability"].to_numpy(dtype="float64")
    return PredictionDrift(
        run_date=day.isoformat(),
        model_version=model_version,
        mean_score=float(proba.mean()) if len(proba) else math.nan,
        high_risk_share=high_risk_share(proba, threshold),
        reference_mean_score=float(reference_scores.mean()),
        reference_high_risk_share=high_risk_share(reference_scores, threshold),
        psi_vs_reference=psi(pd.Series(reference_scores), pd.Series(proba), NUMERIC),
        baseline_high_risk_share=float(np.mean(baseline)) if baseline else math.nan,
        baseline_nights=len(baseline),
    )


@dataclass(frozen=True)
class Performance:
    run_date: str
    scored_on: str
    model_version: str
    rows: int
    positives: int
    base_rate: float
    roc_auc: float
    pr_auc: float
    precision: float
    recall: float
    threshold: float
    champion_roc_auc: float
    champion_pr_auc: float
    concept_drift: bool


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and PR-AUC (average precision) of probabilities ``p`` for labels ``y``; NaN each
    without both classes: how matured labels are scored (``model_performance``, the estimate's
    realised values)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) != 2:
        return math.nan, math.nan
    return float(roc_auc_score(y, p)), float(average_precision_score(y, p))


def performance(
    labelled: pd.DataFrame, day: dt.date | str, threshold: float, champion_metrics: dict[str, Any], margin: float,
    *, min_positives: int = 1,
) -> Performance:
    """ROC-AUC, PR-AUC, precision and recall at ``threshold``; concept drift when an AUC
    falls more than ``margin`` below the champion's holdout figure (and at least
    ``min_positives`` churners make the figures worth trusting)."""
    from sklearn.metrics import precision_score, recall_score

    y, p = labelled["label"].to_numpy(), labelled["churn_probability"].to_numpy()
    pred = (p >= threshold).astype(int)
    roc, pr = ranking_metrics(y, p)
    champ_roc = float(champion_metrics.get("roc_auc", math.nan))
    champ_pr = float(champion_metrics.get("pr_auc", math.nan))
    enough = int(y.sum()) >= min_positives
    drop = enough and ((roc < champ_roc - margin) or (pr < champ_pr - margin))  # NaN compares False
    return Performance(
        run_date=as_date(day).isoformat(),
        scored_on=str(labelled.attrs.get("scored_on", "")),
        model_version=str(labelled["model_version"].iloc[0]) if len(labelled) else "",
        rows=len(labelled),
        positives=int(y.sum()),
        base_rate=float(y.mean()) if len(y) else math.nan,
        roc_auc=roc,
        pr_auc=pr,
        precision=float(precision_score(y, pred, zero_division=0)),
        recall=float(recall_score(y, pred, zero_division=0)),
        threshold=threshold,
        champion_roc_auc=champ_roc,
        champion_pr_auc=champ_pr,
        concept_drift=bool(drop),
    )


def importance_drift(day: dt.date | str, model_version: str, tonight: pd.Series, reference: pd.Series) -> pd.DataFrame:
    """Per feature: its mean |SHAP| contribution tonight and on the model's training reference,
    their change and ratio, and its rank by each (1: the most important); highest tonight first."""
    frame = pd.DataFrame({"feature": reference.index.astype(str), "reference_mean_abs_shap": reference.to_numpy(),
                          "mean_abs_shap": tonight.reindex(reference.index).to_numpy()})
    frame["change"] = frame["mean_abs_shap"] - frame["reference_mean_abs_shap"]
    frame["ratio"] = frame["mean_abs_shap"] / frame["reference_mean_abs_shap"].where(frame["reference_mean_abs_shap"] > 0)
    frame["reference_rank"] = frame["reference_mean_abs_shap"].rank(ascending=False, method="first").astype(int)
    frame["rank"] = frame["mean_abs_shap"].rank(ascending=False, method="first").astype(int)
    frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    frame.insert(0, "run_date", night(day))
    frame["model_version"] = model_version
    return frame


def age_band(age: pd.Series) -> pd.Series:
    """Age bands (``AGE_BANDS``); age 0 (unknown, see features.sql) is "unknown"."""
    edges = [0, *[e for e, _ in AGE_BANDS], np.inf]
    labels = [lbl for _, lbl in AGE_BANDS] + ["65+"]
    bands = pd.cut(age.astype("float64"), edges, right=False, labels=labels).astype(str)
    return bands.where(age > 0, "unknown")


FAIRNESS_COLUMNS = ["segment", "group", "rows", "positive_rate", "positive_rate_ratio", "expected_positives_at_top",
                    "tpr", "tpr_gap"]


def judged_segments(segments: list[str], params: dict[str, Any], *frames: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The configured ``segments`` a night judges the model by, and why each other one is
    skipped: those the model was not judged by at training (its params' ``fairness``: the
    column left out, constant, or not a feature), and those whose column is absent from, or
    without any value in, one of ``frames`` (tonight's features, the reference)."""
    from pipeline.features.selection import DERIVED_SEGMENTS

    planned = params.get("fairness")
    usable, skipped = [], {}
    for segment in segments:
        if isinstance(planned, dict) and segment not in planned.get("segments", []):
            skipped[segment] = planned.get("skipped", {}).get(segment, "not judged when the model was trained")
            continue
        column = DERIVED_SEGMENTS.get(segment, segment)
        missing = next((f for f in frames if column not in f.columns or f[column].isna().all()), None)
        if missing is not None:
            skipped[segment] = f"{column} has no values in tonight's features or the model's reference"
        else:
            usable.append(segment)
    return usable, skipped


def segment_values(features: pd.DataFrame, segment: str) -> pd.Series:
    """The segment column of ``features`` (``age_band`` derived from ``age``)."""
    if segment == "age_band":
        return age_band(features["age"])
    if segment not in features.columns:
        raise ValueError(f"fairness segment {segment!r} is not a feature column (nor age_band)")
    return features[segment].astype(str)


def fairness(
    day: dt.date | str, segments: list[str], features: pd.DataFrame, scores: pd.DataFrame, threshold: float,
    labelled: pd.DataFrame | None = None, labelled_features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per segment and group: positive rate, its ratio to the highest group's (80% rule), and
    on matured labels the true-positive rate and its gap to the best group."""
    scored = features[["customer_id"]].assign(
        positive=(scores.set_index("customer_id").loc[features["customer_id"], "churn_probability"].to_numpy() >= threshold)
    )
    out = []
    for seg in segments:
        groups = segment_values(features, seg).to_numpy()
        rate = scored.groupby(groups)["positive"].agg(["mean", "size"])
        top = rate["mean"].max()
        frame = pd.DataFrame({
            "segment": seg, "group": rate.index.astype(str), "rows": rate["size"].to_numpy(),
            "positive_rate": rate["mean"].to_numpy(),
            "positive_rate_ratio": (rate["mean"] / top).to_numpy() if top > 0 else np.ones(len(rate)),
            # positives the group would have at the top group's rate: below a few dozen the ratio is noise
            "expected_positives_at_top": rate["size"].to_numpy() * top,
            "tpr": np.nan, "tpr_gap": np.nan,
        })
        if labelled is not None and labelled_features is not None and len(labelled):
            lab = labelled.merge(labelled_features, on="customer_id", how="inner")
            churners = lab[lab["label"] == 1]
            if len(churners):
                tpr = (churners["churn_probability"] >= threshold).groupby(segment_values(churners, seg).to_numpy()).mean()
                frame["tpr"] = frame["group"].map(tpr)
                frame["tpr_gap"] = tpr.max() - frame["tpr"]
        out.append(frame)
    result = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=FAIRNESS_COLUMNS)
    result.insert(0, "run_date", night(day))
    return result


def unseen_categories(features: pd.DataFrame, reference: pd.DataFrame, params: dict[str, Any]) -> dict[str, int]:
    """Rows of tonight per categorical model column whose value the model was not fitted on (its
    params' ``categories``; for a model without them, the values of its training reference
    sample): the model scores them as unknown (every one-hot column 0). A missing value is not
    a new one."""
    seen: dict[str, list[str]] = params.get("categories") or {
        c: reference[c].dropna().astype(str).unique().tolist() for c in params.get("categorical_features", [])
        if c in reference.columns}
    out = {}
    for column, known in seen.items():
        if column in features.columns:
            values = features[column]
            new = int((values.notna() & ~values.astype(str).isin(set(known))).sum())
            if new:
                out[column] = new
    return out
