"""The model registry on MLflow: immutable versions, one gate for every new model, the champion
alias (promote, rollback), runs that pin one version, checksums, the MLflow run's record and
the migration of churnflow's earlier file registry. Real MLflow (its SQLite store in the data
dir), real training runs on a generated business."""

from __future__ import annotations

import json
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE

from pipeline.context import NIGHTLY_DAG, RunContext
from pipeline.model import model_cache, registry, tracking
from pipeline.model.pinning import pin, pinned_model

#: a quick model: the registry is under test here, not the search
QUICK = {"candidates": "logreg,xgboost", "search_iterations": 1, "cv_folds": 1}
#: a model that is clearly weaker than one with every feature group: customer attributes only
WEAKER = {"candidates": "logreg", "search_iterations": 1, "cv_folds": 1, "feature_groups": "customer"}


def _scores(settings) -> pd.DataFrame:
    return pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")


def _training_set(settings):
    return next((settings.runs_dir / "churn_training" / RUN_DATE / "build_training_set").glob("*.parquet"))


@pytest.fixture(scope="module")
def prepared(generated_source, tmp_path_factory):
    """The business ingested and its training set built as of RUN_DATE (no model yet), once."""
    from pipeline.config import load_settings
    from pipeline.features.steps import training_set_step, validate_features_step
    from pipeline.ingestion.steps import ingest_all_step

    data_dir = tmp_path_factory.mktemp("prepared") / "data"
    shutil.copytree(generated_source, data_dir)
    settings = load_settings(data_dir=data_dir, **QUICK)
    ctx = RunContext.of(settings, "churn_training", RUN_DATE)
    ingest_all_step(ctx)
    validate_features_step(ctx, training_set_step(ctx))
    return data_dir


@pytest.fixture(scope="module")
def trained_once(prepared, tmp_path_factory):
    """That business with a first champion (v1) trained as of RUN_DATE (the training DAG's train
    task on the prepared training set), once."""
    from pipeline.config import load_settings
    from pipeline.model.steps import train_step

    data_dir = tmp_path_factory.mktemp("trained") / "data"
    shutil.copytree(prepared, data_dir)
    settings = load_settings(data_dir=data_dir, **QUICK)
    result = train_step(RunContext.of(settings, "churn_training", RUN_DATE), {"path": str(_training_set(settings))})
    assert result["version"] == "v1" and result["promoted"], result
    return data_dir


@pytest.fixture
def trained(trained_once, tmp_path, monkeypatch):
    """A private copy of the trained business (the tests add versions, move and break it); its
    MLflow store is relocated to the copy on this first open, and the champion is v1 there."""
    from pipeline.config import load_settings

    data_dir = tmp_path / "data"
    shutil.copytree(trained_once, data_dir)
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(data_dir))
    settings = load_settings(**QUICK)
    assert registry.require_champion(settings).version == "v1"
    return settings


def test_a_tie_with_the_champion_is_not_evidence(trained):
    """A rerun on the champion's data and settings scores the holdout exactly as the champion does:
    registered, never served (the gate promotes on evidence only)."""
    from pipeline.model.steps import train_and_register

    settings = trained
    tie = train_and_register(settings, _training_set(settings), training_date=RUN_DATE)  # the default margin, 0
    assert tie.version == "v2" and tie.promoted is False and "a tie is not evidence" in tie.decision, tie.decision
    assert tie.metrics["champion_roc_auc_same_holdout"] == tie.metrics["roc_auc"]
    # the guard metrics of the champion on the same holdout and campaign are recorded beside its own
    assert tie.metrics["champion_pr_auc_same_holdout"] == tie.metrics["pr_auc"]
    assert tie.metrics["champion_expected_value_same_holdout"] == tie.metrics["expected_value"]
    assert registry.champion(settings).version == "v1"


