"""Reasons per customer (pipeline.model.explain): exact contributions for XGBoost and logistic
regression, grouped to the catalogue's features, and the top reasons as an analyst reads them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_settings
from pipeline.model.explain import contributions, explain, inner_pipeline, label

NUMERIC = ["n_failed_payments_180d", "days_since_last_login", "tenure_days", "no_events_90d_flag"]
CATEGORICAL = ["plan"]


def _business(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven by failed payments, days without a login and the basic plan; tenure is noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "n_failed_payments_180d": rng.poisson(0.3, n), "days_since_last_login": rng.exponential(5, n).round(),
        "tenure_days": rng.integers(30, 900, n), "no_events_90d_flag": (rng.random(n) < 0.05).astype(int),
        "plan": rng.choice(["basic", "standard", "premium"], n, p=[0.3, 0.5, 0.2]),
    })
    logit = -3 + 1.2 * X["n_failed_payments_180d"] + 0.15 * X["days_since_last_login"] + 1.0 * (X["plan"] == "basic")
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()


def _calibrated(name: str, X: pd.DataFrame, y: np.ndarray, numeric: list[str] = NUMERIC,
                categorical: list[str] = CATEGORICAL):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from pipeline.model.candidates import build_pipeline

    pipe = build_pipeline(load_settings(config_file=None), numeric, categorical, name)
    pipe.fit(X.iloc[:2000], y[:2000])
    return CalibratedClassifierCV(FrozenEstimator(pipe), method="sigmoid").fit(X.iloc[2000:], y[2000:])


@pytest.mark.parametrize("name", ["xgboost", "logreg"])
def test_contributions_are_exact_and_grouped_to_the_catalogues_features(name):
    X, y = _business()
    model = _calibrated(name, X, y)
    contrib = contributions(model, X.iloc[:200], X, NUMERIC, CATEGORICAL)
    assert list(contrib.columns) == NUMERIC + CATEGORICAL  # the one-hot columns summed into "plan"
    pipe = inner_pipeline(model)
    prep, clf = pipe.named_steps["prep"], pipe.named_steps["model"]
    if name == "xgboost":  # TreeSHAP: the contributions and the bias add up to the model's margin
        import xgboost as xgb

        margin = clf.get_booster().predict(xgb.DMatrix(prep.transform(X.iloc[:200])), output_margin=True)
        bias = margin - contrib.sum(axis=1).to_numpy()
        np.testing.assert_allclose(bias, bias[0], atol=1e-4)
    else:  # linear SHAP: the contributions add up to f(x) - f(mean of the reference)
        mean = prep.transform(X).mean(axis=0)
        expected = clf.decision_function(prep.transform(X.iloc[:200])) - float(mean @ clf.coef_[0] + clf.intercept_[0])
        np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), expected, atol=1e-6)
    # the learned drivers carry the weight, the noise does not
    weight = contrib.abs().mean()
    assert weight["n_failed_payments_180d"] > weight["tenure_days"] and weight["plan"] > weight["tenure_days"]


def test_a_customers_reasons_say_what_and_what_is_usual():
    X, y = _business()
    model = _calibrated("xgboost", X, y)
    risky = pd.DataFrame([{"n_failed_payments_180d": 4, "days_since_last_login": 21.0, "tenure_days": 400,
                           "no_events_90d_flag": 0, "plan": "basic"}])
    why = explain(model, risky, X, NUMERIC, CATEGORICAL)
    assert list(why.columns) == ["reason_1", "reason_2", "reason_3"]
    given = set(why.iloc[0])
    assert "failed payments in the last 180 days: 4 (usually 0)" in given, given
    assert "days since the last login: 21 (usually 3)" in given or "days since the last login: 21 (usually 4)" in given, given
    assert "plan: basic (usually standard)" in given, given
    # a customer with nothing that raises the risk has fewer reasons, never made-up ones
    calm = pd.DataFrame([{"n_failed_payments_180d": 0, "days_since_last_login": 0.0, "tenure_days": 400,
                          "no_events_90d_flag": 0, "plan": "premium"}])
    assert explain(model, calm, X, NUMERIC, CATEGORICAL).iloc[0].isna().sum() >= 1


@pytest.mark.parametrize("name", ["xgboost", "logreg", "random_forest"])
@pytest.mark.parametrize(("numeric", "categorical"), [(NUMERIC, []), ([], CATEGORICAL)], ids=["no-category", "no-number"])
def test_a_model_without_categorical_or_numeric_features_explains_its_scores(name, numeric, categorical):
    """A shop with no category column (no demographics, no plans) trained a pipeline whose
    categorical branch has no columns, so its one-hot encoder was never fitted: every night died
    in the reasons step (AttributeError: 'OneHotEncoder' object has no attribute 'categories_').
    Without any category, or any number, the reasons and the importances come out."""
    from pipeline.model.explain import mean_abs_contributions

    X, y = _business()
    model = _calibrated(name, X, y, numeric, categorical)
    rows = X.iloc[:300]
    contrib = contributions(model, rows, X, numeric, categorical)
    assert list(contrib.columns) == numeric + categorical and contrib.abs().to_numpy().sum() > 0
    why = explain(model, rows, X, numeric, categorical)
    assert list(why.columns) == ["reason_1", "reason_2", "reason_3"] and why["reason_1"].notna().any()
    driver = "failed payments in the last 180 days: " if numeric else "plan: "
    assert why["reason_1"].str.startswith(driver).any(), why["reason_1"].value_counts()
    importance = mean_abs_contributions(model, rows, X, numeric, categorical)
    assert list(importance.index) == numeric + categorical and (importance >= 0).all()


def test_feature_names_read_as_words():
    """Issue 37: reasons leaked feature names ("total duration s in 7 days: 387"); they read in the
    catalogue's words now, every catalogue feature has its own label, and values carry their unit."""
    from pipeline.features.catalogue import feature_specs
    from pipeline.model.explain import _value

    assert label("n_logins_30d") == "logins in the last 30 days"
    assert label("no_events_90d_flag") == "no activity in the last 90 days"
    assert label("trend_events_7d_vs_90d") == "daily activity, last 7 days vs last 90 days (ratio)"
    assert label("total_duration_s_7d") == "time in sessions in the last 7 days"
    assert label("monthly_fee") == "monthly fee"
    assert label("my_own_score_14d") == "my own score in 14 days"  # a train-table column: words all the same
    names = [f.name for f in feature_specs((3, 14, 60))]
    words = [label(n) for n in names]
    assert len(set(words)) == len(names) and not any("_" in w for w in words), words
    assert (_value("total_duration_s_7d", 387.0), _value("total_duration_s_7d", 9000.0)) == ("6 min", "2.5 h")
    assert (_value("billing_change_pct_90d", 12.4), _value("downgrade_90d_flag", 1)) == ("+12%", "yes")


