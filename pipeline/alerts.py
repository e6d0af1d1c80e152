"""Alert rules with severity, deduplicated against the ``alerts`` table.

Rules (thresholds in :class:`pipeline.config.Settings`, monitoring block):

* ``data_drift`` - drift share of features: warning at ``drift_share_warning``, critical at
  ``drift_share_threshold`` (dataset drift). Many drifted features make one alert.
* ``feature_psi`` - largest feature PSI: warning at ``psi_warning``, critical at ``psi_critical``.
* ``prediction_drift`` - PSI of the score distribution vs the reference, same thresholds.
* ``performance_drop`` - concept drift on matured labels (critical).
* ``fairness`` - a segment breaks the 80% rule or its TPR gap is too large (warning).
* ``data_quality`` - rows quarantined by validation (warning).

An alert's key is ``(rule, model_version, group)``; the same key fired within
``alert_cooldown_days`` before the night (exclusive) is stored with status ``suppressed`` and not
e-mailed again. A rerun of a night replaces that night's alerts (and does not suppress
itself).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.db import engine, replace_rows

ALERTS_TABLE = "alerts"
SEVERITIES = ("info", "warning", "critical")
#: rules whose critical alert may request retraining
RETRAIN_RULES = frozenset({"data_drift", "feature_psi", "prediction_drift", "performance_drop"})


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    group: str
    message: str
    value: float
    threshold: float

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {SEVERITIES}")


def highest_severity(alerts: list[Alert]) -> str:
    """The highest severity among ``alerts``; ``"info"`` when there are none."""
    return max((a.severity for a in alerts), key=SEVERITIES.index, default="info")


def _graded(rule: str, group: str, value: float, warning: float, critical: float, what: str) -> list[Alert]:
    if math.isnan(value) or value < warning:
        return []
    severe = value >= critical
    return [Alert(rule, "critical" if severe else "warning", group, f"{what} {value:.3g} >= {critical if severe else warning:g}",
                  value, critical if severe else warning)]


def evaluate_rules(settings: Settings, monitoring: dict[str, Any]) -> list[Alert]:
    """Alerts for one night from the monitoring step's result (see :func:`pipeline.flows.monitor_step`)."""
    s = settings
    drift = monitoring["drift"]
    alerts: list[Alert] = []
    drifted = drift["drifted"]
    share_alerts = _graded("data_drift", "features", drift["drift_share"], s.drift_share_warning,
                           s.drift_share_threshold, "drift share")
    alerts += [Alert(a.rule, a.severity, a.group, f"{len(drifted)} features drifted ({', '.join(drifted)}): {a.message}",
                     a.value, a.threshold) for a in share_alerts]
    if drift.get("max_psi_feature"):
        alerts += _graded("feature_psi", "features", drift["max_psi"], s.psi_warning, s.psi_critical,
                          f"PSI of {drift['max_psi_feature']}")
    pred = monitoring.get("prediction") or {}
    if pred:
        alerts += _graded("prediction_drift", "scores", pred["psi_vs_reference"], s.psi_warning, s.psi_critical,
                          "PSI of tonight's scores vs the reference")
    perf = monitoring.get("performance") or {}
    if perf.get("concept_drift"):
        alerts.append(Alert("performance_drop", "critical", "matured", (
            f"scores of {perf['scored_on']}: ROC-AUC {perf['roc_auc']:.3f} (champion {perf['champion_roc_auc']:.3f}), "
            f"PR-AUC {perf['pr_auc']:.3f} (champion {perf['champion_pr_auc']:.3f}), margin {s.performance_drop_margin:g}"),
            perf["roc_auc"], perf["champion_roc_auc"] - s.performance_drop_margin))
    for row in monitoring.get("fairness", []):
        if (row["positive_rate_ratio"] < s.fairness_min_ratio and row["rows"] >= 30
                and row.get("expected_positives_at_top", 0) >= s.fairness_min_expected_positives
                and _fairness_worse_than_reference(row, s.fairness_p_value)):
            alerts.append(Alert("fairness", "warning", f"{row['segment']}={row['group']}",
                                f"positive-rate ratio {row['positive_rate_ratio']:.2f} < {s.fairness_min_ratio:g} "
                                f"({row['segment']}={row['group']})", row["positive_rate_ratio"], s.fairness_min_ratio))
        gap = row.get("tpr_gap")
        if gap is not None and not pd.isna(gap) and gap > s.fairness_max_tpr_gap:
            alerts.append(Alert("fairness", "warning", f"{row['segment']}={row['group']} tpr",
                                f"TPR gap {gap:.2f} > {s.fairness_max_tpr_gap:g} ({row['segment']}={row['group']})",
                                gap, s.fairness_max_tpr_gap))
    rejected = monitoring.get("rejected_rows", 0)
    if rejected:
        alerts.append(Alert("data_quality", "warning", "validation",
                            f"{rejected} rows quarantined by validation", float(rejected), 0.0))
    return alerts


def record_alerts(settings: Settings, day: dt.date | str, model_version: str, alerts: list[Alert]) -> pd.DataFrame:
    """Store tonight's alerts with status ``sent`` or ``suppressed`` (cooldown); return them."""
    night = dt.datetime.combine(as_date(day), dt.time())
    recent = _recently_sent(settings, night - dt.timedelta(days=settings.alert_cooldown_days), night, model_version)
    rows = pd.DataFrame(
        [{**asdict(a), "run_date": night, "model_version": model_version,
          "status": "suppressed" if (a.rule, a.group) in recent else "sent"} for a in alerts],
        columns=["rule", "severity", "group", "message", "value", "threshold", "run_date", "model_version", "status"],
    ).rename(columns={"group": "alert_group"})
    rows["run_date"] = pd.to_datetime(rows["run_date"])
    rows[["value", "threshold"]] = rows[["value", "threshold"]].astype("float64")
    replace_rows(settings, ALERTS_TABLE, rows, "run_date", night)
    return rows


def _recently_sent(settings: Settings, since: dt.datetime, before: dt.datetime, model_version: str) -> set[tuple[str, str]]:
    from pipeline.monitor import reflect

    with engine(settings).connect() as conn:
        tbl = reflect(conn, ALERTS_TABLE)
        if tbl is None:
            return set()
        rows = conn.execute(
            sa.select(tbl.c.rule, tbl.c.alert_group).distinct().where(
                tbl.c.status == "sent", tbl.c.model_version == model_version,
                tbl.c.run_date > since, tbl.c.run_date < before,
            )
        ).all()
    return {(r[0], r[1]) for r in rows}


def _fairness_worse_than_reference(row: dict[str, Any], p_value: float) -> bool:
    """Is the group's positive count significantly below what the reference ratio predicts?

    One-sided binomial test: at the reference's ratio to tonight's top rate, the group would
    be flagged with probability ``reference_ratio * top_rate``; fewer positives than that is
    judged worse only when ``P(X <= observed) < p_value``, so a handful of flags is not an alert.
    Without a reference ratio any breach counts.
    """
    from scipy.stats import binom

    reference, ratio = row.get("reference_ratio"), row["positive_rate_ratio"]
    if reference is None or pd.isna(reference):
        return True
    rows = int(row["rows"])
    top = row["expected_positives_at_top"] / rows if rows else 0.0
    observed = round(row["positive_rate"] * rows)
    return bool(binom.cdf(observed, rows, min(1.0, reference * top)) < p_value) and ratio < reference
