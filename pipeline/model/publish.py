"""A trained model becomes a registered version: its MLflow training run (parameters, holdout
metrics, one child run per candidate draw, the MLflow model and churnflow's bundle of files)
and a new, sealed version of the registered model. Nothing here decides what is served
(:mod:`pipeline.model.gate` judges; :func:`register_and_gate` records, judges, promotes and tags)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.artifacts import write_parquet, write_text
from pipeline.config import Settings
from pipeline.model import model_cache, registry
from pipeline.model.candidates import Trial
from pipeline.model.gate import TrainResult, Verdict, judge

if TYPE_CHECKING:
    from pipeline.model.train import Trained

log = logging.getLogger(__name__)

#: the MLflow run's tag naming the gate's evidence test (bootstrap or margin)
TAG_GATE_TEST = "churnflow.gate.test"


@dataclass(frozen=True)
class Recorded:
    """A version just registered: its name, number, verified copy and MLflow run."""

    version: str
    name: str
    path: Path
    run_id: str

    @property
    def number(self) -> int:
        return registry.parse_version(self.version)


def _run_params(settings: Settings, params: dict[str, Any], metrics: dict[str, Any],
                training_date: str) -> dict[str, Any]:
    """The training run's MLflow parameters: what it trained on and how."""
    window = params.get("training_window") or {}
    label_ = params.get("label") or {}
    groups = params.get("feature_groups") or {}
    return {
        "training_date": training_date, "label_kind": label_.get("kind"), "label_window_days": label_.get("window_days"),
        "label_definition": label_.get("definition"),
        "first_snapshot": window.get("first_snapshot"), "last_snapshot": window.get("last_snapshot"),
        "holdout_snapshots": window.get("holdout"), "train_snapshots": metrics.get("train_snapshots"),
        "validation": (params.get("validation") or {}).get("description"),
        "train_rows": metrics.get("train_rows"), "holdout_rows": metrics.get("n"),
        "feature_groups": groups.get("active"), "feature_groups_left_out": groups.get("left_out"),
        "numeric_features": params.get("numeric_features"), "categorical_features": params.get("categorical_features"),
        "constant_features": params.get("constant_features"),
        # the source columns the schema-drift check compares each night, with their training null share
        "source_columns": {c: v.get("null_share") for c, v in ((params.get("source_schema") or {}).get("columns")
                                                               or {}).items()} or None,
        "candidates": settings.candidates, "search_iterations": settings.search_iterations, "cv_folds": settings.cv_folds,
        "search_sample_rows": settings.search_sample_rows, "calibration": params.get("calibration"),
        "chosen_candidate": params.get("model"), "chosen_params": params.get("search_params"),
        "promotion_min_improvement": settings.promotion_min_improvement,
        "promotion_min_roc_auc": settings.promotion_min_roc_auc, "promotion_test": settings.promotion_test,
        "promotion_bootstrap_samples": settings.promotion_bootstrap_samples,
        "promotion_confidence": settings.promotion_confidence,
        "promotion_pr_auc_tolerance": settings.promotion_pr_auc_tolerance,
        "promotion_value_tolerance": settings.promotion_value_tolerance, "code_version": params.get("code_version"),
        **({"source": params["source_csv"]} if "source_csv" in params else {}),
    }


