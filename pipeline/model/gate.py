"""The gate: every new model against the serving champion, on the same out-of-time holdout.

TFX's blessing: a new version is served (the ``champion`` alias moves to it) only if its
ROC-AUC clears the absolute floor (``promotion_min_roc_auc``) and exceeds the champion's by more
than the margin (``promotion_min_improvement``; a tie is not evidence), it is not worse on the
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


#: the guard metrics: a candidate better on ROC-AUC must not be worse than the champion on these, on
#: the same holdout, beyond their tolerance (setting): the top of the list, where the campaign acts
GUARDS = ("pr_auc", "expected_value")


def failed_guards(candidate: dict[str, Any], champion: dict[str, Any], *, pr_auc_tolerance: float,
                  value_tolerance: float) -> list[str]:
    """The guard metrics on which ``candidate`` is worse than ``champion`` (their holdout metrics,
    :func:`pipeline.model.train.evaluate`, same rows, same campaign) beyond the tolerance: PR-AUC by
    more than ``pr_auc_tolerance`` (absolute), the campaign's expected value at its capacity by
    more than ``value_tolerance`` of the champion's (relative); each as a phrase, empty: none."""
    out = []
    if candidate["pr_auc"] < champion["pr_auc"] - pr_auc_tolerance:
        out.append(f"PR-AUC {candidate['pr_auc']:.4f} vs champion {champion['pr_auc']:.4f} (worse by more than "
                   f"{pr_auc_tolerance}: promotion_pr_auc_tolerance)")
    allowed = champion["expected_value"] - value_tolerance * abs(champion["expected_value"])
    if candidate["expected_value"] < allowed:
        out.append(f"campaign value {candidate['expected_value']:,.0f} vs champion {champion['expected_value']:,.0f} "
                   f"(worse by more than {value_tolerance:.0%}: promotion_value_tolerance)")
    return out


def guarded(promoted: bool, decision: str, failed: list[str]) -> tuple[bool, str]:
    """The ROC-AUC verdict (:func:`gate`) held back when a guard metric failed, saying which."""
    if not promoted or not failed:
        return promoted, decision
    return False, f"not promoted: better on ROC-AUC ({decision}) but worse on {'; '.join(failed)}"


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


def judge(settings: Settings, candidate: dict[str, Any], holdout: pd.DataFrame, y_holdout: np.ndarray,
          min_improvement: float) -> Verdict:
    """Compare a new model's out-of-time metrics (``candidate``: its holdout metrics) with the
    serving champion's on the same ``holdout`` rows and the same campaign: ROC-AUC by floor and
    margin (:func:`gate`), then the guard metrics (:func:`failed_guards`). A champion that cannot
    be scored on this holdout (its columns are not all there) is never replaced automatically."""
    from pipeline.model.evaluate import Campaign

    candidate_auc = float(candidate["roc_auc"])
    number = registry.champion_number(settings)
    if number is None:
        return Verdict(*gate(candidate_auc, None, min_improvement, settings.promotion_min_roc_auc), candidate_auc)
    champ = registry.get_version(settings, number)
    missing = [c for c in champ.feature_columns if c not in holdout.columns]
    if missing:
        return Verdict(False, f"not promoted: the champion {champ.version} cannot be scored on this holdout (it "
                              f"uses {', '.join(missing[:5])}, which this training set lacks); promote by hand "
                              "after review (python -m pipeline models promote VERSION)", candidate_auc, number)
    campaign = Campaign(**candidate["campaign"]) if isinstance(candidate.get("campaign"), dict) else None
    theirs = evaluate(y_holdout, champ.load().predict_proba(holdout[champ.feature_columns])[:, 1], campaign)
    champion_auc = float(theirs["roc_auc"])
    served, decision = guarded(*gate(candidate_auc, champion_auc, min_improvement, settings.promotion_min_roc_auc),
                               failed_guards(candidate, theirs, pr_auc_tolerance=settings.promotion_pr_auc_tolerance,
                                             value_tolerance=settings.promotion_value_tolerance))
    return Verdict(served, decision, candidate_auc, number, champion_auc,
                   {k: float(theirs[k]) for k in GUARDS})
