"""The dashboard's layout and a night's page, as pure functions (the dashboard on real nights, in a real
browser: tests/test_monitor.py)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipeline.monitoring.dashboard import SERIES_PER_PANEL, Layout, column_name, panels, readable, tile_widgets


def _plots(layout: Layout) -> dict[str, dict]:
    return {p.title: {"type": p.plot_params["plot_type"], "subtitle": p.subtitle,
                      "legends": [v.legend for v in p.values], "labels": [v.metric_labels for v in p.values]}
            for p in panels(layout)}


def test_one_night_draws_bars_and_says_when_the_labels_mature() -> None:
    """One night: every series a bar (a line's lone point is a hollow dot in the UI), the matured labels' panel a
    note with the date the first ones are expected."""
    plots = _plots(Layout(nights=1, first_night=dt.date(2025, 7, 1), label_window_days=30))
    series = {t: p for t, p in plots.items() if p["type"] not in ("counter", "text")}
    assert series and all(p["type"] == "bar" for p in series.values()), series
    matured = plots["Matured labels: ROC-AUC, PR-AUC, recall"]
    assert matured["type"] == "text"
    assert matured["subtitle"].startswith("No matured labels yet - first expected on 2025-07-31 (the scores of "
                                          "2025-07-01")


def test_a_headline_of_zero_is_said_in_words() -> None:
    """Evidently's counter shows 0 as "no value": a night without drift says "0 features drifted" instead."""
    plots = _plots(Layout(nights=3, last_night=dt.date(2025, 7, 3), zero=frozenset({"drifted_features"})))
    assert plots["Features drifted (last night)"]["type"] == "text"
    assert plots["Features drifted (last night)"]["subtitle"].startswith("0 features drifted on 2025-07-03")
    assert plots["At-risk customers, % (last night)"]["type"] == "counter"


def test_from_the_second_night_lines_and_the_matured_labels_once_they_exist() -> None:
    waiting = _plots(Layout(nights=2, first_night=dt.date(2025, 7, 1), label_window_days=30))
    assert waiting["Features drifted, %"]["type"] == "line"
    assert waiting["Matured labels: ROC-AUC, PR-AUC, recall"]["type"] == "text"
    matured = _plots(Layout(nights=40, first_night=dt.date(2025, 7, 1), label_window_days=30, matured=True))
    assert matured["Matured labels: ROC-AUC, PR-AUC, recall"]["type"] == "line"
    assert matured["Alerts raised, by severity"]["type"] == "bar"  # stacked counts, whatever the nights


def test_fairness_has_a_panel_per_segment_with_every_group_in_distinct_colours() -> None:
    """A series per group, at most the UI's 6 colours a panel (a segment with more groups takes two panels)."""
    regions = tuple(f"r{i:02d}" for i in range(SERIES_PER_PANEL + 2))
    plots = _plots(Layout(nights=3, fairness=(("age_band", ("<25", "25-34")), ("gender", ("F", "M", "X")),
                                              ("region", regions))))
    fairness = {t: p for t, p in plots.items() if t.startswith("Fairness")}
    assert list(fairness) == ["Fairness by age band: positive-rate ratio", "Fairness by gender: positive-rate ratio",
                              "Fairness by region: positive-rate ratio (1 of 2)",
                              "Fairness by region: positive-rate ratio (2 of 2)"]
    assert fairness["Fairness by gender: positive-rate ratio"]["legends"] == ["F", "M", "X"]
    assert {"figure": "fairness_ratio", "label": "gender=F"} in fairness["Fairness by gender: positive-rate ratio"][
        "labels"]
    drawn = [g for t, p in fairness.items() if t.startswith("Fairness by region") for g in p["legends"]]
    assert drawn == list(regions) and all(len(p["legends"]) <= SERIES_PER_PANEL for p in fairness.values())


def test_a_nights_page_is_a_tile_per_kind_of_figure_with_numbers_a_person_reads() -> None:
    figures = {("drifted_features", ""): 11.0, ("features_checked", ""): 40.0, ("drifted_pct", ""): 27.5,
               ("psi", "monthly fee"): 16.32791, ("psi", "plan"): 0.000012, ("scored", ""): 2369.0,
               ("score", "mean"): 0.0601234, ("score", "p90"): 0.13, ("at_risk_pct", ""): 24.9487,
               ("fairness_ratio", "gender=F"): 0.8444, ("fairness_ratio", "gender=M"): 0.81,
               ("fairness_ratio", "region=east"): 0.9, ("alerts", "info"): 2.0}
    row = pd.DataFrame([{column_name(f, label): v for (f, label), v in figures.items()}])
    tiles = [w for (f, label) in figures for w in tile_widgets(f, label, row)]
    shown = {w.title: [(c["value"], c["label"]) for c in w.params["counters"]] for w in tiles}
    assert shown == {
        "Drift tonight (all rows vs the training reference)": [
            ("11", "features drifted"), ("40", "features checked"), ("27.5%", "of the features drifted")],
        "Highest PSI features": [("16.328", "monthly fee"), ("0.000", "plan")],
        "Scores tonight": [("2,369", "customers scored"), ("24.9%", "at risk (at or above the threshold)")],
        "Churn probability distribution": [("0.060", "mean"), ("0.130", "p90")],
        "Fairness by gender: positive-rate ratio": [("0.844", "F"), ("0.810", "M")],
        "Fairness by region: positive-rate ratio": [("0.900", "east")],
        "Alerts raised, by severity": [("2", "info")],
    }
    assert all(w.size == 1 for w in tiles)  # half width: two tiles a row
    assert readable("scored", 2369.0) == "2,369" and readable("psi", float("nan")) == "n/a"
