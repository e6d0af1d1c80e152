"""Expectation suites: the Great Expectations 1.x suite of each table, built from its JSON file.

Every lake table (and the feature table) has a suite ``expectations/<table>.json`` in GX's
own suite JSON format (``ExpectationSuite.to_json_dict()``: ``name``, ``expectations`` of
``{"type", "kwargs", "meta"}``); :mod:`pipeline.ingestion.validate` runs it on a batch.

Conventions in the suite files (so they can be extended without touching this module):

* **Run-time parameters.** A kwarg ``{"$PARAMETER": "window_start"}`` or
  ``{"$PARAMETER": "window_end"}`` (GX's own mechanism) takes the batch's ingestion window
  at run time. Every lake table's time column has ``min_value=window_start``,
  ``max_value=window_end``, ``strict_max=true``: no row from the future of its window (or
  from before it, which the lake's partition writer would refuse). Without a
  ``window_end`` the current UTC time is used (naive, like the contract's timestamps);
  without a ``window_start`` there is no lower bound.
* **Column globs.** An expectation whose ``meta`` has ``"column_glob": true`` is a template:
  its ``column`` kwarg is an ``fnmatch`` pattern, and the rule is applied to every column
  of the batch that matches it (none matching: no rule). ``features.json`` uses this for
  ``n_*`` and ``days_since_*`` (values >= 0), so new feature columns are covered as they
  appear.

The configuration adds a set rule for each declared closed vocabulary (``closed_vocabularies``,
:func:`closed_sets`). GX is imported lazily (it is slow to import) and the parsed suites are cached
per process.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.config import EXPECTATIONS_DIR, Settings
from pipeline.errors import DataError

if TYPE_CHECKING:
    from types import ModuleType

    from great_expectations import ExpectationSuite

WINDOW_START = "window_start"
WINDOW_END = "window_end"
#: ``meta`` flag of a template expectation whose ``column`` is a glob over the batch's columns
COLUMN_GLOB = "column_glob"
#: GX loggers that set their own level to INFO when imported
_GX_CHATTY_LOGGERS = ("great_expectations.data_context.types.base",)


def gx() -> ModuleType:
    """``great_expectations``, imported on first use with its info logging silenced."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations

    for name in _GX_CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return great_expectations


def suite_path(name: str) -> Path:
    """Where the suite for table ``name`` is stored."""
    return EXPECTATIONS_DIR / f"{name}.json"


def load_suite(name: str) -> ExpectationSuite:
    """The suite ``EXPECTATIONS_DIR/<name>.json`` as stored (cached per process: do not mutate)."""
    return build_suite(name, None)


@functools.lru_cache(maxsize=64)
def build_suite(name: str, columns: tuple[str, ...] | None,
                closed: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> ExpectationSuite:
    """The suite ``name``; with ``columns``, its column-glob templates expanded over them; with
    ``closed``, a set rule for each declared closed vocabulary (``closed_vocabularies``)."""
    return gx().ExpectationSuite(**_suite_spec(name, columns, closed))


#: the columns of one of :func:`suite_parts`' narrow frames
PART_COLUMNS = 8


@functools.lru_cache(maxsize=64)
def suite_parts(name: str, columns: tuple[str, ...], closed: tuple[tuple[str, tuple[str, ...]], ...] = (),
                ) -> tuple[tuple[tuple[str, ...] | None, ExpectationSuite], ...]:
    """:func:`build_suite` cut into parts, each with the columns of the frame it is to run on
    (None: every column): the rules of one column without a row condition go with their column,
    :data:`PART_COLUMNS` columns a part; the others (table rules, several columns, conditions)
    form one part on the whole frame. Same rules, same outcomes: GX copies the frame it
    validates for most rules, so on a wide table (the features: 40+ columns) narrow frames copy
    a fraction of the bytes."""
    spec = _suite_spec(name, columns, closed)
    whole: list[dict[str, Any]] = []
    by_column: dict[str, list[dict[str, Any]]] = {}
    for expectation in spec["expectations"]:
        kwargs = expectation.get("kwargs", {})
        column = kwargs.get("column")
        if (column in columns and expectation["type"].startswith("expect_column_") and not kwargs.get("row_condition")
                and not any(k in kwargs for k in ("column_A", "column_B", "column_list"))):
            by_column.setdefault(column, []).append(expectation)
        else:
            whole.append(expectation)
    names = list(by_column)
    chunks = [tuple(names[i:i + PART_COLUMNS]) for i in range(0, len(names), PART_COLUMNS)]
    parts: list[tuple[tuple[str, ...] | None, ExpectationSuite]] = [
        (chunk, gx().ExpectationSuite(**{**spec, "name": f"{spec.get('name', name)}.{i}",
                                         "expectations": [e for c in chunk for e in by_column[c]]}))
        for i, chunk in enumerate(chunks)]
    if whole or not parts:
        parts.append((None, gx().ExpectationSuite(**{**spec, "expectations": whole})))
    return tuple(parts)


def _suite_spec(name: str, columns: tuple[str, ...] | None,
                closed: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> dict[str, Any]:
    """The stored suite ``name`` as a dict, expanded as :func:`build_suite` says."""
    path = suite_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json"))
        raise FileNotFoundError(f"no expectation suite for table {name!r}: {path} does not exist (suites: {known})")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if columns is not None:
        spec["expectations"] = [e for template in spec["expectations"] for e in _expand(template, columns)]
    spec["expectations"] += [{"type": "expect_column_values_to_be_in_set",
                              "kwargs": {"column": column, "value_set": list(values)},
                              "meta": {"notes": "declared in closed_vocabularies"}} for column, values in closed]
    return dict(spec)


def _expand(expectation: dict[str, Any], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """A column-glob template as one expectation per matching column; others unchanged."""
    if not expectation.get("meta", {}).get(COLUMN_GLOB):
        return [expectation]
    pattern = expectation["kwargs"]["column"]
    return [
        {**expectation, "kwargs": {**expectation["kwargs"], "column": column}}
        for column in columns
        if fnmatch.fnmatchcase(column, pattern)
    ]


#: ``max_category_values`` when validating without settings
DEFAULT_MAX_CATEGORY_VALUES = 10_000


def run_parameters(window_start: dt.datetime | None, window_end: dt.datetime | None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Values of the suites' run-time parameters (the window in naive UTC, like the contract's
    timestamps; the categories' cardinality bound)."""
    end = _naive_utc(window_end) if window_end is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    start = _naive_utc(window_start) if window_start is not None else None
    if start is not None and start > end:
        raise ValueError(f"window_start {start} is after window_end {end}")
    return {WINDOW_START: start, WINDOW_END: end,
            "max_category_values": settings.max_category_values if settings else DEFAULT_MAX_CATEGORY_VALUES}


def closed_sets(settings: Settings | None, table: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The closed sets the configuration declares for ``table``'s category columns (a DataError
    names the setting when one is not a category column of the contract)."""
    from pipeline.ingestion.contract import TABLES

    declared = (settings.closed_sets if settings else {}).get(table, {})
    if table not in TABLES:  # the features' suite
        return ()
    spec = TABLES[table]
    for column in declared:
        kinds = {c.name: c.kind for c in spec.columns}
        if kinds.get(column) != "category":
            raise DataError(f"config closed_vocabularies: {table}.{column} is not a category column of the contract "
                            f"(the category columns of {table}: "
                            f"{', '.join(c for c, k in kinds.items() if k == 'category') or 'none'})")
    return tuple(sorted(declared.items()))


def _naive_utc(value: dt.datetime) -> dt.datetime:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()

