"""The gate promotes on evidence (issue 34): the weighted ROC-AUC the paired bootstrap resamples
with, the bootstrap's verdict (a tie never, a clear gain always, a gain within the noise only
under the plain margin test), the verdict's record and the nightly e-mail's table of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.config import load_settings
from pipeline.model.gate import (
    Verdict,
    bootstrap_gate,
    evidence,
    gate,
    gate_record,
    paired_bootstrap,
    weighted_roc_auc,
)

ROWS = 2_000


@pytest.mark.parametrize("seed", range(6))
def test_the_weighted_roc_auc_is_sklearns_with_sample_weight_ties_included(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n)
    scores = np.round(rng.random(n), seed % 3)  # 0, 1 or 2 decimals: many ties, across the classes too
    for weights in (rng.integers(0, 4, n).astype(float), rng.random(n), None):
        expected = roc_auc_score(y, scores, sample_weight=weights)
        assert weighted_roc_auc(y, scores, weights) == pytest.approx(expected, abs=1e-12)
    # every score tied: 1/2; a perfect and a reversed ranking
    assert weighted_roc_auc(y, np.zeros(n)) == 0.5
    assert weighted_roc_auc(y, y.astype(float)) == 1.0 and weighted_roc_auc(y, -y.astype(float)) == 0.0


def _holdout(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2,000 rows at a 10 % churn rate, the champion's scores and the signal they are noisy about."""
    rng = np.random.default_rng(seed)
    y = (rng.random(ROWS) < 0.1).astype(int)
    signal = rng.normal(size=ROWS) + 1.0 * y
    return y, signal, signal + rng.normal(scale=1.0, size=ROWS)


def _verdict(y, candidate, champion, margin=0.0, test="bootstrap"):
    observed = roc_auc_score(y, candidate) - roc_auc_score(y, champion)
    found = None
    if test == "bootstrap":
        found = evidence(paired_bootstrap(y, candidate, champion, samples=1000, seed=42), observed, margin=margin,
                         confidence=0.95, rows=len(y))
    return bootstrap_gate(roc_auc_score(y, candidate), roc_auc_score(y, champion), found, margin), found


def test_identical_predictions_never_promote():
    y, _, champion = _holdout()
    differences = paired_bootstrap(y, champion.copy(), champion, samples=200, seed=1)
    assert not differences.any()  # every resample: exactly the same ROC-AUC
    (promoted, why), found = _verdict(y, champion.copy(), champion)
    assert promoted is False and "a tie is not evidence" in why and found.share_not_better == 1.0
    assert "in 100.0% of 1,000 paired bootstrap resamples" in why


def test_a_clearly_better_model_promotes():
    y, signal, champion = _holdout()
    better = signal + np.random.default_rng(3).normal(scale=0.3, size=ROWS)
    (promoted, why), found = _verdict(y, better, champion)
    assert found.difference > 0.03 and found.ci_low > 0.01 and found.share_not_better == 0.0
    assert promoted is True and "beyond noise" in why and "95% lower bound" in why


def test_a_gain_within_the_noise_promotes_under_the_margin_test_only():
    """+0.0024 ROC-AUC on 2,000 rows: the old fixed margin 0 promotes it, the bootstrap sees it is
    not beyond noise (its 95 % lower bound is below 0)."""
    y, _, champion = _holdout()
    noisy = champion + np.random.default_rng(104).normal(scale=0.15, size=ROWS)
    (promoted, why), found = _verdict(y, noisy, champion)
    assert 0 < found.difference < 0.005 and found.ci_low < 0 < found.share_not_better < 0.5
    assert promoted is False and "is not beyond noise on this holdout" in why, why
    (promoted, why), _ = _verdict(y, noisy, champion, test="margin")
    assert promoted is True and why == gate(roc_auc_score(y, noisy), roc_auc_score(y, champion), 0.0)[1]
    # the verdict replays identically: the bootstrap is seeded
    again = paired_bootstrap(y, noisy, champion, samples=1000, seed=42)
    assert np.array_equal(again, paired_bootstrap(y, noisy, champion, samples=1000, seed=42))


