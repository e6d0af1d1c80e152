"""Alert rules with severity, deduplicated against the ``alerts`` table.

Rules (thresholds in :class:`pipeline.config.Settings`, monitoring block):

* ``data_drift`` - the importance-weighted drift share of the features the model uses (their summed
  share of its mean |SHAP| on its training reference, :mod:`pipeline.monitoring.weighting`): warning
  at ``drift_share_warning``, critical at ``drift_share_threshold``. Many drifted features make one
  alert. Unweighted (and said) when importance is off.
* ``feature_psi`` - largest PSI among the features the model uses: warning at ``psi_warning``,
  critical at ``psi_critical``.
* ``prediction_drift`` - PSI of the score distribution vs the reference, same thresholds.
  None of the three requests retraining: drift only in the features the model barely uses
  (together below ``drift_min_importance_share``) is an info ``data_quality`` note instead.
* ``estimated_performance`` - the band of tonight's ROC-AUC or PR-AUC estimated from the calibrated
  scores before their labels mature (:mod:`pipeline.monitoring.estimate`) lies below the holdout minus
  ``performance_drop_margin`` (critical; none while the calibration check marks it unreliable): the
  main trigger for retraining.
* ``performance_drop`` - concept drift on matured labels (critical).
* ``concept_drift`` - a sequential detector (ADWIN, DDM: :mod:`pipeline.monitoring.concept`) found
  the model's errors on matured labels rising (critical), one alert per detector.

Data drift (the features moved: ``data_drift``, ``feature_psi``, ``prediction_drift``) and
concept drift (what the features mean for churn moved: ``performance_drop``, ``concept_drift``)
are told apart by the rule's ``kind`` (:data:`KINDS`), which the e-mail shows beside each alert;
a ``concept_drift`` message also says whether tonight's features drifted.
* ``promotion_review`` - the challenger in shadow (:mod:`pipeline.monitoring.challenger`) beat the
  champion on matured labels on each of the last ``challenger_min_nights`` nights (warning): the
  analysts review it and promote it by hand; the nightly never promotes.
* ``fairness`` - a segment breaks the 80% rule or its TPR gap is too large (warning).
* ``data_quality`` - rows quarantined by validation (warning).
* ``schema_drift`` - an optional source column the model was trained with is absent from tonight's
  source (renamed, dropped) or null beyond what training saw (:mod:`pipeline.monitoring.schema_drift`):
  warning, critical when its features carry more than ``schema_drift_critical_share`` of the model's
  mean |SHAP|. One alert per column (group ``table.column``). It never requests retraining: a model
  trained on the broken column would learn the imputed values; the source or its mapping needs fixing.

An alert's key is ``(rule, model_version, group)``. Statuses say what the analysts were told:

* ``pending`` - raised, not e-mailed yet: :func:`record_alerts` stores new alerts so, and the
  nightly e-mail lists every pending alert of that night and of earlier nights (whose e-mail
  failed or was off: "carried over"), one row per key (:func:`alerts_for_email`);
* ``sent`` - in an e-mail the SMTP server accepted (:func:`mark_sent`, after the send);
* ``suppressed`` - the same key was ``sent`` within ``alert_cooldown_days`` before the night
  (exclusive); only ``sent`` counts, so an alert whose e-mail failed is raised again.

A rerun of a night replaces that night's alerts; it does not suppress itself, and keeps ``sent``
for the keys that night has already e-mailed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from pipeline.config import Settings
from pipeline.results import ALERTS, replace_rows, results_engine
from pipeline.results import night as results_night

if TYPE_CHECKING:
    from pipeline.monitoring.night import MonitoringResult
    from pipeline.monitoring.weighting import DriftWeight

PENDING, SENT, SUPPRESSED = "pending", "sent", "suppressed"
_KEY = ["rule", "alert_group", "model_version"]
SEVERITIES = ("info", "warning", "critical")


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


def highest_severity(severities: Iterable[str]) -> str:
    """The highest of ``severities``; ``"info"`` when there are none."""
    return max(severities, key=SEVERITIES.index, default="info")


def _graded(rule: str, group: str, value: float, warning: float, critical: float, what: str) -> list[Alert]:
    if math.isnan(value) or value < warning:
        return []
    severe = value >= critical
    return [Alert(rule, "critical" if severe else "warning", group, f"{what} {value:.3g} >= {critical if severe else warning:g}",
                  value, critical if severe else warning)]


def _retraining(s: Settings) -> str:
    """What happens next when a critical alert of a retraining rule is raised (the nightly's
    retraining decision, :mod:`pipeline.monitoring.retraining`, and its request_retraining task)."""
    if s.retrain_on_critical:
        return ("A critical alert of this rule requests retraining (the churn_training DAG, gated against the "
                "champion) when a retrain as of tonight can see the change, once per champion within "
                "alert_cooldown_days: the e-mail's Alerts section says whether it was requested tonight, and if not "
                "from when one could help")
    return "retrain_on_critical is off: retrain with the churn_training DAG or python -m pipeline run-training"


#: what a data-drift alert leads to: none requests retraining on its own
_DRIFT_ONLY = ("Data drift alone requests no retraining: the estimated performance (estimated_performance) and the "
               "matured labels (performance_drop, concept_drift) decide whether the model got worse")


def drift_weight(s: Settings, m: MonitoringResult) -> DriftWeight:
    """Tonight's drift weighed by the model's mean |SHAP| on its training reference
    (:mod:`pipeline.monitoring.weighting`; not weighted when importance is off)."""
    from pipeline.monitoring.weighting import weigh

    shap = (dict(zip(m.importance["feature"].astype(str), m.importance["reference_mean_abs_shap"], strict=True))
            if m.importance is not None and len(m.importance) else None)
    return weigh(m.drift.drifted, m.drift.feature_psi, shap, min_share=s.drift_min_importance_share, psi_warning=s.psi_warning)


#: said when drift is judged unweighted
_UNWEIGHTED = ("unweighted: feature importance is off (importance_sample_rows 0), so every feature counts the same, "
               "whether the model uses it or not")


def _data_drift(s: Settings, m: MonitoringResult) -> list[Alert]:
    """The drift share of the features the model uses, weighted by their share of its mean |SHAP|
    (unweighted, and said, when importance is off)."""
    w = drift_weight(s, m)
    todo = " See the attached report for how each feature moved. " + _DRIFT_ONLY
    if not w.weighted:
        drifted = m.drift.drifted
        return [Alert(a.rule, a.severity, a.group, f"{len(drifted)} features drifted against the model's training "
                      f"reference ({', '.join(drifted)}): {a.message} ({_UNWEIGHTED}).{todo}", a.value, a.threshold)
                for a in _graded("data_drift", "features", m.drift.drift_share, s.drift_share_warning,
                                 s.drift_share_threshold, "drift share")]
    used = w.used_drifted
    others = (f"; {len(w.drifted)} features drifted in all (unweighted share {m.drift.drift_share:.0%})"
              if len(w.drifted) != len(used) and not math.isnan(m.drift.drift_share) else "")
    return [Alert(a.rule, a.severity, a.group, (
        f"{len(used)} features the model uses drifted against its training reference: {w.describe(used)}. Together "
        f"they carry {w.drifted_share:.0%} of the model's mean |SHAP| on its training reference: {a.message}{others}."
        f"{todo}"), a.value, a.threshold)
        for a in _graded("data_drift", "features", w.drifted_share, s.drift_share_warning, s.drift_share_threshold,
                         "importance-weighted drift share")]


def _feature_psi(s: Settings, m: MonitoringResult) -> list[Alert]:
    """The largest PSI among the features the model uses (among all features, and said, when
    importance is off)."""
    w = drift_weight(s, m)
    feature, value = w.largest_psi() if w.weighted else (m.drift.max_psi_feature, m.drift.max_psi)
    if not feature:
        return []
    share = (f"; {feature} carries {w.share(feature):.1%} of the model's mean |SHAP| on its training reference"
             if w.weighted else f"; {_UNWEIGHTED}")
    cause = (f" {feature} moved the most among the features the model uses: a change at the source (a new price, a "
             "mapping or a pipeline change upstream) is the likely cause when one feature dominates; check the source. "
             + _DRIFT_ONLY)
    return [Alert(a.rule, a.severity, a.group, f"{a.message} (tonight vs the model's training reference{share}).{cause}",
                  a.value, a.threshold)
            for a in _graded("feature_psi", "features", value, s.psi_warning, s.psi_critical, f"PSI of {feature}")]


def _prediction_drift(s: Settings, m: MonitoringResult) -> list[Alert]:
    return [Alert(a.rule, a.severity, a.group, f"{a.message}: the scores moved. {_DRIFT_ONLY}", a.value, a.threshold)
            for a in _graded("prediction_drift", "scores", m.prediction.psi_vs_reference, s.psi_warning,
                             s.psi_critical, "PSI of tonight's scores vs the reference")]


def _performance_drop(s: Settings, m: MonitoringResult) -> list[Alert]:
    perf = m.performance
    if perf is None or not perf.concept_drift:
        return []
    return [Alert("performance_drop", "critical", "matured", (
        f"scores of {perf.scored_on}, judged on their matured labels (the label window from that night up to "
        f"tonight): ROC-AUC {perf.roc_auc:.3f} vs {perf.champion_roc_auc:.3f} on the champion's holdout, PR-AUC "
        f"{perf.pr_auc:.3f} vs {perf.champion_pr_auc:.3f}, more than the margin {s.performance_drop_margin:g} below: "
        "the customers changed (concept drift). " + _retraining(s)),
        perf.roc_auc, perf.champion_roc_auc - s.performance_drop_margin)]


def _concept_drift(s: Settings, m: MonitoringResult) -> list[Alert]:
    """One critical alert per detector whose errors rose tonight (the last such change it found)."""
    concept = m.concept
    if concept is None:
        return []
    alerts = []
    share, drifted = m.drift.drift_share, len(m.drift.drifted)
    features = (f"Tonight's features did not drift (drift share {share:.0%} < {s.drift_share_warning:g}): the "
                "customers look the same, what they do next changed (concept drift, not data drift)"
                if math.isnan(share) or share < s.drift_share_warning else
                f"Tonight's features drifted too ({drifted} features, share {share:.0%}: see the data-drift alerts): "
                "both the customers and what they do next changed")
    for name in s.concept_detectors:
        found = [d for d in concept.detections if d.detector == name and d.worse]
        if not found:
            continue
        d = found[-1]
        what = "decision error rate at the threshold" if d.error == "decision_error" else "mean absolute error"
        alerts.append(Alert("concept_drift", "critical", name, (
            f"{name.upper()} detected a rise in the {what} of {concept.model_version} on matured labels: "
            f"{d.rate_before:.4f} over the predictions of {d.window_start} .. {d.change_at} ({d.errors_before:,} "
            f"errors) -> {d.rate_after:.4f} over {d.change_at} .. {d.window_end} ({d.errors_after:,})"
            f"{f'; {len(found)} changes tonight' if len(found) > 1 else ''}. {features}. " + _retraining(s)),
            d.rate_after, d.rate_before))
    return alerts


def _promotion_review(s: Settings, m: MonitoringResult) -> list[Alert]:
    """One warning naming the challenger, tonight's figures of both models and the command that promotes it."""
    night = m.challenger
    if night is None or not night.review:
        return []
    t = night.nights.iloc[-1]
    version = str(t["model_version_challenger"])
    return [Alert("promotion_review", "warning", version, (
        f"The challenger {version} beat the champion {t['model_version_champion']} on matured labels on each of the "
        f"last {night.streak} nights compared (challenger_min_nights {night.needed}): tonight, on the scores of "
        f"{t['scored_on']} ({int(t['rows']):,} customers, {int(t['positives_champion']):,} churned), ROC-AUC "
        f"{t['roc_auc_challenger']:.4f} vs {t['roc_auc_champion']:.4f} (margin promotion_min_improvement "
        f"{night.margin:g}), PR-AUC {t['pr_auc_challenger']:.4f} vs {t['pr_auc_champion']:.4f}, recall "
        f"{t['recall_challenger']:.2f} vs {t['recall_champion']:.2f}. Nothing was promoted: review it, then promote "
        f"it with `python -m pipeline models promote {version} --reason 'won {night.streak} nights in shadow'`"),
        float(t["roc_auc_challenger"]), float(t["roc_auc_champion"]) + night.margin)]


