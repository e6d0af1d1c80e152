"""The third-party libraries churnflow's tasks import, imported once in a process that forks the
task processes: the LocalExecutor's workers (churnflow_airflow.executors) and the Celery workers
of ``make airflow-cluster`` (churnflow_airflow.celery_preload). A task forked from such a
process does not pay for importing them again (about 1-5 s a task on 2 cores)."""

from __future__ import annotations

import importlib
import logging
import os
import time

log = logging.getLogger(__name__)

#: not churnflow's own modules: each task imports those itself (a fraction of a second), so an
#: edit to pipeline/ is picked up by the next task without restarting Airflow, as one to dags/ is.
PRELOAD = ("pandas", "pyarrow.parquet", "pyarrow.csv", "duckdb", "sqlalchemy", "sklearn.linear_model",
           "sklearn.ensemble", "sklearn.calibration", "imblearn.pipeline", "xgboost", "joblib", "scipy.stats",
           "great_expectations", "evidently", "matplotlib.pyplot", "yaml", "cloudpickle", "mlflow.tracking",
           "mlflow.artifacts")


#: third-party loggers that talk at INFO while their library imports, held at WARNING (warnings and errors still
#: show): Great Expectations' 209 "Skipping registering function ..." lines and its "Multiple declarations of
#: metric" notes, in the scheduler's log (what ``make airflow`` prints) on every start. The second sets its own
#: level when imported, so it is set again after the imports. pipeline.ingestion.suites.gx does the same where a
#: process imports Great Expectations itself (a CLI command, dag.test)
QUIET_LOGGERS = ("great_expectations", "great_expectations.data_context.types.base")


def preload_libraries() -> None:
    """Import :data:`PRELOAD`; a library that fails is only logged (the task importing it reports it)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # as pipeline.model.tracking does, before MLflow loads
    t0 = time.perf_counter()
    _quiet()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.warning("preloading %s failed: %s", name, exc)
    _quiet()
    log.info("preloaded %d modules for the task processes in %.1f s", len(PRELOAD), time.perf_counter() - t0)


def _quiet() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
