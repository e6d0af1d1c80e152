"""The gate: every new model against the serving champion, on the same out-of-time holdout.

TFX's blessing: a new version is served (the ``champion`` alias moves to it) only if its
ROC-AUC clears the absolute floor (``promotion_min_roc_auc``) and exceeds the champion's by more
than the margin (``promotion_min_improvement``; a tie is not evidence) beyond noise (``promotion_test``
bootstrap, the default: the lower bound of the difference's one-sided ``promotion_confidence``
interval from a paired bootstrap over the holdout rows is above the margin too), it is not worse on the
guard metrics (PR-AUC, the campaign's expected value at its capacity) beyond their tolerances,
and only if the champion is still the one it was compared with. Otherwise it stays registered,
visible and not served. Whatever started the training (weekly, an asset event, the Trigger form,
the CLI, a rerun of a date) goes through :func:`pipeline.model.publish.register_and_gate`; this
module only judges (no recording, no tagging).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.model import registry
from pipeline.model.train import evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """A training run's outcome: the new (immutable) version and the gate's verdict on it."""

    version: str
    name: str
    path: Path
    run_id: str
    metrics: dict[str, Any]
    promoted: bool
    decision: str
    champion_version: str | None = None

    @property
    def number(self) -> int:
        return registry.parse_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_name": self.name,
            "path": str(self.path),
            "mlflow_run_id": self.run_id,
            "metrics": {k: v for k, v in self.metrics.items() if k != "calibration_curve"},
            "promoted": self.promoted,
            "decision": self.decision,
            "champion_version": self.champion_version,
        }


def gate(candidate_auc: float, champion_auc: float | None, min_improvement: float,
         floor: float = 0.0) -> tuple[bool, str]:
    """TFX-style blessing: never below the absolute ROC-AUC ``floor``; above it, promote when
    there is no champion, or the candidate beats it on the same holdout by MORE than
    ``min_improvement`` ROC-AUC. A tie is not evidence: a rerun on the champion's data, scoring
    the holdout as the champion does, never replaces it."""
    if candidate_auc < floor:
        return False, (f"not promoted: candidate ROC-AUC {candidate_auc:.4f} is below the floor {floor} "
                       "(promotion_min_roc_auc)")
    if champion_auc is None:
        return True, "no champion yet"
    if candidate_auc > champion_auc + min_improvement:
        return True, f"candidate ROC-AUC {candidate_auc:.4f} > champion {champion_auc:.4f} + {min_improvement}"
    tie = " (a tie is not evidence)" if candidate_auc == champion_auc else ""
    return False, (
        f"not promoted: candidate ROC-AUC {candidate_auc:.4f} does not exceed champion {champion_auc:.4f} "
        f"+ margin {min_improvement} on the same holdout{tie}"
    )


@dataclass(frozen=True)
class Ranked:
    """One model's holdout scores, sorted once, as what a (weighted) ROC-AUC needs: the distinct
    scores of the positives (``levels``), each positive's level and each negative's cell among
    them (``2k``: between level ``k - 1`` and level ``k``, ``2k + 1``: tied with level ``k``)."""

    positive_level: np.ndarray
    negative_cell: np.ndarray
    levels: int


def ranked(y: np.ndarray, scores: np.ndarray) -> Ranked:
    """:class:`Ranked` of ``scores`` for the 0/1 labels ``y`` (one sort of the positives' scores and a
    binary search of each negative's)."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    levels, positive_level = np.unique(scores[y], return_inverse=True)
    negatives = scores[~y]
    below = np.searchsorted(levels, negatives, side="left")
    tied = np.searchsorted(levels, negatives, side="right") > below
    return Ranked(positive_level.astype(np.intp), (2 * below + tied).astype(np.intp), len(levels))


def ranked_roc_auc(r: Ranked, positive_weights: np.ndarray | None = None,
                   negative_weights: np.ndarray | None = None) -> float:
    """The ROC-AUC of :func:`ranked` scores with a weight per positive and per negative row (None: 1
    each): the weighted share of positive-negative pairs the positive outranks, a tie counting 1/2
    (as ``sklearn.metrics.roc_auc_score`` with ``sample_weight``). O(rows); NaN without both classes."""
    pos = np.bincount(r.positive_level, weights=positive_weights, minlength=r.levels)
    neg = np.bincount(r.negative_cell, weights=negative_weights, minlength=2 * r.levels + 1)
    pairs = pos.sum() * neg.sum()
    if not pairs:
        return float("nan")
    below = np.cumsum(neg)[0:-1:2]  # the negatives strictly below each level
    return float(pos @ (below + 0.5 * neg[1::2]) / pairs)


def weighted_roc_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC-AUC of ``scores`` for labels ``y`` with a weight per row (:func:`ranked_roc_auc`)."""
    y = np.asarray(y).astype(bool)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return ranked_roc_auc(ranked(y, scores), None if w is None else w[y], None if w is None else w[~y])


def paired_bootstrap(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray, *, samples: int,
                     seed: int) -> np.ndarray:
    """The candidate-minus-champion ROC-AUC difference on ``samples`` resamples of the holdout rows,
    the same resample for both models (paired), stratified by label (the positives and the
    negatives each drawn with replacement to their own count, as pROC's default: no resample
    without a class). Each model's scores are sorted once; a resample is a count per row
    (:func:`ranked_roc_auc`), O(rows). Seeded: the same inputs give the same differences."""
    y = np.asarray(y).astype(bool)
    mine, theirs = ranked(y, candidate), ranked(y, champion)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rng = np.random.default_rng(seed)
    out = np.empty(samples)
    for i in range(samples):
        pos = np.bincount(rng.integers(0, n_pos, n_pos), minlength=n_pos).astype(np.float64)  # once, not per model
        neg = np.bincount(rng.integers(0, n_neg, n_neg), minlength=n_neg).astype(np.float64)
        out[i] = ranked_roc_auc(mine, pos, neg) - ranked_roc_auc(theirs, pos, neg)
    return out


@dataclass(frozen=True)
class Evidence:
    """What the paired bootstrap says of the ROC-AUC difference (candidate - champion)."""

    difference: float
    #: the one-sided lower confidence bound: the (1 - confidence) quantile of the resampled differences
    ci_low: float
    #: the share of resamples in which the candidate does not beat the champion by more than the margin
    share_not_better: float
    samples: int
    confidence: float
    rows: int


def evidence(differences: np.ndarray, observed: float, *, margin: float, confidence: float, rows: int) -> Evidence:
    """Summarise :func:`paired_bootstrap`'s ``differences`` around the ``observed`` difference."""
    return Evidence(observed, float(np.quantile(differences, 1.0 - confidence)),
                    float(np.mean(differences <= margin)), len(differences), confidence, rows)


def bootstrap_gate(candidate_auc: float, champion_auc: float | None, found: Evidence | None, min_improvement: float,
                   floor: float = 0.0) -> tuple[bool, str]:
    """:func:`gate`, and beyond noise: the observed difference must exceed the margin AND so must
    the lower bound of its one-sided confidence interval (``found``, :func:`evidence`). The margin
    is the least gain worth a change, the bootstrap asks that the gain be there with the given
    confidence; a tie (every resample's difference 0) never clears a margin of 0 or more."""
    promoted, why = gate(candidate_auc, champion_auc, min_improvement, floor)
    if found is None or champion_auc is None or candidate_auc < floor:
        return promoted, why
    bound = (f"the {found.confidence:.0%} lower bound of the difference is {found.ci_low:+.4f}; the candidate does "
             f"not beat the champion by more than the margin in {found.share_not_better:.1%} of {found.samples:,} "
             f"paired bootstrap resamples of the holdout's {found.rows:,} rows")
    if not promoted:
        return promoted, f"{why}; {bound}"
    if found.ci_low > min_improvement:
        return True, f"{why}, beyond noise: {bound}"
    return False, (f"not promoted: candidate ROC-AUC {candidate_auc:.4f} vs champion {champion_auc:.4f} "
                   f"({candidate_auc - champion_auc:+.4f}) is not beyond noise on this holdout: {bound} (not above "
                   f"the margin {min_improvement}; promotion_confidence {found.confidence})")


#: the guard metrics: a candidate better on ROC-AUC must not be worse than the champion on these, on
#: the same holdout, beyond their tolerance (setting): the top of the list, where the campaign acts
GUARDS = ("pr_auc", "expected_value")


def guard_holds(metric: str, candidate: float, champion: float, tolerance: float) -> bool:
    """Whether ``candidate`` is not worse than ``champion`` on guard ``metric`` beyond ``tolerance``:
    absolute for PR-AUC, a share of the champion's (its size) for the campaign's expected value."""
    allowed = champion - (tolerance * abs(champion) if metric == "expected_value" else tolerance)
    return candidate >= allowed


def failed_guards(candidate: dict[str, Any], champion: dict[str, Any], *, pr_auc_tolerance: float,
                  value_tolerance: float) -> list[str]:
    """The guard metrics on which ``candidate`` is worse than ``champion`` (their holdout metrics,
    :func:`pipeline.model.train.evaluate`, same rows, same campaign) beyond the tolerance: PR-AUC by
    more than ``pr_auc_tolerance`` (absolute), the campaign's expected value at its capacity by
    more than ``value_tolerance`` of the champion's (relative); each as a phrase, empty: none."""
    out = []
    if not guard_holds("pr_auc", candidate["pr_auc"], champion["pr_auc"], pr_auc_tolerance):
        out.append(f"PR-AUC {candidate['pr_auc']:.4f} vs champion {champion['pr_auc']:.4f} (worse by more than "
                   f"{pr_auc_tolerance}: promotion_pr_auc_tolerance)")
    if not guard_holds("expected_value", candidate["expected_value"], champion["expected_value"], value_tolerance):
        out.append(f"campaign value {candidate['expected_value']:,.0f} vs champion {champion['expected_value']:,.0f} "
                   f"(worse by more than {value_tolerance:.0%}: promotion_value_tolerance)")
    return out


def guarded(promoted: bool, decision: str, failed: list[str]) -> tuple[bool, str]:
    """The ROC-AUC verdict (:func:`gate`) held back when a guard metric failed, saying which."""
    if not promoted or not failed:
        return promoted, decision
    return False, f"not promoted: better on ROC-AUC ({decision}) but worse on {'; '.join(failed)}"


def gate_record(settings: Settings, *, margin: float, candidate: dict[str, Any], champion: dict[str, Any] | None,
                found: Evidence | None, rows: int, positives: int) -> dict[str, Any]:
    """The gate's evidence as a JSON-ready dict (``metrics.json``'s ``gate``, the e-mail's table):
    the test and its settings, and per metric both models' values on the same holdout, the
    difference and the rule it had to pass (``champion`` None: there was none to compare with)."""
    test = settings.promotion_test if found is not None or champion is None else "margin"
    rule = f"difference > margin {margin:g}"
    if test == "bootstrap":
        rule += f" and its {settings.promotion_confidence:.0%} lower bound > {margin:g} (paired bootstrap)"
    tolerances = {"roc_auc": rule,
                  "pr_auc": f"not below the champion's by more than {settings.promotion_pr_auc_tolerance:g}",
                  "expected_value": f"not below the champion's by more than {settings.promotion_value_tolerance:.0%} "
                                    "of it"}
    table: dict[str, dict[str, Any]] = {}
    for key, guard in tolerances.items():
        mine = float(candidate[key])
        theirs = None if champion is None else float(champion[key])
        table[key] = {"candidate": mine, "champion": theirs, "difference": None if theirs is None else mine - theirs,
                      "rule": guard}
    for key, tolerance in (("pr_auc", settings.promotion_pr_auc_tolerance),
                           ("expected_value", settings.promotion_value_tolerance)):
        row = table[key]
        row.update(tolerance=tolerance, passed=None if row["champion"] is None else
                   guard_holds(key, row["candidate"], row["champion"], tolerance))
    roc = table["roc_auc"]
    roc["passed"] = None if roc["difference"] is None else roc["difference"] > margin
    if found is not None:
        roc.update(ci_low=found.ci_low, share_not_better=found.share_not_better,
                   passed=roc["passed"] and found.ci_low > margin)
    return {"test": test, "margin": margin, "floor": settings.promotion_min_roc_auc, "rows": rows,
            "positives": positives,
            **({"samples": found.samples, "confidence": found.confidence, "seed": settings.random_seed}
               if found is not None else {}),
            "metrics": table}


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on a new model against the serving champion, on the same holdout."""

    served: bool
    decision: str
    candidate_roc_auc: float
    #: the champion compared with (its number; None: there was none)
    champion: int | None = None
    champion_roc_auc: float | None = None
    #: the champion's guard metrics on the same holdout (:data:`GUARDS`; empty: no champion compared)
    champion_guards: dict[str, float] = field(default_factory=dict)
    #: the evidence, every metric of both models, the test (:func:`gate_record`; empty: none recorded)
    evidence: dict[str, Any] = field(default_factory=dict)
    #: the paired bootstrap's summary of the ROC-AUC difference (None: the margin test, or no champion)
    bootstrap: Evidence | None = None

    @property
    def champion_version(self) -> str | None:
        return registry.label(self.champion) if self.champion is not None else None

    def sentence(self, version: str) -> str:
        """``v5 served: ...`` / ``v5 not served: ...``, with the difference to the champion."""
        if self.champion_roc_auc is not None:
            delta = self.candidate_roc_auc - self.champion_roc_auc
            compared = (f"ROC-AUC {self.candidate_roc_auc:.4f} vs champion {self.champion_version} "
                        f"{self.champion_roc_auc:.4f} on the same holdout ({delta:+.4f})")
        else:
            compared = f"ROC-AUC {self.candidate_roc_auc:.4f}, no champion to compare with"
        return f"{version} {'served' if self.served else 'not served'}: {compared}; {self.decision}"

    def record(self, version: str) -> dict[str, Any]:
        """The verdict as ``metrics.json`` keeps it (``gate``): the decision, why, the champion and
        the evidence (:func:`gate_record`), JSON-ready."""
        return {**self.evidence, "version": version, "champion": self.champion_version, "served": self.served,
                "decision": self.decision, "sentence": self.sentence(version)}


def judge(settings: Settings, candidate: dict[str, Any], holdout: pd.DataFrame, y_holdout: np.ndarray,
          min_improvement: float, scores: np.ndarray | None = None) -> Verdict:
    """Compare a new model's out-of-time metrics (``candidate``: its holdout metrics; ``scores``: its
    holdout scores) with the serving champion's on the same ``holdout`` rows and the same campaign:
    ROC-AUC by floor and margin, beyond noise by a paired bootstrap over the holdout rows
    (``promotion_test`` bootstrap, :func:`bootstrap_gate`; margin, or no ``scores``: :func:`gate`),
    then the guard metrics (:func:`failed_guards`). A champion that cannot be scored on this
    holdout (its columns are not all there) is never replaced automatically."""
    from pipeline.model.evaluate import Campaign

    y = np.asarray(y_holdout).astype(int)
    size = {"rows": len(y), "positives": int(y.sum())}
    candidate_auc = float(candidate["roc_auc"])
    number = registry.champion_number(settings)
    if number is None:
        return Verdict(*gate(candidate_auc, None, min_improvement, settings.promotion_min_roc_auc), candidate_auc,
                       evidence=gate_record(settings, margin=min_improvement, candidate=candidate, champion=None,
                                            found=None, **size))
    champ = registry.get_version(settings, number)
    missing = [c for c in champ.feature_columns if c not in holdout.columns]
    if missing:
        return Verdict(False, f"not promoted: the champion {champ.version} cannot be scored on this holdout (it "
                              f"uses {', '.join(missing[:5])}, which this training set lacks); promote by hand "
                              "after review (python -m pipeline models promote VERSION)", candidate_auc, number,
                       evidence=gate_record(settings, margin=min_improvement, candidate=candidate, champion=None,
                                            found=None, **size))
    campaign = Campaign(**candidate["campaign"]) if isinstance(candidate.get("campaign"), dict) else None
    their_scores = champ.load().predict_proba(holdout[champ.feature_columns])[:, 1]
    theirs = evaluate(y_holdout, their_scores, campaign)
    champion_auc = float(theirs["roc_auc"])
    found = None
    if settings.promotion_test == "bootstrap" and scores is not None:
        differences = paired_bootstrap(y, np.asarray(scores), their_scores,
                                       samples=settings.promotion_bootstrap_samples, seed=settings.random_seed)
        found = evidence(differences, candidate_auc - champion_auc, margin=min_improvement,
                         confidence=settings.promotion_confidence, rows=len(y))
    served, decision = guarded(*bootstrap_gate(candidate_auc, champion_auc, found, min_improvement,
                                               settings.promotion_min_roc_auc),
                               failed_guards(candidate, theirs, pr_auc_tolerance=settings.promotion_pr_auc_tolerance,
                                             value_tolerance=settings.promotion_value_tolerance))
    return Verdict(served, decision, candidate_auc, number, champion_auc, {k: float(theirs[k]) for k in GUARDS},
                   gate_record(settings, margin=min_improvement, candidate=candidate, champion=theirs, found=found,
                               **size), found)