def _fairness(s: Settings, m: MonitoringResult) -> list[Alert]:
    """Each message names the group, what it is compared with (the segment's top group), the
    metric and both values, and what to do."""
    alerts = []
    rows = m.fairness.to_dict("records")
    top: dict[str, dict[str, Any]] = {}  # per segment: the group with the highest positive rate, and the best TPR
    for row in rows:
        seg = row["segment"]
        if seg not in top or row["positive_rate"] > top[seg]["positive_rate"]:
            top[seg] = row
    for row in rows:
        group = f"{row['segment']}={row['group']}"
        best = top[row["segment"]]
        if (row["positive_rate_ratio"] < s.fairness_min_ratio and row["rows"] >= 30
                and row.get("expected_positives_at_top", 0) >= s.fairness_min_expected_positives
                and _fairness_worse_than_reference(row, s.fairness_p_value)):
            before = row.get("reference_ratio")
            was = (f"; {before:.2f} on the training reference" if before is not None and not pd.isna(before) else "")
            alerts.append(Alert("fairness", "warning", group, (
                f"{group}: {row['positive_rate']:.1%} of its {row['rows']:,} customers are at risk vs "
                f"{best['positive_rate']:.1%} of {row['segment']}={best['group']} (the segment's highest): positive-rate "
                f"ratio {row['positive_rate_ratio']:.2f} < {s.fairness_min_ratio:g} (80% rule{was}). Check whether "
                f"the campaign under-serves {group} before it goes out, and the reasons its customers get"),
                row["positive_rate_ratio"], s.fairness_min_ratio))
        gap = row.get("tpr_gap")
        if gap is not None and not pd.isna(gap) and gap > s.fairness_max_tpr_gap:
            best_tpr = max((r for r in rows if r["segment"] == row["segment"] and not pd.isna(r.get("tpr"))),
                           key=lambda r: r["tpr"])
            alerts.append(Alert("fairness", "warning", f"{group} tpr", (
                f"{group}: the model caught {row['tpr']:.0%} of its matured churners vs {best_tpr['tpr']:.0%} for "
                f"{row['segment']}={best_tpr['group']}: TPR gap {gap:.2f} > {s.fairness_max_tpr_gap:g}. Its churners "
                "are missed more often: review its features (missing data?) and consider retraining"),
                gap, s.fairness_max_tpr_gap))
    return alerts


