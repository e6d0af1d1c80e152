"""``make airflow``'s executor: Airflow's LocalExecutor with churnflow's heavy libraries
imported once, in the scheduler, before it forks its worker processes.

Every task of the LocalExecutor runs in a process forked from one of those workers, so a
task no longer pays for importing pandas, Great Expectations, Evidently, scikit-learn and
XGBoost itself (about 1-5 s each, on every task, on 2 cores): the nightly's per-task start
cost drops to Airflow's own. Nothing else changes: same queueing, same parallelism, same
isolation of one process per task. Only the launcher selects it
(``AIRFLOW__CORE__EXECUTOR=churnflow_airflow.executors.PreloadingLocalExecutor``); any executor
runs the DAGs unchanged.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

#: the third-party libraries churnflow's tasks import. Not churnflow's own modules: each task
#: imports those itself (a fraction of a second), so an edit to pipeline/ is picked up by the
#: next task without restarting Airflow, exactly as an edit to dags/ is.
PRELOAD = ("pandas", "pyarrow.parquet", "pyarrow.csv", "duckdb", "sqlalchemy", "sklearn.linear_model",
           "sklearn.ensemble", "sklearn.calibration", "imblearn.pipeline", "xgboost", "joblib", "scipy.stats",
           "great_expectations", "evidently", "matplotlib.pyplot", "yaml", "cloudpickle", "mlflow.tracking",
           "mlflow.artifacts")


class PreloadingLocalExecutor(LocalExecutor):
    is_local = True

    def start(self) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # as pipeline.model.tracking does, before MLflow loads
        t0 = time.perf_counter()
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a task importing it will report the error properly
                log.warning("preloading %s failed: %s", name, exc)
        log.info("preloaded %d modules for the task processes in %.1f s", len(PRELOAD), time.perf_counter() - t0)
        super().start()
