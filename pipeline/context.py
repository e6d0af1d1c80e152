"""One run of a flow, as every step sees it: built once, passed to each step.

A :class:`RunContext` holds the settings, the DAG, the logical date ``D``, the nightly
window ``[D - lookback_days, D)`` and, for a nightly run, the *pinned* champion version. The
nightly's first task pins the champion (:func:`pipeline.model.pinning.pin`: the model side
knows the registry, this module does not) and hands the context on through XCom
(:meth:`to_xcom` / :meth:`from_xcom`); every later task scores, reports and monitors with
exactly that version (:func:`pipeline.model.pinning.pinned_model`), even if a training run
promotes another one meanwhile.
Artifact paths (``runs/<dag>/<D>/<task>/``, local or ``artifacts_url``) are made here and only
here (:meth:`dir`).
Imports only the standard library and the config at module level: the DAG files import it
when they are parsed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings

if TYPE_CHECKING:
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
    #: what the registry said when the model was pinned (:func:`pipeline.model.serving.serving_facts`):
    #: the champion's history and the newest version's gate verdict, for the e-mail
    model_facts: dict[str, Any] | None = None
    #: the pinned model's churn definition (its params' ``label``), for the steps that build labels
    model_label: dict[str, Any] | None = None
    #: what a step loaded once for this context (the pinned version, its estimator): never compared
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @classmethod
    def of(cls, settings: Settings, dag_id: str, logical_date: str | dt.date, *, lookback_days: int = 1,
           model_version: str | None = None, model_facts: dict[str, Any] | None = None,
           model_label: dict[str, Any] | None = None) -> RunContext:
        return cls(settings, dag_id, _day(logical_date), int(lookback_days), model_version, model_facts, model_label)

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

    # ------------------------------------------------------------------ XCom
    def to_xcom(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "date": self.day.isoformat(), "lookback_days": self.lookback_days,
                "model_version": self.model_version, "model_facts": self.model_facts, "model_label": self.model_label}

    @classmethod
    def from_xcom(cls, settings: Settings, data: dict[str, Any]) -> RunContext:
        return cls.of(settings, data["dag_id"], data["date"], lookback_days=int(data.get("lookback_days", 1)),
                      model_version=data.get("model_version"), model_facts=data.get("model_facts"),
                      model_label=data.get("model_label"))


def _day(value: str | dt.date) -> dt.date:
    """A logical date given as a date, a datetime (its day) or an ISO string."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