def _data_quality(s: Settings, m: MonitoringResult) -> list[Alert]:
    alerts = []
    w = drift_weight(s, m)
    if w.weighted and w.moved_unused:  # drift the model barely notices: a note on the data, not on the model
        moved = w.moved_unused
        alerts.append(Alert("data_quality", "info", "drift in barely used features", (
            f"{w.describe(moved)} moved against the model's training reference, but the model barely uses "
            f"{'it' if len(moved) == 1 else 'them'}: together {w.unused_share:.1%} of its mean |SHAP| on its training "
            f"reference (below drift_min_importance_share {s.drift_min_importance_share:g}). A data-quality note, not "
            "a model problem: the likely cause is upstream (a price change, a mapping or a pipeline change at the "
            "source); check the source. No retraining is requested for it"), w.unused_share,
            s.drift_min_importance_share))
    if m.rejected_rows:
        alerts.append(Alert("data_quality", "warning", "validation", f"{m.rejected_rows} rows quarantined by validation",
                            float(m.rejected_rows), 0.0))
    for column, rows in sorted(m.unseen_categories.items()):
        alerts.append(Alert("data_quality", "info", f"unseen {column}",
                            f"{column}: {rows} customers have a value the model never saw in training, scored as "
                            "unknown (a new value of an open vocabulary; retraining teaches it)", float(rows), 0.0))
    return alerts


