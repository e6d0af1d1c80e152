"""Task definitions shared by the churnflow DAGs (wiring only: each task calls one
function of ``pipeline.flows`` and returns its small dict of paths and counts to XCom).

Heavy libraries (pandas, Great Expectations, Evidently, XGBoost) are imported inside the
tasks, never here, so the DAG files parse in a fraction of a second.

Failures: a :class:`pipeline.errors.DataError` (bad or missing data, a training set that
cannot train, no champion) fails its task at once, since retrying the same inputs gives
the same answer; anything else (database, disk, mail server) is retried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseSensorOperator, Param, PokeReturnValue, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from churnflow_airflow.params import parse_settings, setting_params
from pipeline.config import SETTING_TYPES, Settings, load_settings
from pipeline.context import RunContext

if TYPE_CHECKING:
    from pipeline.monitoring.notify import SmtpSettings

log = logging.getLogger(__name__)

#: retries cover passing infrastructure faults (database, disk); data errors don't heal by retrying
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "churnflow",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
}



def nightly_dag_args() -> dict[str, Any]:
    """What every churnflow DAG that runs each midnight shares: no start_date (any date can be
    run by hand, but not a future one: it would hold back every later night), the latest
    midnight run at once on unpause, no catchup, one run at a time, and a run still going
    after ``nightly_run_timeout_minutes`` is failed so the next night can run."""
    from churnflow_airflow.timetables import NoFutureCronTimetable

    return {"schedule": NoFutureCronTimetable("@daily", timezone="UTC", run_immediately=True),
            "catchup": False, "max_active_runs": 1, "default_args": DEFAULT_ARGS,
            "dagrun_timeout": dt.timedelta(minutes=parse_settings().nightly_run_timeout_minutes)}


#: a Param named after a setting is that setting (churnflow_airflow.params.setting_param builds it from the
#: field; tests/test_settings.py checks each against it): the run's value replaces the setting's
SETTING_PARAMS = frozenset(SETTING_TYPES)


def run_date(context: Any) -> dt.date:
    """The day a run is for.

    - a scheduled run or a manual one with a logical date: that date (UTC);
    - a run triggered by an asset event (no logical date): the ``date`` the event carries
      in its ``extra`` (the night that asked for retraining; the latest if several);
    - otherwise (a manual run without a logical date): the day it was triggered.
    """
    when = context.get("logical_date")
    if when is None:
        asked = requested_dates(context.get("triggering_asset_events") or {})
        if asked:
            return max(asked)
        when = context["dag_run"].run_after
    return pendulum.instance(when).in_tz("UTC").date()


def requested_dates(events: Any) -> list[dt.date]:
    """``extra["date"]`` of every triggering asset event that carries one."""
    out = []
    for asset in events:
        for event in events[asset]:
            value = (getattr(event, "extra", None) or {}).get("date")
            if value:
                out.append(dt.date.fromisoformat(str(value)[:10]))
    return out


def settings_for(context: Any) -> Settings:
    """Settings from env/YAML, with the run's Params applied where they name a setting."""
    params = context["params"]
    return load_settings().replace(**{k: params[k] for k in params if k in SETTING_PARAMS})


#: the readiness gate of a DAG that pins a run context: its XCom (``run``) is the context every later task uses
READY_TASK = "wait_for_data"


def run_context(context: Any, ready: dict[str, Any] | None = None) -> RunContext:
    """The run's :class:`~pipeline.context.RunContext`: the one the first task pinned (``ready``,
    its XCom: the nightly's champion version; pulled from :data:`READY_TASK` when not given, so it
    travels once instead of as an edge into every task) or, for a flow that pins nothing (no
    :data:`READY_TASK`), built from the task context (settings with the run's Params, DAG, date,
    ``lookback_days``). A pinned context of another run fails the task."""
    if ready is None and context["dag"].has_task(READY_TASK):
        ready = context["ti"].xcom_pull(task_ids=READY_TASK, map_indexes=-1)
        if not ready:
            raise AirflowFailException(f"no pinned run context: {READY_TASK} of this run pushed none")
    if ready is None:
        return RunContext.of(settings_for(context), context["dag"].dag_id, run_date(context),
                             lookback_days=int(context["params"].get("lookback_days", 1)))
    ctx = RunContext.from_xcom(settings_for(context), ready["run"])
    if ctx.day != run_date(context) or ctx.dag_id != context["dag"].dag_id:
        raise AirflowFailException(f"the pinned run context {ready['run']} is not this run's "
                                   f"({context['dag'].dag_id}, {run_date(context)})")
    return ctx


