"""DAG tests with real Airflow: integrity, parse cost, and end-to-end runs with dag.test()."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile

import pandas as pd
import pendulum
import pytest
from conftest import ROOT, RUN_DATE, copy_business

from pipeline.config import load_settings

DAG_IDS = ("churn_training", "churn_nightly")


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    """The DAG folder parsed by Airflow (``get_dag`` reads the metadata DB, so it must exist)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


@pytest.fixture(scope="module", autouse=True)
def quick_models():
    """Every training in this module (the DAG's and a test's own) fits a quick model: the
    wiring is under test here, not the search (CHURNFLOW_* settings, read by load_settings)."""
    mp = pytest.MonkeyPatch()
    for name, value in {"CANDIDATES": "logreg,xgboost", "SEARCH_ITERATIONS": "1", "CV_FOLDS": "1"}.items():
        mp.setenv(f"CHURNFLOW_{name}", value)
    yield
    mp.undo()


def _logical(date: str = RUN_DATE):
    return pendulum.parse(date, tz="UTC")


def test_dagbag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(DAG_IDS) <= set(dagbag.dag_ids)
    # the UI's DAG list shows each one's description (the REST API returned None for all of them)
    assert all(dagbag.get_dag(d).description for d in dagbag.dag_ids), dagbag.dag_ids


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_conventions(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert "churnflow" in dag.tags
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md
    for t in dag.tasks:
        expected = 0 if t.task_id == "wait_for_data" else 2  # a readiness timeout is final
        assert t.retries == expected, f"{t.task_id} retries"


def test_nightly_schedule_and_params(dagbag):
    dag = dagbag.get_dag("churn_nightly")
    assert dag.timetable.summary in {"@daily", "0 0 * * *"}
    assert dag.timetable._run_immediately is True  # unpausing runs the latest midnight at once
    params = dag.params
    for name in ("recipients", "send_email", "lookback_days", "horizon_days"):
        assert name in params, name
    assert params["send_email"] is True
    # the readiness gate, then ingestion (validated inside), before anything else
    assert dag.get_task("wait_for_data").upstream_task_ids == set()
    assert dag.get_task("ingest").upstream_task_ids == {"wait_for_data"}
    assert dag.get_task("build_features").upstream_task_ids == {"ingest", "plan_partitions"}
    # features and scores are mapped over the customer-hash partitions, then combined for everything after them
    assert dag.get_task("score").upstream_task_ids == {"build_features"}
    assert {"build_features", "score"} <= dag.get_task("combine_partitions").upstream_task_ids
    assert "combine_partitions" in dag.get_task("data_drift").upstream_task_ids
    # every task that touches the model pulls the run context wait_for_data pinned (tests/test_monitoring_tasks.py)
    # the report is assembled after monitoring, and the scores are published after the report
    assert {"alerts", "data_drift"} <= dag.get_task("drift_report").upstream_task_ids
    assert "drift_report" in dag.get_task("publish_scores").upstream_task_ids
    # the dashboard's snapshot is built from what the night published, beside the e-mail (not before it)
    assert dag.get_task("dashboard_snapshot").upstream_task_ids == {"publish_scores"}
    assert dag.get_task("wait_for_data").mode == "reschedule"


@pytest.mark.parametrize("dag_file", ["churn_training.py", "churn_nightly.py"])
def test_dag_files_do_not_import_heavy_libraries_at_parse_time(dag_file):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('pandas', 'great_expectations', 'evidently', 'xgboost', 'sklearn', 'duckdb') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / dag_file)], capture_output=True,
                         text=True, env=os.environ.copy(), check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"imported at parse time: {out.stdout}"


