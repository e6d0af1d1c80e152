"""Training: time split, candidates, labels, feature groups; train-table. (The registry: test_registry.py.)"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE

from pipeline.errors import TrainingError
from pipeline.features.dataset import time_split
from pipeline.model import registry
from pipeline.model.gate import gate
from pipeline.model.score import risk_band


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


def test_risk_bands():
    p = np.array([0.05, 0.2, 0.49, 0.5, 0.9])
    assert risk_band(p, high=0.5, medium=0.2).tolist() == ["low", "medium", "medium", "high", "high"]
    with pytest.raises(ValueError, match="risk bands"):
        risk_band(p, high=0.2, medium=0.5)


def test_scoring_without_a_champion_says_what_to_do(settings, tmp_path):
    from pipeline.context import RunContext

    with pytest.raises(registry.RegistryError, match="run the churn_training DAG"):
        RunContext.pinned(settings, "churn_nightly", dt.date(2025, 7, 1))
    with pytest.raises(registry.RegistryError, match="has no pinned model version"):
        _ = RunContext.of(settings, "churn_nightly", dt.date(2025, 7, 1)).model


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
