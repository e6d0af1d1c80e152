"""Quarantine: the rows a validation rejected, kept with their reason.

A batch's rejected rows (:mod:`pipeline.ingestion.validate`) are written to one Parquet file per
table and run, ``<quarantine_dir>/<table>/<run_key>.parquet``, with two more columns:
``_reason`` (``"payments.amount: expect_column_values_to_be_between(min_value=0) ; ..."``) and
``_rules`` (``"amount:expect_column_values_to_be_between;status:..."``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline.artifacts import write_parquet
from pipeline.config import Settings

if TYPE_CHECKING:
    import pandas as pd

REASON_COLUMN = "_reason"
RULES_COLUMN = "_rules"
REASON_SEP = " ; "
RULES_SEP = ";"


class Rejections(Protocol):
    """What :func:`quarantine` keeps: a table's rejected rows (a
    :class:`~pipeline.ingestion.validate.ValidationResult`)."""

    @property
    def table(self) -> str: ...

    @property
    def rejected(self) -> pd.DataFrame: ...


def quarantine_path(settings: Settings, table: str, run_key: str) -> Path:
    """``<quarantine_dir>/<table>/<run_key>.parquet``."""
    if not run_key or Path(run_key).name != run_key:
        raise ValueError(f"run_key must be a plain file name, got {run_key!r}")
    return settings.quarantine_dir / table / f"{run_key}.parquet"


def quarantine(result: Rejections, settings: Settings, run_key: str) -> Path | None:
    """Write the rejected rows atomically to :func:`quarantine_path`; None if there are none.

    A rerun with the same ``run_key`` replaces the file (and removes it when it rejects nothing).
    """
    path = quarantine_path(settings, result.table, run_key)
    if result.rejected.empty:
        path.unlink(missing_ok=True)
        return None
    return write_parquet(result.rejected, path)


