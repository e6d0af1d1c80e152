"""Schema drift is loud (issue 32, point 4): a column the champion was trained with that a night's
source lacks (renamed away in the ingest SQL, missing from the event files) or holds NULL in still
scores, but raises a ``schema_drift`` alert naming the table, column, rows and features, in the
results store, the e-mail and the dashboard's alert counts.

One small business (400 customers, a cheap logistic regression with the purchases group, so
``payments.amount`` feeds features) is trained once; each night runs on a copy of its data dir.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline.config import Settings, load_settings
from pipeline.monitoring.schema_drift import (
    NOT_RECORDED,
    PARAMS_KEY,
    ColumnNight,
    Finding,
    SchemaDrift,
    find,
    training_record,
    with_importance,
)
from pipeline.results import read as read_table

DAY = "2025-06-01"
#: the night ingests [DAY - 1, DAY): the rows these tests break
BROKEN_DAY = "2025-05-31"
CHEAP = {"candidates": "logreg", "search_iterations": 1, "cv_folds": 1, "training_snapshots": 4,
         "promotion_min_roc_auc": 0.0, "concept_drift_detectors": "", "importance_sample_rows": 0,
         "feature_groups": "customer,subscription,events,payments,plan_changes,support,renewal,purchases"}
SPEND = {"total_spend_30d", "total_spend_90d", "total_spend_180d", "total_spend_365d", "avg_order_value_365d"}
DURATION = {"total_duration_s_7d", "total_duration_s_30d", "total_duration_s_90d"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained business's data dir (generated source, lake, registry with its champion)."""
    from churnflow_sim.generate import generate
    from pipeline.flows import run_training

    data_dir = tmp_path_factory.mktemp("schema_drift") / "data"
    settings = load_settings(data_dir=data_dir, **CHEAP)
    generate(settings, customers=400, months=6, seed=3, start=dt.date(2025, 1, 1), progress=None)
    run_training(settings, DAY)
    return data_dir


def _copy(trained: Path, tmp_path: Path, **overrides: object) -> Settings:
    data_dir = tmp_path / "data"
    shutil.copytree(trained, data_dir)
    return load_settings(data_dir=data_dir, **CHEAP, **overrides)


def _night(settings: Settings) -> tuple[dict, dict[str, str]]:
    """The nightly flow with its e-mail to a real SMTP server: its outputs, and the e-mail's text and HTML."""
    from churnflow_sim.smtp_sink import SmtpSink
    from pipeline.flows import run_nightly
    from pipeline.monitoring.notify import SmtpSettings

    with SmtpSink() as sink:
        out = run_nightly(settings, DAY, send=True, smtp=SmtpSettings(host=sink.host, port=sink.port))
        (message,) = sink.messages
    return out, {kind: message.get_body((kind,)).get_content() for kind in ("plain", "html")}


def _schema_alerts(settings: Settings) -> pd.DataFrame:
    alerts = read_table(settings, "alerts")
    return alerts[(alerts["rule"] == "schema_drift") & (alerts["run_date"] == pd.Timestamp(DAY))]


def _check_loud(settings: Settings, out: dict, email: dict[str, str], table: str, column: str,
                features: set[str], said: str) -> None:
    """Scores published, and one schema_drift alert naming the column, its rows and features, in the
    store, the e-mail (text and HTML), monitoring.json and the dashboard's alert counts."""
    from pipeline.monitoring.dashboard import night_figures

    scores = read_table(settings, "churn_scores")
    assert out["published"]["rows"] > 0 and (scores["as_of"] == pd.Timestamp(DAY)).sum() == out["published"]["rows"]
    rows = out["validated"][table]["columns"]["rows"]
    assert rows > 0
    alerts = _schema_alerts(settings)
    assert list(alerts["alert_group"]) == [f"{table}.{column}"], alerts
    alert = alerts.iloc[0]
    message = alert["message"]
    assert f"{table}.{column}" in message and said in message and f"{rows:,} {table} rows" in message, message
    assert all(f in message for f in features), message
    (finding,) = out["monitoring"]["schema_drift"]["findings"]
    assert set(finding["features"]) == features and finding["rows"] == rows
    assert 0 < finding["shap_share"] < 1
    critical = finding["shap_share"] > settings.schema_drift_critical_share
    assert alert["severity"] == ("critical" if critical else "warning") and alert["status"] == "sent"
    for kind, body in email.items():
        assert "schema_drift" in body and f"{table}.{column}" in body and "schema drift" in body, kind
    figures = {(f.figure, f.label): f.value for f in night_figures(settings, DAY)[0]}
    assert figures[("alerts", alert["severity"])] >= 1


