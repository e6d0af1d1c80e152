"""Is retraining requested tonight? Only when it can help (pure: every input is given).

A retrain as of night D trains on the month-start snapshots whose labels have matured by D
(:func:`pipeline.features.labels.training_snapshot_dates`: the latest ``training_snapshots``
month starts ``s`` with ``s + label window <= D``). A critical alert of a retraining rule
(:data:`pipeline.monitoring.alerts.RETRAIN_RULES`: ``estimated_performance``,
``performance_drop``, ``concept_drift``) names a change; its date per rule:

* ``concept_drift`` - the detection's ``change_at`` (the prediction night where the errors rose);
* ``performance_drop`` - the matured night's ``scored_on`` (its predictions were worse);
* ``estimated_performance`` - ``estimate.below_since`` (the first night whose estimated ROC-AUC
  band fell below the holdout baseline; unknown when the estimate does not say).

Retraining can help only when one of those snapshots reaches the change: a snapshot at or after
the change date whose labels have matured. When none does, no retraining is requested and the
decision says from when one could help (the day the first post-change snapshot's labels
mature). One request per champion within ``alert_cooldown_days``: a second night within it
asks for nothing new (its training run answers tonight's alerts too). When several alerts ask,
the earliest change decides (a change whose date is unknown counts as reachable, and is said).

The decision is stored per night in ``retraining_requests`` (a rerun of the night replaces its
row); ``monitoring.json``'s ``retrain`` is :attr:`RetrainingDecision.requested`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.artifacts import as_date
from pipeline.config import Settings


@dataclass(frozen=True)
class RetrainingDecision:
    """Tonight's answer: requested or not, the one-sentence reason, and its facts."""

    run_date: str
    model_version: str
    requested: bool
    #: one sentence: what was decided and why
    reason: str
    #: the alert whose change decided (None: no retraining rule raised a critical alert)
    rule: str | None = None
    #: the change date that raised it (None: unknown or no alert)
    change_date: str | None = None
    #: the snapshots a retrain as of tonight would train on (month starts, ascending)
    snapshots: tuple[str, ...] = ()
    #: when not requested because it cannot help: the day the first post-change snapshot's labels mature
    could_help_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_date": self.run_date, "model_version": self.model_version, "requested": self.requested,
                "reason": self.reason, "rule": self.rule, "change_date": self.change_date,
                "snapshots": list(self.snapshots), "could_help_from": self.could_help_from}

    def row(self) -> pd.DataFrame:
        """The night's ``retraining_requests`` row."""
        return pd.DataFrame([{
            "run_date": pd.Timestamp(self.run_date), "model_version": self.model_version, "requested": self.requested,
            "reason": self.reason, "rule": self.rule, "change_date": self.change_date,
            "snapshots": ",".join(self.snapshots), "could_help_from": self.could_help_from}])


def _next_month(d: dt.date) -> dt.date:
    return dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)


def first_snapshot_from(day: dt.date) -> dt.date:
    """The first month start at or after ``day``."""
    return day if day.day == 1 else _next_month(dt.date(day.year, day.month, 1))


def matured_snapshots(night: dt.date | str, window_days: int, n: int) -> list[dt.date]:
    """The latest ``n`` month starts whose labels have matured by ``night`` (``s + window <= night``),
    ascending: the snapshots a retrain as of ``night`` uses (given history before them)."""
    last = as_date(night) - dt.timedelta(days=window_days)
    d = dt.date(last.year, last.month, 1)
    out: list[dt.date] = []
    while len(out) < n:
        out.append(d)
        d = dt.date(d.year - (d.month == 1), 12 if d.month == 1 else d.month - 1, 1)
    return sorted(out)


def change_date(rule: str, group: str, monitoring: Mapping[str, Any]) -> dt.date | None:
    """The date of the change a ``rule`` alert (its ``group``) found, from the night's monitoring
    dict (None: unknown). See the module doc for each rule's."""
    if rule == "concept_drift":
        detections = (monitoring.get("concept_drift") or {}).get("detections") or []
        found = [d for d in detections if d.get("detector") == group and d["rate_after"] > d["rate_before"]]
        return as_date(found[-1]["change_at"]) if found else None
    if rule == "performance_drop":
        scored_on = (monitoring.get("performance") or {}).get("scored_on")
        return as_date(scored_on) if scored_on else None
    if rule == "estimated_performance":
        since = (monitoring.get("estimate") or {}).get("below_since")
        return as_date(since) if since else None
    return None


