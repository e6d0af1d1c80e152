"""The night's monitoring as steps, one per part, each its own task in the nightly DAG:
the matured labels, performance (prediction drift, matured-label performance, fairness),
the concept-drift detectors, feature-importance drift, schema drift, the challenger
comparison and the performance estimated before the labels mature, then the alerts gathered
from their outputs.

Each step loads its inputs, calls its part's pure functions (:mod:`pipeline.monitoring.night`,
``metrics``, ``concept``, ``challenger``, ``schema_drift``), writes its results-store tables
(a rerun of the night replaces them), saves its part under ``runs/<dag>/<date>/<step>/`` and
returns a small dict (paths and counts). :func:`alerts_step` reads the parts back, gathers
them (:func:`pipeline.monitoring.night.gather`) and evaluates the rules
(:func:`pipeline.monitoring.alerts.evaluate_rules`), both pure, then records the alerts and
writes ``monitoring.json``. Saved parts may hold NaN (JSON as Python writes it): read back exactly."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import replace
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.artifacts import as_date, nan_to_none, write_parquet, write_text
from pipeline.context import RunContext
from pipeline.model.pinning import pinned_estimator, pinned_model, pinned_reference, run_frame
from pipeline.storage import Location

log = logging.getLogger(__name__)

#: the steps' names: each one's task id in the nightly DAG and its folder under runs/<dag>/<date>/
MATURED, PERFORMANCE, CONCEPT, IMPORTANCE, SCHEMA, CHALLENGER, ALERTS = (
    "matured_labels", "performance", "concept_drift", "importance_drift", "schema_drift", "challenger_comparison",
    "alerts")
#: the estimated-performance step's name (task id and folder)
ESTIMATE = "estimated_performance"
#: matured nights (estimate vs realised) the night's estimate carries for the e-mail
ESTIMATE_HISTORY = 5
#: reference rows whose SHAP values weigh a schema-drift finding when importance drift is off
SCHEMA_DRIFT_SHAP_ROWS = 5_000


def _save(data: Any, path: Location) -> str:
    write_text(json.dumps(data, indent=2, default=str), path)
    return str(path)


def _load(out: dict[str, Any]) -> Any:
    """The part a step saved (its output's ``path``)."""
    return json.loads(storage.read_text(storage.location(out["path"])))


def _threshold(ctx: RunContext) -> float:
    return pinned_model(ctx).threshold(ctx.settings.default_threshold)


def _published(out: Location, frame: pd.DataFrame | None) -> str | None:
    """``frame`` saved as ``out`` (None: nothing to save, and an earlier run's file is removed)."""
    if frame is None or not len(frame):
        storage.remove(out)
        return None
    return str(write_parquet(frame, out))


# ------------------------------------------------------------------ matured labels
def matured_labels_step(ctx: RunContext) -> dict[str, Any]:
    """The scores of night ``D - N`` (``N``: the pinned model's label window) joined with their
    labels over ``[D - N, D)``: ``matured_labels.parquet`` (with the night they were scored on,
    ``scored_on``) and the path of that night's features. ``path`` None and ``rows`` 0 when that
    night was not scored or none of its customers is labelled yet."""
    from pipeline.features.labels import matured, matured_night
    from pipeline.monitoring.store import scores_of

    settings, day = ctx.settings, ctx.day
    label = pinned_model(ctx).params.get("label") or None
    scored_on = matured_night(settings, day, label)
    scores_then = scores_of(settings, scored_on)
    labelled = matured(settings, scores_then, scored_on, day, label) if len(scores_then) else None
    saved = None
    if labelled is not None and len(labelled):
        saved = labelled.assign(scored_on=scored_on)
        saved.attrs = {}  # the night is the scored_on column (Parquet keeps no date in its attrs)
    else:
        labelled = None
    path = _published(ctx.dir(MATURED) / "matured_labels.parquet", saved)
    earlier = ctx.dir("build_features", day=scored_on) / "features.parquet" if labelled is not None else None
    out = {"path": path, "scored_on": scored_on.isoformat(), "rows": len(labelled) if labelled is not None else 0,
           "positives": int(labelled["label"].sum()) if labelled is not None else 0,
           "features": str(earlier) if earlier is not None and storage.is_file(earlier) else None}
    log.info("matured labels %s: %d scores of %s labelled (%d churned)", day, out["rows"], scored_on, out["positives"])
    return out


def load_matured(matured: dict[str, Any]) -> pd.DataFrame | None:
    """:func:`matured_labels_step`'s rows (``attrs["scored_on"]`` set); None when nothing matured."""
    if not matured.get("rows"):
        return None
    frame = storage.read_parquet(storage.location(matured["path"])).drop(columns="scored_on")
    frame.attrs["scored_on"] = as_date(matured["scored_on"])
    return frame


# ------------------------------------------------------------------ performance
def performance_step(ctx: RunContext, features: dict[str, Any], scores: dict[str, Any],
                     matured: dict[str, Any]) -> dict[str, Any]:
    """Prediction drift, matured-label performance and fairness of the night
    (:func:`pipeline.monitoring.night.performance_night`): tables ``prediction_drift``,
    ``model_performance`` and ``fairness_metrics``, and ``performance.json`` + ``fairness.parquet``."""
    from pipeline.model.score import score_frame
    from pipeline.monitoring.night import performance_night
    from pipeline.monitoring.store import recent_high_risk_shares, store_performance_night

    settings, day, model = ctx.settings, ctx.day, pinned_model(ctx)
    threshold = _threshold(ctx)
    reference = pinned_reference(ctx)
    reference_scores = score_frame(pinned_estimator(ctx), reference, model.feature_columns, model.version, threshold,
                                   0)["churn_probability"].to_numpy()
    labelled = load_matured(matured)
    earlier = storage.location(matured["features"]) if labelled is not None and matured.get("features") else None
    part = performance_night(
        day, model_version=model.version, threshold=threshold, champion_metrics=model.metrics(), settings=settings,
        tonight=storage.read_parquet(storage.location(scores["path"])),
        features=run_frame(ctx, features["path"]), reference=reference,
        reference_scores=reference_scores, baseline=recent_high_risk_shares(settings, day, threshold),
        labelled=labelled, labelled_features=storage.read_parquet(earlier) if earlier is not None else None,
        params=model.params)
    store_performance_night(settings, part)
    folder = ctx.dir(PERFORMANCE)
    fairness = str(write_parquet(part.fairness, folder / "fairness.parquet"))
    perf = part.performance
    log.info("performance %s: high-risk share %.3f, score PSI %.3f, %s", day, part.prediction.high_risk_share,
             part.prediction.psi_vs_reference,
             f"ROC-AUC {perf.roc_auc:.3f} on {perf.rows} matured scores" if perf else "nothing matured")
    return nan_to_none({"path": _save(part.to_dict(), folder / "performance.json"), "fairness": fairness,
                        "high_risk_share": part.prediction.high_risk_share,
                        "psi_vs_reference": part.prediction.psi_vs_reference,
                        "matured_rows": perf.rows if perf else 0, "roc_auc": perf.roc_auc if perf else None,
                        "performance_drop": bool(perf and perf.concept_drift)})


# ------------------------------------------------------------------ concept drift
def concept_drift_step(ctx: RunContext, matured: dict[str, Any]) -> dict[str, Any]:
    """The concept-drift detectors fed with the matured errors (:func:`concept_night`): table
    ``concept_drift`` (none when nothing matured tonight: a rerun removes the earlier ones) and
    ``concept_drift.json`` (null when not run)."""
    from pipeline.monitoring.store import store_concept

    labelled = load_matured(matured)
    concept = concept_night(ctx, labelled, _threshold(ctx)) if labelled is not None else None
    store_concept(ctx.settings, ctx.day, concept)
    saved = {"run_date": concept.run_date, **concept.to_dict()} if concept is not None else None
    detected = sorted({d.detector for d in concept.detections if d.worse}) if concept is not None else []
    log.info("concept drift %s: %s", ctx.day, f"errors rose for {detected or 'no detector'}" if concept is not None
             else "not run (nothing matured, or no detector configured)")
    return {"path": _save(saved, ctx.dir(CONCEPT) / "concept_drift.json"),
            "fed": int(concept.rows[0]["fed"]) if concept is not None and concept.rows else 0, "detected": detected}


def concept_night(ctx: RunContext, labelled: pd.DataFrame, threshold: float) -> Any:
    """The concept-drift detectors fed with tonight's matured errors
    (:func:`pipeline.monitoring.concept.run_night`), from the state the latest earlier night of
    the predicting model version left (a detector without one is seeded with that version's holdout
    errors, at most ``concept_drift_seed_rows``); None when no detector is configured."""
    from pipeline.model.registry import get_version
    from pipeline.monitoring.concept import run_night
    from pipeline.monitoring.store import concept_states_before

    settings = ctx.settings
    if not settings.concept_detectors:
        return None
    version = str(labelled["model_version"].iloc[0])  # the errors are the predicting version's
    model = pinned_model(ctx) if version == pinned_model(ctx).version else get_version(settings, version)
    if version != pinned_model(ctx).version:
        threshold = model.threshold(settings.default_threshold)
    scored_on = as_date(labelled.attrs["scored_on"])
    previous = concept_states_before(settings, ctx.day, version)
    starting = any(name not in previous for name in settings.concept_detectors)
    return run_night(ctx.day, version, labelled, threshold, (ctx.day - scored_on).days, previous,
                     detectors=settings.concept_detectors, adwin_delta=settings.concept_drift_adwin_delta,
                     ddm_threshold=settings.concept_drift_ddm_threshold, warm_start=settings.concept_drift_warm_start,
                     holdout=model.holdout_predictions() if starting and settings.concept_drift_seed_rows else None,
                     seed_rows=settings.concept_drift_seed_rows)


# ------------------------------------------------------------------ importance drift
def importance_drift_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """Feature-importance drift (:func:`importance_night`): table ``feature_importance_drift``
    and ``importance_drift.parquet`` (``path`` None when ``importance_sample_rows`` is 0)."""
    from pipeline.monitoring.store import store_importance

    importance = importance_night(ctx, run_frame(ctx, features["path"]), pinned_reference(ctx))
    store_importance(ctx.settings, ctx.day, importance)
    path = _published(ctx.dir(IMPORTANCE) / "importance_drift.parquet", importance)
    log.info("importance drift %s: %s", ctx.day, f"{len(importance)} features" if importance is not None else "off")
    return {"path": path, "features": len(importance) if importance is not None else 0,
            "top": str(importance["feature"].iloc[0]) if importance is not None and len(importance) else None}


def load_importance(importance: dict[str, Any]) -> pd.DataFrame | None:
    """:func:`importance_drift_step`'s table; None when it was off."""
    return storage.read_parquet(storage.location(importance["path"])) if importance.get("path") else None


def importance_night(ctx: RunContext, features: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame | None:
    """Feature-importance drift: the pinned model's mean |SHAP| per feature tonight vs on its
    training reference (:func:`pipeline.monitoring.metrics.importance_drift`), each on at most
    ``importance_sample_rows`` rows (a fixed sample); None when that setting is 0."""
    from pipeline.monitoring.metrics import importance_drift

    rows = ctx.settings.importance_sample_rows
    if not rows:
        return None
    return importance_drift(ctx.day, pinned_model(ctx).version, mean_abs_shap(ctx, features, reference, rows),
                            reference_mean_abs_shap(ctx, reference, rows))


def reference_mean_abs_shap(ctx: RunContext, reference: pd.DataFrame, rows: int) -> pd.Series:
    """:func:`mean_abs_shap` of the pinned model's own training reference: the same every night,
    so computed once per model copy (:func:`pipeline.model.model_cache.derived_figures`)."""
    from pipeline.model.model_cache import derived_figures

    def compute() -> list[tuple[str, float]]:
        return list(mean_abs_shap(ctx, reference, reference, rows).items())

    figures = derived_figures(pinned_model(ctx).path, f"reference_mean_abs_shap-{rows}-{ctx.settings.random_seed}",
                              compute)
    return pd.Series(dict(figures), dtype="float64")


def mean_abs_shap(ctx: RunContext, frame: pd.DataFrame, reference: pd.DataFrame, rows: int) -> pd.Series:
    """The pinned model's mean |SHAP| per feature over at most ``rows`` rows of ``frame`` (a fixed,
    seeded sample; :func:`pipeline.model.explain.mean_abs_contributions` against ``reference``)."""
    from pipeline.model.explain import mean_abs_contributions

    params = pinned_model(ctx).params
    sample = frame if len(frame) <= rows else frame.sample(rows, random_state=ctx.settings.random_seed)
    return mean_abs_contributions(pinned_estimator(ctx), sample.reset_index(drop=True), reference,
                                  list(params["numeric_features"]), list(params["categorical_features"]))


# ------------------------------------------------------------------ schema drift
def schema_drift_step(ctx: RunContext, validated: list[dict[str, Any]], importance: dict[str, Any]) -> dict[str, Any]:
    """The pinned model's recorded source columns against tonight's ingest summaries
    (:func:`schema_drift_night`, weighed by importance drift's reference figures):
    ``schema_drift.json``. Its alerts are raised by :func:`alerts_step`."""
    drift = schema_drift_night(ctx, validated, load_importance(importance))
    return {"path": _save(drift.to_dict(), ctx.dir(SCHEMA) / "schema_drift.json"), "checked": len(drift.checked),
            "findings": [f.name for f in drift.findings]}


def schema_drift_night(ctx: RunContext, validated: list[dict[str, Any]], importance: pd.DataFrame | None) -> Any:
    """The pinned model's recorded source columns against tonight's ingested batches
    (:func:`pipeline.monitoring.schema_drift.find`), each finding weighed by its features' share
    of the model's mean |SHAP| on its training reference (tonight's importance drift's reference
    figures, or computed on at most :data:`SCHEMA_DRIFT_SHAP_ROWS` reference rows when it is off).
    A version without a record is said once (:data:`~pipeline.monitoring.schema_drift.NOT_RECORDED`)."""
    from pipeline.monitoring.schema_drift import NOT_RECORDED, PARAMS_KEY, SchemaDrift, find, night_counts, with_importance

    model = pinned_model(ctx)
    record = model.params.get(PARAMS_KEY)
    if not isinstance(record, dict):
        log.warning("schema drift %s: %s: %s", ctx.day, model.version, NOT_RECORDED)
        return SchemaDrift(model.version, False, note=NOT_RECORDED)
    night = night_counts(validated)
    findings = find(record, night, ctx.settings.schema_drift_null_margin)
    if findings:
        if importance is not None and len(importance):
            shap = importance.set_index("feature")["reference_mean_abs_shap"]
        else:
            reference = pinned_reference(ctx)
            shap = reference_mean_abs_shap(ctx, reference, SCHEMA_DRIFT_SHAP_ROWS)
        findings = with_importance(findings, shap)
    for f in findings:
        log.warning("schema drift %s: %s", ctx.day, f.describe())
    checked = sorted(c for c in record.get("columns", {}) if c in night)
    log.info("schema drift %s: %d source column(s) of %s checked, %d finding(s)", ctx.day, len(checked),
             model.version, len(findings))
    return SchemaDrift(model.version, True, checked, findings)


# ------------------------------------------------------------------ the challenger
def challenger_comparison_step(ctx: RunContext, matured: dict[str, Any],
                               challenger: dict[str, Any] | None) -> dict[str, Any]:
    """The challenger's night (:func:`challenger_night`) from the matured labels and what
    :func:`pipeline.model.steps.score_challenger_step` said tonight (None: it did not run): table
    ``challenger_performance`` (none when no challenger was compared) and ``challenger.json`` (null: nothing to say)."""
    from pipeline.monitoring.store import store_challenger

    night = challenger_night(ctx, load_matured(matured), _threshold(ctx), challenger)
    comparison = night.comparison if night is not None else None
    store_challenger(ctx.settings, ctx.day, comparison)
    saved = None if night is None else {
        **night.to_dict(), "run_date": night.run_date,
        "comparison": comparison.to_dict("records") if comparison is not None else None}
    log.info("challenger %s: %s", ctx.day, "nothing to compare" if night is None else
             f"{night.version or 'none'}, compared tonight: {night.compared_tonight}, review: {night.review}")
    return {"path": _save(saved, ctx.dir(CHALLENGER) / "challenger.json"),
            "version": night.version if night is not None else None,
            "compared": bool(night is not None and night.compared_tonight),
            "review": bool(night is not None and night.review)}


def challenger_night(ctx: RunContext, labelled: pd.DataFrame | None, threshold: float,
                     tonight: dict[str, Any] | None) -> Any:
    """The challenger's night (:class:`pipeline.monitoring.challenger.ChallengerNight`): tonight's
    challenger (or why there is none) and, when a night scored by a challenger has matured, both
    models judged on its labels with the nights compared before it; None when no challenger step
    ran tonight and nothing it scored has matured."""
    from pipeline.model.registry import get_version
    from pipeline.monitoring.challenger import ChallengerNight, compare, side_by_side
    from pipeline.monitoring.store import challenger_nights_before, scores_of
    from pipeline.results import CHALLENGER_SCORES

    settings, day = ctx.settings, ctx.day
    comparison = None
    if labelled is not None and len(labelled):
        shadow = scores_of(settings, labelled.attrs["scored_on"], CHALLENGER_SCORES)
        if len(shadow):
            version = str(shadow["model_version"].iloc[0])
            comparison = compare(day, labelled, shadow, threshold,
                                 get_version(settings, version).threshold(settings.default_threshold),
                                 margin=settings.promotion_min_improvement,
                                 min_positives=settings.performance_min_positives)
    if tonight is None and comparison is None:
        return None
    needed = settings.challenger_min_nights
    before = challenger_nights_before(settings, day, max(needed, 1) - (comparison is not None))
    nights = side_by_side(pd.concat([before, comparison], ignore_index=True) if comparison is not None and len(before)
                          else before if comparison is None else comparison)
    return ChallengerNight(day.isoformat(), pinned_model(ctx).version, (tonight or {}).get("version"),
                           (tonight or {}).get("reason", "the challenger was not scored tonight"), needed,
                           settings.promotion_min_improvement, comparison, nights)


# ------------------------------------------------------------------ estimated performance
def estimated_performance_step(ctx: RunContext, scores: dict[str, Any], matured: dict[str, Any]) -> dict[str, Any]:
    """The champion's ROC-AUC, PR-AUC and precision at capacity estimated from tonight's
    calibrated scores before their labels mature, with a band (:mod:`pipeline.monitoring.estimate`):
    table ``performance_estimates`` (a rerun replaces the night's row and keeps the realised metrics
    a later night stored in it) and ``estimate.json``. Tonight's matured labels (the scores of
    ``D - window``) give that night's realised metrics, stored beside its estimate, and the
    calibration check the estimate relies on (else the newest earlier one of this version)."""
    from pipeline.monitoring.estimate import METRICS, night_estimate, realised, with_realised
    from pipeline.monitoring.store import estimate_of, estimates_before, store_estimate, store_realised

    settings, day, model = ctx.settings, ctx.day, pinned_model(ctx)
    labelled = load_matured(matured)
    realised_then: dict[str, Any] | None = None
    if labelled is not None:  # the night whose labels matured tonight: its realised metrics beside its estimate
        then = estimate_of(settings, as_date(labelled.attrs["scored_on"]))
        if then is not None:
            values = realised(labelled, int(then["capacity"]))
            store_realised(settings, then["run_date"], values, day)
            realised_then = {"scored_on": then["run_date"], **values}
    earlier = estimates_before(settings, day, model.version)
    est = night_estimate(
        day.isoformat(), model.version, storage.read_parquet(storage.location(scores["path"])),
        capacity=settings.campaign_daily_capacity, threshold=_threshold(ctx), baseline=model.metrics(),
        margin=settings.performance_drop_margin, simulations=settings.estimate_simulations,
        sample_rows=settings.estimate_sample_rows, confidence=settings.estimate_confidence, seed=settings.random_seed,
        max_calibration_gap=settings.estimate_max_calibration_gap,
        calibration=_calibration_check(labelled, model.version, earlier), earlier=earlier)
    before = estimate_of(settings, day)  # a rerun of the night: the realised metrics a later night stored
    if before is not None and before.get("realised_on"):
        est = with_realised(est, {m: before[f"realised_{m}"] for m in METRICS}, str(before["realised_on"]))
    store_estimate(settings, est.row())
    history = estimates_before(settings, day + dt.timedelta(days=1), model.version, ESTIMATE_HISTORY, matured_only=True)
    est = replace(est, history=[{k: r[k] for k in ("run_date", "realised_on", "capacity", *METRICS,
                                                    *(f"realised_{m}" for m in METRICS),
                                                    *(f"{m}_{end}" for m in METRICS for end in ("lower", "upper")))}
                                for r in history])
    _log_estimate(ctx, est, realised_then)
    log.info("estimated performance %s: ROC-AUC %.3f [%.3f, %.3f] (holdout %.3f), PR-AUC %.3f [%.3f, %.3f] "
             "(holdout %.3f), precision at %d %.3f; calibration gap %s%s", day, est.roc_auc, est.roc_auc_lower,
             est.roc_auc_upper, est.baseline_roc_auc, est.pr_auc, est.pr_auc_lower, est.pr_auc_upper,
             est.baseline_pr_auc, est.capacity, est.precision_at_capacity, f"{est.calibration_gap:.3f}",
             "" if est.reliable else " (unreliable)")
    return nan_to_none({"path": _save(est.to_dict(), ctx.dir(ESTIMATE) / "estimate.json"), "rows": est.rows,
                        "roc_auc": est.roc_auc, "pr_auc": est.pr_auc, "reliable": est.reliable,
                        "below_since": est.below_since, "realised": realised_then})


def _calibration_check(labelled: pd.DataFrame | None, version: str, earlier: list[dict[str, Any]]) -> Any:
    """The calibration of ``version`` on the newest matured night: tonight's matured scores when
    ``version`` made them, else the check an earlier night of ``version`` stored (None: none yet)."""
    from pipeline.monitoring.estimate import Calibration, calibration

    if labelled is not None and str(labelled["model_version"].iloc[0]) == version:
        return calibration(labelled, as_date(labelled.attrs["scored_on"]).isoformat())
    for row in earlier:
        if row.get("calibration_scored_on"):
            return Calibration(str(row["calibration_scored_on"]), 0, math.nan, math.nan, float(row["calibration_gap"]))
    return None


def _log_estimate(ctx: RunContext, est: Any, realised_then: dict[str, Any] | None) -> None:
    """The night's estimate (and the realised metrics of the night that matured tonight) as metrics
    of the champion's monitoring run in MLflow, at the night's step (its date's ordinal). Beside the
    results store: an MLflow store that cannot be written is logged as a warning, the night goes on."""
    from pipeline.model.tracking import log_monitoring_metrics
    from pipeline.monitoring.estimate import METRICS

    settings = ctx.settings
    nights = [(ctx.day, {f"estimated_{name}": getattr(est, name) for m in METRICS
                         for name in (m, f"{m}_lower", f"{m}_upper")} | {"calibration_gap": est.calibration_gap})]
    if realised_then is not None:
        nights.append((as_date(realised_then["scored_on"]), {f"realised_{m}": realised_then[m] for m in METRICS}))
    try:
        for day, metrics in nights:
            log_monitoring_metrics(settings, est.model_version, day, metrics)
    except Exception as exc:  # MLflow raises many kinds; the estimate is stored already
        log.warning("estimated performance %s: not logged to MLflow (%s: %s)", ctx.day, type(exc).__name__, exc)


# ------------------------------------------------------------------ alerts
def alerts_step(
    ctx: RunContext, validated: list[dict[str, Any]], features: dict[str, Any], drift: dict[str, Any],
    performance: dict[str, Any], concept: dict[str, Any], importance: dict[str, Any], schema: dict[str, Any],
    challenger: dict[str, Any], estimate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The night's alerts from its parts' outputs: the parts read back, gathered
    (:func:`pipeline.monitoring.night.gather`) and the rules evaluated
    (:func:`pipeline.monitoring.alerts.evaluate_rules`), both pure; rejected rows from the ingest
    and features summaries. Tonight's alerts are stored ``pending`` (or ``suppressed``) until an
    e-mail carrying them is accepted; ``runs/<dag>/<date>/alerts/monitoring.json`` holds the
    whole night (what the report, the e-mail and ``request_retraining`` read: ``retrain`` is true
    when a retraining is requested tonight, :func:`retraining_night`)."""
    from pipeline.monitoring.alerts import SUPPRESSED, evaluate_rules, night_summary, record_alerts
    from pipeline.monitoring.estimate import PerformanceEstimate
    from pipeline.monitoring.night import (
        DriftFacts,
        PerformanceNight,
        challenger_from_dict,
        concept_from_dict,
        gather,
        rejected_rows,
        schema_drift_from_dict,
    )

    settings, day, model = ctx.settings, ctx.day, pinned_model(ctx)
    result = gather(
        day, model_version=model.version, threshold=_threshold(ctx), drift=DriftFacts.from_dict(drift),
        performance=PerformanceNight.from_dict(_load(performance),
                                               storage.read_parquet(storage.location(performance["fairness"]))),
        rejected_rows=rejected_rows(validated, features), concept=concept_from_dict(_load(concept)),
        importance=load_importance(importance), challenger=challenger_from_dict(_load(challenger)),
        schema_drift=schema_drift_from_dict(_load(schema)),
        estimate=PerformanceEstimate.from_dict(_load(estimate)) if estimate else None)
    alerts = record_alerts(settings, day, model.version, evaluate_rules(settings, result))
    out = night_summary(settings, result, alerts)
    out.update(retraining_night(ctx, out))  # "retrain": requested tonight, only when a retrain can help
    out["path"] = _save(out, ctx.dir(ALERTS) / "monitoring.json")
    log.info("alerts %s: severity %s, %d alerts (%d not suppressed), retrain %s", day, out["severity"], len(alerts),
             sum(a["status"] != SUPPRESSED for a in out["alerts"]), out["retrain"])
    return nan_to_none(json.loads(json.dumps(out, default=str)))  # XCom JSON has no NaN


def retraining_night(ctx: RunContext, night: dict[str, Any]) -> dict[str, Any]:
    """Is retraining requested tonight (:func:`pipeline.monitoring.retraining.decide`, from the
    night's raised alerts, its monitoring and the requests of the last ``alert_cooldown_days``
    nights)? Stored in ``retraining_requests`` (a rerun replaces the night's row); returns the
    ``retrain`` flag and the decision (``retraining``) for ``monitoring.json``."""
    from pipeline.monitoring.alerts import SUPPRESSED
    from pipeline.monitoring.retraining import decide
    from pipeline.monitoring.store import retraining_requests_before, store_retraining_request

    settings, day = ctx.settings, ctx.day
    raised = [a for a in night["alerts"] if a["status"] != SUPPRESSED]
    decision = decide(settings, day, night["model_version"], raised, night,
                      retraining_requests_before(settings, day, settings.alert_cooldown_days))
    store_retraining_request(settings, day, decision.row())
    log.info("retraining %s: %s", day, decision.reason)
    return {"retrain": decision.requested, "retraining": decision.to_dict()}
