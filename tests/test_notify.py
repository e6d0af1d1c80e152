"""E-mail building and delivery against a real SMTP server on localhost (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import io
import math
import re
import socket
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from pipeline.artifacts import write_zip
from pipeline.model.score import campaign_list, high_risk_share
from pipeline.monitoring.drift import DriftSummary, FeatureDrift
from pipeline.monitoring.notify import (
    CampaignFile,
    EmailDeliveryError,
    NightlyReport,
    SmtpSettings,
    build_report_email,
    send_email,
)

SENDER = "churnflow@example.com"
RECIPIENTS = ["analyst.one@example.com", "analyst.two@example.com"]
LOGIN, PASSWORD = "churnflow", "s3cret"


def _free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Inbox:
    """aiosmtpd handler that keeps every envelope it accepts."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        LOGIN.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class SmtpServer:
    settings: SmtpSettings
    inbox: _Inbox


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 accepting LOGIN/PASSWORD without TLS."""
    inbox = _Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(SmtpSettings(host="127.0.0.1", port=controller.port, timeout=5), inbox)
    finally:
        controller.stop()


@pytest.fixture
def summary() -> DriftSummary:
    features = [
        FeatureDrift("age", "numeric", "Wasserstein distance (normed)", 0.42, 0.1, True, 0.31),
        FeatureDrift("<script>x</script>", "categorical", "Jensen-Shannon distance", 0.2, 0.1, True, 0.12),
        FeatureDrift("tenure_days", "numeric", "Wasserstein distance (normed)", 0.01, 0.1, False, 0.004),
        FeatureDrift("empty_col", "numeric", "no data", math.nan, math.nan, False, math.nan),
    ]
    return DriftSummary(n_reference=50_000, n_current=12_345, drift_share=0.5, dataset_drift=True, features=features)


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "drift_report.html"
    path.write_text("<html><body><h1>Drift – größer</h1></body></html>\n" * 200, encoding="utf-8")
    return path


THRESHOLD = 0.237
MONITORING = {
    "threshold": THRESHOLD,
    "prediction": {"high_risk_share": 0.083, "reference_high_risk_share": 0.061, "baseline_high_risk_share": 0.07,
                   "baseline_nights": 3, "mean_score": 0.09, "reference_mean_score": 0.07, "psi_vs_reference": 0.04},
    "performance": {"scored_on": "2024-06-15", "rows": 11_000, "base_rate": 0.05, "roc_auc": 0.71,
                    "champion_roc_auc": 0.8, "pr_auc": 0.2, "champion_pr_auc": 0.3, "precision": 0.3, "recall": 0.4,
                    "threshold": THRESHOLD, "concept_drift": True},
}


def _alert(severity: str, rule: str, night: str, status: str, note: str, message: str) -> dict:
    return {"severity": severity, "rule": rule, "run_date": dt.datetime.fromisoformat(night), "status": status,
            "note": note, "message": message}


ALERTS = [
    _alert("critical", "performance_drop", "2024-07-14", "pending", "carried over: raised on 2024-07-14, not e-mailed then",
           "ROC-AUC 0.71 (champion 0.80)"),
    _alert("warning", "data_drift", "2024-07-15", "pending", "new tonight", "2 features drifted"),
    _alert("warning", "feature_psi", "2024-07-15", "suppressed", "suppressed: e-mailed within the last 7 days", "PSI <x>"),
]


@pytest.fixture
def report(summary: DriftSummary) -> NightlyReport:
    return NightlyReport(
        logical_date="2024-07-15", drift=summary, scored=12_345, high_risk_share=0.083, threshold=THRESHOLD,
        campaign=CampaignFile("campaign_2024-07-15.csv", 1_000, 1_025, 1_000), monitoring=MONITORING,
        alerts=ALERTS, attachments=["drift_report.html.zip", "campaign_2024-07-15.csv"],
    )


def test_html_summary_is_escaped_and_complete_without_server_paths(report: NightlyReport) -> None:
    body = report.html()

    assert "Churn nightly report: 2024-07-15, severity CRITICAL" in body and "DATASET DRIFT" in body
    assert "2 of 4 features drifted" in body and "12,345 current rows" in body and "50,000 reference rows" in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>" not in body and "PSI &lt;x&gt;" in body
    assert body.index("<td") < body.index(">age<") < body.index("&lt;script&gt;")  # largest PSI first
    assert "0.42" in body and "0.31" in body
    assert "Features without drift: 2; largest PSI among them: days as a customer" in body
    assert "Customers scored: 12,345 (table churn_scores, as_of 2024-07-15)" in body
    # what the analyst can use instead of a path on the pipeline's server
    assert "<code>" not in body and ".parquet" not in body
    assert not re.search(r"(?<!<)/\w", body.replace("&lt;/", "")), "a file path"
    assert "drift_report.html.zip, campaign_2024-07-15.csv" in body


def test_high_risk_share_is_stated_with_its_threshold_wherever_shown(report: NightlyReport) -> None:
    for body in (report.html(), report.text()):
        assert body.count("8.3%") == 2, body  # scoring and prediction drift: one number
        assert body.count("&gt;= 0.237" if "<h2>" in body else ">= 0.237") == 2
        assert "the champion" in body and "campaign decision threshold" in body


def test_plain_text_part_carries_the_headline_facts(report: NightlyReport) -> None:
    text = report.text()

    assert "HTML" not in text and "<" not in text.replace("PSI <x>", "").replace("<script>x</script>", "")
    for fact in ("2024-07-15", "severity CRITICAL", "Customers scored: 12,345",
                 "At risk: 8.3% (churn probability >= 0.237", "DATASET DRIFT. 2 of 4 features drifted",
                 "Feature: age; Type: numeric", "1,000 customers in campaign_2024-07-15.csv",
                 "ROC-AUC 0.710 (champion holdout 0.800)", "Concept drift: YES",
                 "Attached\n- drift_report.html.zip, campaign_2024-07-15.csv"):
        assert fact in text, fact
    # the alerts list, carried-over and suppressed ones said as such
    assert ("Severity: critical; Rule: performance_drop; Night: 2024-07-14; "
            "Status: carried over: raised on 2024-07-14, not e-mailed then") in text
    assert "Rule: data_drift; Night: 2024-07-15; Status: new tonight; Message: 2 features drifted" in text
    assert "Status: suppressed: e-mailed within the last 7 days" in text


def test_subject_severity_counts_the_delivered_alerts_only(report: NightlyReport) -> None:
    assert report.subject() == "[churnflow] 2024-07-15 CRITICAL: nightly churn scores: 12,345 customers, DRIFT"
    suppressed_critical = [{**a, "status": "suppressed"} if a["severity"] == "critical" else a for a in ALERTS]
    quieter = NightlyReport(**{**report.__dict__, "alerts": suppressed_critical})
    assert quieter.severity == "warning" and "WARNING:" in quieter.subject()
    assert NightlyReport(**{**report.__dict__, "alerts": []}).severity == "info"
    assert "No alerts" in NightlyReport(**{**report.__dict__, "alerts": []}).text()


def test_campaign_sentence_says_n_and_how_it_was_chosen() -> None:
    capped = CampaignFile("c.csv", 1_000, 1_025, 1_000).sentence()
    assert "1,000 customers in c.csv (risk band high)" in capped
    assert "the 1,000 highest of the 1,025 customers at or above the threshold" in capped
    assert "25 more are at risk but over the daily capacity (campaign_daily_capacity 1,000): risk band medium" in capped
    assert "within the daily capacity" in CampaignFile("c.csv", 300, 300, 1_000).sentence()
    unlimited = CampaignFile("c.csv", 1_025, 1_025, 0).sentence()
    assert "1,025 customers" in unlimited and "every customer at or above" in unlimited and "no daily limit" in unlimited


def test_the_high_band_is_exactly_the_campaign_list() -> None:
    """'High' used to be a fixed cut-off (0.5) while the list took everyone at or above the
    threshold (0.07): a list of 'medium' customers. Now the band is the decision."""
    from pipeline.model.score import risk_bands

    scores = pd.DataFrame({"customer_id": [5, 3, 9, 1, 7], "churn_probability": [0.9, 0.3, 0.3, 0.1, 0.6],
                           "model_version": "v"})
    assert risk_bands(scores, 0.3, 0).tolist() == ["high", "high", "high", "low", "high"]  # at the threshold counts
    assert risk_bands(scores, 0.3, 3).tolist() == ["high", "high", "medium", "low", "high"]  # ties by id
    # a model whose campaign pays for nobody (its chosen threshold is above every probability):
    # everyone is "low" (it used to fail the night: "threshold must be in [0, 1], got 1.000000001")
    from pipeline.model.evaluate import CONTACT_NOBODY

    assert risk_bands(scores, CONTACT_NOBODY, 0).tolist() == ["low"] * 5
    with pytest.raises(ValueError, match="threshold must be in"):
        risk_bands(scores, 1.5, 0)
    scores["risk_band"] = risk_bands(scores, 0.3, 3)
    campaign = campaign_list(scores, threshold=0.3, capacity=3)
    assert list(campaign.columns) == ["customer_id", "churn_probability", "risk_band", "rank"]
    assert list(campaign["customer_id"]) == [5, 7, 3] and list(campaign["rank"]) == [1, 2, 3]
    assert set(campaign["customer_id"]) == set(scores.loc[scores["risk_band"] == "high", "customer_id"])
    everyone = campaign_list(scores, threshold=0.3, capacity=0)
    assert list(everyone["customer_id"]) == [5, 7, 3, 9]
    assert list(campaign_list(scores, threshold=0.5, capacity=10)["customer_id"]) == [5, 7]
    # the same definition as the at-risk share
    assert high_risk_share(scores["churn_probability"], 0.3) == len(everyone) / len(scores) == 0.8
    assert math.isnan(high_risk_share(pd.Series([], dtype="float64"), 0.3))


def test_report_email_arrives_with_both_parts_and_small_attachments(
    smtp_server: SmtpServer, report: NightlyReport, report_file: Path, tmp_path: Path
) -> None:
    zipped = write_zip(report_file, tmp_path / "drift_report.html.zip")
    csv = tmp_path / "campaign_2024-07-15.csv"
    csv.write_text("customer_id,churn_probability,risk_band,rank\n5,0.9,high,1\n", encoding="utf-8")
    message = build_report_email(
        sender=SENDER,
        recipients=RECIPIENTS,
        subject=report.subject(),
        summary_html=report.html(),
        summary_text=report.text(),
        attachments=[zipped, csv],
    )

    send_email(message, smtp_server.settings)

    [envelope] = smtp_server.inbox.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == RECIPIENTS
    received = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert received["Subject"] == report.subject()
    assert received["To"] == ", ".join(RECIPIENTS)
    # the headers mail clients sort and thread by
    sent_at = email.utils.parsedate_to_datetime(received["Date"])
    assert abs((sent_at - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    assert re.fullmatch(r"<[^@<>\s]+@[^@<>\s]+>", received["Message-ID"]), received["Message-ID"]
    inline = received.get_body(preferencelist=("html",))
    assert inline is not None and "Churn nightly report: 2024-07-15" in inline.get_content()
    plain = received.get_body(preferencelist=("plain",))
    assert plain is not None and plain.get_content().splitlines() == report.text().splitlines()
    first, second = received.iter_attachments()
    assert (first.get_content_type(), first.get_filename()) == ("application/zip", "drift_report.html.zip")
    with zipfile.ZipFile(io.BytesIO(first.get_payload(decode=True))) as archive:
        assert archive.namelist() == ["drift_report.html"]
        assert archive.read("drift_report.html") == report_file.read_bytes()
        assert archive.getinfo("drift_report.html").compress_type == zipfile.ZIP_DEFLATED
    assert len(first.get_payload(decode=True)) < report_file.stat().st_size / 5
    assert (second.get_content_type(), second.get_filename()) == ("text/csv", "campaign_2024-07-15.csv")
    assert second.get_content() == csv.read_text(encoding="utf-8")


def test_login_is_used_when_given(smtp_server: SmtpServer, summary: DriftSummary) -> None:
    message = build_report_email(
        sender=SENDER, recipients=RECIPIENTS[:1], subject="s", summary_html="<p>x</p>", summary_text="x",
        attachments=[],
    )
    base = smtp_server.settings
    send_email(message, SmtpSettings(host=base.host, port=base.port, login=LOGIN, password=PASSWORD, timeout=5))
    assert len(smtp_server.inbox.envelopes) == 1

    wrong = SmtpSettings(host=base.host, port=base.port, login=LOGIN, password="wrong", timeout=5)
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{base.port}"):
        send_email(message, wrong)


@pytest.mark.parametrize("recipients", [[], ["nobody"], ["ok@example.com", "  "], ["a@example.com,b@example.com"]])
def test_bad_recipients_are_rejected(recipients: list[str]) -> None:
    with pytest.raises(ValueError, match="recipient"):
        build_report_email(sender=SENDER, recipients=recipients, subject="s", summary_html="", summary_text="",
                           attachments=[])


def test_unreachable_server_error_names_host_and_port() -> None:
    port = _free_port()
    message = build_report_email(
        sender=SENDER, recipients=RECIPIENTS, subject="s", summary_html="<p>x</p>", summary_text="x",
        attachments=[],
    )
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{port}"):
        send_email(message, SmtpSettings(host="127.0.0.1", port=port, timeout=2))


def test_smtp_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpSettings(host="mail", port=465, ssl=True, starttls=True)
    with pytest.raises(ValueError, match="port"):
        SmtpSettings(host="mail", port=0)


def test_the_trend_chart_reads_with_one_night() -> None:
    """One night used to sit alone on an axis matplotlib spread over years (2025-2029); the axis
    is now the configured nights up to the date, with a tick per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.monitoring.charts import trend_chart_png

    trend = pd.DataFrame({"drift_share": [0.2], "high_risk_share": [0.1], "roc_auc": [float("nan")]},
                         index=pd.to_datetime(["2025-07-01"]))
    captured = {}
    original = plt.close

    def keep(fig=None):  # the figure as drawn, to read its axis
        captured["fig"] = fig
        return original(fig)

    plt.close = keep
    try:
        png = trend_chart_png(trend, "2025-07-01", nights=14)
    finally:
        plt.close = original
    assert png and png.startswith(b"\x89PNG")
    ax = captured["fig"].axes[0]
    low, high = (matplotlib.dates.num2date(x).date() for x in ax.get_xlim())
    assert (high - low).days <= 15 and low <= dt.date(2025, 6, 18) and high >= dt.date(2025, 7, 1)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "07-01" in labels and "06-18" in labels
    assert ax.get_title() == "1 night so far (2025-07-01)"  # not "The 14 nights up to 2025-07-01"