def test_the_fast_attribution_keeps_the_drivers_and_exact_rows_are_exact():
    """A night gets exact TreeSHAP for the customers at risk and XGBoost's faster path
    attribution for the others: both rank the real drivers first."""
    X, y = _business()
    model = _calibrated("xgboost", X, y)
    rows = X.iloc[:300]
    exact = contributions(model, rows, X, NUMERIC, CATEGORICAL)
    mixed = contributions(model, rows, X, NUMERIC, CATEGORICAL, exact=np.arange(300) < 100)
    np.testing.assert_allclose(mixed.iloc[:100].to_numpy(), exact.iloc[:100].to_numpy(), rtol=1e-5, atol=1e-5)
    fast = mixed.iloc[100:].abs().mean()
    assert fast["n_failed_payments_180d"] > fast["tenure_days"] and fast["plan"] > fast["tenure_days"]
    # both add up to the same margin per row (only the split between features differs)
    np.testing.assert_allclose(mixed.iloc[100:].sum(axis=1), exact.iloc[100:].sum(axis=1), atol=1e-3)


def test_feature_importance_drift_follows_what_drives_tonights_scores():
    """mean |SHAP| per feature (chunked, exact) tonight vs the reference: a night whose customers all have the same
    plan loses the plan's importance, and its failed payments gain; the frame ranks both sides."""
    from pipeline.model import explain as ex
    from pipeline.monitoring.metrics import importance_drift

    X, y = _business()
    model = _calibrated("xgboost", X, y)
    reference = ex.mean_abs_contributions(model, X, X, NUMERIC, CATEGORICAL)
    whole = contributions(model, X, X, NUMERIC, CATEGORICAL).abs().mean()
    old, ex.CHUNK_ROWS = ex.CHUNK_ROWS, 700
    try:
        pd.testing.assert_series_equal(ex.mean_abs_contributions(model, X, X, NUMERIC, CATEGORICAL), whole.astype(float),
                                       atol=1e-6)
    finally:
        ex.CHUNK_ROWS = old
    tonight = X.assign(plan="standard", n_failed_payments_180d=X["n_failed_payments_180d"] + 2)
    frame = importance_drift("2025-06-01", "v3", ex.mean_abs_contributions(model, tonight, X, NUMERIC, CATEGORICAL),
                             reference)
    by = frame.set_index("feature")
    assert list(frame["rank"]) == list(range(1, 6)) and sorted(by["reference_rank"]) == [1, 2, 3, 4, 5]
    assert by.loc["plan", "change"] < 0 and by.loc["n_failed_payments_180d", "change"] > 0
    assert by.loc["plan", "ratio"] == pytest.approx(by.loc["plan", "mean_abs_shap"] / by.loc["plan", "reference_mean_abs_shap"])
    assert set(frame["model_version"]) == {"v3"}


