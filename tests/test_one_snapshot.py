"""Too few snapshots for an out-of-time validation (issue 32, point 3): one labelled snapshot
(``label_kind: provided`` on one date, the usual labelled extract) trains with a stratified
holdout of the customers and stratified CV inside the snapshot, says so in the log, the model
card, MLflow and the model's params/metrics, and scores the next night; a labelled set that
cannot train (no labelled row, one class) still fails in one line saying which."""

from __future__ import annotations

import itertools
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE

from pipeline.config import Settings, load_settings
from pipeline.errors import TrainingError
from pipeline.features.dataset import stratified_folds, stratified_holdout, time_split, time_validation_gap
from pipeline.model.candidates import time_folds

#: one training run as cheap as it gets: one candidate, one draw, one fold, every first model served
CHEAP = {"CHURNFLOW_CANDIDATES": "logreg", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1",
         "CHURNFLOW_PROMOTION_MIN_ROC_AUC": "0", "CHURNFLOW_CONCEPT_DRIFT_DETECTORS": "",
         "CHURNFLOW_IMPORTANCE_SAMPLE_ROWS": "0"}


def test_the_time_split_needs_a_holdout_a_purged_training_snapshot_and_a_time_fold():
    """time_validation_gap is None exactly where time_split and a time-CV fold both work."""
    enough = ["2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01"]
    assert time_validation_gap(enough, 1, 30) is None
    df = pd.DataFrame({"as_of": pd.to_datetime(enough), "label": [0, 1, 0, 1]})
    train, _ = time_split(df, 1, 30)
    assert time_folds(train["as_of"], 1, 30)  # what train() then does
    assert "1 snapshot(s) (2025-06-01)" in time_validation_gap(["2025-06-01"], 1, 30)
    assert "leave no time-CV fold" in time_validation_gap(["2025-05-01", "2025-06-01"], 1, 30)
    # February's 30-day window runs into March: no fold although there are three snapshots
    assert "leave no time-CV fold" in time_validation_gap(["2025-02-01", "2025-03-01", "2025-04-01"], 1, 30)
    # a 60-day window (non-renewal: horizon + grace) purges the snapshot before the holdout
    assert "no training snapshot's 60-day label window closes before the holdout 2025-06-01" in \
        time_validation_gap(["2025-05-01", "2025-06-01"], 1, 60)
    assert time_validation_gap(["2024-12-01", "2025-03-01", "2025-06-01"], 1, 60) is None
    # and it agrees with what time_split and time_folds do, for any month starts, window and holdout
    months = pd.date_range("2024-10-01", "2025-06-01", freq="MS")
    for chosen in itertools.chain.from_iterable(itertools.combinations(months, k) for k in (1, 2, 3, 4)):
        for window, holdout in ((30, 1), (60, 1), (30, 2)):
            frame = pd.DataFrame({"as_of": list(chosen)})
            try:
                train, _ = time_split(frame, holdout, window)
                time_folds(train["as_of"], 1, window)
                works = True
            except TrainingError:
                works = False
            assert (time_validation_gap(list(chosen), holdout, window) is None) == works, (chosen, window, holdout)


def test_stratified_holdout_and_folds_keep_a_customer_on_one_side_and_the_churn_share():
    rng = np.random.default_rng(0)
    customers = pd.Series(np.tile(np.arange(400), 2))  # two snapshots of the same 400 customers
    y = (rng.random(800) < 0.1).astype(int)
    train, held = stratified_holdout(customers, y, 0.25, seed=7)
    assert sorted(np.r_[train, held].tolist()) == list(range(800))
    assert not set(customers.iloc[train]) & set(customers.iloc[held])
    churner = pd.Series(y).groupby(customers).max()
    assert abs(churner[customers.iloc[held].unique()].mean() - churner.mean()) < 0.02
    assert len(customers.iloc[held].unique()) == 100
    again = stratified_holdout(customers, y, 0.25, seed=7)
    assert np.array_equal(again[1], held)  # seeded
    folds = stratified_folds(customers, y, 3, seed=7)
    assert len(folds) == 3
    for fit, valid in folds:
        assert not set(customers.iloc[fit]) & set(customers.iloc[valid])
        assert 0 < y[valid].sum() < len(valid) and 0 < y[fit].sum() < len(fit)
    # more folds than churners: cut to what stratification allows
    few = np.zeros(800, dtype=int)
    few[[0, 1, 2]] = 1
    assert len(stratified_folds(customers, few, 10, seed=7)) == 3


