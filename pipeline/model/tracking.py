"""MLflow: where the experiment log and the model registry live, and a training run's record.

By default the store is local, under ``<data_dir>/mlflow/``: a SQLite backend (``mlflow.db``)
and the artifacts in ``artifacts/``, so nothing needs a server. ``mlflow_tracking_uri`` points
at a shared MLflow server instead (its registry too). ``make mlflow`` serves the UI on the
project's store.

Only training, the registry commands, a nightly's first task (which pins the champion) and its
estimated-performance task (which logs the night's estimate on the champion's monitoring run:
:func:`log_monitoring_metrics`) open MLflow; every other task reads the pinned version's verified
local copy (:mod:`pipeline.model.registry`), so it does not pay for importing MLflow (about 4 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.config import Settings

log = logging.getLogger(__name__)

# MLflow reports usage to its authors unless told not to; churnflow runs where nothing is sent out
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# no progress bars of artifact transfers in task logs (a few small files per version)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

#: tags on a training run / a model version (MLflow's own ``mlflow.*`` tags besides)
TAG_KIND = "churnflow.kind"
TAG_TRAINING_DATE = "churnflow.training_date"
TAG_DAG = "churnflow.dag_id"
#: the model version a monitoring run follows (its nights' metrics: :func:`log_monitoring_metrics`)
TAG_MODEL_VERSION = "churnflow.model_version"
#: how a training run's model was validated: "time" (out of time) or "stratified" (too few snapshots)
TAG_VALIDATION = "churnflow.validation"
#: MLflow 3 opens an experiment in the view its kind names (no tag: the GenAI view)
EXPERIMENT_KIND = "mlflow.experimentKind"


def is_local(settings: Settings) -> bool:
    """The store is churnflow's own under the data dir (no ``mlflow_tracking_uri``)."""
    return not settings.mlflow_tracking_uri


def artifact_root(settings: Settings) -> str | None:
    """Where a new experiment keeps its artifacts: ``<data_dir>/mlflow/artifacts`` for the local
    store (MLflow's default would be ``./mlruns`` of whatever the working directory is); the
    server's own default for a tracking server."""
    return (settings.mlflow_dir / "artifacts").resolve().as_uri() if is_local(settings) else None


@functools.lru_cache(maxsize=8)
def _client(uri: str) -> Any:
    import mlflow  # noqa: F401  (configures MLflow's logging before the client is built)
    from mlflow.tracking import MlflowClient

    for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def client(settings: Settings) -> Any:
    """An ``MlflowClient`` on the settings' store (tracking and registry), one per process and
    URI. The local store's folder is made on first use; a store that cannot be opened is a
    :class:`~pipeline.errors.DataError` naming the setting."""
    from pipeline.errors import DataError

    if is_local(settings):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    try:
        opened = _client(settings.tracking_uri)
    except Exception as exc:  # a bad URI, a corrupt SQLite file, an unreachable server
        raise DataError(f"config mlflow_tracking_uri: the MLflow store {_masked(settings.tracking_uri)} cannot be "
                        f"opened ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    root = artifact_root(settings)
    if root is not None:
        relocate_local_store(str((settings.mlflow_dir / "mlflow.db").resolve()), root)
    return opened


#: the local store's columns holding artifact locations (absolute ``file://`` URIs), where they exist
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("model_versions", "storage_location"), ("model_versions", "source"),
                     ("logged_models", "artifact_location"))


@functools.lru_cache(maxsize=8)
def relocate_local_store(db: str, root: str) -> list[str]:
    """The local store of a data dir that was moved or copied still records its artifacts at the
    old place (MLflow keeps absolute ``file://`` URIs): MLflow would read the versions from there,
    or fail if it is gone, and write new ones there. Every location under an old
    ``<data_dir>/mlflow/artifacts`` is rewritten to ``root`` (this data dir's), once per process;
    returns the old roots (logged)."""
    import sqlite3

    con = sqlite3.connect(db, timeout=60)
    try:
        with con:
            old_roots = sorted({loc for (loc,) in con.execute("SELECT artifact_location FROM experiments")
                                if loc and loc != root and loc.startswith("file://")
                                and loc.rstrip("/").endswith("/mlflow/artifacts")})
            if not old_roots:
                return []
            present = {(table, column) for table, column in _LOCATION_COLUMNS
                       if column in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}}
            for old in old_roots:
                for table, column in sorted(present):  # names from the list above, values as parameters
                    con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                                (root, len(old) + 1, old, len(old) + 1, old + "/"))
    finally:
        con.close()
    log.warning("the local MLflow store %s recorded its artifacts under %s (the data dir was moved or copied): "
                "now %s", db, ", ".join(old_roots), root)
    return old_roots


def _masked(uri: str) -> str:
    from pipeline.ingestion.source import masked

    return masked(uri)


def experiment_id(settings: Settings, name: str) -> str:
    """The MLflow experiment ``name`` (created on first use, with :func:`artifact_root`)."""
    c = client(settings)
    found = c.get_experiment_by_name(name)
    if found is not None:
        if EXPERIMENT_KIND not in (found.tags or {}):  # made before the tag: opened in the GenAI view until now
            c.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, "custom_model_development")
        return str(found.experiment_id)
    try:
        # mlflow.experimentKind: MLflow 3's UI opens a model-training experiment in its model-training view
        return str(c.create_experiment(name, artifact_location=artifact_root(settings),
                                       tags={EXPERIMENT_KIND: "custom_model_development"}))
    except Exception:  # created meanwhile by another process
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def use_uris(settings: Settings) -> None:
    """MLflow's process-wide URIs, for its fluent helpers (artifact downloads, ``log_model``), on
    the store :func:`client` opened (and relocated, for a moved local store)."""
    import mlflow

    client(settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)


