"""The dashboard of nights: an Evidently workspace with one project per model name and one
snapshot per night, read with Evidently's own UI (``evidently ui``, ``make dashboard``).

A night's snapshot holds the figures the night published in the results store, nothing
recomputed: the drift share of the features and the highest PSIs (``drift_metrics``, all rows,
the same verdict as the e-mail), the score distribution and the at-risk share (``churn_scores``,
``prediction_drift``), ROC-AUC / PR-AUC / recall on matured labels (``model_performance``), the
performance estimated before the labels mature with its band and, once they did, the realised
value (``performance_estimates``; the night whose labels matured is added again that night),
the fairness ratios (``fairness_metrics``) and the alerts raised, by severity (``alerts``).
Each figure is one :class:`NightFigure` metric, so every panel is a series over the nights; a
night's page shows a tile per kind of figure, as a person reads the numbers. The panels are laid
out again with each night for the nights so far (:class:`Layout`): bars while there is one night,
the matured labels' expected date until they exist, a fairness panel per segment.
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
from evidently.legacy.renderers.html_widgets import CounterData, WidgetSize, counter
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel, text_panel

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.features.catalogue import human_label
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


#: the estimated metrics' figures (``estimated_<metric>``), each labelled estimate, lower, upper, holdout, realised
ESTIMATED = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "precision_at_capacity": "precision at capacity"}


class NightFigureCalculation(SingleValueCalculation[NightFigure]):
    def calculate(self, context: Any, current_data: Dataset, reference_data: Dataset | None) -> SingleValue:
        row = current_data.as_dataframe()
        value = float(row[column_name(self.metric.figure, self.metric.label)].iloc[0])
        result = self.result(value)
        # a night's page (Reports > View): one half-width tile per kind of figure, every figure of that kind in it,
        # each as a person reads it; the kind's other figures add no tile of their own
        result.widget = tile_widgets(self.metric.figure, self.metric.label, row)
        return result

    def display_name(self) -> str:
        return figure_label(self.metric.figure, self.metric.label)


def tile_widgets(figure: str, label: str, row: pd.DataFrame) -> list[Any]:
    """The night page's tile that figure (``figure``, ``label``) belongs to (:func:`tile_of`): a
    counter per figure of the tile in the night's ``row``, made by the tile's first figure; none for the others."""
    tile = tile_of(figure, label)
    members = [c for c in row.columns if tile_of(*c.split("|", 1)) == tile]
    if not members or members[0] != column_name(figure, label):
        return []
    counters = [CounterData(counter_label(*c.split("|", 1)), readable(c.split("|", 1)[0], float(row[c].iloc[0])))
                for c in members]
    return [counter(counters=counters, title=tile, size=WidgetSize.HALF)]


#: the tile of a night's page each kind of figure is shown in, and the words under its number
#: (None: the figure's label); fairness has a tile per segment
TILES: dict[str, tuple[str, str | None]] = {
    "drifted_features": ("Drift tonight (all rows vs the training reference)", "features drifted"),
    "features_checked": ("Drift tonight (all rows vs the training reference)", "features checked"),
    "drifted_pct": ("Drift tonight (all rows vs the training reference)", "of the features drifted"),
    "drifted_shap_pct": ("Drift tonight (all rows vs the training reference)", "of the model's mean |SHAP| drifted"),
    "psi": ("Highest PSI features", None),
    "scored": ("Scores tonight", "customers scored"),
    "at_risk_pct": ("Scores tonight", "at risk (at or above the threshold)"),
    "score_psi": ("Scores tonight", "score PSI vs the training reference"),
    "score": ("Churn probability distribution", None),
    "matured": ("Matured labels (the scores of one label window earlier)", None),
    **{f"estimated_{m}": (f"Estimated {name} before the labels mature", None) for m, name in ESTIMATED.items()},
    "alerts": ("Alerts raised, by severity", None),
}
#: how a figure's label reads (the metrics); the rest as they are
LABEL_WORDS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
#: figures that count things (whole numbers) and figures that are percentages
COUNTS = {"drifted_features", "features_checked", "scored", "alerts"}
PERCENTS = {"drifted_pct", "drifted_shap_pct", "at_risk_pct"}


def tile_of(figure: str, label: str) -> str:
    """The title of the night page's tile that shows a figure."""
    if figure == "fairness_ratio":
        return f"Fairness by {label.split('=', 1)[0].replace('_', ' ')}: positive-rate ratio"
    return TILES.get(figure, (figure.replace("_", " "), None))[0]


