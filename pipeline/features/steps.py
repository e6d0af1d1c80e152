"""The feature steps the DAGs and the command line run (load, call, save; paths and counts
returned for XCom)."""

from __future__ import annotations

from typing import Any

from pipeline import storage
from pipeline.context import RunContext
from pipeline.features.partitions import Part
from pipeline.storage import Location


def _rows(path: Location) -> int:
    with storage.parquet_file(path) as file:
        return int(file.metadata.num_rows)


def features_step(ctx: RunContext, part: Part | None = None) -> dict[str, Any]:
    """Point-in-time features of every customer active at ``as_of = logical date``, for the
    population of the pinned model's own label (:func:`~pipeline.features.labels.settings_for_label`);
    with ``part`` (of more than one), that customer bucket's only, in its own folder."""
    from pipeline.features.build import write_features
    from pipeline.features.labels import settings_for_label

    split = part is not None and part.count > 1
    out = ctx.dir("build_features") / (part.name if split and part else "") / "features.parquet"
    label = ctx.model_label
    write_features(settings_for_label(ctx.settings, label), [ctx.day], out, part=part if split else None)
    built: dict[str, Any] = {"path": str(out), "rows": _rows(out), "as_of": str(ctx.day)}
    if split and part:
        built["part"] = part.to_dict()
    return built


def validate_features_step(ctx: RunContext, built: dict[str, Any]) -> dict[str, Any]:
    """The feature table's own expectation suite: a gate before training or scoring
    (:func:`~pipeline.ingestion.validate.validate_parquet_file`); a partition's rejected rows
    go to a quarantine file of its own."""
    from pipeline.ingestion.validate import validate_parquet_file

    key = f"{ctx.key}__{Part.from_dict(built['part']).name}" if "part" in built else ctx.key
    result = validate_parquet_file("features", ctx.settings, key, storage.location(built["path"]))
    return {**built, "rejected": result.rejected_count}


def combine_features(ctx: RunContext, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The partitions' feature rows as the night's one feature table, in the order one
    unpartitioned build writes them (as_of, customer_id): the same file whatever ``partitions``."""
    if len(parts) == 1 and "part" not in parts[0]:
        return parts[0]
    out = ctx.dir("build_features") / "features.parquet"
    concat_sorted([storage.location(p["path"]) for p in parts], out, ["as_of", "customer_id"])
    return {"path": str(out), "rows": _rows(out), "as_of": str(ctx.day),
            "rejected": sum(int(p.get("rejected", 0)) for p in parts), "partitions": len(parts)}


def sorted_rows(paths: list[Location], keys: list[str]) -> Any:
    """The ``paths``' rows as one Arrow table sorted by ``keys``."""
    import pyarrow as pa

    table = pa.concat_tables([storage.read_arrow(p) for p in paths], promote_options="default")
    return table.sort_by([(k, "ascending") for k in keys])


def concat_sorted(paths: list[Location], out: Location, keys: list[str]) -> Location:
    """One Parquet file of the ``paths``' rows sorted by ``keys`` (written atomically)."""
    import pyarrow.parquet as pq

    from pipeline.artifacts import atomic_path

    table = sorted_rows(paths, keys)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out


def training_set_step(ctx: RunContext, *, snapshots: int | None = None) -> dict[str, Any]:
    """Features + labels at month-start snapshots whose label window closed before D
    (:func:`~pipeline.features.dataset.plan_snapshots`)."""
    from pipeline.features.dataset import build_training_set, history_table, plan_snapshots
    from pipeline.ingestion import lake

    settings = ctx.settings
    # the activity the history is measured on: the event files when the model reads them, else the payments
    activity = history_table(settings)
    dates = plan_snapshots(settings, lake.partition_dates(settings, activity), ctx.day, activity, snapshots)
    out = ctx.dir("build_training_set") / "training_set.parquet"
    build_training_set(settings, dates, ctx.day, out)
    return {"path": str(out), "rows": _rows(out), "snapshots": [str(d) for d in dates]}
