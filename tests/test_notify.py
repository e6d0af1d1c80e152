"""E-mail building and delivery against a real SMTP server on localhost (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from pipeline.drift import DriftSummary, FeatureDrift
from pipeline.notify import (
    EmailDeliveryError,
    SmtpSettings,
    build_report_email,
    send_email,
    summary_html,
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


def test_summary_html_is_short_escaped_and_complete(summary: DriftSummary) -> None:
    body = summary_html(
        summary, logical_date="2024-07-15", scores_path="runs/x/scores.parquet", n_scored=12_345, high_risk_share=0.083
    )

    assert "2024-07-15" in body and "DATASET DRIFT" in body
    assert "2 of 4 features drifted" in body and "12,345 current rows" in body and "50,000 reference rows" in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>" not in body
    assert body.index("age") < body.index("&lt;script&gt;")  # largest PSI first
    assert "0.42" in body and "0.31" in body
    assert "Features without drift: 2; largest PSI among them: tenure_days" in body
    assert "Customers scored: 12,345" in body and "8.3%" in body and "runs/x/scores.parquet" in body


def test_report_email_arrives_with_summary_and_attachment(
    smtp_server: SmtpServer, summary: DriftSummary, report_file: Path
) -> None:
    body = summary_html(summary, logical_date="2024-07-15")
    message = build_report_email(
        sender=SENDER,
        recipients=RECIPIENTS,
        subject="churnflow 2024-07-15: data drift",
        summary_html=body,
        attachments=[report_file],
    )

    send_email(message, smtp_server.settings)

    [envelope] = smtp_server.inbox.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == RECIPIENTS
    received = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert received["Subject"] == "churnflow 2024-07-15: data drift"
    assert received["To"] == ", ".join(RECIPIENTS)
    inline = received.get_body(preferencelist=("html",))
    assert inline is not None and "Churn nightly report: 2024-07-15" in inline.get_content()
    [attachment] = list(received.iter_attachments())
    assert attachment.get_content_type() == "text/html"
    assert attachment.get_filename() == "drift_report.html"
    assert attachment.get_payload(decode=True) == report_file.read_bytes()


def test_login_is_used_when_given(smtp_server: SmtpServer, summary: DriftSummary) -> None:
    message = build_report_email(
        sender=SENDER, recipients=RECIPIENTS[:1], subject="s", summary_html="<p>x</p>", attachments=[]
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
        build_report_email(sender=SENDER, recipients=recipients, subject="s", summary_html="", attachments=[])


def test_unreachable_server_error_names_host_and_port() -> None:
    port = _free_port()
    message = build_report_email(
        sender=SENDER, recipients=RECIPIENTS, subject="s", summary_html="<p>x</p>", attachments=[]
    )
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{port}"):
        send_email(message, SmtpSettings(host="127.0.0.1", port=port, timeout=2))


def test_smtp_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpSettings(host="mail", port=465, ssl=True, starttls=True)
    with pytest.raises(ValueError, match="port"):
        SmtpSettings(host="mail", port=0)
