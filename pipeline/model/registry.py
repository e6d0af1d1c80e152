"""The model registry, on MLflow.

Each trained model is a **new, immutable version** of the registered model ``model_name``
(default ``churnflow``): its MLflow model (the calibrated scikit-learn pipeline, MLflow's
sklearn flavor) plus churnflow's bundle, artifacts of its training run under ``churnflow/``:
``metrics.json``, ``params.json``, ``reference.parquet`` (the drift reference),
``importances.parquet``, ``holdout_predictions.parquet`` (its predictions on the holdout: the
concept-drift detectors' seed) and ``model_card.html``. Nothing ever writes into an existing
version: a rerun of a training date registers another version, which must pass the gate.

The serving champion is the alias ``champion``; ``models promote/rollback`` move it with a
recorded reason: the registered model's description lists the moves, newest first, and its tag
``churnflow.rollback_stack`` the earlier champions a rollback returns to. A nightly run pins a
version number for its whole run. Each version's description says what was trained and the
gate's verdict in one sentence (:func:`version_description`); its tags are plain values.

A version is used from a **verified local copy** (:mod:`pipeline.model.model_cache`: every file
checked against the SHA-256 recorded at registration: the version's tag ``churnflow.sha256`` is
the digest of its checksum list, which is kept with its run, ``sha256/vN.txt``).
What the nights serve (the challenger, the facts a night reports) is :mod:`pipeline.model.serving`'s.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import DataError
from pipeline.model.model_cache import BUNDLE, MODEL, VERSION_FILE, CopyError, checksums, copy_dir, differences, make_copy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ALIAS = "champion"
TAG_SHA = "churnflow.sha256"
#: the run-artifact folder of each version's checksum list (``vN.txt``, ``sha256sum``'s format)
SHA_FOLDER = "sha256"
#: the earlier champions, oldest first, a rollback returns to the last ("v1, v3")
TAG_ROLLBACK_STACK = "churnflow.rollback_stack"
#: the JSON record of the champion's moves and the rollback stack of stores made before the readable ones
TAG_HISTORY = "churnflow.champion_history"
TAG_PROMOTED_AT = "churnflow.promoted_at"
TAG_PROMOTION_REASON = "churnflow.promotion_reason"
#: the gate's verdict on a version (tags of the version and of its training run)
TAG_GATE_DECISION = "churnflow.gate.decision"
TAG_GATE_SERVED = "churnflow.gate.served"
TAG_GATE_CHAMPION = "churnflow.gate.champion_version"
HISTORY_LOG_LENGTH = 100
#: the bundle's file of the model's holdout predictions (sealed with the others)
HOLDOUT_PREDICTIONS = "holdout_predictions.parquet"


class RegistryError(DataError):
    """No champion, an unknown version, an incomplete or altered version, an old registry."""


def label(number: int) -> str:
    """A version's name in churnflow's outputs (``v3``): what the scores, alerts and e-mails say."""
    return f"v{number}"


def parse_version(text: str | int) -> int:
    """``v3``, ``3`` or 3 -> 3; anything else is a :class:`RegistryError`."""
    value = str(text).strip().lower().removeprefix("v")
    if not value.isdigit() or int(value) < 1:
        raise RegistryError(f"model version {text!r}: expected a version number such as v3 or 3")
    return int(value)


def table_model_name(settings: Settings) -> str:
    """The registered model of ``train-table`` runs (never the pipeline's champion)."""
    return f"{settings.model_name}-table"


def reproducible_predictions(model: Any) -> Any:
    """``model`` with every scikit-learn forest in it predicting on one thread.

    A forest run on several threads adds its trees' probabilities in the order the threads
    finish: the same customers scored twice differed in the last bits (measured: up to 4e-16),
    so a rerun or a partitioned night would not publish the same scores. One thread adds them in
    tree order, row by row, whatever else is in the batch. XGBoost sums each row's trees in a
    fixed order on any number of threads and is left as it is."""
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float)):
            return
        seen.add(id(obj))
        if hasattr(obj, "estimators_") and hasattr(obj, "n_jobs") and obj.__class__.__module__.startswith("sklearn"):
            obj.n_jobs = 1
        for name in ("calibrated_classifiers_", "estimator", "estimators_", "steps", "named_steps", "base_estimator"):
            child = getattr(obj, name, None)
            if isinstance(child, dict):
                child = list(child.values())
            for item in child if isinstance(child, (list, tuple)) else [child]:
                visit(item[1] if isinstance(item, tuple) and len(item) == 2 else item)

    visit(model)
    return model


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as its verified local copy."""

    name: str
    number: int
    path: Path

    @property
    def version(self) -> str:
        return label(self.number)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL

    @property
    def model_path(self) -> Path:
        """The serialized estimator, as the MLflow model's ``MLmodel`` file names it."""
        return self.model_dir / str(self._flavor.get("pickled_model", "model.pkl"))

    @property
    def reference_path(self) -> Path:
        return self.path / BUNDLE / "reference.parquet"

    @property
    def holdout_predictions_path(self) -> Path:
        return self.path / BUNDLE / HOLDOUT_PREDICTIONS

    def holdout_predictions(self) -> pd.DataFrame | None:
        """The model's predictions on its training holdout (``label``, ``churn_probability``,
        ``customer_id``, ``snapshot_date``; what the concept-drift detectors are seeded with), a
        DataFrame; None for a version registered before they were kept."""
        import pandas as pd

        path = self.holdout_predictions_path
        return pd.read_parquet(path) if path.is_file() else None

    @property
    def model_card_path(self) -> Path:
        return self.path / BUNDLE / "model_card.html"

    def metrics(self) -> dict[str, Any]:
        return _read_json(self.path / BUNDLE / "metrics.json")

    @functools.cached_property
    def params(self) -> dict[str, Any]:
        """``params.json`` (read once per object): the features, the search's choice, the label, the window."""
        return _read_json(self.path / BUNDLE / "params.json")

    @functools.cached_property
    def info(self) -> dict[str, Any]:
        """What the copy was made from: run id, the recorded SHA-256 of each file, when."""
        return _read_json(self.path / VERSION_FILE)

    @property
    def feature_columns(self) -> list[str]:
        """The columns the model scores, numeric first, in training order."""
        return list(self.params["numeric_features"]) + list(self.params["categorical_features"])

    def threshold(self, default: float) -> float:
        """The campaign decision threshold chosen at training (``default`` for a model without one)."""
        return float(self.metrics().get("threshold", default))

    @functools.cached_property
    def _flavor(self) -> dict[str, Any]:
        import yaml

        path = self.model_dir / "MLmodel"
        try:
            return dict(yaml.safe_load(path.read_text())["flavors"]["sklearn"])
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise RegistryError(f"model version {self.version}: {path} is missing or not an MLflow sklearn model "
                                f"({type(exc).__name__}: {exc})") from exc

    def load(self) -> Any:
        """The fitted estimator, read from the MLflow model's file directly (the same bytes
        ``mlflow.sklearn.load_model`` reads, without importing MLflow in every task), set to
        predict reproducibly (:func:`reproducible_predictions`); an unreadable file is a
        :class:`RegistryError` naming it."""
        flavor = self._flavor
        try:
            if flavor.get("serialization_format") == "skops":
                import skops.io

                return reproducible_predictions(
                    skops.io.load(self.model_path, trusted=flavor.get("skops_trusted_types") or []))
            import cloudpickle

            with open(self.model_path, "rb") as f:
                return reproducible_predictions(cloudpickle.load(f))
        except Exception as exc:  # EOFError, UnpicklingError, ValueError, ...: all mean "this file is broken"
            raise RegistryError(f"model file {self.model_path} of {self.version} cannot be loaded "
                                f"({type(exc).__name__}: {exc}); promote another version "
                                "(python -m pipeline models promote VERSION) or retrain") from exc


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as the registry lists it (nothing downloaded)."""

    name: str
    number: int
    run_id: str
    created: dt.datetime
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def version(self) -> str:
        return label(self.number)

    def float_tag(self, key: str) -> float:
        try:
            return float(self.tags.get(key, "nan"))
        except ValueError:
            return float("nan")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file of a version's copy; a missing or corrupt one is a :class:`RegistryError` naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file {path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"registry file {path} is corrupt ({exc})") from exc
    if not isinstance(value, dict):
        raise RegistryError(f"registry file {path} is corrupt (expected a JSON object, got {type(value).__name__})")
    return value


# ------------------------------------------------------------------------------ the store
def old_registry(settings: Settings) -> list[Path]:
    """The version folders of churnflow's earlier file registry in ``<data_dir>/models/``."""
    root = settings.models_dir
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "model.joblib").is_file())


