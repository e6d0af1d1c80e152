"""Monitoring as tasks (issue 33): the nightly graph's edges are each task's real inputs (the pinned
run context travels once, pulled from wait_for_data's XCom), mapped tasks are named by their bucket,
the alerts are a pure function of the monitoring parts' outputs, and an in-process night leaves each
part's artifact in its own task folder."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pytest
from conftest import ROOT, RUN_DATE, TRAINED, copy_business

from pipeline.config import load_settings

#: each task of churn_nightly and its real inputs (the tasks whose outputs it reads, or whose work it needs)
UPSTREAM = {
    "wait_for_data": set(),
    "ingest": {"wait_for_data"},  # the readiness gate's XCom: the window and the pinned run context
    "plan_partitions": {"ingest"},  # planned once the night's data is in
    "build_features": {"plan_partitions", "ingest"},
    "score": {"build_features"},
    "combine_partitions": {"build_features", "score"},
    "score_challenger": {"combine_partitions"},
    "data_drift": {"combine_partitions"},
    "matured_labels": {"ingest"},  # labels from the lake ingest has caught up
    "performance": {"combine_partitions", "matured_labels"},
    "concept_drift": {"matured_labels"},
    "importance_drift": {"combine_partitions"},
    "schema_drift": {"ingest", "importance_drift"},
    "challenger_comparison": {"matured_labels", "score_challenger"},
    # the night's scores; the matured labels give the calibration check and an earlier night's realised metrics
    "estimated_performance": {"combine_partitions", "matured_labels"},
    "alerts": {"ingest", "combine_partitions", "data_drift", "performance", "concept_drift", "importance_drift",
               "schema_drift", "challenger_comparison", "estimated_performance"},
    "drift_report": {"combine_partitions", "data_drift", "alerts"},
    "publish_scores": {"combine_partitions", "drift_report"},
    "dashboard_snapshot": {"publish_scores"},
    "email_report": {"combine_partitions", "drift_report", "alerts", "publish_scores"},
    "request_retraining": {"alerts"},
}


@pytest.fixture(scope="module")
def nightly_dag():
    """churn_nightly as Airflow parses it (no metadata database needed to read its graph)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["churn_nightly"]


def test_each_task_has_edges_only_from_its_real_inputs(nightly_dag):
    assert {t.task_id: set(t.upstream_task_ids) for t in nightly_dag.tasks} == UPSTREAM
    # the pinned context travels once: only ingest takes it along an edge, every other task pulls it
    assert [t.task_id for t in nightly_dag.tasks if "wait_for_data" in t.upstream_task_ids] == ["ingest"]


def test_mapped_tasks_are_named_by_their_bucket(nightly_dag):
    import jinja2

    mapped = {t.task_id: t.map_index_template for t in nightly_dag.tasks if t.map_index_template}
    assert set(mapped) == {"build_features", "score"}

    def render(task_id: str, **op_kwargs: object) -> str:  # as the task runner renders it: with the unmapped task
        task = type("Task", (), {"op_kwargs": op_kwargs})
        return jinja2.sandbox.SandboxedEnvironment().from_string(mapped[task_id]).render(task=task)

    assert render("build_features", part={"index": 1, "count": 4}) == "bucket 2 of 4"
    assert render("score", features={"path": "f.parquet", "part": {"index": 3, "count": 4}}) == "bucket 4 of 4"
    assert render("score", features={"path": "f.parquet"}) == "bucket 1 of 1"  # an unpartitioned night's one piece


