"""Training: point-in-time training sets, an XGBoost pipeline, out-of-time evaluation,
and registration with a champion gate.

The scikit-learn pipeline holds the preprocessing (imputation, one-hot encoding), so it
is fitted on training rows only and scoring applies exactly the same transform.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import registry
from pipeline.artifacts import as_date, write_parquet, write_text
from pipeline.config import REPO_ROOT, Settings

log = logging.getLogger(__name__)

ID_COLUMNS = ["customer_id", "as_of"]
LABEL = "label"


class TrainingError(RuntimeError):
    pass


# --------------------------------------------------------------------------- data
def build_training_set(
    settings: Settings, snapshot_dates: Sequence[dt.date], data_end: dt.date, out_path: Path
) -> Path:
    """Features and labels for every (customer, snapshot) into one Parquet file."""
    from pipeline.features import build_features
    from pipeline.labels import build_labels

    feats = build_features(settings, snapshot_dates)
    labels = build_labels(settings, snapshot_dates, horizon_days=settings.horizon_days, data_end=data_end)
    df = feats.merge(labels, on=ID_COLUMNS, how="inner", validate="one_to_one")
    if len(df) != len(feats) or len(df) != len(labels):
        raise TrainingError(
            f"features ({len(feats)} rows) and labels ({len(labels)} rows) cover different "
            f"populations; joined {len(df)}"
        )
    if df.empty:
        raise TrainingError(f"training set is empty for snapshots {list(snapshot_dates)}")
    log.info("training set: %d rows, %d snapshots, positive rate %.4f", len(df), len(snapshot_dates), df[LABEL].mean())
    return write_parquet(df, out_path)


def time_split(df: pd.DataFrame, holdout_snapshots: int, horizon_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by snapshot date: the latest ``holdout_snapshots`` dates are the holdout.

    Training snapshots whose label window ``[as_of, as_of + horizon)`` reaches past the
    first holdout date are purged: their labels were observed during the holdout period,
    which a model trained at that date could not have known.
    """
    dates = sorted(pd.to_datetime(df["as_of"]).unique())
    if len(dates) <= holdout_snapshots:
        raise TrainingError(
            f"need more than {holdout_snapshots} snapshot dates for an out-of-time holdout, got {len(dates)}"
        )
    holdout_start = dates[-holdout_snapshots]
    as_of = pd.to_datetime(df["as_of"])
    holdout = df[as_of >= holdout_start]
    train = df[as_of + pd.Timedelta(days=horizon_days) <= holdout_start]
    if train.empty:
        raise TrainingError(
            f"no training snapshot ends its {horizon_days}-day label window before the holdout "
            f"starting {holdout_start.date()}: add snapshots"
        )
    return train, holdout


