"""Data drift weighed by what the model uses (pure: plain values in, a frozen answer out).

A feature's **share** is its mean |SHAP| on the model's training reference over the sum for
every feature (the ``reference_mean_abs_shap`` of the night's feature-importance drift: the
same figures every night of a model version). Of the features that **moved** tonight (their
all-rows drift test failed, or their PSI reached ``psi_warning``), those the model **barely uses**
are the least important ones that together carry less than ``drift_min_importance_share`` of it
(ascending by share, while their running sum stays below it): drift only in those is a
data-quality note (info, :func:`pipeline.monitoring.alerts._data_quality`), never critical and
never a retraining request. The ``data_drift`` rule judges the drifted features the model uses
by their summed share (the importance-weighted drift share), ``feature_psi`` the largest PSI
among them. Without importance (``importance_sample_rows`` 0) every feature counts the same,
as before, and the messages say so.

The alert rules (:class:`~pipeline.monitoring.night.MonitoringResult`) and the e-mail
(``monitoring.json``) both call :func:`weigh`, so they say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DriftWeight:
    """Tonight's drift with each feature's share of the model's mean |SHAP| (:func:`weigh`)."""

    #: False: no importance tonight (``importance_sample_rows`` 0): every feature counts the same
    weighted: bool
    #: every drifted feature (Evidently's all-rows test), in the order given
    drifted: tuple[str, ...]
    #: PSI per feature (NaN: none)
    psi: Mapping[str, float] = field(default_factory=dict)
    #: feature -> its share of the model's mean |SHAP| on its training reference
    shares: Mapping[str, float] = field(default_factory=dict)
    #: the least important of the features that moved tonight, together less than ``min_share`` of it
    barely_used: frozenset[str] = frozenset()
    #: ``drift_min_importance_share``
    min_share: float = 0.0
    #: ``psi_warning``: a barely-used feature whose PSI reaches it counts as moved
    psi_warning: float = math.inf

    def share(self, feature: str) -> float:
        """``feature``'s share (NaN when unknown)."""
        return float(self.shares.get(feature, math.nan))

    @property
    def used_drifted(self) -> list[str]:
        """The drifted features the model uses (all of them when not weighted)."""
        return [f for f in self.drifted if f not in self.barely_used]

    @property
    def drifted_share(self) -> float:
        """The importance-weighted drift share: the summed share of :attr:`used_drifted`."""
        return math.fsum(s for f in self.used_drifted if not math.isnan(s := self.share(f)))

    @property
    def moved_unused(self) -> list[str]:
        """Barely-used features that drifted or whose PSI reached ``psi_warning``, largest PSI first."""
        moved = [f for f in self.barely_used if f in self.drifted or _psi(self.psi, f) >= self.psi_warning]
        return sorted(moved, key=lambda f: (_descending(_psi(self.psi, f)), f))

    @property
    def unused_share(self) -> float:
        """The summed share of :attr:`moved_unused` (below ``min_share`` by construction)."""
        return math.fsum(self.share(f) for f in self.moved_unused)

    @property
    def only_unused(self) -> bool:
        """Drift tonight only in features the model barely uses."""
        return self.weighted and bool(self.moved_unused) and not self.used_drifted

    def largest_psi(self) -> tuple[str | None, float]:
        """The feature the model uses with the largest PSI, and its PSI ((None, NaN): none)."""
        known = [(f, p) for f, p in self.psi.items() if f not in self.barely_used and not math.isnan(p)]
        if not known:
            return None, math.nan
        return max(known, key=lambda fp: (fp[1], fp[0]))

    def to_dict(self) -> dict[str, Any]:
        """What ``monitoring.json`` keeps (``drift_weight``): what the e-mail says of the drift."""
        name, value = self.largest_psi()
        return {"weighted": self.weighted, "min_share": self.min_share, "drifted": list(self.drifted),
                "used_drifted": self.used_drifted, "drifted_share": self.drifted_share if self.weighted else None,
                "moved_unused": self.moved_unused, "unused_share": self.unused_share if self.weighted else None,
                "only_unused": self.only_unused, "largest_psi_feature": name,
                "largest_psi": None if math.isnan(value) else value,
                "shares": {f: self.share(f) for f in [*self.drifted, *self.moved_unused] if f in self.shares}}

    def describe(self, features: Iterable[str]) -> str:
        """``feature (PSI x, share y %)`` for each of ``features``."""
        return ", ".join(f"{f} (PSI {_num(_psi(self.psi, f))}, {_pct(self.share(f))} of its mean |SHAP|)"
                         for f in features)


def _psi(psi: Mapping[str, float], feature: str) -> float:
    value = psi.get(feature)
    return math.nan if value is None else float(value)


def _descending(value: float) -> float:
    """A sort key: the largest first, NaN last."""
    return math.inf if math.isnan(value) else -value


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def barely_used(shares: Mapping[str, float], min_share: float) -> frozenset[str]:
    """The least important features (ascending share, ties by name) whose running sum of shares
    stays below ``min_share``."""
    out, total = set(), 0.0
    for feature, share in sorted(shares.items(), key=lambda fs: (fs[1], fs[0])):
        total += share
        if total >= min_share:
            break
        out.add(feature)
    return frozenset(out)


def weigh(drifted: Sequence[str], psi: Mapping[str, float | None], reference_shap: Mapping[str, float] | None, *,
          min_share: float, psi_warning: float) -> DriftWeight:
    """Tonight's drift (``drifted``: the features whose all-rows test failed; ``psi``: PSI per
    feature) weighed by the model's mean |SHAP| per feature on its training reference
    (``reference_shap``; None or all zero: not weighted). The features that barely count are
    chosen among those that moved (:func:`barely_used` of their shares)."""
    psi_f = {str(f): (math.nan if p is None else float(p)) for f, p in psi.items()}
    values = {str(f): float(v) for f, v in (reference_shap or {}).items() if v is not None and not math.isnan(float(v))}
    total = math.fsum(values.values())
    if not values or total <= 0:
        return DriftWeight(False, tuple(drifted), psi_f)
    shares = {f: v / total for f, v in values.items()}
    moved = {f for f in shares if f in drifted or _psi(psi_f, f) >= psi_warning}
    return DriftWeight(True, tuple(drifted), psi_f, shares, barely_used({f: shares[f] for f in moved}, min_share),
                       min_share, psi_warning)
