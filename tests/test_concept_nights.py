"""Concept drift as it happens, end to end (slow: ~130 nights through the pipeline's flows, in one process,
without their reports): a generated business whose basic-plan customers start churning three times as often on
CHANGE (generate --concept-drift-from) and the same business without it.

A 14-day label window (horizon_days) keeps the business small: a night's scores mature 14 nights later, so the
first matured labels of predictions made after the change arrive on CHANGE + 14."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Settings, load_settings
from pipeline.results import CONCEPT
from pipeline.results import read as read_table

pytestmark = pytest.mark.slow

CUSTOMERS, SEED, START = 3000, 5, dt.date(2025, 1, 1)
TRAINED, FIRST_NIGHT = "2025-06-01", dt.date(2025, 6, 1)
CHANGE = dt.date(2025, 7, 1)
#: the competitor's offer: the basic plan's customers churn this many times as often (about 45% of them; a
#: 3x change needs more customers than a quick test has to be found by ADWIN within 14 nights)
FACTOR = 6.0
HORIZON = 14
#: the night the first predictions made after the change mature, and the last night an alert may wait for
FIRST_MATURED = CHANGE + dt.timedelta(days=HORIZON)
DEADLINE = FIRST_MATURED + dt.timedelta(days=14)


def _business(root: Path, concept_drift_from: dt.date | None, months: int) -> Settings:
    """A generated business trained as of TRAINED: a 14-day label window, one candidate."""
    from churnflow_sim.generate import generate
    from pipeline.flows import run_training

    settings = load_settings(data_dir=root / "data", horizon_days=HORIZON, training_snapshots=3, search_iterations=1,
                             candidates="logreg", campaign_customer_value=600)
    generate(settings, customers=CUSTOMERS, months=months, seed=SEED, start=START, progress=None,
             concept_drift_from=concept_drift_from, concept_drift_factor=FACTOR)
    run_training(settings, TRAINED)
    return settings


def _nights(settings: Settings, first: dt.date, last: dt.date) -> dict[dt.date, dict]:
    from pipeline.flows import run_nightly

    out, day = {}, first
    while day <= last:
        out[day] = run_nightly(settings, day, lookback_days=31 if day == FIRST_NIGHT else 1, reports=False)["monitoring"]
        day += dt.timedelta(days=1)
    return out


def _concept_alerts(monitoring: dict[dt.date, dict]) -> dict[dt.date, list[dict]]:
    return {day: found for day, m in monitoring.items()
            if (found := [a for a in m["alerts"] if a["rule"] == "concept_drift"])}


def _states(settings: Settings) -> pd.DataFrame:
    return read_table(settings, CONCEPT).set_index(["run_date", "detector"])["state_sha256"].sort_index()


def test_a_segment_churning_more_raises_concept_drift_within_14_nights_and_replays(tmp_path_factory):
    settings = _business(tmp_path_factory.mktemp("concept"), CHANGE, months=8)
    monitoring = _nights(settings, FIRST_NIGHT, DEADLINE)
    alerts = _concept_alerts(monitoring)
    assert alerts, {d: m["concept_drift"]["rows"] for d, m in monitoring.items() if m["concept_drift"]}
    first = min(alerts)
    assert CHANGE < first <= DEADLINE, sorted(alerts)
    alert = alerts[first][0]
    assert alert["severity"] == "critical" and alert["alert_group"] in ("adwin", "ddm")
    assert " -> " in alert["message"] and "matured labels" in alert["message"]
    # the retraining decision (pipeline/monitoring/retraining.py): requested when a snapshot whose labels matured by
    # tonight reaches the change, else not, saying from when a retrain could help
    decision = monitoring[first]["retraining"]
    assert decision["rule"] in ("concept_drift", "performance_drop", "estimated_performance"), decision
    assert monitoring[first]["retrain"] is decision["requested"] and (decision["requested"] or decision["could_help_from"])
    found = [d for d in monitoring[first]["concept_drift"]["detections"] if d["detector"] == alert["alert_group"]][-1]
    # the last predictions fed: their label window reaches past the change (its first days may be enough)
    assert found["rate_after"] > found["rate_before"]
    assert dt.date.fromisoformat(found["window_end"]) + dt.timedelta(days=HORIZON) > CHANGE
    # every night fed from the first matured one on, a row per detector; replays give the same states
    stored = _states(settings)
    assert len(stored) == 2 * ((DEADLINE - FIRST_NIGHT).days + 1 - HORIZON)
    _nights(settings, DEADLINE - dt.timedelta(days=2), DEADLINE)  # the last three nights again, in order
    _nights(settings, first, first)  # the detecting night alone
    pd.testing.assert_series_equal(_states(settings), stored)
    assert _concept_alerts({first: _nights(settings, first, first)[first]})


def test_a_change_from_the_deployment_day_is_found_by_the_seeded_detectors(tmp_path_factory):
    """generate --concept-drift-from the training date: every matured error is after the change, so detectors that
    started empty would learn the changed rate as normal; seeded with the champion's holdout errors (its last labelled
    snapshot, before the change) they find it within 45 nights of the change."""
    settings = _business(tmp_path_factory.mktemp("deployed"), FIRST_NIGHT, months=8)
    change, monitoring, day = FIRST_NIGHT, {}, FIRST_NIGHT
    while day <= change + dt.timedelta(days=45) and not _concept_alerts(monitoring):
        monitoring.update(_nights(settings, day, day))
        day += dt.timedelta(days=1)
    alerts = _concept_alerts(monitoring)
    assert alerts, {d: m["concept_drift"]["rows"] for d, m in monitoring.items() if m["concept_drift"]}
    first = min(alerts)
    print(f"deployment-day change found on {first}: {(first - change).days} nights after the change, "
          f"{(first - change).days - HORIZON + 1} matured nights, by {[a['alert_group'] for a in alerts[first]]}")
    started = monitoring[change + dt.timedelta(days=HORIZON)]["concept_drift"]["rows"]
    holdout = pd.read_parquet(next(settings.model_cache_dir.rglob("holdout_predictions.parquet")))
    assert {"customer_id", "snapshot_date", "label", "churn_probability"} <= set(holdout.columns)
    assert all(0 < r["seeded"] <= min(len(holdout), settings.concept_drift_seed_rows) and r["seed_note"] is None
               for r in started), started
    found = monitoring[first]["concept_drift"]["detections"]
    assert any(d["rate_after"] > d["rate_before"] for d in found), found


def test_a_business_without_concept_drift_raises_none_in_60_nights(tmp_path_factory):
    settings = _business(tmp_path_factory.mktemp("quiet"), None, months=9)
    last = FIRST_NIGHT + dt.timedelta(days=HORIZON + 59)
    monitoring = _nights(settings, FIRST_NIGHT, last)
    fed = [d for d, m in monitoring.items() if m["concept_drift"]]
    assert len(fed) == 60 and fed[0] == FIRST_NIGHT + dt.timedelta(days=HORIZON)
    assert _concept_alerts(monitoring) == {}, _concept_alerts(monitoring)
    seen = read_table(settings, CONCEPT).groupby("detector")["seen"].max()
    assert (seen > 5000).all(), seen
    assert (read_table(settings, CONCEPT)["seeded"] > 0).all()  # seeded with the champion's holdout errors
