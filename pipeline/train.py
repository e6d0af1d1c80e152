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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import registry
from pipeline.artifacts import as_date, write_parquet, write_text
from pipeline.config import REPO_ROOT, Settings
from pipeline.errors import DataError
from pipeline.progress import duration

log = logging.getLogger(__name__)

ID_COLUMNS = ["customer_id", "as_of"]
LABEL = "label"


class TrainingError(DataError):
    """The data cannot train a model (one class, too few snapshots or rows) or the setup is wrong."""


# --------------------------------------------------------------------------- data
def build_training_set(
    settings: Settings, snapshot_dates: Sequence[dt.date], data_end: dt.date, out_path: Path
) -> Path:
    """Features and labels for every (customer, snapshot) into one Parquet file, one
    snapshot at a time (memory is bounded by a snapshot's population, not by their number)."""
    from pipeline.artifacts import ParquetAppender
    from pipeline.features import build_features
    from pipeline.labels import build_labels
    from pipeline.progress import Progress

    dates = [str(as_date(d)) for d in snapshot_dates]
    rows = positives = 0
    progress = Progress("training set", len(dates), "snapshots", every_s=0)
    with ParquetAppender(out_path, keep_empty=True) as out:
        for k, snapshot in enumerate(sorted(as_date(d) for d in snapshot_dates), 1):
            feats = build_features(settings, [snapshot])
            labels = build_labels(settings, [snapshot], horizon_days=settings.horizon_days, data_end=data_end)
            df = feats.merge(labels, on=ID_COLUMNS, how="inner", validate="one_to_one")
            if len(df) != len(feats) or len(df) != len(labels):
                raise TrainingError(
                    f"features ({len(feats)} rows) and labels ({len(labels)} rows) of snapshot {snapshot} cover "
                    f"different populations; joined {len(df)}"
                )
            out.write(df)
            rows += len(df)
            positives += int(df[LABEL].sum())
            del feats, labels, df
            progress.update(k, f"{rows:,} rows")
        if rows == 0:
            raise TrainingError(f"training set is empty for snapshots {dates}: no customer was active at them")
        if positives in (0, rows):
            raise TrainingError(
                f"training set for snapshots {dates} (labels up to {data_end}) has one class: {rows} rows, "
                f"{positives} churners within {settings.horizon_days} days. Does the source hold "
                "cancellations up to the run's date? Otherwise choose a later date, more snapshots "
                "(training_snapshots) or a longer horizon (horizon_days)")
    log.info("training set: %d rows, %d snapshots, positive rate %.4f", rows, len(dates), positives / rows)
    return Path(out_path)