def source_schema(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """What a pipeline model records of its source, for the nightly's schema-drift check
    (:func:`pipeline.features.source_schema.training_record`): its feature groups and tables, and
    per optional source column its features read, the lake's rows and null share now, at training."""
    from pipeline.features.selection import column_null_counts
    from pipeline.features.source_schema import columns_needed, training_record

    features = list(params["numeric_features"]) + list(params["categorical_features"])
    groups = (params.get("feature_groups") or {}).get("active") or []
    columns = columns_needed(features)
    return training_record(features, groups, column_null_counts(settings, columns) if columns else {})


def _pip_requirements() -> list[str]:
    """What loading a version needs, pinned to the versions that trained it (MLflow would
    otherwise infer them in a subprocess, seconds per model)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("scikit-learn", "xgboost", "imbalanced-learn", "numpy", "pandas", "scipy", "cloudpickle"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return out


def _write_bundle(folder: Path, version: str, *, metrics: dict[str, Any], params: dict[str, Any],
                  reference: pd.DataFrame, importances: pd.Series, images: dict[str, str],
                  card_html: str | None, trials: Sequence[Trial], holdout: pd.DataFrame | None = None) -> None:
    """churnflow's files of a version (the run's ``churnflow/`` artifacts): metrics, params,
    the drift reference, importances, the holdout predictions (:func:`holdout_predictions`), the
    model card and its plots as PNG files."""
    import base64

    from pipeline.model.card import model_card_html

    write_text(json.dumps(metrics, indent=2, default=str), folder / "metrics.json")
    write_text(json.dumps(params, indent=2, default=str), folder / "params.json")
    write_parquet(reference.reset_index(drop=True), folder / "reference.parquet")
    write_parquet(importances.rename("importance").rename_axis("feature").reset_index(), folder / "importances.parquet")
    if holdout is not None:
        write_parquet(holdout, folder / registry.HOLDOUT_PREDICTIONS)
    if trials:
        write_text(json.dumps([{"candidate": t.candidate, "params": t.params, "cv_roc_auc": t.cv_roc_auc,
                                "cv_pr_auc": t.cv_pr_auc} for t in trials], indent=2, default=str),
                   folder / "candidates.json")
    for title, b64 in images.items():
        (folder / "plots").mkdir(exist_ok=True)
        (folder / "plots" / f"{title.lower().replace(' / ', '_').replace(' ', '_')}.png").write_bytes(base64.b64decode(b64))
    write_text(card_html or model_card_html(version, metrics, params, images), folder / "model_card.html")


def holdout_predictions(y_holdout: np.ndarray | None, p_holdout: np.ndarray | None,
                        ids: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The model's predictions on its holdout, as kept with the version (``holdout_predictions.parquet``:
    ``label`` int8, ``churn_probability`` float64 and, from ``ids`` (the holdout's ``customer_id`` and
    ``as_of``), ``customer_id`` and ``snapshot_date``): what the concept-drift detectors are seeded
    with (:func:`pipeline.monitoring.concept.holdout_errors`); None without them."""
    if y_holdout is None or p_holdout is None:
        return None
    frame = pd.DataFrame({"label": np.asarray(y_holdout).astype("int8"),
                          "churn_probability": np.asarray(p_holdout, dtype="float64")})
    if ids is not None and len(ids) == len(frame) and {"customer_id", "as_of"} <= set(ids.columns):
        frame.insert(0, "customer_id", ids["customer_id"].to_numpy())
        frame.insert(1, "snapshot_date", pd.to_datetime(ids["as_of"]).dt.date.to_numpy())
    return frame


