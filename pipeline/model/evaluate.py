"""Model evaluation: ranking, threshold, lift, calibration, and the campaign-value threshold.

All functions are pure (arrays in, numbers out) so they serve training, the model card,
the matured-label monitoring and the tests alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Campaign:
    """Economics of a retention campaign: what a saved customer is worth and what a contact costs."""

    customer_value: float = 200.0
    save_rate: float = 0.3
    contact_cost: float = 5.0
    #: at most this many customers contacted per scoring run (0: no limit)
    capacity: int = 0


def _check(y_true: ArrayLike, proba: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true).astype(int), np.asarray(proba, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be 1-d and the same length")
    if len(y) == 0:
        raise ValueError("no rows to evaluate")
    return y, p


def threshold_metrics(y_true: ArrayLike, proba: ArrayLike, threshold: float) -> dict[str, float]:
    y, p = _check(y_true, proba)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "contacted": tp + fp}


def lift_at(y_true: ArrayLike, proba: ArrayLike, fraction: float = 0.1) -> dict[str, float]:
    """Lift and capture rate among the top ``fraction`` of customers by probability."""
    y, p = _check(y_true, proba)
    k = max(1, int(np.ceil(fraction * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    rate = y[top].mean()
    return {"lift": float(rate / base) if base else 0.0,
            "capture_rate": float(y[top].sum() / y.sum()) if y.sum() else 0.0}


def calibration_curve(y_true: ArrayLike, proba: ArrayLike, bins: int = 10) -> dict[str, list[float]]:
    """Equal-frequency bins: mean predicted vs observed rate, and bin sizes."""
    y, p = _check(y_true, proba)
    order = np.argsort(p, kind="stable")
    chunks = [c for c in np.array_split(order, bins) if len(c)]
    return {"predicted": [float(p[c].mean()) for c in chunks],
            "observed": [float(y[c].mean()) for c in chunks],
            "count": [len(c) for c in chunks]}


def expected_calibration_error(y_true: ArrayLike, proba: ArrayLike, bins: int = 10) -> float:
    curve = calibration_curve(y_true, proba, bins)
    n = sum(curve["count"])
    return float(sum(c / n * abs(o - q) for q, o, c in zip(curve["predicted"], curve["observed"], curve["count"], strict=True)))


def campaign_value(y_true: ArrayLike, proba: ArrayLike, threshold: float, campaign: Campaign) -> float:
    """customer value x save rate x true positives - contact cost x contacted customers."""
    m = threshold_metrics(y_true, proba, threshold)
    return campaign.customer_value * campaign.save_rate * m["tp"] - campaign.contact_cost * m["contacted"]


#: the threshold that contacts nobody (above every probability): chosen when no campaign pays
CONTACT_NOBODY = 1.0 + 1e-9


def _candidate_thresholds(p: np.ndarray, capacity: int = 0) -> np.ndarray:
    """201 quantiles of the probabilities, the threshold that contacts nobody and, with a contact
    ``capacity`` below the rows, the probabilities ranked 1..capacity (201 of them): on a large
    holdout a quantile step (0.5 % of the rows) is wider than a campaign of a few hundred, which
    left only the very highest probability, or nobody, within the capacity."""
    grid = [np.quantile(p, np.linspace(0, 1, 201)), [CONTACT_NOBODY]]
    if 0 < capacity < len(p):
        ranks = np.unique(np.linspace(1, capacity, 201).astype(int))
        grid.append(-np.partition(-p, ranks - 1)[ranks - 1])  # the ranks' probabilities, highest first
    return np.unique(np.concatenate(grid))


#: how far below the lowest contacted probability a stored threshold sits (at most half the gap to the next)
THRESHOLD_MARGIN = 1e-6


def clear_of_scores(p: np.ndarray, threshold: float) -> float:
    """``threshold`` moved just below the lowest probability at or above it (by at most
    :data:`THRESHOLD_MARGIN`, and less than half the gap to the next lower probability): the
    same customers are contacted, but a threshold equal to a customer's probability put that
    customer on the wrong side of ``>=`` as soon as the score was recomputed or stored with
    other rounding (a probability kept as float32: one churner fewer, 4,910 instead of 4,965)."""
    above, below = p[p >= threshold], p[p < threshold]
    if not len(above):
        return float(threshold)
    lowest = float(above.min())
    gap = lowest - float(below.max()) if len(below) else lowest
    return lowest - min(THRESHOLD_MARGIN, gap / 2)


def best_value_threshold(y_true: ArrayLike, proba: ArrayLike, campaign: Campaign) -> dict[str, float]:
    """The threshold that maximises expected campaign value, within the contact capacity (clear
    of the scores: :func:`clear_of_scores`)."""
    y, p = _check(y_true, proba)
    best: dict[str, float] | None = None
    for t in _candidate_thresholds(p, campaign.capacity):
        m = threshold_metrics(y, p, t)
        if campaign.capacity and m["contacted"] > campaign.capacity:
            continue
        value = campaign.customer_value * campaign.save_rate * m["tp"] - campaign.contact_cost * m["contacted"]
        if best is None or value > best["expected_value"]:
            best = {**m, "expected_value": float(value)}
    assert best is not None  # the threshold above 1 contacts nobody and always qualifies
    best["threshold"] = clear_of_scores(p, best["threshold"])
    return best


def best_f1_threshold(y_true: ArrayLike, proba: ArrayLike) -> dict[str, float]:
    y, p = _check(y_true, proba)
    best = max((threshold_metrics(y, p, t) for t in _candidate_thresholds(p)), key=lambda m: m["f1"])
    return {**best, "threshold": clear_of_scores(p, best["threshold"])}


def full_report(y_true: ArrayLike, proba: ArrayLike, campaign: Campaign) -> dict[str, object]:
    """Everything the registry stores about a model's out-of-time performance."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y, p = _check(y_true, proba)
    if len(np.unique(y)) < 2:
        raise ValueError("only one class present: ROC-AUC and PR-AUC are undefined")
    chosen = best_value_threshold(y, p, campaign)
    f1_opt = best_f1_threshold(y, p)
    f1_opt["expected_value"] = campaign_value(y, p, f1_opt["threshold"], campaign)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "n": len(y),
        "n_positive": int(y.sum()),
        **{f"top_decile_{k}": v for k, v in lift_at(y, p, 0.1).items()},
        "threshold": chosen["threshold"],
        "precision": chosen["precision"],
        "recall": chosen["recall"],
        "f1": chosen["f1"],
        "expected_value": chosen["expected_value"],
        "f1_optimal": f1_opt,
        "campaign": asdict(campaign),
        "calibration_curve": calibration_curve(y, p),
    }