def _task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.fixture(scope="module")
def trained_and_scored(generated_source, tmp_path_factory, dagbag, airflow_db):
    """churn_training then churn_nightly (with e-mail) on one generated dataset."""
    import shutil

    from churnflow_sim.smtp_sink import SmtpSink

    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    shutil.copytree(generated_source, data_dir)
    mp = pytest.MonkeyPatch()
    mp.setenv("CHURNFLOW_DATA_DIR", str(data_dir))
    mp.setenv("CHURNFLOW_EMAIL_RECIPIENTS", "ana@example.com,bo@example.com")
    with SmtpSink() as sink:
        mp.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.airflow_connection_uri())
        training = dagbag.get_dag("churn_training").test(logical_date=_logical())
        nightly = dagbag.get_dag("churn_nightly").test(logical_date=_logical())
        yield {"settings": load_settings(), "training": training, "nightly": nightly, "sink": sink, "mp": mp}
    mp.undo()


def test_training_dag_end_to_end(trained_and_scored):
    run, settings = trained_and_scored["training"], trained_and_scored["settings"]
    assert run.state == "success", _task_states(run)
    from pipeline.model import registry

    champ = registry.require_champion(settings)
    assert champ.version == "v1" and champ.info["run_id"]
    for name in ("model/MLmodel", "model/model.pkl", "churnflow/metrics.json", "churnflow/params.json",
                 "churnflow/reference.parquet", "churnflow/model_card.html", "churnflow/importances.parquet"):
        assert (champ.path / name).is_file(), name
    metrics = champ.metrics()
    assert metrics["roc_auc"] > 0.6 and 0 <= metrics["threshold"] <= 1
    # every lake input made it through validation into the lake
    for table in ("customers", "subscriptions", "payments", "events"):
        assert any((settings.lake_dir / table).glob("*=*/*.parquet")), table  # a day's or a closed month's file


def test_nightly_dag_scores_every_active_customer(trained_and_scored):
    run, settings = trained_and_scored["nightly"], trained_and_scored["settings"]
    assert run.state == "success", _task_states(run)
    scores = pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")
    features = pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "build_features" / "features.parquet")
    assert len(scores) == len(features) > 0
    assert scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    # active at D: signed up before D and not cancelled before D (checked against the source)
    with sqlite3.connect(settings.data_dir / "source.db") as conn:
        active = pd.read_sql(
            "SELECT customer_id FROM customers WHERE signup_date < ? AND customer_id NOT IN "
            "(SELECT customer_id FROM cancellations WHERE cancelled_at < ?)", conn, params=(RUN_DATE, RUN_DATE))
        in_source = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        table = pd.read_sql("SELECT * FROM churn_scores", conn)
    assert set(scores["customer_id"]) == set(active["customer_id"])
    # the outputs live in the results store; the source database holds only its own tables
    assert not in_source & {"churn_scores", "drift_metrics", "prediction_drift", "model_performance",
                            "fairness_metrics", "alerts"}, in_source
    assert len(table) == len(scores)


