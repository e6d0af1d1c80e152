"""Model registry on the filesystem.

``<data_dir>/models/<version>/`` holds one trained model: ``model.joblib`` (the fitted
calibrated scikit-learn model), ``metrics.json``, ``params.json``, ``reference.parquet`` (a
sample of the training features, the drift reference), ``importances.parquet`` and
``model_card.html``; ``experiments.parquet`` beside them logs every training run.
``<data_dir>/models/champion.json`` points at the version that scoring uses, and keeps
the history of earlier champions so a rollback is one command.
A version folder is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import replace_dir, write_text
from pipeline.config import Settings
from pipeline.errors import DataError

CHAMPION_FILE = "champion.json"


class RegistryError(DataError):
    """No champion, an unknown version or an unreadable registry file."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path

    @property
    def model_path(self) -> Path:
        return self.path / "model.joblib"

    @property
    def reference_path(self) -> Path:
        return self.path / "reference.parquet"

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / "metrics.json").read_text())

    def load(self):
        import joblib

        return joblib.load(self.model_path)


def new_version_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"v{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def staging_dir(settings: Settings, version: str) -> Path:
    """Where a version is built before :func:`publish` moves it into place."""
    path = settings.models_dir / f".building-{version}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(settings: Settings, version: str) -> ModelVersion:
    final = replace_dir(staging_dir(settings, version), settings.models_dir / version)
    return ModelVersion(version, final)


def list_versions(settings: Settings) -> list[ModelVersion]:
    root = settings.models_dir
    if not root.is_dir():
        return []
    return [
        ModelVersion(p.name, p)
        for p in sorted(root.iterdir())
        if p.is_dir() and p.name.startswith("v") and (p / "model.joblib").is_file()
    ]


def get_version(settings: Settings, version: str) -> ModelVersion:
    path = settings.models_dir / version
    if not (path / "model.joblib").is_file():
        known = ", ".join(v.version for v in list_versions(settings)) or "none"
        raise RegistryError(f"model version {version!r} not found in {settings.models_dir} (known: {known})")
    return ModelVersion(version, path)


def _read_pointer(settings: Settings) -> dict[str, Any]:
    path = settings.models_dir / CHAMPION_FILE
    return json.loads(path.read_text()) if path.is_file() else {"champion": None, "history": []}


def champion(settings: Settings) -> ModelVersion | None:
    name = _read_pointer(settings)["champion"]
    return get_version(settings, name) if name else None


def require_champion(settings: Settings) -> ModelVersion:
    champ = champion(settings)
    if champ is None:
        raise RegistryError(
            f"no champion model in {settings.models_dir}: run the churn_training DAG "
            "(or `python -m pipeline train`) first"
        )
    return champ


def promote(settings: Settings, version: str, reason: str) -> ModelVersion:
    """Make ``version`` the champion, remembering the previous one for rollback."""
    target = get_version(settings, version)
    pointer = _read_pointer(settings)
    if pointer["champion"] != version:
        if pointer["champion"]:
            pointer["history"].append(pointer["champion"])
        pointer["champion"] = version
    pointer["updated_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    pointer["reason"] = reason
    write_text(json.dumps(pointer, indent=2), settings.models_dir / CHAMPION_FILE)
    return target


def rollback(settings: Settings) -> ModelVersion:
    """Return to the previous champion."""
    pointer = _read_pointer(settings)
    if not pointer["history"]:
        raise RegistryError("no earlier champion to roll back to")
    previous = pointer["history"].pop()
    get_version(settings, previous)
    pointer["champion"] = previous
    pointer["updated_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    pointer["reason"] = "rollback"
    write_text(json.dumps(pointer, indent=2), settings.models_dir / CHAMPION_FILE)
    return get_version(settings, previous)
