"""Imported by each Celery worker of ``make airflow-cluster`` when it starts (Celery's
``imports`` setting, given through ``[celery] extra_celery_config``), before it forks its pool:
the task processes forked from the pool then start with churnflow's heavy libraries loaded."""

from churnflow_airflow.preload import preload_libraries

preload_libraries()