def test_a_payments_column_renamed_away_in_the_ingest_sql_scores_and_alerts(trained, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "ingest_payments.sql").write_text(
        "SELECT payment_id, customer_id, paid_at, amount AS amount_eur, status FROM payments\n"
        "WHERE paid_at >= :window_start AND paid_at < :window_end ORDER BY paid_at\n")
    settings = _copy(trained, tmp_path, sql_dir=str(sql))
    out, email = _night(settings)
    _check_loud(settings, out, email, "payments", "amount", SPEND, "absent from ingest_payments.sql")
    assert out["validated"]["payments"]["columns"]["absent"]["amount"] == out["validated"]["payments"]["columns"]["rows"]


def test_event_files_without_duration_scores_and_alerts(trained, tmp_path):
    import pyarrow.parquet as pq

    settings = _copy(trained, tmp_path)
    files = sorted((settings.landing_dir / "events" / f"date={BROKEN_DAY}").glob("*.parquet"))
    assert files
    for path in files:
        pq.write_table(pq.read_table(path).drop_columns(["duration_s"]), path)
    out, email = _night(settings)
    _check_loud(settings, out, email, "events", "duration_s", DURATION, "absent from tonight's event files")


def test_null_amounts_in_the_nights_rows_score_and_alert(trained, tmp_path):
    """The column is returned, NULL in the night's rows (the source's table declares it NOT NULL, so
    the ingest SQL writes the NULLs). Critical here: with schema_drift_critical_share 0 any weight in
    the model's mean |SHAP| is too much."""
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "ingest_payments.sql").write_text(
        "SELECT payment_id, customer_id, paid_at, CASE WHEN paid_at >= :window_start THEN NULL ELSE amount END "
        "AS amount, status FROM payments\nWHERE paid_at >= :window_start AND paid_at < :window_end ORDER BY paid_at\n")
    settings = _copy(trained, tmp_path, schema_drift_critical_share=0.0, sql_dir=str(sql))
    out, email = _night(settings)
    rows = out["validated"]["payments"]["columns"]["rows"]
    _check_loud(settings, out, email, "payments", "amount", SPEND, f"NULL in {rows:,} of the {rows:,}")
    assert out["validated"]["payments"]["columns"]["absent"]["amount"] == 0
    (alert,) = [a for a in out["monitoring"]["alerts"] if a["rule"] == "schema_drift"]
    assert alert["severity"] == "critical"
    # a critical schema_drift alert asks for no retraining (a model trained on the broken column cannot help)
    assert "retraining cannot help" in alert["message"]
    from pipeline.monitoring.alerts import RETRAIN_RULES

    others = [a for a in out["monitoring"]["alerts"] if a["rule"] in RETRAIN_RULES and a["severity"] == "critical"]
    assert out["monitoring"]["retrain"] == bool(others) is False, out["monitoring"]["retraining"]


