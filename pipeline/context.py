"""One run of a flow, as every step sees it: built once, passed to each step.

A :class:`RunContext` holds the settings, the DAG, the logical date ``D``, the nightly
window ``[D - lookback_days, D)`` and, for a nightly run, the *pinned* champion version. The
nightly's first task pins the champion (:meth:`RunContext.pinned`) and hands the context on
through XCom (:meth:`to_xcom` / :meth:`from_xcom`); every later task scores, reports and
monitors with exactly that version, even if a training run promotes another one meanwhile.
Artifact paths (``runs/<dag>/<D>/<task>/``, local or ``artifacts_url``) are made here and only
here (:meth:`dir`).
Imports only the standard library and the config at module level: the DAG files import it
when they are parsed.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.model.registry import ModelVersion
    from pipeline.storage import Location

TRAINING_DAG = "churn_training"
NIGHTLY_DAG = "churn_nightly"


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    dag_id: str
    day: dt.date
    #: the nightly window is [day - lookback_days, day)
    lookback_days: int = 1
    #: the champion version this run uses (pinned by the nightly's first task); None: none pinned
    model_version: str | None = None
    #: what the registry said when the model was pinned (:func:`pipeline.model.registry.serving_facts`):
    #: the champion's history and the newest version's gate verdict, for the e-mail
    model_facts: dict[str, Any] | None = None

    @classmethod
    def of(cls, settings: Settings, dag_id: str, logical_date: str | dt.date, *, lookback_days: int = 1,
           model_version: str | None = None, model_facts: dict[str, Any] | None = None) -> RunContext:
        return cls(settings, dag_id, _day(logical_date), int(lookback_days), model_version, model_facts)

    @classmethod
    def pinned(cls, settings: Settings, dag_id: str, logical_date: str | dt.date, *,
               lookback_days: int = 1) -> RunContext:
        """A run that uses today's champion version, pinned by number and checked now, before any
        work (its files match the checksums recorded at registration; metrics, params and model
        file readable): a missing or damaged model fails the run here."""
        from pipeline.model.registry import check_champion, serving_facts

        champ = check_champion(settings)
        return cls.of(settings, dag_id, logical_date, lookback_days=lookback_days, model_version=champ.version,
                      model_facts=serving_facts(settings, champ))

    # ------------------------------------------------------------------ identity and paths
    @property
    def key(self) -> str:
        """``<dag>__<D>``: names the run's quarantine and staging files."""
        return f"{self.dag_id}__{self.day.isoformat()}"

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        return self.day - dt.timedelta(days=self.lookback_days), self.day

    def dir(self, task: str, *, day: dt.date | None = None) -> Location:
        """The artifact folder of ``task`` in this run (or, with ``day``, in this DAG's run of that date):
        a local folder, or a prefix on the object store ``artifacts_url`` names."""
        from pipeline.artifacts import run_dir  # pandas/pyarrow: not at DAG parse time

        return run_dir(self.settings, self.dag_id, day or self.day, task)

    # ------------------------------------------------------------------ the pinned model
    @functools.cached_property
    def model(self) -> ModelVersion:
        """The pinned champion version, from its verified local copy (params read once per context)."""
        from pipeline.model.registry import RegistryError, get_version

        if self.model_version is None:
            raise RegistryError(f"run {self.key} has no pinned model version: build it with RunContext.pinned")
        return get_version(self.settings, self.model_version)

    @functools.cached_property
    def fitted(self) -> Any:
        """The pinned model's fitted estimator (unpickled once per context)."""
        return self.model.load()

    # ------------------------------------------------------------------ XCom
    def to_xcom(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "date": self.day.isoformat(), "lookback_days": self.lookback_days,
                "model_version": self.model_version, "model_facts": self.model_facts}

    @classmethod
    def from_xcom(cls, settings: Settings, data: dict[str, Any]) -> RunContext:
        return cls.of(settings, data["dag_id"], data["date"], lookback_days=int(data.get("lookback_days", 1)),
                      model_version=data.get("model_version"), model_facts=data.get("model_facts"))


def _day(value: str | dt.date) -> dt.date:
    """A logical date given as a date, a datetime (its day) or an ISO string."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