def read_training_set(path: Path, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """The training set with its numeric features as float32 and its categorical ones as
    pandas categoricals: at a million customers x 6 snapshots ~0.6 GB instead of ~2.1 GB of
    int64/float64 and Python strings. float32 is what the tree models compute in anyway
    (XGBoost and scikit-learn's trees cast to it); the drift reference is read back in the
    file's own types (:func:`read_rows`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, read_dictionary=list(categorical))
    wanted = set(numeric)
    for i, field in enumerate(table.schema):
        if field.name in wanted and field.type != pa.float32() and (
                pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
            table = table.set_column(i, pa.field(field.name, pa.float32()), table.column(i).cast(pa.float32()))
    return table.to_pandas()


def read_rows(path: Path, positions: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The rows at ``positions`` (ascending) of a Parquet file, in its own types, one batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts, offset = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=500_000, columns=columns):
        lo, hi = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if hi > lo:
            parts.append(pa.Table.from_batches([batch]).take(pa.array(positions[lo:hi] - offset)))
        offset += batch.num_rows
    return pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=columns)


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
#: not a pipeline parameter: XGBoost's ``scale_pos_weight`` is (negatives / positives) ** this
POS_WEIGHT_POWER = "pos_weight_power"
_XGB_TREES: dict[str, list[Any]] = {"model__max_depth": [3, 2, 4, 6], "model__learning_rate": [0.03, 0.05, 0.1],
              "model__min_child_weight": [5, 1, 10], "model__subsample": [0.8, 0.7, 1.0]}
#: randomized-search spaces per candidate family (step names of the pipelines below); the
#: first value of each list is the default draw. Shallow, slowly learning trees first: churn
#: risk is close to additive in log-odds and positives are few, so deeper trees overfit
#: (measured on generated 8k x 10 data: depth 4 at 0.05 ended 0.007 ROC-AUC lower than depth 3
#: at 0.03). Fully balanced class weights cost ranking quality there too (0.005), hence the
#: square-root default; the calibration step restores the probabilities either way.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "logreg": {"model__C": [1.0, 0.01, 0.1, 10.0]},
    "random_forest": {"model__min_samples_leaf": [20, 5, 50], "model__max_depth": [None, 8, 12],
                      "model__max_features": ["sqrt", 0.5]},
    "xgboost": {**_XGB_TREES, POS_WEIGHT_POWER: [0.5, 1.0, 0.0]},
    "xgboost_smote": {**_XGB_TREES, "smote__k_neighbors": [5, 10]},
}
SEARCH_SPACES["logreg_smote"] = {**SEARCH_SPACES["logreg"], "smote__k_neighbors": [5, 10]}
EARLY_STOPPING_ROUNDS = 30


def search_space(settings: Settings, name: str) -> dict[str, list[Any]]:
    """The search space of candidate ``name``, whose default (first) draw uses the configured
    ``xgb_max_depth`` and ``xgb_learning_rate`` for the XGBoost families."""
    space = SEARCH_SPACES.get(name)
    if space is None:
        raise TrainingError(f"unknown candidate {name!r} in settings.candidates: choose from {', '.join(SEARCH_SPACES)}")
    if name.removesuffix("_smote") != "xgboost":
        return space
    configured = {"model__max_depth": settings.xgb_max_depth, "model__learning_rate": settings.xgb_learning_rate}
    return {k: [configured[k], *(v for v in values if v != configured[k])] if k in configured else values
            for k, values in space.items()}


def _preprocessor(numeric: list[str], categorical: list[str], *, scale: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = Pipeline([("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else []))
    cat = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32))])
    return ColumnTransformer([("num", num, numeric), ("cat", cat, categorical)], verbose_feature_names_out=False)


def build_pipeline(settings: Settings, numeric: list[str], categorical: list[str], name: str = "xgboost",
                   pos_weight: float = 1.0):
    """Preprocessing + one candidate classifier as one pipeline.

    ``*_smote`` candidates are imbalanced-learn pipelines: SMOTE runs inside ``fit`` only,
    so it resamples training folds and never touches validation or holdout rows.
    """
    from sklearn.pipeline import Pipeline

    family = name.removesuffix("_smote")
    if family == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(class_weight=None if name.endswith("_smote") else "balanced", max_iter=2000)
    elif family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=200, min_samples_leaf=20, class_weight="balanced_subsample",
                                       n_jobs=settings.n_jobs, random_state=settings.random_seed)
    elif family == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(
            n_estimators=settings.xgb_n_estimators, max_depth=settings.xgb_max_depth,
            learning_rate=settings.xgb_learning_rate, subsample=0.8, colsample_bytree=0.8, min_child_weight=5,
            scale_pos_weight=1.0 if name.endswith("_smote") else pos_weight, tree_method="hist",
            eval_metric="aucpr", n_jobs=settings.n_jobs, random_state=settings.random_seed,
        )
    else:
        raise TrainingError(f"unknown candidate {name!r}: choose from {', '.join(SEARCH_SPACES)}")
    prep = _preprocessor(numeric, categorical, scale=family == "logreg")
    if name.endswith("_smote"):
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import Pipeline as ImbPipeline

        return ImbPipeline([("prep", prep), ("smote", SMOTE(random_state=settings.random_seed)), ("model", model)])
    return Pipeline([("prep", prep), ("model", model)])


def rows_of(X: pd.DataFrame, idx: np.ndarray) -> pd.DataFrame:
    """``X.iloc[idx]``, as a slice (no copy) when ``idx`` is one ascending run, as the time
    folds of a training set sorted by snapshot are."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and bool(np.all(np.diff(idx) == 1)):
        return X.iloc[int(idx[0]):int(idx[-1]) + 1]
    return X.iloc[idx]


def _fit(pipe, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None = None) -> int | None:
    """Fit ``pipe``; an XGBoost model with an ``eval_set`` stops early on it. Returns the best iteration."""
    from sklearn.base import clone

    model = pipe.named_steps["model"]
    if eval_set is None or type(model).__name__ != "XGBClassifier":
        pipe.fit(X, y)
        return None
    prep = clone(pipe.named_steps["prep"]).fit(X, y)  # the same deterministic fit the pipeline repeats
    pipe.set_params(model__early_stopping_rounds=EARLY_STOPPING_ROUNDS)
    pipe.fit(X, y, model__eval_set=[(prep.transform(eval_set[0]), eval_set[1])], model__verbose=False)
    pipe.set_params(model__early_stopping_rounds=None)
    return int(pipe.named_steps["model"].best_iteration)


def time_folds(as_of: pd.Series, n_folds: int, horizon_days: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over snapshot dates, never shuffled: each of the latest
    ``n_folds`` dates validates a model trained on the earlier dates whose label window
    closed before it (the purge rule of :func:`time_split`)."""
    as_of = pd.to_datetime(pd.Series(as_of)).reset_index(drop=True)
    dates = sorted(as_of.unique())
    folds = []
    for date in dates[-n_folds:]:
        train_idx = np.flatnonzero((as_of + pd.Timedelta(days=horizon_days) <= date).to_numpy())
        if len(train_idx):
            folds.append((train_idx, np.flatnonzero((as_of == date).to_numpy())))
    if not folds:
        raise TrainingError(f"no time-based CV fold possible over snapshots {[str(d)[:10] for d in dates]}: "
                            "add snapshots (training_snapshots)")
    return folds


@dataclass
class Trial:
    candidate: str
    params: dict[str, Any]
    cv_roc_auc: float
    cv_pr_auc: float
    best_iterations: list[int]


def search(settings: Settings, X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
           numeric: list[str], categorical: list[str]) -> list[Trial]:
    """Bounded randomized search: ``search_iterations`` draws per candidate family, each
    scored by mean ROC-AUC over ``folds``. The first draw of a family is its default."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import ParameterGrid

    from pipeline.progress import Progress

    names = [c.strip() for c in settings.candidates.split(",") if c.strip()]
    plan = []
    for name in names:
        space = search_space(settings, name)
        default = {k: v[0] for k, v in space.items()}
        grid = [g for g in ParameterGrid(space) if g != default]
        order = np.random.default_rng(settings.random_seed).permutation(len(grid))
        plan += [(name, p) for p in [default] + [grid[i] for i in order[: max(0, settings.search_iterations - 1)]]]
    progress = Progress(f"search ({len(X):,} rows, {len(folds)} time folds)", len(plan), "draws", every_s=0)
    trials = []
    for k, (name, params) in enumerate(plan, 1):
        aucs, aps, its = [], [], []
        for tr, va in folds:
            ytr = y[tr]
            pipe = _candidate_pipeline(settings, numeric, categorical, name, params, ytr)
            it = _fit(pipe, X.iloc[tr], ytr, (X.iloc[va], y[va]))
            p = pipe.predict_proba(X.iloc[va])[:, 1]
            aucs.append(roc_auc_score(y[va], p))
            aps.append(average_precision_score(y[va], p))
            if it is not None:
                its.append(it)
        trials.append(Trial(name, params, float(np.mean(aucs)), float(np.mean(aps)), its))
        log.info("search %s %s: CV ROC-AUC %.4f PR-AUC %.4f", name, params, trials[-1].cv_roc_auc, trials[-1].cv_pr_auc)
        progress.update(k, f"candidate {name}")
    return trials


def stratified_sample(strata: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Sorted positions of about ``n`` rows drawn with the same share from every stratum
    (each distinct row of ``strata``, e.g. snapshot date x label); all rows when ``n`` covers them."""
    if n <= 0 or len(strata) <= n:
        return np.arange(len(strata))
    keys = strata.reset_index(drop=True)
    picked = keys.groupby(list(keys.columns), sort=False, observed=True).sample(frac=n / len(keys), random_state=seed)
    return np.sort(picked.index.to_numpy())


#: candidate families whose fit cost grows much faster than the rows (SMOTE's neighbour search,
#: fully grown trees): fitted on at most ``settings.slow_fit_max_rows`` rows
def _is_slow(candidate: str) -> bool:
    return candidate.endswith("_smote") or candidate.removesuffix("_smote") == "random_forest"


def _pos_weight(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return (len(y) - pos) / pos if pos else 1.0


def _candidate_pipeline(settings: Settings, numeric: list[str], categorical: list[str], name: str,
                        params: dict[str, Any], y: np.ndarray):
    """``build_pipeline`` for one search draw: ``params`` set, class weight from the labels ``y``."""
    params = dict(params)
    pos_weight = _pos_weight(y) ** float(params.pop(POS_WEIGHT_POWER, 1.0))
    return build_pipeline(settings, numeric, categorical, name, pos_weight).set_params(**params)


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
    if _is_slow(best.candidate) and len(fit_idx) > settings.slow_fit_max_rows > 0:
        sub = stratified_sample(pd.DataFrame({"label": y[fit_idx]}), settings.slow_fit_max_rows, settings.random_seed)
        log.info("fit: %s is fitted on a stratified sample of %d of %d rows (slow_fit_max_rows: its cost grows "
                 "faster than the rows)", best.candidate, len(sub), len(fit_idx))
        fit_idx = fit_idx[sub]
    pipe = _candidate_pipeline(settings, numeric, categorical, best.candidate, best.params, y[fit_idx])
    if best.best_iterations:
        pipe.set_params(model__n_estimators=max(10, int(np.median(best.best_iterations)) + 1))
    started = time.monotonic()
    _fit(pipe, rows_of(X, fit_idx), y[fit_idx])
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
    version: str
    path: Path
    metrics: dict[str, Any]
    promoted: bool
    decision: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": str(self.path),
            "metrics": {k: v for k, v in self.metrics.items() if k != "calibration_curve"},
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


def register(settings: Settings, model, *, metrics: dict[str, Any], params: dict[str, Any],
             reference: pd.DataFrame, importances: pd.Series, y_holdout: np.ndarray, p_holdout: np.ndarray,
             trials: list[Trial], best: Trial, promote_against: pd.DataFrame | None = None,
             min_improvement: float = 0.0, version: str | None = None) -> TrainResult:
    """Build a version folder (model, params, metrics, reference, importances, model card),
    publish it, log the experiment, and gate promotion (``promote_against``: the holdout
    features the champion is scored on; None registers without promoting).

    ``version`` (default: a fresh id) names it; an existing version of that name (a rerun of
    the same training date) is replaced. The gate then compares with the champion before it,
    and a replaced champion that fails its gate hands the title back to that one.
    """
    import joblib

    from pipeline import experiments
    from pipeline.model_card import model_card_html

    version = version or registry.new_version_id()
    replaces = (settings.models_dir / version).is_dir()
    promoted, decision = False, "registered only (not a candidate for champion)"
    if promote_against is not None:
        champ = registry.previous_champion(settings, version)
        champion_auc = None
        if champ is not None:
            champ_proba = champ.load().predict_proba(promote_against)[:, 1]
            champion_auc = evaluate(y_holdout, champ_proba)["roc_auc"]
            metrics["champion_version"] = champ.version
            metrics["champion_roc_auc_same_holdout"] = champion_auc
        promoted, decision = gate(metrics["roc_auc"], champion_auc, min_improvement, settings.promotion_min_roc_auc)
    metrics["promotion_decision"] = decision
    stage = registry.staging_dir(settings, version)
    joblib.dump(model, stage / "model.joblib")
    write_text(json.dumps(metrics, indent=2, default=str), stage / "metrics.json")
    write_text(json.dumps(params, indent=2, default=str), stage / "params.json")
    write_parquet(reference.reset_index(drop=True), stage / "reference.parquet")
    write_parquet(importances.rename("importance").rename_axis("feature").reset_index(), stage / "importances.parquet")
    write_text(model_card_html(version, metrics, params, y_holdout, p_holdout, importances), stage / "model_card.html")
    mv = registry.publish(settings, version)
    experiments.append(settings, version, trials, best, metrics, promoted)
    if promoted:
        registry.promote(settings, version, decision)
    elif promote_against is not None:
        registry.demote(settings, version, f"the rebuild of {version} was {decision}")
    if replaces:
        log.info("train: %s rebuilt (a rerun of its date): the previous build is replaced", version)
    log.info("train: %s ROC-AUC %.4f PR-AUC %.4f ECE %.4f threshold %.3f (expected value %.0f; F1-optimal %.3f "
             "worth %.0f) -> %s", version, metrics["roc_auc"], metrics["pr_auc"], metrics["ece"],
             metrics["threshold"], metrics["expected_value"], metrics["f1_optimal"]["threshold"],
             metrics["f1_optimal"]["expected_value"], decision)
    return TrainResult(version, mv.path, metrics, promoted, decision)


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


def train(settings: Settings, training_set: Path, *, min_improvement: float = 0.0,
          version: str | None = None) -> TrainResult:
    """Search candidates with time-based CV, fit + calibrate the best, evaluate on the latest
    snapshots (out of time), register as ``version`` (see :func:`register`), and gate promotion."""
    from pipeline.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    numeric, categorical = list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)
    features = numeric + categorical
    df = read_training_set(training_set, numeric, categorical)
    train_df, holdout = time_split(df, settings.holdout_snapshots, settings.horizon_days)
    del df
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
    folds = time_folds(as_of.iloc[sample], settings.cv_folds, settings.horizon_days)
    fit_idx, cal_idx = time_folds(as_of, 1, settings.horizon_days)[-1]  # calibrate on the latest training-side snapshot
    model, best, trials = select_and_fit(settings, X, y, folds, fit_idx, cal_idx, numeric, categorical,
                                         search_rows=sample)

    y_hold = holdout[LABEL].to_numpy()
    proba = model.predict_proba(holdout[features])[:, 1]
    holdout_dates = sorted(pd.to_datetime(holdout["as_of"]).dt.date.astype(str).unique().tolist())
    metrics = evaluate(y_hold, proba, campaign_for(settings, len(holdout_dates)))
    metrics.update(model=best.candidate, train_rows=len(X), train_snapshots=train_snapshots,
                   holdout_snapshots=holdout_dates)
    params = {**_base_params(best, numeric, categorical, settings), "horizon_days": settings.horizon_days,
              "training_set": str(training_set),
              "training_window": {"first_snapshot": metrics["train_snapshots"][0],
                                  "last_snapshot": metrics["train_snapshots"][-1],
                                  "holdout": holdout_dates}}
    importances = feature_importances(model, holdout[features], y_hold, settings.random_seed)
    return register(settings, model, metrics=metrics, params=params, reference=reference,
                    importances=importances, y_holdout=y_hold, p_holdout=proba, trials=trials, best=best,
                    promote_against=holdout[features], min_improvement=min_improvement, version=version)


# -------------------------------------------------------------------- any table
def infer_columns(df: pd.DataFrame, max_unique_share: float = 0.5) -> tuple[list[str], list[str], list[str]]:
    """Numeric and categorical feature columns of a table, and the free-text-like columns
    (text with more distinct values than ``max_unique_share`` of the rows) left out."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    rest = [c for c in df.columns if c not in numeric]
    dropped = [c for c in rest if df[c].nunique() > max_unique_share * len(df)]
    return numeric, [c for c in rest if c not in dropped], dropped


def read_table_file(path: Path) -> pd.DataFrame:
    """A labelled customer table from a CSV (comma-separated, header row) or Parquet file;
    anything else is a one-line :class:`TrainingError` saying what the file is."""
    path = Path(path)
    if path.is_dir():
        raise TrainingError(f"{path} is a directory: pass a CSV or Parquet file")
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: pass the path of a CSV or Parquet file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or head == b"PAR1":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise TrainingError(f"{path} cannot be read as Parquet: {str(exc).splitlines()[0]}") from exc
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise TrainingError(f"{path} is empty: expected a CSV with a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path} cannot be read as CSV: {str(exc).splitlines()[0]}") from exc
    if df.empty:
        raise TrainingError(f"{path} has a header but no rows")
    if len(df.columns) == 1:
        raise TrainingError(f"{path} has a single column {df.columns[0][:80]!r}: not a comma-separated table "
                            "(another delimiter, or not a table at all?)")
    return df


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
              "label": label, "id_column": id_column, "dropped_columns": [*drop, *dropped],
              "training_window": {"rows": len(tr), "held_out_rows": len(te), "split": "stratified, seeded"}}
    n_ref = min(settings.reference_sample_rows, len(X))
    importances = feature_importances(model, X_te, y_te, settings.random_seed)
    return register(settings, model, metrics=metrics, params=params,
                    reference=X.sample(n=n_ref, random_state=settings.random_seed), importances=importances,
                    y_holdout=y_te, p_holdout=proba, trials=trials, best=best)


def snapshot_plan(settings: Settings, data_start: dt.date, data_end: dt.date) -> list[dt.date]:
    """The snapshot dates a training run on ``data_end`` uses."""
    from pipeline.labels import training_snapshot_dates

    return training_snapshot_dates(
        as_date(data_start), as_date(data_end), settings.training_snapshots, settings.horizon_days
    )
