"""Training: search the candidates, fit and calibrate the chosen one, evaluate it out of time
(:func:`train`) or on a held-out split of any labelled table (:func:`train_table`). The
result is a :class:`Trained` model in memory; :mod:`pipeline.model.publish` registers it and
:mod:`pipeline.model.gate` decides whether it is served. The data set is
:mod:`pipeline.features.dataset`, the candidates and their search :mod:`pipeline.model.candidates`.
"""

from __future__ import annotations

import datetime as dt
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

from pipeline.config import REPO_ROOT, Settings
from pipeline.errors import TrainingError
from pipeline.features.dataset import (
    ID_COLUMNS,
    LABEL,
    infer_columns,
    read_rows,
    read_table_file,
    read_training_set,
    stratified_folds,
    stratified_holdout,
    stratified_sample,
    time_split,
    time_validation_gap,
)
from pipeline.model import tracking
from pipeline.model.candidates import (
    CrossFitCalibrated,
    Selection,
    Trial,
    candidate_pipeline,
    choose,
    fit,
    fit_calibrator,
    is_slow,
    rows_of,
    search,
    set_iterations,
    time_folds,
)
from pipeline.progress import duration
from pipeline.storage import Location

log = logging.getLogger(__name__)


def fit_chosen(settings: Settings, chosen: Trial, X: pd.DataFrame, y: np.ndarray, idx: np.ndarray,
               numeric: list[str], categorical: list[str]) -> Any:
    """The chosen candidate fitted on the rows ``idx`` of ``X`` (a stratified sample of at most
    ``slow_fit_max_rows`` of them for a slow family; boosting with the median early-stopping
    round of its CV folds): the final model, and each model the cross-fitted calibration scores."""
    if is_slow(chosen.candidate) and len(idx) > settings.slow_fit_max_rows > 0:
        sub = stratified_sample(pd.DataFrame({"label": y[idx]}), settings.slow_fit_max_rows, settings.random_seed)
        log.info("fit: %s is fitted on a stratified sample of %d of %d rows (slow_fit_max_rows: its cost grows "
                 "faster than the rows)", chosen.candidate, len(sub), len(idx))
        idx = idx[sub]
    pipe = candidate_pipeline(settings, numeric, categorical, chosen.candidate, chosen.params, y[idx])
    set_iterations(pipe, chosen.best_iterations)
    fit(pipe, rows_of(X, idx), y[idx])
    return pipe