# ------------------------------------------------------------------ the alerts, a pure function of the parts
def _parts():
    """One night's parts as their steps compute them: every rule has something to say."""
    from pipeline.monitoring.challenger import ChallengerNight
    from pipeline.monitoring.concept import ConceptDrift, Detection
    from pipeline.monitoring.metrics import Performance, PredictionDrift
    from pipeline.monitoring.night import DriftFacts, PerformanceNight
    from pipeline.monitoring.schema_drift import Finding, SchemaDrift

    day = "2025-07-01"
    prediction = PredictionDrift(day, "v1", 0.2, 0.1, 0.15, 0.08, 0.3, math.nan, 0)
    perf = Performance(day, "2025-06-01", "v1", 1_000, 80, 0.08, 0.61, 0.2, 0.3, 0.4, 0.25, 0.8, 0.4, True)
    fairness = pd.DataFrame({
        "run_date": pd.Timestamp(day), "segment": "region", "group": ["north", "south"], "rows": [500, 500],
        "positive_rate": [0.2, 0.05], "positive_rate_ratio": [1.0, 0.25], "expected_positives_at_top": [100.0, 100.0],
        "tpr": [math.nan, math.nan], "tpr_gap": [math.nan, math.nan], "reference_ratio": [math.nan, math.nan]})
    detection = Detection("adwin", "absolute_error", "2025-05-01", "2025-05-20", "2025-06-01", 900, 100, 0.1, 0.3)
    concept = ConceptDrift(day, "v1", "2025-06-01", [{"detector": "adwin", "fed": 1_000, "detected": True}],
                           [detection])
    importance = pd.DataFrame({"run_date": pd.Timestamp(day), "feature": ["monthly_fee"], "reference_mean_abs_shap": [0.1],
                               "mean_abs_shap": [0.3], "change": [0.2], "ratio": [3.0], "reference_rank": [1],
                               "rank": [1], "model_version": "v1"})
    nights = pd.DataFrame([{"run_date": f"2025-06-{d}", "scored_on": "2025-05-01", "model_version_champion": "v1",
                            "model_version_challenger": "v2", "rows": 1_000, "positives_champion": 80,
                            "roc_auc_champion": 0.7, "roc_auc_challenger": 0.8, "pr_auc_champion": 0.2,
                            "pr_auc_challenger": 0.3, "recall_champion": 0.4, "recall_challenger": 0.5,
                            "beats_champion": True} for d in (29, 30)])
    comparison = pd.DataFrame([{"run_date": day, "role": "challenger", "model_version": "v2", "beats_champion": True}])
    challenger = ChallengerNight(day, "v1", "v2", "newest version", 2, 0.01, comparison, nights)
    schema = SchemaDrift("v1", True, ["payments.amount"], [Finding("payments", "amount", 100, 100, 100, 0.0, 0.05,
                                                                   ("total_spend_30d",), 0.1)])
    drift = {"drift_share": 0.6, "drifted": ["monthly_fee", "acquisition_channel"], "max_psi": 0.5,
             "max_psi_feature": "monthly_fee"}
    return {"drift": DriftFacts.from_dict(drift), "performance": PerformanceNight(prediction, perf, fairness, {},
                                                                                 {"acquisition_channel": 12}),
            "concept": concept, "importance": importance, "challenger": challenger, "schema_drift": schema,
            "estimate": _estimate(day)}


def _estimate(day: str):
    """An estimated performance whose ROC-AUC band lies below the holdout minus the margin since 2025-06-29."""
    from pipeline.monitoring.estimate import PerformanceEstimate

    return PerformanceEstimate(day, "v1", 1_000, 100, 0.62, 0.58, 0.66, 0.3, 0.25, 0.36, 0.2, 0.15, 0.26, 0.9, 200,
                               1_000, 0.8, 0.4, 0.02, "2025-06-01", True, True, "2025-06-29",
                               history=[{"run_date": "2025-06-01", "roc_auc": 0.78, "realised_roc_auc": 0.77}])


def _saved(part) -> dict:
    """A part as its step saves it (JSON, NaN kept) and reads it back."""
    return json.loads(json.dumps(part, default=str))


def _comparable(part) -> dict:
    """A part's JSON with NaN as None (NaN equals nothing)."""
    from pipeline.artifacts import nan_to_none

    return nan_to_none(_saved(part))


