"""Training: fit and calibrate the chosen candidate, evaluate it out of time, register it
with a model card, and gate its promotion (an absolute ROC-AUC floor and a margin over the
champion on the same holdout). The data set is :mod:`pipeline.dataset`, the candidates and
their search :mod:`pipeline.candidates`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import registry
from pipeline.artifacts import as_date, write_parquet, write_text
from pipeline.candidates import Trial, candidate_pipeline, fit, is_slow, rows_of, search, time_folds
from pipeline.config import REPO_ROOT, Settings
from pipeline.dataset import (
    ID_COLUMNS,
    LABEL,
    infer_columns,
    read_rows,
    read_table_file,
    read_training_set,
    stratified_sample,
    time_split,
)
from pipeline.errors import TrainingError
from pipeline.progress import duration

log = logging.getLogger(__name__)


def fit_calibrated(settings: Settings, best: Trial, X: pd.DataFrame, y: np.ndarray, fit_idx: np.ndarray,
                   cal_idx: np.ndarray, numeric: list[str], categorical: list[str]):
    """Fit the chosen candidate on ``fit_idx`` and calibrate its probabilities on ``cal_idx``.

    XGBoost uses the median early-stopping iteration found in the CV folds. The result is a
    ``CalibratedClassifierCV`` around the frozen pipeline: ``predict_proba`` on raw features.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    if settings.calibration not in ("isotonic", "sigmoid"):
        raise TrainingError(f"calibration must be 'isotonic' or 'sigmoid', got {settings.calibration!r}")
    if is_slow(best.candidate) and len(fit_idx) > settings.slow_fit_max_rows > 0:
        sub = stratified_sample(pd.DataFrame({"label": y[fit_idx]}), settings.slow_fit_max_rows, settings.random_seed)
        log.info("fit: %s is fitted on a stratified sample of %d of %d rows (slow_fit_max_rows: its cost grows "
                 "faster than the rows)", best.candidate, len(sub), len(fit_idx))
        fit_idx = fit_idx[sub]
    pipe = candidate_pipeline(settings, numeric, categorical, best.candidate, best.params, y[fit_idx])
    if best.best_iterations:
        pipe.set_params(model__n_estimators=max(10, int(np.median(best.best_iterations)) + 1))
    started = time.monotonic()
    fit(pipe, rows_of(X, fit_idx), y[fit_idx])
    log.info("fit: %s on %d rows in %s; calibrating (%s) on %d rows", best.candidate, len(fit_idx),
             duration(time.monotonic() - started), settings.calibration, len(cal_idx))
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipe), method=settings.calibration)
    calibrated.fit(rows_of(X, cal_idx), y[cal_idx])
    return calibrated


def feature_importances(model, X: pd.DataFrame, y: np.ndarray, seed: int) -> pd.Series:
    """Permutation importance (drop in ROC-AUC) of each raw input column, on ``X``."""
    from sklearn.inspection import permutation_importance

    n = min(len(X), 3000)
    idx = np.random.default_rng(seed).choice(len(X), n, replace=False) if n < len(X) else np.arange(n)
    result = permutation_importance(model, X.iloc[idx], y[idx], scoring="roc_auc", n_repeats=3,
                                    random_state=seed, n_jobs=1)
    return pd.Series(result.importances_mean, index=X.columns).sort_values(ascending=False)


def campaign_for(settings: Settings, scoring_runs: int = 1):
    from pipeline.evaluate import Campaign

    return Campaign(customer_value=settings.campaign_customer_value, save_rate=settings.campaign_save_rate,
                    contact_cost=settings.campaign_contact_cost,
                    capacity=settings.campaign_daily_capacity * scoring_runs)


def evaluate(y_true: np.ndarray, proba: np.ndarray, campaign=None) -> dict[str, Any]:
    """Every holdout metric (see :func:`pipeline.evaluate.full_report`)."""
    from pipeline.evaluate import Campaign, full_report

    if len(np.unique(np.asarray(y_true))) < 2:
        raise TrainingError("holdout has a single class; ROC-AUC is undefined (add snapshots or customers)")
    return full_report(y_true, proba, campaign or Campaign())


@dataclass(frozen=True)
class TrainResult:
    """A training run's outcome: the new (immutable) version and the gate's verdict on it."""

    version: str
    name: str
    path: Path
    run_id: str
    metrics: dict[str, Any]
    promoted: bool
    decision: str
    champion_version: str | None = None

    @property
    def number(self) -> int:
        return registry.parse_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_name": self.name,
            "path": str(self.path),
            "mlflow_run_id": self.run_id,
            "metrics": {k: v for k, v in self.metrics.items() if k != "calibration_curve"},
            "promoted": self.promoted,
            "decision": self.decision,
            "champion_version": self.champion_version,
        }


