"""``make airflow``'s executor: Airflow's LocalExecutor with churnflow's heavy libraries
imported once, in the scheduler, before it forks its worker processes.

Every task of the LocalExecutor runs in a process forked from one of those workers, so a
task no longer pays for importing pandas, Great Expectations, Evidently, scikit-learn and
XGBoost itself (about 1-5 s each, on every task, on 2 cores; the list: churnflow_airflow.preload):
the nightly's per-task start cost drops to Airflow's own. Nothing else changes: same queueing, same parallelism, same
isolation of one process per task. Only the launcher selects it
(``AIRFLOW__CORE__EXECUTOR=churnflow_airflow.executors.PreloadingLocalExecutor``); any executor
runs the DAGs unchanged.
"""

from __future__ import annotations

from airflow.executors.local_executor import LocalExecutor

from churnflow_airflow.preload import preload_libraries


class PreloadingLocalExecutor(LocalExecutor):
    is_local = True

    def start(self) -> None:
        preload_libraries()
        super().start()