def _one_date_labels(settings: Settings, day: str = "2025-06-01", churned: str | None = None) -> None:
    """A labels table for one label date, as a business exports it: every customer signed up and
    not cancelled before ``day``, churned when cancelled within 30 days (``churned``: an SQL
    expression instead)."""
    rule = churned or ("EXISTS (SELECT 1 FROM cancellations x WHERE x.customer_id = c.customer_id AND "
                       "x.cancelled_at >= :day AND x.cancelled_at < date(:day, '+30 days'))")
    with sqlite3.connect(settings.data_dir / "source.db") as conn:
        conn.execute("CREATE TABLE labels (customer_id INTEGER, label_date TIMESTAMP, churned INTEGER)")
        conn.execute(f"INSERT INTO labels SELECT c.customer_id, :ts, {rule} FROM customers c WHERE c.signup_date < :day "
                     "AND NOT EXISTS (SELECT 1 FROM cancellations x WHERE x.customer_id = c.customer_id AND "
                     "x.cancelled_at < :day)", {"day": day, "ts": f"{day} 00:00:00"})


def test_one_labelled_snapshot_trains_stratified_says_so_and_scores_the_night(source_data, monkeypatch, capsys,
                                                                              caplog):
    """Was: "only 1 snapshot(s) ... at least 3 are needed"."""
    from pipeline.__main__ import main
    from pipeline.model import registry, tracking

    _one_date_labels(source_data)
    for key, value in {**CHEAP, "CHURNFLOW_LABEL_KIND": "provided", "CHURNFLOW_HORIZON_DAYS": "30"}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    capsys.readouterr()
    with caplog.at_level("INFO"):
        assert main(["run-training", "--date", RUN_DATE]) == 0, capsys.readouterr().err[-3000:]
    out = json.loads(capsys.readouterr().out)  # the train step's result
    assert "1 snapshot(s) (2025-06-01)" in caplog.text and "validation is stratified inside them" in caplog.text
    assert "train: validation stratified (1 snapshot: no out-of-time validation)" in caplog.text
    metrics = out["metrics"]
    assert metrics["validation"] == "stratified (1 snapshot: no out-of-time validation)"
    assert metrics["train_snapshots"] == metrics["holdout_snapshots"] == ["2025-06-01"]
    assert metrics["roc_auc"] > 0.6, metrics["roc_auc"]  # a real model, not chance
    assert 0 < metrics["threshold"] < 1 and metrics["ece"] < 0.1

    champ = registry.require_champion(settings)
    validation = champ.params["validation"]
    assert validation["mode"] == "stratified" and validation["snapshots"] == ["2025-06-01"]
    assert validation["holdout_share"] == 0.25 and "1 snapshot(s)" in validation["reason"]
    card = champ.model_card_path.read_text()
    assert "Validation: stratified (1 snapshot: no out-of-time validation)" in card
    assert "do not show how the model holds up on a later month" in card
    run = tracking.client(settings).get_run(out["mlflow_run_id"])
    assert run.data.params["validation"] == "stratified (1 snapshot: no out-of-time validation)"
    assert run.data.tags[tracking.TAG_VALIDATION] == "stratified"
    # the holdout is a quarter of the labelled customers, none of them trained on
    tset = pd.read_parquet(settings.runs_dir / "churn_training" / RUN_DATE / "build_training_set" /
                           "training_set.parquet", columns=["customer_id", "label"])
    assert metrics["n"] == pytest.approx(0.25 * len(tset), abs=2)
    assert metrics["train_rows"] + metrics["n"] == len(tset)
    assert metrics["base_rate"] == pytest.approx(tset["label"].mean(), abs=0.01)

    assert main(["run-nightly", "--date", RUN_DATE]) == 0, capsys.readouterr().err[-3000:]
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        (scored,) = conn.execute("SELECT COUNT(*) FROM churn_scores WHERE substr(as_of, 1, 10) = ?",
                                 (RUN_DATE,)).fetchone()
    assert scored > 1000


@pytest.mark.parametrize(("churned", "outside"), [("0", False), ("1", False), ("0", True)],
                         ids=["nobody-churned", "everybody-churned", "nobody-in-the-population"])
def test_a_labelled_snapshot_that_cannot_train_says_why_in_one_line(source_data, monkeypatch, capsys, churned,
                                                                    outside):
    """One class (say which), or no labelled customer of the population: one line, exit 2."""
    from pipeline.__main__ import main

    if outside:  # the business labelled the customers who had already cancelled: none is in the population
        with sqlite3.connect(source_data.data_dir / "source.db") as conn:
            conn.execute("CREATE TABLE labels (customer_id INTEGER, label_date TIMESTAMP, churned INTEGER)")
            conn.execute("INSERT INTO labels SELECT customer_id, '2025-06-01 00:00:00', 1 FROM cancellations "
                         "WHERE cancelled_at < '2025-06-01'")
    else:
        _one_date_labels(source_data, churned=churned)
    for key, value in {**CHEAP, "CHURNFLOW_LABEL_KIND": "provided"}.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["run-training", "--date", RUN_DATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "['2025-06-01']" in err[0], err[0]
    if outside:
        assert "training set is empty" in err[0], err[0]
        assert "no labelled customer was in the population at them (label_kind provided" in err[0], err[0]
    else:
        which = "every row is a non-churner (label 0)" if churned == "0" else "every row is a churner (label 1)"
        assert "has one class" in err[0] and which in err[0], err[0]
        assert f"labels.churned is {churned} on every labelled row" in err[0], err[0]
