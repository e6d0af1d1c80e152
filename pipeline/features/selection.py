"""Which of the catalogue's features a model uses (:mod:`pipeline.features.catalogue`).

A feature group is used when it is enabled (``feature_groups``) and its source table is declared and
holds data in the lake; a feature whose optional input columns are null in every row of the lake is
left out (:func:`available_features`). The fairness segments a model can be judged by follow from its
features (:func:`fairness_segments`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.features.catalogue import FEATURES, GROUPS, inputs_of


def active_groups(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The feature groups a model is trained on, and why each other one is left out: a group
    is used when it is enabled (``feature_groups``) and its source table is declared
    (``source_tables``) and holds data in the lake (an empty table would only feed constants)."""
    from pipeline.ingestion.lake import partition_dates

    enabled, declared = settings.feature_group_names, settings.source_table_names
    active, left_out = [], {}
    for group, (table, _) in GROUPS.items():
        if group not in enabled:
            left_out[group] = "not enabled (feature_groups)"
        elif table not in declared:
            left_out[group] = f"its table {table} is not declared (source_tables)"
        elif not partition_dates(settings, table):
            left_out[group] = f"its table {table} holds no data in the lake"
        else:
            active.append(group)
    return active, left_out


def model_features(settings: Settings, groups: Sequence[str],
                   left_out: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The numeric and categorical feature columns of ``groups``, in catalogue order (without the
    features of ``left_out``)."""
    specs = [f for f in FEATURES if f.group in set(groups) and f.name not in (left_out or {})]
    return [f.name for f in specs if f.kind == "numeric"], [f.name for f in specs if f.kind == "categorical"]


def null_columns(settings: Settings, columns: Sequence[str]) -> list[str]:
    """Which of the contract columns ``columns`` ("table.column") hold no value in the lake (the
    source did not return them, or only nulls)."""
    counts = column_null_counts(settings, columns)
    return [c for c in columns if counts[c][1] >= counts[c][0]]


def column_null_counts(settings: Settings, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per contract column ``"table.column"``: the rows its table holds in the lake and how many
    of them hold no value in it (a column missing from the lake's files counts as null in every
    row; a table without files as ``(0, 0)``)."""
    from pipeline.ingestion.lake import duckdb_connection, lake_files

    out: dict[str, tuple[int, int]] = {}
    by_table: dict[str, list[str]] = {}
    for qualified in columns:
        table, _, column = qualified.partition(".")
        by_table.setdefault(table, []).append(column)
    with duckdb_connection(settings) as con:
        for table, cols in by_table.items():
            files = lake_files(settings, table, [(None, dt.date.max)])
            if not files:
                out.update({f"{table}.{c}": (0, 0) for c in cols})
                continue
            rel = con.read_parquet(files, hive_partitioning=False, union_by_name=True)
            have = [c for c in cols if c in rel.columns]
            rel.create_view("columns_checked")
            (row,) = con.execute("SELECT " + ", ".join(["count(*)", *(f'count("{c}")' for c in have)])
                                 + " FROM columns_checked").fetchall()
            rows, valued = int(row[0]), dict(zip(have, row[1:], strict=True))
            out.update({f"{table}.{c}": (rows, rows - int(valued.get(c, 0))) for c in cols})
    return out


#: fairness segments derived from a feature (the rest are the feature of that name)
DERIVED_SEGMENTS = {"age_band": "age"}


def fairness_segments(segments: Sequence[str], features: Sequence[str],
                      why_not: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The ``segments`` a model can be judged by (their column is one of its ``features``), and
    why each other one is skipped (``why_not``: feature -> reason it is not a model feature)."""
    usable, skipped = [], {}
    for segment in segments:
        column = DERIVED_SEGMENTS.get(segment, segment)
        if column in features:
            usable.append(segment)
        else:
            skipped[segment] = why_not.get(column, f"{column} is not a feature column")
    return usable, skipped


@dataclass(frozen=True)
class Available:
    """What a training run can use (:func:`available_features`)."""

    groups: list[str]
    #: group -> why it is left out (not enabled, table not declared or empty, every input null)
    left_out_groups: dict[str, str]
    #: feature of an active group -> why it is left out (its inputs null in every row)
    left_out_features: dict[str, str]
    numeric: list[str]
    categorical: list[str]


def available_features(settings: Settings) -> Available:
    """What a training run can use: the active groups, why each other group (and each feature of
    an active group whose inputs are all null) is left out, and the numeric and categorical
    columns. A group whose every feature is left out is left out itself."""
    groups, left_out = active_groups(settings)
    candidates = [f for f in FEATURES if f.group in set(groups)]
    wanted = sorted({c for f in candidates for c in inputs_of(f.name)})
    empty = set(null_columns(settings, wanted)) if wanted else set()
    dropped = {f.name: f"{', '.join(c for c in inputs_of(f.name) if c in empty)} absent or null in every row"
               for f in candidates if any(c in empty for c in inputs_of(f.name))}
    for group in list(groups):
        names = [f.name for f in candidates if f.group == group]
        if names and all(n in dropped for n in names):
            groups.remove(group)
            left_out[group] = "its columns " + ", ".join(sorted({c for n in names for c in inputs_of(n)})) + \
                " are null in every row (or absent from the source)"
            for n in names:
                dropped.pop(n)
    numeric, categorical = model_features(settings, groups, dropped)
    return Available(groups, left_out, dropped, numeric, categorical)

