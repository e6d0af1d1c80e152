"""Performance estimated before the labels mature (pure: every input is given, nothing is read).

Labels mature one label window after a night, so until then only the scores say whether the
model still works. Under calibration each customer's churn probability ``p_i`` is the expected
value of its label (confidence-based performance estimation, the method NannyML calls CBPE):

* **ROC-AUC**: the expected share of (churner, stayer) pairs ranked right, from the expected
  true- and false-positive counts at every threshold (sums of ``p_i`` and ``1 - p_i`` over the
  customers above it); tied scores count half, a customer is never paired with itself;
* **PR-AUC** (average precision, as :func:`sklearn.metrics.average_precision_score` scores it):
  the expected precision at each threshold weighted by the expected recall it adds;
* **precision at capacity**: the mean ``p`` of the ``k`` customers the campaign contacts
  (``campaign_daily_capacity``; 0: those at or above the threshold).

The **band** is the sampling spread under that assumption: label sets ``y ~ Bernoulli(p)`` are
drawn (seeded) ``simulations`` times and scored like matured labels; its bounds are quantiles of
the realised metrics around the estimate. Each draw labels at most ``sample_rows`` customers (a
seeded sample); its spread is rescaled to the night's customers by ``sqrt(sample / customers)``
(the metrics' spread shrinks as one over the square root of the rows).

The estimate cannot see concept drift (a change of ``P(y | x)``): :func:`calibration` checks the
assumption on the newest matured night (ECE over equal-count bins, never below the gap between the
mean probability and the churn rate); beyond ``estimate_max_calibration_gap`` the estimate is
marked unreliable and raises no alert.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

#: the metrics estimated, each with its lower and upper band bound
METRICS = ("roc_auc", "pr_auc", "precision_at_capacity")
#: equal-count bins of the calibration check
CALIBRATION_BINS = 10
#: label sets drawn at once (bounds the memory: chunk x sample rows)
_CHUNK_ROWS = 4_000_000


@dataclass(frozen=True)
class Calibration:
    """The calibration check of one matured night: the mean probability vs the churn rate of the
    same scores, and the expected calibration error (``gap``) over equal-count bins."""

    scored_on: str
    rows: int
    predicted_rate: float
    observed_rate: float
    gap: float


@dataclass(frozen=True)
class PerformanceEstimate:
    """One night's estimated performance (a ``performance_estimates`` row, plus ``history``)."""

    run_date: str
    model_version: str
    rows: int
    #: the customers precision at capacity is about (the campaign's top k)
    capacity: int
    roc_auc: float
    roc_auc_lower: float
    roc_auc_upper: float
    pr_auc: float
    pr_auc_lower: float
    pr_auc_upper: float
    precision_at_capacity: float
    precision_at_capacity_lower: float
    precision_at_capacity_upper: float
    confidence: float
    simulations: int
    #: customers each simulation labelled (the whole night, or the sample)
    sample_rows: int
    #: the champion's holdout figures (metrics.json)
    baseline_roc_auc: float
    baseline_pr_auc: float
    #: ECE of the newest matured night of this version (NaN: none matured yet) and that night
    calibration_gap: float
    calibration_scored_on: str | None
    #: False when the calibration gap exceeds estimate_max_calibration_gap (no alert then)
    reliable: bool
    #: a band's upper bound below the holdout baseline minus performance_drop_margin
    below: bool
    #: the first night of the current run of estimated nights below (None: tonight is not below)
    below_since: str | None
    #: the metrics on this night's scores once their labels matured (NaN until then) and when
    realised_roc_auc: float = math.nan
    realised_pr_auc: float = math.nan
    realised_precision_at_capacity: float = math.nan
    realised_on: str | None = None
    #: the latest matured nights of this version: estimate vs realised (for the e-mail; not a column)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceEstimate:
        """A saved :meth:`to_dict` (or a table row): None as NaN in the float fields."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data and f.name != "history":
                v = data[f.name]
                kwargs[f.name] = (math.nan if v is None else float(v)) if f.type == "float" else v
        return cls(**kwargs, history=list(data.get("history") or []))

    def row(self) -> dict[str, Any]:
        """The ``performance_estimates`` columns (``history`` left out)."""
        out = self.to_dict()
        out.pop("history")
        return out


# ------------------------------------------------------------------ the expected metrics
def _ordered(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``p`` highest first, and the start of each run of equal values in it (a threshold each)."""
    s = np.sort(np.asarray(p, dtype="float64"))[::-1]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.array([], dtype=int)
    return s, starts


def expected_roc_auc(p: np.ndarray) -> float:
    """ROC-AUC expected under calibration: the expected pairs (churner above stayer, ties half,
    no customer paired with itself) over the expected number of pairs."""
    s, starts = _ordered(p)
    if len(s) < 2:
        return math.nan
    q = np.add.reduceat(s, starts)  # expected churners per tied group
    m = np.diff(np.r_[starts, len(s)])
    v = np.add.reduceat(s * (1 - s), starts)
    negatives = m - q
    below = negatives.sum() - np.cumsum(negatives)  # expected stayers in the lower groups
    pairs = float((q * below).sum() + 0.5 * (q * (m - q) - v).sum())
    total = float(s.sum() * (len(s) - s.sum()) - (s * (1 - s)).sum())
    return pairs / total if total > 0 else math.nan