@contextlib.contextmanager
def active_run(settings: Settings, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
    """A new MLflow run of ``experiment``, active (for MLflow's fluent calls such as
    ``mlflow.sklearn.log_model``) inside the block; FAILED if the block raises."""
    import mlflow

    exp = experiment_id(settings, experiment)
    use_uris(settings)
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=tags) as run:
        yield run


def log_params(settings: Settings, run_id: str, params: dict[str, Any]) -> None:
    """Parameters of a run, each value as text (MLflow keeps 6,000 characters of a value: a
    longer one is cut there and said so; the whole value is in the run's ``params.json``)."""
    from mlflow.entities import Param

    limit = 6000
    items = []
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > limit:
            text = text[: limit - 40] + f" ... ({len(text):,} chars: see params.json)"
        items.append(Param(key, text))
    client(settings).log_batch(run_id, params=items)


def log_metrics(settings: Settings, run_id: str, metrics: Mapping[str, float | None]) -> None:
    """Numeric metrics of a run (None and NaN are left out)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and float(v) == float(v)]
    client(settings).log_batch(run_id, metrics=items)


def monitoring_run_id(settings: Settings, model_version: str) -> str:
    """The MLflow run that follows ``model_version`` night by night (in the ``model_name``
    experiment, tagged ``churnflow.kind`` "monitoring" and ``churnflow.model_version``), created on first use."""
    c = client(settings)
    exp = experiment_id(settings, settings.model_name)
    found = c.search_runs([exp], filter_string=f"tags.`{TAG_KIND}` = 'monitoring' and "
                                               f"tags.`{TAG_MODEL_VERSION}` = '{model_version}'",
                          order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        return str(found[0].info.run_id)
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    run = c.create_run(exp, tags={TAG_KIND: "monitoring", TAG_MODEL_VERSION: model_version,
                                  MLFLOW_RUN_NAME: f"monitoring {model_version}"})
    return str(run.info.run_id)


def log_monitoring_metrics(settings: Settings, model_version: str, day: Any,
                           metrics: Mapping[str, float | None]) -> str:
    """A night's metrics on ``model_version``'s monitoring run (:func:`monitoring_run_id`), at step
    the night's date ordinal and timestamped at the night (None and NaN left out; a rerun adds
    its values at the same step). Returns the run id."""
    import calendar

    from mlflow.entities import Metric

    run_id = monitoring_run_id(settings, model_version)
    stamp = calendar.timegm(day.timetuple()) * 1000
    items = [Metric(k, float(v), stamp, day.toordinal()) for k, v in metrics.items()
             if v is not None and float(v) == float(v)]
    client(settings).log_batch(run_id, metrics=items)
    return run_id


def log_child_run(settings: Settings, parent: Any, name: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """A finished child run of ``parent`` (e.g. one candidate draw of the search)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    c = client(settings)
    child = c.create_run(parent.info.experiment_id, tags={MLFLOW_PARENT_RUN_ID: parent.info.run_id,
                                                          MLFLOW_RUN_NAME: name, TAG_KIND: "candidate"})
    log_params(settings, child.info.run_id, params)
    log_metrics(settings, child.info.run_id, metrics)
    c.set_terminated(child.info.run_id)


def log_artifacts(settings: Settings, run_id: str, folder: Path, artifact_path: str) -> None:
    client(settings).log_artifacts(run_id, str(folder), artifact_path)


def training_runs(settings: Settings, experiment: str, last: int) -> list[Any]:
    """The ``last`` training runs of ``experiment``, newest first."""
    c = client(settings)
    found = c.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(c.search_runs([found.experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'training'",
                              order_by=["attributes.start_time DESC"], max_results=last))


def child_runs(settings: Settings, parent: Any) -> list[Any]:
    return list(client(settings).search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000))


def compare(settings: Settings, last: int = 5) -> Any:
    """One row per training run (its chosen candidate, holdout metrics, gate) for the last
    ``last`` runs, oldest first, plus the best CV ROC-AUC of each candidate family in that run."""
    import pandas as pd

    rows = []
    for run in training_runs(settings, settings.model_name, last):
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        row: dict[str, Any] = {
            "run": run.info.run_id[:8], "version": t.get("churnflow.model_version", ""),
            "training_date": t.get(TAG_TRAINING_DATE, ""), "candidate": p.get("chosen_candidate", ""),
            "served": t.get("churnflow.gate.served", ""),
            **{f"holdout_{k}": m.get(f"holdout_{k}") for k in ("roc_auc", "pr_auc", "ece")},
            "champion_roc_auc": m.get("champion_roc_auc_same_holdout"),
        }
        for child in child_runs(settings, run):
            family = child.data.params.get("candidate", "?")
            auc = child.data.metrics.get("cv_roc_auc")
            key = f"cv_auc_{family}"
            if auc is not None and (row.get(key) is None or auc > row[key]):
                row[key] = auc
        row["started"] = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values("started").set_index("run")
