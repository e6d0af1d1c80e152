"""Shared fixtures. Real components only: a real SQLite database, real Airflow with its own
metadata database in a temporary AIRFLOW_HOME, a real SMTP server on localhost."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its configuration at import time: point it at a throwaway home first.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="churnflow-airflow-")
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)  # one per session, not left in /tmp
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
# a developer's own configuration must not leak into the tests
for key in [k for k in os.environ if k.startswith("CHURNFLOW_")]:
    del os.environ[key]
os.environ["CHURNFLOW_CONFIG"] = str(ROOT / "tests" / "no-such-config.yaml")

from pipeline.config import Settings, load_settings  # noqa: E402

SMALL = {"customers": 1500, "months": 6, "seed": 3, "start": "2025-01-01", "drift_from": "2025-06-01"}
#: logical date right after the generated period: training and nightly runs use it
RUN_DATE = "2025-07-01"
#: the settings ``trained_source``'s champion is trained with: three monthly snapshots before RUN_DATE
#: (2025-04-01 .. 2025-06-01, before the drift), one search iteration of the default candidates
TRAINED = {"horizon_days": 30, "training_snapshots": 3, "search_iterations": 1}


#: a quick model (one logistic regression, no search) for the tests about anything but the search:
#: the settings as CHURNFLOW_* environment variables (what a DAG task or a CLI command reads)
QUICK_MODEL_ENV = {"CHURNFLOW_CANDIDATES": "logreg", "CHURNFLOW_SEARCH_ITERATIONS": "1", "CHURNFLOW_CV_FOLDS": "1"}


def run_cli(config: Path, args: list[str], data_dir: Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """``python -m pipeline ARGS`` as a user runs it, with the example's ``config`` and its data
    in ``data_dir``, from another folder (``cwd``), ``env`` added to its environment; its standard output."""
    env = {**os.environ, **(env or {}), "CHURNFLOW_CONFIG": str(config), "CHURNFLOW_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{args}: {out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(data_dir)`` once for the whole test run, its data dir returned. Under xdist the
    workers share it: the first to ask builds it in the run's common temp folder under a file
    lock, the others wait for it. Treat it as read-only: a test that writes copies it first
    (:func:`copy_business`)."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: the session fixture runs once anyway
        data_dir = tmp_path_factory.mktemp(name) / "data"
        build(data_dir)
        return data_dir
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    data_dir, done = shared / name / "data", shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(data_dir.parent, ignore_errors=True)  # a build that failed half way
            build(data_dir)
            done.touch()
    return data_dir


def copy_business(data_dir: Path, to: Path) -> Path:
    """A private copy of a built business's data dir at ``to`` (its MLflow store is relocated
    there on first open, see pipeline.model.tracking)."""
    shutil.copytree(data_dir, to)
    return to


def _generate_small(data_dir: Path) -> None:
    import datetime as dt

    from churnflow_sim.generate import generate

    generate(
        load_settings(data_dir=data_dir), customers=SMALL["customers"], months=SMALL["months"], seed=SMALL["seed"],
        start=dt.date.fromisoformat(SMALL["start"]), drift_from=dt.date.fromisoformat(SMALL["drift_from"]),
        progress=None,
    )


@pytest.fixture(scope="session")
def generated_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated source (database + landed event files), made once per test run (~10 s)."""
    return built_once(tmp_path_factory, "generated", _generate_small)


@pytest.fixture(scope="session")
def trained_source(generated_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``generated_source`` with a champion (v1) trained as of RUN_DATE by ``run_training`` with
    TRAINED's settings, made once per test run: for the tests that need "a trained business"
    (monitoring, partitions, the MLflow server), each module working on a copy (:func:`copy_business`)."""

    def train(data_dir: Path) -> None:
        from pipeline.flows import run_training

        copy_business(generated_source, data_dir)
        run_training(load_settings(data_dir=data_dir, **TRAINED), RUN_DATE)

    return built_once(tmp_path_factory, "trained", train)


@pytest.fixture
def source_data(generated_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A private copy of the generated source; CHURNFLOW_DATA_DIR points at it (for DAG tasks)."""
    data_dir = tmp_path / "data"
    shutil.copytree(generated_source, data_dir)
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(data_dir))
    return load_settings()


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata database in the session's AIRFLOW_HOME."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy())
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch):
    """A real SMTP server on 127.0.0.1, wired as Airflow's ``smtp_default`` connection."""
    from churnflow_sim.smtp_sink import SmtpSink

    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.airflow_connection_uri())
        yield sink


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A throwaway PostgreSQL server for the session (churnflow_sim/pg_server.py), or the one
    ``CHURNFLOW_TEST_POSTGRES_URL`` names. Skipped only where no server binary exists."""
    from churnflow_sim import pg_server

    given = os.environ.get("CHURNFLOW_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    if pg_server.server_bin_dir() is None:
        pytest.skip(pg_server.MISSING)
    with pg_server.postgres_server() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL server (named after the test)."""
    import re

    from churnflow_sim import pg_server

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:55]
    return pg_server.create_database(postgres_server, name)


def example_through_dags(config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                         day: str = RUN_DATE) -> tuple[dict, list]:
    """An example business as Airflow runs it: the DAG files parsed with its ``config`` (the
    form's defaults come from it), then ``churn_training`` and ``churn_nightly`` for ``day``
    with ``dag.test()``, each asserted successful. Returns the training DAG's Params and the
    e-mails a real SMTP server on localhost received."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from churnflow_sim.smtp_sink import SmtpSink

    monkeypatch.setenv("CHURNFLOW_CONFIG", str(config))
    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(data_dir))
    for name, value in QUICK_MODEL_ENV.items():  # the wiring is under test here, not the model
        monkeypatch.setenv(name, value)
    logical = pendulum.parse(day, tz="UTC")
    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.airflow_connection_uri())
        bag = DagBag(str(ROOT / "dags"))
        assert bag.import_errors == {}
        params = dict(bag.get_dag("churn_training").params)
        runs = [bag.get_dag(dag_id).test(logical_date=logical) for dag_id in ("churn_training", "churn_nightly")]
    for run in runs:
        assert run.state == "success", {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return params, list(sink.messages)
