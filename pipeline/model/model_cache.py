"""The verified local cache of model versions: ``<data_dir>/model_cache/<name>/vN/``.

A version of the registry (:mod:`pipeline.model.registry`) is used from a **verified local copy**:
at registration the SHA-256 of every file of the version is recorded as the version's tag
``churnflow.sha256``; a copy is made (downloaded from the store) only if every file matches, and
pinning a version checks its copy again. Versions never change, so a copy is never stale, and tasks
other than the pinning one read the copy without opening MLflow. A copy holds the MLflow model
(``model/``), the training run's bundle (``churnflow/``) and ``version.json``: what it was made from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import replace_dir, write_text
from pipeline.config import Settings
from pipeline.errors import DataError, first_line

BUNDLE = "churnflow"  # the run-artifact folder of churnflow's files
DERIVED = ".derived"  # the suffix of the folder beside a copy that keeps what was computed from it (derived_figures)
MODEL = "model"  # the MLflow model's folder in a local copy
VERSION_FILE = "version.json"

log = logging.getLogger(__name__)


class CopyError(DataError):
    """A version's files cannot be read from the store, or differ from the checksums recorded for it."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (the copy's own ``version.json`` aside)."""
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != VERSION_FILE}


def differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))



def copy_dir(settings: Settings, name: str, version: str) -> Path:
    """The folder of the copy of version ``version`` (``v3``) of registered model ``name``."""
    return settings.model_cache_dir / name / version


def make_copy(settings: Settings, client: Any, name: str, number: int, version: str, run_id: str,
              expected: dict[str, str] | None, *, store: str) -> Path:
    """Copy version ``number`` (its MLflow model and its run's ``churnflow/`` bundle, read with the
    MLflow ``client``) into the cache, atomically, and only if every file matches ``expected`` (None:
    at registration, when the checksums are being taken); returns the copy's folder. ``version`` is
    the version's label and ``store`` the store's address, both for the messages of a :class:`CopyError`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.model import tracking

    tracking.use_uris(settings)
    final = copy_dir(settings, name, version)
    stage = final.with_name(f".stage-{version}-{uuid.uuid4().hex[:8]}")
    stage.mkdir(parents=True)
    try:
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{number}", dst_path=str(stage / MODEL))
            client.download_artifacts(run_id, BUNDLE, str(stage))
        except (MlflowException, OSError) as exc:
            raise CopyError(f"model version {version} of {name!r}: its files cannot be read from the MLflow "
                            f"store {store} ({first_line(exc)}); it is not used. Promote another version, or "
                            "retrain") from exc
        actual = checksums(stage)
        if expected is not None:
            changed = differences(expected, actual)
            if changed:
                raise CopyError(
                    f"model version {version} of {name!r} differs from what was registered (SHA-256 of "
                    f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}): its artifacts were altered or are "
                    "incomplete in the store; it is not used. Promote another version, or retrain")
        write_text(json.dumps({"name": name, "version": number, "run_id": run_id, "sha256": actual,
                               "copied_at": dt.datetime.now(dt.UTC).isoformat()}, indent=2), stage / VERSION_FILE)
        replace_dir(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


def copy_digest(folder: Path) -> str:
    """A short digest of the copy in ``folder``: of the SHA-256 of its files, as its ``version.json``
    records them (another model copied under the same label has another digest)."""
    recorded = json.loads((folder / VERSION_FILE).read_text(encoding="utf-8"))["sha256"]
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()[:16]


def derived_figures(folder: Path, key: str, compute: Callable[[], list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """``compute()``'s named figures of the copy in ``folder`` (a version's figures on its own
    training reference: the same every night), computed once per copy and kept beside it in
    ``<folder>.derived/<key>-<copy_digest>.json``, never in it (its files are checked against their
    checksums). ``key`` names what is computed and with what (the rows, the seed). A file that
    cannot be read is computed again; a folder that is not a copy (no ``version.json``) keeps nothing."""
    try:
        path = folder.with_name(folder.name + DERIVED) / f"{key}-{copy_digest(folder)}.json"
    except (OSError, ValueError, KeyError):
        return [(str(name), float(value)) for name, value in compute()]
    try:
        return [(str(name), float(value)) for name, value in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        pass
    figures = [(str(name), float(value)) for name, value in compute()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json.dumps(figures), path)  # floats as their repr: read back to the bit
    except OSError as exc:  # a cache that cannot be written: computed again next time
        log.warning("model cache: %s not kept (%s); it is computed again next time", path, first_line(exc))
    return figures