def record_version(settings: Settings, model: Any, *, name: str, metrics: dict[str, Any], params: dict[str, Any],
                   reference: pd.DataFrame, importances: pd.Series, training_date: str,
                   y_holdout: np.ndarray | None = None, p_holdout: np.ndarray | None = None,
                   holdout_ids: pd.DataFrame | None = None, trials: Sequence[Trial] = (), best: Trial | None = None,
                   card_html: str | None = None,
                   extra_tags: dict[str, str] | None = None, gate: Verdict | None = None) -> Recorded:
    """One MLflow training run and the new registered version it produces.

    The run holds the parameters (data window, snapshots, label, features, candidates, search
    budget, code version), the holdout metrics, one child run per candidate draw with its CV
    scores, the gate's verdict, and as artifacts churnflow's bundle (``churnflow/``: metrics,
    params, reference, importances, model card, plots) and the MLflow model (sklearn flavor).
    The version is sealed (its checksums recorded) before this returns; nothing moves the
    champion here (:func:`register_and_gate` does)."""
    import tempfile

    import mlflow
    import mlflow.sklearn

    from pipeline.model import tracking
    from pipeline.model.card import plots

    images = plots(np.asarray(y_holdout), np.asarray(p_holdout), importances, metrics["calibration_curve"]) \
        if y_holdout is not None and p_holdout is not None and "calibration_curve" in metrics else {}
    tags = {tracking.TAG_KIND: "training", tracking.TAG_TRAINING_DATE: training_date,
            "mlflow.source.git.commit": str(params.get("code_version", "")), **(extra_tags or {})}
    if isinstance(params.get("validation"), dict):  # "time", or "stratified" for too few snapshots
        tags[tracking.TAG_VALIDATION] = str(params["validation"]["mode"])
    with tracking.active_run(settings, name, f"{name} {training_date}".strip(), tags) as run:
        run_id = run.info.run_id
        tracking.log_params(settings, run_id, _run_params(settings, params, metrics, training_date))
        tracking.log_metrics(settings, run_id, {
            **{f"holdout_{k}": v for k, v in metrics.items() if isinstance(v, float | int) and not isinstance(v, bool)},
            "cv_roc_auc": best.cv_roc_auc if best else None})
        for i, trial in enumerate(trials, 1):
            tracking.log_child_run(settings, run, f"{trial.candidate} #{i}",
                                   {"candidate": trial.candidate, **trial.params},
                                   {"cv_roc_auc": trial.cv_roc_auc, "cv_pr_auc": trial.cv_pr_auc})
        signature = None
        if len(reference):
            try:
                sample = reference[[c for c in params["numeric_features"] + params["categorical_features"]]].head(50)
                ints = sample.select_dtypes("integer").columns  # counts may be missing in a real feed: say float
                sample = sample.astype(dict.fromkeys(ints, "float64"))
                signature = mlflow.models.infer_signature(sample, model.predict_proba(sample))
            except Exception as exc:  # optional metadata: the model is logged without it
                log.info("train: no MLflow signature for this model (%s)", exc)
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)  # its pickle notice: checksums guard the file
        logged = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                          pip_requirements=_pip_requirements(), signature=signature)
        version_tags = {tracking.TAG_TRAINING_DATE: training_date, "churnflow.candidate": str(params.get("model")),
                        "churnflow.roc_auc": f"{metrics['roc_auc']:.6f}", "churnflow.pr_auc": f"{metrics['pr_auc']:.6f}",
                        "churnflow.threshold": f"{metrics.get('threshold', float('nan')):.6f}",
                        "churnflow.holdout": ",".join(map(str, metrics.get("holdout_snapshots", []))),
                        "churnflow.label": str((params.get("label") or {}).get("kind", "")),
                        **(extra_tags or {})}
        if gate is not None and gate.champion_roc_auc is not None:
            version_tags["churnflow.gate.champion_roc_auc"] = f"{gate.champion_roc_auc:.6f}"
        number = registry.create_version(settings, name=name, run_id=run_id, model_uri=logged.model_uri,
                                         model_id=logged.model_id,
                                         tags=version_tags, description=gate.decision if gate else "")
        version = registry.label(number)
        if gate is not None:  # the verdict, every metric of both models and the test, in metrics.json
            metrics["gate"] = gate.record(version)
        with tempfile.TemporaryDirectory(prefix="churnflow-bundle-") as tmp:
            _write_bundle(Path(tmp), version, metrics=metrics, params=params, reference=reference,
                          importances=importances, images=images, card_html=card_html, trials=trials,
                          holdout=holdout_predictions(y_holdout, p_holdout, holdout_ids))
            tracking.log_artifacts(settings, run_id, Path(tmp), model_cache.BUNDLE)
        mlflow.set_tag("churnflow.model_version", version)
        sealed = registry.seal_version(settings, name, number, run_id)
    return Recorded(version, name, sealed.path, run_id)