def test_the_alerts_are_a_pure_function_of_the_parts_outputs(tmp_path):
    from pipeline.monitoring.alerts import evaluate_rules
    from pipeline.monitoring.estimate import PerformanceEstimate
    from pipeline.monitoring.night import (
        MonitoringResult,
        PerformanceNight,
        challenger_from_dict,
        concept_from_dict,
        gather,
        rejected_rows,
        schema_drift_from_dict,
    )

    parts = _parts()
    nowhere = tmp_path / "no-such-data-dir"
    settings = load_settings(data_dir=nowhere, concept_drift_detectors="adwin,ddm", retrain_on_critical=True)
    rejected = rejected_rows([{"table": "payments", "rejected": 2}, {"table": "events"}], {"rejected": 1})
    perf, challenger, concept = parts["performance"], parts["challenger"], parts["concept"]
    # what the night's parts were before they were steps: one MonitoringResult built from them directly
    direct = MonitoringResult("2025-07-01", "v1", 0.25, parts["drift"], perf.prediction, perf.performance, perf.fairness,
                              rejected, {}, {"acquisition_channel": 12}, concept, parts["importance"], challenger,
                              parts["schema_drift"], parts["estimate"])
    # what the alerts step gathers from the parts' saved outputs
    gathered = gather(
        dt.date(2025, 7, 1), model_version="v1", threshold=0.25, drift=parts["drift"],
        performance=PerformanceNight.from_dict(_saved(perf.to_dict()), perf.fairness), rejected_rows=rejected,
        concept=concept_from_dict(_saved({"run_date": concept.run_date, **concept.to_dict()})),
        importance=parts["importance"],
        challenger=challenger_from_dict(_saved({**challenger.to_dict(), "run_date": challenger.run_date,
                                                "comparison": challenger.comparison.to_dict("records")})),
        schema_drift=schema_drift_from_dict(_saved(parts["schema_drift"].to_dict())),
        estimate=PerformanceEstimate.from_dict(_saved(parts["estimate"].to_dict())))
    assert _comparable(gathered.to_dict()) == _comparable(direct.to_dict())
    assert gathered.to_dict()["estimate"]["below_since"] == "2025-06-29"  # what the retraining decision reads
    alerts = evaluate_rules(settings, gathered)
    assert alerts == evaluate_rules(settings, direct)
    assert sorted((a.rule, a.severity) for a in alerts) == [
        ("concept_drift", "critical"), ("data_drift", "critical"), ("data_quality", "info"),
        ("data_quality", "warning"), ("estimated_performance", "critical"), ("fairness", "warning"),
        ("feature_psi", "critical"),
        ("performance_drop", "critical"), ("prediction_drift", "critical"), ("promotion_review", "warning"),
        ("schema_drift", "warning")]
    assert next(a for a in alerts if a.group == "validation").message == "3 rows quarantined by validation"
    assert not nowhere.exists()  # nothing was read (or written) under the data dir


# ------------------------------------------------------------------ the parts' artifacts after a night
PARTS = {"data_drift": ["drift.json"], "performance": ["performance.json", "fairness.parquet"],
         "matured_labels": ["matured_labels.parquet"], "concept_drift": ["concept_drift.json"],
         "importance_drift": ["importance_drift.parquet"], "schema_drift": ["schema_drift.json"],
         "challenger_comparison": ["challenger.json"], "estimated_performance": ["estimate.json"],
         "alerts": ["monitoring.json"]}
#: the night whose scores mature on RUN_DATE (TRAINED's horizon: 30 days)
SCORED_ON = "2025-06-01"


def test_a_night_leaves_each_monitoring_part_in_its_task_folder(trained_source, tmp_path):
    from pipeline.flows import run_nightly

    settings = load_settings(data_dir=copy_business(trained_source, tmp_path / "data"), **TRAINED,
                             importance_sample_rows=200)
    first = run_nightly(settings, SCORED_ON, reports=False)
    assert first["matured"] == {"path": None, "scored_on": "2025-05-02", "rows": 0, "positives": 0, "features": None}
    out = run_nightly(settings, RUN_DATE, reports=False)
    night = settings.runs_dir / "churn_nightly" / RUN_DATE
    for task, files in PARTS.items():
        for name in files:
            assert (night / task / name).is_file(), (task, name)
    # each output names its artifact; the alerts' is the night's monitoring.json, as the e-mail reads it
    assert out["matured"]["scored_on"] == SCORED_ON and out["matured"]["rows"] > 0
    assert out["monitoring"]["path"] == str(night / "alerts" / "monitoring.json")
    saved = json.loads((night / "alerts" / "monitoring.json").read_text())
    assert saved["performance"]["scored_on"] == SCORED_ON and saved["performance"]["rows"] == out["matured"]["rows"]
    assert {p: out["parts"][p]["path"] for p in ("concept", "schema", "challenger")} == {
        "concept": str(night / "concept_drift" / "concept_drift.json"),
        "schema": str(night / "schema_drift" / "schema_drift.json"),
        "challenger": str(night / "challenger_comparison" / "challenger.json")}
    labelled = pd.read_parquet(night / "matured_labels" / "matured_labels.parquet")
    assert set(labelled["scored_on"].astype(str)) == {SCORED_ON} and set(labelled["label"]) <= {0, 1}