def test_a_healthy_night_raises_no_schema_drift_and_an_unrecorded_version_says_so_once(trained, tmp_path):
    from pipeline.flows import run_nightly
    from pipeline.model import registry
    from pipeline.model.publish import record_version
    from pipeline.monitoring.notify import left_out_lines

    settings = _copy(trained, tmp_path)
    champion = registry.champion(settings)
    record = champion.params[PARAMS_KEY]
    assert record["columns"]["payments.amount"]["null_share"] == 0.0
    assert set(record["columns"]["payments.amount"]["features"]) == SPEND
    assert "purchases" in record["feature_groups"] and "payments" in record["tables"]
    out = run_nightly(settings, DAY, reports=False)
    schema = out["monitoring"]["schema_drift"]
    assert schema["recorded"] and schema["findings"] == [] and "payments.amount" in schema["checked"]
    assert _schema_alerts(settings).empty and out["published"]["rows"] > 0

    # a version registered before the record (its params without it): the night runs and says so, once
    params = {k: v for k, v in champion.params.items() if k != PARAMS_KEY}
    older = record_version(settings, champion.load(), name=settings.model_name, metrics=champion.metrics(),
                           params=params, reference=pd.read_parquet(champion.reference_path),
                           importances=pd.Series(dtype="float64"), training_date=DAY, gate=None)
    registry.promote(settings, older.number, "test: a version without a source record")
    (settings.data_dir / "sql").mkdir()
    (settings.data_dir / "sql" / "ingest_payments.sql").write_text(
        "SELECT payment_id, customer_id, paid_at, status FROM payments\n"
        "WHERE paid_at >= :window_start AND paid_at < :window_end ORDER BY paid_at\n")
    out = run_nightly(settings.replace(sql_dir=str(settings.data_dir / "sql")), DAY, reports=False)
    schema = out["monitoring"]["schema_drift"]
    assert schema["recorded"] is False and schema["note"] == NOT_RECORDED and schema["findings"] == []
    assert out["published"]["rows"] > 0 and _schema_alerts(settings).empty
    lines = left_out_lines(params, out["monitoring"])
    assert sum("not recorded for this version" in line for line in lines) == 1, lines


# ---------------------------------------------------------------------------------------- pure parts
RECORD = training_record(["age", "total_spend_30d", "avg_order_value_365d", "n_events_30d"], ["customer", "purchases"],
                         {"customers.birth_year": (100, 30), "payments.amount": (1000, 0)})


def test_the_record_names_each_optional_column_with_its_features_and_training_null_share():
    assert RECORD["tables"] == ["customers", "payments"]
    assert RECORD["columns"] == {
        "customers.birth_year": {"features": ["age"], "rows": 100, "null_share": 0.3},
        "payments.amount": {"features": ["total_spend_30d", "avg_order_value_365d"], "rows": 1000, "null_share": 0.0}}


def test_nulls_beyond_training_are_findings_noise_and_unchecked_tables_are_not():
    def names(night: dict[str, ColumnNight]) -> list[str]:
        return [f.name for f in find(RECORD, night, 0.1)]

    # birth year: 30% null in training, tolerated up to 40%; 3 of 4 null is not significant, 60 of 100 is
    assert names({"customers.birth_year": ColumnNight(4, 3)}) == []
    assert names({"customers.birth_year": ColumnNight(100, 60)}) == ["customers.birth_year"]
    assert names({"customers.birth_year": ColumnNight(100, 38)}) == []
    # absent from the source is structural: one row is enough
    assert names({"payments.amount": ColumnNight(1, 1, absent=1)}) == ["payments.amount"]
    # no rows tonight, or the table not ingested tonight: nothing to tell
    assert names({"payments.amount": ColumnNight(0, 0)}) == [] and names({}) == []


def test_the_severity_follows_the_features_share_of_mean_abs_shap_and_never_asks_for_retraining():
    from pipeline.monitoring.alerts import RULES, retrain_requested

    (finding,) = find(RECORD, {"payments.amount": ColumnNight(10, 10)}, 0.1)
    shap = pd.Series({"age": 1.0, "total_spend_30d": 0.5, "avg_order_value_365d": 0.5, "n_events_30d": 2.0})
    (weighed,) = with_importance([finding], shap)
    assert weighed.shap_share == pytest.approx(0.25)
    assert math.isnan(with_importance([finding], shap * 0)[0].shap_share)
    rule = next(r for r in RULES if r.name == "schema_drift")
    assert not rule.retrain and rule.kind == "schema drift"
    settings = load_settings()

    def severity(f: Finding, share: float) -> str:
        night = SimpleNamespace(schema_drift=SchemaDrift("v1", True, ["payments.amount"], [f]))
        (alert,) = rule.evaluate(settings.replace(schema_drift_critical_share=share), night)  # type: ignore[arg-type]
        assert alert.group == "payments.amount" and "10 payments rows" in alert.message
        return alert.severity

    assert severity(weighed, 0.2) == "critical" and severity(weighed, 0.3) == "warning"
    assert severity(finding, 0.0) == "warning"  # weight unknown: a warning
    raised = pd.DataFrame([{"rule": "schema_drift", "severity": "critical"}])
    assert not retrain_requested(settings, raised)
