"""Evaluation metrics and the campaign-value threshold, on hand-checkable arrays."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model.evaluate import (
    Campaign,
    best_f1_threshold,
    best_value_threshold,
    campaign_value,
    expected_calibration_error,
    full_report,
    lift_at,
    threshold_metrics,
)


def test_threshold_metrics_by_hand():
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.7, 0.1, 0.2])
    m = threshold_metrics(y, p, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["contacted"]) == (2, 1, 1, 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)


def test_lift_and_capture():
    y = np.array([1] + [0] * 9 + [1] + [0] * 9)
    p = np.linspace(1, 0, 20)  # the first customer (a churner) ranks highest
    out = lift_at(y, p, 0.1)   # top 2 of 20: one churner out of 2 => rate 0.5 vs base 0.1
    assert out["lift"] == pytest.approx(5.0) and out["capture_rate"] == pytest.approx(0.5)


def test_value_threshold_contacts_only_when_it_pays():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1])
    camp = Campaign(customer_value=100, save_rate=0.5, contact_cost=10)
    best = best_value_threshold(y, p, camp)
    # top 2: 2 x 50 - 2 x 10 = 80 (best); top 3: 100 - 30 = 70; everyone: 100 - 80 = 20
    assert best["contacted"] == 2 and best["expected_value"] == pytest.approx(80)
    assert campaign_value(y, p, 0.0, camp) == pytest.approx(20)
    # with capacity 1 only the single best-ranked customer may be contacted: 50 - 10
    capped = best_value_threshold(y, p, Campaign(100, 0.5, 10, capacity=1))
    assert capped["contacted"] == 1 and capped["expected_value"] == pytest.approx(40)


def test_a_small_capacity_on_a_large_holdout_still_finds_its_campaign():
    """At 1M customers (a 600k-row holdout, capacity 500) every quantile step contacted more than
    the capacity: the model chose to contact nobody (threshold 1.000000001) and every night's
    campaign was empty. The ranks within the capacity are candidates now."""
    rng = np.random.default_rng(0)
    p = rng.beta(1, 15, 600_000)
    y = rng.random(600_000) < p
    best = best_value_threshold(y, p, Campaign(200, 0.3, 5, capacity=500))
    assert 450 <= best["contacted"] <= 500 and best["expected_value"] > 0
    assert best["threshold"] < 1


def test_calibration_error_is_small_for_calibrated_and_large_for_inflated():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.3, 50_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.minimum(p * 2.5, 1)) > 0.1


def test_full_report_keys_and_single_class_error():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    rep = full_report(y, p, Campaign())
    for key in ("roc_auc", "pr_auc", "brier", "ece", "top_decile_lift", "top_decile_capture_rate",
                "threshold", "precision", "recall", "f1", "expected_value", "f1_optimal", "calibration_curve"):
        assert key in rep
    # the stored value is the value of the stored threshold, and close to the best of every possible cut
    assert campaign_value(y, p, rep["threshold"], Campaign()) == pytest.approx(rep["expected_value"])
    exhaustive = max(campaign_value(y, p, t, Campaign()) for t in np.unique(p))
    assert rep["expected_value"] >= 0.98 * exhaustive
    assert best_f1_threshold(y, p)["f1"] == pytest.approx(rep["f1_optimal"]["f1"])
    with pytest.raises(ValueError, match="one class"):
        full_report(np.zeros(5), np.linspace(0, 1, 5), Campaign())


def test_the_stored_threshold_keeps_its_campaign_when_the_scores_are_rounded():
    """The threshold used to equal the lowest contacted customer's probability: the same scores
    kept as float32 (or recomputed in another order) put that customer below it, and the
    champion's campaign was worth 4,910 instead of its recorded 4,965 (one churner fewer)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.beta(1, 12, 3000)
        y = (rng.uniform(size=p.size) < p).astype(int)
        for campaign in (Campaign(capacity=100), Campaign()):
            best = best_value_threshold(y, p, campaign)
            assert campaign_value(y, p, best["threshold"], campaign) == best["expected_value"]
            rounded = p.astype("float32").astype("float64")
            assert campaign_value(y, rounded, best["threshold"], campaign) == best["expected_value"]
            # still right under the lowest contacted score: no other customer between
            contacted = p[p >= best["threshold"]]
            assert len(contacted) == best["contacted"]
            if len(contacted):
                assert 0 < contacted.min() - best["threshold"] <= 1.001e-6
