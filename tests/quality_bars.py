"""The model-quality bars on generated data, one set for every generated business
(tests/test_model_quality.py: cancellation churn; tests/test_retail.py: inactivity churn)."""

from __future__ import annotations

import json

import pandas as pd

#: the champion's out-of-time ROC-AUC may trail the truth's on the same holdout by at most this
MAX_TRUTH_GAP = 0.03
#: PR-AUC at least this multiple of the base rate
MIN_PR_AUC_LIFT = 2.0
MAX_ECE = 0.03


def quality(metrics: dict, label: pd.Series, truth: pd.Series, name: str = "quality") -> dict[str, float]:
    """The champion's holdout figures and the truth's ROC-AUC on the same rows (printed as ``name``)."""
    from sklearn.metrics import roc_auc_score

    numbers = {"roc_auc": metrics["roc_auc"], "best_roc_auc": roc_auc_score(label, truth),
               "pr_auc": metrics["pr_auc"], "base_rate": metrics["base_rate"], "ece": metrics["ece"],
               "model": metrics["model"]}
    print(f"{name}:", json.dumps(numbers))
    return numbers


def check_pr_auc_and_calibration(q: dict[str, float]) -> None:
    assert q["pr_auc"] >= MIN_PR_AUC_LIFT * q["base_rate"], q
    assert q["ece"] <= MAX_ECE, q


def check_near_truth(q: dict[str, float]) -> None:
    assert q["roc_auc"] >= q["best_roc_auc"] - MAX_TRUTH_GAP, q


#: churnflow's held-out ROC-AUC may trail the best plain baseline on the same split by at most this
MAX_BASELINE_GAP = 0.001


def plain_baselines(X_train: pd.DataFrame, y_train, X_test: pd.DataFrame, y_test, numeric: list[str],
                    categorical: list[str], seed: int = 0) -> dict[str, float]:
    """The held-out ROC-AUC of plain scikit-learn models fitted on the same training rows: a
    logistic regression (median imputation, scaling, one-hot categories) and a
    HistGradientBoostingClassifier with its defaults (native missing values and categories)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def as_frame(X: pd.DataFrame, cats: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:
        out = X[numeric].astype("float64")
        for c in categorical:
            out[c] = X[c].astype("string").astype("object").astype(cats[c])
        return out

    cats = {c: pd.CategoricalDtype(sorted(X_train[c].dropna().astype(str).unique())) for c in categorical}
    Xtr, Xte = as_frame(X_train, cats), as_frame(X_test, cats)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         categorical)])
    logreg = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=5000))]).fit(Xtr, y_train)
    hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed).fit(Xtr, y_train)
    return {"logreg": float(roc_auc_score(y_test, logreg.predict_proba(Xte)[:, 1])),
            "hgb": float(roc_auc_score(y_test, hgb.predict_proba(Xte)[:, 1]))}


def check_at_least_baselines(name: str, roc_auc: float, baselines: dict[str, float], model: str = "") -> None:
    """churnflow's held-out ROC-AUC is at most MAX_BASELINE_GAP below the best plain baseline's."""
    best = max(baselines, key=lambda k: baselines[k])
    print(f"baselines {name}:", json.dumps({"churnflow": roc_auc, "model": model, **baselines}))
    assert roc_auc >= baselines[best] - MAX_BASELINE_GAP, (
        f"{name}: churnflow ({model}) ROC-AUC {roc_auc:.4f} is {baselines[best] - roc_auc:.4f} below plain "
        f"{best} {baselines[best]:.4f} on the same split")
