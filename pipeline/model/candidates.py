"""The candidate models and their search: preprocessing + classifier pipelines (logistic
regression, random forest, XGBoost, SMOTE variants), their search spaces, expanding-window
time folds and the bounded randomized search over them.

The scikit-learn pipeline holds the preprocessing (imputation, one-hot encoding), so it
is fitted on training rows only and scoring applies exactly the same transform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.errors import TrainingError
from pipeline.model import tracking

log = logging.getLogger(__name__)


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


def _preprocessor(numeric: list[str], categorical: list[str], *, scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = Pipeline([("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else []))
    cat = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32))])
    return ColumnTransformer([("num", num, numeric), ("cat", cat, categorical)], verbose_feature_names_out=False)


def build_pipeline(settings: Settings, numeric: list[str], categorical: list[str], name: str = "xgboost",
                   pos_weight: float = 1.0) -> Any:
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


def fit(pipe: Any, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None = None) -> int | None:
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
    #: each CV fold's ROC-AUC (MLflow logs them as the child run's ``fold_roc_auc`` steps)
    fold_roc_aucs: list[float] = field(default_factory=list)

    @property
    def cv_std(self) -> float:
        """The spread of the folds' ROC-AUC (their standard deviation)."""
        return float(np.std(self.fold_roc_aucs)) if self.fold_roc_aucs else float("nan")


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
    progress = Progress(f"search ({len(X):,} rows, {len(folds)} CV folds)", len(plan), "draws", every_s=0)
    trials = []
    for k, (name, params) in enumerate(plan, 1):
        aucs, aps, its = [], [], []
        for tr, va in folds:
            ytr = y[tr]
            pipe = candidate_pipeline(settings, numeric, categorical, name, params, ytr)
            it = fit(pipe, X.iloc[tr], ytr, (X.iloc[va], y[va]))
            p = pipe.predict_proba(X.iloc[va])[:, 1]
            aucs.append(roc_auc_score(y[va], p))
            aps.append(average_precision_score(y[va], p))
            if it is not None:
                its.append(it)
        trials.append(Trial(name, params, float(np.mean(aucs)), float(np.mean(aps)), its, list(map(float, aucs))))
        tracking.observer().trial(trials[-1])  # its MLflow child run, live, with its real duration
        log.info("search %s %s: CV ROC-AUC %.4f PR-AUC %.4f", name, params, trials[-1].cv_roc_auc, trials[-1].cv_pr_auc)
        progress.update(k, f"candidate {name}")
    return trials


#: candidate families whose fit cost grows much faster than the rows (SMOTE's neighbour search,
#: fully grown trees): fitted on at most ``settings.slow_fit_max_rows`` rows
def is_slow(candidate: str) -> bool:
    return candidate.endswith("_smote") or candidate.removesuffix("_smote") == "random_forest"


def _pos_weight(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return (len(y) - pos) / pos if pos else 1.0


def candidate_pipeline(settings: Settings, numeric: list[str], categorical: list[str], name: str,
                        params: dict[str, Any], y: np.ndarray) -> Any:
    """``build_pipeline`` for one search draw: ``params`` set, class weight from the labels ``y``."""
    params = dict(params)
    pos_weight = _pos_weight(y) ** float(params.pop(POS_WEIGHT_POWER, 1.0))
    return build_pipeline(settings, numeric, categorical, name, pos_weight).set_params(**params)