def _store(settings: Settings) -> Any:
    """The MLflow client; refuses while an earlier-format registry waits to be migrated."""
    from pipeline.model import tracking

    old = old_registry(settings)
    if old or (settings.models_dir / "champion.json").is_file():
        raise RegistryError(
            f"{settings.models_dir} holds churnflow's earlier file registry ({len(old)} version(s)): import it into "
            "MLflow with `python -m pipeline models migrate` (its champion stays the champion), or move the folder "
            "away to start afresh")
    return tracking.client(settings)


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def where(settings: Settings) -> str:
    from pipeline.ingestion.source import masked

    return masked(settings.tracking_uri)


def list_versions(settings: Settings, name: str | None = None) -> list[VersionInfo]:
    """Every registered version of ``name`` (default: the pipeline's model), oldest first."""
    name = name or settings.model_name
    found = _store(settings).search_model_versions(f"name = '{name}'", max_results=10_000)
    champ = champion_number(settings) if name == settings.model_name and found else None
    out = [VersionInfo(name, int(v.version), v.run_id or "",
                       dt.datetime.fromtimestamp((v.creation_timestamp or 0) / 1000, dt.UTC),
                       dict(v.tags or {}), (ALIAS,) if int(v.version) == champ else (), v.description or "")
           for v in found]
    return sorted(out, key=lambda v: v.number)


