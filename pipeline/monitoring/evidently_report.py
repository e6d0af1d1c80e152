"""Evidently's visual data-drift report carrying churnflow's all-rows verdict.

Evidently's ``DataDriftPreset`` would test the rows it is shown (a sample) and count drift over
the columns it is shown (the e-mail copy shows some): its panels could then disagree with the
e-mail and the banner ("dataset drift detected: 10 of 10 columns" beside "no dataset drift: 11
of 39"). Here every column's test is the all-rows result of :func:`pipeline.monitoring.drift.
compute_drift` (a per-column Evidently stat test that returns it: same statistic, threshold and
verdict, its method named "... (all rows)"), and the dataset panel and the table's title count
every column of the summary, shown or not. The sample only draws the distributions.

Imported by :mod:`pipeline.monitoring.report` when it renders a page (Evidently takes seconds
to import).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.renderers.html_widgets import CounterData, counter
from evidently.presets import DataDriftPreset

from pipeline.monitoring.drift import CATEGORICAL, NUMERIC, DriftSummary, FeatureDrift

#: widget titles of Evidently's DataDriftPreset rendering that carry a dataset-level count
TABLE_TITLE_START = "Drift is detected for"


def all_rows_stattest(feature: FeatureDrift) -> StatTest:
    """An Evidently stat test (registered under a name of its own) that returns the column's
    all-rows statistic and verdict, whatever rows it is given."""
    test = StatTest(name=f"churnflow_all_rows:{feature.column}", display_name=f"{feature.method} (all rows)",
                    allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
                    default_threshold=feature.threshold)

    def result(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float) -> tuple[float, bool]:
        return feature.statistic, feature.drifted

    register_stattest(test, default_impl=result)
    return test


class AllRowsDriftPreset(DataDriftPreset):
    """``DataDriftPreset`` on the shown columns whose dataset-level widgets state the all-rows
    verdict over every column (the ``verdict_*`` fields, set before running)."""

    verdict_columns: int = 0
    verdict_drifted: int = 0
    verdict_share: float = 0.0
    verdict_dataset_drift: bool = False
    verdict_note: str = ""

    def __init__(self, summary: DriftSummary, note: str = "", **preset: Any) -> None:
        # Evidently's models take their fields before the base initialiser (immutable after it)
        self.verdict_columns, self.verdict_drifted = len(summary.features), len(summary.drifted_features)
        self.verdict_share, self.verdict_dataset_drift = summary.drift_share, summary.dataset_drift
        self.verdict_note = note
        super().__init__(**preset)

    def render(self, context: Any, child_widgets: Any = None) -> list[Any]:
        total, drifted = self.verdict_columns, self.verdict_drifted
        verdict = "detected" if self.verdict_dataset_drift else "NOT detected"
        out: list[Any] = []
        for widget in super().render(context, child_widgets):
            if widget.type == "counter":  # DatasetDriftMetric's two counters, over the shown columns: replaced
                if not out or out[-1].type != "counter":
                    out.append(counter(counters=[CounterData(
                        f"Dataset Drift is {verdict} (all rows, all {total} columns). Dataset drift detection "
                        f"threshold is {self.drift_share}", "Dataset Drift")], title=""))
                    out.append(counter(counters=[
                        CounterData.int("Columns", total), CounterData.int("Drifted Columns", drifted),
                        CounterData.float("Share of Drifted Columns", self.verdict_share, 3)], title=""))
                continue
            if str(widget.title or "").startswith(TABLE_TITLE_START):
                widget.title = (f"{TABLE_TITLE_START} {round(self.verdict_share * 100, 3)}% of columns ({drifted} "
                                f"out of {total}, all rows).{f' {self.verdict_note}' if self.verdict_note else ''}")
            out.append(widget)
        return out


def evidently_html(reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], summary: DriftSummary,
                   share_threshold: float, note: str = "") -> str:
    """Evidently's drift report page for the ``kinds`` columns of the two samples, every test
    and count being ``summary``'s (all rows)."""
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == NUMERIC],
        categorical_columns=[c for c, k in kinds.items() if k == CATEGORICAL],
    )
    columns = list(kinds)
    by_column = {f.column: f for f in summary.features}
    preset = AllRowsDriftPreset(
        summary, note, columns=columns, drift_share=share_threshold, include_tests=False,
        per_column_method={c: all_rows_stattest(by_column[c]) for c in columns},
        per_column_threshold={c: by_column[c].threshold for c in columns},
    )
    snapshot = Report([preset], include_tests=False).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    return str(snapshot.get_html_str(as_iframe=False))
