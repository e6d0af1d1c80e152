"""The dashboard of nights: an Evidently workspace with one project per model name and one
snapshot per night, read with Evidently's own UI (``evidently ui``, ``make dashboard``).

A night's snapshot holds the figures the night published in the results store, nothing
recomputed: the drift share of the features and the highest PSIs (``drift_metrics``, all rows,
the same verdict as the e-mail), the score distribution and the at-risk share (``churn_scores``,
``prediction_drift``), ROC-AUC / PR-AUC / recall on matured labels (``model_performance``), the
performance estimated before the labels mature with its band and, once they did, the realised
value (``performance_estimates``; the night whose labels matured is added again that night),
the fairness ratios (``fairness_metrics``) and the alerts raised, by severity (``alerts``).
Each figure is one :class:`NightFigure` metric, so every panel is a series over the nights.
Because the snapshot is built from the results store, any night can be (re)added later
(``python -m pipeline dashboard --rebuild``); a rerun of a night replaces its snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValue, SingleValueCalculation, SingleValueMetric
from evidently.legacy.renderers.html_widgets import CounterData, counter
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.monitoring.alerts import SEVERITIES, SUPPRESSED

log = logging.getLogger(__name__)

#: the Evidently metric type of every churnflow figure (the UI's panels select on it)
METRIC_TYPE = "ChurnflowNightFigure"
TAG = "nightly"
SCORE_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


class NightFigure(SingleValueMetric):
    """One figure of a night as published in the results store: ``figure`` names what it is
    (``drifted_pct``, ``psi``, ``score``, ``at_risk_pct``, ``matured``, ``fairness_ratio``,
    ``alerts``), ``label`` which one (a feature, a statistic, a group, a severity)."""

    figure: str
    label: str = ""

    class Config:
        type_alias = f"evidently:metric_v2:{METRIC_TYPE}"


class NightFigureCalculation(SingleValueCalculation[NightFigure]):
    def calculate(self, context: Any, current_data: Dataset, reference_data: Dataset | None) -> SingleValue:
        value = float(current_data.as_dataframe()[column_name(self.metric.figure, self.metric.label)].iloc[0])
        result = self.result(value)
        result.widget = [counter(counters=[CounterData.float(self.display_name(), value, 4)], title="")]
        return result

    def display_name(self) -> str:
        return f"{self.metric.figure.replace('_', ' ')}: {self.metric.label}" if self.metric.label else \
            self.metric.figure.replace("_", " ")


def column_name(figure: str, label: str) -> str:
    return f"{figure}|{label}"


@dataclass(frozen=True)
class Figure:
    figure: str
    label: str
    value: float


def night_figures(settings: Settings, day: dt.date | str) -> tuple[list[Figure], str]:
    """The figures night ``day`` published in the results store, and its model version.

    A ValueError names the night when it has no drift rows (the night did not run as far as
    its drift step); the other figures are left out when their table has no row that night
    (matured labels exist only ``horizon`` days after the first night, fairness needs segments).
    """
    day = as_date(day)
    drift = results.read(settings, results.DRIFT, day, day)
    if drift.empty:
        raise ValueError(f"night {day}: no drift_metrics rows in the results store (run the night first)")
    version = str(drift["model_version"].iloc[0])
    out = [Figure("drifted_pct", "", 100.0 * float(drift["drifted"].mean())),
           Figure("drifted_features", "", float(drift["drifted"].sum())),
           Figure("features_checked", "", float(len(drift)))]
    importance = results.read(settings, results.IMPORTANCE, day, day)
    if not importance.empty:  # the drift the alerts judge: weighed by the model's mean |SHAP| (None: importance off)
        from pipeline.monitoring.weighting import weigh

        psi = dict(zip(drift["feature"], drift["psi"], strict=True))
        shap = dict(zip(importance["feature"], importance["reference_mean_abs_shap"], strict=True))
        weight = weigh(list(drift.loc[drift["drifted"].astype(bool), "feature"]), psi, shap,
                       min_share=settings.drift_min_importance_share, psi_warning=settings.psi_warning)
        out.append(Figure("drifted_shap_pct", "", 100.0 * weight.drifted_share))
    top = drift.dropna(subset=["psi"]).sort_values(["psi", "feature"], ascending=[False, True])
    out += [Figure("psi", str(r.feature), float(r.psi))
            for r in top.head(settings.dashboard_top_features).itertuples()]

    scores = results.read(settings, results.SCORES, day, day)["churn_probability"].to_numpy(dtype=float)
    if len(scores):
        out.append(Figure("scored", "", float(len(scores))))
        out.append(Figure("score", "mean", float(scores.mean())))
        out += [Figure("score", name, float(np.quantile(scores, q))) for name, q in SCORE_QUANTILES.items()]
    prediction = results.read(settings, results.PREDICTION, day, day)
    if not prediction.empty:
        out.append(Figure("at_risk_pct", "", 100.0 * float(prediction["high_risk_share"].iloc[0])))
        psi = prediction["psi_vs_reference"].iloc[0]
        if pd.notna(psi):
            out.append(Figure("score_psi", "", float(psi)))
    performance = results.read(settings, results.PERFORMANCE, day, day)
    if not performance.empty:
        row = performance.iloc[0]
        out += [Figure("matured", m, float(row[m])) for m in ("roc_auc", "pr_auc", "recall") if pd.notna(row[m])]
    out += estimate_figures(settings, day)
    fairness = results.read(settings, results.FAIRNESS, day, day).dropna(subset=["positive_rate_ratio"])
    out += [Figure("fairness_ratio", f"{r.segment}={r.group}", float(r.positive_rate_ratio))
            for r in fairness.itertuples()]
    alerts = results.read(settings, results.ALERTS, day, day)
    raised = alerts[alerts["status"] != SUPPRESSED]
    out += [Figure("alerts", s, float((raised["severity"] == s).sum())) for s in SEVERITIES]
    return out, version


#: the estimated metrics' figures (``estimated_<metric>``), each labelled estimate, lower, upper, holdout, realised
ESTIMATED = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "precision_at_capacity": "precision at capacity"}


def estimate_figures(settings: Settings, day: dt.date) -> list[Figure]:
    """Night ``day``'s estimated performance (``performance_estimates``): per metric the estimate,
    its band, the holdout baseline and, once the night's labels matured, the realised value."""
    rows = results.read(settings, results.PERFORMANCE_ESTIMATES, day, day)
    if rows.empty:
        return []
    row = rows.iloc[0]
    out = []
    for m in ESTIMATED:
        values = {"estimate": row[m], "lower": row[f"{m}_lower"], "upper": row[f"{m}_upper"],
                  "holdout": row.get(f"baseline_{m}"), "realised": row[f"realised_{m}"]}
        out += [Figure(f"estimated_{m}", k, float(v)) for k, v in values.items() if v is not None and pd.notna(v)]
    return out


