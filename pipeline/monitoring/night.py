"""The night's monitoring, gathered: each part is computed by its own step (data drift,
performance, concept detectors, importance drift, schema drift, the challenger) and saved;
:func:`gather` makes their saved parts one typed :class:`MonitoringResult` (pure: nothing is
read), which the alert rules (:mod:`pipeline.monitoring.alerts`) read. :func:`performance_night`
is the performance part: prediction drift, matured-label performance and fairness
(:mod:`pipeline.monitoring.metrics`). Its own module: the parts it gathers import nothing from it."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.monitoring.challenger import ChallengerNight
from pipeline.monitoring.concept import ConceptDrift, Detection
from pipeline.monitoring.estimate import PerformanceEstimate
from pipeline.monitoring.metrics import (
    Performance,
    PredictionDrift,
    fairness,
    judged_segments,
    performance,
    prediction_drift,
    unseen_categories,
)
from pipeline.monitoring.schema_drift import Finding, SchemaDrift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftFacts:
    """What the alert rules need of the night's data drift (:func:`pipeline.monitoring.steps.drift_step`)."""

    drift_share: float
    drifted: list[str]
    max_psi: float
    max_psi_feature: str | None
    #: PSI per feature (NaN: none; empty in facts saved before it was kept): what the alerts weigh by importance
    psi: dict[str, float] = field(default_factory=dict)

    @property
    def feature_psi(self) -> dict[str, float]:
        """PSI per feature; facts without it (saved before it was kept) name only their largest."""
        return self.psi or ({self.max_psi_feature: self.max_psi} if self.max_psi_feature else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftFacts:
        value = data.get("max_psi")
        psi = {str(f): math.nan if p is None else float(p) for f, p in (data.get("psi") or {}).items()}
        return cls(float(data["drift_share"]), list(data["drifted"]), math.nan if value is None else float(value),
                   data.get("max_psi_feature"), psi)


@dataclass(frozen=True)
class MonitoringResult:
    """One night's monitoring: what :mod:`pipeline.monitoring.alerts` rules are evaluated on."""

    run_date: str
    model_version: str
    threshold: float
    drift: DriftFacts
    prediction: PredictionDrift
    performance: Performance | None
    #: per segment and group (:func:`fairness`, with the training reference's ``reference_ratio``)
    fairness: pd.DataFrame
    rejected_rows: int = 0
    #: configured fairness segments not judged tonight, with why (:func:`judged_segments`)
    fairness_skipped: dict[str, str] = field(default_factory=dict)
    #: category values tonight that the model never saw in training, per column (scored as unknown)
    unseen_categories: dict[str, int] = field(default_factory=dict)
    #: the sequential concept-drift detectors over tonight's matured errors (None: nothing matured,
    #: or no detector configured)
    concept: ConceptDrift | None = None
    #: feature-importance drift (:func:`importance_drift`; None: importance_sample_rows is 0)
    importance: pd.DataFrame | None = None
    #: the challenger in shadow (:mod:`pipeline.monitoring.challenger`; None: not judged tonight)
    challenger: ChallengerNight | None = None
    #: the source columns the model was trained with vs tonight's (:mod:`pipeline.monitoring.schema_drift`;
    #: None: not checked)
    schema_drift: SchemaDrift | None = None
    #: the performance estimated from tonight's scores before their labels mature
    #: (:mod:`pipeline.monitoring.estimate`; None: not estimated)
    estimate: PerformanceEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the alerts step writes as ``monitoring.json`` and pushes to XCom)."""
        return {
            "threshold": self.threshold,
            "model_version": self.model_version,
            "drift": asdict(self.drift),
            "prediction": asdict(self.prediction),
            "performance": asdict(self.performance) if self.performance else None,
            "fairness": self.fairness.drop(columns="run_date", errors="ignore").to_dict("records"),
            "rejected_rows": self.rejected_rows,
            "fairness_skipped": self.fairness_skipped,
            "unseen_categories": self.unseen_categories,
            "concept_drift": self.concept.to_dict() if self.concept is not None else None,
            "importance": (self.importance.drop(columns=["run_date", "model_version"]).to_dict("records")
                           if self.importance is not None else None),
            "challenger": self.challenger.to_dict() if self.challenger is not None else None,
            "schema_drift": self.schema_drift.to_dict() if self.schema_drift is not None else None,
            "estimate": self.estimate.to_dict() if self.estimate is not None else None,
        }


def typed(cls: Any, data: dict[str, Any]) -> Any:
    """The dataclass ``cls`` from its fields in ``data`` (what :func:`dataclasses.asdict` saved;
    other keys, such as a saved property, are left out)."""
    return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class PerformanceNight:
    """The night's performance part (:func:`performance_night`): prediction drift,
    matured-label performance (None: nothing matured) and fairness."""

    prediction: PredictionDrift
    performance: Performance | None
    #: per segment and group (:func:`fairness`, with the training reference's ``reference_ratio``)
    fairness: pd.DataFrame
    #: configured fairness segments not judged tonight, with why (:func:`judged_segments`)
    fairness_skipped: dict[str, str] = field(default_factory=dict)
    #: category values tonight that the model never saw in training, per column
    unseen_categories: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the fairness table (saved beside it as Parquet)."""
        return {"prediction": asdict(self.prediction),
                "performance": asdict(self.performance) if self.performance else None,
                "fairness_skipped": self.fairness_skipped, "unseen_categories": self.unseen_categories}

    @classmethod
    def from_dict(cls, data: dict[str, Any], fairness: pd.DataFrame) -> PerformanceNight:
        perf = data.get("performance")
        return cls(typed(PredictionDrift, data["prediction"]), typed(Performance, perf) if perf else None, fairness,
                   dict(data.get("fairness_skipped") or {}), dict(data.get("unseen_categories") or {}))