def _version_info(settings: Settings, name: str, number: int) -> Any:
    try:
        return _store(settings).get_model_version(name, str(number))
    except Exception as exc:
        if not _not_found(exc):
            raise
        known = ", ".join(v.version for v in list_versions(settings, name)) or "none"
        raise RegistryError(f"model version {label(number)} not found in registered model {name!r} at "
                            f"{where(settings)} (known: {known})") from exc


def champion_number(settings: Settings) -> int | None:
    """The version the ``champion`` alias points at (None: no champion yet)."""
    try:
        return int(_store(settings).get_model_version_by_alias(settings.model_name, ALIAS).version)
    except RegistryError:
        raise
    except Exception as exc:
        if _not_found(exc):
            return None
        raise


def champion(settings: Settings) -> ModelVersion | None:
    number = champion_number(settings)
    return get_version(settings, number) if number is not None else None


def require_champion(settings: Settings) -> ModelVersion:
    champ = champion(settings)
    if champ is None:
        raise RegistryError(
            f"no champion model in registered model {settings.model_name!r} at {where(settings)}: run the "
            "churn_training DAG (or `python -m pipeline run-training --date D`) first, or promote a version "
            "(python -m pipeline models promote VERSION)")
    return champ


# ------------------------------------------------------------------------- local copies
def _copy_dir(settings: Settings, name: str, number: int) -> Path:
    return copy_dir(settings, name, label(number))


def _download(settings: Settings, name: str, number: int, run_id: str, expected: dict[str, str] | None) -> ModelVersion:
    """Copy version ``number`` into the cache (:func:`pipeline.model.model_cache.make_copy`), only if
    every file matches ``expected`` (None: at registration, when the checksums are being taken)."""
    try:
        path = make_copy(settings, _store(settings), name, number, label(number), run_id, expected, store=where(settings))
    except CopyError as exc:
        raise RegistryError(str(exc)) from exc
    return ModelVersion(name, number, path)