def _requests_within(earlier: pd.DataFrame, night: dt.date, model_version: str, days: int) -> pd.DataFrame:
    """Earlier requests for ``model_version`` in ``[night - days, night)``."""
    if earlier is None or earlier.empty or days <= 0:
        return pd.DataFrame(columns=["run_date"])
    dates = pd.to_datetime(earlier["run_date"]).dt.date
    keep = (earlier["requested"].astype(bool) & (earlier["model_version"] == model_version)
            & (dates >= night - dt.timedelta(days=days)) & (dates < night))
    return earlier[keep]


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _span(snapshots: Sequence[dt.date]) -> str:
    return (f"{snapshots[0]} .. {snapshots[-1]} ({len(snapshots)} month starts)" if len(snapshots) > 1
            else str(snapshots[0]))


def decide(settings: Settings, night: dt.date | str, model_version: str, raised: Iterable[Mapping[str, Any]],
           monitoring: Mapping[str, Any], earlier: pd.DataFrame | None = None) -> RetrainingDecision:
    """Tonight's retraining decision.

    ``raised``: tonight's alerts not suppressed (records with ``rule``, ``severity`` and
    ``alert_group`` or ``group``); ``monitoring``: the night's monitoring dict (``concept_drift``,
    ``performance``, ``estimate``); ``earlier``: the ``retraining_requests`` rows before tonight
    (for the once-per-champion cooldown).
    """
    from pipeline.monitoring.alerts import RETRAIN_RULES

    day = as_date(night)
    window = settings.label_window_days
    snapshots = matured_snapshots(day, window, settings.training_snapshots)
    names = tuple(str(s) for s in snapshots)

    def answer(requested: bool, reason: str, rule: str | None = None, change: dt.date | None = None,
               could: dt.date | None = None) -> RetrainingDecision:
        return RetrainingDecision(day.isoformat(), model_version, requested, reason, rule, _iso(change), names,
                                  _iso(could))

    asking = [(str(a["rule"]), str(a.get("alert_group", a.get("group", ""))))
              for a in raised if a["severity"] == "critical" and a["rule"] in RETRAIN_RULES]
    if not asking:
        return answer(False, "no retraining requested: no critical alert of a retraining rule (estimated_performance, "
                             "performance_drop, concept_drift) was raised tonight")
    changes = sorted(((change_date(rule, group, monitoring), rule) for rule, group in asking),
                     key=lambda cr: (cr[0] is not None, cr[0] or dt.date.min, cr[1]))
    change, rule = changes[0]  # an unknown date first (reachable), else the earliest change
    if not settings.retrain_on_critical:
        return answer(False, f"no retraining requested: the {rule} alert would ask for it, but retrain_on_critical is "
                             "off (retrain with churn_training by hand)", rule, change)
    latest = snapshots[-1]
    if change is not None and change > latest:
        first = first_snapshot_from(change)
        could = first + dt.timedelta(days=window)
        return answer(False, (
            f"no retraining requested: the change the {rule} alert found is at {change}, after the latest snapshot "
            f"whose labels have matured by tonight ({latest}; a retrain as of tonight trains on {_span(snapshots)}), "
            f"so it could not see it; one could help from {could}, when the labels of the {first} snapshot mature "
            f"({window}-day label window)"), rule, change, could)
    before = _requests_within(earlier if earlier is not None else pd.DataFrame(), day, model_version,
                              settings.alert_cooldown_days)
    if len(before):
        asked = max(pd.to_datetime(before["run_date"]).dt.date)
        return answer(False, (f"no retraining requested: one was already requested on {asked} for {model_version} "
                              f"(within alert_cooldown_days {settings.alert_cooldown_days}); its training run answers "
                              "tonight's alerts too"), rule, change)
    seen = (f"the change the {rule} alert found ({change}) is within them" if change is not None else
            f"the {rule} alert does not say when the change began, so a retrain may see it")
    return answer(True, f"retraining requested: trains on snapshots {_span(snapshots)} (labels matured by {day}); {seen}",
                  rule, change)
