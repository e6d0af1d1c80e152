"""The Airflow plugin of churnflow: registers its timetables (Airflow serializes a DAG's
timetable by name and finds custom ones only among registered plugins)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from churnflow_airflow.timetables import NoFutureCronTimetable


class ChurnflowPlugin(AirflowPlugin):
    name = "churnflow"
    timetables = [NoFutureCronTimetable]  # noqa: RUF012 (AirflowPlugin declares it a plain attribute)
