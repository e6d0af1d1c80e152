"""Reasons for the tree ensembles without their own SHAP (pipeline.model.explain.tree_contributions):
scikit-learn's histogram gradient boosting and random forest explained along each row's path
(Saabas, as XGBoost's ``approx_contribs``): the contributions and the bias add up to the model's
own raw prediction, with missing values, native categories and categories never seen in training."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_settings
from pipeline.model.candidates import build_pipeline
from pipeline.model.explain import contributions, explain, inner_pipeline, path_table, tree_contributions

NUMERIC = ["n_failed_payments_180d", "days_since_last_login", "tenure_days"]
CATEGORICAL = ["plan", "country"]


def _business(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven by failed payments, days without a login (often missing) and the basic plan;
    tenure and country are noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "n_failed_payments_180d": rng.poisson(0.4, n).astype(float),
        "days_since_last_login": rng.exponential(5, n).round(),
        "tenure_days": rng.integers(30, 900, n).astype(float),
        "plan": rng.choice(["basic", "standard", "premium", "team"], n, p=[0.3, 0.4, 0.2, 0.1]).astype(object),
        "country": rng.choice(np.array(["FR", "DE", "NL", None], dtype=object), n),
    })
    logit = (-2.5 + 1.2 * X["n_failed_payments_180d"] + 0.15 * X["days_since_last_login"]
             + 1.5 * (X["plan"] == "basic"))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    X.loc[rng.random(n) < 0.15, "days_since_last_login"] = np.nan  # missing after the label: missing says nothing
    X.loc[rng.random(n) < 0.05, "plan"] = None
    return X, y


def _fitted(name: str, X: pd.DataFrame, y: np.ndarray):
    return build_pipeline(load_settings(config_file=None), NUMERIC, CATEGORICAL, name).fit(X, y)


def _new_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Rows to explain: missing numbers, missing categories and categories never seen in training."""
    rows = X.iloc[:600].copy()
    rows.loc[rows.index[:50], "plan"] = "enterprise"
    rows.loc[rows.index[50:100], "country"] = "ZZ"
    rows.loc[rows.index[100:150], ["n_failed_payments_180d", "days_since_last_login"]] = np.nan
    rows.loc[rows.index[150:200], "plan"] = None
    return rows


@pytest.mark.parametrize("name", ["hgb", "random_forest"])
def test_path_contributions_and_the_bias_add_up_to_the_models_own_prediction(name):
    X, y = _business()
    pipe = _fitted(name, X, y)
    prep, clf = pipe.named_steps["prep"], pipe.named_steps["model"]
    rows = _new_rows(X)
    transformed = prep.transform(rows)
    values, bias = tree_contributions(clf, transformed)
    # HGB: the log-odds (its raw prediction); the forest: the churn probability (mean over its trees)
    raw = clf._raw_predict(transformed)[:, 0] if name == "hgb" else clf.predict_proba(transformed)[:, 1]
    np.testing.assert_allclose(values.sum(axis=1) + bias, raw, rtol=0, atol=1e-9)
    if name == "hgb":  # the native categories were split on, and the missing values went their own way
        nodes = np.concatenate([p.nodes for (p,) in clf._predictors])
        assert nodes["is_categorical"].any() and (nodes["missing_go_to_left"][~nodes["is_leaf"].astype(bool)] == 0).any()
    if name == "hgb":  # the bias: the count-weighted mean of the leaves, the mean over the training rows
        np.testing.assert_allclose(bias, clf._raw_predict(prep.transform(X))[:, 0].mean(), rtol=0, atol=1e-9)
    contrib = contributions(pipe, rows, X, NUMERIC, CATEGORICAL)
    assert list(contrib.columns) == NUMERIC + CATEGORICAL  # (the forest's one-hot columns summed per feature)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + bias, raw, rtol=0, atol=1e-9)
    weight = contrib.abs().mean()
    assert weight["n_failed_payments_180d"] > weight["tenure_days"] and weight["plan"] > weight["country"], weight