def _schema_drift(s: Settings, m: MonitoringResult) -> list[Alert]:
    """One alert per source column the model was trained with that tonight lacks (absent or null
    beyond training): table, column, rows and the features affected, and what to do."""
    if m.schema_drift is None:
        return []
    alerts = []
    for f in m.schema_drift.findings:
        severe = not math.isnan(f.shap_share) and f.shap_share > s.schema_drift_critical_share
        weight = ("" if math.isnan(f.shap_share) else
                  f" Their share of the model's mean |SHAP| is {f.shap_share:.0%} "
                  f"({'above' if severe else 'at most'} schema_drift_critical_share {s.schema_drift_critical_share:g}).")
        alerts.append(Alert("schema_drift", "critical" if severe else "warning", f.name, (
            f"{f.describe()}.{weight} The night still scored. Fix the source or its mapping (the ingest SQL in "
            "sql_dir, the event files) and rerun the night; retraining cannot help (a model trained on this data "
            "learns the imputed values), so none is requested"), f.null_share, f.allowed_share))
    return alerts


def _estimated_performance(s: Settings, m: MonitoringResult) -> list[Alert]:
    """Critical when the band of tonight's estimated ROC-AUC or PR-AUC lies wholly below the holdout
    baseline minus ``performance_drop_margin`` (:mod:`pipeline.monitoring.estimate`), unless the
    calibration check marked the estimate unreliable."""
    est = m.estimate
    if est is None or not est.below or not est.reliable:
        return []
    level = {"roc_auc": est.baseline_roc_auc - s.performance_drop_margin,
             "pr_auc": est.baseline_pr_auc - s.performance_drop_margin}
    metric = "roc_auc" if est.roc_auc_upper < level["roc_auc"] else "pr_auc"
    names = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
    figures = "; ".join(
        f"{names[k]} {getattr(est, k):.3f} (band {getattr(est, f'{k}_lower'):.3f} .. {getattr(est, f'{k}_upper'):.3f}, "
        f"{est.confidence:.0%}) vs {getattr(est, f'baseline_{k}'):.3f} on the holdout" for k in names)
    checked = (f"calibration gap {est.calibration_gap:.3f} on the matured scores of {est.calibration_scored_on} "
               f"(at most estimate_max_calibration_gap {s.estimate_max_calibration_gap:g})"
               if est.calibration_scored_on else "calibration not checked on matured labels yet")
    return [Alert("estimated_performance", "critical", "estimate", (
        f"Estimated from tonight's {est.rows:,} scores before their labels mature: {figures}. The "
        f"{names[metric]} band lies below the holdout minus performance_drop_margin {s.performance_drop_margin:g} "
        f"({level[metric]:.3f}) every night since {est.below_since}. The estimate assumes the champion's "
        f"probabilities are calibrated ({checked}). This is the main trigger for retraining: the matured labels "
        "confirm it only one label window later. " + _retraining(s)),
        getattr(est, f"{metric}_upper"), level[metric])]


