"""E-mail the nightly report to analysts.

No Airflow here: the DAG resolves the Airflow SMTP connection into :class:`SmtpSettings`
and calls :func:`send_email`; everything else builds the message from plain values.
"""

from __future__ import annotations

import html
import logging
import math
import mimetypes
import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pandas as pd

from pipeline.drift import DriftSummary, FeatureDrift

log = logging.getLogger(__name__)

_CELL = 'style="border:1px solid #ccc;padding:4px 8px;text-align:left"'


class EmailDeliveryError(RuntimeError):
    """The SMTP server could not be reached or refused the message."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: ``ssl`` is SMTPS from the start, ``starttls`` upgrades plain SMTP."""

    host: str
    port: int
    login: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 30

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("SMTP host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"SMTP port must be 1-65535, got {self.port}")
        if self.ssl and self.starttls:
            raise ValueError("choose either ssl (SMTPS) or starttls, not both")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def validate_recipients(recipients: list[str]) -> list[str]:
    """Return the stripped addresses; raise ``ValueError`` if none or any lacks an '@'."""
    cleaned = [r.strip() for r in recipients]
    if not cleaned:
        raise ValueError("no e-mail recipients given")
    invalid = [r for r in cleaned if "@" not in r or any(ch in r for ch in ",;\r\n")]
    if invalid:
        raise ValueError(f"invalid e-mail recipient(s): {invalid}")
    return cleaned


def build_report_email(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    summary_html: str,
    attachments: list[Path],
) -> EmailMessage:
    """A message with the summary as inline HTML (plus a plain-text part) and the files attached.

    Attachments are base64-encoded with a content type guessed from the file name
    (``.html`` becomes ``text/html``) and keep their file name.
    """
    if "@" not in sender:
        raise ValueError(f"invalid e-mail sender: {sender!r}")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(validate_recipients(recipients))
    message["Subject"] = subject
    names = ", ".join(Path(p).name for p in attachments) or "none"
    message.set_content(f"{subject}\n\nThis summary is HTML; open it in an HTML-capable client.\nAttached: {names}\n")
    message.add_alternative(summary_html, subtype="html")
    for path in attachments:
        _attach(message, Path(path))
    return message


def summary_html(
    summary: DriftSummary,
    *,
    logical_date: str,
    scores_path: str | None = None,
    n_scored: int | None = None,
    high_risk_share: float | None = None,
) -> str:
    """Short inline HTML: the drift verdict, a table of drifted features, scoring counts.

    Every value is escaped. Features that did not drift are summarised in one line (the
    attached report has them all).
    """
    verdict = "DATASET DRIFT" if summary.dataset_drift else "no dataset drift"
    drifted = summary.drifted_features
    parts = [
        f"<h2>Churn nightly report: {_esc(logical_date)}</h2>",
        f"<p><b>Data drift: {_esc(verdict)}</b>. {len(drifted)} of {len(summary.features)} features "
        f"drifted (share {summary.drift_share:.0%}); {summary.n_current:,} current rows compared with "
        f"{summary.n_reference:,} reference rows.</p>",
        _drift_table(drifted) if drifted else "<p>No feature drifted.</p>",
        _stable_line(summary),
        _scoring_html(scores_path, n_scored, high_risk_share),
        "<p>The full Evidently report is attached.</p>",
    ]
    return "\n".join(p for p in parts if p)


def send_email(message: EmailMessage, smtp: SmtpSettings) -> None:
    """Send ``message`` through ``smtp``; raise :class:`EmailDeliveryError` naming host:port."""
    client_class = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
    try:
        with client_class(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.login:
                client.login(smtp.login, smtp.password or "")
            refused = client.send_message(message)
    except OSError as exc:  # smtplib.SMTPException is an OSError too
        raise EmailDeliveryError(f"sending e-mail via SMTP {smtp.address} failed: {exc!r}") from exc
    if refused:
        log.warning("SMTP %s refused some recipients: %s", smtp.address, sorted(refused))


# --- helpers -------------------------------------------------------------------------------------


def _attach(message: EmailMessage, path: Path) -> None:
    content_type, _ = mimetypes.guess_type(path.name)
    maintype, subtype = (content_type or "application/octet-stream").split("/", 1)
    # our text artifacts are UTF-8; without the charset, readers decode them as ASCII (mojibake)
    params = {"charset": "utf-8"} if maintype == "text" else None
    message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name, params=params)


def _table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """An HTML table (values escaped) in the style of the e-mail and the report sections."""
    head = "".join(f"<th {_CELL}>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{_esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'


def _drift_table(features: list[FeatureDrift]) -> str:
    return _table(
        ("Feature", "Type", "Test", "Statistic", "Threshold", "PSI"),
        ((f.column, f.kind, f.method, _num(f.statistic), _num(f.threshold), _num(f.psi))
         for f in sorted(features, key=_by_psi_descending)),
    )


def _stable_line(summary: DriftSummary) -> str:
    stable = [f for f in summary.features if not f.drifted]
    with_psi = [f for f in stable if not math.isnan(f.psi)]
    if not with_psi:
        return f"<p>Features without drift: {len(stable)}.</p>" if stable else ""
    top = max(with_psi, key=lambda f: f.psi)
    return (
        f"<p>Features without drift: {len(stable)}; largest PSI among them: "
        f"{_esc(top.column)} ({_num(top.psi)}).</p>"
    )


def _scoring_html(scores_path: str | None, n_scored: int | None, high_risk_share: float | None) -> str:
    items = []
    if n_scored is not None:
        items.append(f"<li>Customers scored: {n_scored:,}</li>")
    if high_risk_share is not None:
        items.append(f"<li>High-risk share: {high_risk_share:.1%}</li>")
    if scores_path is not None:
        items.append(f"<li>Scores: <code>{_esc(scores_path)}</code></li>")
    return f"<h3>Scoring</h3><ul>{''.join(items)}</ul>" if items else ""


def _by_psi_descending(feature: FeatureDrift) -> float:
    return math.inf if math.isnan(feature.psi) else -feature.psi


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3g}"


def _esc(value: object) -> str:
    return html.escape(str(value))


def monitoring_html(monitoring: dict, chart_img: str = "") -> str:
    """Inline HTML of the monitoring result (:func:`pipeline.flows.monitor_step`): alerts,
    prediction drift, matured-label performance, fairness flags and the trend chart."""
    parts = [f"<h3>Alerts (highest severity: {_esc(monitoring['severity'])})</h3>"]
    alerts = monitoring.get("alerts") or []
    if alerts:
        keys = ("severity", "rule", "status", "message")
        parts.append(_table((k.capitalize() for k in keys), ([a[k] for k in keys] for a in alerts)))
    else:
        parts.append("<p>No alerts: data and scores look as expected.</p>")
    pred = monitoring.get("prediction") or {}
    if pred:
        baseline = pred["baseline_high_risk_share"]
        recent = (f"{baseline:.1%} over the previous {pred['baseline_nights']} nights"
                  if pred["baseline_nights"] else "no previous nights yet")
        parts.append(
            f"<h3>Prediction drift</h3><ul><li>High-risk share (score &gt;= {monitoring['threshold']:.2f}): "
            f"{pred['high_risk_share']:.1%} tonight, {pred['reference_high_risk_share']:.1%} in the reference, {recent}</li>"
            f"<li>Mean score {pred['mean_score']:.3f} (reference {pred['reference_mean_score']:.3f}); "
            f"PSI vs reference {_num(pred['psi_vs_reference'])}</li></ul>"
        )
    perf = monitoring.get("performance")
    if perf:
        parts.append(
            f"<h3>Performance on matured labels</h3><p>Scores of {_esc(perf['scored_on'])} ({perf['rows']:,} customers, "
            f"churn rate {perf['base_rate']:.1%}): ROC-AUC {_num(perf['roc_auc'])} (champion holdout "
            f"{_num(perf['champion_roc_auc'])}), PR-AUC {_num(perf['pr_auc'])} (champion {_num(perf['champion_pr_auc'])}), "
            f"precision {perf['precision']:.2f} and recall {perf['recall']:.2f} at {perf['threshold']:.2f}. "
            f"Concept drift: {'YES' if perf['concept_drift'] else 'no'}.</p>"
        )
    else:
        parts.append("<h3>Performance on matured labels</h3><p>No scored night has matured yet.</p>")
    if chart_img:
        parts.append(f"<h3>Trend over recent nights</h3>{chart_img}")
    return "\n".join(parts)


def trend_html(trend: pd.DataFrame, chart_img: str, nights: int) -> str:
    """The "trend over recent nights" section of the drift report: the chart and its numbers
    (:func:`pipeline.monitor.trend_frame`; NaN shows as n/a)."""

    def fmt(value: float, pattern: str) -> str:
        return "n/a" if math.isnan(value) else pattern.format(value)

    table = _table(
        ("Night", "Features drifted", "High-risk share", "ROC-AUC (matured labels)"),
        ((f"{night:%Y-%m-%d}", fmt(r.drift_share, "{:.0%}"), fmt(r.high_risk_share, "{:.1%}"), fmt(r.roc_auc, "{:.3f}"))
         for night, r in zip(trend.index, trend.itertuples(), strict=True)),
    )
    return f'<h2 style="font-size:18px;margin:0 0 8px">Trend over the last {nights} nights</h2>{chart_img}{table}'