def counter_label(figure: str, label: str) -> str:
    """The words under a figure's number in its tile: ``fairness_ratio`` ``gender=F`` -> "F"."""
    if figure == "fairness_ratio":
        return label.split("=", 1)[-1]
    fixed = TILES.get(figure, ("", None))[1]
    return fixed or LABEL_WORDS.get(label, label) or figure.replace("_", " ")


def figure_label(figure: str, label: str) -> str:
    """A figure's name as a person reads it: ``matured`` ``roc_auc`` -> "Matured labels (...): ROC-AUC"."""
    return f"{tile_of(figure, label)}: {counter_label(figure, label)}"


def readable(figure: str, value: float) -> str:
    """A figure's value as a person reads it: counts with thousands separators, percentages
    with one decimal, ratios and scores with three (``2.369e+03`` -> "2,369")."""
    if value != value:  # NaN
        return "n/a"
    if figure in COUNTS:
        return f"{value:,.0f}"
    if figure in PERCENTS:
        return f"{value:.1f}%"
    return f"{value:,.3f}"


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
    out += [Figure("psi", human_label(str(r.feature)), float(r.psi))
            for r in top.head(settings.dashboard_top_features).itertuples()]

    scores = results.read(settings, results.SCORES, day, day, columns=["churn_probability"])["churn_probability"].to_numpy(
        dtype=float)
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


#: the series one panel draws at most: the UI's palette has 6 colours (a 7th series would repeat the first's)
SERIES_PER_PANEL = 6