@dataclass(frozen=True)
class Rule:
    """One alert rule: its findings for a night, and whether its critical alert asks for a new model."""

    name: str
    evaluate: Callable[[Settings, MonitoringResult], list[Alert]]
    #: a critical alert of this rule requests a churn_training run (with ``retrain_on_critical``)
    retrain: bool
    #: what moved: "data drift" (the features), "concept drift" (churn given the features), ...
    kind: str


#: every rule, in the order the e-mail lists ties (see the module doc for what each checks)
RULES: tuple[Rule, ...] = (
    # raw data drift never requests retraining (the model may not use what moved, and a retrain on tonight's
    # matured snapshots cannot see it): the estimated and matured performance do
    Rule("data_drift", _data_drift, retrain=False, kind="data drift"),
    Rule("feature_psi", _feature_psi, retrain=False, kind="data drift"),
    Rule("prediction_drift", _prediction_drift, retrain=False, kind="data drift"),
    Rule("estimated_performance", _estimated_performance, retrain=True, kind="estimated performance"),
    Rule("performance_drop", _performance_drop, retrain=True, kind="concept drift"),
    Rule("concept_drift", _concept_drift, retrain=True, kind="concept drift"),
    Rule("promotion_review", _promotion_review, retrain=False, kind="model comparison"),
    Rule("fairness", _fairness, retrain=False, kind="fairness"),
    Rule("data_quality", _data_quality, retrain=False, kind="data quality"),
    Rule("schema_drift", _schema_drift, retrain=False, kind="schema drift"),
)
#: rules whose critical alert may request retraining
RETRAIN_RULES = frozenset(r.name for r in RULES if r.retrain)
#: rule -> what kind of change it reports
KINDS = {r.name: r.kind for r in RULES}