def test_one_trees_table_is_the_change_of_the_expected_value_along_each_path():
    """A hand-made tree: root splits on column 1, its left child on column 0; leaves 2 (10 rows,
    value 1), 3 (30 rows, value 3), 4 (60 rows, value 0). Node 1's expected value is 2.5, the
    root's 1.0: leaf 3 gets +1.5 from column 1 and +0.5 from column 0."""
    left = np.array([1, 2, -1, -1, -1])
    right = np.array([4, 3, -1, -1, -1])
    is_leaf = left < 0
    leaves, table, root = path_table(left, right, is_leaf, np.array([1, 0, 0, 0, 0]),
                                     np.array([0.0, 0.0, 1.0, 3.0, 0.0]), np.array([0, 0, 10, 30, 60]), 3)
    assert list(leaves) == [2, 3, 4] and root == pytest.approx(1.0)
    np.testing.assert_allclose(table, [[-1.5, 1.5, 0], [0.5, 1.5, 0], [0, -1.0, 0]])
    np.testing.assert_allclose(table.sum(axis=1) + root, [1.0, 3.0, 0.0])


def test_a_served_hgb_champion_gives_its_reasons():
    """The served model: calibrated over a frozen HGB pipeline, saved and loaded again; its
    reasons come from its own trees (not one prediction per feature) and name the real drivers."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    X, y = _business(6000, seed=1)
    pipe = build_pipeline(load_settings(config_file=None), NUMERIC, CATEGORICAL, "hgb").fit(X.iloc[:4000], y[:4000])
    served = pickle.loads(pickle.dumps(CalibratedClassifierCV(FrozenEstimator(pipe), method="sigmoid")
                                       .fit(X.iloc[4000:], y[4000:])))
    assert type(inner_pipeline(served).named_steps["model"]).__name__ == "HistGradientBoostingClassifier"
    risky = pd.DataFrame([{"n_failed_payments_180d": 4.0, "days_since_last_login": 25.0, "tenure_days": 400.0,
                           "plan": "basic", "country": "FR"}])
    why = explain(served, risky, X, NUMERIC, CATEGORICAL)
    assert list(why.columns) == ["reason_1", "reason_2", "reason_3"]
    given = set(why.iloc[0].dropna())
    assert "failed payments in the last 180 days: 4 (usually 0)" in given, given
    assert "plan: basic (usually standard)" in given, given
    # the log-odds contributions add up to the inner model's raw prediction, calibration aside
    rows = X.iloc[4000:4300]
    inner = inner_pipeline(served)
    transformed = inner.named_steps["prep"].transform(rows)
    _, bias = tree_contributions(inner.named_steps["model"], transformed)
    contrib = contributions(served, rows, X, NUMERIC, CATEGORICAL)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + bias,
                               inner.named_steps["model"]._raw_predict(transformed)[:, 0], atol=1e-9)


@pytest.mark.parametrize(("numeric", "categorical"), [(NUMERIC, []), ([], CATEGORICAL)], ids=["no-category", "no-number"])
def test_hgb_without_categorical_or_numeric_features_adds_up(numeric, categorical):
    """Without a category HGB has no encoder of its own (its columns keep their order); without a
    number every column is a native category."""
    X, y = _business(3000, seed=2)
    pipe = build_pipeline(load_settings(config_file=None), numeric, categorical, "hgb").fit(X, y)
    rows = _new_rows(X)
    contrib = contributions(pipe, rows, X, numeric, categorical)
    assert list(contrib.columns) == numeric + categorical and contrib.abs().to_numpy().sum() > 0
    transformed = pipe.named_steps["prep"].transform(rows[numeric + categorical])
    _, bias = tree_contributions(pipe.named_steps["model"], transformed)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + bias,
                               pipe.named_steps["model"]._raw_predict(transformed)[:, 0], rtol=0, atol=1e-9)
