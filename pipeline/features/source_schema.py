"""What a model version records of its source (the features' side of schema drift): per optional
source column its features are computed from (the catalogue's :data:`pipeline.features.catalogue.INPUTS`),
the features it feeds and its null share over the lake at training. The model stage writes it into
the version's ``params.json``; :mod:`pipeline.monitoring.schema_drift` compares each night with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the params.json key of a version's record (versions trained before it have none)
PARAMS_KEY = "source_schema"

def columns_needed(features: Iterable[str]) -> list[str]:
    """The optional source columns (``"table.column"``) the ``features`` are computed from."""
    from pipeline.features.catalogue import inputs_of

    return sorted({c for f in features for c in inputs_of(f)})


def training_record(features: Sequence[str], groups: Sequence[str],
                    counts: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """What a version records of its source (``params.json`` key :data:`PARAMS_KEY`): its
    feature groups, the source tables they read, and per optional column its ``features``
    (those of ``features`` computed from it), the lake's ``rows`` and its ``null_share``
    there (``counts``: ``"table.column"`` -> (rows, nulls), over the lake it was trained on)."""
    from pipeline.features.catalogue import GROUPS, inputs_of

    columns = {}
    for column in columns_needed(features):
        rows, nulls = counts.get(column, (0, 0))
        columns[column] = {"features": [f for f in features if column in inputs_of(f)], "rows": int(rows),
                           "null_share": round(nulls / rows, 6) if rows else 0.0}
    return {"feature_groups": list(groups), "tables": sorted({GROUPS[g][0] for g in groups if g in GROUPS}),
            "columns": columns}
