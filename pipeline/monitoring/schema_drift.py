"""Schema drift, as pure functions: the source columns a model version was trained with, against
what a night ingested.

Since the contract is open (an optional column may be absent from the source or null), a night
whose ``payments.amount`` was renamed away, whose event files lack ``duration_s``, or whose rows
hold NULL where training saw values, still ingests and scores: the features made from the column
are imputed (0, ``'unknown'``) where the model learnt from real values. This module makes that loud.

* At training, each new version records in its ``params.json`` (``source_schema``,
  :func:`training_record`) the feature groups and source tables it reads and, per optional source
  column its features are computed from (the catalogue's :data:`pipeline.features.catalogue.INPUTS`),
  the features it feeds and its null share over the lake it was trained on.
* Each night, :func:`find` compares those columns with the night's ingested batches (their
  per-column counts, :func:`night_counts`): a column the source did not return (absent, renamed)
  in any of tonight's rows, or null in a share of them above training's share plus
  ``schema_drift_null_margin`` (and significantly so: :data:`P_VALUE`), is a :class:`Finding`.
  :func:`with_importance` adds the share of the model's mean |SHAP| its features carry, which the
  ``schema_drift`` alert rule (:mod:`pipeline.monitoring.alerts`) grades.

Required columns are not checked here: a batch without one fails with its quarantine, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from pipeline.features.source_schema import PARAMS_KEY, columns_needed, training_record  # noqa: F401 (the record's side)

#: a null share above the allowed one must also be unlikely at the allowed share (one-sided binomial
#: p-value below this), so a night of three rows with two NULL birth years is not an alert
P_VALUE = 0.001
#: what a version without a record says (once a night: the log, monitoring.json and the e-mail)
NOT_RECORDED = ("source columns not recorded for this version (trained before schema-drift checks): tonight's "
                "columns are not compared with its training; the next trained version records them")


@dataclass(frozen=True)
class ColumnNight:
    """One optional column over tonight's ingested rows of its table."""

    rows: int
    nulls: int
    #: rows whose source did not return the column at all (read as null; counted in ``nulls`` too)
    absent: int = 0


def night_counts(validated: Iterable[Mapping[str, Any]]) -> dict[str, ColumnNight]:
    """``"table.column"`` -> tonight's counts, from the ingest batches' summaries
    (:func:`pipeline.ingestion.batch.ingest_batch`: their ``columns`` entry)."""
    out = {}
    for batch in validated:
        counts = batch.get("columns")
        if not counts:
            continue
        for column, nulls in counts["nulls"].items():
            out[f"{batch['table']}.{column}"] = ColumnNight(int(counts["rows"]), int(nulls),
                                                            int(counts.get("absent", {}).get(column, 0)))
    return out


@dataclass(frozen=True)
class Finding:
    """An optional column the model was trained with, absent or null beyond training tonight."""

    table: str
    column: str
    #: tonight's rows of the table, those without a value in the column, and those whose source lacked it
    rows: int
    nulls: int
    absent: int
    training_null_share: float
    #: the null share tolerated tonight: training's plus the margin (capped at 1)
    allowed_share: float
    #: the model's features computed from the column (imputed where it is null)
    features: tuple[str, ...]
    #: the share of the model's mean |SHAP| (on its training reference) those features carry; NaN: unknown
    shap_share: float = math.nan

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else math.nan

    def describe(self) -> str:
        """What happened to the column tonight, in one sentence (without the severity's consequence)."""
        source = "tonight's event files" if self.table == "events" else f"ingest_{self.table}.sql"
        if self.absent:
            what = (f"{self.name} is absent from {source} (not returned: renamed or dropped?) for "
                    + (f"all {self.rows:,}" if self.absent == self.rows else f"{self.absent:,} of the {self.rows:,}")
                    + f" {self.table} rows ingested tonight, read as null (null in {self.training_null_share:.1%} "
                    "of the rows the model was trained on)")
        else:
            what = (f"{self.name} is NULL in {self.nulls:,} of the {self.rows:,} {self.table} rows ingested tonight "
                    f"({self.null_share:.0%}; the model was trained with {self.training_null_share:.1%} null, "
                    f"{self.allowed_share:.0%} tolerated with schema_drift_null_margin)")
        share = "" if math.isnan(self.shap_share) else f", {self.shap_share:.0%} of the model's mean |SHAP|"
        return (f"{what}. Features affected ({len(self.features)}{share}): {', '.join(self.features)}: scored tonight from "
                "imputed values the model never saw")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "features": list(self.features), "null_share": self.null_share}


def find(record: Mapping[str, Any], night: Mapping[str, ColumnNight], margin: float,
         p_value: float = P_VALUE) -> list[Finding]:
    """The recorded columns (``record``: :func:`training_record`) that are absent from tonight's
    source in any row, or null in a share of tonight's rows above training's share + ``margin``
    and unlikely at that share (one-sided binomial test, ``p_value``). Columns without rows
    tonight (or of a table not ingested tonight) cannot tell and are not findings."""
    from scipy.stats import binom

    out = []
    for name, trained in sorted(record.get("columns", {}).items()):
        tonight = night.get(name)
        if tonight is None or tonight.rows == 0 or not trained.get("features"):
            continue
        before = float(trained.get("null_share", 0.0))
        allowed = min(1.0, before + margin)
        share = tonight.nulls / tonight.rows
        beyond = share > allowed and float(binom.sf(tonight.nulls - 1, tonight.rows, allowed)) < p_value
        if tonight.absent or beyond:
            table, _, column = name.partition(".")
            out.append(Finding(table, column, tonight.rows, tonight.nulls, tonight.absent, before, allowed,
                               tuple(trained["features"])))
    return out


def with_importance(findings: Sequence[Finding], mean_abs_shap: pd.Series) -> list[Finding]:
    """Each finding with the share of the model's total mean |SHAP| (``mean_abs_shap``: per
    feature, on its training reference) that its features carry (NaN when the total is 0)."""
    total = float(mean_abs_shap.clip(lower=0).sum())
    return [replace(f, shap_share=float(mean_abs_shap.reindex(list(f.features)).fillna(0.0).sum()) / total
                    if total > 0 else math.nan) for f in findings]


@dataclass(frozen=True)
class SchemaDrift:
    """A night's schema-drift check of the pinned model (what the ``schema_drift`` rule reads)."""

    model_version: str
    #: the version records its source columns (False: trained before the record; nothing checked)
    recorded: bool
    #: the recorded columns compared tonight
    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: said once in the e-mail's Model section and monitoring.json (e.g. :data:`NOT_RECORDED`)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "recorded": self.recorded, "checked": self.checked,
                "findings": [f.to_dict() for f in self.findings], "note": self.note}