def check_conf(context: Any) -> None:
    """Refuse a run whose conf names a key that is not one of the DAG's Params (a typo
    would otherwise be ignored silently and the run use the default)."""
    conf = (context.get("dag_run") and context["dag_run"].conf) or {}
    known = set(context["dag"].params)
    unknown = sorted(set(conf) - known)
    if unknown:
        raise AirflowFailException(
            f"unknown conf key(s) {unknown} for {context['dag'].dag_id}; valid Params: {', '.join(sorted(known))}")


@contextlib.contextmanager
def data_errors_fail() -> Iterator[None]:
    """Turn a DataError into a failure without retries (AirflowFailException keeps the message)."""
    from pipeline.errors import DataError

    try:
        yield
    except DataError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def pipeline_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The wrapper of every churnflow task callable: a DataError fails the task without
    retries, and the task's wall time and own peak RSS are logged and saved as
    ``runs/<dag>/<date>/<task>/resources.json`` (:mod:`pipeline.resources`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **context: Any) -> Any:
        from pipeline.artifacts import run_dir
        from pipeline.resources import measured

        out = run_dir(settings_for(context), context["dag"].dag_id, run_date(context), context["ti"].task_id)
        with measured(context["ti"].task_id, out), data_errors_fail():
            return fn(*args, **context)

    return wrapper


@task(task_id="ingest")
@pipeline_task
def ingest(ready: dict[str, Any] | None = None, **context: Any) -> list[dict[str, Any]]:
    """Every lake input (six database tables and the event files) ingested and validated."""
    from pipeline.ingestion.steps import ingest_all_step

    check_conf(context)
    return ingest_all_step(run_context(context, ready))


def nightly_window(context: Any) -> tuple[dt.date, dt.date]:
    end = run_date(context)
    return end - dt.timedelta(days=int(context["params"].get("lookback_days", 1))), end


class DataReadySensor(BaseSensorOperator):
    """Waits until the night's landing partitions exist and hold rows and the source database
    is fresh (:mod:`pipeline.ingestion.readiness`), in ``reschedule`` mode so a waiting night holds no
    worker slot. Fails at once, naming the day(s), when later days have landed but these
    have not (waiting cannot bring them), or when its timeout passes. Once ready it pins the
    champion (checked readable) and pushes the window and the run context (``run``) that
    every later task uses."""

    def __init__(self, **kwargs: Any) -> None:
        settings = parse_settings()  # at parse time: the timeouts of the DAG file's one settings read
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", settings.readiness_poke_seconds)
        kwargs.setdefault("timeout", settings.readiness_timeout_minutes * 60)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._last: str = ""

    def poke(self, context: Any) -> bool | PokeReturnValue:
        from pipeline.ingestion import readiness

        check_conf(context)
        start, end = nightly_window(context)
        state = readiness.check(settings_for(context), start, end)
        self._last = state.message()
        if state.gap:
            raise AirflowFailException(self._last)
        if not state.ready:
            log.warning("%s; checking again in %ss (gives up after %ss)", self._last, self.poke_interval, self.timeout)
            return False
        log.info("%s", self._last)
        from pipeline.model.pinning import pin  # the registry: not at DAG parse time

        with data_errors_fail():  # a missing or corrupt champion fails the night here, before any ingest
            ctx = pin(settings_for(context), context["dag"].dag_id, end, lookback_days=(end - start).days)
        log.info("pinned model version %s for the whole run", ctx.model_version)
        return PokeReturnValue(True, {"window_start": str(start), "window_end": str(end),
                                      "source_latest": str(state.source_latest), "run": ctx.to_xcom()})

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(f"{self._last} (waited {self.timeout:.0f} s: readiness_timeout_minutes)") from exc


def common_params() -> dict[str, Param]:
    """The trigger-form Params every churnflow DAG has (from the settings' fields)."""
    return setting_params(parse_settings(), "horizon_days")


def smtp_settings(conn_id: str) -> SmtpSettings:
    """The SMTP server of the Airflow connection ``conn_id`` (its extras mean what they mean to
    the Airflow SMTP provider); no such connection fails the task without retries, saying how to
    create it."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipeline.monitoring.notify import SmtpSettings

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise AirflowFailException(
            f"no Airflow connection {conn_id!r} to send the report with: create it in the UI (Admin > Connections, "
            f"type smtp), with 'airflow connections add {conn_id} --conn-uri smtp://user:pass@host:587', or as the "
            f"environment variable AIRFLOW_CONN_{conn_id.upper()}; or trigger with send_email=false") from exc
    extra = conn.extra_dejson
    ssl = not extra.get("disable_ssl", False)
    return SmtpSettings(host=conn.host or "localhost", port=int(conn.port or (465 if ssl else 25)),
                        login=conn.login or None, password=conn.password or None, ssl=ssl,
                        starttls=not ssl and not extra.get("disable_tls", False), timeout=float(extra.get("timeout", 30)))