def test_retraining_on_the_champions_date_with_the_defaults_keeps_it_and_says_why(trained, caplog):
    """As a user does it (``run-training`` for the champion's date, the default gate: a paired
    bootstrap): the champion stays, and the log, metrics.json, the MLflow run and the next night's
    facts for the e-mail say why, with every metric of both models."""
    import logging

    from pipeline.flows import run_training
    from pipeline.model.serving import serving_facts
    from pipeline.monitoring.notify import _model_section

    settings = trained
    assert settings.promotion_test == "bootstrap" and settings.promotion_min_improvement == 0.0
    with caplog.at_level(logging.INFO, logger="pipeline.model.publish"):
        result = run_training(settings, RUN_DATE)["train"]
    assert result["version"] == "v2" and result["promoted"] is False, result
    assert "a tie is not evidence" in result["decision"] and "paired bootstrap resamples" in result["decision"]
    assert registry.champion(settings).version == "v1"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: v2 not served: ROC-AUC")]
    assert len(said) == 1 and "a tie is not evidence" in said[0], said
    record = registry.get_version(settings, "v2").metrics()["gate"]
    assert record["test"] == "bootstrap" and record["served"] is False and record["champion"] == "v1"
    roc = record["metrics"]["roc_auc"]
    assert roc["difference"] == 0.0 and roc["ci_low"] == 0.0 and roc["share_not_better"] == 1.0
    assert roc["candidate"] == roc["champion"] == result["metrics"]["roc_auc"]
    assert {k: record["metrics"][k]["difference"] for k in ("pr_auc", "expected_value")} == {
        "pr_auc": 0.0, "expected_value": 0.0}
    run = tracking.client(settings).get_run(result["mlflow_run_id"])
    assert run.data.metrics["gate_roc_auc_ci_low"] == 0.0 and run.data.metrics["gate_roc_auc_share_not_better"] == 1.0
    assert run.data.tags["churnflow.gate.test"] == "bootstrap"
    facts = serving_facts(settings, registry.require_champion(settings))
    assert facts["newest"]["version"] == "v2" and facts["newest"]["gate"] == record
    section = _model_section(facts)
    assert [row[0] for row in section.rows] == ["ROC-AUC", "PR-AUC", "Campaign value at capacity"]
    # the champion itself is the newest version: its record too (the first model: no champion to compare)
    registry.promote(settings, "v2", "reviewed")
    facts = serving_facts(settings, registry.require_champion(settings))
    assert facts["newest"]["is_champion"] is True and facts["newest"]["gate"]["version"] == "v2"
    first = registry.get_version(settings, "v1").metrics()["gate"]
    assert first["champion"] is None and first["served"] is True and first["metrics"]["roc_auc"]["champion"] is None


def test_every_training_is_a_new_version_gated_against_the_champion(trained):
    from pipeline.model.steps import train_and_register

    settings = trained
    assert registry.champion(settings).version == "v1"
    # the same data with a margin it cannot clear: registered, visible, not served
    second = train_and_register(settings, _training_set(settings), min_improvement=0.5, training_date=RUN_DATE)
    assert second.version == "v2" and second.promoted is False
    assert second.champion_version == "v1" and "not promoted" in second.decision and "margin 0.5" in second.decision
    v1_auc = registry.get_version(settings, 1).metrics()["roc_auc"]
    assert second.metrics["champion_roc_auc_same_holdout"] == pytest.approx(v1_auc)
    assert registry.champion(settings).version == "v1"
    listed = {v.version: v for v in registry.list_versions(settings)}
    assert set(listed) == {"v1", "v2"}
    assert listed["v2"].tags[registry.TAG_GATE_SERVED] == "false"
    assert listed["v2"].tags[registry.TAG_GATE_CHAMPION] == "v1"
    assert listed["v1"].aliases == ("champion",) and listed["v2"].aliases == ()
    # a model that clears the margin is served, and says against what
    third = train_and_register(settings, _training_set(settings), min_improvement=-1.0, training_date=RUN_DATE)
    assert third.promoted and registry.champion(settings).version == "v3" and third.champion_version == "v1"
    # promote and rollback move the alias with a recorded reason; the rollback stack goes back in order
    registry.promote(settings, "v2", "reviewed by hand")
    assert registry.champion(settings).version == "v2"
    assert registry.rollback(settings).version == "v3"
    assert registry.rollback(settings).version == "v1"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(settings)
    moves = registry.history(settings)["log"]
    assert [(m["previous"], m["version"]) for m in moves] == [(None, "v1"), ("v1", "v3"), ("v3", "v2"), ("v2", "v3"),
                                                               ("v3", "v1")]
    assert moves[2]["reason"] == "reviewed by hand" and moves[0]["reason"].startswith(f"training {RUN_DATE}")
    with pytest.raises(registry.RegistryError, match="v9 not found in registered model 'churnflow'"):
        registry.promote(settings, "v9", "manual")
    with pytest.raises(registry.RegistryError, match="expected a version number"):
        registry.promote(settings, "champion-ish", "manual")


