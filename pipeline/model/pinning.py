"""The run's model: the nightly pins today's champion once (:func:`pin`), every later step of the
run uses exactly that version (:func:`pinned_model`, :func:`pinned_estimator`), loaded once per
context. The model side of :class:`pipeline.context.RunContext`, which knows no registry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline.config import Settings
from pipeline.context import RunContext
from pipeline.model.registry import ModelVersion, RegistryError, check_champion, get_version
from pipeline.model.serving import serving_facts


def pin(settings: Settings, dag_id: str, logical_date: str | dt.date, *, lookback_days: int = 1) -> RunContext:
    """A run that uses today's champion version, pinned by number and checked now, before any
    work (its files match the checksums recorded at registration; metrics, params and model
    file readable): a missing or damaged model fails the run here."""
    champ = check_champion(settings)
    return RunContext.of(settings, dag_id, logical_date, lookback_days=lookback_days, model_version=champ.version,
                         model_facts=serving_facts(settings, champ), model_label=champ.params.get("label") or None)


def pinned_model(ctx: RunContext) -> ModelVersion:
    """The pinned champion version, from its verified local copy (params read once per context)."""
    if ctx.model_version is None:
        raise RegistryError(f"run {ctx.key} has no pinned model version: pin it with pipeline.model.pinning.pin")
    if "model" not in ctx.cache:
        ctx.cache["model"] = get_version(ctx.settings, ctx.model_version)
    model: ModelVersion = ctx.cache["model"]
    return model


def pinned_estimator(ctx: RunContext) -> Any:
    """The pinned model's fitted estimator (unpickled once per context)."""
    if "fitted" not in ctx.cache:
        ctx.cache["fitted"] = pinned_model(ctx).load()
    return ctx.cache["fitted"]


def run_frame(ctx: RunContext, path: Any) -> Any:
    """The Parquet table at ``path`` (the night's features, the pinned model's reference) as a
    DataFrame, read once per context: the steps of a run in one process (``run-nightly``) read
    the night's million feature rows once, not once each. Every call returns its own copy, so no
    step can change what another reads."""
    from pipeline import storage

    key = f"frame:{path}"
    if key not in ctx.cache:
        ctx.cache[key] = storage.read_parquet(storage.location(str(path)))
    return ctx.cache[key].copy()


def pinned_reference(ctx: RunContext) -> Any:
    """The pinned model's training reference (:attr:`ModelVersion.reference_path`), read once per
    context (:func:`run_frame`)."""
    return run_frame(ctx, pinned_model(ctx).reference_path)
