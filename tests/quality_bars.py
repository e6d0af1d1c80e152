"""The model-quality bars on generated data, one set for every generated business
(tests/test_model_quality.py: cancellation churn; tests/test_retail.py: inactivity churn)."""

from __future__ import annotations

import json

import pandas as pd

#: the champion's out-of-time ROC-AUC may trail the truth's on the same holdout by at most this
MAX_TRUTH_GAP = 0.03
#: PR-AUC at least this multiple of the base rate
MIN_PR_AUC_LIFT = 2.0
MAX_ECE = 0.03


def quality(metrics: dict, label: pd.Series, truth: pd.Series, name: str = "quality") -> dict[str, float]:
    """The champion's holdout figures and the truth's ROC-AUC on the same rows (printed as ``name``)."""
    from sklearn.metrics import roc_auc_score

    numbers = {"roc_auc": metrics["roc_auc"], "best_roc_auc": roc_auc_score(label, truth),
               "pr_auc": metrics["pr_auc"], "base_rate": metrics["base_rate"], "ece": metrics["ece"],
               "model": metrics["model"]}
    print(f"{name}:", json.dumps(numbers))
    return numbers


def check_pr_auc_and_calibration(q: dict[str, float]) -> None:
    assert q["pr_auc"] >= MIN_PR_AUC_LIFT * q["base_rate"], q
    assert q["ece"] <= MAX_ECE, q


def check_near_truth(q: dict[str, float]) -> None:
    assert q["roc_auc"] >= q["best_roc_auc"] - MAX_TRUTH_GAP, q