def test_the_mlflow_run_records_window_candidates_metrics_gate_and_artifacts(trained):
    from pipeline.model.steps import train_and_register

    settings = trained
    result = train_and_register(settings, _training_set(settings), min_improvement=0.5, training_date=RUN_DATE)
    run = tracking.client(settings).get_run(result.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["training_date"] == RUN_DATE and params["holdout_snapshots"] == '["2025-06-01"]'
    assert params["label_kind"] == "cancellation" and "cancellation" in params["label_definition"]
    assert params["first_snapshot"] < params["last_snapshot"] < "2025-06-01"
    assert "tenure_days" in params["numeric_features"] and params["candidates"] == "logreg,xgboost"
    assert params["code_version"] and tags["mlflow.source.git.commit"] == params["code_version"]
    assert metrics["holdout_roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert metrics["champion_roc_auc_same_holdout"] == pytest.approx(result.metrics["champion_roc_auc_same_holdout"])
    assert metrics["gate_delta_roc_auc"] == pytest.approx(result.metrics["roc_auc"] - metrics["champion_roc_auc_same_holdout"])
    assert tags[registry.TAG_GATE_SERVED] == "false" and "not promoted" in tags[registry.TAG_GATE_DECISION]
    assert tags["churnflow.model_version"] == "v2"
    children = tracking.child_runs(settings, run)
    assert {c.data.params["candidate"] for c in children} == {"logreg", "xgboost"}
    assert all("cv_roc_auc" in c.data.metrics for c in children)
    files = {f.path for f in tracking.client(settings).list_artifacts(result.run_id, "churnflow")}
    assert {"churnflow/model_card.html", "churnflow/metrics.json", "churnflow/params.json",
            "churnflow/reference.parquet", "churnflow/plots"} <= files
    plots = tracking.client(settings).list_artifacts(result.run_id, "churnflow/plots")
    assert len(plots) == 5 and all(p.path.endswith(".png") for p in plots)
    # the version's model is a standard MLflow model: MLflow itself loads it and gives the same scores
    import mlflow.sklearn

    mv = registry.get_version(settings, result.version)
    sample = pd.read_parquet(mv.reference_path).head(200)[mv.feature_columns]
    by_mlflow = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{mv.number}").predict_proba(sample)
    np.testing.assert_array_equal(by_mlflow, mv.load().predict_proba(sample))
    table = tracking.compare(settings)
    assert table["version"].tolist() == ["v1", "v2"] and table["served"].tolist() == ["true", "false"]


def test_a_weaker_rerun_for_the_champions_date_changes_nothing_served(trained):
    """The bug: a rerun of run-training for the champion's date rebuilt v20250701 in place,
    past the gate, and the next night's scores moved by up to 0.36."""
    from pipeline.flows import run_nightly, run_training

    settings = trained
    champion = registry.champion(settings)
    files_before = model_cache.checksums(champion.path)
    run_nightly(settings, RUN_DATE)
    before = _scores(settings)

    rerun = run_training(settings.replace(**WEAKER), RUN_DATE)["train"]
    assert rerun["version"] == "v2" and rerun["promoted"] is False, rerun
    assert rerun["metrics"]["roc_auc"] < rerun["metrics"]["champion_roc_auc_same_holdout"]
    weaker = {v.version: v for v in registry.list_versions(settings)}["v2"]  # exists, visible, not served
    assert weaker.tags[registry.TAG_GATE_SERVED] == "false" and weaker.aliases == ()
    assert registry.champion(settings).version == "v1"
    assert model_cache.checksums(champion.path) == files_before

    run_nightly(settings, RUN_DATE)
    after = _scores(settings)
    assert set(after["model_version"]) == {"v1"}
    assert after["customer_id"].tolist() == before["customer_id"].tolist()
    assert after["churn_probability"].to_numpy().tobytes() == before["churn_probability"].to_numpy().tobytes()
    # and the night tells the analysts: the newest version, not served, by how much
    facts = pin(settings, NIGHTLY_DAG, RUN_DATE).model_facts
    assert facts["champion"]["version"] == "v1"
    newest = facts["newest"]
    assert newest["version"] == "v2" and newest["served"] is False and newest["champion_version"] == "v1"
    assert newest["roc_auc"] - newest["champion_roc_auc"] == pytest.approx(
        rerun["metrics"]["roc_auc"] - rerun["metrics"]["champion_roc_auc_same_holdout"], abs=1e-5)


def test_promotion_while_a_night_runs_leaves_the_night_on_one_version(trained):
    """The nightly pins the champion in its first step; every later step (each a new process in
    Airflow, rebuilding the context from XCom) uses exactly that version."""
    from pipeline.features.steps import features_step, validate_features_step
    from pipeline.ingestion.steps import ingest_all_step
    from pipeline.model.steps import publish_step, score_step, train_and_register
    from pipeline.monitoring import part_steps as part
    from pipeline.monitoring.steps import drift_step, report_step
    from pipeline.results import results_engine

    settings = trained
    other = train_and_register(settings.replace(**WEAKER), _training_set(settings), training_date=RUN_DATE)  # v2, not served
    assert other.version == "v2" and not other.promoted
    ctx = pin(settings, NIGHTLY_DAG, RUN_DATE)
    assert ctx.model_version == "v1"
    validated = ingest_all_step(ctx)
    features = validate_features_step(ctx, features_step(ctx))
    registry.promote(settings, other.version, "promoted while a night runs")
    assert registry.champion(settings).version == "v2"

    def later() -> RunContext:  # what each later Airflow task does
        return RunContext.from_xcom(settings, json.loads(json.dumps(ctx.to_xcom())))

    scores = score_step(later(), features)
    drift = drift_step(later(), features)
    matured = part.matured_labels_step(later())
    importance = part.importance_drift_step(later(), features)
    monitoring = part.alerts_step(
        later(), validated, features, drift, part.performance_step(later(), features, scores, matured),
        part.concept_drift_step(later(), matured), importance, part.schema_drift_step(later(), validated, importance),
        part.challenger_comparison_step(later(), matured, None))
    report_step(later(), features, drift, monitoring)
    publish_step(later(), scores)
    assert scores["model_version"] == drift["model_version"] == monitoring["model_version"] == "v1"
    with results_engine(settings).connect() as conn:
        for table in ("churn_scores", "drift_metrics", "prediction_drift", "alerts"):
            versions = set(pd.read_sql(f"SELECT DISTINCT model_version FROM {table}", conn)["model_version"])
            assert versions == {"v1"}, (table, versions)
    # (and v2 would have scored differently: the pinning is what kept the night on v1)
    tonight = pd.read_parquet(features["path"])
    v2 = registry.get_version(settings, "v2")
    assert not np.array_equal(v2.load().predict_proba(tonight[v2.feature_columns])[:, 1],
                              _scores(settings)["churn_probability"].to_numpy())


def test_a_version_whose_files_changed_is_refused_before_any_work(trained):
    from pipeline.flows import run_nightly

    settings = trained
    champ = registry.champion(settings)
    # a damaged local copy is fetched again from the store (the store's files still match)
    (champ.model_path).write_bytes(b"garbage")
    assert registry.check_champion(settings).load() is not None
    # a model file altered in the store itself: named, and the night stops before it ingests anything
    stored = next(settings.mlflow_dir.rglob("model.pkl"))
    joblib.dump({"not": "the model"}, stored)
    shutil.rmtree(settings.model_cache_dir)
    with pytest.raises(registry.RegistryError, match=r"v1 of 'churnflow' differs from what was registered \(SHA-256 "
                                                     r"of model/model.pkl\)"):
        run_nightly(settings, RUN_DATE)
    assert not (settings.runs_dir / "churn_nightly").exists()  # nothing of the night was done


def test_a_moved_data_dir_scores_and_trains_in_its_own_store(trained, tmp_path, monkeypatch, caplog):
    """MLflow's local store records absolute file:// locations: after the data dir moves (the old
    place gone, no local model copies), the champion still loads, verified, from the new place,
    and a new version's files are written there, not at the old place."""
    from pipeline.config import load_settings
    from pipeline.model.steps import train_step

    old = trained.data_dir
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(old, moved)
    shutil.rmtree(moved / "model_cache", ignore_errors=True)
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(moved))
    settings = load_settings(**QUICK)
    with caplog.at_level("WARNING", logger="pipeline.model.tracking"):
        champ = registry.check_champion(settings)
    assert champ.version == "v1" and champ.load() is not None
    assert "was moved or copied" in caplog.text and str(old) in caplog.text
    rerun = train_step(RunContext.of(settings, "churn_training", RUN_DATE), {"path": str(_training_set(settings))})
    assert rerun["version"] == "v2", rerun
    assert registry.check_version(settings, "v2").load() is not None
    assert not old.exists(), "nothing was written at the old place"
    stored = {p.relative_to(moved).parts[:4] for p in (moved / "mlflow" / "artifacts").rglob("model.pkl")}
    assert len(stored) == 2, stored  # v1's and v2's model files, both under the moved data dir


def test_a_version_whose_files_are_gone_from_the_store_is_named(trained):
    champ = registry.champion(trained)
    shutil.rmtree(trained.mlflow_dir / "artifacts")
    shutil.rmtree(trained.model_cache_dir)
    with pytest.raises(registry.RegistryError, match=r"^model version v1 of 'churnflow': its files cannot be read "
                                                     r"from the MLflow store .*Promote another version, or retrain$"):
        registry.check_champion(trained)
    assert champ.version == "v1"


def test_scoring_without_a_champion_says_what_to_do(settings):
    with pytest.raises(registry.RegistryError, match="no champion model in registered model 'churnflow'"):
        pin(settings, NIGHTLY_DAG, RUN_DATE)
    with pytest.raises(registry.RegistryError, match="has no pinned model version"):
        _ = pinned_model(RunContext.of(settings, NIGHTLY_DAG, RUN_DATE))


def test_the_earlier_file_registry_is_named_then_migrated(trained, capsys, monkeypatch):
    """A data dir from before MLflow: every command that needs the registry says, in one line,
    how to migrate; `models migrate` imports every version and keeps the champion."""
    from pipeline.__main__ import main
    from pipeline.flows import run_nightly

    v1 = registry.champion(trained)
    # the same business in a data dir of its own, with a champion in the earlier registry's layout only
    settings = trained.replace(data_dir=trained.data_dir.parent / "before-mlflow")
    shutil.copytree(trained.data_dir, settings.data_dir, ignore=shutil.ignore_patterns("mlflow", "model_cache"))
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(settings.data_dir))
    old = settings.models_dir / "v20250701"
    old.mkdir(parents=True)
    joblib.dump(v1.load(), old / "model.joblib")
    for name in ("metrics.json", "params.json", "reference.parquet", "importances.parquet", "model_card.html"):
        shutil.copy(v1.path / "churnflow" / name, old / name)
    (settings.models_dir / "champion.json").write_text(json.dumps({"champion": "v20250701", "history": []}))

    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier file registry (1 version(s))" in err[0] and "models migrate" in err[0], err

    assert main(["models", "migrate"]) == 0
    out = capsys.readouterr().out
    assert "v20250701 -> v1" in out and "champion: v1" in out
    assert (settings.data_dir / "models.pre-mlflow" / "v20250701" / "model.joblib").is_file()
    assert not settings.models_dir.exists()
    listed = registry.list_versions(settings)
    assert [(v.version, v.tags.get("churnflow.migrated_from")) for v in listed] == [("v1", "v20250701")]
    assert "migrated from churnflow's file registry" in registry.history(settings)["log"][-1]["reason"]
    run_nightly(settings, RUN_DATE)
    assert set(_scores(settings)["model_version"]) == {"v1"}


