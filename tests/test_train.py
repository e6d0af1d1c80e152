"""Training: time split, candidates, labels, feature groups; train-table. (The registry: test_registry.py.)"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE

from pipeline.config import load_settings
from pipeline.errors import TrainingError
from pipeline.features.dataset import time_split
from pipeline.model import registry
from pipeline.model.gate import gate
from pipeline.model.pinning import pin, pinned_model


def _snapshots(dates: list[str], n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": np.tile(np.arange(n), len(dates)),
        "as_of": np.repeat(pd.to_datetime(dates), n),
        "label": np.tile([0, 1], n * len(dates) // 2),
    })


def test_time_split_holds_out_the_latest_snapshot_and_purges_overlapping_labels():
    df = _snapshots(["2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01"])
    train, holdout = time_split(df, holdout_snapshots=1, horizon_days=30)
    assert set(holdout["as_of"]) == {pd.Timestamp("2025-05-01")}
    # 2025-04-01 + 30 days = 2025-05-01 <= holdout start: kept; 2025-03-01 +30 = 03-31: kept
    assert set(train["as_of"]) == {pd.Timestamp(d) for d in ("2025-02-01", "2025-03-01", "2025-04-01")}
    # February has 28 days: its 30-day label window runs into March, so it is purged
    with pytest.raises(TrainingError, match="no training snapshot"):
        time_split(_snapshots(["2025-02-01", "2025-03-01"]), holdout_snapshots=1, horizon_days=30)


def test_time_split_needs_enough_snapshots():
    with pytest.raises(TrainingError, match="more than 1 snapshot"):
        time_split(_snapshots(["2025-02-01"]), holdout_snapshots=1, horizon_days=30)


def test_gate():
    assert gate(0.80, None, 0.01) == (True, "no champion yet")
    assert gate(0.82, 0.80, 0.01)[0] is True
    promoted, why = gate(0.805, 0.80, 0.01)
    assert promoted is False and "not promoted" in why and "0.8050" in why
    # an absolute floor: a first model no better than chance never becomes champion
    promoted, why = gate(0.52, None, 0.0, floor=0.55)
    assert promoted is False and "below the floor 0.55 (promotion_min_roc_auc)" in why
    assert gate(0.60, None, 0.0, floor=0.55)[0] is True
    # a tie is not evidence: equal ROC-AUC never promotes, with the default margin 0 or any other
    promoted, why = gate(0.7277, 0.7277, 0.0)
    assert promoted is False and "a tie is not evidence" in why
    assert gate(0.81, 0.80, 0.01)[0] is False  # exactly the margin is not more than it
    assert gate(0.7278, 0.7277, 0.0)[0] is True


def test_a_better_roc_auc_does_not_promote_a_model_worse_where_the_campaign_acts():
    from pipeline.model.gate import failed_guards, guarded

    champion = {"pr_auc": 0.179, "expected_value": 10_000.0}
    tolerances = {"pr_auc_tolerance": 0.01, "value_tolerance": 0.05}
    # the issue's rerun: ROC-AUC 0.7211 vs 0.7060, PR-AUC 0.143 vs 0.179
    failed = failed_guards({"pr_auc": 0.143, "expected_value": 10_000.0}, champion, **tolerances)
    assert len(failed) == 1 and "PR-AUC 0.1430 vs champion 0.1790" in failed[0]
    promoted, why = guarded(*gate(0.7211, 0.7060, 0.0), failed)
    assert promoted is False and why.startswith("not promoted: better on ROC-AUC") and "PR-AUC" in why
    # the campaign's value at its capacity: more than 5 % below the champion's holds it back, within it not
    failed = failed_guards({"pr_auc": 0.18, "expected_value": 9_400.0}, champion, **tolerances)
    assert len(failed) == 1 and "campaign value 9,400 vs champion 10,000" in failed[0]
    assert failed_guards({"pr_auc": 0.175, "expected_value": 9_600.0}, champion, **tolerances) == []
    assert guarded(*gate(0.7211, 0.7060, 0.0), []) == gate(0.7211, 0.7060, 0.0)
    # a negative champion value (a campaign that loses money): the tolerance is a share of its size
    assert failed_guards({"pr_auc": 0.2, "expected_value": -104.0}, {"pr_auc": 0.2, "expected_value": -100.0},
                         **tolerances) == []


def test_removed_risk_band_settings_say_what_replaced_them(tmp_path):
    config = tmp_path / "churnflow.yaml"
    config.write_text("risk_band_high: 0.6\n")
    with pytest.raises(ValueError, match="risk_band_high is no longer a setting: the risk bands are the campaign"):
        load_settings(config)


def test_scoring_without_a_champion_says_what_to_do(settings, tmp_path):
    from pipeline.context import RunContext

    with pytest.raises(registry.RegistryError, match="run the churn_training DAG"):
        pin(settings, "churn_nightly", dt.date(2025, 7, 1))
    with pytest.raises(registry.RegistryError, match="has no pinned model version"):
        _ = pinned_model(RunContext.of(settings, "churn_nightly", dt.date(2025, 7, 1)))


def test_xgboost_class_weight_is_a_searched_power_of_the_imbalance(settings):
    from pipeline.model.candidates import POS_WEIGHT_POWER, SEARCH_SPACES, candidate_pipeline

    y = np.array([1] * 10 + [0] * 90)  # 9 negatives per positive
    weights = {power: candidate_pipeline(settings, ["x"], [], "xgboost", {POS_WEIGHT_POWER: power,
                                          "model__max_depth": 2}, y).named_steps["model"]
               for power in SEARCH_SPACES["xgboost"][POS_WEIGHT_POWER]}
    assert {p: m.scale_pos_weight for p, m in weights.items()} == {0.5: 3.0, 1.0: 9.0, 0.0: 1.0}
    assert all(m.max_depth == 2 for m in weights.values())
    smote = candidate_pipeline(settings, ["x"], [], "xgboost_smote", {}, y).named_steps["model"]
    assert smote.scale_pos_weight == 1.0  # SMOTE balances the classes instead


def test_configured_xgboost_depth_and_rate_are_the_default_draw(tmp_path):
    from pipeline.config import load_settings
    from pipeline.model.candidates import SEARCH_SPACES, search_space

    settings = load_settings(data_dir=tmp_path, xgb_max_depth=5, xgb_learning_rate=0.1)
    for name in ("xgboost", "xgboost_smote"):
        space = search_space(settings, name)
        assert space["model__max_depth"] == [5, 3, 2, 4, 6]
        assert space["model__learning_rate"] == [0.1, 0.03, 0.05]  # no repeat
    assert search_space(load_settings(data_dir=tmp_path), "xgboost") == SEARCH_SPACES["xgboost"]
    assert search_space(settings, "logreg") is SEARCH_SPACES["logreg"]
    with pytest.raises(TrainingError, match="unknown candidate 'svm'"):
        search_space(settings, "svm")


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p.write_text(""), "is empty: expected a CSV with a header row"),
    (lambda p: p.mkdir(), "is a directory: pass a CSV or Parquet file"),
    (lambda p: p.write_text("just some notes\nabout churn\n"), "has a single column 'just some notes'"),
    (lambda p: p.write_text("a;b;label\n1;2;0\n"), "has a single column 'a;b;label'"),
    (lambda p: p.write_bytes(b"PAR1 truncated"), "cannot be read as Parquet"),
])
def test_train_table_gives_one_line_errors_for_files_it_cannot_read(tmp_path, capsys, make, expected):
    """These printed 30-line tracebacks (or said a directory "does not exist")."""
    from pipeline.__main__ import main

    path = tmp_path / "table.csv"
    make(path)
    assert main(["train-table", "--csv", str(path), "--label", "label"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err


def test_train_table_reads_parquet_and_warns_on_repeated_ids(settings, tmp_path, caplog):
    from pipeline.features.dataset import read_table_file

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": [1, 1, 2, 3], "x": rng.random(4), "label": [0, 1, 0, 1]})
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table_file(tmp_path / "t.parquet"), df)
    from pipeline.model.train import train_table

    big = pd.DataFrame({"id": np.r_[np.arange(400), [5, 6]], "x": rng.random(402)})
    big["label"] = (big["x"] + rng.normal(0, 0.3, 402) > 0.8).astype(int)
    big.to_parquet(tmp_path / "big.parquet")
    with caplog.at_level("WARNING"):
        train_table(settings.replace(candidates="logreg", search_iterations=1), tmp_path / "big.parquet", "label",
                    id_column="id")
    assert "4 rows of" in caplog.text and "share their id with another row (2 distinct ids repeat)" in caplog.text


def test_inactivity_churn_trains_and_says_what_churn_means(source_data):
    """label_kind: inactivity end to end through the training flow: labels, purge window,
    params, model card; the nightly's matured labels then use the model's label (not the config's)."""
    from pipeline.flows import run_training

    settings = source_data.replace(label_kind="inactivity", inactivity_days=21, candidates="logreg",
                                   search_iterations=1)
    result = run_training(settings, RUN_DATE)
    champ = registry.get_version(settings, result["train"]["version"])
    assert champ.params["label"]["kind"] == "inactivity" and champ.params["label"]["window_days"] == 21
    assert result["train"]["metrics"]["roc_auc"] > 0.6
    assert "no event and no successful payment in the 21 days" in champ.model_card_path.read_text()
    assert 0 < pd.read_parquet(result["training_set"]["path"], columns=["label"])["label"].mean() < 1


def test_run_training_without_churners_says_so_in_one_line(source_data, capsys):
    """A source without cancellations (a transactions-only business mapped in as is) used to
    reach scikit-learn's 'only one class' traceback; now run-training exits 2 with one line
    naming the snapshots, the counts and the setting to change."""
    import sqlite3

    from pipeline.__main__ import main

    with sqlite3.connect(source_data.data_dir / "source.db") as conn:
        conn.execute("DELETE FROM cancellations")
    assert main(["run-training", "--date", RUN_DATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "has one class" in err[0] and "0 churners" in err[0] and "label_kind: inactivity" in err[0], err[0]


def test_a_business_without_events_or_subscriptions_trains_on_the_groups_it_has(source_data):
    """Optional tables: declared source_tables only are ingested, and the feature groups whose
    input is absent are left out of the model (not fed as constant columns); with inactivity
    churn the population is the customers with a purchase in the look-back."""
    from pipeline.flows import run_training

    settings = source_data.replace(source_tables="customers,payments", label_kind="inactivity",
                                   feature_groups="customer,payments,purchases,events,subscription",
                                   candidates="logreg", search_iterations=1)
    result = run_training(settings, RUN_DATE)
    assert set(result["validated"]) == {"customers", "payments"}
    champ = registry.get_version(settings, result["train"]["version"])
    groups = champ.params["feature_groups"]
    assert groups["active"] == ["customer", "payments", "purchases"], groups
    assert "its table events is not declared" in groups["left_out"]["events"]
    assert groups["left_out"]["support"] == "not enabled (feature_groups)"
    used = set(champ.feature_columns)
    assert {"n_purchases_90d", "total_spend_365d", "days_since_last_success_payment", "age"} <= used
    assert not any(c.startswith(("n_events", "n_logins", "plan", "monthly_fee", "n_tickets")) for c in used), used
    # (no quality bar here: this generated business bills monthly, so a 30-day inactivity window is
    # mostly the billing calendar; the non-contractual generator of issue 14 is where that bar belongs)


def test_columns_with_one_value_on_every_training_row_are_left_out():
    from pipeline.model.train import constant_columns

    df = pd.DataFrame({"zero": [0, 0, 0], "varies": [0, 1, 0], "all_missing": [None, None, None],
                       "some_missing": [1.0, None, 1.0], "one_category": ["a", "a", "a"]})
    assert constant_columns(df, list(df.columns)) == ["zero", "all_missing", "one_category"]


def _telco_like(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """A table shaped like the public telco churn file: text ids, TotalCharges as text with a few
    blanks (new customers), and a Yes/No label that depends on tenure and charges."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    monthly = rng.uniform(20, 110, n).round(2)
    total = (tenure * monthly).round(2).astype(str).astype(object)
    total[tenure == 0] = " "
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    logit = -0.05 * tenure + 0.02 * monthly + np.where(contract == "Month-to-month", 1.0, -1.0) - 0.5
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return pd.DataFrame({"customerID": [f"{i:04d}-{rng.choice(list('ABCDEFGH'))}" for i in range(n)],
                         "tenure": tenure, "MonthlyCharges": monthly, "TotalCharges": total,
                         "Contract": contract, "Churn": churn})


def test_train_table_reads_numbers_with_blanks_as_numbers_and_a_text_label_with_positive(settings, tmp_path, caplog):
    """TotalCharges (numbers as text with blanks) was dropped as 'text-like'; a Yes/No label needs
    --positive, and the model card says which value is churn."""
    from pipeline.model.train import train_table

    df = _telco_like()
    path = tmp_path / "telco.csv"
    df.to_csv(path, index=False)
    blanks = int((df["TotalCharges"] == " ").sum())
    assert blanks > 0
    with caplog.at_level("INFO"):
        trained = train_table(settings.replace(candidates="logreg", search_iterations=1), path, "Churn",
                              id_column="customerID", positive="Yes")
    assert "TotalCharges" in trained.params["numeric_features"], trained.params
    assert f"TotalCharges holds numbers as text: read as numbers, {blanks} blank value(s)" in caplog.text
    assert trained.params["label"]["definition"] == "column Churn = 'Yes'"
    assert trained.metrics["roc_auc"] > 0.65


def test_train_table_cli_says_what_to_do_with_a_text_label(tmp_path, capsys):
    from pipeline.__main__ import main

    path = tmp_path / "telco.csv"
    _telco_like(200).to_csv(path, index=False)
    assert main(["train-table", "--csv", str(path), "--label", "Churn", "--id", "customerID"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--positive VALUE" in err, err
    assert main(["train-table", "--csv", str(path), "--label", "Churn", "--positive", "Maybe"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no row of 'Churn' has that value" in err and "'Yes'" in err, err


def test_provided_labels_train_on_the_businesss_own_label_dates(source_data):
    """label_kind: provided: the business's labels table (customer_id, label_date, churned) is
    ingested, its label dates whose horizon has closed are the snapshots, and each training
    row's label is the one the business gave."""
    import sqlite3

    from pipeline.flows import run_training

    dates = ["2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01"]
    with sqlite3.connect(source_data.data_dir / "source.db") as conn:
        conn.execute("CREATE TABLE labels (customer_id INTEGER, label_date TIMESTAMP, churned INTEGER)")
        for day in dates:  # the business's own rule: a cancellation in the 30 days from the label date
            conn.execute(
                "INSERT INTO labels SELECT c.customer_id, ?, EXISTS (SELECT 1 FROM cancellations x WHERE "
                "x.customer_id = c.customer_id AND x.cancelled_at >= ? AND x.cancelled_at < date(?, '+30 days')) "
                "FROM customers c WHERE c.signup_date < ? AND NOT EXISTS (SELECT 1 FROM cancellations x WHERE "
                "x.customer_id = c.customer_id AND x.cancelled_at < ?)", (f"{day} 00:00:00", day, day, day, day))
        given = pd.read_sql("SELECT customer_id, date(label_date) AS as_of, churned FROM labels", conn)
    settings = source_data.replace(label_kind="provided", horizon_days=30, training_snapshots=4, candidates="logreg",
                                   search_iterations=1)
    result = run_training(settings, RUN_DATE)
    champ = registry.get_version(settings, result["train"]["version"])
    assert champ.params["label"]["kind"] == "provided" and "the business's own label" in champ.params["label"]["definition"]
    tset = pd.read_parquet(result["training_set"]["path"], columns=["customer_id", "as_of", "label"])
    assert sorted(pd.to_datetime(tset["as_of"]).dt.date.astype(str).unique()) == dates
    rows = tset.assign(as_of=pd.to_datetime(tset["as_of"]).dt.date.astype(str)).merge(
        given, on=["customer_id", "as_of"], how="left", validate="one_to_one")
    assert rows["churned"].notna().all() and (rows["label"] == rows["churned"]).all()
    assert len(rows) >= 0.9 * len(given) and 0 < rows["label"].mean() < 0.5


def _trial(name: str, y_folds: list[np.ndarray], scores: list[np.ndarray]):
    from sklearn.metrics import roc_auc_score

    from pipeline.model.candidates import Trial

    aucs = [float(roc_auc_score(y, p)) for y, p in zip(y_folds, scores, strict=True)]
    return Trial(name, {}, float(np.mean(aucs)), 0.0, [], aucs, scores)


def test_within_one_standard_error_the_simpler_candidate_wins():
    """The search chased noise: XGBoost chosen on a CV mean a hair above a logistic regression
    that then did better on the holdout. Now a difference within one standard error (paired,
    on the same folds' rows) buys no complexity; one beyond it does."""
    from pipeline.model.candidates import choose, difference_std_error

    rng = np.random.default_rng(0)
    y_folds = [(rng.uniform(size=1500) < 0.1).astype(int) for _ in range(2)]
    signal = [y + rng.normal(0, 1.2, y.size) for y in y_folds]
    close = [s + rng.normal(0, 0.3, s.size) for s in signal]       # nearly the same ranking, a little noise
    worse = [y + rng.normal(0, 2.5, y.size) for y in y_folds]      # clearly weaker
    boosting = _trial("xgboost", y_folds, signal)
    near_lr = _trial("logreg", y_folds, close)
    far_lr = _trial("logreg", y_folds, worse)
    assert boosting.cv_roc_auc > near_lr.cv_roc_auc  # the complex one is ahead on the mean ...
    se = difference_std_error(boosting, near_lr, y_folds)
    assert 0 < boosting.cv_roc_auc - near_lr.cv_roc_auc <= se  # ... by less than its standard error
    picked = choose([boosting, near_lr], y_folds)
    assert picked.chosen is near_lr and picked.best is boosting
    assert picked.margin == pytest.approx(boosting.cv_roc_auc - near_lr.cv_roc_auc) and picked.std_error == se
    assert "within one standard error" in picked.reason and "the simpler candidate wins" in picked.reason
    picked = choose([boosting, far_lr], y_folds)
    assert picked.chosen is boosting and picked.margin == 0.0 and "more than one standard error" in picked.reason
    record = picked.record()
    assert record["chosen"] == "xgboost" and set(record["families"]) == {"xgboost", "logreg"}
    # the plain histogram boosting (its library defaults first) is the tree reference: within one standard
    # error a hand-configured forest or XGBoost does not displace it (mlc_churn_5000: the forest, chosen 0.0005
    # behind HGB in CV, was 0.0107 below it on the holdout); beyond one standard error they do
    plain = _trial("hgb", y_folds, close)
    forest = _trial("random_forest", y_folds, signal)
    assert choose([boosting, forest, plain], y_folds).chosen is plain
    assert choose([forest, _trial("hgb", y_folds, worse)], y_folds).chosen is forest
    assert choose([forest, boosting, far_lr], y_folds).chosen is forest  # the forest before XGBoost
    assert "logreg < hgb < random_forest < xgboost" in choose([plain], y_folds).record()["rule"]
    # the same family: the higher mean wins
    assert choose([_trial("xgboost", y_folds, close), boosting], y_folds).chosen is boosting


def test_paired_auc_difference_variance_matches_a_bootstrap():
    from sklearn.metrics import roc_auc_score

    from pipeline.model.candidates import paired_auc_difference_variance

    rng = np.random.default_rng(1)
    y = (rng.uniform(size=2000) < 0.15).astype(int)
    a = y + rng.normal(0, 1.0, y.size)
    b = a + rng.normal(0, 0.7, y.size)
    diffs = []
    for _ in range(300):
        i = rng.integers(0, y.size, y.size)
        diffs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert paired_auc_difference_variance(y, a, b) == pytest.approx(np.var(diffs), rel=0.3)


def test_train_table_fits_on_every_training_row_and_calibrates_out_of_fold(settings, tmp_path):
    """Before, a third of a small table never reached the model (it only calibrated)."""
    from pipeline.model.candidates import CrossFitCalibrated
    from pipeline.model.train import train_table

    path = tmp_path / "telco.csv"
    _telco_like(900).to_csv(path, index=False)
    trained = train_table(settings.replace(candidates="logreg,hgb", search_iterations=1), path, "Churn",
                          id_column="customerID", positive="Yes")
    model, metrics = trained.model, trained.metrics
    assert isinstance(model, CrossFitCalibrated)
    assert model.estimator.named_steps["prep"].n_features_in_ == len(trained.params["numeric_features"]) + len(
        trained.params["categorical_features"])
    calibration = metrics["calibration"]
    # train-table's stratified folds cover every training row once: all of them calibrate, all of them fit
    assert calibration["rows"] == calibration["model_rows"] == metrics["train_rows"] == 675
    assert "cross-fitted" in calibration["description"]
    assert metrics["selection"]["chosen"] == metrics["model"] and "selection_cv_margin" in metrics
    # monotone: calibration never reorders the pipeline's scores
    X = trained.reference
    raw, calibrated = model.estimator.predict_proba(X)[:, 1], model.predict_proba(X)[:, 1]
    assert np.all(np.diff(calibrated[np.argsort(raw, kind="stable")]) >= -1e-12)


def test_hgb_candidate_handles_missing_values_and_unseen_categories_and_explains(settings):
    from pipeline.model.candidates import candidate_pipeline
    from pipeline.model.explain import column_owners

    rng = np.random.default_rng(2)
    X = pd.DataFrame({"x": rng.normal(size=400), "plan": pd.Categorical(rng.choice(["a", "b", None], 400))})
    X.loc[::7, "x"] = np.nan
    y = ((X["x"].fillna(0) + (X["plan"] == "a")) + rng.normal(0, 0.5, 400) > 0.8).astype(int).to_numpy()
    pipe = candidate_pipeline(settings, ["x"], ["plan"], "hgb", {}, y).fit(X, y)
    unseen = pd.DataFrame({"x": [np.nan, 1.0], "plan": pd.Categorical(["zzz", "a"])})
    assert np.isfinite(pipe.predict_proba(unseen)).all()
    assert list(column_owners(pipe.named_steps["prep"], ["x"], ["plan"])) == ["x", "plan"]


@pytest.mark.parametrize("name", ["logreg", "hgb", "random_forest", "xgboost"])
def test_a_missing_category_scores_as_in_training_however_the_night_reads_it(settings, name):
    """The bug: training reads a categorical feature as a pandas categorical (missing: NaN, the
    one-hot path's "missing" category), a night reads the same column from Parquet as text
    (missing: None); the encoders took None for an unknown category, so a customer without a
    value scored 0.38 instead of the 0.90 its missing value had learned (XGBoost)."""
    from pipeline.model.candidates import build_pipeline

    rng = np.random.default_rng(0)
    text = np.where(rng.random(600) < 0.5, "a", "b").astype(object)
    text[:100] = None
    y = (rng.random(600) < 0.3).astype(int)
    y[:100] = rng.random(100) < 0.8  # a missing value: mostly churners
    train = pd.DataFrame({"x": rng.normal(size=600), "t": pd.Categorical(text)})  # as read_training_set reads it
    pipe = build_pipeline(settings, ["x"], ["t"], name).fit(train, y)
    learned = pipe.predict_proba(pd.DataFrame({"x": [0.0], "t": pd.Categorical([np.nan], categories=["a", "b"])}))
    nights = [pd.DataFrame({"x": [0.0, 0.0], "t": pd.Series(["a", missing], dtype=object)}).iloc[[1]]
              for missing in (None, np.nan, pd.NA)]
    nights.append(pd.DataFrame({"x": [0.0], "t": pd.Series([None], dtype=object)}))  # a piece where no one has one
    for night in nights:
        assert pipe.predict_proba(night)[0, 1] == pytest.approx(learned[0, 1], abs=1e-9), (name, night["t"].tolist())
    assert learned[0, 1] > pipe.predict_proba(pd.DataFrame({"x": [0.0], "t": ["a"]}))[0, 1]


def test_calibration_folds_cover_every_training_row_once_with_each_customer_on_one_side(settings):
    """The cross-fitted calibration scores every training row with a model that never saw its
    customer; at scale (the search on a sample) the search's folds calibrate, no extra fit."""
    from pipeline.model.train import calibration_folds_of

    rng = np.random.default_rng(4)
    customers = pd.Series(np.repeat(np.arange(300), 3))  # three snapshots of 300 customers
    y = (rng.uniform(size=len(customers)) < 0.2).astype(int)
    folds = calibration_folds_of(settings, customers, y, searched_all=True)
    assert folds is not None and len(folds) == settings.calibration_folds == 5
    valid = np.concatenate([va for _, va in folds])
    assert np.array_equal(np.sort(valid), np.arange(len(y)))
    for train_idx, valid_idx in folds:
        assert not set(customers.iloc[train_idx]) & set(customers.iloc[valid_idx])
    assert calibration_folds_of(settings, customers, y, searched_all=False) is None
    # with snapshots: each fold validates its customers' rows of the latest one, its model fitted on every
    # other row (the other customers' latest rows, its own customers' earlier rows whose label window closed)
    as_of = pd.Series(np.tile(pd.to_datetime(["2025-03-01", "2025-04-01", "2025-05-01"]), 300))
    folds = calibration_folds_of(settings, customers, y, True, as_of)
    latest = np.flatnonzero(as_of == as_of.max())
    assert np.array_equal(np.sort(np.concatenate([va for _, va in folds])), latest)
    for train_idx, valid_idx in folds:
        assert len(train_idx) == len(y) - len(valid_idx) and not set(train_idx) & set(valid_idx)
    weekly = calibration_folds_of(settings.replace(horizon_days=30), customers, y, True,
                                  pd.Series(np.tile(pd.to_datetime(["2025-04-10", "2025-04-17", "2025-04-24"]), 300)))
    for train_idx, valid_idx in weekly:  # a validated customer's rows of 7 and 14 days before are left out
        assert not set(customers.iloc[train_idx]) & set(customers.iloc[valid_idx])