def test_the_email_says_whether_retraining_was_requested(report: NightlyReport) -> None:
    requested = NightlyReport(**{**report.__dict__, "monitoring": {**MONITORING, "retrain": True}}).text()
    assert "Retraining requested: tonight's critical alert triggered churn_training" in requested
    assert "next e-mail's Model section names the new version" in requested
    quiet = NightlyReport(**{**report.__dict__, "monitoring": {**MONITORING, "retrain": False}}).text()
    assert "No retraining was requested tonight" in quiet
    # the night's decision (pipeline.monitoring.retraining): the snapshots, or why not and from when it could help
    asked = {"requested": True, "reason": "retraining requested: trains on snapshots 2024-02-01 .. 2024-06-01 (5 "
                                          "month starts) (labels matured by 2024-07-15); the change the "
                                          "performance_drop alert found (2024-06-01) is within them"}
    text = NightlyReport(**{**report.__dict__, "monitoring": {**MONITORING, "retrain": True,
                                                               "retraining": asked}}).text()
    assert "Retraining requested: trains on snapshots 2024-02-01 .. 2024-06-01" in text
    assert "Tonight's request triggered churn_training" in text
    no = {"requested": False, "could_help_from": "2024-07-31", "reason": (
        "no retraining requested: the change the performance_drop alert found is at 2024-06-15, after the latest "
        "snapshot whose labels have matured by tonight (2024-06-01; ...), so it could not see it; one could help "
        "from 2024-07-31")}
    text = NightlyReport(**{**report.__dict__, "monitoring": {**MONITORING, "retrain": False,
                                                               "retraining": no}}).text()
    assert "No retraining requested: the change the performance_drop alert found is at 2024-06-15" in text
    assert "one could help from 2024-07-31." in text and "triggered churn_training" not in text
    # the headline names the alert that decides the severity
    assert "severity CRITICAL (decided by the performance_drop alert)" in text