def expected_average_precision(p: np.ndarray) -> float:
    """Average precision expected under calibration: per threshold (a tied group), the expected
    churners it adds times the precision they reach, ``E[dTP * TP] / k``, over the expected churners."""
    s, starts = _ordered(p)
    churners = float(s.sum())
    if not len(s) or churners <= 0:
        return math.nan
    q = np.add.reduceat(s, starts)
    v = np.add.reduceat(s * (1 - s), starts)
    above = np.cumsum(q) - q  # expected churners ranked higher
    k = np.cumsum(np.diff(np.r_[starts, len(s)]))
    return float(((q * (above + q) + v) / k).sum() / churners)


def capacity_rows(p: np.ndarray, capacity: int, threshold: float) -> int:
    """The customers the campaign contacts: ``capacity`` (0: those at or above ``threshold``), at most all."""
    return min(len(p), capacity if capacity > 0 else int((np.asarray(p) >= threshold).sum()))


def top_k(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` highest churn probabilities of ``frame``, ties by customer id (the campaign's order)."""
    ids = frame["customer_id"].astype(str)
    return frame.assign(_id=ids).sort_values(["churn_probability", "_id"], ascending=[False, True],
                                             kind="stable").head(k).drop(columns="_id")


# ------------------------------------------------------------------ the band
def _realised_ranked(y: np.ndarray, rank: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of each label set (rows of ``y``, columns ordered highest
    score first; ``rank``: each column's ascending rank, ties averaged; ``starts``: tied groups)."""
    n = y.shape[1]
    pos = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (y @ rank - pos * (pos + 1) / 2) / (pos * (n - pos))
        gained = np.add.reduceat(y, starts, axis=1)
        k = np.cumsum(np.diff(np.r_[starts, n]))
        ap = (gained * np.cumsum(gained, axis=1) / k).sum(axis=1) / pos
    return auc, ap


def _ranks(s: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Ascending ranks (1..n, ties averaged) of ``s`` ordered highest first."""
    n = len(s)
    ends = np.r_[starts[1:], n]
    # group g spans positions [start, end) from the top: ascending ranks n - end + 1 .. n - start
    mean_rank = n - (starts + ends - 1) / 2
    return np.repeat(mean_rank, ends - starts)


def simulate(p: np.ndarray, simulations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of ``simulations`` label sets ``y ~ Bernoulli(p)`` (NaN where
    a set has one class only)."""
    s, starts = _ordered(p)
    rank = _ranks(s, starts)
    chunk = max(1, _CHUNK_ROWS // max(len(s), 1))
    aucs, aps = [], []
    for done in range(0, simulations, chunk):
        y = (rng.random((min(chunk, simulations - done), len(s))) < s).astype("float64")
        auc, ap = _realised_ranked(y, rank, starts)
        aucs.append(auc)
        aps.append(ap)
    return np.concatenate(aucs), np.concatenate(aps)


def _band(point: float, spread: np.ndarray, confidence: float) -> tuple[float, float]:
    spread = spread[~np.isnan(spread)]
    if math.isnan(point) or not len(spread):
        return math.nan, math.nan
    low, high = np.quantile(spread, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.clip(point + low, 0, 1)), float(np.clip(point + high, 0, 1))


def estimate(p: np.ndarray, k: int, *, simulations: int, sample_rows: int, confidence: float,
             seed: int) -> dict[str, float]:
    """The expected ROC-AUC, PR-AUC and precision of the top ``k`` of scores ``p``, each with its
    band (``<metric>_lower`` / ``_upper``; see the module doc) and ``sample_rows``, the rows each
    simulation labelled."""
    p = np.asarray(p, dtype="float64")
    if len(p) < 2:  # nothing to rank
        return {**{f"{m}{end}": math.nan for m in METRICS for end in ("", "_lower", "_upper")},
                "sample_rows": float(len(p))}
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {"roc_auc": expected_roc_auc(p), "pr_auc": expected_average_precision(p)}
    sample = p if len(p) <= sample_rows else rng.choice(p, sample_rows, replace=False)
    scale = math.sqrt(len(sample) / len(p)) if len(p) else 1.0
    auc, ap = simulate(sample, simulations, rng)
    for name, realised, expected in (("roc_auc", auc, expected_roc_auc(sample)),
                                     ("pr_auc", ap, expected_average_precision(sample))):
        out[f"{name}_lower"], out[f"{name}_upper"] = _band(out[name], (realised - expected) * scale, confidence)
    top = np.sort(p)[::-1][:k]
    out["precision_at_capacity"] = float(top.mean()) if k > 0 else math.nan
    drawn = top if len(top) <= sample_rows else rng.choice(top, sample_rows, replace=False)
    precision = (rng.random((simulations, len(drawn))) < drawn).mean(axis=1) if len(drawn) else np.array([])
    out["precision_at_capacity_lower"], out["precision_at_capacity_upper"] = _band(
        out["precision_at_capacity"], (precision - drawn.mean()) * math.sqrt(len(drawn) / max(k, 1)) if len(drawn)
        else precision, confidence)
    out["sample_rows"] = float(len(sample))
    return out


# ------------------------------------------------------------------ realised metrics, calibration
def realised(labelled: pd.DataFrame, k: int) -> dict[str, float]:
    """ROC-AUC, PR-AUC (as ``model_performance`` scores them) and precision of the top ``k`` of
    matured scores (``customer_id``, ``churn_probability``, ``label``)."""
    from pipeline.monitoring.metrics import ranking_metrics

    roc, pr = ranking_metrics(labelled["label"].to_numpy(), labelled["churn_probability"].to_numpy())
    top = top_k(labelled, k)
    return {"roc_auc": roc, "pr_auc": pr,
            "precision_at_capacity": float(top["label"].mean()) if len(top) else math.nan}


def calibration(labelled: pd.DataFrame, scored_on: str, bins: int = CALIBRATION_BINS) -> Calibration:
    """Mean probability vs churn rate of matured scores, and the expected calibration error over
    ``bins`` equal-count bins of the probability (the row-weighted mean of each bin's
    ``|mean p - churn rate|``: never below the overall gap)."""
    ordered = labelled.sort_values("churn_probability", kind="stable")
    p = ordered["churn_probability"].to_numpy(dtype="float64")
    y = ordered["label"].to_numpy(dtype="float64")
    if not len(p):
        return Calibration(scored_on, 0, math.nan, math.nan, math.nan)
    gap = sum(len(i) * abs(p[i].mean() - y[i].mean()) for i in np.array_split(np.arange(len(p)), bins) if len(i))
    return Calibration(scored_on, len(p), float(p.mean()), float(y.mean()), float(gap / len(p)))


# ------------------------------------------------------------------ the night
def is_below(values: dict[str, float], baseline_roc_auc: float, baseline_pr_auc: float, margin: float) -> bool:
    """Does a band's upper bound fall below the holdout baseline minus ``margin`` (ROC-AUC or PR-AUC)?"""
    return bool(values["roc_auc_upper"] < baseline_roc_auc - margin
                or values["pr_auc_upper"] < baseline_pr_auc - margin)  # NaN compares False


def below_since(day: str, below: bool, earlier: list[dict[str, Any]]) -> str | None:
    """The first night of the run of estimated nights below that ends tonight (``earlier``: the
    model version's earlier estimate rows, newest first; a night not estimated does not break the
    run, one not below does); None when tonight is not below."""
    if not below:
        return None
    since = day
    for row in earlier:
        if not row["below"]:
            break
        since = str(row["run_date"])
    return since


def night_estimate(
    day: str, model_version: str, scores: pd.DataFrame, *, capacity: int, threshold: float,
    baseline: dict[str, Any], margin: float, simulations: int, sample_rows: int, confidence: float,
    seed: int, max_calibration_gap: float, calibration: Calibration | None,
    earlier: list[dict[str, Any]] | None = None,
) -> PerformanceEstimate:
    """The night's estimate from its scores (``churn_probability``), the champion's holdout
    ``baseline`` (metrics.json), the newest matured night's ``calibration`` (None: none yet)
    and ``earlier``: the version's earlier estimate rows, newest first (for ``below_since``)."""
    p = scores["churn_probability"].to_numpy(dtype="float64")
    k = capacity_rows(p, capacity, threshold)
    values = estimate(p, k, simulations=simulations, sample_rows=sample_rows, confidence=confidence, seed=seed)
    base_roc = float(baseline.get("roc_auc", math.nan))
    base_pr = float(baseline.get("pr_auc", math.nan))
    gap = calibration.gap if calibration is not None else math.nan
    below = is_below(values, base_roc, base_pr, margin)
    estimated: dict[str, Any] = {name: values[name] for m in METRICS for name in (m, f"{m}_lower", f"{m}_upper")}
    return PerformanceEstimate(
        run_date=day, model_version=model_version, rows=len(p), capacity=k, **estimated,
        confidence=confidence, simulations=simulations, sample_rows=int(values["sample_rows"]),
        baseline_roc_auc=base_roc, baseline_pr_auc=base_pr, calibration_gap=gap,
        calibration_scored_on=calibration.scored_on if calibration is not None else None,
        reliable=not gap > max_calibration_gap, below=below, below_since=below_since(day, below, earlier or []))


def with_realised(est: PerformanceEstimate, values: dict[str, float], realised_on: str | None) -> PerformanceEstimate:
    """``est`` with the metrics its scores reached once their labels matured (on ``realised_on``)."""
    return replace(est, realised_roc_auc=values["roc_auc"], realised_pr_auc=values["pr_auc"],
                   realised_precision_at_capacity=values["precision_at_capacity"], realised_on=realised_on)