def matured_tonight(settings: Settings, day: dt.date | str) -> list[dt.date]:
    """The nights whose estimate got its realised metrics on night ``day`` (their snapshots are
    added again, so each night's point shows estimate and realised side by side)."""
    rows = results.read(settings, results.PERFORMANCE_ESTIMATES)
    if rows.empty:
        return []
    done = pd.to_datetime(rows["realised_on"]).dt.date == as_date(day)
    return [as_date(d) for d in rows.loc[done, "run_date"].dt.date]


def night_snapshot(day: dt.date | str, figures: list[Figure], model_version: str) -> Any:
    """The Evidently snapshot of one night: a :class:`NightFigure` per figure, timestamped at
    the night (the dashboard's time axis), tagged ``nightly`` with the night and model version."""
    day = as_date(day)
    row = pd.DataFrame([{column_name(f.figure, f.label): f.value for f in figures}])
    dataset = Dataset.from_pandas(row, data_definition=DataDefinition(numerical_columns=list(row.columns)))
    report = Report([NightFigure(figure=f.figure, label=f.label) for f in figures], include_tests=False)
    return report.run(dataset, None, timestamp=results.night(day), name=f"night {day}",
                      metadata={"night": day.isoformat(), "model_version": model_version}, tags=[TAG])


def _figure(figure: str, legend: str, **labels: str) -> PanelMetric:
    return PanelMetric(metric=METRIC_TYPE, metric_labels={"figure": figure, **labels}, legend=legend)


def panels() -> list[DashboardPanelPlot]:
    """The project's panels: tonight's headline counters, then each figure over the nights."""
    return [
        counter_panel("Features drifted (last night)", [_figure("drifted_features", "features drifted")],
                      description="all rows vs the training reference; the e-mail's verdict", size="half"),
        counter_panel("At-risk customers, % (last night)", [_figure("at_risk_pct", "% at or above the threshold")],
                      description="the campaign's candidates among the scored customers", size="half"),
        line_plot_panel("Features drifted, %", [_figure("drifted_pct", "% of the model's features")],
                        description="features whose drift test failed, all rows vs the training reference",
                        size="half"),
        line_plot_panel("Drift in the features the model uses, % of its mean |SHAP|",
                        [_figure("drifted_shap_pct", "% of the model's mean |SHAP| in drifted features it uses")],
                        description="the importance-weighted drift share the data_drift alert judges (drift only in "
                                    "features the model barely uses is an info note, not counted)", size="half"),
        line_plot_panel("Highest PSI features", [_figure("psi", "{{label}}")],
                        description="each night's features with the highest PSI vs the training reference",
                        size="half"),
        line_plot_panel("Churn probability distribution", [_figure("score", "{{label}}")],
                        description="mean and quantiles of each night's scores", size="half"),
        line_plot_panel("At-risk customers, %", [_figure("at_risk_pct", "% at or above the threshold")],
                        description="the share the campaign threshold selects each night", size="half"),
        line_plot_panel("Matured labels: ROC-AUC, PR-AUC, recall", [_figure("matured", "{{label}}")],
                        description="the scores of the night one horizon earlier against what happened (from the "
                                    "first night + horizon on)", size="half"),
        *(line_plot_panel(f"Estimated {name} before the labels mature", [_figure(f"estimated_{m}", "{{label}}")],
                          description="from the night's calibrated scores: the estimate, its band (lower, upper), the "
                                      "holdout and, once the night's labels matured, the realised value", size="half")
          for m, name in ESTIMATED.items()),
        line_plot_panel("Fairness: positive-rate ratio by group", [_figure("fairness_ratio", "{{label}}")],
                        description="each group's at-risk rate over its segment's highest (80% rule at 0.8)",
                        size="half"),
        bar_plot_panel("Alerts raised, by severity", [_figure("alerts", "{{label}}")], stacked=True, size="half"),
    ]


