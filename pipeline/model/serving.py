"""What the nights serve: the challenger scored in shadow beside the pinned champion, and what a
night tells the analysts about its model (the registry's facts, :mod:`pipeline.model.registry`)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.config import Settings
from pipeline.model.registry import (
    TAG_GATE_CHAMPION,
    TAG_GATE_DECISION,
    TAG_GATE_SERVED,
    TAG_PROMOTED_AT,
    TAG_PROMOTION_REASON,
    TAG_SHA,
    ModelVersion,
    RegistryError,
    VersionInfo,
    get_version,
    label,
    list_versions,
    parse_version,
)


def challenger_number(settings: Settings, champion: int) -> tuple[int | None, str]:
    """The version scored in shadow beside ``champion`` and why, or None and why there is none:
    ``challenger_version`` when set (not the champion, and registered), otherwise the newest
    version registered after the champion whose registration completed and that was never
    promoted (a version the gate did not serve; a promoted-then-rolled-back one does not count).
    ``challenger_min_nights`` 0 switches the challenger off."""
    if not settings.challenger_min_nights:
        return None, "challenger_min_nights is 0: no challenger is scored"
    versions = {v.number: v for v in list_versions(settings)}
    if settings.challenger_version.strip():
        number = parse_version(settings.challenger_version)
        if number == champion:
            return None, f"challenger_version {label(number)} is the champion"
        if number not in versions:
            return None, f"challenger_version {label(number)} is not registered in {settings.model_name!r}"
        return number, f"{label(number)}, named by challenger_version"
    unpromoted = [n for n, v in versions.items()
                  if n > champion and TAG_PROMOTED_AT not in v.tags and TAG_SHA in v.tags]
    if not unpromoted:
        return None, (f"no version of {settings.model_name!r} registered after the champion {label(champion)} "
                      "and never promoted (set challenger_version to name one)")
    number = max(unpromoted)
    return number, f"{label(number)}, the newest version registered after the champion and not promoted"



def _number(value: float) -> float | None:
    """A tag's number as the night's XCom carries it (JSON: a missing one, NaN, is None)."""
    return None if math.isnan(value) else value


def _gate_record(settings: Settings, newest: VersionInfo, pinned: ModelVersion) -> dict[str, Any] | None:
    """The gate's record of ``newest`` (its metrics.json ``gate``: every metric of both models, the
    test, the decision); None for a version without one (trained before it was recorded, a
    registration not completed, a copy that cannot be fetched)."""
    if newest.number == pinned.number:
        record = pinned.metrics().get("gate")
    elif TAG_SHA not in newest.tags:
        return None
    else:
        try:
            record = get_version(settings, newest.number).metrics().get("gate")
        except RegistryError:
            return None
    return record if isinstance(record, dict) else None


def serving_facts(settings: Settings, pinned: ModelVersion) -> dict[str, Any]:
    """What a night tells the analysts about its model: the pinned champion (trained when,
    promoted when and why) and the newest registered version with the gate's verdict on it and
    its record (every metric of both models, the test: ``gate``), the champion itself included."""
    versions = list_versions(settings)
    by_number = {v.number: v for v in versions}
    champ = by_number.get(pinned.number)
    facts: dict[str, Any] = {"champion": {
        "version": pinned.version, "training_date": champ.tags.get("churnflow.training_date") if champ else None,
        "roc_auc": pinned.metrics().get("roc_auc"),
        "promoted_at": champ.tags.get(TAG_PROMOTED_AT) if champ else None,
        "reason": champ.tags.get(TAG_PROMOTION_REASON) if champ else None}}
    newest = versions[-1] if versions else None
    if newest is not None:
        facts["newest"] = {
            "version": newest.version, "training_date": newest.tags.get("churnflow.training_date"),
            "is_champion": newest.number == pinned.number,
            "served": newest.tags.get(TAG_GATE_SERVED) == "true", "decision": newest.tags.get(TAG_GATE_DECISION, ""),
            "roc_auc": _number(newest.float_tag("churnflow.roc_auc")),
            "champion_version": newest.tags.get(TAG_GATE_CHAMPION),
            "champion_roc_auc": _number(newest.float_tag("churnflow.gate.champion_roc_auc")),
            "registered_at": newest.created.isoformat(timespec="seconds"),
            "gate": _gate_record(settings, newest, pinned)}
    return facts