def _code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gate(candidate_auc: float, champion_auc: float | None, min_improvement: float,
         floor: float = 0.0) -> tuple[bool, str]:
    """TFX-style blessing: never below the absolute ROC-AUC ``floor``; above it, promote when
    there is no champion, or the candidate beats it on the same holdout by at least
    ``min_improvement`` ROC-AUC."""
    if candidate_auc < floor:
        return False, (f"not promoted: candidate ROC-AUC {candidate_auc:.4f} is below the floor {floor} "
                       "(promotion_min_roc_auc)")
    if champion_auc is None:
        return True, "no champion yet"
    if candidate_auc >= champion_auc + min_improvement:
        return True, f"candidate ROC-AUC {candidate_auc:.4f} >= champion {champion_auc:.4f} + {min_improvement}"
    return False, (
        f"not promoted: candidate ROC-AUC {candidate_auc:.4f} < champion {champion_auc:.4f} "
        f"+ margin {min_improvement} on the same holdout"
    )


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on a new model against the serving champion, on the same holdout."""

    served: bool
    decision: str
    candidate_roc_auc: float
    #: the champion compared with (its number; None: there was none)
    champion: int | None = None
    champion_roc_auc: float | None = None

    @property
    def champion_version(self) -> str | None:
        return registry.label(self.champion) if self.champion is not None else None

    def sentence(self, version: str) -> str:
        """``v5 served: ...`` / ``v5 not served: ...``, with the difference to the champion."""
        if self.champion_roc_auc is not None:
            delta = self.candidate_roc_auc - self.champion_roc_auc
            compared = (f"ROC-AUC {self.candidate_roc_auc:.4f} vs champion {self.champion_version} "
                        f"{self.champion_roc_auc:.4f} on the same holdout ({delta:+.4f})")
        else:
            compared = f"ROC-AUC {self.candidate_roc_auc:.4f}, no champion to compare with"
        return f"{version} {'served' if self.served else 'not served'}: {compared}; {self.decision}"


def judge(settings: Settings, candidate_auc: float, holdout: pd.DataFrame, y_holdout: np.ndarray,
          min_improvement: float) -> Verdict:
    """Compare a new model's out-of-time ROC-AUC with the serving champion's on the same
    ``holdout`` rows (floor and margin: :func:`gate`). A champion that cannot be scored on this
    holdout (its columns are not all there) is never replaced automatically."""
    number = registry.champion_number(settings)
    if number is None:
        return Verdict(*gate(candidate_auc, None, min_improvement, settings.promotion_min_roc_auc), candidate_auc)
    champ = registry.get_version(settings, number)
    missing = [c for c in champ.feature_columns if c not in holdout.columns]
    if missing:
        return Verdict(False, f"not promoted: the champion {champ.version} cannot be scored on this holdout (it "
                              f"uses {', '.join(missing[:5])}, which this training set lacks); promote by hand "
                              "after review (python -m pipeline models promote VERSION)", candidate_auc, number)
    champion_auc = float(evaluate(y_holdout, champ.load().predict_proba(holdout[champ.feature_columns])[:, 1])["roc_auc"])
    served, decision = gate(candidate_auc, champion_auc, min_improvement, settings.promotion_min_roc_auc)
    return Verdict(served, decision, candidate_auc, number, champion_auc)


def select_and_fit(settings: Settings, X: pd.DataFrame, y: np.ndarray, folds, fit_idx, cal_idx,
                   numeric: list[str], categorical: list[str], search_rows: np.ndarray | None = None):
    """Search the candidates on ``folds``, then fit and calibrate the best one on ``fit_idx``
    / ``cal_idx`` of all rows. With ``search_rows`` the search sees only those rows of ``X``
    (``folds`` index into them)."""
    if search_rows is not None and len(search_rows) < len(X):
        Xs, ys = X.iloc[search_rows].reset_index(drop=True), y[search_rows]
    else:
        Xs, ys = X, y
    trials = search(settings, Xs, ys, folds, numeric, categorical)
    best = max(trials, key=lambda t: t.cv_roc_auc)
    log.info("best candidate: %s %s (CV ROC-AUC %.4f)", best.candidate, best.params, best.cv_roc_auc)
    return fit_calibrated(settings, best, X, y, fit_idx, cal_idx, numeric, categorical), best, trials


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

    from pipeline.model_card import model_card_html

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
                   extra_tags: dict[str, str] | None = None, gate: Verdict | None = None) -> TrainResult:
    """One MLflow training run and the new registered version it produces.

    The run holds the parameters (data window, snapshots, label, features, candidates, search
    budget, code version), the holdout metrics, one child run per candidate draw with its CV
    scores, the gate's verdict, and as artifacts churnflow's bundle (``churnflow/``: metrics,
    params, reference, importances, model card, plots) and the MLflow model (sklearn flavor).
    The version is sealed (its checksums recorded) before this returns; nothing moves the
    champion here (see :func:`register`)."""
    import tempfile

    import mlflow
    import mlflow.sklearn

    from pipeline import tracking
    from pipeline.model_card import plots

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
    return TrainResult(version, name, sealed.path, run_id, metrics, False, gate.decision if gate else "registered only")


def register(settings: Settings, model, *, metrics: dict[str, Any], params: dict[str, Any],
             reference: pd.DataFrame, importances: pd.Series, y_holdout: np.ndarray, p_holdout: np.ndarray,
             trials: list[Trial], best: Trial, holdout: pd.DataFrame | None = None,
             min_improvement: float = 0.0, training_date: str = "", name: str | None = None) -> TrainResult:
    """Record the training run and register the model as a new version; then, for a pipeline
    model (``holdout``: the holdout's feature rows), the gate: compared with the serving
    champion on the same holdout (:func:`judge`), it becomes the champion only if it clears
    the floor and the margin, and only if the champion is still the one it was compared with
    (else it is judged again against the new one). Otherwise it stays registered, visible and
    not served. The verdict is in the log, the MLflow run, the version's tags and metrics.json."""
    from pipeline import tracking

    verdict = judge(settings, metrics["roc_auc"], holdout, y_holdout, min_improvement) if holdout is not None else None
    if verdict is not None:
        metrics["promotion_decision"] = verdict.decision
        metrics["champion_version"] = verdict.champion_version
        metrics["champion_roc_auc_same_holdout"] = verdict.champion_roc_auc
    result = record_version(settings, model, name=name or settings.model_name, metrics=metrics, params=params,
                            reference=reference, importances=importances, training_date=training_date,
                            y_holdout=y_holdout, p_holdout=p_holdout, trials=trials, best=best, gate=verdict)
    if verdict is None:
        log.info("train: %s of %s registered (run %s): ROC-AUC %.4f PR-AUC %.4f; never served (not the pipeline's "
                 "features)", result.version, result.name, result.run_id[:8], metrics["roc_auc"], metrics["pr_auc"])
        return result
    served = False
    for _ in range(3):
        if not verdict.served:
            break
        if registry.promote(settings, result.number, f"training {training_date}: {verdict.decision}",
                            expected=verdict.champion) is not None:
            served = True
            break
        log.warning("train: the champion changed while %s was being registered: judging it again", result.version)
        verdict = judge(settings, metrics["roc_auc"], holdout, y_holdout, min_improvement)
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
    if verdict.champion_roc_auc is not None:
        tracking.log_metrics(settings, result.run_id, {
            "champion_roc_auc_same_holdout": verdict.champion_roc_auc,
            "gate_delta_roc_auc": verdict.candidate_roc_auc - verdict.champion_roc_auc})
    log.info("train: %s ROC-AUC %.4f PR-AUC %.4f ECE %.4f threshold %.3f (expected value %.0f; F1-optimal %.3f "
             "worth %.0f), MLflow run %s", result.version, metrics["roc_auc"], metrics["pr_auc"], metrics["ece"],
             metrics["threshold"], metrics["expected_value"], metrics["f1_optimal"]["threshold"],
             metrics["f1_optimal"]["expected_value"], result.run_id)
    log.info("train: %s; the champion is %s", verdict.sentence(result.version),
             result.version if served else (verdict.champion_version or "none"))
    return TrainResult(result.version, result.name, result.path, result.run_id, metrics, served, verdict.decision,
                       verdict.champion_version)


def _require_two_classes(folds: list[tuple[np.ndarray, np.ndarray]], as_of: pd.Series, y: np.ndarray,
                         what: str) -> None:
    """Each side of each fold must hold churners and non-churners (else a TrainingError naming
    the dates, the counts and the settings to change, not a scikit-learn traceback)."""
    for train_idx, valid_idx in folds:
        for side, idx in (("training", train_idx), ("validation", valid_idx)):
            positives = int(y[idx].sum())
            if positives in (0, len(idx)):
                days = sorted({str(d)[:10] for d in pd.to_datetime(as_of.iloc[idx]).unique()})
                raise TrainingError(
                    f"the {what} validating {sorted({str(d)[:10] for d in pd.to_datetime(as_of.iloc[valid_idx]).unique()})}"
                    f" has one class on its {side} side: {len(idx)} rows of snapshot(s) {days}, {positives} churners; "
                    "use more snapshots (training_snapshots) or history, fewer folds (cv_folds), or a longer label "
                    "window (horizon_days / inactivity_days)")


def _base_params(best: Trial, numeric: list[str], categorical: list[str], settings: Settings) -> dict[str, Any]:
    return {
        "model": best.candidate,
        "search_params": best.params,
        "cv_roc_auc": best.cv_roc_auc,
        "calibration": settings.calibration,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "code_version": _code_version(),
        "python": platform.python_version(),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def constant_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The ``columns`` holding a single value (missing counts as one) on every row of ``df``:
    they carry no information (e.g. failed payments in a business without any), so no model
    gets them and no drift test runs on them."""
    return [c for c in columns if df[c].nunique(dropna=False) <= 1]


def train(settings: Settings, training_set: Path, *, min_improvement: float = 0.0,
          training_date: str | dt.date = "") -> TrainResult:
    """Search candidates with time-based CV, fit + calibrate the best, evaluate on the latest
    snapshots (out of time), register a new version (see :func:`register`), and gate promotion."""
    from pipeline.features import active_groups, model_features

    groups, left_out = active_groups(settings)
    numeric, categorical = model_features(settings, groups)
    for group, why in left_out.items():
        log.info("train: feature group %s left out: %s", group, why)
    df = read_training_set(training_set, numeric, categorical)
    window = settings.label_window_days
    train_df, holdout = time_split(df, settings.holdout_snapshots, window)
    del df
    constant = constant_columns(train_df, numeric + categorical)
    if constant:
        log.info("train: left out %d column(s) with one value on every training row: %s", len(constant),
                 ", ".join(constant))
    numeric = [c for c in numeric if c not in constant]
    categorical = [c for c in categorical if c not in constant]
    features = numeric + categorical
    log.info("train: %d rows (%s .. %s), holdout %d rows (%s)", len(train_df),
             train_df["as_of"].min(), train_df["as_of"].max(), len(holdout), holdout["as_of"].max())
    n_ref = min(settings.reference_sample_rows, len(train_df))
    picked = train_df.sample(n=n_ref, random_state=settings.random_seed) if n_ref < len(train_df) else train_df
    # the drift reference in the file's own types (a fee of 9.99 stays 9.99, not float32's 9.9899998)
    reference = read_rows(training_set, np.sort(picked.index.to_numpy()), ID_COLUMNS + features)
    del picked
    train_df = train_df.reset_index(drop=True)
    as_of, y = train_df["as_of"], train_df[LABEL].to_numpy()
    train_snapshots = sorted(pd.to_datetime(as_of).dt.date.astype(str).unique().tolist())
    X = train_df[features]
    del train_df
    # the search and its CV run on a sample stratified by snapshot and label; the final fit uses every row
    sample = stratified_sample(pd.DataFrame({"as_of": as_of, LABEL: y}), settings.search_sample_rows,
                               settings.random_seed)
    if len(sample) < len(X):
        log.info("train: search and CV on a stratified sample of %d of %d rows (search_sample_rows), "
                 "final fit on all of them", len(sample), len(X))
    folds = time_folds(as_of.iloc[sample], settings.cv_folds, window)
    fit_idx, cal_idx = time_folds(as_of, 1, window)[-1]  # calibrate on the latest training-side snapshot
    _require_two_classes(folds, as_of.iloc[sample].reset_index(drop=True), y[sample], "time-CV fold")
    _require_two_classes([(fit_idx, cal_idx)], as_of, y, "calibration split")
    model, best, trials = select_and_fit(settings, X, y, folds, fit_idx, cal_idx, numeric, categorical,
                                         search_rows=sample)

    y_hold = holdout[LABEL].to_numpy()
    proba = model.predict_proba(holdout[features])[:, 1]
    holdout_dates = sorted(pd.to_datetime(holdout["as_of"]).dt.date.astype(str).unique().tolist())
    metrics = evaluate(y_hold, proba, campaign_for(settings, len(holdout_dates)))
    metrics.update(model=best.candidate, train_rows=len(X), train_snapshots=train_snapshots,
                   holdout_snapshots=holdout_dates)
    from pipeline.labels import label_spec

    params = {**_base_params(best, numeric, categorical, settings), "horizon_days": settings.horizon_days,
              "label": label_spec(settings),
              "feature_groups": {"active": groups, "left_out": left_out},
              "constant_features": constant,
              "training_set": str(training_set),
              "training_window": {"first_snapshot": metrics["train_snapshots"][0],
                                  "last_snapshot": metrics["train_snapshots"][-1],
                                  "holdout": holdout_dates}}
    importances = feature_importances(model, holdout[features], y_hold, settings.random_seed)
    return register(settings, model, metrics=metrics, params=params, reference=reference,
                    importances=importances, y_holdout=y_hold, p_holdout=proba, trials=trials, best=best,
                    holdout=holdout, min_improvement=min_improvement,
                    training_date=str(training_date or holdout_dates[-1]))


def train_table(settings: Settings, csv: Path, label: str, *, id_column: str | None = None,
                drop: Sequence[str] = (), test_size: float = 0.25) -> TrainResult:
    """Train on any labelled customer table: infer columns, search the candidates with
    stratified CV, calibrate, evaluate on a stratified, seeded held-out split and register
    the model (with its model card) without making it the champion."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    csv = Path(csv)
    df = read_table_file(csv)
    missing = [c for c in [label, id_column, *drop] if c and c not in df.columns]
    if missing:
        raise TrainingError(f"{csv} has no column(s) {missing}; its columns are {list(df.columns)}")
    values = set(df[label].dropna().unique().tolist())
    if not values <= {0, 1}:
        raise TrainingError(f"label {label!r} must be 0/1 (or true/false), got values {sorted(map(str, values))[:10]}")
    df = df.dropna(subset=[label]).reset_index(drop=True)
    y_all = df[label].astype(int).to_numpy()
    if len(np.unique(y_all)) < 2:
        raise TrainingError(f"label {label!r} has a single class; nothing to learn")
    if id_column:
        repeated = int(df[id_column].duplicated(keep=False).sum())
        if repeated:
            log.warning("train-table: %d rows of %s share their %s with another row (%d distinct ids repeat): a "
                        "customer may sit on both sides of the held-out split", repeated, csv, id_column,
                        df.loc[df[id_column].duplicated(keep=False), id_column].nunique())
    X_all = df.drop(columns=[c for c in [label, id_column, *drop] if c])
    numeric, categorical, dropped = infer_columns(X_all)
    if dropped:
        log.warning("train-table: left out text-like columns with mostly unique values: %s", dropped)
    features = numeric + categorical
    if not features:
        raise TrainingError(f"{csv} has no feature columns besides the label and id")
    X_all = X_all[features]
    tr, te = train_test_split(np.arange(len(df)), test_size=test_size, stratify=y_all,
                              random_state=settings.random_seed)
    X, y = X_all.iloc[tr].reset_index(drop=True), y_all[tr]
    skf = StratifiedKFold(n_splits=max(2, settings.cv_folds + 1), shuffle=True, random_state=settings.random_seed)
    folds = list(skf.split(X, y))
    fit_idx, cal_idx = folds[-1]
    model, best, trials = select_and_fit(settings, X, y, folds, fit_idx, cal_idx, numeric, categorical)
    X_te, y_te = X_all.iloc[te], y_all[te]
    proba = model.predict_proba(X_te)[:, 1]
    metrics = evaluate(y_te, proba, campaign_for(settings))
    metrics.update(model=best.candidate, train_rows=len(tr), source=str(csv))
    params = {**_base_params(best, numeric, categorical, settings), "source_csv": str(csv.resolve()),
              "label": {"kind": "column", "column": label, "definition": f"column {label} = 1"},
              "id_column": id_column, "dropped_columns": [*drop, *dropped],
              "training_window": {"rows": len(tr), "held_out_rows": len(te), "split": "stratified, seeded"}}
    n_ref = min(settings.reference_sample_rows, len(X))
    importances = feature_importances(model, X_te, y_te, settings.random_seed)
    return register(settings, model, metrics=metrics, params=params,
                    reference=X.sample(n=n_ref, random_state=settings.random_seed), importances=importances,
                    y_holdout=y_te, p_holdout=proba, trials=trials, best=best,
                    training_date=dt.datetime.now(dt.UTC).date().isoformat(), name=registry.table_model_name(settings))


def snapshot_plan(settings: Settings, data_start: dt.date, data_end: dt.date) -> list[dt.date]:
    """The snapshot dates a training run on ``data_end`` uses."""
    from pipeline.labels import training_snapshot_dates

    return training_snapshot_dates(
        as_date(data_start), as_date(data_end), settings.training_snapshots, settings.label_window_days
    )
