"""Migrating churnflow's earlier file registry (``<data_dir>/models/<version>/``, before MLflow)
into the MLflow registry: ``python -m pipeline models migrate``. Its own module: it records
versions (:mod:`pipeline.model.publish`), which the registry itself never does."""

from __future__ import annotations

import datetime as dt
import json
import logging

from pipeline.config import Settings
from pipeline.model import registry
from pipeline.model.publish import record_version

log = logging.getLogger(__name__)


def _date_of_old_version(name: str) -> str:
    """The training date an earlier version's name carries (``v20250701`` -> 2025-07-01; ``""`` otherwise)."""
    digits = name.removeprefix("v")[:8]
    try:
        return dt.datetime.strptime(digits, "%Y%m%d").date().isoformat()
    except ValueError:
        return ""


def migrate_file_registry(settings: Settings) -> list[tuple[str, str]]:
    """Import churnflow's earlier registry (``<data_dir>/models/<version>/``: ``model.joblib``,
    ``metrics.json``, ``params.json``, ``reference.parquet``, ...) into MLflow: each folder
    becomes a new version (oldest first; tag ``churnflow.migrated_from``), the old champion
    becomes the champion, and the folder is renamed ``models.pre-mlflow``. Returns
    ``(old, new)`` pairs."""
    import joblib
    import pandas as pd

    folders = registry.old_registry(settings)
    pointer_file = settings.models_dir / "champion.json"
    if not folders and not pointer_file.is_file():
        raise registry.RegistryError(f"no earlier file registry to migrate in {settings.models_dir}")
    try:
        old_champion = json.loads(pointer_file.read_text()).get("champion") if pointer_file.is_file() else None
    except (json.JSONDecodeError, OSError):
        old_champion = None
    moved = settings.models_dir.with_name("models.pre-mlflow")
    if moved.exists():
        raise registry.RegistryError(f"{moved} exists already: move it away, then migrate again")
    # work on the folder under its new name, so the registry is usable (and the migration resumable by hand)
    settings.models_dir.rename(moved)
    pairs: list[tuple[str, str]] = []
    new_champion = None
    for folder in (moved / p.name for p in folders):
        metrics = registry._read_json(folder / "metrics.json")
        params = registry._read_json(folder / "params.json")
        table = (params.get("label") or {}).get("kind") == "column"
        reference = pd.read_parquet(folder / "reference.parquet")
        importances_file = folder / "importances.parquet"
        importances = (pd.read_parquet(importances_file).set_index("feature")["importance"]
                       if importances_file.is_file() else pd.Series(dtype="float64"))
        result = record_version(
            settings, joblib.load(folder / "model.joblib"),
            name=registry.table_model_name(settings) if table else settings.model_name,
            metrics=metrics, params=params, reference=reference, importances=importances,
            card_html=(folder / "model_card.html").read_text() if (folder / "model_card.html").is_file() else None,
            training_date=_date_of_old_version(folder.name),
            extra_tags={"churnflow.migrated_from": folder.name}, gate=None)
        pairs.append((folder.name, result.version))
        if folder.name == old_champion and not table:
            new_champion = result.number
        log.info("migrate: %s -> %s", folder.name, result.version)
    if new_champion is not None:
        registry.promote(settings, new_champion, f"migrated from churnflow's file registry (was {old_champion})")
    return pairs
