"""The worked example of a transactions-only shop (examples/retail) in a running Airflow: the
``make airflow`` launcher from a bare PATH with the example's CHURNFLOW_CONFIG, driven through
the REST API v2. What ``dag.test()`` cannot show: that the dag-processor parses the DAGs with
the example's configuration (the churn_training form's defaults are inactivity churn), that the
scheduled night for *today* scores the shop's active customers, and that a trigger with the
form's defaults trains on inactivity churn."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import sqlite3

import pytest
from conftest import ROOT

from churnflow_sim.live_airflow import launch
from pipeline.config import load_settings

pytestmark = pytest.mark.live

EXAMPLE = ROOT / "examples" / "retail" / "churnflow.yaml"
TODAY = dt.datetime.now(dt.UTC).date()


def test_the_shop_example_in_a_running_airflow(tmp_path):
    from churnflow_sim.retail import generate_retail
    from pipeline.flows import run_training

    # a year of the shop up to the end of this month (the days before today are its history),
    # and a first champion trained in-process as of yesterday: the lake then holds every day
    # before the scheduled night's window [yesterday, today) (trained as of the first of the
    # month, the days between it and yesterday would never be ingested by a one-day night)
    this_month = TODAY.replace(day=1)
    start = (this_month - dt.timedelta(days=330)).replace(day=1)
    months = (this_month.year - start.year) * 12 + this_month.month - start.month + 1
    quick = {"candidates": "logreg", "search_iterations": 1, "cv_folds": 1}
    settings = load_settings(EXAMPLE, data_dir=tmp_path / "data", **quick)
    generate_retail(settings, customers=1500, months=months, seed=9, start=start, progress=None)
    run_training(settings, TODAY - dt.timedelta(days=1))
    env = {"CHURNFLOW_LIVE": "0", "CHURNFLOW_CONFIG": str(EXAMPLE), "CHURNFLOW_CANDIDATES": "logreg",
           "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1", "CHURNFLOW_RETRAIN_ON_CRITICAL": "false",
           "CHURNFLOW_EMAIL_RECIPIENTS": "ana@example.com"}
    with launch(tmp_path, env, dags=frozenset({"churn_nightly", "churn_training"})) as live:
        api = live.api
        params = api("GET", "/dags/churn_training/details")["params"]
        assert (params["label_kind"]["value"], params["inactivity_days"]["value"]) == ("inactivity", 28), params

        api("PATCH", "/dags/churn_nightly", json={"is_paused": False})
        night = api.wait_run("churn_nightly", lambda r: r["run_type"] == "scheduled", 300, live.log)
        states = api.states("churn_nightly", night["dag_run_id"])
        assert night["state"] == "success" and night["logical_date"].startswith(TODAY.isoformat()), states

        api("PATCH", "/dags/churn_training", json={"is_paused": False})
        created = api("POST", "/dags/churn_training/dagRuns",
                      json={"logical_date": f"{TODAY.isoformat()}T00:00:00Z", "conf": {}})  # the form's defaults
        training = api.wait_run("churn_training", lambda r: r["dag_run_id"] == created["dag_run_id"], 300, live.log)
        assert training["state"] == "success", api.states("churn_training", training["dag_run_id"])

    since = (TODAY - dt.timedelta(days=28)).isoformat()
    with sqlite3.connect(settings.data_dir / "source.db") as conn:
        active = {r[0] for r in conn.execute("SELECT DISTINCT customer_no FROM orders WHERE state = 'complete' "
                                             "AND ordered_at >= ? AND ordered_at < ?", (since, TODAY.isoformat()))}
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        scored = {r[0] for r in conn.execute("SELECT customer_id FROM churn_scores WHERE date(as_of) = ?",
                                             (TODAY.isoformat(),))}
    assert scored == {str(c) for c in active} and len(scored) > 300  # ids as text in the results store
    [message] = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in live.outbox.glob("*.eml")]
    assert "Churn means: no successful payment in the 28 days" in message.get_body(("plain",)).get_content()
    from pipeline.model import registry

    newest = registry.list_versions(settings)[-1]  # the form's training: a new version, gated against v1
    assert newest.version == "v2" and newest.tags["churnflow.training_date"] == TODAY.isoformat()
    label = registry.get_version(settings, newest.version).params["label"]
    assert label["kind"] == "inactivity" and label["window_days"] == 28
