"""Drift alerts weighed by what the model uses (issue 34, part 2): drift only in features the model
barely uses is an info data-quality note, never critical nor a retraining request; the same drift
in its top feature is critical; without importance the rules judge unweighted and say so. On the
generator's price rise (features the trained model barely uses) the night is not critical, nothing
is requested, and the e-mail's subject, headline, drift sentence and alert list say the same."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import load_settings
from pipeline.monitoring.alerts import RETRAIN_RULES, evaluate_rules, highest_severity, retrain_requested
from pipeline.monitoring.metrics import PredictionDrift
from pipeline.monitoring.night import DriftFacts, MonitoringResult
from pipeline.monitoring.weighting import barely_used, weigh

DAY = "2026-11-30"
#: the model's mean |SHAP| on its training reference: tenure carries most, monthly_fee nothing
SHAP = {"tenure_days": 0.50, "n_sessions_30d": 0.30, "plan": 0.17, "region": 0.02, "monthly_fee": 0.0, "age": 0.01}


def _result(drifted: list[str], psi: dict[str, float], *, importance: bool = True) -> MonitoringResult:
    top = max(psi, key=psi.__getitem__)
    facts = DriftFacts.from_dict({"drift_share": len(drifted) / len(SHAP), "drifted": drifted, "max_psi": psi[top],
                                  "max_psi_feature": top, "psi": psi})
    frame = pd.DataFrame({"run_date": pd.Timestamp(DAY), "feature": list(SHAP),
                          "reference_mean_abs_shap": list(SHAP.values()), "mean_abs_shap": list(SHAP.values()),
                          "change": 0.0, "ratio": 1.0, "reference_rank": range(1, 7), "rank": range(1, 7),
                          "model_version": "v3"})
    prediction = PredictionDrift(DAY, "v3", 0.1, 0.2, 0.1, 0.2, 0.01, 0.2, 7)
    return MonitoringResult(DAY, "v3", 0.3, facts, prediction, None,
                            pd.DataFrame(columns=["segment", "group", "positive_rate_ratio"]),
                            importance=frame if importance else None)


def _quiet_psi(**moved: float) -> dict[str, float]:
    return {**{f: 0.01 for f in SHAP}, **moved}


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "nowhere")


def test_the_barely_used_features_are_the_least_important_that_together_stay_below_the_share():
    shares = {f: v / sum(SHAP.values()) for f, v in SHAP.items()}
    assert barely_used(shares, 0.05) == {"monthly_fee", "age", "region"}  # 0 + 1 % + 2 % < 5 %; plan's 17 % is not
    assert barely_used(shares, 0.0) == frozenset()
    assert not weigh(["monthly_fee"], {}, None, min_share=0.05, psi_warning=0.1).weighted


def test_drift_only_in_a_feature_the_model_does_not_use_is_an_info_note_that_requests_nothing(settings):
    night = _result(["monthly_fee"], _quiet_psi(monthly_fee=16.3))  # far above psi_critical (0.25)
    alerts = evaluate_rules(settings, night)
    assert [(a.rule, a.severity) for a in alerts] == [("data_quality", "info")], alerts
    note = alerts[0].message
    assert "monthly_fee (PSI 16.3, 0.0% of its mean |SHAP|)" in note and "barely uses it" in note
    assert "drift_min_importance_share 0.05" in note and "a price change, a mapping or a pipeline change" in note
    assert "No retraining is requested" in note and "before retraining" not in note
    raised = pd.DataFrame([{"rule": a.rule, "severity": a.severity} for a in alerts])
    assert highest_severity(raised["severity"]) == "info" and not retrain_requested(settings, raised)


def test_the_same_drift_in_the_top_feature_is_critical_and_names_its_share(settings):
    night = _result(["tenure_days"], _quiet_psi(tenure_days=16.3))
    alerts = {a.rule: a for a in evaluate_rules(settings, night)}
    assert alerts["feature_psi"].severity == "critical" and alerts["data_drift"].severity == "critical"
    assert "PSI of tenure_days 16.3 >= 0.25" in alerts["feature_psi"].message
    assert "tenure_days carries 50.0% of the model's mean |SHAP|" in alerts["feature_psi"].message
    assert "carry 50% of the model's mean |SHAP|" in alerts["data_drift"].message
    assert "importance-weighted drift share 0.5 >= 0.5" in alerts["data_drift"].message  # 1 of 6 features, unweighted
    # raw data drift never requests retraining, and says what decides instead
    assert not {"data_drift", "feature_psi", "prediction_drift"} & RETRAIN_RULES
    for alert in (alerts["feature_psi"], alerts["data_drift"]):
        assert "Data drift alone requests no retraining" in alert.message and "before retraining" not in alert.message
    raised = pd.DataFrame([{"rule": a.rule, "severity": a.severity} for a in alerts.values()])
    assert not retrain_requested(settings, raised)
    # a used and an unused feature drifting: the used one is judged, the unused one is the note
    both = {a.rule: a for a in evaluate_rules(settings, _result(["tenure_days", "monthly_fee"],
                                                                _quiet_psi(tenure_days=0.3, monthly_fee=16.3)))}
    assert "PSI of tenure_days 0.3" in both["feature_psi"].message and "monthly_fee" in both["data_quality"].message


def test_without_importance_the_drift_is_judged_unweighted_and_the_message_says_so(settings):
    night = _result(["monthly_fee"], _quiet_psi(monthly_fee=16.3), importance=False)
    alerts = {a.rule: a for a in evaluate_rules(settings, night)}
    assert alerts["feature_psi"].severity == "critical" and "PSI of monthly_fee 16.3" in alerts["feature_psi"].message
    assert "unweighted: feature importance is off (importance_sample_rows 0)" in alerts["feature_psi"].message
    assert "data_quality" not in alerts  # no note: nothing says the model does not use it


def test_the_email_says_one_verdict(settings):
    """Subject, headline, the drift section's sentence and the alert list agree."""
    from pipeline.monitoring.alerts import night_summary
    from pipeline.monitoring.drift import DriftSummary, FeatureDrift
    from pipeline.monitoring.notify import NightlyReport

    night = _result(["monthly_fee"], _quiet_psi(monthly_fee=16.3))
    alerts = evaluate_rules(settings, night)
    stored = pd.DataFrame([{"rule": a.rule, "severity": a.severity, "alert_group": a.group, "message": a.message,
                            "status": "pending", "run_date": pd.Timestamp(DAY)} for a in alerts])
    monitoring = night_summary(settings, night, stored)
    assert monitoring["severity"] == "info" and monitoring["drift_weight"]["only_unused"]
    summary = DriftSummary(50_000, 10_000, 1 / 6, False, [
        FeatureDrift(f, "numeric", "Wasserstein distance (normed)", 0.5 if f == "monthly_fee" else 0.01, 0.1,
                     f == "monthly_fee", 16.3 if f == "monthly_fee" else 0.01) for f in SHAP])
    report = NightlyReport(DAY, summary, 10_000, 0.1, 0.3, monitoring=monitoring,
                           alerts=[{**r, "note": "new tonight"} for r in stored.to_dict("records")])
    text = report.text()
    assert report.subject() == (f"[churnflow] {DAY} INFO: nightly churn scores: 10,000 customers, drift only in "
                                "features the model barely uses")
    assert f"Churn nightly report: {DAY}, severity INFO (decided by the data_quality alert)" in text
    assert ("For the model: drift in 1 feature the model barely uses (monthly fee; share 0.0% of its mean |SHAP|, "
            "below drift_min_importance_share 0.05): info, see the data-quality note.") in text
    assert "Severity: info; Rule: data_quality" in text and "critical" not in text.lower()


