"""``make mlflow`` serves the MLflow UI on the project's store (checked over HTTP and in a real
browser: the model-training view, the training run and its chosen candidate, the champion), and
``mlflow_tracking_uri`` points churnflow at a shared MLflow server: a second business trains,
registers and pins its models through that server, artifacts proxied over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import requests
from conftest import ROOT, RUN_DATE

from churnflow_sim.live_airflow import free_port
from pipeline.config import load_settings
from pipeline.model import registry

QUICK = {"candidates": "logreg", "search_iterations": 1, "cv_folds": 1}


@pytest.fixture(scope="module")
def served(trained_source, tmp_path_factory):
    """A copy of the session's trained business (a first champion in its data dir's local
    store), then ``make mlflow`` on it, started from a bare PATH as a user would."""
    tmp = tmp_path_factory.mktemp("mlflow")
    shutil.copytree(trained_source, tmp / "data")
    settings = load_settings(data_dir=tmp / "data", **QUICK)
    assert registry.require_champion(settings).version == "v1"  # the copy's store, relocated to it
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CHURNFLOW_", "VIRTUAL_ENV", "MLFLOW"))},
           "PATH": "/usr/local/bin:/usr/bin:/bin", "CHURNFLOW_DATA_DIR": str(settings.data_dir),
           "MLFLOW_PORT": str(port)}
    log = tmp / "mlflow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "-C", str(ROOT), "mlflow"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"make mlflow exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{base}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"no MLflow UI within 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        yield {"settings": settings, "base": base, "proc": proc, "log": log, "tmp": tmp}
    finally:
        if proc.poll() is None:  # Ctrl-C, as test_ctrl_c_stops_the_ui does: the UI stops the server it started
            os.killpg(proc.pid, signal.SIGINT)  # (a SIGKILL would leave the server, in a session of its own, running)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_make_mlflow_serves_the_ui_and_the_registry(served):
    base = served["base"]
    page = requests.get(f"{base}/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "MLflow UI on churnflow's store" in served["log"].read_text()
    champion = requests.get(f"{base}/api/2.0/mlflow/registered-models/alias",
                            params={"name": "churnflow", "alias": "champion"}, timeout=30).json()["model_version"]
    assert champion["version"] == "1"
    found = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "churnflow"},
                         timeout=30).json()["experiment"]
    experiment = found["experiment_id"]
    # MLflow 3's UI opens it in its model-training view (without the kind: the GenAI view, a blank Overview)
    assert {t["key"]: t["value"] for t in found["tags"]}.get("mlflow.experimentKind") == "custom_model_development"
    runs = requests.post(f"{base}/api/2.0/mlflow/runs/search", timeout=30, json={
        "experiment_ids": [experiment], "filter": "tags.`churnflow.kind` = 'training'"}).json()["runs"]
    assert len(runs) == 1 and {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}["churnflow.model_version"] == "v1"
    card = requests.get(f"{base}/get-artifact", params={"path": "churnflow/model_card.html",
                                                       "run_uuid": champion["run_id"]}, timeout=30)
    assert card.status_code == 200 and "Model card: v1" in card.text
    # the card is tables: no Python dict, no path of the machine that trained
    text = re.sub(r"<style>.*?</style>|data:image/png;base64,[^']*", "", card.text, flags=re.S)
    assert "{'" not in text and "{\"" not in text and "a saved customer is worth 200" in text
    assert not re.search(r"/(tmp|root|home|work|var)/|runs/churn_training", text), re.findall(r"\S*/tmp/\S*", text)
    # no stray experiment: MLflow's empty "Default" is gone from churnflow's store
    listed = requests.post(f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 100},
                           timeout=30).json()["experiments"]
    assert [e["name"] for e in listed] == ["churnflow"]
    # the version says what was trained and the gate's verdict; its tags and the model's are plain values
    assert champion["description"].startswith(f"**{champion_candidate(champion)}** trained as of {RUN_DATE}")
    assert champion["description"].endswith("Served (the first champion).")
    model = requests.get(f"{base}/api/2.0/mlflow/registered-models/get", params={"name": "churnflow"},
                         timeout=30).json()["registered_model"]
    tags = [t["value"] for t in champion["tags"]] + [t["value"] for t in model.get("tags", [])]
    assert tags and not [v for v in tags if v.lstrip().startswith(("{", "["))], tags
    assert re.search(rf"\*\*v1\*\* champion \(was none\): training {RUN_DATE}", model["description"])


def champion_candidate(version: dict) -> str:
    return {t["key"]: t["value"] for t in version["tags"]}["churnflow.candidate"]


def test_the_training_is_logged_as_it_ran_and_names_its_chosen_candidate(served):
    """The training run spans the training (its candidate runs inside it, it ends after the
    version was registered); exactly one candidate is tagged chosen, the one the version serves,
    and the training run names it and links it."""
    base = served["base"]
    experiment = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "churnflow"},
                              timeout=30).json()["experiment"]["experiment_id"]
    runs = requests.post(f"{base}/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment]},
                         timeout=30).json()["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    (parent,) = [r for r in runs if tags[r["info"]["run_id"]].get("churnflow.kind") == "training"]
    children = [r for r in runs if tags[r["info"]["run_id"]].get("mlflow.parentRunId") == parent["info"]["run_id"]]
    chosen = [r for r in children if tags[r["info"]["run_id"]].get("churnflow.chosen") == "true"]
    assert len(children) >= 2 and len(chosen) == 1
    info, mine = parent["info"], tags[parent["info"]["run_id"]]
    assert mine["churnflow.chosen_run_id"] == chosen[0]["info"]["run_id"]
    assert chosen[0]["info"]["run_name"].endswith("(chosen)")
    assert f"(#/experiments/{experiment}/runs/{chosen[0]['info']['run_id']})" in mine["mlflow.note.content"]
    params = {p["key"]: p["value"] for p in chosen[0]["data"]["params"]}
    assert params["candidate"] == champion_candidate(requests.get(
        f"{base}/api/2.0/mlflow/registered-models/alias", params={"name": "churnflow", "alias": "champion"},
        timeout=30).json()["model_version"])
    # logged live: the parent was running through the search and the registration, not written at the end
    version = requests.get(f"{base}/api/2.0/mlflow/model-versions/get", params={"name": "churnflow", "version": "1"},
                           timeout=30).json()["model_version"]
    assert info["status"] == "FINISHED" and int(info["end_time"]) - int(info["start_time"]) > 2000
    assert int(version["creation_timestamp"]) <= int(info["end_time"])
    for child in children:  # each draw inside the search; one without its own end time shows no duration
        start, end = int(child["info"]["start_time"]), child["info"].get("end_time")
        assert int(info["start_time"]) < start < int(version["creation_timestamp"])
        assert end is None or start <= int(end) < int(version["creation_timestamp"])


def test_the_mlflow_ui_shows_the_training_its_chosen_candidate_and_the_champion_in_a_browser(served):
    """What an ML engineer sees, in headless Chromium: the link ``make mlflow`` prints opens the
    experiment in MLflow's model-training view (not the GenAI view's blank Overview) with the
    training run; its page names the chosen candidate, whose link opens the candidate's run; the
    model's page shows v1 as the champion with its description."""
    from browser import chromium

    base = served["base"]
    printed = re.search(r"training runs: http://localhost:\d+(/\S+)", served["log"].read_text())
    assert printed and "workflowType=machine_learning" in printed.group(1)

    def wait_for(driver, *wanted: str, timeout: float = 90) -> str:
        deadline, text = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            text = driver.find_element("tag name", "body").text
            if all(w in text for w in wanted):
                return text
            time.sleep(0.5)
        raise AssertionError(f"not shown within {timeout} s: {wanted}\n{text[:3000]}")

    with chromium(1500, 1100) as driver:
        driver.get(base + printed.group(1))
        text = wait_for(driver, f"churnflow {RUN_DATE}", "Duration")
        assert "Model training" in text and "Model registry" in text  # the model-training sidebar
        assert "Observability" not in text and "Token Usage" not in text  # not the GenAI view
        driver.find_element("link text", f"churnflow {RUN_DATE}").click()
        chosen = re.search(r"Chosen candidate: (\S+ #\d+)", wait_for(driver, "Chosen candidate:", "Child runs"))
        assert chosen, "no chosen candidate in the training run's description"
        wait_for(driver, f"{chosen.group(1)} (chosen)")  # its name among the run's child runs
        driver.find_element("link text", chosen.group(1)).click()  # the description's link: MLflow opens a new tab
        deadline = time.monotonic() + 30
        while len(driver.window_handles) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        driver.switch_to.window(driver.window_handles[-1])
        text = wait_for(driver, f"{chosen.group(1)} (chosen)", "Parent run", "churnflow.chosen")
        assert re.search(r"churnflow\.chosen\s*:?\s*true", text), text[:3000]  # the candidate's own page
        driver.get(f"{base}/#/models/churnflow/versions/1?workflowType=machine_learning")
        text = wait_for(driver, "Version 1", "@ champion", "Served (the first champion).")
        assert re.search(r"churnflow\.sha256\s+[0-9a-f]{64}\s", text), text[:3000]  # a digest, not a JSON blob