def test_grouping_and_reasons_give_what_one_groupby_and_one_text_per_row_gave():
    """The night's fast paths (one-column features taken as they are, one text per distinct
    value) give exactly what the plain ones give: a pandas groupby over every column and one
    :func:`_value` per row, missing values and one-hot groups included."""
    from pipeline.features.catalogue import value_unit
    from pipeline.model.explain import _value, grouped_by_owner, reasons

    rng = np.random.default_rng(3)
    owners = np.array(["plan", "tenure_days", "plan", "plan", "total_duration_s_7d"], dtype=object)
    values = rng.normal(size=(500, len(owners))).astype("float32")
    features = ["tenure_days", "plan", "total_duration_s_7d", "auto_renew"]  # auto_renew: no column, 0
    plain = pd.DataFrame(values, columns=owners).T.groupby(level=0, sort=False).sum().T
    plain = plain.reindex(columns=features).fillna(0.0)
    fast = grouped_by_owner(values, owners, features)
    assert fast.equals(plain)
    X = pd.DataFrame({"tenure_days": rng.integers(0, 5, 500).astype("float64"),
                      "plan": rng.choice(["basic", "premium", None], 500).astype(object),
                      "total_duration_s_7d": pd.array(rng.integers(0, 9000, 500), dtype="Int64"),
                      "auto_renew": rng.integers(0, 2, 500)})
    X.loc[::7, "tenure_days"] = np.nan
    X.loc[1::7, "tenure_days"] = -0.0  # "-0", beside the zeros' "0"
    X.loc[::11, "total_duration_s_7d"] = pd.NA
    typical = {"tenure_days": 2.0, "plan": "basic", "total_duration_s_7d": 600.0, "auto_renew": 1}
    got = reasons(fast, X, typical)
    order = np.argsort(-fast.to_numpy(dtype="float64"), axis=1)
    assert fast.iloc[1::7]["tenure_days"].gt(0).any() and fast.iloc[2::7]["tenure_days"].gt(0).any()
    for i in [*range(0, 500, 7), *range(1, 500, 7), *range(2, 500, 7), 11, 77]:
        for k in range(3):
            name = features[order[i, k]]
            if fast.iloc[i][name] > 0:
                tail = f" (usually {_value(name, typical[name])})"
                assert got.iloc[i, k] == f"{label(name)}: {_value(name, X[name].astype(object).iloc[i])}{tail}"
            else:
                assert got.iloc[i, k] is None
    assert value_unit("total_duration_s_7d") == "seconds" and got.notna().any().all()