def test_a_night_of_the_generators_price_rise_is_not_critical_and_requests_nothing(trained_source, tmp_path):
    """The price rise (from 2025-06-01) moves monthly_fee and the billing features, which the trained
    model barely uses: an info note, no critical, no retraining, and the e-mail agrees."""
    from conftest import TRAINED, copy_business

    from churnflow_sim.smtp_sink import SmtpSink
    from pipeline.flows import run_nightly
    from pipeline.monitoring.notify import SmtpSettings

    data_dir = copy_business(trained_source, tmp_path / "data")
    settings = load_settings(data_dir=data_dir, **TRAINED)
    with SmtpSink() as sink:
        out = run_nightly(settings, "2025-06-27", lookback_days=31, send=True,
                          smtp=SmtpSettings(host=sink.host, port=sink.port))
        [message] = sink.messages
    monitoring = out["monitoring"]
    shares = {r["feature"]: r["reference_mean_abs_shap"] for r in monitoring["importance"]}
    total = sum(shares.values())
    assert "monthly_fee" in monitoring["drift"]["drifted"] and monitoring["drift"]["psi"]["monthly_fee"] > 1.0
    moved = monitoring["drift_weight"]["moved_unused"]
    assert "monthly_fee" in moved and sum(shares[f] for f in moved) / total < settings.drift_min_importance_share
    assert monitoring["drift_weight"]["only_unused"], monitoring["drift_weight"]
    rules = {(a["rule"], a["severity"]) for a in monitoring["alerts"]}
    assert ("data_quality", "info") in rules and "critical" not in {s for _, s in rules}, rules
    # a feature the model uses may still move a little (the new acquisition channel): judged on its own PSI
    judged = [a["message"] for a in monitoring["alerts"] if a["rule"] in ("data_drift", "feature_psi")]
    assert not [m for m in judged if set(moved) & set(m.replace("(", " ").split())], judged
    assert monitoring["severity"] != "critical" and monitoring["retrain"] is False
    assert "no critical alert of a retraining rule" in monitoring["retraining"]["reason"]
    severity = monitoring["severity"].upper()
    assert f"2025-06-27 {severity}:" in message["Subject"]
    assert "drift only in features the model barely uses" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert f"severity {severity} (decided by the " in text and "info, see the data-quality note" in text
    assert "No retraining requested: no critical alert of a retraining rule" in text
    assert "before retraining" not in text and "CRITICAL" not in text
    # the dashboard's night says the same: no critical alert, none of the model's mean |SHAP| in drifted features
    from pipeline.monitoring.dashboard import night_figures

    figures = {(f.figure, f.label): f.value for f in night_figures(settings, "2025-06-27")[0]}
    assert figures[("alerts", "critical")] == 0 and figures[("alerts", "info")] >= 1
    assert figures[("drifted_shap_pct", "")] == 0.0 and figures[("drifted_features", "")] >= 1