def register_and_gate(settings: Settings, trained: Trained, *, training_date: str, min_improvement: float = 0.0,
                      name: str | None = None) -> TrainResult:
    """Record the training run and register the model as a new version; then, for a pipeline
    model (``trained.holdout``: the holdout's feature rows), the gate: compared with the serving
    champion on the same holdout (:func:`judge`), it becomes the champion only if it clears
    the floor and the margin, and only if the champion is still the one it was compared with
    (else it is judged again against the new one). Otherwise it stays registered, visible and
    not served. The verdict is in the log, the MLflow run, the version's tags and metrics.json.
    A train-table model (no holdout frame) is registered under ``name`` and never served."""
    from pipeline.model import tracking

    metrics, holdout, y_holdout = trained.metrics, trained.holdout, trained.y_holdout
    verdict = judge(settings, metrics, holdout, y_holdout, min_improvement, trained.p_holdout) \
        if holdout is not None else None
    if verdict is not None:
        metrics["promotion_decision"] = verdict.decision
        metrics["champion_version"] = verdict.champion_version
        metrics["champion_roc_auc_same_holdout"] = verdict.champion_roc_auc
        metrics.update({f"champion_{k}_same_holdout": v for k, v in verdict.champion_guards.items()})
    result = record_version(settings, trained.model, name=name or settings.model_name, metrics=metrics,
                            params=trained.params, reference=trained.reference, importances=trained.importances,
                            training_date=training_date, y_holdout=y_holdout, p_holdout=trained.p_holdout,
                            holdout_ids=holdout[["customer_id", "as_of"]] if holdout is not None else None,
                            trials=trained.trials, best=trained.best, gate=verdict)
    if verdict is None:
        log.info("train: %s of %s registered (run %s): ROC-AUC %.4f PR-AUC %.4f; never served (not the pipeline's "
                 "features)", result.version, result.name, result.run_id[:8], metrics["roc_auc"], metrics["pr_auc"])
        return TrainResult(result.version, result.name, result.path, result.run_id, metrics, False, "registered only")
    served = False
    for _ in range(3):
        if not verdict.served:
            break
        if registry.promote(settings, result.number, f"training {training_date}: {verdict.decision}",
                            expected=verdict.champion) is not None:
            served = True
            break
        log.warning("train: the champion changed while %s was being registered: judging it again", result.version)
        verdict = judge(settings, metrics, holdout, y_holdout, min_improvement, trained.p_holdout)
    else:
        if verdict.served:
            verdict = dataclasses.replace(verdict, decision=f"not promoted: the champion kept changing while it was "
                                                            f"judged ({verdict.decision}); promote by hand after review")
    verdict = dataclasses.replace(verdict, served=served)
    registry.set_gate(settings, result.name, result.number, verdict.decision, served, verdict.champion_version)
    store = tracking.client(settings)
    store.set_tag(result.run_id, registry.TAG_GATE_DECISION, verdict.decision)
    store.set_tag(result.run_id, registry.TAG_GATE_SERVED, str(served).lower())
    store.set_tag(result.run_id, registry.TAG_GATE_CHAMPION, verdict.champion_version or "none")
    store.set_tag(result.run_id, TAG_GATE_TEST, str(verdict.evidence.get("test", settings.promotion_test)))
    if verdict.champion_roc_auc is not None:
        tracking.log_metrics(settings, result.run_id, {
            "champion_roc_auc_same_holdout": verdict.champion_roc_auc,
            "gate_delta_roc_auc": verdict.candidate_roc_auc - verdict.champion_roc_auc,
            **{f"champion_{k}_same_holdout": v for k, v in verdict.champion_guards.items()},
            **{f"gate_delta_{k}": metrics[k] - v for k, v in verdict.champion_guards.items()}})
    if verdict.bootstrap is not None:
        tracking.log_metrics(settings, result.run_id, {
            "gate_roc_auc_ci_low": verdict.bootstrap.ci_low,
            "gate_roc_auc_share_not_better": verdict.bootstrap.share_not_better,
            "gate_bootstrap_samples": verdict.bootstrap.samples, "gate_confidence": verdict.bootstrap.confidence})
    log.info("train: %s ROC-AUC %.4f PR-AUC %.4f ECE %.4f threshold %.3f (expected value %.0f; F1-optimal %.3f "
             "worth %.0f), MLflow run %s", result.version, metrics["roc_auc"], metrics["pr_auc"], metrics["ece"],
             metrics["threshold"], metrics["expected_value"], metrics["f1_optimal"]["threshold"],
             metrics["f1_optimal"]["expected_value"], result.run_id)
    log.info("train: %s; the champion is %s", verdict.sentence(result.version),
             result.version if served else (verdict.champion_version or "none"))
    return TrainResult(result.version, result.name, result.path, result.run_id, metrics, served, verdict.decision,
                       verdict.champion_version)
