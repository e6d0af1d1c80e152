"""``make mlflow`` serves the MLflow UI on the project's store (checked over HTTP), and
``mlflow_tracking_uri`` points churnflow at a shared MLflow server: a second business trains,
registers and pins its models through that server, artifacts proxied over HTTP."""

from __future__ import annotations

import os
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
        if proc.poll() is None:
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