def test_nightly_dag_writes_drift_report_and_emails_it(trained_and_scored):
    settings, sink = trained_and_scored["settings"], trained_and_scored["sink"]
    report = settings.reports_dir / RUN_DATE / "drift_report.html"
    html = report.read_text()
    assert "<html" in html.lower() and "drift" in html.lower()
    summary = json.loads((report.parent / "drift_summary.json").read_text())
    assert summary["features"], "per-feature drift results"
    # the generator's drift (price rise, new young channel) from 2025-06-01 is found
    drifted = {f["column"] for f in summary["features"] if f["drifted"]}
    assert {"acquisition_channel", "monthly_fee"} & drifted, drifted

    assert len(sink.messages) == 1
    msg = sink.messages[0]
    scores = pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")
    assert sorted(sink.envelopes[0][1]) == ["ana@example.com", "bo@example.com"]
    assert RUN_DATE in msg["Subject"]
    # the night after the injected drift: its alerts stored, their highest severity in the subject; data drift alone
    # never requests retraining (issue 34): the request_retraining task is skipped, saying why
    monitoring = json.loads((settings.runs_dir / "churn_nightly" / RUN_DATE / "alerts" / "monitoring.json").read_text())
    assert f"{RUN_DATE} {monitoring['severity'].upper()}:" in msg["Subject"]
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        stored = conn.execute("SELECT rule, severity, status FROM alerts").fetchall()
        n_features = conn.execute("SELECT COUNT(*) FROM drift_metrics").fetchone()[0]
    assert {rule for rule, *_ in stored} & {"data_drift", "feature_psi", "data_quality"}, stored
    assert {status for *_, status in stored} <= {"sent", "suppressed"}, "the e-mail went out: nothing pending"
    assert n_features == len(summary["features"])
    states = _task_states(trained_and_scored["nightly"])
    assert states["alerts"] == "success", states
    assert states["request_retraining"] == ("success" if monitoring["retrain"] else "skipped"), states
    assert monitoring["retraining"]["reason"] and monitoring["retraining"]["rule"] not in ("data_drift", "feature_psi")
    named = {ti.task_id: ti.rendered_map_index for ti in trained_and_scored["nightly"].get_task_instances()
             if ti.map_index >= 0}
    assert named == {"build_features": "bucket 1 of 1", "score": "bucket 1 of 1"}, named  # map_index_template
    assert states["dashboard_snapshot"] == "success", states
    assert (settings.data_dir / "dashboard").is_dir()  # the night's snapshot, in the default workspace
    # small enough to e-mail: the complete report when it fits, else its e-mail copy (the drifted features first),
    # deflated, and the campaign list
    assert len(msg.as_bytes()) < 2_000_000
    attachments = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
    assert list(attachments) == ["drift_report.html.zip", f"campaign_{RUN_DATE}.csv"]
    copy = "attached as its e-mail copy" in msg.get_body(("plain",)).get_content()
    with zipfile.ZipFile(io.BytesIO(attachments["drift_report.html.zip"])) as archive:
        assert archive.read("drift_report.html").decode() == (
            report.parent / ("drift_report_email.html" if copy else "drift_report.html")).read_text()
    campaign = pd.read_csv(io.BytesIO(attachments[f"campaign_{RUN_DATE}.csv"]))
    assert list(campaign.columns) == ["customer_id", "rank", "churn_probability", "expected_value", "risk_band",
                                      "on_list_because", "reason_1", "reason_2", "reason_3", "plan", "tenure_days"]
    at_risk = round(monitoring["prediction"]["high_risk_share"] * len(scores))
    assert len(campaign) == min(at_risk, settings.campaign_daily_capacity)  # the default daily capacity
    assert campaign["churn_probability"].is_monotonic_decreasing and campaign["customer_id"].isin(scores["customer_id"]).all()
    # "high" is exactly the campaign; each row says why
    assert set(campaign["customer_id"]) == set(scores.loc[scores["risk_band"] == "high", "customer_id"])
    assert (campaign["risk_band"] == "high").all() and campaign["reason_1"].notna().all()
    text = msg.get_body(("plain",)).get_content()
    assert f"{len(campaign):,} customers in campaign_{RUN_DATE}.csv (risk band high)" in text
    for part in (text, msg.get_body(("html",)).get_content()):
        assert str(settings.data_dir) not in part and ".parquet" not in part, "no server paths in the e-mail"


def test_rerun_of_the_same_date_leaves_one_set_of_outputs(trained_and_scored, dagbag):
    settings = trained_and_scored["settings"]
    run_root = settings.runs_dir / "churn_nightly" / RUN_DATE

    def snapshot():
        files = sorted(str(p.relative_to(settings.data_dir)) for p in settings.data_dir.rglob("*")
                       if p.is_file() and "source.db" not in p.name and "outbox" not in p.parts)
        with sqlite3.connect(settings.data_dir / "results.db") as conn:
            n = conn.execute("SELECT COUNT(*) FROM churn_scores").fetchone()[0]
        return files, n

    before = snapshot()
    trained_and_scored["mp"].setenv("CHURNFLOW_EMAIL_ENABLED", "false")
    rerun = dagbag.get_dag("churn_nightly").test(logical_date=_logical(), run_conf={"send_email": False})
    assert rerun.state == "success", _task_states(rerun)
    assert snapshot() == before
    assert (run_root / "score" / "scores.parquet").is_file()
    assert len(trained_and_scored["sink"].messages) == 1, "send_email=False sends nothing"