def open_workspace(location: str) -> Any:
    """The Evidently workspace at ``location``: a running UI's URL or a local folder (created)."""
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    if location.startswith(("http://", "https://")):
        return RemoteWorkspace(location)
    return Workspace.create(location)


def ensure_project(workspace: Any, name: str, *, reset_panels: bool = False) -> Any:
    """The project called ``name`` (created with its panels when absent)."""
    found = workspace.search_project(name)
    project = found[0] if found else workspace.create_project(
        name, description="churn scores, drift, matured-label performance and fairness, one snapshot per night")
    if not found or reset_panels:
        layout = panels()
        workspace.save_dashboard(project.id, DashboardModel(
            tabs=[DashboardTabModel(title="Nights", panels=[p.id for p in layout])], panels=layout))
    return project


def night_snapshot_id(project_id: Any, day: dt.date) -> uuid.UUID:
    """The snapshot id of night ``day`` in a local workspace: the same for every run of the night,
    so a rerun rewrites that night's file and leaves no other behind."""
    return uuid.uuid5(uuid.UUID(str(project_id)), f"churnflow night {day.isoformat()}")


def add_night(settings: Settings, day: dt.date | str) -> dict[str, Any]:
    """Add night ``day``'s snapshot (from the results store) to the dashboard, replacing the one
    a previous run of that night added."""
    from evidently.ui.workspace import Workspace

    day = as_date(day)
    figures, version = night_figures(settings, day)
    snapshot = night_snapshot(day, figures, version)
    workspace = open_workspace(settings.dashboard_location)
    project = ensure_project(workspace, settings.dashboard_project)
    keep = night_snapshot_id(project.id, day) if isinstance(workspace, Workspace) else None
    replaced = 0
    for snapshot_id in workspace.list_runs(project.id):
        earlier = workspace.get_run(project.id, snapshot_id)
        if earlier is not None and earlier.metadata.get("night") == day.isoformat():
            replaced += 1
            if str(snapshot_id) != str(keep):
                workspace.delete_run(project.id, snapshot_id)
    if keep is not None:
        # Evidently's own writer, in place: a running `evidently ui` watches for this file (its watcher
        # ignores a file renamed into place)
        workspace.state.write_snapshot(project.id, keep, snapshot.to_snapshot_model())
        snapshot_id = str(keep)
    else:
        snapshot_id = str(workspace.add_run(project.id, snapshot).id)
    log.info("dashboard %s: %d figures in project %r of %s%s", day, len(figures), settings.dashboard_project,
             settings.dashboard_location, f" (replaced {replaced})" if replaced else "")
    return {"workspace": settings.dashboard_location, "project_id": str(project.id), "snapshot_id": snapshot_id,
            "figures": len(figures), "replaced": replaced}


def published_nights(settings: Settings) -> list[dt.date]:
    """The nights with drift rows in the results store, oldest first."""
    import sqlalchemy as sa

    with results.results_engine(settings).connect() as conn:
        rows = conn.execute(sa.select(results.DRIFT.c.run_date).distinct().order_by(results.DRIFT.c.run_date)).all()
    return [as_date(r[0]) for r in rows]


def rebuild(settings: Settings, *, missing_only: bool = False) -> dict[str, Any]:
    """The project's panels reset and a snapshot for every night in the results store (or,
    with ``missing_only``, for the nights that have none yet: what ``make dashboard`` does on
    opening, so an existing results store shows its history)."""
    workspace = open_workspace(settings.dashboard_location)
    project = ensure_project(workspace, settings.dashboard_project, reset_panels=not missing_only)
    present = set()
    if missing_only:
        for snapshot_id in workspace.list_runs(project.id):
            run = workspace.get_run(project.id, snapshot_id)
            if run is not None:
                present.add(str(run.metadata.get("night")))
    added = [add_night(settings, day) for day in published_nights(settings) if day.isoformat() not in present]
    return {"workspace": settings.dashboard_location, "project_id": str(project.id), "nights_added": len(added)}
