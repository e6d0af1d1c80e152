"""The candidate models and their search: preprocessing + classifier pipelines (logistic
regression, random forest, XGBoost, scikit-learn's histogram gradient boosting, SMOTE
variants), their search spaces, expanding-window time folds, the bounded randomized search
over them and the choice among its trials (:func:`choose`: within one standard error of the
best, the simplest wins: :data:`SIMPLICITY`).

The scikit-learn pipeline holds the preprocessing (imputation, one-hot encoding), so it
is fitted on training rows only and scoring applies exactly the same transform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

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
    # scikit-learn's histogram gradient boosting: native missing values and categories (no
    # one-hot); its defaults are the first draw (100 rounds; from 10,000 rows its own early stopping):
    # the plain reference the selection measures the hand-configured tree families against (SIMPLICITY)
    "hgb": {"model__learning_rate": [0.1, 0.05], "model__max_leaf_nodes": [31, 15, 63],
            "model__min_samples_leaf": [20, 50, 100], "model__l2_regularization": [0.0, 1.0]},
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


def missing_as_nan(X: Any) -> Any:
    """Categorical columns as objects with every missing marker (None, NaN, pd.NA) as NaN: the
    encoders treat None as a category of its own but NaN as missing, and which one a missing value
    is depends on how the column was read (the training set's pandas categorical: NaN; a night's
    text from Parquet: None), so the same customer would be encoded differently in training and in
    scoring."""
    frame = pd.DataFrame(X)
    redo = [c for c in frame.columns  # a pandas categorical (the training set's) has NaN already
            if not isinstance(frame[c].dtype, pd.CategoricalDtype) and frame[c].isna().any()]
    if not redo:
        return frame
    out = frame.copy(deep=False)
    for c in redo:
        out[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    return out


def as_float(X: Any) -> Any:
    """The numeric columns as float64, missing values as NaN (histogram boosting handles them natively)."""
    return X.astype("float64") if hasattr(X, "astype") else np.asarray(X, dtype="float64")


#: histogram boosting bins a categorical feature's codes into at most 255 bins (one for missing)
HGB_MAX_CATEGORIES = 254


def _missing_step() -> Any:
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(missing_as_nan, feature_names_out="one-to-one")


def _native_preprocessor(numeric: list[str], categorical: list[str]) -> Any:
    """For histogram boosting: numbers as they are (missing stays missing), categories as
    ordinal codes (an unseen or missing value as missing: :func:`missing_as_nan`), the
    categorical columns last."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    codes = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan,
                           max_categories=HGB_MAX_CATEGORIES, dtype=np.float64)
    return ColumnTransformer([("num", FunctionTransformer(as_float, feature_names_out="one-to-one"), numeric),
                              ("cat", Pipeline([("missing", _missing_step()), ("ordinal", codes)]), categorical)],
                             verbose_feature_names_out=False)