def test_a_partitioned_night_maps_its_buckets_and_publishes_the_same_scores(trained_and_scored, dagbag, capfd):
    """partitions: 3 -> build_features and score run as 3 mapped task instances each, named by their bucket,
    combine_partitions makes them one night: the published scores are those of the unpartitioned night, to the
    last bit. A healthy night logs no error (the bug: combining the mapped pieces asked for one past the last, and
    Airflow's client logged "[error] XCom not found ... 'build_features'", then 'score', every night)."""
    settings, mp = trained_and_scored["settings"], trained_and_scored["mp"]
    query = "SELECT customer_id, churn_probability, risk_band, reason_1, reason_2, reason_3 FROM churn_scores"
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        before = sorted(conn.execute(query).fetchall())
    mp.setenv("CHURNFLOW_PARTITIONS", "3")
    try:
        run = dagbag.get_dag("churn_nightly").test(logical_date=_logical(), run_conf={"send_email": False})
    finally:
        mp.delenv("CHURNFLOW_PARTITIONS")
    assert run.state == "success", _task_states(run)
    mapped = [(ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances()
              if ti.task_id in ("build_features", "score")]
    assert sorted(mapped) == [(t, i, "success") for t in ("build_features", "score") for i in range(3)], mapped
    named = sorted((ti.task_id, ti.rendered_map_index) for ti in run.get_task_instances() if ti.map_index >= 0)
    assert named == [(t, f"bucket {i} of 3") for t in ("build_features", "score") for i in (1, 2, 3)], named
    logged = "".join(capfd.readouterr())
    assert "XCom not found" not in logged and "[error" not in logged, logged[-3000:]
    with sqlite3.connect(settings.data_dir / "results.db") as conn:
        assert sorted(conn.execute(query).fetchall()) == before
    parts = sorted(p.parent.name for p in (settings.runs_dir / "churn_nightly" / RUN_DATE / "score").glob("part-*/*"))
    assert parts == [f"part-000{i}-of-0003" for i in range(3)]


def _drop_not_null(conn: sqlite3.Connection, table: str) -> None:
    """Rebuild ``table`` from its own DDL without NOT NULL: a source whose constraints are weaker
    than our contract (the generated database declares them, so nulls could not get in)."""
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    conn.execute(f"ALTER TABLE {table} RENAME TO {table}_strict")
    conn.execute(ddl.replace("NOT NULL", ""))
    conn.execute(f"INSERT INTO {table} SELECT * FROM {table}_strict")
    conn.execute(f"DROP TABLE {table}_strict")


def _break_source(settings) -> None:
    """Corrupt the nightly window of the source: the five classic breakages."""
    with sqlite3.connect(settings.data_dir / "source.db") as conn:
        day = "2025-06-30"
        _drop_not_null(conn, "payments")
        conn.execute("UPDATE payments SET customer_id = NULL WHERE payment_id IN "
                     "(SELECT payment_id FROM payments WHERE paid_at >= ? LIMIT 2)", (day,))
        conn.execute("UPDATE payments SET amount = -5 WHERE payment_id IN "
                     "(SELECT payment_id FROM payments WHERE paid_at >= ? AND customer_id IS NOT NULL LIMIT 3)", (day,))
        # a plan the contract never heard of is fine (open vocabulary), a negative fee is not
        conn.execute("INSERT INTO subscriptions (subscription_id, customer_id, plan, monthly_fee, payment_method, start_date) "
                     "VALUES (99999999, 1, 'platinum', -30.0, 'card', '2025-06-30 12:00:00.000000')")
        conn.execute("ALTER TABLE support_tickets RENAME COLUMN ticket_id TO ticket_no")  # a required column goes
    events = settings.landing_dir / "events" / f"date={day}" / "events.parquet"
    ev = pd.read_parquet(events)
    ev.loc[ev.index[:4], "event_ts"] = pd.Timestamp("2031-01-01")
    ev.to_parquet(events)


def test_broken_source_batch_stops_the_nightly_run(trained_source, tmp_path, monkeypatch, dagbag, airflow_db,
                                                  smtp_sink):
    # a copy of the trained business: a champion exists, so only validation can stop the night
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(copy_business(trained_source, tmp_path / "data")))
    settings = load_settings()
    _break_source(settings)
    run = dagbag.get_dag("churn_nightly").test(logical_date=_logical())
    states = _task_states(run)
    assert run.state == "failed"
    assert states["wait_for_data"] == "success" and states["ingest"] == "failed", states
    for task in ("build_features", "score", "drift_report", "alerts", "email_report", "request_retraining",
                 "dashboard_snapshot"):
        assert states[task] == "upstream_failed", (task, states)
    assert not smtp_sink.messages
    q = settings.quarantine_dir
    pay = pd.read_parquet(q / "payments" / f"churn_nightly__{RUN_DATE}.parquet")
    assert len(pay) == 5 and pay["_reason"].str.contains("payments.").all()
    subs = pd.read_parquet(q / "subscriptions" / f"churn_nightly__{RUN_DATE}.parquet")
    assert subs["monthly_fee"].tolist() == [-30.0] and subs["_reason"].str.contains("monthly_fee").all()
    ev = pd.read_parquet(q / "events" / f"churn_nightly__{RUN_DATE}.parquet")
    assert len(ev) == 4 and ev["_reason"].str.contains("event_ts").all()


