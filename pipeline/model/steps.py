"""The model steps the DAGs and the command line run: train and register (through the gate),
score a night with the pinned version, publish the night's scores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import storage
from pipeline.config import Settings
from pipeline.context import RunContext
from pipeline.model.gate import TrainResult
from pipeline.model.pinning import pinned_estimator, pinned_model, pinned_reference, run_frame
from pipeline.storage import Location


def train_and_register(settings: Settings, training_set: Location, *, training_date: str,
                       min_improvement: float | None = None) -> TrainResult:
    """Train on a training set (:func:`pipeline.model.train.train`), register the model as a new,
    immutable version and serve it only if it clears the gate against the serving champion
    (:func:`pipeline.model.publish.register_and_gate`): a rerun of a date is no exception. The
    version records the source columns it was trained with (:func:`pipeline.model.publish.source_schema`)."""
    from pipeline.features.source_schema import PARAMS_KEY
    from pipeline.model import tracking
    from pipeline.model.publish import register_and_gate, source_schema
    from pipeline.model.train import train

    with tracking.training_run(settings, settings.model_name, training_date):  # MLflow logs it as it happens
        trained = train(settings, training_set)
        trained.params[PARAMS_KEY] = source_schema(settings, trained.params)
        return register_and_gate(settings, trained, training_date=training_date,
                                 min_improvement=settings.promotion_min_improvement if min_improvement is None
                                 else min_improvement)


def train_step(ctx: RunContext, training_set: dict[str, Any]) -> dict[str, Any]:
    """:func:`train_and_register` as of the run's date; the outcome also as ``train/result.json``."""
    from pipeline.artifacts import write_text

    summary = train_and_register(ctx.settings, storage.location(training_set["path"]),
                                 training_date=ctx.day.isoformat()).to_dict()
    write_text(json.dumps(summary, indent=2, default=str), ctx.dir("train") / "result.json")
    return summary


def train_table_step(settings: Settings, table: Path, label: str, *, id_column: str | None = None,
                     drop: Sequence[str] = (), positive: str | None = None) -> TrainResult:
    """``train-table``: a model of any labelled customer table, registered under
    ``<model_name>-table`` (never the pipeline's champion)."""
    import datetime as dt

    from pipeline.model import registry, tracking
    from pipeline.model.publish import register_and_gate
    from pipeline.model.train import train_table

    name, today = registry.table_model_name(settings), dt.datetime.now(dt.UTC).date().isoformat()
    with tracking.training_run(settings, name, today):  # MLflow logs it as it happens
        trained = train_table(settings, Path(table), label, id_column=id_column, drop=drop, positive=positive)
        return register_and_gate(settings, trained, training_date=today, name=name)


def score_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """The pinned model's scores of the night's features (the night's Parquet artifact), or of
    one partition's (in its own folder: :func:`combine_scores` makes them the night's)."""
    from pipeline.features.partitions import Part
    from pipeline.model.score import score

    part = Part.from_dict(features["part"]) if "part" in features else None
    out = ctx.dir("score") / (part.name if part else "") / "scores.parquet"
    scored = score(ctx.settings, pinned_model(ctx), pinned_estimator(ctx), storage.location(features["path"]), ctx.day,
                   out, features=run_frame(ctx, features["path"]), reference=pinned_reference(ctx)).to_dict()
    return {**scored, "part": part.to_dict()} if part else scored


def combine_scores(ctx: RunContext, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The partitions' scores as the night's one scores file, ordered as the features, with the
    risk bands decided over all of them (the campaign's capacity is the night's, not a
    partition's): the same file whatever ``partitions``."""
    from pipeline.artifacts import write_parquet
    from pipeline.features.steps import sorted_rows
    from pipeline.model.score import ScoreResult, high_risk_share, risk_bands

    if len(parts) == 1 and "part" not in parts[0]:
        return parts[0]
    out = ctx.dir("score") / "scores.parquet"
    scores = sorted_rows([storage.location(p["path"]) for p in parts], ["as_of", "customer_id"]).to_pandas()
    threshold = float(parts[0]["threshold"])
    scores["risk_band"] = risk_bands(scores, threshold, ctx.settings.campaign_daily_capacity)
    write_parquet(scores, out)
    return {**ScoreResult(out, len(scores), pinned_model(ctx).version, high_risk_share(scores["churn_probability"], threshold),
                          threshold).to_dict(), "partitions": len(parts)}


def score_challenger_step(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """The challenger in shadow (:func:`pipeline.model.serving.challenger_number`): its scores of
    the night's (combined) features, as ``score_challenger/scores.parquet`` and the night's
    ``challenger_scores`` rows, beside the champion's and never the campaign. No challenger, or
    one that cannot be loaded or cannot score these features, is said (``version`` None and the
    ``reason``, logged) and the night goes on."""
    import logging

    import pandas as pd

    from pipeline.artifacts import write_parquet
    from pipeline.errors import DataError
    from pipeline.model import registry
    from pipeline.model.score import score_frame
    from pipeline.model.serving import challenger_number
    from pipeline.results import CHALLENGER_SCORES, night, replace_rows

    log = logging.getLogger(__name__)
    settings, champion = ctx.settings, pinned_model(ctx)
    out: dict[str, Any] = {"version": None, "champion_version": champion.version, "rows": 0}
    number, reason = challenger_number(settings, champion.number)
    if number is not None:
        try:
            model = registry.check_version(settings, number)
            fitted = model.load()
            feats = run_frame(ctx, features["path"])
            scores = score_frame(fitted, feats, model.feature_columns, model.version, 0.5, 0, bands=False)
        except (DataError, ValueError, KeyError) as exc:  # a RegistryError is a DataError
            reason = f"{registry.label(number)} cannot score tonight's features: {exc}"
            number = None
    if number is None:
        # a rerun of the night without a challenger leaves it no challenger rows
        replace_rows(settings, CHALLENGER_SCORES, pd.DataFrame(), "as_of", night(ctx.day))
        log.info("score_challenger %s: no challenger: %s", ctx.day, reason)
        return {**out, "reason": reason}
    rows = scores[["as_of", "customer_id", "churn_probability", "model_version"]].assign(
        champion_version=champion.version)
    path = ctx.dir("score_challenger") / "scores.parquet"
    write_parquet(rows, path)
    replace_rows(settings, CHALLENGER_SCORES, rows, "as_of", night(ctx.day))
    log.info("score_challenger %s: %d customers with the challenger %s (%s) beside the champion %s -> table %s",
             ctx.day, len(rows), model.version, reason, champion.version, CHALLENGER_SCORES.name)
    return {**out, "version": model.version, "reason": reason, "rows": len(rows), "path": str(path)}


def publish_step(ctx: RunContext, scores: dict[str, Any]) -> dict[str, Any]:
    """The night's scores become its ``churn_scores`` rows: the last write of a night, after
    its report and monitoring, so a night that fails half-way (a full disk) publishes no scores."""
    from pipeline.model.score import publish_scores
    from pipeline.results import SCORES

    rows = publish_scores(ctx.settings, storage.location(scores["path"]), ctx.day)
    return {"table": SCORES.name, "rows": rows, "as_of": str(ctx.day)}
