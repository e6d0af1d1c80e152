"""Monitoring on generated data with --drift-from (2025-06-01): real SQLite, real SMTP server.

One champion whose training snapshots (2025-04-01 .. 2025-06-01: one time-based CV fold) precede the drift; nightly
runs on a quiet night and, the horizon (30 days) later, on a night after the drift.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from conftest import RUN_DATE
from pipeline.alerts import Alert, highest_severity, record_alerts
from pipeline.config import load_settings
from pipeline.monitor import DRIFT_TABLE, PERFORMANCE_TABLE, read_table

#: the drifted night is also the first whose horizon has passed since QUIET
QUIET, DRIFTED = "2025-05-28", "2025-06-27"
HORIZON_DAYS = 30
#: features the generator's price rise touches
PRICE_FEATURES = {"monthly_fee", "billing_change_pct_90d"}


@pytest.fixture(scope="module")
def nightly(generated_source, tmp_path_factory):
    from pipeline.flows import run_nightly, run_training
    from pipeline.notify import SmtpSettings
    from pipeline.smtp_sink import SmtpSink

    data_dir = tmp_path_factory.mktemp("monitor") / "data"
    shutil.copytree(generated_source, data_dir)
    settings = load_settings(data_dir=data_dir, horizon_days=HORIZON_DAYS, training_snapshots=3, search_iterations=1)
    run_training(settings, RUN_DATE)
    outs = {}
    with SmtpSink() as sink:
        smtp = SmtpSettings(host=sink.host, port=sink.port)
        for day in (QUIET, DRIFTED):
            outs[day] = run_nightly(settings, day, lookback_days=31, send=True, smtp=smtp)
        messages = {day: m for m in sink.messages for day in outs if day in m["Subject"]}
    return settings, outs, messages


def test_quiet_night_sends_info_email_and_no_alert(nightly):
    settings, outs, messages = nightly
    monitoring = outs[QUIET]["monitoring"]
    assert monitoring["alerts"] == [], monitoring["alerts"]
    assert monitoring["severity"] == "info"
    assert f"{QUIET} INFO:" in messages[QUIET]["Subject"]
    alerts = read_table(settings, "alerts")
    assert alerts.empty or not (alerts["run_date"] == dt.datetime(2025, 5, 28)).any()


def test_injected_drift_is_detected_in_changed_features_only(nightly):
    settings, outs, messages = nightly
    drifted = set(outs[DRIFTED]["drift"]["drifted"])
    assert "monthly_fee" in drifted
    assert drifted <= PRICE_FEATURES | {"age", "acquisition_channel", "tenure_days"}, drifted
    rows = read_table(settings, DRIFT_TABLE)
    per_night = rows.groupby("run_date").size()
    assert per_night.nunique() == 1 and len(per_night) == 2  # a row per feature per night
    tonight = rows[rows["run_date"] == dt.datetime(2025, 6, 27)].set_index("feature")
    assert set(tonight.index[tonight["drifted"].astype(bool)]) == drifted
    assert tonight["psi"].notna().all() and tonight.loc["monthly_fee", "psi"] > settings.psi_critical
    assert {"method", "statistic", "threshold", "kind"} <= set(tonight.columns)
    severity = outs[DRIFTED]["monitoring"]["severity"]
    assert severity == "critical"
    assert outs[DRIFTED]["monitoring"]["retrain"] is True
    message = messages[DRIFTED]
    assert "CRITICAL" in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert "monthly_fee" in html and "data:image/png;base64," in html  # trend chart inline
    attached = list(message.iter_attachments())
    assert [p.get_filename() for p in attached] == ["drift_report.html"]
    report = attached[0].get_content()
    report = report.decode("utf-8") if isinstance(report, bytes) else report
    # the trend over recent nights is inside the attached report too, once, below the banner
    assert report.count("<!-- churnflow:trend -->") == 1
    trend = report.split("<!-- churnflow:trend -->", 1)[1].split("<!-- /churnflow:trend -->", 1)[0]
    # the last settings.trend_nights (14) nights: tonight in, the quiet night 30 days earlier out
    assert "data:image/png;base64," in trend and DRIFTED in trend and QUIET not in trend
    assert report.index("</header>") < report.index("<!-- churnflow:trend -->")


def test_report_sections_are_replaced_not_repeated(tmp_path):
    from pipeline.drift import add_report_section

    page = tmp_path / "r.html"
    page.write_text("<html><head></head><body><header>banner</header><div>evidently</div></body></html>")
    add_report_section(page, "trend", "<p>night 1</p>")
    add_report_section(page, "trend", "<p>night 2</p>")  # a retried task
    text = page.read_text()
    assert text.count("churnflow:trend -->") == 2 and "night 1" not in text
    assert text.index("</header>") < text.index("night 2") < text.index("evidently")
    with pytest.raises(ValueError, match="section id"):
        add_report_section(page, "Bad Id", "x")


def test_matured_label_performance_appears_once_the_horizon_has_passed(nightly):
    settings, outs, _ = nightly
    assert outs[QUIET]["monitoring"]["performance"] is None
    perf = outs[DRIFTED]["monitoring"]["performance"]
    assert perf["scored_on"] == QUIET
    assert perf["rows"] == outs[QUIET]["scores"]["rows"]
    assert 0 <= perf["roc_auc"] <= 1 and 0 <= perf["recall"] <= 1
    stored = read_table(settings, PERFORMANCE_TABLE)
    assert list(stored["run_date"].dt.date.astype(str)) == [DRIFTED]


def test_alerts_are_deduplicated_within_the_cooldown(settings):
    drift = Alert("data_drift", "critical", "features", "12 features drifted", 0.6, 0.5)
    psi = Alert("feature_psi", "warning", "features", "PSI", 0.2, 0.1)
    first = record_alerts(settings, "2025-06-01", "v1", [drift])
    assert list(first["status"]) == ["sent"]
    again = record_alerts(settings, "2025-06-03", "v1", [drift, psi])
    assert list(again["status"]) == ["suppressed", "sent"]
    # a rerun of a night replaces its rows and does not suppress itself
    rerun = record_alerts(settings, "2025-06-03", "v1", [drift, psi])
    assert list(rerun["status"]) == ["suppressed", "sent"]
    assert len(read_table(settings, "alerts")) == 3
    # a new model, or a night past the cooldown, sends again
    assert list(record_alerts(settings, "2025-06-04", "v2", [drift])["status"]) == ["sent"]
    later = dt.date(2025, 6, 1) + dt.timedelta(days=settings.alert_cooldown_days)
    assert list(record_alerts(settings, later, "v1", [drift])["status"]) == ["sent"]
    assert highest_severity([psi, drift]) == "critical" and highest_severity([]) == "info"


def test_fairness_alert_needs_a_significant_drop_below_the_reference():
    from pipeline.alerts import _fairness_worse_than_reference

    def row(rows, positives, top_rate, reference):
        rate = positives / rows
        return {"rows": rows, "positive_rate": rate, "positive_rate_ratio": rate / top_rate,
                "expected_positives_at_top": rows * top_rate, "reference_ratio": reference}

    # 10 of 500 flagged where the reference ratio predicts ~45: a real drop
    assert _fairness_worse_than_reference(row(500, 10, 0.10, 0.9), p_value=0.01)
    # 4 of 211 where ~7 are expected (the quiet night's region=west): noise, not an alert
    assert not _fairness_worse_than_reference(row(211, 4, 0.118, 0.29), p_value=0.01)
    # no reference to compare with: the 80% rule alone decides
    assert _fairness_worse_than_reference(row(211, 4, 0.118, None), p_value=0.01)
