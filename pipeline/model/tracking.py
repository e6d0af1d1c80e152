"""MLflow: where the experiment log and the model registry live, and a training run's record.

By default the store is local, under ``<data_dir>/mlflow/``: a SQLite backend (``mlflow.db``)
and the artifacts in ``artifacts/``, so nothing needs a server. ``mlflow_tracking_uri`` points
at a shared MLflow server instead (its registry too). ``make mlflow`` serves the UI on the
project's store.

A training is logged as it runs (:func:`training_run`, :class:`TrainingRun`): its run starts with
the training, each candidate draw becomes a child run, the chosen one is tagged and linked from
the parent, and the registered model follows into the same run (:func:`active_run`). Training
reports through :func:`observer`, which ignores the reports where no run records them.

Only training, the registry commands, a nightly's first task (which pins the champion) and its
estimated-performance task (which logs the night's estimate on the champion's monitoring run:
:func:`log_monitoring_metrics`) open MLflow; every other task reads the pinned version's verified
local copy (:mod:`pipeline.model.registry`), so it does not pay for importing MLflow (about 4 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
#: the experiment's kind: model training (MLflow 3.0-3.16 open an experiment in the view its kind
#: names, no tag: the GenAI view; 3.17 follows the address, see scripts/mlflow_ui.py)
EXPERIMENT_KIND = "mlflow.experimentKind"
#: the candidate draw the search chose: "true" on its child run; the parent names it (run id)
TAG_CHOSEN = "churnflow.chosen"
TAG_CHOSEN_RUN = "churnflow.chosen_run_id"
#: MLflow's run description (Markdown, shown on the run's page)
TAG_NOTE = "mlflow.note.content"


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
        retire_default_experiment(settings.tracking_uri)
    return opened


@functools.lru_cache(maxsize=8)
def retire_default_experiment(uri: str) -> bool:
    """MLflow makes an empty experiment "Default" (id 0, artifacts in ``./mlruns/0`` of whatever
    the working directory was) in every new store; churnflow never logs there, so in its local
    store it is deleted (MLflow keeps it in its trash and never makes it again) unless it holds
    runs. Once per process; returns whether it was deleted now."""
    from mlflow.entities import ViewType

    c = _client(uri)
    try:
        default = c.get_experiment("0")
    except Exception:  # no experiment 0 (already purged)
        return False
    if default is None or default.name != "Default" or default.lifecycle_stage != "active":
        return False
    if c.search_runs(["0"], run_view_type=ViewType.ALL, max_results=1):
        return False
    c.delete_experiment("0")
    return True


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
    """A run of ``experiment``, active (for MLflow's fluent calls such as ``mlflow.sklearn.log_model``)
    inside the block; FAILED if the block raises. Inside :func:`training_run` on the same
    experiment it is that run, live since the training began, with ``tags`` added (it ends with
    :func:`training_run`); else a new run."""
    import mlflow

    exp = experiment_id(settings, experiment)
    use_uris(settings)
    live = _LIVE.get()
    if live is not None and live.experiment_id == exp and live.uri == settings.tracking_uri:
        with mlflow.start_run(run_id=live.run_id, tags=tags) as run:
            yield run
        return
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=tags) as run:
        yield run


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_link(experiment: str, run_id: str) -> str:
    """A run's page in the MLflow UI, relative to the UI's address (a Markdown link target in a
    run's description)."""
    return f"#/experiments/{experiment}/runs/{run_id}"


@dataclass
class TrainingRun:
    """A training's MLflow run, logged while the training happens (:func:`training_run`): it is
    RUNNING from the training's start, each candidate draw becomes a child run as it is scored
    (:meth:`trial`, from the end of the previous draw to its own end) and the search's choice is
    tagged on it and linked from the parent's description (:meth:`searched`); metrics go in as
    they come (:meth:`metrics`). :mod:`pipeline.model.train` reports to :func:`observer`."""

    settings: Settings
    uri: str
    experiment_id: str
    run_id: str
    #: the child run of each logged draw, by its number in the search (1-based)
    children: dict[int, str] = field(default_factory=dict)
    #: when the last draw ended (ms since the epoch; None: no search started yet)
    mark: int | None = None

    def search_started(self) -> None:
        """The search begins: the first draw's child run starts here."""
        self.mark = _now_ms()

    def trial(self, trial: Any, number: int | None = None) -> str:
        """Draw ``number`` (default: the next) of the search has been scored: its child run (the
        candidate and its parameters, its CV metrics), from the previous draw's end to now."""
        number = number or len(self.children) + 1
        now = _now_ms()
        run_id = self._child(trial, number, self.mark or now, now)
        self.mark = now
        return run_id

    def _child(self, trial: Any, number: int, started: int, ended: int | None) -> str:
        """Draw ``number``'s child run from ``started`` to ``ended`` (None: its end is not known,
        the UI shows no duration rather than a made-up one)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        c = client(self.settings)
        child = c.create_run(self.experiment_id, start_time=started, run_name=f"{trial.candidate} #{number}",
                             tags={MLFLOW_PARENT_RUN_ID: self.run_id, MLFLOW_RUN_NAME: f"{trial.candidate} #{number}",
                                   TAG_KIND: "candidate"})
        run_id = str(child.info.run_id)
        params = {"candidate": trial.candidate, **trial.params}
        metrics = {"cv_roc_auc": trial.cv_roc_auc, "cv_pr_auc": trial.cv_pr_auc, "cv_std": getattr(trial, "cv_std", None)}
        stamp = ended or _now_ms()
        items = [Metric(k, float(v), stamp, 0) for k, v in metrics.items() if v is not None and v == v]
        # each fold's ROC-AUC at its step: the spread the selection weighs
        items += [Metric("fold_roc_auc", float(v), stamp, i) for i, v in enumerate(getattr(trial, "fold_roc_aucs", []))]
        c.log_batch(run_id, params=[Param(k, _text(v)) for k, v in params.items()], metrics=items,
                    tags=[RunTag(TAG_CHOSEN, "false")])
        if ended is None:
            c.update_run(run_id, status="FINISHED")  # no end time: MLflow keeps none
        else:
            c.set_terminated(run_id, end_time=ended)
        self.children[number] = run_id
        return run_id

    def searched(self, trials: Sequence[Any], best: Any, reason: str = "") -> None:
        """The search is over and chose ``best`` (one of ``trials``; ``reason``: why, in words):
        the draws not logged yet (no :meth:`trial` for them) become child runs, from the search's
        start with no end time (when each ended is not known), the chosen one is tagged
        ``churnflow.chosen`` and renamed "... (chosen)", and the parent names it (tag
        ``churnflow.chosen_run_id``, the chosen candidate's CV metrics, a link and the reason in
        its description)."""
        now = _now_ms()
        for number, trial in enumerate(trials, 1):
            if number not in self.children:
                self._child(trial, number, self.mark or now, None)
        chosen = next((n for n, t in enumerate(trials, 1) if t is best), None) or next(
            (n for n, t in enumerate(trials, 1) if (t.candidate, t.params) == (best.candidate, best.params)), None)
        c = client(self.settings)
        self.metrics({"cv_roc_auc": best.cv_roc_auc, "cv_pr_auc": best.cv_pr_auc, "search_draws": len(trials)})
        if chosen is None:
            return
        child, name = self.children[chosen], f"{best.candidate} #{chosen}"
        c.set_tag(child, TAG_CHOSEN, "true")
        c.update_run(child, name=f"{name} (chosen)")
        c.set_tag(self.run_id, TAG_CHOSEN_RUN, child)
        params = ", ".join(f"{k.removeprefix('model__')}={v}" for k, v in best.params.items()) or "its defaults"
        c.set_tag(self.run_id, TAG_NOTE,
                  f"Chosen candidate: **[{name}]({run_link(self.experiment_id, child)})** ({params}), CV ROC-AUC "
                  f"{best.cv_roc_auc:.4f}, PR-AUC {best.cv_pr_auc:.4f}; {len(trials)} draw(s) searched, one child run "
                  "each." + (f"\n\nWhy: {reason}." if reason else ""))

    def metrics(self, values: Mapping[str, float | None]) -> None:
        """Metrics of the training run, timestamped now."""
        log_metrics(self.settings, self.run_id, values)


class _NoRun:
    """What :func:`observer` gives outside :func:`training_run`: every report is ignored."""

    def search_started(self) -> None:
        return None

    def trial(self, trial: Any, number: int | None = None) -> None:
        return None

    def searched(self, trials: Sequence[Any], best: Any, reason: str = "") -> None:
        return None

    def metrics(self, values: Mapping[str, float | None]) -> None:
        return None


_LIVE: contextvars.ContextVar[TrainingRun | None] = contextvars.ContextVar("churnflow_training_run", default=None)


def observer() -> TrainingRun | _NoRun:
    """The training run being logged in this context (:func:`training_run`), or one that ignores
    every report: training reports its progress here whether or not anyone records it."""
    return _LIVE.get() or _NoRun()


@contextlib.contextmanager
def training_run(settings: Settings, experiment: str, training_date: str) -> Iterator[TrainingRun]:
    """The MLflow run of a training as of ``training_date`` in ``experiment`` (named
    "<experiment> <date>", tagged ``churnflow.kind`` training), RUNNING from now: training reports
    to it as it goes (:func:`observer`), registration logs the model into it (:func:`active_run`),
    and it ends with the block, FINISHED, or FAILED if the block raises."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    exp = experiment_id(settings, experiment)
    c = client(settings)
    run_name = f"{experiment} {training_date}".strip()
    tags = {TAG_KIND: "training", TAG_TRAINING_DATE: training_date, MLFLOW_RUN_NAME: run_name}
    run = c.create_run(exp, start_time=_now_ms(), run_name=run_name, tags=tags)
    live = TrainingRun(settings, settings.tracking_uri, exp, str(run.info.run_id))
    token = _LIVE.set(live)
    status = "FAILED"
    try:
        yield live
        status = "FINISHED"
    finally:
        _LIVE.reset(token)
        try:
            c.set_terminated(live.run_id, status=status, end_time=_now_ms())
        except Exception as exc:  # never hide the block's own error behind the store's
            log.warning("MLflow run %s could not be ended %s: %s", live.run_id, status, exc)


def _text(value: Any, limit: int = 6000) -> str:
    """A parameter's value as MLflow keeps it: text, at most ``limit`` characters (a longer one is
    cut there and said so; the whole value is in the run's ``params.json``)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > limit:
        text = text[: limit - 40] + f" ... ({len(text):,} chars: see params.json)"
    return text


def log_params(settings: Settings, run_id: str, params: dict[str, Any]) -> None:
    """Parameters of a run, each value as text (:func:`_text`)."""
    from mlflow.entities import Param

    client(settings).log_batch(run_id, params=[Param(key, _text(value)) for key, value in params.items()])


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
    """A finished child run of ``parent`` (e.g. one candidate draw of the search); nothing when
    ``parent`` is the live :func:`training_run` that logged the draws as they were scored."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    live = _LIVE.get()
    if live is not None and live.run_id == parent.info.run_id and live.children:
        return
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