def cross_fitted_predictions(settings: Settings, chosen: Trial, X: pd.DataFrame, y: np.ndarray,
                             folds: list[tuple[np.ndarray, np.ndarray]], numeric: list[str],
                             categorical: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The churn probabilities of each fold's validation rows by the chosen candidate fitted on
    the fold's training rows (:func:`calibration_folds_of`: nearly every training row), and
    their labels: the out-of-fold predictions the calibration is fitted on."""
    proba, labels = [], []
    for train_idx, valid_idx in folds:
        pipe = fit_chosen(settings, chosen, X, y, train_idx, numeric, categorical)
        proba.append(pipe.predict_proba(rows_of(X, valid_idx))[:, 1])
        labels.append(y[valid_idx])
    return np.concatenate(proba), np.concatenate(labels)


def fit_cross_fitted(settings: Settings, chosen: Trial, X: pd.DataFrame, y: np.ndarray,
                     calibration_folds: list[tuple[np.ndarray, np.ndarray]] | None, search_oof: np.ndarray,
                     search_oof_y: np.ndarray, numeric: list[str], categorical: list[str]) -> Any:
    """Fit the chosen candidate on every row of ``X`` and calibrate its probabilities on
    out-of-fold predictions (cross-fitted calibration: no row kept from the model).

    With ``calibration_folds`` (:func:`calibration_folds_of`) the calibration is fitted on
    :func:`cross_fitted_predictions`, each by a model of nearly every training row; without
    (at scale: the search saw a sample) on ``search_oof``,
    the chosen draw's predictions in the search's CV folds (no extra fit). The search's time
    folds' models are fitted on the earlier snapshots only: on a small business they calibrate
    the model of every snapshot with the spread of a weaker one (docs/training.md, measured).
    The result is a
    :class:`~pipeline.model.candidates.CrossFitCalibrated`: ``predict_proba`` on raw features.
    """
    if settings.calibration not in ("isotonic", "sigmoid"):
        raise TrainingError(f"calibration must be 'isotonic' or 'sigmoid', got {settings.calibration!r}")
    started = time.monotonic()
    if calibration_folds is not None:
        oof_proba, oof_y = cross_fitted_predictions(settings, chosen, X, y, calibration_folds, numeric, categorical)
        how = f"{len(calibration_folds)} calibration folds"
        if len(np.unique(oof_y)) < 2:
            raise TrainingError(f"the calibration folds' {len(oof_y)} rows of the latest training snapshot hold one "
                                "class: use more customers or snapshots (training_snapshots)")
    else:
        oof_proba, oof_y = search_oof, search_oof_y
        how = f"its {len(chosen.fold_predictions)} search CV fold(s)"
    pipe = fit_chosen(settings, chosen, X, y, np.arange(len(X)), numeric, categorical)
    log.info("fit: %s on %d rows in %s; calibrated (%s) on the out-of-fold predictions of %s (%d rows)",
             chosen.candidate, len(X), duration(time.monotonic() - started), settings.calibration, how, len(oof_y))
    return CrossFitCalibrated(pipe, fit_calibrator(settings.calibration, oof_proba, oof_y), settings.calibration)


def feature_importances(model: Any, X: pd.DataFrame, y: np.ndarray, seed: int) -> pd.Series:
    """Permutation importance (drop in ROC-AUC) of each raw input column, on ``X``."""
    from sklearn.inspection import permutation_importance

    n = min(len(X), 3000)
    idx = np.random.default_rng(seed).choice(len(X), n, replace=False) if n < len(X) else np.arange(n)
    result = permutation_importance(model, X.iloc[idx], y[idx], scoring="roc_auc", n_repeats=3,
                                    random_state=seed, n_jobs=1)
    return pd.Series(result.importances_mean, index=X.columns).sort_values(ascending=False)


def campaign_for(settings: Settings, scoring_runs: float = 1) -> Any:
    """The campaign of ``scoring_runs`` nights (a share of a night for a holdout that is a share
    of a snapshot's customers: the capacity in proportion, at least one contact)."""
    from pipeline.model.evaluate import Campaign

    capacity = settings.campaign_daily_capacity
    return Campaign(customer_value=settings.campaign_customer_value, save_rate=settings.campaign_save_rate,
                    contact_cost=settings.campaign_contact_cost,
                    capacity=max(1, round(capacity * scoring_runs)) if capacity > 0 else 0)


def evaluate(y_true: np.ndarray, proba: np.ndarray, campaign: Any = None) -> dict[str, Any]:
    """Every holdout metric (see :func:`pipeline.model.evaluate.full_report`)."""
    from pipeline.model.evaluate import Campaign, full_report

    if len(np.unique(np.asarray(y_true))) < 2:
        raise TrainingError("holdout has a single class; ROC-AUC is undefined (add snapshots or customers)")
    return full_report(y_true, proba, campaign or Campaign())


@dataclass
class Trained:
    """A fitted, calibrated and evaluated model, not registered yet."""

    model: Any
    metrics: dict[str, Any]
    params: dict[str, Any]
    #: a sample of the training rows (ids + features): the drift reference
    reference: pd.DataFrame
    importances: pd.Series
    y_holdout: np.ndarray
    p_holdout: np.ndarray
    trials: list[Trial]
    best: Trial
    #: the holdout's feature rows (the gate scores the champion on them); None: train-table
    holdout: pd.DataFrame | None = None

    @property
    def holdout_dates(self) -> list[str]:
        return list(self.metrics.get("holdout_snapshots", []))


def _code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def select_and_fit(settings: Settings, X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                   numeric: list[str], categorical: list[str], search_rows: np.ndarray | None = None,
                   calibration_folds: list[tuple[np.ndarray, np.ndarray]] | None = None
                   ) -> tuple[Any, Selection, list[Trial]]:
    """Search the candidates on ``folds``, choose one (:func:`~pipeline.model.candidates.choose`:
    within one standard error of the best, the simplest), fit it on every row of ``X`` and
    calibrate it cross-fitted (:func:`fit_cross_fitted`: on ``calibration_folds`` of every row,
    else on the search folds' out-of-fold predictions). With ``search_rows`` the search sees
    only those rows of ``X`` (``folds`` index into them)."""
    if search_rows is not None and len(search_rows) < len(X):
        Xs, ys = X.iloc[search_rows].reset_index(drop=True), y[search_rows]
    else:
        Xs, ys = X, y
    tracking.observer().search_started()  # the MLflow training run, live: a child run per draw
    trials = search(settings, Xs, ys, folds, numeric, categorical)
    y_folds = [ys[va] for _, va in folds]
    selection = choose(trials, y_folds)
    log.info("select: %s", selection.reason)
    tracking.observer().searched(trials, selection.chosen, selection.reason)  # tagged, linked from the parent run
    for family, row in sorted(selection.families.items(), key=lambda kv: -kv[1]["cv_roc_auc"]):
        log.info("select: %-14s mean CV ROC-AUC %.4f (folds' std %.4f), %.4f behind the best (standard error %.4f)",
                 family, row["cv_roc_auc"], row["cv_std"], row["gap_to_best"], row["std_error"])
    chosen = selection.chosen
    oof_proba, oof_y = np.concatenate(chosen.fold_predictions), np.concatenate(y_folds)
    model = fit_cross_fitted(settings, chosen, X, y, calibration_folds, oof_proba, oof_y, numeric, categorical)
    return model, selection, trials


def selection_metrics(selection: Selection) -> dict[str, Any]:
    """The choice in metrics.json (``selection``) and, as numbers the training run logs to MLflow
    with the holdout's, its margin to the best mean CV ROC-AUC and that difference's standard error."""
    return {"selection": selection.record(), "selection_cv_margin": float(selection.margin),
            "selection_cv_std_error": float(selection.std_error),
            "cv_roc_auc_std": float(selection.chosen.cv_std)}


def calibration_folds_of(settings: Settings, groups: pd.Series | None, y: np.ndarray, searched_all: bool,
                         as_of: pd.Series | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The folds the chosen candidate's calibration is cross-fitted on: ``calibration_folds``
    stratified folds of the customers (``groups``; None: one row per customer). Each fold
    validates its customers' rows of the latest training snapshot (``as_of``; every row with
    one snapshot) with a model of every other training row: the other customers' rows of every
    snapshot and its own customers' earlier rows whose label window closed by then (as the
    final model scores a night: customers it saw before, a later date, nearly all the rows).
    None where the search saw a sample of the rows (at scale: the search folds' predictions
    calibrate, no extra fit).

    Measured on the tests' small business (1,500 customers, one time fold; docs/training.md):
    calibrated on the search's time fold (a model of the earliest snapshot only) a random
    forest of every snapshot was over-confident (holdout calibration slope 0.80, the performance
    estimate 0.058 above the realised ROC-AUC); on grouped folds of every row (models that never
    saw the customers) under-confident (slope 1.22, -0.042); these folds: slope 1.05, -0.003."""
    if not searched_all:
        return None
    from pipeline.features.dataset import stratified_folds

    ids = groups if groups is not None else pd.Series(np.arange(len(y)))
    folds = stratified_folds(ids, y, settings.calibration_folds, settings.random_seed)
    if as_of is None:
        return folds
    dates = pd.to_datetime(pd.Series(as_of)).reset_index(drop=True)
    latest = dates.max()
    validated = (dates == latest).to_numpy()
    # a validated customer's rows whose label window reaches the latest snapshot would tell its label
    overlapping = (dates + pd.Timedelta(days=settings.label_window_days) > latest).to_numpy()
    out = []
    for _, valid_idx in folds:
        own = np.zeros(len(y), dtype=bool)
        own[valid_idx] = True
        out.append((np.flatnonzero(~(own & overlapping)), np.flatnonzero(own & validated)))
    return out


def calibration_record(settings: Settings, calibration_folds: list[tuple[np.ndarray, np.ndarray]] | None,
                       folds: list[tuple[np.ndarray, np.ndarray]], what: str, fit_rows: int) -> dict[str, Any]:
    """How the probabilities were calibrated (metrics' ``calibration``, the card): on the
    ``calibration_folds`` (or, None, on the search's ``folds`` of kind ``what``)."""
    used, kind = (calibration_folds, "calibration fold") if calibration_folds is not None else (folds, what)
    rows = int(sum(len(va) for _, va in used))
    return {"method": settings.calibration, "fitted_on": "out-of-fold predictions", "folds": len(used),
            "fold_kind": kind, "rows": rows, "model_rows": fit_rows,
            "description": f"{settings.calibration}, cross-fitted: the calibration is fitted on the chosen candidate's "
                           f"out-of-fold predictions in {len(used)} {kind}s ({rows:,} rows"
                           + (", each scored by the candidate fitted on every other training row" if calibration_folds
                              is not None else "") + f"), the model on every training row ({fit_rows:,})"}


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


def seen_categories(X: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    """Per categorical feature, the values the model was fitted on (as text): a night's value
    outside them is scored as unknown and counted (:func:`pipeline.monitoring.metrics.unseen_categories`)."""
    return {c: sorted(X[c].dropna().astype(str).unique().tolist()) for c in categorical if c in X.columns}


def _base_params(best: Trial, numeric: list[str], categorical: list[str], settings: Settings,
                 X: pd.DataFrame) -> dict[str, Any]:
    return {
        "model": best.candidate,
        "search_params": best.params,
        "cv_roc_auc": best.cv_roc_auc,
        "calibration": settings.calibration,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "categories": seen_categories(X, categorical),
        "campaign_daily_capacity": settings.campaign_daily_capacity,
        "code_version": _code_version(),
        "python": platform.python_version(),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def _fairness(settings: Settings, features: list[str], available: Any, constant: list[str]) -> dict[str, Any]:
    """The fairness segments this model is judged by, and why each other configured one is not."""
    from pipeline.features.catalogue import FEATURES
    from pipeline.features.selection import fairness_segments

    group_of = {f.name: f.group for f in FEATURES}
    why_not = {**{f: f"its feature group {g} is left out ({available.left_out_groups[g]})"
                  for f, g in group_of.items() if g in available.left_out_groups},
               **available.left_out_features,
               **dict.fromkeys(constant, "one value on every training row")}
    usable, skipped = fairness_segments(settings.segments, features, why_not)
    for segment, why in skipped.items():
        log.info("train: fairness segment %s skipped: %s", segment, why)
    return {"segments": usable, "skipped": skipped}


def constant_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The ``columns`` holding a single value (missing counts as one) on every row of ``df``:
    they carry no information (e.g. failed payments in a business without any), so no model
    gets them and no drift test runs on them."""
    return [c for c in columns if df[c].nunique(dropna=False) <= 1]


#: the share of the customers held out when the snapshots are too few to validate out of time
STRATIFIED_HOLDOUT_SHARE = 0.25


def validation_of(mode: str, snapshots: Sequence[str], reason: str | None = None) -> dict[str, Any]:
    """How a model was validated (params' and metrics' ``validation``, the card, the MLflow run):
    ``mode`` "time" (an out-of-time holdout and time-CV folds) or "stratified" (too few
    snapshots: a stratified holdout of the customers and stratified CV inside the snapshots)."""
    n = len(snapshots)
    if mode == "time":
        return {"mode": "time", "description": "out-of-time (holdout: the latest snapshot(s); time-CV folds)"}
    return {"mode": "stratified",
            "description": f"stratified ({n} snapshot{'s' if n != 1 else ''}: no out-of-time validation)",
            "reason": reason, "snapshots": list(snapshots), "holdout_share": STRATIFIED_HOLDOUT_SHARE}


def train(settings: Settings, training_set: Location) -> Trained:
    """Search candidates with time-based CV, fit + calibrate the best, evaluate on the latest
    snapshots (out of time). With too few snapshots for that (:func:`time_validation_gap`: one
    labelled snapshot, say) the holdout is a stratified share of the customers
    (:data:`STRATIFIED_HOLDOUT_SHARE`) and the CV folds (whose out-of-fold predictions calibrate)
    are stratified folds of the others, every row of a customer on one side; the model records so
    (``validation``)."""
    from pipeline.features.selection import available_features

    available = available_features(settings)
    groups, numeric, categorical = available.groups, available.numeric, available.categorical
    for group, why in available.left_out_groups.items():
        log.info("train: feature group %s left out: %s", group, why)
    for feature, why in available.left_out_features.items():
        log.info("train: feature %s left out: %s", feature, why)
    df = read_training_set(training_set, numeric, categorical)
    window = settings.label_window_days
    snapshots = sorted(pd.to_datetime(df["as_of"]).dt.date.astype(str).unique().tolist())
    gap = time_validation_gap(snapshots, settings.holdout_snapshots, window)
    validation = validation_of("time" if gap is None else "stratified", snapshots, gap)
    if gap is None:
        train_df, holdout = time_split(df, settings.holdout_snapshots, window)
    else:
        train_rows, held_rows = stratified_holdout(df["customer_id"], df[LABEL].to_numpy(), STRATIFIED_HOLDOUT_SHARE,
                                                   settings.random_seed)
        train_df, holdout = df.iloc[train_rows], df.iloc[held_rows]
        log.warning("train: validation %s: %s; the holdout is a stratified %d%% of the customers (%d rows), the CV "
                    "folds (their out-of-fold predictions calibrate) are stratified folds of the others: the metrics do not show "
                    "how the model holds up on a later month", validation["description"], gap,
                    round(100 * STRATIFIED_HOLDOUT_SHARE), len(holdout))
    rows_per_snapshot = len(df) / len(snapshots)
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
    # the drift reference: a sample of the holdout, rows the served model never fitted (it is fitted
    # on every training row: its scores of training rows are in-sample, a random forest's nearly
    # certain, and the nightly's score and fairness comparisons would weigh tonight against them),
    # and the latest rows before the training date; in the file's own types (a fee of 9.99 stays
    # 9.99, not float32's 9.9899998)
    n_ref = min(settings.reference_sample_rows, len(holdout))
    picked = holdout.sample(n=n_ref, random_state=settings.random_seed) if n_ref < len(holdout) else holdout
    reference = read_rows(training_set, np.sort(picked.index.to_numpy()), ID_COLUMNS + features)
    del picked
    train_df = train_df.reset_index(drop=True)
    as_of, y, customers = train_df["as_of"], train_df[LABEL].to_numpy(), train_df["customer_id"]
    train_snapshots = sorted(pd.to_datetime(as_of).dt.date.astype(str).unique().tolist())
    X = train_df[features]
    del train_df
    # the search and its CV run on a sample stratified by snapshot and label; the final fit uses every row
    sample = stratified_sample(pd.DataFrame({"as_of": as_of, LABEL: y}), settings.search_sample_rows,
                               settings.random_seed)
    if len(sample) < len(X):
        log.info("train: search and CV on a stratified sample of %d of %d rows (search_sample_rows), "
                 "final fit on all of them", len(sample), len(X))
    # the chosen candidate's out-of-fold predictions in these folds calibrate it; the model is fitted on every row
    if gap is None:
        folds = time_folds(as_of.iloc[sample], settings.cv_folds, window)
        what = "time-CV fold"
    else:  # cv_folds of cv_folds + 1 stratified folds (the search's cost as before)
        n_splits = settings.cv_folds + 1
        folds = stratified_folds(customers.iloc[sample], y[sample], n_splits, settings.random_seed)[:settings.cv_folds]
        what = "stratified CV fold"
    cal_folds = calibration_folds_of(settings, customers, y, len(sample) == len(X), as_of)
    del customers
    _require_two_classes(folds, as_of.iloc[sample].reset_index(drop=True), y[sample], what)
    model, selection, trials = select_and_fit(settings, X, y, folds, numeric, categorical, search_rows=sample,
                                              calibration_folds=cal_folds)
    best = selection.chosen

    y_hold = holdout[LABEL].to_numpy()
    proba = model.predict_proba(holdout[features])[:, 1]
    holdout_dates = sorted(pd.to_datetime(holdout["as_of"]).dt.date.astype(str).unique().tolist())
    # the campaign of the nights the holdout stands for: whole snapshots, or a share of the customers of each
    nights = len(holdout_dates) if gap is None else len(holdout) / rows_per_snapshot
    metrics = evaluate(y_hold, proba, campaign_for(settings, nights))
    metrics.update(model=best.candidate, train_rows=len(X), train_snapshots=train_snapshots,
                   holdout_snapshots=holdout_dates, validation=validation["description"],
                   **selection_metrics(selection), calibration=calibration_record(settings, cal_folds, folds, what, len(X)))
    from pipeline.features.labels import label_spec

    params = {**_base_params(best, numeric, categorical, settings, X), "horizon_days": settings.horizon_days,
              "label": label_spec(settings),
              "validation": validation,
              "feature_groups": {"active": groups, "left_out": available.left_out_groups},
              "left_out_features": available.left_out_features,
              "constant_features": constant,
              "fairness": _fairness(settings, numeric + categorical, available, constant),
              "training_set": str(training_set),
              "training_window": {"first_snapshot": metrics["train_snapshots"][0],
                                  "last_snapshot": metrics["train_snapshots"][-1],
                                  "holdout": holdout_dates}}
    importances = feature_importances(model, holdout[features], y_hold, settings.random_seed)
    return Trained(model, metrics, params, reference, importances, y_hold, proba, trials, best, holdout)


@dataclass
class LabelledTable:
    """A labelled table as ``train-table`` reads it: the feature columns, the 0/1 label, the
    inferred numeric and categorical features and the columns left out."""

    X: pd.DataFrame
    y: np.ndarray
    numeric: list[str]
    categorical: list[str]
    dropped: list[str]
    drop: list[str]


def read_labelled_table(csv: Path, label: str, *, id_column: str | None = None, drop: Sequence[str] = (),
                        positive: str | None = None) -> LabelledTable:
    """Read, check and type a labelled table for :func:`train_table` (one-line errors)."""
    drop = list(drop)
    csv = Path(csv)
    df = read_table_file(csv)
    missing = [c for c in [label, id_column, *drop] if c and c not in df.columns]
    if missing:
        raise TrainingError(f"{csv} has no column(s) {missing}; its columns are {list(df.columns)}")
    df = df.dropna(subset=[label]).reset_index(drop=True)
    values = set(df[label].unique().tolist())
    if positive is not None:
        matches = df[label].astype(str).str.strip() == str(positive).strip()
        if not matches.any():
            raise TrainingError(f"--positive {positive!r}: no row of {label!r} has that value; its values are "
                                f"{sorted(map(str, values))[:10]}")
        y_all = matches.astype(int).to_numpy()
        log.info("train-table: %s = %r is churn (1): %d of %d rows", label, positive, int(y_all.sum()), len(y_all))
    elif values <= {0, 1}:
        y_all = df[label].astype(int).to_numpy()
    else:
        raise TrainingError(f"label {label!r} must be 0/1 (or true/false), got values {sorted(map(str, values))[:10]}; "
                            "for a text label say which value is churn with --positive VALUE (e.g. --positive Yes)")
    if len(np.unique(y_all)) < 2:
        raise TrainingError(f"label {label!r} has a single class; nothing to learn")
    if id_column:
        repeated = int(df[id_column].duplicated(keep=False).sum())
        if repeated:
            log.warning("train-table: %d rows of %s share their %s with another row (%d distinct ids repeat): a "
                        "customer may sit on both sides of the held-out split", repeated, csv, id_column,
                        df.loc[df[id_column].duplicated(keep=False), id_column].nunique())
    X_all = df.drop(columns=[c for c in [label, id_column, *drop] if c])
    from pipeline.features.dataset import numeric_text, row_number_columns

    for column in row_number_columns(X_all):
        log.info("train-table: column %r is a row number written with the file (no header, 1..n): left out", column)
        X_all = X_all.drop(columns=column)
        drop = [*drop, column]

    for column, blanks in numeric_text(X_all).items():
        X_all[column] = pd.to_numeric(X_all[column].astype("string").str.strip().replace("", pd.NA), errors="coerce")
        log.info("train-table: %s holds numbers as text: read as numbers, %d blank value(s) as missing", column, blanks)
    numeric, categorical, dropped = infer_columns(X_all)
    if dropped:
        log.warning("train-table: left out text-like columns with mostly unique values: %s", dropped)
    features = numeric + categorical
    if not features:
        raise TrainingError(f"{csv} has no feature columns besides the label and id")
    return LabelledTable(X_all[features], y_all, numeric, categorical, list(dropped), drop)


def table_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``train-table``'s held-out split: stratified by the label, seeded (row positions)."""
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    return np.asarray(tr), np.asarray(te)


def train_table(settings: Settings, csv: Path, label: str, *, id_column: str | None = None,
                drop: Sequence[str] = (), test_size: float = 0.25, positive: str | None = None) -> Trained:
    """Train on any labelled customer table: infer columns, search the candidates with
    stratified CV, calibrate, evaluate on a stratified, seeded held-out split (never a
    champion: its features are not the pipeline's)."""
    from sklearn.model_selection import StratifiedKFold

    csv = Path(csv)
    table = read_labelled_table(csv, label, id_column=id_column, drop=drop, positive=positive)
    X_all, y_all, numeric, categorical = table.X, table.y, table.numeric, table.categorical
    dropped, drop = table.dropped, table.drop
    tr, te = table_split(y_all, test_size, settings.random_seed)
    X, y = X_all.iloc[tr].reset_index(drop=True), y_all[tr]
    skf = StratifiedKFold(n_splits=max(2, settings.cv_folds + 1), shuffle=True, random_state=settings.random_seed)
    folds = list(skf.split(X, y))  # every training row is out of fold once: the calibration sees them all
    cal_folds = calibration_folds_of(settings, None, y, True)
    model, selection, trials = select_and_fit(settings, X, y, folds, numeric, categorical, calibration_folds=cal_folds)
    best = selection.chosen
    X_te, y_te = X_all.iloc[te], y_all[te]
    proba = model.predict_proba(X_te)[:, 1]
    metrics = evaluate(y_te, proba, campaign_for(settings))
    metrics.update(model=best.candidate, train_rows=len(tr), source=str(csv), **selection_metrics(selection),
                   calibration=calibration_record(settings, cal_folds, folds, "stratified CV fold", len(tr)))
    params = {**_base_params(best, numeric, categorical, settings, X), "source_csv": str(csv.resolve()),
              "label": {"kind": "column", "column": label,
                        "definition": f"column {label} = {positive!r}" if positive is not None else f"column {label} = 1"},
              "id_column": id_column, "dropped_columns": [*drop, *dropped],
              "training_window": {"rows": len(tr), "held_out_rows": len(te), "split": "stratified, seeded"}}
    n_ref = min(settings.reference_sample_rows, len(X))
    importances = feature_importances(model, X_te, y_te, settings.random_seed)
    return Trained(model, metrics, params, X.sample(n=n_ref, random_state=settings.random_seed), importances,
                   y_te, proba, trials, best)