def evaluate_rules(settings: Settings, monitoring: MonitoringResult) -> list[Alert]:
    """Every rule's alerts for one night."""
    return [alert for rule in RULES for alert in rule.evaluate(settings, monitoring)]


def retrain_requested(settings: Settings, raised: pd.DataFrame) -> bool:
    """Does a raised (not suppressed) alert ask for a new model: a critical one of a retraining rule?"""
    return bool(settings.retrain_on_critical and len(raised) and (
        (raised["severity"] == "critical") & raised["rule"].isin(sorted(RETRAIN_RULES))).any())


def night_summary(settings: Settings, monitoring: MonitoringResult, alerts: pd.DataFrame) -> dict[str, Any]:
    """The night's monitoring with its recorded ``alerts`` (:func:`record_alerts`), the highest
    severity of those not suppressed, whether one of them asks for retraining (:func:`retrain_requested`;
    the alerts step then sets ``retrain`` to the night's decision, :mod:`pipeline.monitoring.retraining`)
    and the drift weighed by importance (``drift_weight``) (pure): what ``monitoring.json`` holds and
    the report, the e-mail and the retraining request read."""
    raised = alerts[alerts["status"] != SUPPRESSED]
    return {**monitoring.to_dict(), "alerts": alerts.drop(columns="run_date").to_dict("records"),
            "severity": highest_severity(raised["severity"]), "retrain": retrain_requested(settings, raised),
            "drift_weight": drift_weight(settings, monitoring).to_dict()}


def record_alerts(settings: Settings, day: dt.date | str, model_version: str, alerts: list[Alert]) -> pd.DataFrame:
    """Store tonight's alerts as ``pending`` or ``suppressed`` (cooldown; see the module doc); return them."""
    night = results_night(day)
    sent = _sent_nights(settings, night - dt.timedelta(days=settings.alert_cooldown_days), night, model_version)

    def status(alert: Alert) -> str:
        nights = sent.get((alert.rule, alert.group), set())
        return SENT if night in nights else SUPPRESSED if nights else PENDING

    rows = pd.DataFrame(
        [{**asdict(a), "run_date": night, "model_version": model_version, "status": status(a)} for a in alerts],
        columns=["rule", "severity", "group", "message", "value", "threshold", "run_date", "model_version", "status"],
    ).rename(columns={"group": "alert_group"})
    rows["run_date"] = pd.to_datetime(rows["run_date"])
    rows[["value", "threshold"]] = rows[["value", "threshold"]].astype("float64")
    replace_rows(settings, ALERTS, rows, "run_date", night)
    return rows


