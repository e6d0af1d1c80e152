"""A trained model becomes a registered version: its MLflow training run (parameters, holdout
metrics, one child run per candidate draw, the MLflow model and churnflow's bundle of files)
and a new, sealed version of the registered model. Nothing here decides what is served
(:mod:`pipeline.model.gate`)."""

from __future__ import annotations

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
from pipeline.model import registry
from pipeline.model.candidates import Trial

if TYPE_CHECKING:
    from pipeline.model.gate import Verdict

log = logging.getLogger(__name__)


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
        "train_rows": metrics.get("train_rows"), "holdout_rows": metrics.get("n"),
        "feature_groups": groups.get("active"), "feature_groups_left_out": groups.get("left_out"),
        "numeric_features": params.get("numeric_features"), "categorical_features": params.get("categorical_features"),
        "constant_features": params.get("constant_features"),
        "candidates": settings.candidates, "search_iterations": settings.search_iterations, "cv_folds": settings.cv_folds,
        "search_sample_rows": settings.search_sample_rows, "calibration": params.get("calibration"),
        "chosen_candidate": params.get("model"), "chosen_params": params.get("search_params"),
        "promotion_min_improvement": settings.promotion_min_improvement,
        "promotion_min_roc_auc": settings.promotion_min_roc_auc, "code_version": params.get("code_version"),
        **({"source": params["source_csv"]} if "source_csv" in params else {}),
    }


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
                  card_html: str | None, trials: Sequence[Trial]) -> None:
    """churnflow's files of a version (the run's ``churnflow/`` artifacts): metrics, params,
    the drift reference, importances, the model card and its plots as PNG files."""
    import base64

    from pipeline.model.card import model_card_html

    write_text(json.dumps(metrics, indent=2, default=str), folder / "metrics.json")
    write_text(json.dumps(params, indent=2, default=str), folder / "params.json")
    write_parquet(reference.reset_index(drop=True), folder / "reference.parquet")
    write_parquet(importances.rename("importance").rename_axis("feature").reset_index(), folder / "importances.parquet")
    if trials:
        write_text(json.dumps([{"candidate": t.candidate, "params": t.params, "cv_roc_auc": t.cv_roc_auc,
                                "cv_pr_auc": t.cv_pr_auc} for t in trials], indent=2, default=str),
                   folder / "candidates.json")
    for title, b64 in images.items():
        (folder / "plots").mkdir(exist_ok=True)
        (folder / "plots" / f"{title.lower().replace(' / ', '_').replace(' ', '_')}.png").write_bytes(base64.b64decode(b64))
    write_text(card_html or model_card_html(version, metrics, params, images), folder / "model_card.html")


def record_version(settings: Settings, model: Any, *, name: str, metrics: dict[str, Any], params: dict[str, Any],
                   reference: pd.DataFrame, importances: pd.Series, training_date: str,
                   y_holdout: np.ndarray | None = None, p_holdout: np.ndarray | None = None,
                   trials: Sequence[Trial] = (), best: Trial | None = None, card_html: str | None = None,
                   extra_tags: dict[str, str] | None = None, gate: Verdict | None = None) -> Recorded:
    """One MLflow training run and the new registered version it produces.

    The run holds the parameters (data window, snapshots, label, features, candidates, search
    budget, code version), the holdout metrics, one child run per candidate draw with its CV
    scores, the gate's verdict, and as artifacts churnflow's bundle (``churnflow/``: metrics,
    params, reference, importances, model card, plots) and the MLflow model (sklearn flavor).
    The version is sealed (its checksums recorded) before this returns; nothing moves the
    champion here (:func:`pipeline.model.gate.register_and_gate` does)."""
    import tempfile

    import mlflow
    import mlflow.sklearn

    from pipeline.model import tracking
    from pipeline.model.card import plots

    images = plots(np.asarray(y_holdout), np.asarray(p_holdout), importances, metrics["calibration_curve"]) \
        if y_holdout is not None and p_holdout is not None and "calibration_curve" in metrics else {}
    tags = {tracking.TAG_KIND: "training", tracking.TAG_TRAINING_DATE: training_date,
            "mlflow.source.git.commit": str(params.get("code_version", "")), **(extra_tags or {})}
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
        with tempfile.TemporaryDirectory(prefix="churnflow-bundle-") as tmp:
            _write_bundle(Path(tmp), version, metrics=metrics, params=params, reference=reference,
                          importances=importances, images=images, card_html=card_html, trials=trials)
            tracking.log_artifacts(settings, run_id, Path(tmp), registry.BUNDLE)
        mlflow.set_tag("churnflow.model_version", version)
        sealed = registry.seal_version(settings, name, number, run_id)
    return Recorded(version, name, sealed.path, run_id)