# -------------------------------------------------------------------------- model
def build_pipeline(settings: Settings, numeric: list[str], categorical: list[str]):
    """Preprocessing + XGBoost classifier as one scikit-learn pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from xgboost import XGBClassifier

    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    model = XGBClassifier(
        n_estimators=settings.xgb_n_estimators,
        max_depth=settings.xgb_max_depth,
        learning_rate=settings.xgb_learning_rate,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=5,
        tree_method="hist",
        eval_metric="aucpr",
        n_jobs=settings.n_jobs,
        random_state=settings.random_seed,
    )
    return Pipeline([("prep", prep), ("model", model)])


def evaluate(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        raise TrainingError("holdout has a single class; ROC-AUC is undefined (add snapshots or customers)")
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "brier": float(brier_score_loss(y_true, proba)),
        "base_rate": float(np.mean(y_true)),
        "n": int(len(y_true)),
        "n_positive": int(np.sum(y_true)),
    }


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, Any]
    promoted: bool
    decision: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": str(self.path),
            "metrics": self.metrics,
            "promoted": self.promoted,
            "decision": self.decision,
        }


def _code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gate(candidate_auc: float, champion_auc: float | None, min_improvement: float) -> tuple[bool, str]:
    """TFX-style blessing: promote when there is no champion, or the candidate beats it
    on the same holdout by at least ``min_improvement`` ROC-AUC."""
    if champion_auc is None:
        return True, "no champion yet"
    if candidate_auc >= champion_auc + min_improvement:
        return True, f"candidate ROC-AUC {candidate_auc:.4f} >= champion {champion_auc:.4f} + {min_improvement}"
    return False, (
        f"not promoted: candidate ROC-AUC {candidate_auc:.4f} < champion {champion_auc:.4f} "
        f"+ margin {min_improvement} on the same holdout"
    )


def train(settings: Settings, training_set: Path, *, min_improvement: float = 0.0) -> TrainResult:
    """Fit on the earlier snapshots, evaluate on the latest, register, and gate promotion."""
    from pipeline.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    import joblib

    df = pd.read_parquet(training_set)
    train_df, holdout = time_split(df, settings.holdout_snapshots, settings.horizon_days)
    features = NUMERIC_FEATURES + CATEGORICAL_FEATURES
    log.info("train: %d rows (%s .. %s), holdout %d rows (%s)", len(train_df),
             train_df["as_of"].min(), train_df["as_of"].max(), len(holdout), holdout["as_of"].max())

    pipe = build_pipeline(settings, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    pipe.fit(train_df[features], train_df[LABEL].to_numpy())
    proba = pipe.predict_proba(holdout[features])[:, 1]
    metrics = evaluate(holdout[LABEL].to_numpy(), proba)
    metrics.update(
        train_rows=len(train_df),
        train_snapshots=sorted(pd.to_datetime(train_df["as_of"]).dt.date.astype(str).unique().tolist()),
        holdout_snapshots=sorted(pd.to_datetime(holdout["as_of"]).dt.date.astype(str).unique().tolist()),
    )

    champ = registry.champion(settings)
    champion_auc = None
    if champ is not None:
        champ_proba = champ.load().predict_proba(holdout[features])[:, 1]
        champion_auc = evaluate(holdout[LABEL].to_numpy(), champ_proba)["roc_auc"]
        metrics["champion_version"] = champ.version
        metrics["champion_roc_auc_same_holdout"] = champion_auc

    version = registry.new_version_id()
    stage = registry.staging_dir(settings, version)
    joblib.dump(pipe, stage / "model.joblib")
    write_text(json.dumps(metrics, indent=2), stage / "metrics.json")
    params = {
        "model": "xgboost",
        "xgboost": pipe.named_steps["model"].get_params(),
        "numeric_features": NUMERIC_FEATURES,
        "categorical_features": CATEGORICAL_FEATURES,
        "horizon_days": settings.horizon_days,
        "training_set": str(training_set),
        "code_version": _code_version(),
        "python": platform.python_version(),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    write_text(json.dumps(params, indent=2, default=str), stage / "params.json")
    n_ref = min(settings.reference_sample_rows, len(train_df))
    reference = train_df.sample(n=n_ref, random_state=settings.random_seed) if n_ref < len(train_df) else train_df
    write_parquet(reference[ID_COLUMNS + features].reset_index(drop=True), stage / "reference.parquet")
    write_text(_model_card(version, metrics, params), stage / "model_card.md")
    mv = registry.publish(settings, version)

    promoted, decision = gate(metrics["roc_auc"], champion_auc, min_improvement)
    if promoted:
        registry.promote(settings, version, decision)
    log.info("train: %s ROC-AUC %.4f PR-AUC %.4f -> %s", version, metrics["roc_auc"], metrics["pr_auc"], decision)
    return TrainResult(version, mv.path, metrics, promoted, decision)


def _model_card(version: str, metrics: dict[str, Any], params: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"# Model card: {version}",
            "",
            "Predicts the probability that an active customer cancels within the next "
            f"{params['horizon_days']} days.",
            "",
            "| metric (out-of-time holdout) | value |",
            "|---|---|",
            *[f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, float)],
            f"| rows | {metrics['n']} |",
            "",
            f"Training snapshots: {', '.join(metrics['train_snapshots'])}  ",
            f"Holdout snapshots: {', '.join(metrics['holdout_snapshots'])}  ",
            f"Code version: {params['code_version']}",
        ]
    )


def snapshot_plan(settings: Settings, data_start: dt.date, data_end: dt.date) -> list[dt.date]:
    """The snapshot dates a training run on ``data_end`` uses."""
    from pipeline.labels import training_snapshot_dates

    return training_snapshot_dates(
        as_date(data_start), as_date(data_end), settings.training_snapshots, settings.horizon_days
    )