def alerts_for_email(settings: Settings, day: dt.date | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the night's e-mail lists, and the stored alerts it delivers.

    Listed: tonight's alerts (any status) and the ``pending`` ones of earlier nights, one row per
    key (the latest), with a plain-text ``note`` saying whether it is new, carried over from a
    night whose e-mail did not go out, suppressed or already e-mailed. Delivered: every pending
    row among them (pass it to :func:`mark_sent` once the SMTP server accepted the message).
    """
    night = results_night(day)
    tbl = ALERTS
    with results_engine(settings).connect() as conn:
        rows = pd.read_sql(
            sa.select(tbl).where(sa.or_(tbl.c.run_date == night, sa.and_(tbl.c.status == PENDING, tbl.c.run_date < night))),
            conn)
    if rows.empty:
        empty = pd.DataFrame(columns=[*_KEY, "severity", "message", "status", "run_date", "note"])
        return empty, empty
    rows["run_date"] = pd.to_datetime(rows["run_date"])
    rows = rows.sort_values("run_date", kind="stable")
    pending = rows[rows["status"] == PENDING]
    listed = rows.groupby(_KEY, sort=False).tail(1).copy()
    earlier = pending[pending["run_date"] < night].groupby(_KEY)["run_date"].agg(
        lambda d: ", ".join(f"{x:%Y-%m-%d}" for x in d))
    listed["note"] = [_note(r, earlier.get(tuple(r[k] for k in _KEY)), night, settings.alert_cooldown_days)
                      for _, r in listed.iterrows()]
    order = listed["severity"].map(SEVERITIES.index)
    return listed.assign(_order=-order).sort_values(["_order", "run_date"], kind="stable").drop(columns="_order"), pending


def mark_sent(settings: Settings, delivered: pd.DataFrame) -> int:
    """Set ``sent`` on the delivered (pending) alerts; return how many were marked."""
    if delivered.empty:
        return 0
    tbl = ALERTS
    with results_engine(settings).begin() as conn:
        stmt = sa.update(tbl).where(
            *(tbl.c[k] == sa.bindparam(f"b_{k}") for k in [*_KEY, "run_date"]), tbl.c.status == PENDING,
        ).values(status=SENT)
        conn.execute(stmt, [{f"b_{k}": (r[k].to_pydatetime() if k == "run_date" else r[k]) for k in [*_KEY, "run_date"]}
                            for _, r in delivered.iterrows()])
    return len(delivered)


def _note(row: pd.Series, earlier: str | None, night: dt.datetime, cooldown_days: int) -> str:
    not_mailed = f"raised on {earlier}, not e-mailed then" if earlier else ""
    if row["run_date"] < night:
        return f"carried over: {not_mailed}"
    note = {PENDING: "new tonight", SENT: "already e-mailed for this night",
            SUPPRESSED: f"suppressed: e-mailed within the last {cooldown_days} days"}[row["status"]]
    return f"{note}; also {not_mailed}" if not_mailed else note


def _sent_nights(
    settings: Settings, since: dt.datetime, until: dt.datetime, model_version: str
) -> dict[tuple[str, str], set[dt.datetime]]:
    """Nights in ``(since, until]`` on which each key of ``model_version`` was e-mailed."""
    tbl = ALERTS
    with results_engine(settings).connect() as conn:
        rows = conn.execute(
            sa.select(tbl.c.rule, tbl.c.alert_group, tbl.c.run_date).distinct().where(
                tbl.c.status == SENT, tbl.c.model_version == model_version,
                tbl.c.run_date > since, tbl.c.run_date <= until,
            )
        ).all()
    nights: dict[tuple[str, str], set[dt.datetime]] = {}
    for rule, group, run_date in rows:
        nights.setdefault((rule, group), set()).add(pd.Timestamp(run_date).to_pydatetime())
    return nights


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
