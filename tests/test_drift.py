"""Drift statistics, PSI and the Evidently report on synthetic churn-like features."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.monitoring.drift import NO_DATA, DriftSummary, compute_drift, email_report_columns, psi
from pipeline.monitoring.report import drift_report, render_report

NUMERIC = [
    "age", "tenure_days", "monthly_fee", "sessions_30d", "days_since_login", "failed_payments_180d", "discounted",
]
CATEGORICAL = ["gender", "region", "plan", "payment_method"]
SHIFTED = {"age", "sessions_30d", "region"}
N_ROWS = 5_000


def make_features(n: int, seed: int, *, shifted: bool = False) -> pd.DataFrame:
    """Churn-like features; ``shifted`` moves age (+0.5 sd), sessions (x1.5) and the region mix."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "standard", "premium"], n, p=[0.5, 0.3, 0.2])
    region_p = [0.1, 0.15, 0.2, 0.25, 0.3] if shifted else [0.3, 0.25, 0.2, 0.15, 0.1]
    last_login = rng.exponential(6, n)
    last_login[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "age": rng.normal(51 if shifted else 45, 12, n),
            "tenure_days": rng.exponential(400, n),
            "monthly_fee": pd.Series(plan).map({"basic": 9.99, "standard": 15.99, "premium": 22.99}),
            "sessions_30d": rng.poisson(30 if shifted else 20, n),
            "days_since_login": last_login,
            "failed_payments_180d": rng.poisson(0.3, n),
            "discounted": (rng.random(n) < 0.3).astype(float),
            "gender": rng.choice(["F", "M", "X"], n, p=[0.48, 0.48, 0.04]),
            "region": rng.choice(["north", "south", "east", "west", "central"], n, p=region_p),
            "plan": plan,
            "payment_method": rng.choice(["card", "paypal", "bank_transfer"], n),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_features(N_ROWS, seed=1)


@pytest.fixture(scope="module")
def shifted() -> pd.DataFrame:
    return make_features(N_ROWS, seed=3, shifted=True)


def drifted_columns(summary: DriftSummary) -> set[str]:
    return {f.column for f in summary.drifted_features}


# --- statistics ------------------------------------------------------------------------------


def test_same_distribution_shows_no_drift(reference: pd.DataFrame) -> None:
    summary = compute_drift(reference, make_features(N_ROWS, seed=2), NUMERIC, CATEGORICAL)

    assert summary.drift_share == 0
    assert not summary.dataset_drift
    assert (summary.n_reference, summary.n_current) == (N_ROWS, N_ROWS)
    assert [f.column for f in summary.features] == NUMERIC + CATEGORICAL
    assert all(f.psi < 0.05 for f in summary.features)


def test_injected_shift_flags_exactly_the_shifted_columns(reference: pd.DataFrame, shifted: pd.DataFrame) -> None:
    summary = compute_drift(reference, shifted, NUMERIC, CATEGORICAL)

    assert drifted_columns(summary) == SHIFTED
    assert summary.drift_share == pytest.approx(len(SHIFTED) / len(NUMERIC + CATEGORICAL))
    assert not summary.dataset_drift  # 3 of 11 < 0.5
    assert compute_drift(reference, shifted, NUMERIC, CATEGORICAL, share_threshold=0.25).dataset_drift
    by_column = {f.column: f for f in summary.features}
    assert by_column["age"].method == "Wasserstein distance (normed)"
    assert by_column["region"].method == "Jensen-Shannon distance"
    assert by_column["monthly_fee"].method == "Jensen-Shannon distance"  # three distinct values
    assert by_column["discounted"].method == "Jensen-Shannon distance"
    assert all(by_column[c].psi > 0.1 for c in SHIFTED)


def test_sampled_verdict_agrees_with_all_rows(reference: pd.DataFrame, shifted: pd.DataFrame) -> None:
    """The HTML report sees a sample; on clear cases its verdict is the all-rows verdict."""
    full = compute_drift(reference, shifted, NUMERIC, CATEGORICAL)
    sampled = compute_drift(
        reference.sample(2_000, random_state=0), shifted.sample(2_000, random_state=0), NUMERIC, CATEGORICAL
    )
    assert drifted_columns(sampled) == drifted_columns(full)


@pytest.mark.parametrize("n_rows", [600, 3_000], ids=["hypothesis-tests", "distances"])
def test_statistics_match_evidentlys_own(n_rows: int, reference: pd.DataFrame, shifted: pd.DataFrame) -> None:
    """Same test, same statistic as Evidently's ``DataDriftPreset`` (guards version bumps)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = reference.head(n_rows), shifted.head(n_rows)
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    evidently = {m["config"]["column"]: m for m in metrics if "column" in m["config"]}
    drifted_count = next(m["value"]["count"] for m in metrics if "column" not in m["config"])

    summary = compute_drift(ref, cur, NUMERIC, CATEGORICAL)

    assert {f.method for f in summary.features} == (
        {"K-S p_value", "chi-square p_value", "Z-test p_value"}
        if n_rows <= 1000
        else {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
    )
    for feature in summary.features:
        theirs = evidently[feature.column]
        assert feature.method == theirs["config"]["method"], feature.column
        assert feature.threshold == theirs["config"]["threshold"], feature.column
        assert feature.statistic == pytest.approx(theirs["value"], rel=1e-9, abs=1e-12), feature.column
    assert len(summary.drifted_features) == drifted_count


# --- PSI -------------------------------------------------------------------------------------


def test_psi_is_zero_for_identical_and_large_for_shifted() -> None:
    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(0, 1, 10_000))
    categories = pd.Series(rng.choice(["a", "b", "c"], 10_000, p=[0.6, 0.3, 0.1]))

    assert psi(base, base, "numeric") == pytest.approx(0, abs=1e-12)
    assert psi(categories, categories, "categorical") == pytest.approx(0, abs=1e-12)
    assert psi(base, pd.Series(rng.normal(0.02, 1, 10_000)), "numeric") < 0.02
    assert psi(base, base + 1, "numeric") > 0.5
    flipped = pd.Series(rng.choice(["a", "b", "c"], 10_000, p=[0.1, 0.3, 0.6]))
    assert psi(categories, flipped, "categorical") > 0.5


def test_psi_sees_new_categories_and_missingness() -> None:
    reference = pd.Series(["a", "b"] * 500)
    assert psi(reference, pd.Series(["a", "b", "new", "new"] * 250), "categorical") > 0.5

    values = pd.Series(np.arange(1_000, dtype=float))
    half_missing = values.where(values % 2 == 0)
    assert psi(values, half_missing, "numeric") > 1


# --- missing and empty data ------------------------------------------------------------------


def test_missing_column_is_an_error_naming_it(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"current data lacks column.*'region'"):
        compute_drift(reference, reference.drop(columns="region"), NUMERIC, CATEGORICAL)
    with pytest.raises(TypeError, match="'age'"):
        compute_drift(reference, reference.assign(age="old"), NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="more than once"):
        compute_drift(reference, reference, NUMERIC, ["age"])


def test_empty_columns_are_reported_not_fatal(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_features(N_ROWS, seed=2).assign(age=np.nan, region=None)
    both_empty = reference.assign(tenure_days=np.inf), current.assign(tenure_days=np.nan)

    summary = compute_drift(*both_empty, NUMERIC, CATEGORICAL)

    by_column = {f.column: f for f in summary.features}
    assert by_column["age"].method == NO_DATA and by_column["age"].drifted
    assert math.isnan(by_column["age"].statistic) and by_column["age"].psi > 5
    assert by_column["region"].method == NO_DATA and by_column["region"].drifted
    assert by_column["tenure_days"].method == NO_DATA and not by_column["tenure_days"].drifted
    assert drifted_columns(summary) == {"age", "region"}

    out = render_report(*both_empty, NUMERIC, CATEGORICAL, tmp_path / "r.html", sample_rows=1_000)
    assert "Not shown (no values on a side): age, tenure_days, region" in out.read_text()


# --- report files ----------------------------------------------------------------------------


def test_drift_report_writes_small_html_and_matching_json(tmp_path: Path) -> None:
    reference = make_features(20_000, seed=1)
    current = make_features(20_000, seed=3, shifted=True)

    html_path, json_path, summary = drift_report(
        reference,
        current,
        NUMERIC,
        CATEGORICAL,
        tmp_path / "drift",
        sample_rows=2_000,
        share_threshold=0.5,
        reference_label="training reference 2024-01-01..2024-06-30",
        current_label="2024-07-15",
    )

    assert (html_path.name, json_path.name) == ("drift_report.html", "drift_summary.json")
    page = html_path.read_text()
    assert "<html" in page
    assert all(column in page for column in NUMERIC + CATEGORICAL)
    assert "2024-07-15 vs training reference 2024-01-01..2024-06-30" in page
    assert "20,000 rows, 2,000 shown" in page
    assert "3 of 11 columns drifted" in page
    # Evidently inlines ~4 MB of JavaScript and fonts; the data part must stay small
    assert html_path.stat().st_size < 6_000_000

    loaded = json.loads(json_path.read_text())
    assert loaded == summary.to_dict()
    assert DriftSummary.from_dict(loaded) == summary
    assert drifted_columns(summary) == SHIFTED
    assert not list(tmp_path.glob("drift/.tmp-*"))


def _table_rows(page: str) -> dict[str, dict]:
    """The rows of Evidently's drift table in a report page: {column: row}."""
    from pipeline.monitoring.report import _PAGE_DATA

    found = _PAGE_DATA.search(page)
    assert found, "no Evidently widget data in the page"
    rows: dict[str, dict] = {}

    def walk(widget: dict) -> None:
        if widget.get("type") == "big_table":
            rows.update({r["column_name"]: r for r in widget["params"]["data"]})
        for child in widget.get("widgets", []):
            walk(child)

    for widget in json.loads(found.group(2))["widgets"]:
        walk(widget)
    return rows


def test_the_evidently_panels_state_the_all_rows_verdict_on_every_column(tmp_path: Path) -> None:
    """One verdict: Evidently's dataset panel, its table title and each column's row (test, score, verdict) are the
    all-rows summary's, although the page draws its distributions from 300 sampled rows."""
    reference = make_features(20_000, seed=1)
    current = make_features(20_000, seed=3, shifted=True)
    html_path, _, summary = drift_report(reference, current, NUMERIC, CATEGORICAL, tmp_path, sample_rows=300,
                                         share_threshold=0.5, email_features=5)
    for page in (html_path.read_text(), (tmp_path / "drift_report_email.html").read_text()):
        assert "Dataset Drift is NOT detected (all rows, all 11 columns)" in page
        assert "Drift is detected for 27.273% of columns (3 out of 11, all rows)." in page
        rows = _table_rows(page)
        assert sorted(rows) == sorted(NUMERIC + CATEGORICAL)  # every column has its row, in both copies
        for feature in summary.features:
            row = rows[feature.column]
            assert row["data_drift"] == ("Detected" if feature.drifted else "Not Detected"), feature
            assert row["stattest_name"] == f"{feature.method} (all rows)"
            assert float(row["drift_score"]) == pytest.approx(feature.statistic, abs=1e-3)  # not the sample's


def test_the_email_copy_keeps_every_row_and_the_detail_plots_of_the_drifted_columns(tmp_path: Path) -> None:
    from pipeline.monitoring.report import email_copy

    reference = make_features(5_000, seed=1)
    current = make_features(5_000, seed=3, shifted=True)
    html_path, _, summary = drift_report(reference, current, NUMERIC, CATEGORICAL, tmp_path, sample_rows=2_000,
                                         share_threshold=0.5, email_features=5)
    detailed = email_report_columns(summary, 5)
    assert set(detailed[:3]) == SHIFTED and len(detailed) == 5  # the drifted ones first, then by PSI
    light = (tmp_path / "drift_report_email.html").read_text()
    assert f"Detail plots (click a row) for: {', '.join(detailed)}" in light
    rows = _table_rows(light)
    assert {c for c, r in rows.items() if r.get("details")} == set(detailed)
    assert len(rows) == 11 and "3 of 11 columns drifted" in light  # every column's row and the all-rows verdict
    assert len(light) < len(html_path.read_text()) - 6 * 40_000  # ~65 kB of detail plots per column left out
    # the lightest copy (for a message over its size limit): no detail plots, still every row, and it opens
    lightest = email_copy(html_path.read_text(), [])
    assert not any(r.get("details") for r in _table_rows(lightest).values()) and len(_table_rows(lightest)) == 11
    assert "Detail plots left out to keep the e-mail small" in lightest and "window.drawDashboard" in lightest
    # the cap never leaves out a drifted column: with room for 2, the 3 drifted ones are all detailed
    assert set(email_report_columns(summary, 2)) == SHIFTED
    with pytest.raises(ValueError, match="not an Evidently report page"):
        email_copy("<html><body>hello</body></html>", [])