@dataclass(frozen=True)
class Layout:
    """What the panels depend on, read from the results store: how many nights there are (one
    night draws bars: the UI draws a lone point of a line as a hollow dot), the first night (the
    matured labels are expected one label window later) and whether any have matured, and the
    fairness groups of each segment (a panel per segment, at most :data:`SERIES_PER_PANEL` groups each)."""

    nights: int = 0
    first_night: dt.date | None = None
    label_window_days: int = 0
    matured: bool = False
    fairness: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: the last night and its headline figures that are zero (the UI's counter shows 0 as "no value": said in words)
    last_night: dt.date | None = None
    zero: frozenset[str] = frozenset()

    @property
    def first_matured(self) -> dt.date | None:
        """When the first night's labels mature (its scores one label window old)."""
        return None if self.first_night is None else self.first_night + dt.timedelta(days=self.label_window_days)


def layout_of(settings: Settings) -> Layout:
    """The :class:`Layout` of the nights the results store holds."""
    nights = published_nights(settings)
    performance = results.read(settings, results.PERFORMANCE)
    fairness = results.read(settings, results.FAIRNESS).dropna(subset=["positive_rate_ratio"])
    groups = tuple((str(segment), tuple(sorted({str(g) for g in rows["group"]})))
                   for segment, rows in sorted(fairness.groupby("segment"), key=lambda item: str(item[0])))
    zero: set[str] = set()
    if nights:
        drift = results.read(settings, results.DRIFT, nights[-1], nights[-1])
        prediction = results.read(settings, results.PREDICTION, nights[-1], nights[-1])
        zero |= {"drifted_features"} if not drift.empty and not drift["drifted"].astype(bool).any() else set()
        zero |= {"at_risk_pct"} if not prediction.empty and prediction["high_risk_share"].iloc[0] == 0 else set()
    return Layout(nights=len(nights), first_night=nights[0] if nights else None,
                  label_window_days=settings.label_window_days,
                  matured=bool(not performance.empty and performance["roc_auc"].notna().any()), fairness=groups,
                  last_night=nights[-1] if nights else None, zero=frozenset(zero))


def panels(layout: Layout | None = None) -> list[DashboardPanelPlot]:
    """The project's panels: tonight's headline counters, then each figure over the nights
    (bars while there is one night), the matured labels' note until they exist, a fairness panel per segment."""
    layout = layout or Layout()

    def series(title: str, values: list[PanelMetric], description: str) -> DashboardPanelPlot:
        if layout.nights < 2:
            return bar_plot_panel(title, values, description=f"{description} (one night so far: bars; lines from "
                                                             "the second night on)", size="half")
        return line_plot_panel(title, values, description=description, size="half")

    if layout.matured or layout.first_matured is None:
        matured = series("Matured labels: ROC-AUC, PR-AUC, recall", [_figure("matured", "{{label}}")],
                         "the scores of the night one label window earlier against what happened")
    else:
        matured = text_panel("Matured labels: ROC-AUC, PR-AUC, recall", size="half", description=(
            f"No matured labels yet - first expected on {layout.first_matured} (the scores of {layout.first_night}, "
            f"once their {layout.label_window_days}-day label window has passed)."))
    fairness = [series(f"Fairness by {segment.replace('_', ' ')}: positive-rate ratio" + (f" ({k // SERIES_PER_PANEL + 1} of "
                                                                         f"{-(-len(groups) // SERIES_PER_PANEL)})"
                                                                         if len(groups) > SERIES_PER_PANEL else ""),
                       [_figure("fairness_ratio", group, label=f"{segment}={group}")
                        for group in groups[k:k + SERIES_PER_PANEL]],
                       "each group's at-risk rate over its segment's highest (80% rule at 0.8)")
                for segment, groups in layout.fairness for k in range(0, len(groups), SERIES_PER_PANEL)]
    def headline(title: str, figure: str, legend: str, description: str) -> DashboardPanelPlot:
        if figure in layout.zero:  # Evidently's counter reads 0 as "no value"
            return text_panel(title, description=f"0 {legend} on {layout.last_night} ({description})", size="half")
        return counter_panel(title, [_figure(figure, legend)], description=description, size="half")

    return [
        headline("Features drifted (last night)", "drifted_features", "features drifted",
                 "all rows vs the training reference; the e-mail's verdict"),
        headline("At-risk customers, % (last night)", "at_risk_pct", "% at or above the threshold",
                 "the campaign's candidates among the scored customers"),
        series("Features drifted, %", [_figure("drifted_pct", "% of the model's features")],
               "features whose drift test failed, all rows vs the training reference"),
        series("Drift in the features the model uses, % of its mean |SHAP|",
               [_figure("drifted_shap_pct", "% of the model's mean |SHAP| in drifted features it uses")],
               "the importance-weighted drift share the data_drift alert judges (drift only in features the model "
               "barely uses is an info note, not counted)"),
        series("Highest PSI features", [_figure("psi", "{{label}}")],
               "each night's features with the highest PSI vs the training reference"),
        series("Churn probability distribution", [_figure("score", "{{label}}")],
               "mean and quantiles of each night's scores"),
        series("At-risk customers, %", [_figure("at_risk_pct", "% at or above the threshold")],
               "the share the campaign threshold selects each night"),
        matured,
        *(series(f"Estimated {name} before the labels mature", [_figure(f"estimated_{m}", "{{label}}")],
                 "from the night's calibrated scores: the estimate, its band (lower, upper), the holdout and, once "
                 "the night's labels matured, the realised value")
          for m, name in ESTIMATED.items()),
        *fairness,
        bar_plot_panel("Alerts raised, by severity", [_figure("alerts", "{{label}}")], stacked=True, size="half"),
    ]


def open_workspace(location: str) -> Any:
    """The Evidently workspace at ``location``: a running UI's URL or a local folder (created)."""
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    if location.startswith(("http://", "https://")):
        return RemoteWorkspace(location)
    return Workspace.create(location)


def ensure_project(workspace: Any, name: str, layout: Layout | None = None) -> Any:
    """The project called ``name`` (created when absent), its panels laid out for ``layout``
    (the nights so far: see :class:`Layout`)."""
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    found = workspace.search_project(name)
    about = "churn scores, drift, matured-label performance and fairness, one snapshot per night"
    if found:
        project = found[0]
    elif isinstance(workspace, Workspace):  # a fixed id: the e-mail's link and the night's snapshot, created at once,
        project = workspace.add_project(  # make one project
            ProjectModel(id=uuid.uuid5(uuid.NAMESPACE_URL, f"churnflow dashboard {name}"), name=name, description=about))
    else:
        project = workspace.create_project(name, description=about)
    plots = panels(layout)
    workspace.save_dashboard(project.id, DashboardModel(
        tabs=[DashboardTabModel(title="Nights", panels=[p.id for p in plots])], panels=plots))
    return project


def night_snapshot_id(project_id: Any, day: dt.date) -> uuid.UUID:
    """The snapshot id of night ``day`` in a local workspace: the same for every run of the night,
    so a rerun rewrites that night's file and leaves no other behind."""
    return uuid.uuid5(uuid.UUID(str(project_id)), f"churnflow night {day.isoformat()}")


def dashboard_address(settings: Settings) -> str:
    """Where analysts open the dashboard: the running Evidently UI ``dashboard_workspace`` names, else
    ``dashboard_url`` (``make dashboard``'s address by default; empty: none)."""
    location = settings.dashboard_location
    return (location if location.startswith(("http://", "https://")) else settings.dashboard_url).rstrip("/")


def night_link(settings: Settings, day: dt.date | str) -> str:
    """The address of night ``day``'s page in the dashboard (its snapshot: every figure the night
    published), "" without a :func:`dashboard_address`. A local workspace's snapshot id is fixed per
    night (:func:`night_snapshot_id`), so the link holds before the night's snapshot is added (the
    project is created if need be); a served workspace numbers its own: the link is the project's reports."""
    from evidently.ui.workspace import Workspace

    base = dashboard_address(settings)
    if not base:
        return ""
    workspace = open_workspace(settings.dashboard_location)
    found = workspace.search_project(settings.dashboard_project)
    project = found[0] if found else ensure_project(workspace, settings.dashboard_project, layout_of(settings))
    if not isinstance(workspace, Workspace):
        return f"{base}/projects/{project.id}/reports"
    return f"{base}/projects/{project.id}/reports/{night_snapshot_id(project.id, as_date(day))}"


def add_night(settings: Settings, day: dt.date | str) -> dict[str, Any]:
    """Add night ``day``'s snapshot (from the results store) to the dashboard, replacing the one
    a previous run of that night added."""
    from evidently.ui.workspace import Workspace

    day = as_date(day)
    figures, version = night_figures(settings, day)
    snapshot = night_snapshot(day, figures, version)
    workspace = open_workspace(settings.dashboard_location)
    project = ensure_project(workspace, settings.dashboard_project, layout_of(settings))
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
    """The project's panels laid out for the nights the results store holds and a snapshot for
    every night there (or, with ``missing_only``, for the nights that have none yet: what ``make
    dashboard`` does on opening, so an existing results store shows its history, in today's layout)."""
    workspace = open_workspace(settings.dashboard_location)
    project = ensure_project(workspace, settings.dashboard_project, layout_of(settings))
    present = set()
    if missing_only:
        for snapshot_id in workspace.list_runs(project.id):
            run = workspace.get_run(project.id, snapshot_id)
            if run is not None:
                present.add(str(run.metadata.get("night")))
    added = [add_night(settings, day) for day in published_nights(settings) if day.isoformat() not in present]
    return {"workspace": settings.dashboard_location, "project_id": str(project.id), "nights_added": len(added)}