def test_a_business_pointed_at_the_server_trains_and_scores_through_it(served):
    """mlflow_tracking_uri: the runs, the versions and their files go to (and come from) the server."""
    from pipeline.flows import run_nightly, run_training

    data = served["tmp"] / "second"
    shutil.copytree(served["settings"].data_dir, data, ignore=shutil.ignore_patterns("mlflow", "model_cache", "runs",
                                                                                     "lake", "results.db"))
    settings = load_settings(data_dir=data, mlflow_tracking_uri=served["base"], model_name="second-business", **QUICK)
    result = run_training(settings, RUN_DATE)["train"]
    assert result["version"] == "v1" and result["promoted"]
    assert not (data / "mlflow").exists()  # nothing of the store is local
    run = requests.get(f"{served['base']}/api/2.0/mlflow/runs/get", params={"run_id": result["mlflow_run_id"]},
                       timeout=30).json()["run"]
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")  # files through the server
    shutil.rmtree(settings.model_cache_dir)  # the night fetches and checks its model over HTTP
    run_nightly(settings, RUN_DATE)
    scores = pd.read_parquet(data / "runs" / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")
    assert len(scores) > 100 and set(scores["model_version"]) == {"v1"}
    assert registry.check_champion(settings).info["sha256"]
    # the first business's registry is untouched: its own model, its own champion
    assert registry.champion_number(served["settings"]) == 1
    assert [v.version for v in registry.list_versions(served["settings"])] == ["v1"]


def test_ctrl_c_stops_the_ui(served):
    proc = served["proc"]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground group
    proc.wait(timeout=20)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{served['base']}/health", timeout=5)


def test_the_model_card_is_tables_without_server_paths():
    from pipeline.model.card import model_card_html

    metrics = {"roc_auc": 0.7947714514835605, "pr_auc": 0.30130845, "n": 2304, "threshold": 0.057, "expected_value": 2550.0,
               "f1_optimal": {"threshold": 0.31, "f1": 0.35, "expected_value": 1200.0},
               "campaign": {"customer_value": 200.0, "save_rate": 0.3, "contact_cost": 5.0, "capacity": 500},
               "selection": {"chosen": "logreg", "families": {"logreg": {"cv_roc_auc": 0.71, "cv_std": 0.01}}},
               "promotion_decision": "no champion yet", "train_rows": 8369}
    params = {"model": "logreg", "search_params": {"model__C": 0.1}, "calibration": "sigmoid",
              "numeric_features": ["tenure_days"], "categorical_features": ["plan"],
              "label": {"kind": "cancellation", "definition": "a cancellation in the 30 days from the snapshot"},
              "training_set": "/tmp/pytest-9/trained/data/runs/churn_training/2025-07-01/training_set.parquet",
              "source_csv": "/home/ana/exports/BankChurners.csv", "categories": {"plan": ["basic", "premium"]},
              "training_window": {"first_snapshot": "2025-02-01", "last_snapshot": "2025-05-01", "holdout": ["2025-06-01"]}}
    card = model_card_html("v1", metrics, params, {})
    assert "{" not in re.sub(r"<style>.*?</style>", "", card, flags=re.S) and "/tmp/" not in card and "/home/" not in card
    assert "<th>search params</th><td><table><tr><th>C</th><td>0.1000</td></tr></table>" in card  # a nested table
    assert "BankChurners.csv" in card and "basic, premium" in card and "<td>0.7948</td>" in card and "2,304" in card
    assert "v1: logreg trained on the snapshots 2025-02-01 to 2025-05-01 (8,369 rows), held out: 2025-06-01." in card
    assert ("a saved customer is worth 200, 30% of the churners contacted are saved, a contact costs 5, at most 500 "
            "contacts") in card


def test_versions_and_the_champions_moves_read_as_sentences():
    from pipeline.model import registry

    assert registry.verdict_sentence("no champion yet", True, None) == "Served (the first champion)."
    assert registry.verdict_sentence(
        "not promoted: candidate ROC-AUC 0.7060 does not exceed champion 0.7211 + margin 0.0 on the same holdout; "
        "the 95% lower bound of the difference is -0.0300", False, "v1") == (
        "Not served (v1 stays the champion): candidate ROC-AUC 0.7060 does not exceed champion 0.7211 + margin 0.0 on "
        "the same holdout.")
    assert registry.verdict_sentence(
        "not promoted: better on ROC-AUC (candidate ROC-AUC 0.72 > champion 0.70 + 0.0, beyond noise: the bound; x) "
        "but worse on PR-AUC 0.20 vs champion 0.30", False, "v2") == (
        "Not served (v2 stays the champion): better on ROC-AUC but worse on PR-AUC 0.20 vs champion 0.30.")
    tags = {"churnflow.candidate": "xgboost", "churnflow.training_date": "2025-07-01", "churnflow.label": "cancellation",
            "churnflow.holdout": "2025-06-01", "churnflow.roc_auc": "0.802240", "churnflow.pr_auc": "0.236870"}
    assert registry.version_description(tags, "Served (the first champion).") == (
        "**xgboost** trained as of 2025-07-01 (cancellation churn), held out 2025-06-01: ROC-AUC 0.8022, PR-AUC 0.2369. "
        "Served (the first champion).")
    moves = [{"at": f"2026-12-0{i}T12:00:0{i}+00:00", "version": f"v{i}", "previous": f"v{i - 1}" if i > 1 else None,
              "reason": f"training 2025-07-0{i}: x" * (1 + 40 * (i == 3))} for i in range(1, 8)]
    text = registry.moves_description(moves)
    assert len(text) <= 5000 and text.index("**v7**") < text.index("**v1**")  # newest first
    back = registry._parse_moves(text)
    assert [(m["previous"], m["version"], m["at"]) for m in back] == [(m["previous"], m["version"], m["at"]) for m in moves]
    assert back[0]["reason"] == "training 2025-07-01: x" and back[2]["reason"].endswith("...")


def test_a_training_that_fails_leaves_its_run_failed_and_no_default_experiment(tmp_path):
    """The live training run ends FAILED when the training raises (not RUNNING for ever), and
    churnflow's local store holds no "Default" experiment."""
    from pipeline.errors import TrainingError
    from pipeline.model import tracking

    settings = load_settings(data_dir=tmp_path / "data")
    with pytest.raises(TrainingError), tracking.training_run(settings, settings.model_name, RUN_DATE) as live:
        assert tracking.observer() is live
        raise TrainingError("the holdout has a single class")
    assert not isinstance(tracking.observer(), tracking.TrainingRun)  # nobody records outside the block
    c = tracking.client(settings)
    run = c.get_run(live.run_id)
    assert run.info.status == "FAILED" and run.info.run_name == f"churnflow {RUN_DATE}" and run.info.end_time
    assert [e.name for e in c.search_experiments()] == ["churnflow"]