def test_figures_derived_from_a_copy_are_computed_once_per_copy(tmp_path):
    """A version's figures on its own reference (the nightly importance drift's reference mean
    |SHAP|) are kept beside its copy, read back to the bit, and computed again for another
    copy under the same label (other checksums) or when the kept file is damaged."""
    import json

    from pipeline.model.model_cache import VERSION_FILE, derived_figures

    copy = tmp_path / "churnflow" / "v1"
    copy.mkdir(parents=True)
    (copy / VERSION_FILE).write_text(json.dumps({"sha256": {"model/model.pkl": "aa"}}))
    calls = []

    def compute():
        calls.append(1)
        return [("tenure_days", 0.1 + 0.2), ("plan", 1 / 3)]

    first = derived_figures(copy, "reference_mean_abs_shap-20000-42", compute)
    assert first == [("tenure_days", 0.1 + 0.2), ("plan", 1 / 3)] and len(calls) == 1
    assert derived_figures(copy, "reference_mean_abs_shap-20000-42", compute) == first and len(calls) == 1
    assert not any(p.name != VERSION_FILE for p in copy.iterdir())  # nothing written into the verified copy
    derived_figures(copy, "reference_mean_abs_shap-5000-42", compute)
    assert len(calls) == 2
    (copy / VERSION_FILE).write_text(json.dumps({"sha256": {"model/model.pkl": "bb"}}))
    derived_figures(copy, "reference_mean_abs_shap-20000-42", compute)
    assert len(calls) == 3
    for kept in (tmp_path / "churnflow" / "v1.derived").iterdir():
        kept.write_text("not json")
    derived_figures(copy, "reference_mean_abs_shap-20000-42", compute)
    assert len(calls) == 4
