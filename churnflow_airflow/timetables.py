"""Schedules that never let a run block the ones after it.

Airflow 3 starts no task before a run's logical date: a manual run dated in the future stays
"running" with nothing started until that day, and with ``max_active_runs=1`` every later
scheduled run waits behind it, silently. :class:`NoFutureCronTimetable` is Airflow's
``CronTriggerTimetable`` that refuses such a run when it is triggered (the REST API, the UI's
Trigger form and ``airflow dags trigger`` all ask the timetable for a manual run's data
interval): the trigger fails at once, saying the date. A run that gets stuck in any other
way is failed by the DAG's ``dagrun_timeout``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.timetables.trigger import CronTriggerTimetable

#: a manual run may be dated at most this far ahead of now (clocks of browser and server differ)
GRACE = dt.timedelta(minutes=5)


def refuse_future(logical_date: dt.datetime, now: dt.datetime | None = None) -> None:
    """Raise ``ValueError`` naming the date when ``logical_date`` is later than now (+ :data:`GRACE`)."""
    now = now or dt.datetime.now(dt.UTC)
    if logical_date > now + GRACE:
        raise ValueError(
            f"logical date {logical_date.isoformat()} is in the future (now {now:%Y-%m-%d %H:%M} UTC): Airflow starts "
            "no task before a run's logical date, so this run would wait until then and hold back every later run "
            f"(one run at a time). Choose a date up to today ({now:%Y-%m-%d}).")


class NoFutureCronTimetable(CronTriggerTimetable):
    """``CronTriggerTimetable`` whose manual runs must not be dated in the future (:func:`refuse_future`)."""

    def infer_manual_data_interval(self, *, run_after: Any) -> Any:
        refuse_future(run_after)
        return super().infer_manual_data_interval(run_after=run_after)