def test_validation_error_names_table_column_rule_and_count(source_data):
    from pipeline.context import RunContext
    from pipeline.ingestion.steps import ingest_step
    from pipeline.ingestion.validate import DataValidationError

    settings = source_data
    _break_source(settings)
    with pytest.raises(DataValidationError) as err:
        ingest_step(RunContext.of(settings, "churn_nightly", RUN_DATE), "payments")
    text = str(err.value)
    assert "payments" in text and "customer_id" in text and "amount" in text
    assert "expect_column_values_to_not_be_null" in text and "expect_column_values_to_be_between" in text
    assert "2 " in text and "3 " in text
    with pytest.raises(DataValidationError, match=r"(?s)support_tickets.*ticket_id.*expect_column_to_exist"):
        ingest_step(RunContext.of(settings, "churn_nightly", RUN_DATE), "support_tickets")


def test_nightly_asks_for_retraining_with_its_own_date_and_snapshots(dagbag):
    """The asset event carries the night's date (the training it triggers trains as of it) and the
    snapshots the request named; a night that requests nothing skips with the decision's sentence."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowSkipException

    task = dagbag.get_dag("churn_nightly").get_task("request_retraining")
    [asset] = task.outlets
    decision = {"requested": True, "rule": "concept_drift", "change_date": "2025-04-20",
                "snapshots": ["2025-04-01", "2025-05-01", "2025-06-01"],
                "reason": "retraining requested: trains on snapshots 2025-04-01 .. 2025-06-01 (3 month starts)"}
    events = {asset: SimpleNamespace(extra=None)}
    said = task.python_callable({"retrain": True, "severity": "critical", "model_version": "v1",
                                 "retraining": decision}, logical_date=_logical(), outlet_events=events)
    assert events[asset].extra == {"date": RUN_DATE, "severity": "critical", "model_version": "v1",
                                   "snapshots": decision["snapshots"], "rule": "concept_drift",
                                   "change_date": "2025-04-20"}
    assert said == decision["reason"]
    why = "no retraining requested: the change the concept_drift alert found is at 2025-06-20, ...; one could help from"
    with pytest.raises(AirflowSkipException, match="one could help from"):
        task.python_callable({"retrain": False, "severity": "critical", "retraining": {"reason": why}},
                             logical_date=_logical(), outlet_events=events)


def test_publish_scores_updates_the_scores_published_asset(dagbag):
    """A business's own DAG (a CRM sync) can be scheduled on the night's published scores."""
    task = dagbag.get_dag("churn_nightly").get_task("publish_scores")
    assert [getattr(o, "uri", "").rstrip("/") for o in task.outlets] == ["churnflow://scores-published"]  # Airflow adds a /


def test_a_published_night_emits_its_date_on_the_scores_published_asset(trained_and_scored):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                  .filter(AssetModel.uri.in_(["churnflow://scores-published", "churnflow://scores-published/"])).all())
        extras = [(e.source_task_id, e.extra) for e in events]
    assert any(task == "publish_scores" and x.get("date") == RUN_DATE and x.get("rows", 0) > 0 for task, x in extras), extras


def test_run_date_of_an_asset_triggered_run_is_the_requesting_night():
    import datetime as dt
    from types import SimpleNamespace

    from churnflow_airflow.tasks import run_date

    events = {"churnflow://retraining-requested": [SimpleNamespace(extra={"date": "2025-06-03"}),
                                                   SimpleNamespace(extra={"date": "2025-06-05"}),
                                                   SimpleNamespace(extra={})]}
    run = SimpleNamespace(run_after=pendulum.datetime(2026, 12, 1, 7, tz="UTC"))
    assert run_date({"logical_date": None, "triggering_asset_events": events, "dag_run": run}) == dt.date(2025, 6, 5)
    assert run_date({"logical_date": None, "dag_run": run}) == dt.date(2026, 12, 1)
    assert run_date({"logical_date": _logical("2025-07-01"), "dag_run": run}) == dt.date(2025, 7, 1)


def test_email_without_an_smtp_connection_fails_at_once_saying_how_to_set_it(trained_and_scored, dagbag):
    mp = trained_and_scored["mp"]
    mp.delenv("AIRFLOW_CONN_SMTP_DEFAULT")
    mp.setenv("CHURNFLOW_EMAIL_ENABLED", "true")
    run = dagbag.get_dag("churn_nightly").test(logical_date=_logical(), run_conf={"send_email": True})
    ti = next(t for t in run.get_task_instances() if t.task_id == "email_report")
    assert ti.state == "failed" and ti.try_number == 1, (ti.state, ti.try_number)  # no retries
    assert _task_states(run)["score"] == "success"


@pytest.mark.parametrize("conf", [{"no_such_param": 1}, {"sendemail": False}])
def test_unknown_conf_keys_are_refused_before_any_data_task(source_data, dagbag, airflow_db, conf, capfd):
    run = dagbag.get_dag("churn_nightly").test(logical_date=_logical(), run_conf=conf)
    states = _task_states(run)
    assert run.state == "failed" and states["wait_for_data"] == "failed", states
    assert all(s == "upstream_failed" for t, s in states.items() if t != "wait_for_data"), states
    assert not (source_data.runs_dir / "churn_nightly").exists()
    text = "".join(capfd.readouterr())
    assert f"unknown conf key(s) {sorted(conf)}" in text and "valid Params:" in text and "send_email" in text


def test_night_without_data_stops_at_the_readiness_gate(source_data, dagbag, airflow_db, capfd):
    import shutil

    shutil.rmtree(source_data.landing_dir / "events" / "date=2024-11-14", ignore_errors=True)
    run = dagbag.get_dag("churn_nightly").test(logical_date=_logical("2024-11-15"))  # before the data begins
    states = _task_states(run)
    assert run.state == "failed" and states["wait_for_data"] == "failed", states
    assert all(s == "upstream_failed" for t, s in states.items() if t != "wait_for_data"), states
    assert "no landing partition for day(s) 2024-11-14" in "".join(capfd.readouterr())
    assert not (source_data.runs_dir / "churn_nightly").exists() and not source_data.lake_dir.exists()