def test_the_margin_is_what_the_lower_bound_must_clear():
    y, signal, champion = _holdout()
    better = signal + np.random.default_rng(3).normal(scale=0.3, size=ROWS)
    (promoted, why), found = _verdict(y, better, champion, margin=0.04)
    assert found.difference > 0.04 > found.ci_low and promoted is False and "margin 0.04" in why
    # a negative margin (promote a tie on purpose): every resample's 0 is above it
    (promoted, _), _ = _verdict(y, champion.copy(), champion, margin=-1.0)
    assert promoted is True


def test_the_verdict_is_recorded_with_every_metric_of_both_models(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    y, _, champion = _holdout()
    noisy = champion + np.random.default_rng(104).normal(scale=0.15, size=ROWS)
    (served, decision), found = _verdict(y, noisy, champion)
    mine = {"roc_auc": roc_auc_score(y, noisy), "pr_auc": 0.30, "expected_value": 9_000.0}
    theirs = {"roc_auc": roc_auc_score(y, champion), "pr_auc": 0.32, "expected_value": 10_000.0}
    record = gate_record(settings, margin=0.0, candidate=mine, champion=theirs, found=found, rows=ROWS,
                         positives=int(y.sum()))
    verdict = Verdict(served, decision, mine["roc_auc"], 1, theirs["roc_auc"], {}, record, found)
    out = verdict.record("v2")
    assert json.loads(json.dumps(out)) == out  # JSON-ready, as metrics.json keeps it
    assert out["test"] == "bootstrap" and out["samples"] == 1000 and out["confidence"] == 0.95
    assert out["seed"] == settings.random_seed and out["rows"] == ROWS and out["champion"] == "v1"
    assert out["served"] is False and out["sentence"].startswith("v2 not served: ROC-AUC")
    roc, pr, value = (out["metrics"][k] for k in ("roc_auc", "pr_auc", "expected_value"))
    assert roc["difference"] == pytest.approx(found.difference) and roc["ci_low"] == found.ci_low
    assert roc["passed"] is False and "95% lower bound > 0" in roc["rule"]
    assert pr["difference"] == pytest.approx(-0.02) and pr["tolerance"] == 0.01 and pr["passed"] is False
    assert value["difference"] == -1000.0 and value["passed"] is False and "5%" in value["rule"]
    # the nightly e-mail's Model section renders it as a table
    from pipeline.monitoring.notify import _model_section

    section = _model_section({
        "champion": {"version": "v1", "training_date": "2025-07-01", "roc_auc": theirs["roc_auc"]},
        "newest": {"version": "v2", "training_date": "2025-07-01", "is_champion": False, "served": False,
                   "decision": decision, "roc_auc": mine["roc_auc"], "champion_version": "v1",
                   "champion_roc_auc": theirs["roc_auc"], "registered_at": "2025-07-01T00:00:00", "gate": out}})
    assert section.headers == ("Metric", "Candidate", "Champion", "Difference", "Guard / tolerance")
    rows = {row[0]: row for row in section.rows}
    assert set(rows) == {"ROC-AUC", "PR-AUC", "Campaign value at capacity"}
    assert "lower bound" in rows["ROC-AUC"][3] and rows["ROC-AUC"][4].endswith("FAILED")
    assert rows["Campaign value at capacity"][1:4] == ("9,000", "10,000", "-1,000")
    assert any("bootstrap test on 2,000 holdout rows" in line and "v2 (as of 2025-07-01" in line and "NOT served" in line
               for line in section.lines)
    # a version recorded before the gate kept its evidence: the sentences only, no table
    plain = _model_section({"champion": {"version": "v1"}, "newest": {"version": "v1", "is_champion": True,
                                                                        "roc_auc": 0.7, "gate": None}})
    assert plain.rows == [] and "Newest training: v1 (the champion, " in plain.lines[-1]