def performance_night(
    day: dt.date, *, model_version: str, threshold: float, champion_metrics: dict[str, Any], settings: Settings,
    tonight: pd.DataFrame, features: pd.DataFrame, reference: pd.DataFrame, reference_scores: np.ndarray,
    baseline: list[float], labelled: pd.DataFrame | None = None, labelled_features: pd.DataFrame | None = None,
    params: dict[str, Any] | None = None,
) -> PerformanceNight:
    """Prediction drift, matured-label performance and fairness of one night (pure: every
    input is given, nothing is read or written).

    ``tonight``: the night's scores; ``features``: its feature table; ``reference`` /
    ``reference_scores``: the champion's training reference and its scores; ``baseline``: the
    recent nights' high-risk shares; ``labelled``: the scores of night ``D - horizon`` with
    their labels (:func:`pipeline.features.labels.matured`) and ``labelled_features`` that night's features.
    Fairness is also computed on the scored reference: a disparity the model already had is
    reported with its ``reference_ratio``, and only getting worse than that alerts.
    """
    prediction = prediction_drift(day, tonight, reference_scores, threshold, model_version, baseline)
    perf = None
    if labelled is not None and len(labelled):
        perf = performance(labelled, day, threshold, champion_metrics, settings.performance_drop_margin,
                           min_positives=settings.performance_min_positives)
    segments, skipped = judged_segments(settings.segments, params or {}, features, reference)
    fair = fairness(day, segments, features, tonight, threshold, labelled, labelled_features)
    ref_rows = reference.assign(customer_id=np.arange(len(reference)))
    ref_fair = fairness(day, segments, ref_rows,
                        pd.DataFrame({"customer_id": ref_rows["customer_id"], "churn_probability": reference_scores}),
                        threshold)
    fair = fair.merge(ref_fair[["segment", "group", "positive_rate_ratio"]].rename(
        columns={"positive_rate_ratio": "reference_ratio"}), on=["segment", "group"], how="left")
    return PerformanceNight(prediction, perf, fair, skipped, unseen_categories(features, reference, params or {}))


def rejected_rows(validated: list[dict[str, Any]], features: dict[str, Any]) -> int:
    """Rows quarantined tonight, by the inputs' and the features' gates (the data-quality alert):
    from the ingest summaries and the features step's summary."""
    return sum(int(v.get("rejected", 0)) for v in validated) + int(features.get("rejected", 0))


def concept_from_dict(data: dict[str, Any] | None) -> ConceptDrift | None:
    """A saved :meth:`ConceptDrift.to_dict` (with its ``run_date``) as the detectors' night (rows without state)."""
    if data is None:
        return None
    return ConceptDrift(data["run_date"], data["model_version"], data["scored_on"], list(data["rows"]),
                        [typed(Detection, d) for d in data["detections"]])


def schema_drift_from_dict(data: dict[str, Any] | None) -> SchemaDrift | None:
    """A saved :meth:`SchemaDrift.to_dict` as the check it was."""
    if data is None:
        return None
    findings = [typed(Finding, {**f, "features": tuple(f["features"])}) for f in data["findings"]]
    return SchemaDrift(data["model_version"], bool(data["recorded"]), list(data["checked"]), findings, data.get("note", ""))


def challenger_from_dict(data: dict[str, Any] | None) -> ChallengerNight | None:
    """A saved challenger night (:meth:`ChallengerNight.to_dict` with its ``run_date`` and the
    ``comparison`` rows) as the night it was."""
    if data is None:
        return None
    compared = data.get("comparison")
    return ChallengerNight(data["run_date"], data["champion_version"], data["version"], data["reason"],
                           int(data["needed"]), float(data["margin"]),
                           pd.DataFrame(compared) if compared is not None else None, pd.DataFrame(data["nights"]))


def gather(
    day: dt.date | str, *, model_version: str, threshold: float, drift: DriftFacts, performance: PerformanceNight,
    rejected_rows: int = 0, concept: ConceptDrift | None = None, importance: pd.DataFrame | None = None,
    challenger: ChallengerNight | None = None, schema_drift: SchemaDrift | None = None,
    estimate: PerformanceEstimate | None = None,
) -> MonitoringResult:
    """The night's parts, as their steps saved them, gathered into one :class:`MonitoringResult`
    (pure: nothing is read or written; what the alert rules evaluate).

    ``drift``: the data-drift step's facts; ``performance``: :func:`performance_night`;
    ``concept``: the concept-drift detectors' night (:func:`pipeline.monitoring.concept.run_night`; None:
    nothing matured or no detector); ``importance``: the feature-importance drift
    (:func:`pipeline.monitoring.metrics.importance_drift`; None: off); ``challenger``: the challenger's night
    (:mod:`pipeline.monitoring.challenger`); ``schema_drift``: the source columns checked against the
    model's training (:mod:`pipeline.monitoring.schema_drift`); ``rejected_rows``: :func:`rejected_rows`;
    ``estimate``: the performance estimated before the labels mature (:mod:`pipeline.monitoring.estimate`).
    """
    return MonitoringResult(as_date(day).isoformat(), model_version, threshold, drift, performance.prediction,
                            performance.performance, performance.fairness, rejected_rows, performance.fairness_skipped,
                            performance.unseen_categories, concept, importance, challenger, schema_drift,
                            estimate)
