"""Model monitoring beyond data drift: prediction drift, matured-label performance, fairness.

All of it is stored per night in tables of the results store (:mod:`pipeline.results`; a
rerun of a night replaces its rows), which also feed the trend chart:

* ``drift_metrics`` - one row per feature per night (method, statistic, threshold, drifted, PSI);
* ``prediction_drift`` - tonight's score distribution vs the champion's reference and recent nights;
* ``model_performance`` - metrics of the scores of night ``D - horizon`` against what happened
  in ``[D - horizon, D)`` (labels from :func:`pipeline.labels.build_labels`);
* ``fairness_metrics`` - per segment: positive-rate ratio (80% rule) and TPR gap.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.drift import NUMERIC, DriftSummary, psi
from pipeline.results import DRIFT, FAIRNESS, PERFORMANCE, PREDICTION, SCORES, night, replace_rows

log = logging.getLogger(__name__)

#: upper edges (exclusive) of the age bands; ages at or above the last edge form "65+"
AGE_BANDS = ((25, "<25"), (35, "25-34"), (50, "35-49"), (65, "50-64"))


# --- data drift -----------------------------------------------------------------------------------


def store_drift_metrics(settings: Settings, day: dt.date | str, model_version: str, summary: DriftSummary) -> int:
    """One ``drift_metrics`` row per feature for the night (replacing that night's rows)."""
    rows = pd.DataFrame([asdict(f) for f in summary.features])
    rows = rows.rename(columns={"column": "feature"})
    rows.insert(0, "run_date", night(day))
    rows["model_version"] = model_version
    rows["drifted"] = rows["drifted"].astype(bool)
    return replace_rows(settings, DRIFT, rows, "run_date", night(day))


# --- prediction drift ------------------------------------------------------------------------------


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
    from pipeline.score import high_risk_share

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


def recent_high_risk_shares(settings: Settings, day: dt.date, threshold: float) -> list[float]:
    """The high-risk share at ``threshold`` of each of the ``prediction_baseline_nights``
    nights before ``day`` that have ``churn_scores``."""
    since, before = day - dt.timedelta(days=settings.prediction_baseline_nights), day
    tbl = SCORES
    with results.results_engine(settings).connect() as conn:
        # pipeline.score.high_risk_share of each night, evaluated in the database
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


# --- matured-label performance ---------------------------------------------------------------------


def matured_labels(settings: Settings, day: dt.date | str) -> pd.DataFrame | None:
    """Scores of night ``D - horizon`` with their label (cancelled in ``[D - horizon, D)``).

    ``None`` when that night has no stored scores (not scored, or the horizon has not passed
    since the first night). Labels come from :func:`pipeline.labels.build_labels` (lake data
    known before D).
    """
    from pipeline.labels import build_labels

    scored_on = as_date(day) - dt.timedelta(days=settings.horizon_days)
    tbl = SCORES
    with results.results_engine(settings).connect() as conn:
        query = sa.select(tbl.c.customer_id, tbl.c.churn_probability, tbl.c.model_version)
        scores = pd.read_sql(query.where(tbl.c.as_of == night(scored_on)), conn)
    if scores.empty:
        return None
    labels = build_labels(settings, [scored_on], horizon_days=settings.horizon_days, data_end=as_date(day))
    joined = scores.merge(labels[["customer_id", "label"]], on="customer_id", how="inner")
    joined.attrs["scored_on"] = scored_on
    return joined


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


def performance(
    labelled: pd.DataFrame, day: dt.date | str, threshold: float, champion_metrics: dict[str, Any], margin: float,
    *, min_positives: int = 1,
) -> Performance:
    """ROC-AUC, PR-AUC, precision and recall at ``threshold``; concept drift when an AUC
    falls more than ``margin`` below the champion's holdout figure (and at least
    ``min_positives`` churners make the figures worth trusting)."""
    from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

    y, p = labelled["label"].to_numpy(), labelled["churn_probability"].to_numpy()
    both = len(np.unique(y)) == 2
    pred = (p >= threshold).astype(int)
    roc = float(roc_auc_score(y, p)) if both else math.nan
    pr = float(average_precision_score(y, p)) if both else math.nan
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


def store_performance(settings: Settings, result: Performance) -> None:
    row = pd.DataFrame([asdict(result)])
    row["run_date"] = night(result.run_date)
    replace_rows(settings, PERFORMANCE, row, "run_date", night(result.run_date))


# --- fairness --------------------------------------------------------------------------------------


def age_band(age: pd.Series) -> pd.Series:
    """Age bands (``AGE_BANDS``); age 0 (unknown, see features.sql) is "unknown"."""
    edges = [0, *[e for e, _ in AGE_BANDS], np.inf]
    labels = [lbl for _, lbl in AGE_BANDS] + ["65+"]
    bands = pd.cut(age.astype("float64"), edges, right=False, labels=labels).astype(str)
    return bands.where(age > 0, "unknown")


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
    result = pd.concat(out, ignore_index=True)
    result.insert(0, "run_date", night(day))
    return result


def store_fairness(settings: Settings, day: dt.date | str, table: pd.DataFrame) -> None:
    replace_rows(settings, FAIRNESS, table, "run_date", night(day))


# --- the night's monitoring, as one pure function ------------------------------------------------


@dataclass(frozen=True)
class DriftFacts:
    """What the alert rules need of the night's data drift (:func:`pipeline.flows.drift_step`)."""

    drift_share: float
    drifted: list[str]
    max_psi: float
    max_psi_feature: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftFacts:
        value = data.get("max_psi")
        return cls(float(data["drift_share"]), list(data["drifted"]), math.nan if value is None else float(value),
                   data.get("max_psi_feature"))


@dataclass(frozen=True)
class MonitoringResult:
    """One night's monitoring: what :mod:`pipeline.alerts` rules are evaluated on."""

    run_date: str
    model_version: str
    threshold: float
    drift: DriftFacts
    prediction: PredictionDrift
    performance: Performance | None
    #: per segment and group (:func:`fairness`, with the training reference's ``reference_ratio``)
    fairness: pd.DataFrame
    rejected_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the monitor task writes and pushes to XCom)."""
        return {
            "threshold": self.threshold,
            "model_version": self.model_version,
            "drift": asdict(self.drift),
            "prediction": asdict(self.prediction),
            "performance": asdict(self.performance) if self.performance else None,
            "fairness": self.fairness.drop(columns="run_date", errors="ignore").to_dict("records"),
            "rejected_rows": self.rejected_rows,
        }


def monitor_night(
    day: dt.date, *, model_version: str, threshold: float, champion_metrics: dict[str, Any], settings: Settings,
    tonight: pd.DataFrame, features: pd.DataFrame, reference: pd.DataFrame, reference_scores: np.ndarray,
    baseline: list[float], drift: DriftFacts, labelled: pd.DataFrame | None = None,
    labelled_features: pd.DataFrame | None = None, rejected_rows: int = 0,
) -> MonitoringResult:
    """Prediction drift, matured-label performance and fairness of one night (pure: every
    input is given, nothing is read or written).

    ``tonight``: the night's scores; ``features``: its feature table; ``reference`` /
    ``reference_scores``: the champion's training reference and its scores; ``baseline``: the
    recent nights' high-risk shares; ``labelled``: the scores of night ``D - horizon`` with
    their labels (:func:`matured_labels`) and ``labelled_features`` that night's features.
    Fairness is also computed on the scored reference: a disparity the model already had is
    reported with its ``reference_ratio``, and only getting worse than that alerts.
    """
    prediction = prediction_drift(day, tonight, reference_scores, threshold, model_version, baseline)
    perf = None
    if labelled is not None and len(labelled):
        perf = performance(labelled, day, threshold, champion_metrics, settings.performance_drop_margin,
                           min_positives=settings.performance_min_positives)
    fair = fairness(day, settings.segments, features, tonight, threshold, labelled, labelled_features)
    ref_rows = reference.assign(customer_id=np.arange(len(reference)))
    ref_fair = fairness(day, settings.segments, ref_rows,
                        pd.DataFrame({"customer_id": ref_rows["customer_id"], "churn_probability": reference_scores}),
                        threshold)
    fair = fair.merge(ref_fair[["segment", "group", "positive_rate_ratio"]].rename(
        columns={"positive_rate_ratio": "reference_ratio"}), on=["segment", "group"], how="left")
    return MonitoringResult(as_date(day).isoformat(), model_version, threshold, drift, prediction, perf, fair,
                            rejected_rows)


def store_monitoring(settings: Settings, result: MonitoringResult) -> None:
    """The night's rows of ``prediction_drift``, ``model_performance`` and ``fairness_metrics``."""
    store_prediction_drift(settings, result.prediction)
    if result.performance is not None:
        store_performance(settings, result.performance)
    store_fairness(settings, result.run_date, result.fairness)


# --- trend chart -----------------------------------------------------------------------------------


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


def trend_chart_png(settings: Settings, day: dt.date | str, trend: pd.DataFrame | None = None) -> bytes | None:
    """PNG of drift share, high-risk share and matured ROC-AUC over the recent nights
    (``trend``: :func:`trend_frame` of ``day``, read here when not given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if trend is None:
        trend = trend_frame(settings, day)
    if trend.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 3), dpi=90)
    for column, marker, label in (("drift_share", "o", "drift share (features)"),
                                  ("high_risk_share", "s", "high-risk share"),
                                  ("roc_auc", "^", "ROC-AUC (matured labels)")):
        values = trend[column].dropna()
        if len(values):
            ax.plot(values.index, values.to_numpy(), marker=marker, label=label)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Recent nights up to {as_date(day)}")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_img_tag(png: bytes | None, alt: str = "trend chart") -> str:
    if not png:
        return ""
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/>'