def _preprocessor(numeric: list[str], categorical: list[str], *, scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = Pipeline([("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else []))
    cat = Pipeline([("missing", _missing_step()), ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
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
    elif family == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            categorical_features=[False] * len(numeric) + [True] * len(categorical) if categorical else None,
            random_state=settings.random_seed)
        return Pipeline([("prep", _native_preprocessor(numeric, categorical)), ("model", model)])
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

    kind = type(pipe.named_steps["model"]).__name__
    if eval_set is None or kind != "XGBClassifier":
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
    #: the ROC-AUC on each fold, in fold order
    fold_roc_aucs: list[float] = field(default_factory=list)
    #: per fold, its predictions on the fold's validation rows (out of fold; the rows: the fold's
    #: validation index): what the selection compares on the same rows and the calibration is fitted on
    fold_predictions: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def cv_std(self) -> float:
        """The spread (standard deviation) of the folds' ROC-AUC (0 for one fold)."""
        return float(np.std(self.fold_roc_aucs, ddof=1)) if len(self.fold_roc_aucs) > 1 else 0.0


def search(settings: Settings, X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
           numeric: list[str], categorical: list[str]) -> list[Trial]:
    """Bounded randomized search: ``search_iterations`` draws per candidate family, each
    scored by mean ROC-AUC over ``folds``. The first draw of a family is its default. Each
    trial keeps its folds' ROC-AUC and out-of-fold predictions (:func:`choose`, the calibration)."""
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
        aucs, aps, its, preds = [], [], [], []
        for tr, va in folds:
            ytr = y[tr]
            pipe = candidate_pipeline(settings, numeric, categorical, name, params, ytr)
            it = fit(pipe, X.iloc[tr], ytr, (X.iloc[va], y[va]))
            p = pipe.predict_proba(X.iloc[va])[:, 1]
            aucs.append(float(roc_auc_score(y[va], p)))
            aps.append(average_precision_score(y[va], p))
            preds.append(p.astype("float64"))
            if it is not None:
                its.append(it)
        trials.append(Trial(name, params, float(np.mean(aucs)), float(np.mean(aps)), its, aucs, preds))
        tracking.observer().trial(trials[-1])  # its MLflow child run, live, with its real duration
        log.info("search %s %s: CV ROC-AUC %.4f (folds %s) PR-AUC %.4f", name, params, trials[-1].cv_roc_auc,
                 " ".join(f"{a:.4f}" for a in aucs), trials[-1].cv_pr_auc)
        progress.update(k, f"candidate {name}")
    return trials


#: how simple each candidate family is (the selection prefers the simpler within one standard
#: error of the best): how far it departs from a plain, untuned reference fit. A linear model;
#: then scikit-learn's histogram boosting, whose first draw is its library defaults (native
#: missing values and categories, no class weights, no resampling: the standard tree baseline);
#: then the hand-configured tree ensembles, the random forest (balanced-subsample class weights,
#: leaf sizes) and XGBoost (class-weight power, early stopping on the validation fold); SMOTE adds
#: a step. Within one standard error a tuned ensemble must earn its configuration against the
#: plain references. Measured (docs/training.md): on mlc_churn_5000 the forest, ranked simpler
#: than boosting, was chosen 0.0005 behind HGB in CV and scored 0.0107 below it on the holdout.
SIMPLICITY = {"logreg": 0, "hgb": 1, "random_forest": 2, "xgboost": 3}


def simplicity(candidate: str) -> tuple[int, int]:
    return SIMPLICITY.get(candidate.removesuffix("_smote"), len(SIMPLICITY)), int(candidate.endswith("_smote"))


def _auc_components(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of the ROC-AUC of ``p``: per churner the share of the
    others it outranks (ties 1/2), per other row the share of churners that outrank it."""
    from scipy.stats import rankdata

    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    all_ranks = rankdata(np.concatenate([pos, neg]))
    v_pos = (all_ranks[:m] - rankdata(pos)) / n
    v_neg = 1.0 - (all_ranks[m:] - rankdata(neg)) / m
    return v_pos, v_neg


def paired_auc_difference_variance(y: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> float:
    """The variance of ROC-AUC(pa) - ROC-AUC(pb) on the same rows (DeLong et al. 1988, paired):
    how much of a difference between two models scored on one validation fold is noise."""
    y = np.asarray(y).astype(int)
    a_pos, a_neg = _auc_components(y, np.asarray(pa, dtype=float))
    b_pos, b_neg = _auc_components(y, np.asarray(pb, dtype=float))
    d_pos, d_neg = a_pos - b_pos, a_neg - b_neg
    var_pos = float(np.var(d_pos, ddof=1)) / len(d_pos) if len(d_pos) > 1 else 0.0
    var_neg = float(np.var(d_neg, ddof=1)) / len(d_neg) if len(d_neg) > 1 else 0.0
    return var_pos + var_neg


@dataclass
class Selection:
    """The search's choice: the best mean CV ROC-AUC, and the trial chosen (the simplest family
    within one standard error of the best)."""

    chosen: Trial
    best: Trial
    #: the standard error of the difference between the best and the chosen (0 when they are one)
    std_error: float
    #: the best's mean CV ROC-AUC minus the chosen's (0 when they are one)
    margin: float
    #: per candidate family: its best trial's mean CV ROC-AUC, fold spread, gap to the best and its standard error
    families: dict[str, dict[str, float]]
    reason: str

    def record(self) -> dict[str, Any]:
        """What metrics.json and the log keep of the choice."""
        return {"chosen": self.chosen.candidate, "chosen_cv_roc_auc": self.chosen.cv_roc_auc,
                "best": self.best.candidate, "best_cv_roc_auc": self.best.cv_roc_auc, "margin": self.margin,
                "std_error": self.std_error, "folds": len(self.best.fold_roc_aucs),
                "rule": "within one standard error of the best mean CV ROC-AUC the simplest family wins "
                        "(logreg < hgb < random_forest < xgboost; SMOTE adds a step)",
                "families": self.families, "reason": self.reason}


def difference_std_error(best: Trial, other: Trial, y_folds: list[np.ndarray]) -> float:
    """The standard error of best's mean CV ROC-AUC minus ``other``'s over the same folds: the
    larger of the folds' spread of the difference (std / sqrt(folds), two folds or more) and
    its sampling error on the folds' rows (DeLong, paired: both scored the same rows)."""
    k = len(y_folds)
    diffs = np.subtract(best.fold_roc_aucs, other.fold_roc_aucs)
    spread = float(np.std(diffs, ddof=1)) / np.sqrt(k) if k > 1 else 0.0
    sampling = float(np.sqrt(sum(paired_auc_difference_variance(yf, pb, po) for yf, pb, po in
                                 zip(y_folds, best.fold_predictions, other.fold_predictions, strict=True)))) / k
    return float(max(spread, sampling))


def choose(trials: list[Trial], y_folds: list[np.ndarray]) -> Selection:
    """The one-standard-error rule over the trials (``y_folds``: each fold's validation labels):
    the best mean CV ROC-AUC, then every trial whose mean is within one standard error of the
    difference to it (:func:`difference_std_error`), and of those the simplest family
    (:data:`SIMPLICITY`), the highest mean within it. Differences the folds cannot tell from
    noise do not buy a more complex model."""
    if not trials:
        raise TrainingError("no candidate was searched: settings.candidates is empty")
    best = max(trials, key=lambda t: t.cv_roc_auc)
    near: list[tuple[Trial, float]] = []
    families: dict[str, dict[str, float]] = {}
    for t in trials:
        se = 0.0 if t is best else difference_std_error(best, t, y_folds)
        if t.cv_roc_auc >= best.cv_roc_auc - se:
            near.append((t, se))
        top = families.get(t.candidate)
        if top is None or t.cv_roc_auc > top["cv_roc_auc"]:
            families[t.candidate] = {"cv_roc_auc": float(t.cv_roc_auc), "cv_std": float(t.cv_std),
                                     "gap_to_best": float(best.cv_roc_auc - t.cv_roc_auc), "std_error": float(se)}
    chosen, se = min(near, key=lambda pair: (simplicity(pair[0].candidate), -pair[0].cv_roc_auc))
    margin = float(best.cv_roc_auc - chosen.cv_roc_auc)
    if chosen is best:
        runner = max((t for t in trials if t.candidate != best.candidate), key=lambda t: t.cv_roc_auc, default=None)
        reason = (f"{best.candidate}: the best mean CV ROC-AUC {best.cv_roc_auc:.4f}" +
                  (f", ahead of {runner.candidate} ({runner.cv_roc_auc:.4f}) by "
                   f"{best.cv_roc_auc - runner.cv_roc_auc:.4f}, more than one standard error "
                   f"({difference_std_error(best, runner, y_folds):.4f})"
                   if runner is not None and simplicity(runner.candidate) < simplicity(best.candidate) else ""))
    else:
        reason = (f"{chosen.candidate} (mean CV ROC-AUC {chosen.cv_roc_auc:.4f}) over {best.candidate} "
                  f"({best.cv_roc_auc:.4f}): {margin:.4f} behind, within one standard error ({se:.4f}); "
                  "the simpler candidate wins")
    return Selection(chosen, best, se, margin, families, reason)


#: candidate families whose fit cost grows much faster than the rows (SMOTE's neighbour search,
#: fully grown trees): fitted on at most ``settings.slow_fit_max_rows`` rows
def is_slow(candidate: str) -> bool:
    return candidate.endswith("_smote") or candidate.removesuffix("_smote") == "random_forest"


def set_iterations(pipe: Any, iterations: list[int]) -> None:
    """A boosting pipeline's number of rounds for a fit without early stopping: the median of
    the rounds its early stopping kept in the CV folds (nothing for other models or none found)."""
    if not iterations:
        return
    if type(pipe.named_steps["model"]).__name__ == "XGBClassifier":
        pipe.set_params(model__n_estimators=max(10, int(np.median(iterations)) + 1))


def _pos_weight(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return (len(y) - pos) / pos if pos else 1.0


def candidate_pipeline(settings: Settings, numeric: list[str], categorical: list[str], name: str,
                        params: dict[str, Any], y: np.ndarray) -> Any:
    """``build_pipeline`` for one search draw: ``params`` set, class weight from the labels ``y``."""
    params = dict(params)
    pos_weight = _pos_weight(y) ** float(params.pop(POS_WEIGHT_POWER, 1.0))
    return build_pipeline(settings, numeric, categorical, name, pos_weight).set_params(**params)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def fit_calibrator(method: str, proba: np.ndarray, y: np.ndarray) -> Any:
    """A monotone map from a model's probabilities to calibrated ones, fitted on out-of-fold
    predictions ``proba`` and their labels: ``sigmoid`` (Platt: a logistic regression on the
    log-odds) or ``isotonic``."""
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e4, max_iter=1000).fit(_logit(proba).reshape(-1, 1), np.asarray(y).astype(int))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(_logit(proba), np.asarray(y, float))
    raise TrainingError(f"calibration must be 'isotonic' or 'sigmoid', got {method!r}")


class CrossFitCalibrated(ClassifierMixin, BaseEstimator):
    """A pipeline fitted on every training row (``estimator``) and a calibrator fitted on the
    out-of-fold predictions of the same candidate in the CV folds (:func:`fit_calibrator`):
    ``predict_proba`` on raw features, like scikit-learn's ``CalibratedClassifierCV`` with
    ``ensemble=False``, whose cross-validation would need folds covering every row (time folds
    do not) and would refit what the search already fitted."""

    def __init__(self, estimator: Any, calibrator: Any, method: str) -> None:
        self.estimator = estimator
        self.calibrator = calibrator
        self.method = method
        self.classes_ = np.array([0, 1])

    def fit(self, X: Any, y: Any, cv: int = 5) -> CrossFitCalibrated:
        """Refit both on ``X``/``y`` the same way: the calibrator on stratified ``cv``-fold
        out-of-fold predictions, the pipeline on every row (training uses the search's folds instead)."""
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        folds = StratifiedKFold(cv, shuffle=True, random_state=0)
        oof = cross_val_predict(clone(self.estimator), X, y, cv=folds, method="predict_proba")[:, 1]
        self.calibrator = fit_calibrator(self.method, oof, np.asarray(y))
        self.estimator = clone(self.estimator).fit(X, y)
        return self

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The calibrated churn probability of the fitted pipeline's probability ``proba``."""
        z = _logit(proba)
        if self.method == "sigmoid":
            return np.asarray(self.calibrator.predict_proba(z.reshape(-1, 1))[:, 1], dtype="float64")
        return np.asarray(self.calibrator.predict(z), dtype="float64")

    def predict_proba(self, X: Any) -> np.ndarray:
        q = self.calibrate(self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1.0 - q, q])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
