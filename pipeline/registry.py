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
import functools
import json
import shutil
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
        return _read_json(self.path / "metrics.json")

    @functools.cached_property
    def params(self) -> dict[str, Any]:
        """``params.json`` (read once per object): the features, the search's choice, the training window."""
        return _read_json(self.path / "params.json")

    @property
    def feature_columns(self) -> list[str]:
        """The columns the model scores, numeric first, in training order."""
        return list(self.params["numeric_features"]) + list(self.params["categorical_features"])

    def threshold(self, default: float) -> float:
        """The campaign decision threshold chosen at training (``default`` for a model without one)."""
        return float(self.metrics().get("threshold", default))

    def load(self):
        """The fitted model; an unreadable file is a :class:`RegistryError` naming it."""
        import joblib

        try:
            return joblib.load(self.model_path)
        except Exception as exc:  # EOFError, UnpicklingError, ValueError, ...: all mean "this file is broken"
            raise RegistryError(f"model file {self.model_path} cannot be loaded ({type(exc).__name__}: {exc}); "
                                f"promote another version (python -m pipeline models promote VERSION) or retrain"
                                ) from exc


def _read_json(path: Path) -> dict[str, Any]:
    """A registry JSON file; a truncated or corrupt one is a :class:`RegistryError` naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file {path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"registry file {path} is corrupt ({exc})" + (
            "; `python -m pipeline models promote VERSION` rewrites it" if path.name == CHAMPION_FILE else "")) from exc
    if not isinstance(value, dict):
        raise RegistryError(f"registry file {path} is corrupt (expected a JSON object, got {type(value).__name__})")
    return value


def new_version_id(now: dt.datetime | None = None) -> str:
    """A fresh version id for a training that is not a run of a date (``train-table``)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"v{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_version_id(day: dt.date) -> str:
    """The version a training run of logical date ``day`` registers: a rerun of the same date
    replaces it (its folder, experiment rows and, if it held it, the champion pointer)."""
    return f"v{day:%Y%m%d}"


def staging_dir(settings: Settings, version: str) -> Path:
    """Where a version is built before :func:`publish` moves it into place (emptied first: a
    crashed build of the same version leaves nothing behind in the next)."""
    path = _staging_path(settings, version)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _staging_path(settings: Settings, version: str) -> Path:
    return settings.models_dir / f".building-{version}"


def publish(settings: Settings, version: str) -> ModelVersion:
    """Move the built :func:`staging_dir` of ``version`` into place (replacing an earlier build)."""
    final = replace_dir(_staging_path(settings, version), settings.models_dir / version)
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


def _read_pointer(settings: Settings, *, repair: bool = False) -> dict[str, Any]:
    """The champion pointer; with ``repair`` a corrupt one is replaced by an empty pointer
    (its history is lost, and said so) instead of raising."""
    path = settings.models_dir / CHAMPION_FILE
    if not path.is_file():
        return {"champion": None, "history": []}
    try:
        pointer = _read_json(path)
        if not isinstance(pointer.get("history", []), list):
            raise RegistryError(f"registry file {path} is corrupt (history is not a list)")
        return {"champion": pointer.get("champion"), "history": list(pointer.get("history", [])),
                **{k: v for k, v in pointer.items() if k not in ("champion", "history")}}
    except RegistryError:
        if not repair:
            raise
        import logging

        logging.getLogger(__name__).warning("%s is corrupt: rewriting it (the rollback history in it is lost)", path)
        return {"champion": None, "history": [], "repaired_at": dt.datetime.now(dt.UTC).isoformat()}


def previous_champion(settings: Settings, version: str) -> ModelVersion | None:
    """The champion a new build of ``version`` must beat: the champion, unless it is
    ``version`` itself (a rerun of the same date), then the one before it."""
    pointer = _read_pointer(settings)
    if pointer["champion"] is None:
        return None
    if pointer["champion"] != version:
        return get_version(settings, pointer["champion"])
    for name in reversed(pointer["history"]):
        if name != version and (settings.models_dir / name / "model.joblib").is_file():
            return ModelVersion(name, settings.models_dir / name)
    return None


def demote(settings: Settings, version: str, reason: str) -> ModelVersion | None:
    """If ``version`` is the champion, hand the title back to the champion before it (none
    if there was none); return the champion now."""
    pointer = _read_pointer(settings, repair=True)
    if pointer["champion"] == version:
        history = [n for n in pointer["history"] if n != version]
        pointer["champion"] = history.pop() if history else None
        pointer["history"] = history
        pointer["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
        pointer["reason"] = reason
        write_text(json.dumps(pointer, indent=2), settings.models_dir / CHAMPION_FILE)
    return champion(settings)


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


def check_champion(settings: Settings) -> ModelVersion:
    """The champion, with its pointer, metrics, params and model file all readable: what a
    nightly run checks first, so a corrupt registry fails it before any ingest."""
    return check_version(settings, require_champion(settings).version)


def check_version(settings: Settings, version: str) -> ModelVersion:
    """``version`` with its metrics, params and model file all readable (see :func:`check_champion`)."""
    model = get_version(settings, version)
    model.metrics()
    _ = model.params
    model.load()
    return model


def promote(settings: Settings, version: str, reason: str) -> ModelVersion:
    """Make ``version`` the champion, remembering the previous one for rollback."""
    target = get_version(settings, version)
    pointer = _read_pointer(settings, repair=True)
    if pointer["champion"] != version:
        if pointer["champion"]:
            pointer["history"].append(pointer["champion"])
        pointer["champion"] = version
    pointer["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
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
    pointer["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
    pointer["reason"] = "rollback"
    write_text(json.dumps(pointer, indent=2), settings.models_dir / CHAMPION_FILE)
    return get_version(settings, previous)