def checksum_list(sums: dict[str, str]) -> str:
    """A version's checksums as ``sha256sum`` writes them: ``<hex>  <path>`` per file, by path."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(sums.items()))


def _checksum_file(number: int) -> str:
    return f"{SHA_FOLDER}/{label(number)}.txt"


def _recorded(settings: Settings, mv: Any) -> dict[str, str]:
    """The checksums recorded at registration: the run's checksum list (``sha256/vN.txt``), used
    only if its SHA-256 is the version's tag ``churnflow.sha256`` (a version registered before
    the lists has the checksums themselves as the tag, JSON). A version without the tag was never
    completely registered."""
    import hashlib

    text = (mv.tags or {}).get(TAG_SHA)
    number = int(mv.version)
    if not text:
        raise RegistryError(f"model version {label(number)} of {mv.name!r} has no recorded checksums "
                            f"({TAG_SHA}): its registration did not complete, so it is never served")
    if text.lstrip().startswith("{"):
        return dict(json.loads(text))
    import mlflow

    from pipeline.model import tracking

    tracking.use_uris(settings)
    try:
        listing = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{_checksum_file(number)}")
    except Exception as exc:  # missing, unreadable: the version cannot be verified
        raise RegistryError(f"model version {label(number)} of {mv.name!r}: its files cannot be read from the MLflow "
                            f"store {where(settings)} (its checksum list {_checksum_file(number)}: "
                            f"{type(exc).__name__}); it is not used. Promote another version, or retrain") from exc
    if hashlib.sha256(listing.encode("utf-8")).hexdigest() != text.strip():
        raise RegistryError(f"model version {label(number)} of {mv.name!r}: its checksum list "
                            f"{_checksum_file(number)} differs from the one registered ({TAG_SHA}); it is not used. "
                            "Promote another version, or retrain")
    return {path: digest for digest, _, path in (line.partition("  ") for line in listing.splitlines() if line)}


def get_version(settings: Settings, version: str | int, *, name: str | None = None) -> ModelVersion:
    """Version ``version`` (``v3`` / ``3``) of ``name`` (default: the pipeline's model), from
    its verified local copy (made from the store on first use)."""
    name, number = name or settings.model_name, parse_version(version)
    local = _copy_dir(settings, name, number)
    if (local / VERSION_FILE).is_file():
        return ModelVersion(name, number, local)
    mv = _version_info(settings, name, number)
    return _download(settings, name, number, mv.run_id, _recorded(settings, mv))


def check_version(settings: Settings, version: str | int, *, name: str | None = None) -> ModelVersion:
    """Version ``version`` checked for use: its copy's files match the checksums recorded in the
    registry at registration (a damaged copy is fetched again once), and its metrics, params
    and model file are readable. What a nightly run does when it pins its model."""
    name, number = name or settings.model_name, parse_version(version)
    expected = _recorded(settings, _version_info(settings, name, number))
    model = get_version(settings, number, name=name)
    changed = differences(expected, checksums(model.path))
    if changed:
        log.warning("the local copy of %s differs from the registered files (%s): fetching it again", model.version,
                    ", ".join(changed[:5]))
        shutil.rmtree(model.path, ignore_errors=True)
        model = get_version(settings, number, name=name)
    model.metrics()
    _ = model.params
    model.load()
    return model


def check_champion(settings: Settings) -> ModelVersion:
    """The champion, checked (:func:`check_version`): a nightly's first step, before any ingest."""
    number = champion_number(settings)
    if number is None:
        require_champion(settings)
    return check_version(settings, number)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- registering
#: the registered model's description above the champion's moves
MODEL_DESCRIPTION = (f"churnflow churn model: every version immutable; the serving one carries the alias {ALIAS!r}. "
                     "Each version's description says what was trained and the gate's verdict.")


def _clauses(text: str) -> list[str]:
    """``text`` split at its top-level "; " (not inside parentheses)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    return [*out, text[start:].strip()]


def verdict_sentence(decision: str, served: bool | None, champion: str | None) -> str:
    """The gate's verdict in one sentence: served or not, against which champion, and the first
    reason of ``decision`` (the gate's full text, kept as the tag ``churnflow.gate.decision``);
    ``served`` None: the verdict is not final yet."""
    first = _clauses(decision.removeprefix("not promoted: "))[0] if decision else ""
    first = re.sub(r"^better on ROC-AUC \(.*\) but worse on ", "better on ROC-AUC but worse on ", first)
    if served and ", beyond noise" in first:  # the bootstrap's numbers are in the tag
        first = first.split(", beyond noise")[0] + ", beyond noise"
    if served is None:
        return f"Gate: {first}." if first else ""
    if served:
        against = f"replaces {champion}" if champion and champion != "none" else "the first champion"
        return f"Served ({against}): {first}." if first and first != "no champion yet" else f"Served ({against})."
    stays = f"{champion} stays the champion" if champion and champion != "none" else "no champion"
    return f"Not served ({stays}): {first}." if first else f"Not served ({stays})."


def version_description(tags: dict[str, str], verdict: str) -> str:
    """A version's description (Markdown, shown in the MLflow UI): what was trained (candidate,
    training date, label, holdout, ROC-AUC and PR-AUC, from its tags) and ``verdict``
    (:func:`verdict_sentence`)."""
    what = f"**{tags.get('churnflow.candidate', 'a model')}**"
    if tags.get("churnflow.training_date"):
        what += f" trained as of {tags['churnflow.training_date']}"
    if tags.get("churnflow.label"):
        what += f" ({tags['churnflow.label']} churn)"
    if tags.get("churnflow.holdout"):
        what += f", held out {tags['churnflow.holdout'].replace(',', ', ')}"
    scores = [f"{key} {float(tags[tag]):.4f}" for key, tag in (("ROC-AUC", "churnflow.roc_auc"),
                                                             ("PR-AUC", "churnflow.pr_auc")) if tag in tags]
    return f"{what}{': ' + ', '.join(scores) if scores else ''}. {verdict}".strip()


def create_version(settings: Settings, *, name: str, run_id: str, model_uri: str, tags: dict[str, str],
                   description: str = "", model_id: str | None = None) -> int:
    """A new version of ``name`` for the MLflow model at ``model_uri`` logged by run ``run_id``
    (the registered model is created on first use), described by :func:`version_description`
    (``description``: the gate's decision so far, if any). It is not usable until
    :func:`seal_version` has recorded its checksums. Never changes an existing version."""
    store = _store(settings)
    try:
        store.create_registered_model(name, description=MODEL_DESCRIPTION)
    except Exception as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    verdict = (verdict_sentence(description, None, None) if name == settings.model_name
               else "Registered only: a train-table model is never served.")
    return int(store.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id,
                                          description=version_description(tags, verdict)).version)


def seal_version(settings: Settings, name: str, number: int, run_id: str) -> ModelVersion:
    """Take the checksums of version ``number`` as the store holds it (the MLflow model and the
    run's ``churnflow/`` bundle, both uploaded by now), keep them with the run (``sha256/vN.txt``,
    :func:`checksum_list`), record that list's SHA-256 as the version's tag and keep the copy:
    from here on the version can be used, and any later change to its files is refused."""
    import hashlib
    import tempfile

    local = _download(settings, name, number, run_id, None)
    listing = checksum_list(local.info["sha256"])
    store = _store(settings)
    with tempfile.TemporaryDirectory(prefix="churnflow-sha256-") as tmp:
        path = Path(tmp) / Path(_checksum_file(number)).name
        path.write_text(listing, encoding="utf-8")
        store.log_artifact(run_id, str(path), SHA_FOLDER)
    store.set_model_version_tag(name, str(number), TAG_SHA, hashlib.sha256(listing.encode("utf-8")).hexdigest())
    return local


def set_gate(settings: Settings, name: str, number: int, decision: str, served: bool, champion: str | None) -> None:
    """Record the gate's verdict on a version: tags, and the description's sentence
    (:func:`version_description`); the version's files never change."""
    store = _store(settings)
    for key, value in ((TAG_GATE_DECISION, decision), (TAG_GATE_SERVED, str(served).lower()),
                       (TAG_GATE_CHAMPION, champion or "none")):
        store.set_model_version_tag(name, str(number), key, value)
    tags = dict(store.get_model_version(name, str(number)).tags or {})
    store.update_model_version(name, str(number),
                               description=version_description(tags, verdict_sentence(decision, served, champion)))


# ------------------------------------------------------------------- the champion alias
#: the registered model's description holds the champion's moves, newest first, one per line
_MOVES_HEADING = "Champion moves, newest first:"
_MOVE = re.compile(r"^- (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC: \*\*(v\d+)\*\* champion \(was (v\d+|none)\): (.*)$")
#: MLflow keeps 5,000 characters of a description: the oldest moves beyond that are left out
_DESCRIPTION_LIMIT = 4900
_REASON_LIMIT = 400


def _move_line(move: dict[str, Any]) -> str:
    at = dt.datetime.fromisoformat(move["at"]).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    reason = " ".join(str(move.get("reason") or "").split())
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 3] + "..."
    return f"- {at} UTC: **{move['version']}** champion (was {move.get('previous') or 'none'}): {reason}"


def moves_description(moves: list[dict[str, Any]]) -> str:
    """The registered model's description: what it is, then the champion's ``moves`` (oldest first
    in the list), newest first, as many as MLflow keeps."""
    text = f"{MODEL_DESCRIPTION}\n\n{_MOVES_HEADING}\n" if moves else MODEL_DESCRIPTION
    for move in reversed(moves):
        line = _move_line(move) + "\n"
        if len(text) + len(line) > _DESCRIPTION_LIMIT:
            break
        text += line
    return text.rstrip("\n")


def _parse_moves(description: str) -> list[dict[str, Any]]:
    """The moves :func:`moves_description` wrote, oldest first (lines it did not write are skipped)."""
    found = []
    for line in description.splitlines():
        m = _MOVE.match(line.strip())
        if m:
            at = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            found.append({"at": at.isoformat(timespec="seconds"), "version": m.group(2),
                          "previous": None if m.group(3) == "none" else m.group(3), "reason": m.group(4)})
    return found[::-1]


def history(settings: Settings) -> dict[str, Any]:
    """The champion's moves (``log``, newest last: the registered model's description) and the
    rollback ``stack`` of earlier champions (version numbers, its tag ``churnflow.rollback_stack``);
    a store made before them keeps both as the JSON tag ``churnflow.champion_history`` until the
    next move."""
    try:
        model = _store(settings).get_registered_model(settings.model_name)
    except Exception as exc:
        if _not_found(exc):
            return {"stack": [], "log": []}
        raise
    tags = dict(model.tags or {})
    if TAG_HISTORY in tags:
        value = json.loads(tags[TAG_HISTORY] or "{}")
        return {"stack": list(value.get("stack", [])), "log": list(value.get("log", []))}
    stack = [parse_version(v) for v in tags.get(TAG_ROLLBACK_STACK, "").replace(",", " ").split() if v != "none"]
    return {"stack": stack, "log": _parse_moves(model.description or "")}


def _move_alias(settings: Settings, number: int, reason: str, *, pop: bool = False) -> None:
    store = _store(settings)
    previous = champion_number(settings)
    record = history(settings)
    if pop:
        record["stack"].pop()
    elif previous is not None and previous != number:
        record["stack"].append(previous)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record["log"] = (record["log"] + [{"at": now, "version": label(number),
                                       "previous": label(previous) if previous else None, "reason": reason}]
                     )[-HISTORY_LOG_LENGTH:]
    store.set_registered_model_alias(settings.model_name, ALIAS, str(number))
    store.set_registered_model_tag(settings.model_name, TAG_ROLLBACK_STACK,
                                   ", ".join(label(int(v)) for v in record["stack"]) or "none")
    store.update_registered_model(settings.model_name, description=moves_description(record["log"]))
    if TAG_HISTORY in (store.get_registered_model(settings.model_name).tags or {}):
        store.delete_registered_model_tag(settings.model_name, TAG_HISTORY)  # now in the two readable records
    store.set_model_version_tag(settings.model_name, str(number), TAG_PROMOTED_AT, now)
    store.set_model_version_tag(settings.model_name, str(number), TAG_PROMOTION_REASON, reason)
    log.info("registry: champion of %s is now %s (was %s): %s", settings.model_name, label(number),
             label(previous) if previous else "none", reason)


#: ``expected`` of :func:`promote` when any current champion will do
ANY = object()


def promote(settings: Settings, version: str | int, reason: str, *, expected: Any = ANY) -> ModelVersion | None:
    """Make ``version`` the champion (the alias moves; the previous champion goes on the rollback
    stack), recording ``reason``. With ``expected`` (a version number, or None for "no
    champion"), only if the champion is still that one: None is returned otherwise, so a
    training run that compared against one champion never replaces another unseen."""
    number = parse_version(version)
    model = check_version(settings, number)
    if expected is not ANY and champion_number(settings) != expected:
        return None
    _move_alias(settings, number, reason)
    return model


def rollback(settings: Settings, reason: str = "rollback") -> ModelVersion:
    """Return to the previous champion (the top of the rollback stack)."""
    record = history(settings)
    if not record["stack"]:
        raise RegistryError(f"no earlier champion of {settings.model_name!r} to roll back to")
    previous = int(record["stack"][-1])
    model = check_version(settings, previous)
    _move_alias(settings, previous, reason, pop=True)
    return model