def test_the_champion_serves_since_a_business_date_or_a_persons_promotion_time() -> None:
    """A training's gate promoted it on that training's date; a person's promotion at a clock time, to the minute."""
    from pipeline.monitoring.notify import champion_since

    by_gate = {"promoted_at": "2026-12-06T12:01:19+00:00", "reason": "training 2025-07-01: first version, served"}
    assert champion_since(by_gate) == ", champion since the training of 2025-07-01 (its gate: first version, served)"
    by_hand = {"promoted_at": "2026-12-06T12:01:19+00:00", "reason": "manual promotion"}
    assert champion_since(by_hand) == ", champion since 2026-12-06 12:01 UTC (manual promotion)"
    assert champion_since({}) == ""


def test_the_trend_says_how_many_nights_so_far_until_its_window_is_full() -> None:
    from pipeline.monitoring.charts import trend_title

    def nights(*days: str) -> pd.DataFrame:
        return pd.DataFrame({"drift_share": [0.1] * len(days)}, index=pd.to_datetime(list(days)))

    assert trend_title(nights("2025-07-01"), "2025-07-01", 14) == "1 night so far (2025-07-01)"
    assert trend_title(nights("2025-07-01", "2025-07-02"), "2025-07-02", 14) == "2 nights so far, up to 2025-07-02"
    # nights before the window: the window is full, though some nights in it did not run
    assert trend_title(nights("2025-07-02"), "2025-07-02", 14, dt.date(2025, 5, 1)) == "The 14 nights up to 2025-07-02"


def test_the_dashboard_link_is_a_link_in_the_html(report: NightlyReport) -> None:
    import dataclasses

    link = "http://dash:8000/projects/p1/reports/n1"
    body = dataclasses.replace(report, dashboard=f"Tonight's page: {link}").html()
    assert f'Tonight\'s page: <a href="{link}">{link}</a></p>' in body.replace("&#x27;", "'")


def test_numbers_read_rounded_never_in_exponent_notation() -> None:
    from pipeline.monitoring.notify import _num

    assert [_num(v) for v in (0.000012, 0.8, 0.123456, 12.3456, 2369.0, 123456.7, float("nan"), None)] == [
        "0.000", "0.800", "0.123", "12.346", "2,369", "123,457", "n/a", "n/a"]


def test_feature_names_in_alert_messages_read_as_the_catalogues_words() -> None:
    from pipeline.monitoring.notify import in_words

    words = in_words(["monthly_fee", "n_logins_30d", "plan"])
    assert words("PSI of monthly_fee 0.31; n_logins_30d moved; plan too; n_logins_30d_x stays") == (
        "PSI of monthly fee 0.31; logins in the last 30 days moved; plan too; n_logins_30d_x stays")
