"""Airflow's ``[core] hostname_callable`` for several Celery workers on one machine.

Airflow records on each task instance the host that ran it (``get_hostname()``). Two workers on
one machine would record the same name; ``make airflow-cluster`` gives each worker a name
(``CHURNFLOW_WORKER_NAME``), recorded as ``<name>.<host>`` so the UI and the REST API say which
worker ran a task. Without that variable it is the host's name, as Airflow's default.
"""

from __future__ import annotations

import os

from airflow.utils.net import getfqdn  # Airflow's default hostname_callable


def worker_hostname() -> str:
    host = getfqdn()
    name = os.environ.get("CHURNFLOW_WORKER_NAME", "").strip()
    return f"{name}.{host}" if name else host
