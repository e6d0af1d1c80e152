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


def preload_libraries() -> None:
    """Import :data:`PRELOAD`; a library that fails is only logged (the task importing it reports it)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # as pipeline.model.tracking does, before MLflow loads
    t0 = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.warning("preloading %s failed: %s", name, exc)
    log.info("preloaded %d modules for the task processes in %.1f s", len(PRELOAD), time.perf_counter() - t0)
