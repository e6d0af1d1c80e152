"""A challenger in shadow, as pure functions: a registered version that was not promoted is
scored every night beside the champion (:func:`pipeline.model.steps.score_challenger_step`: table
``challenger_scores``, never the campaign), and once a night's scores have matured both models
are judged on the same customers with the metrics ``model_performance`` has (:func:`compare`:
table ``challenger_performance``, a row per role).

The challenger **wins** a night when its ROC-AUC is higher than the champion's by more than
``promotion_min_improvement`` (the gate's margin) and the night has at least
``performance_min_positives`` churners. When it has won each of the last
``challenger_min_nights`` nights with matured labels (the same challenger version each time),
the ``promotion_review`` alert asks the analysts to review it (:attr:`ChallengerNight.review`):
nothing is ever promoted by the nightly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.results import night

CHAMPION, CHALLENGER = "champion", "challenger"
#: the matured-label metrics each role gets (the columns of ``model_performance`` they share)
METRICS = ("rows", "positives", "base_rate", "roc_auc", "pr_auc", "precision", "recall", "threshold")


def compare(day: Any, labelled: pd.DataFrame, challenger_scores: pd.DataFrame, champion_threshold: float,
            challenger_threshold: float, *, margin: float, min_positives: int) -> pd.DataFrame:
    """The ``challenger_performance`` rows of night ``day``: the champion's matured scores
    ``labelled`` (:func:`pipeline.features.labels.matured`) and the challenger's scores of the same
    night, each judged (:func:`pipeline.monitoring.metrics.performance`) on the customers both scored."""
    from pipeline.monitoring.metrics import performance

    shadow = challenger_scores[["customer_id", "churn_probability", "model_version"]]
    # the store keeps ids as text, the labels may hold them as integers: matched as text ('42' is 42)
    both = labelled.assign(customer_id=labelled["customer_id"].astype(str)).merge(
        shadow.assign(customer_id=shadow["customer_id"].astype(str)), on="customer_id", suffixes=("", "_challenger"))
    judged = {}
    for role, column, threshold in ((CHAMPION, "churn_probability", champion_threshold),
                                    (CHALLENGER, "churn_probability_challenger", challenger_threshold)):
        frame = pd.DataFrame({"label": both["label"], "churn_probability": both[column],
                              "model_version": both["model_version" if role == CHAMPION else "model_version_challenger"]})
        judged[role] = performance(frame, day, threshold, {}, margin)
    champ, chall = judged[CHAMPION], judged[CHALLENGER]
    wins = bool(chall.positives >= min_positives and chall.roc_auc > champ.roc_auc + margin)  # NaN compares False
    rows = pd.DataFrame([{"role": role, "scored_on": str(labelled.attrs.get("scored_on", "")),
                          "model_version": p.model_version, **{m: getattr(p, m) for m in METRICS},
                          "beats_champion": wins if role == CHALLENGER else None}
                         for role, p in judged.items()])
    rows.insert(0, "run_date", night(day))
    return rows


def side_by_side(rows: pd.DataFrame) -> pd.DataFrame:
    """``challenger_performance`` rows as one row per night, oldest first: the night, the scored
    night, both versions, ``<metric>_champion`` / ``<metric>_challenger`` and ``beats_champion``."""
    if rows.empty:
        return pd.DataFrame()
    keyed = rows.assign(run_date=pd.to_datetime(rows["run_date"])).set_index(["run_date", "role"])
    wide = keyed[["model_version", *METRICS[1:]]].unstack("role")
    wide.columns = [f"{metric}_{role}" for metric, role in wide.columns]
    champ = keyed.xs(CHAMPION, level="role")
    chall = keyed.xs(CHALLENGER, level="role")
    wide["scored_on"] = champ["scored_on"].astype(str).str[:10]
    wide["rows"] = champ["rows"]
    wide["beats_champion"] = chall["beats_champion"].astype(bool)
    return wide.dropna(subset=["model_version_challenger"]).sort_index().reset_index()


def streak(nights: pd.DataFrame, version: str) -> int:
    """How many of the latest ``nights`` (:func:`side_by_side`) in a row, up to the last one,
    ``version`` won."""
    count = 0
    for row in reversed(list(nights.itertuples())):
        if row.model_version_challenger != version or not row.beats_champion:
            break
        count += 1
    return count


@dataclass(frozen=True)
class ChallengerNight:
    """The challenger's night: who it is (or why there is none), tonight's comparison on matured
    labels (None: nothing matured, or the challenger did not score that night) and the latest
    nights compared, tonight included (what the e-mail's table shows)."""

    run_date: str
    champion_version: str
    version: str | None
    reason: str
    needed: int
    margin: float
    comparison: pd.DataFrame | None = None
    #: :func:`side_by_side` of the latest nights compared (at most ``needed``, tonight included)
    nights: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def compared_tonight(self) -> bool:
        return self.comparison is not None and not self.comparison.empty

    @property
    def streak(self) -> int:
        """Nights in a row, up to tonight, that tonight's challenger won (0: it did not compete tonight)."""
        if not self.compared_tonight or self.nights.empty:
            return 0
        return streak(self.nights, str(self.nights["model_version_challenger"].iloc[-1]))

    @property
    def review(self) -> bool:
        """Does tonight ask for a promotion review (the challenger won ``needed`` nights in a row)?"""
        return bool(self.needed) and self.streak >= self.needed

    def to_dict(self) -> dict[str, Any]:
        last = self.nights.iloc[-1].to_dict() if self.compared_tonight and not self.nights.empty else None
        return {
            "version": self.version, "champion_version": self.champion_version, "reason": self.reason,
            "needed": self.needed, "margin": self.margin, "streak": self.streak, "review": self.review,
            "tonight": _plain(last) if last is not None else None,
            "nights": [_plain(r) for r in self.nights.to_dict("records")],
        }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-able values (the night as its date, NaN as None)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            value = value.date().isoformat()
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out
