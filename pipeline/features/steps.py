"""The feature steps the DAGs and the command line run (load, call, save; paths and counts
returned for XCom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.context import RunContext


def _rows(path: Path | str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def features_step(ctx: RunContext) -> dict[str, Any]:
    """Point-in-time features of every customer active at ``as_of = logical date``, for the
    population of the pinned model's own label (:func:`~pipeline.features.labels.settings_for_label`)."""
    from pipeline.features.build import write_features
    from pipeline.features.labels import settings_for_label

    out = ctx.dir("build_features") / "features.parquet"
    label = ctx.model.params.get("label") if ctx.model_version else None
    write_features(settings_for_label(ctx.settings, label), [ctx.day], out)
    return {"path": str(out), "rows": _rows(out), "as_of": str(ctx.day)}


def validate_features_step(ctx: RunContext, built: dict[str, Any]) -> dict[str, Any]:
    """The feature table's own expectation suite: a gate before training or scoring
    (:func:`~pipeline.ingestion.validate.validate_parquet_file`)."""
    from pipeline.ingestion.validate import validate_parquet_file

    result = validate_parquet_file("features", ctx.settings, ctx.key, Path(built["path"]))
    return {**built, "rejected": result.rejected_count}


def training_set_step(ctx: RunContext, *, snapshots: int | None = None) -> dict[str, Any]:
    """Features + labels at month-start snapshots whose label window closed before D
    (:func:`~pipeline.features.dataset.plan_snapshots`)."""
    from pipeline.features.dataset import build_training_set, plan_snapshots
    from pipeline.ingestion import lake

    settings = ctx.settings
    # the activity the history is measured on: the event files, or the payments of a business without them
    declared = settings.source_table_names
    activity = next((t for t in ("events", "payments", "subscriptions") if t in declared), "payments")
    dates = plan_snapshots(settings, lake.partition_dates(settings, activity), ctx.day, activity, snapshots)
    out = ctx.dir("build_training_set") / "training_set.parquet"
    build_training_set(settings, dates, ctx.day, out)
    return {"path": str(out), "rows": _rows(out), "snapshots": [str(d) for d in dates]}
