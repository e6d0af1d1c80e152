"""E-mail the nightly report to analysts.

No Airflow here: the DAG resolves the Airflow SMTP connection into :class:`SmtpSettings`
and calls :func:`send_email`; everything else builds the message from plain values.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
import mimetypes
import re
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.features.catalogue import human_label
from pipeline.monitoring.alerts import KINDS, SEVERITIES, SUPPRESSED, highest_severity
from pipeline.monitoring.drift import DriftSummary, by_psi_descending

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
    summary_text: str,
    attachments: list[Path],
) -> EmailMessage:
    """A message with the summary as plain text and as HTML (alternatives) and the files attached.

    Attachments are base64-encoded with a content type guessed from the file name
    (``.html`` becomes ``text/html``, ``.csv`` ``text/csv``, ``.zip`` ``application/zip``)
    and keep their file name.
    """
    if "@" not in sender:
        raise ValueError(f"invalid e-mail sender: {sender!r}")
    from email.utils import format_datetime, make_msgid

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(validate_recipients(recipients))
    message["Subject"] = subject
    # what every mail client sorts and threads by (a message without them reads as dated "now",
    # or is marked as suspicious by some filters)
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1].strip("> ") or None)
    message.set_content(summary_text)
    message.add_alternative(summary_html, subtype="html")
    for path in attachments:
        _attach(message, Path(path))
    return message


@dataclass(frozen=True)
class CampaignFile:
    """The campaign list attached to the e-mail (:func:`pipeline.model.score.campaign_list`)."""

    name: str
    rows: int
    #: at-risk customers tonight (at or above the threshold)
    eligible: int
    #: ``campaign_daily_capacity`` (0: no limit)
    capacity: int

    def sentence(self) -> str:
        head = (f"Tonight's campaign: {self.rows:,} customers in {self.name} (risk band high), highest churn "
                "probability first, each with its top three reasons")
        if self.capacity and self.eligible > self.capacity:
            left = self.eligible - self.capacity
            return (f"{head}: the {self.capacity:,} highest of the {self.eligible:,} customers at or above the "
                    f"threshold. {left:,} more are at risk but over the daily capacity (campaign_daily_capacity "
                    f"{self.capacity:,}): risk band medium, in churn_scores, not in the list.")
        if self.capacity:
            return (f"{head}: every customer at or above the threshold, within the daily capacity "
                    f"(campaign_daily_capacity {self.capacity:,}).")
        return f"{head}: every customer at or above the threshold (campaign_daily_capacity 0: no daily limit)."


@dataclass(frozen=True)
class NightlyReport:
    """What the nightly e-mail says, written once and rendered as HTML and as plain text.

    ``monitoring`` is :func:`pipeline.monitoring.part_steps.alerts_step`'s result (``None``: no severity,
    prediction drift or performance part); ``alerts`` are the records of
    :func:`pipeline.monitoring.alerts.alerts_for_email`; ``attachments`` the attached files' names.
    """

    logical_date: str
    drift: DriftSummary
    scored: int
    high_risk_share: float
    threshold: float
    campaign: CampaignFile | None = None
    monitoring: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    #: what churn means for the model that scored (its params' label definition)
    churn_definition: str = ""
    #: the registry when the night pinned its model (:func:`pipeline.model.serving.serving_facts`)
    models: dict[str, Any] | None = None
    #: what the model or tonight's monitoring leaves out, and why (said once, in the Model section)
    left_out: list[str] = field(default_factory=list)
    #: what was made lighter or left out of the attachments to keep the message under its size limit
    attachment_notes: list[str] = field(default_factory=list)
    #: where the nights' dashboard is (its Evidently project and workspace): said once, under Attached
    dashboard: str = ""

    @property
    def severity(self) -> str:
        """The highest severity among the alerts this e-mail delivers (suppressed ones excluded)."""
        return highest_severity(a["severity"] for a in self.alerts if a["status"] != SUPPRESSED)

    @property
    def decided_by(self) -> dict[str, Any] | None:
        """The delivered alert that sets :attr:`severity` (the first listed of the highest severity; None: no alerts)."""
        delivered = [a for a in self.alerts if a["status"] != SUPPRESSED]
        return max(delivered, key=lambda a: SEVERITIES.index(a["severity"]), default=None)

    @property
    def heading(self) -> str:
        """The date and the one verdict: the highest severity, and which alert decides it."""
        if self.monitoring is None:
            return f"Churn nightly report: {self.logical_date}"
        top = self.decided_by
        if top is not None:
            more = sum(a["status"] != SUPPRESSED and a["severity"] == top["severity"] for a in self.alerts) - 1
            decided = f" (decided by the {top['rule']} alert{f' and {more} more' if more else ''})"
        else:
            decided = " (no alerts)"
        return f"Churn nightly report: {self.logical_date}, severity {self.severity.upper()}{decided}"

    def subject(self) -> str:
        d = self.drift
        weight = (self.monitoring or {}).get("drift_weight") or {}
        status = ("drift only in features the model barely uses" if weight.get("only_unused") else
                  "DRIFT" if d.dataset_drift else ("drift in some features" if d.drifted_features else "no drift"))
        severity = f" {self.severity.upper()}:" if self.monitoring is not None else ""
        return f"[churnflow] {self.logical_date}{severity} nightly churn scores: {self.scored:,} customers, {status}"

    def html(self, chart_img: str = "", chart_title: str = "") -> str:
        """Inline HTML; every value is escaped. ``chart_img``: the trend chart's ``<img>`` tag,
        ``chart_title`` what it shows (:func:`pipeline.monitoring.charts.trend_title`)."""
        parts = [f"<h2>{_esc(self.heading)}</h2>"]
        for section in self._sections():
            parts.append(f"<h3>{_esc(section.title)}</h3>" + "".join(f"<p>{_linked(_esc(line))}</p>"
                                                                   for line in section.lines))
            if section.rows:
                parts.append(_table(section.headers, section.rows))
        if chart_img:
            parts.append(f"<h3>{_esc(f'Trend: {chart_title}' if chart_title else 'Trend over recent nights')}</h3>"
                         f"{chart_img}")
        return "\n".join(parts)

    def text(self) -> str:
        """The same facts as plain text (tables become one line per row)."""
        out = [self.heading, ""]
        for section in self._sections():
            out += [section.title, *(f"- {line}" for line in section.lines)]
            out += ["  * " + "; ".join(f"{h}: {v}" for h, v in zip(section.headers, row, strict=True)) for row in section.rows]
            out.append("")
        return "\n".join(out)

    def _sections(self) -> list[_Section]:
        scoring = [f"Customers scored: {self.scored:,} (table churn_scores, as_of {self.logical_date}).",
                   f"At risk: {_pct(self.high_risk_share)} ({_high_risk(self.threshold)}, the champion's "
                   "campaign decision threshold)."]
        if self.campaign is not None:
            scoring.append(self.campaign.sentence())
        if self.churn_definition:
            scoring.append(f"Churn means: {self.churn_definition}.")
        sections = [_Section("Scoring", scoring)]
        if self.models or self.left_out:
            model = _model_section(self.models) if self.models else _Section("Model", [])
            # the features left out belong with the champion, before the newest training's gate and its table
            sections.append(_Section(model.title, model.lines[:1] + self.left_out + model.lines[1:], model.headers,
                                     model.rows))
        sections.append(_drift_section(self.drift, (self.monitoring or {}).get("drift_weight")))
        if self.monitoring is not None:
            sections += [self._alerts_section(), *_monitoring_sections(self.monitoring)]
        sections.append(_Section("Attached", [", ".join(self.attachments) or "nothing", *self.attachment_notes,
                                              *([self.dashboard] if self.dashboard else [])]))
        words = in_words([f.column for f in self.drift.features])
        return [_Section(x.title, [words(line) for line in x.lines], x.headers,
                         [tuple(words(v) if isinstance(v, str) else v for v in row) for row in x.rows]) for x in sections]

    def _alerts_section(self) -> _Section:
        title = f"Alerts (highest severity: {self.severity})"
        if not self.alerts:
            return _Section(title, ["No alerts: data and scores look as expected."])
        lines = []
        decision = (self.monitoring or {}).get("retraining")
        if decision and decision.get("reason"):  # the night's retraining decision (pipeline.monitoring.retraining)
            reason = decision["reason"][0].upper() + decision["reason"][1:]
            lines.append(f"{reason}." + (
                " Tonight's request triggered churn_training (Airflow asset churnflow://retraining-requested), "
                "trained as of tonight and gated against the champion; the next e-mail's Model section names the new "
                "version and whether it was served." if decision.get("requested") else ""))
        elif (self.monitoring or {}).get("retrain"):
            lines.append("Retraining requested: tonight's critical alert triggered churn_training (Airflow asset "
                         "churnflow://retraining-requested), trained as of tonight and gated against the champion; "
                         "the next e-mail's Model section names the new version and whether it was served.")
        elif any(a["severity"] == "critical" for a in self.alerts):
            lines.append("No retraining was requested tonight (retrain_on_critical is off, or the critical alert "
                         "was e-mailed before): retrain with churn_training if the alerts below call for it.")
        return _Section(title, lines, ("Severity", "Rule", "Night", "Status", "Message", "Kind"),
                        [(a["severity"], a["rule"], f"{a['run_date']:%Y-%m-%d}", a["note"], a["message"],
                          KINDS.get(a["rule"], "")) for a in self.alerts])


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


@dataclass(frozen=True)
class _Section:
    """A titled part of the e-mail: sentences, and optionally a table."""

    title: str
    lines: list[str]
    headers: tuple[str, ...] = ()
    rows: Sequence[tuple[object, ...]] = field(default_factory=list)


def in_words(features: Iterable[str]) -> Any:
    """A function that writes each of ``features`` named in a text (an alert's message, a note) in
    the catalogue's words (:func:`pipeline.features.catalogue.human_label`); names without an
    underscore (plan, age) already read as words."""
    names = sorted({f for f in features if "_" in f}, key=len, reverse=True)
    if not names:
        return lambda text: text
    pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])")
    return lambda text: pattern.sub(lambda m: human_label(m.group(1)), text)


def _high_risk(threshold: float) -> str:
    """What "at risk" means, with the threshold's value (:func:`pipeline.model.score.is_high_risk`)."""
    return f"churn probability >= {_num(threshold)}"


def left_out_lines(params: dict[str, Any], monitoring: dict[str, Any] | None) -> list[str]:
    """What the model was trained without and what tonight could not judge, in words: feature
    groups and features whose data is absent or null, fairness segments not judged, and a
    version whose source columns are not recorded (no schema-drift check)."""
    groups = (params.get("feature_groups") or {}).get("left_out") or {}
    features = params.get("left_out_features") or {}
    skipped = (monitoring or {}).get("fairness_skipped") or {}
    schema = (monitoring or {}).get("schema_drift") or {}
    lines = []
    if groups or features:
        parts = [f"{g} ({why})" for g, why in groups.items() if "not enabled" not in why]
        by_reason: dict[str, list[str]] = {}
        for feature, why in features.items():  # one reason, said once, for the features it leaves out
            by_reason.setdefault(why, []).append(feature)
        parts += [f"{', '.join(human_label(n) for n in names)} ({why})" for why, names in by_reason.items()]
        if parts:
            lines.append("Left out of the model: " + "; ".join(parts) + ".")
    if skipped:
        lines.append("Fairness not judged by: " + "; ".join(f"{s} ({why})" for s, why in skipped.items()) + ".")
    if schema.get("note"):
        lines.append(f"Schema drift: {schema['note']}.")
    return lines


def _model_section(models: dict[str, Any]) -> _Section:
    """Which version scored tonight, what the gate said of the newest training (the champion
    itself when it is the newest) and, from its record, the evidence as a table: metric,
    candidate, champion, difference, the rule it had to pass."""
    champ = models["champion"]
    lines = [f"Scored with the champion {champ['version']} (trained as of {champ.get('training_date') or 'n/a'}, "
             f"holdout ROC-AUC {_num(champ.get('roc_auc'))}){champion_since(champ)}."]
    newest = models.get("newest")
    if not newest:
        return _Section("Model", lines)
    if newest.get("champion_roc_auc") is not None and not math.isnan(newest["champion_roc_auc"]):
        compared = (f"ROC-AUC {newest['roc_auc']:.4f} vs {newest['champion_roc_auc']:.4f} for "
                    f"{newest.get('champion_version')} on the same holdout "
                    f"({newest['roc_auc'] - newest['champion_roc_auc']:+.4f})")
    else:
        compared = f"ROC-AUC {_num(newest.get('roc_auc'))}"
    verdict = "was served" if newest.get("served") else "is registered but NOT served"
    which = "the champion, " if newest.get("is_champion") else ""
    head = f"Newest training: {newest['version']} ({which}as of {newest.get('training_date') or 'n/a'}) {verdict}"
    record = newest.get("gate") or {}
    if not record.get("metrics"):
        lines.append(f"{head}: {compared}. Gate: {newest.get('decision') or 'n/a'}.")
        return _Section("Model", lines)
    # one sentence and the evidence as a table (every metric of both models, the rule each had to pass)
    lines.append(f"{head}. Gate ({record.get('test', 'n/a')} test on {record.get('rows', 0):,} holdout rows, against "
                 f"the champion {record.get('champion') or 'of the time: none'}): "
                 f"{newest.get('decision') or record.get('decision', 'n/a')}.")
    return _Section("Model", lines, ("Metric", "Candidate", "Champion", "Difference", "Guard / tolerance"),
                    [_gate_row(key, row) for key, row in record["metrics"].items()])


#: the promotion reason a training's gate records (:func:`pipeline.model.publish`): "training <D>: <decision>"
_TRAINING_REASON = re.compile(r"training (\d{4}-\d{2}-\d{2}): (.*)", re.S)


def champion_since(champ: dict[str, Any]) -> str:
    """Since when the champion serves, in business dates: a training's gate promoted it on that
    training's date; a person's promotion (or a rollback) happened at a clock time, said in UTC
    to the minute, with their reason."""
    reason, at = str(champ.get("reason") or ""), champ.get("promoted_at")
    by_training = _TRAINING_REASON.fullmatch(reason)
    if by_training:
        return f", champion since the training of {by_training.group(1)} (its gate: {by_training.group(2)})"
    if not at:
        return f" ({reason})" if reason else ""
    try:
        when = dt.datetime.fromisoformat(str(at)).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        when = str(at)
    return f", champion since {when}" + (f" ({reason})" if reason else "")


def _gate_row(key: str, row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """One metric of the gate's record (:func:`pipeline.model.gate.gate_record`) as a table row."""
    value = "{:,.0f}" if key == "expected_value" else "{:.4f}"
    names = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "expected_value": "Campaign value at capacity"}

    def fmt(v: float | None, spec: str = value) -> str:
        return "n/a" if v is None else spec.format(v)

    difference = fmt(row.get("difference"), "{:+,.0f}" if key == "expected_value" else "{:+.4f}")
    if row.get("ci_low") is not None:
        difference += (f" (lower bound {row['ci_low']:+.4f}; not better in {row['share_not_better']:.1%} of "
                       "resamples)")
    passed = "passed" if row.get("passed") is True else "FAILED" if row.get("passed") is False else ""
    rule = f"{row.get('rule', '')}: {passed}" if passed else str(row.get("rule", ""))
    return names.get(key, key), fmt(row.get("candidate")), fmt(row.get("champion")), difference, rule


def _drift_section(summary: DriftSummary, weight: dict[str, Any] | None = None) -> _Section:
    """Evidently's all-rows verdict (every feature counted the same: the report's banner), then
    what it means for the model: the drift weighed by the model's mean |SHAP| (``weight``:
    ``monitoring.json``'s ``drift_weight``, :mod:`pipeline.monitoring.weighting`), as the alerts judge it."""
    drifted = sorted(summary.drifted_features, key=by_psi_descending)
    lines = [
        f"Data drift: {'DATASET DRIFT' if summary.dataset_drift else 'no dataset drift'}. {len(drifted)} of "
        f"{len(summary.features)} features drifted (share {summary.drift_share:.0%}); {summary.n_current:,} current rows "
        f"compared with {summary.n_reference:,} reference rows.",
    ]
    if weight:
        lines.append(weight_sentence(weight))
    stable = [f for f in summary.features if not f.drifted]
    with_psi = [f for f in stable if not math.isnan(f.psi)]
    if with_psi:
        top = max(with_psi, key=lambda f: f.psi)
        lines.append(f"Features without drift: {len(stable)}; largest PSI among them: {human_label(top.column)} "
                     f"({_num(top.psi)}).")
    elif stable:
        lines.append(f"Features without drift: {len(stable)}.")
    rows = [(human_label(f.column), f.kind, f.method, _num(f.statistic), _num(f.threshold), _num(f.psi)) for f in drifted]
    return _Section("Data drift", lines, ("Feature", "Type", "Test", "Statistic", "Threshold", "PSI"), rows)


def weight_sentence(weight: dict[str, Any]) -> str:
    """What tonight's drift means for the model, as the drift alerts judge it (``drift_weight``)."""
    if not weight.get("weighted"):
        return ("Judged unweighted: feature importance is off tonight (importance_sample_rows 0), so every feature "
                "counts the same in the drift alerts, whether the model uses it or not.")
    shares = weight.get("shares") or {}
    unused, used = list(weight.get("moved_unused") or []), list(weight.get("used_drifted") or [])
    words = {f: human_label(f) for f in unused + used}
    note = (f"drift in {len(unused)} feature{'s' if len(unused) != 1 else ''} the model barely uses "
            f"({', '.join(words[f] for f in unused)}; share {_pct(weight.get('unused_share'))} of its mean |SHAP|, below "
            f"drift_min_importance_share {weight.get('min_share', 0):g}): info, see the data-quality note"
            if unused else "")
    if not used:
        return (f"For the model: {note}." if note else
                "For the model: none of the features it uses drifted (weighted by its mean |SHAP|).")
    named = ", ".join(f"{words[f]} {_pct(shares.get(f))}" for f in used)
    return (f"For the model: the drifted features it uses ({named}) carry {_pct(weight.get('drifted_share'))} of its "
            "mean |SHAP| on its training reference (the importance-weighted drift share the data_drift alert judges)"
            + (f"; {note}." if note else "."))


def _monitoring_sections(monitoring: dict[str, Any]) -> list[_Section]:
    sections = []
    pred = monitoring.get("prediction") or {}
    if pred:
        baseline = pred["baseline_high_risk_share"]
        recent = (f"{_pct(baseline)} over the previous {pred['baseline_nights']} nights"
                  if pred["baseline_nights"] else "no previous nights yet")
        sections.append(_Section("Prediction drift", [
            f"At-risk share ({_high_risk(monitoring['threshold'])}): {_pct(pred['high_risk_share'])} tonight, "
            f"{_pct(pred['reference_high_risk_share'])} in the reference, {recent}.",
            f"Mean score {pred['mean_score']:.3f} (reference {pred['reference_mean_score']:.3f}); "
            f"PSI vs reference {_num(pred['psi_vs_reference'])}.",
        ]))
    if monitoring.get("importance"):
        sections.append(importance_section(monitoring["importance"]))
    if monitoring.get("estimate"):
        sections.append(estimate_section(monitoring["estimate"]))
    perf = monitoring.get("performance")
    sections.append(_Section("Performance on matured labels", [
        f"Scores of {perf['scored_on']} ({perf['rows']:,} customers, churn rate {perf['base_rate']:.1%}): ROC-AUC "
        f"{_num(perf['roc_auc'])} (champion holdout {_num(perf['champion_roc_auc'])}), PR-AUC {_num(perf['pr_auc'])} "
        f"(champion {_num(perf['champion_pr_auc'])}), precision {perf['precision']:.2f} and recall {perf['recall']:.2f} "
        f"at {_num(perf['threshold'])}. Concept drift: {'YES' if perf['concept_drift'] else 'no'}."
        if perf else "No scored night has matured yet."]))
    if monitoring.get("challenger"):
        sections.append(challenger_section(monitoring["challenger"]))
    return sections


def _banded(est: dict[str, Any], metric: str) -> str:
    return f"{_num(est.get(metric))} ({_num(est.get(f'{metric}_lower'))} .. {_num(est.get(f'{metric}_upper'))})"


def estimate_section(est: dict[str, Any]) -> _Section:
    """Tonight's performance estimated before its labels mature, with its band, vs the holdout
    (:class:`pipeline.monitoring.estimate.PerformanceEstimate`), and the latest matured nights'
    estimate vs what their labels said: the estimate's own error."""
    confidence = est.get("confidence") or 0.0
    lines = [
        f"Estimated from tonight's {est['rows']:,} scores, taking each churn probability as the expected label "
        f"(the labels mature one label window later); {confidence:.0%} band in brackets: ROC-AUC "
        f"{_banded(est, 'roc_auc')} vs {_num(est.get('baseline_roc_auc'))} on the champion's holdout, PR-AUC "
        f"{_banded(est, 'pr_auc')} vs {_num(est.get('baseline_pr_auc'))}, precision of the top "
        f"{est['capacity']:,} (the campaign's capacity) {_banded(est, 'precision_at_capacity')}."]
    if est.get("below_since"):
        lines.append(f"BELOW the holdout minus performance_drop_margin every night since {est['below_since']}"
                     + (": see the estimated_performance alert." if est.get("reliable") else
                        ", but not alerted: the calibration check marks the estimate unreliable."))
    else:
        lines.append("Within performance_drop_margin of the holdout (a band reaching above it raises nothing).")
    if est.get("calibration_scored_on"):
        lines.append(f"Calibration check (the estimate assumes calibrated probabilities): ECE "
                     f"{_num(est.get('calibration_gap'))} on the matured scores of {est['calibration_scored_on']}, "
                     + ("within estimate_max_calibration_gap." if est.get("reliable") else
                        "ABOVE estimate_max_calibration_gap: the estimate is unreliable until the model is "
                        "recalibrated or retrained."))
    else:
        lines.append("Calibration not checked on matured labels yet: the estimate relies on the training's calibration.")
    history = est.get("history") or []
    lines.append("Estimated vs realised on the latest matured nights (the estimate's own error):" if history else
                 "No estimated night has matured yet: the estimate's own error shows here once one has.")

    def error(row: dict[str, Any], metric: str) -> str:
        a, b = row.get(metric), row.get(f"realised_{metric}")
        return "n/a" if a is None or b is None or math.isnan(a) or math.isnan(b) else f"{a - b:+.3f}"

    return _Section("Estimated performance (labels not matured yet)", lines,
                    ("Night", "Matured on", "ROC-AUC estimated (band)", "realised", "error",
                     "PR-AUC estimated (band)", "realised", "error", "Precision at capacity estimated", "realised"),
                    [(r["run_date"], r.get("realised_on") or "", _banded(r, "roc_auc"), _num(r.get("realised_roc_auc")),
                      error(r, "roc_auc"), _banded(r, "pr_auc"), _num(r.get("realised_pr_auc")), error(r, "pr_auc"),
                      _num(r.get("precision_at_capacity")), _num(r.get("realised_precision_at_capacity")))
                     for r in history])


def challenger_section(night: dict[str, Any]) -> _Section:
    """Champion vs the challenger in shadow on the same matured labels, one row per night compared
    (:meth:`pipeline.monitoring.challenger.ChallengerNight.to_dict`)."""
    version = night.get("version")
    lines = [f"Scored in shadow tonight: {version} ({night['reason']}); its scores are in challenger_scores, "
             "never the campaign." if version else f"No challenger tonight: {night['reason']}."]
    rows = night.get("nights") or []
    if rows:
        lines.append(f"The challenger wins a night when its ROC-AUC on the matured labels beats the champion's by more "
                     f"than {night['margin']:g} (promotion_min_improvement); {night['streak']} night(s) in a row so "
                     f"far, {night['needed']} needed for a promotion review (challenger_min_nights). Nights compared:"
                     f" {len(rows)}.")
        if night.get("review"):
            lines.append("PROMOTION REVIEW requested: see the promotion_review alert (nothing was promoted).")
    elif version:
        lines.append("None of its scored nights has matured yet.")
    return _Section("Challenger in shadow (matured labels)", lines,
                    ("Night", "Scored on", "Customers", "Champion", "Challenger", "ROC-AUC champion / challenger",
                     "PR-AUC champion / challenger", "Recall champion / challenger", "Winner"),
                    [(r["run_date"], r["scored_on"], f"{int(r['rows']):,}", r["model_version_champion"],
                      r["model_version_challenger"], f"{_num(r['roc_auc_champion'])} / {_num(r['roc_auc_challenger'])}",
                      f"{_num(r['pr_auc_champion'])} / {_num(r['pr_auc_challenger'])}",
                      f"{_num(r['recall_champion'])} / {_num(r['recall_challenger'])}",
                      "challenger" if r["beats_champion"] else "champion") for r in rows])


#: features the importance section lists: the most important tonight, and the largest changes
IMPORTANCE_TOP = 5


def importance_section(rows: list[dict[str, Any]]) -> _Section:
    """Feature-importance drift (the ``feature_importance_drift`` rows of the night): the
    features most important tonight and those whose importance changed the most, by tonight's rank."""
    top = {r["feature"] for r in rows if r["rank"] <= IMPORTANCE_TOP}
    moved = sorted(rows, key=lambda r: -abs(r["change"]) if r["change"] == r["change"] else 0.0)[:IMPORTANCE_TOP]
    listed = sorted((r for r in rows if r["feature"] in top | {m["feature"] for m in moved}), key=lambda r: r["rank"])
    biggest = moved[0] if moved else None
    lines = ["Mean |SHAP| contribution of each feature to the log-odds, tonight vs the model's training reference "
             f"(the {IMPORTANCE_TOP} most important tonight and the {IMPORTANCE_TOP} largest changes)."]
    if biggest is not None:
        lines.append(f"Largest change: {human_label(biggest['feature'])} {_num(biggest['reference_mean_abs_shap'])} -> "
                     f"{_num(biggest['mean_abs_shap'])} (rank {biggest['reference_rank']} -> {biggest['rank']}).")
    return _Section("Feature importance (mean |SHAP|)", lines,
                    ("Feature", "Tonight", "Reference", "Change", "Rank (reference)"),
                    [(human_label(r["feature"]), _num(r["mean_abs_shap"]), _num(r["reference_mean_abs_shap"]),
                      f"{r['change']:+.3f}", f"{r['rank']} ({r['reference_rank']})") for r in listed])


def importance_html(rows: list[dict[str, Any]]) -> str:
    """The importance section for the drift report."""
    section = importance_section(rows)
    return (f'<h2 style="font-size:18px;margin:0 0 8px">{_esc(section.title)}</h2>'
            + "".join(f"<p>{_esc(line)}</p>" for line in section.lines) + _table(section.headers, section.rows))


def _num(value: float | None) -> str:
    """A number as a person reads it: whole numbers with thousands separators, others with three
    decimals (``0.000123`` -> "0.000", never "1.23e-04")."""
    if value is None or math.isnan(value):
        return "n/a"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def _esc(value: object) -> str:
    return html.escape(str(value))


_URL = re.compile(r"https?://[^\s<\"]*[^\s<\".,;)]")


def _linked(escaped: str) -> str:
    """Escaped text with its web addresses (the dashboard's night page) as links."""
    return _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)


def trend_html(trend: pd.DataFrame, chart_img: str, nights: int, first_night: dt.date | None = None) -> str:
    """The "trend over recent nights" section of the drift report: the chart and its numbers
    (:func:`pipeline.monitoring.store.trend_frame`; NaN shows as n/a)."""

    def fmt(value: float, pattern: str) -> str:
        return "n/a" if math.isnan(value) else pattern.format(value)

    table = _table(
        ("Night", "Features drifted", "At-risk share (at the night's campaign threshold)", "ROC-AUC (matured labels)"),
        ((f"{night:%Y-%m-%d}", fmt(r.drift_share, "{:.0%}"), _pct(r.high_risk_share), fmt(r.roc_auc, "{:.3f}"))
         for night, r in zip(trend.index, trend.itertuples(), strict=True)),
    )
    from pipeline.monitoring.charts import trend_title

    day = pd.Timestamp(trend.index.max()).date() if len(trend) else None
    title = f"Trend: {trend_title(trend, day, nights, first_night)}" if day else f"Trend over the last {nights} nights"
    return f'<h2 style="font-size:18px;margin:0 0 8px">{_esc(title)}</h2>{chart_img}{table}'
