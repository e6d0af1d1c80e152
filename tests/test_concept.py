"""Concept drift as it happens (pipeline.monitoring.concept): the sequential detectors over the matured
errors, their state in the results store, the concept_drift alert, and the generator's concept drift.

The end-to-end checks (nights through the pipeline's flows on generated businesses with and without
concept drift) are in tests/test_concept_nights.py (slow)."""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest

from pipeline.monitoring import concept
from pipeline.results import CONCEPT
from pipeline.results import read as read_table

FIRST = dt.date(2025, 3, 1)
DETECT = {"detectors": ["adwin", "ddm"], "adwin_delta": 0.002, "ddm_threshold": 3.0, "warm_start": 300}


def _night(scored_on: dt.date, customers: int, seed: int, factor: float = 1.0) -> pd.DataFrame:
    """One night's matured scores: calibrated probabilities; with ``factor`` the even customers churn
    ``factor`` times as often as their score says (a concept drift in one segment)."""
    rng = np.random.default_rng([seed, scored_on.toordinal()])
    ids = np.arange(1, customers + 1)
    p = rng.beta(1.2, 18, customers)
    truth = np.where(ids % 2 == 0, np.minimum(p * factor, 1.0), p)
    frame = pd.DataFrame({"customer_id": ids, "churn_probability": p, "label": (rng.random(customers) < truth).astype(int),
                          "model_version": "v1"})
    frame.attrs["scored_on"] = scored_on
    return frame


@functools.lru_cache(maxsize=4)
def _run(nights: int, *, seed: int = 0, drift_from: int | None = None, customers: int = 3000,
         window: int = 30) -> tuple[concept.ConceptDrift, ...]:
    """Nights chained in memory (each starts from the previous night's pickled states); the same
    arguments give the same nights (cached: several tests read them)."""
    out, states = [], {}
    for k in range(nights):
        scored_on = FIRST + dt.timedelta(days=k)
        factor = 3.0 if drift_from is not None and k >= drift_from else 1.0
        night = concept.run_night(scored_on + dt.timedelta(days=window), "v1", _night(scored_on, customers, seed, factor),
                                  0.1, window, states, **DETECT)
        states = {r["detector"]: r["state"] for r in night.rows}
        out.append(night)
    return tuple(out)


def test_each_customer_is_fed_once_per_label_window_in_a_fixed_order():
    """The night's errors in the order prediction night, customer hash, id (whatever the rows' order), and the
    hash rotation feeds each customer exactly once over any window of consecutive nights."""
    from pipeline.features.partitions import customer_hash

    night = _night(FIRST, 3000, seed=1)
    stream = concept.errors_in_order(night, 0.1, 30)
    shuffled = night.sample(frac=1.0, random_state=7)
    shuffled.attrs["scored_on"] = FIRST
    pd.testing.assert_frame_equal(stream, concept.errors_in_order(shuffled, 0.1, 30))
    hashes = customer_hash(stream["id"])
    assert list(hashes) == sorted(hashes) and len(stream) < len(night) / 20
    fed = pd.concat([concept.errors_in_order(_night(FIRST + dt.timedelta(days=k), 3000, seed=1), 0.1, 30)["id"]
                     for k in range(30)])
    assert sorted(fed.astype(int)) == list(range(1, 3001))  # everyone once, nobody twice
    row = stream.iloc[0]
    assert row["absolute_error"] == pytest.approx(abs(row["y"] - row["p"]))
    assert row["decision_error"] == float((row["p"] >= 0.1) != (row["y"] == 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stationary_stream_raises_nothing_and_a_segment_churning_more_is_found(seed):
    drifted = _run(90, seed=seed, drift_from=60)
    quiet = drifted[:60]  # 60 stationary nights (6,000 errors) before the change
    assert not [d for n in quiet for d in n.detections], [d for n in quiet for d in n.detections]
    assert {r["detector"]: r["seen"] for r in quiet[-1].rows} == {"adwin": 6000, "ddm": 6000}
    found = [(k, d) for k, n in enumerate(drifted) for d in n.detections if d.worse]
    assert found and found[0][0] < 60 + 14, found[:3]
    k, first = found[0]
    assert first.rate_after > first.rate_before and first.errors_before > 0 and first.errors_after > 0
    assert first.window_start <= first.change_at <= first.window_end == (FIRST + dt.timedelta(days=k)).isoformat()
    row = next(r for r in drifted[k].rows if r["detector"] == first.detector)
    assert row["detected"] and row["detections"] >= 1 and row["rate_after"] == pytest.approx(first.rate_after)


@pytest.mark.parametrize("seeded", [False, True])
def test_replaying_the_nights_from_the_store_gives_identical_states(settings, seeded):
    """A night starts from the latest state stored before it for its model version; a rerun of night N starts
    from N - 1's and replaces N's rows; a replay into an empty store gives the same bytes (seeded with the
    model's holdout errors or not)."""
    from pipeline.monitoring.store import concept_states_before, store_concept

    holdout = _holdout(4000, seed=3) if seeded else None

    def play(s, days):
        for k in days:
            scored_on = FIRST + dt.timedelta(days=k)
            day = scored_on + dt.timedelta(days=30)
            night = concept.run_night(day, "v1", _night(scored_on, 9000, 3, 4.0 if k >= 8 else 1.0), 0.1, 30,
                                      concept_states_before(s, day, "v1"), **DETECT, holdout=holdout, seed_rows=3000)
            store_concept(s, day, night)

    def states(s):
        rows = read_table(s, CONCEPT).sort_values(["run_date", "detector"])
        return list(zip(rows["run_date"], rows["detector"], rows["state_sha256"], strict=True))

    play(settings, range(20))
    first = states(settings)
    stored = read_table(settings, CONCEPT)
    assert len(first) == 40 and stored["detections"].max() >= 1
    if seeded:  # every night's row says what its detector was seeded with
        assert (stored["seeded"] == 3000).all() and stored["seed_note"].isna().all()
        assert stored["seed_error_rate"].between(0.0, 1.0).all()
    else:
        assert (stored["seeded"] == 0).all() and stored["seed_note"].str.contains("no holdout predictions").all()
    play(settings, [12, 13])  # reruns of two nights: from night 11's state, in order
    assert states(settings) == first
    play(settings, [15])  # a rerun of one night alone
    assert states(settings) == first
    other = settings.replace(data_dir=settings.data_dir.parent / "replay")
    play(other, range(20))
    assert states(other) == first
    # another model version starts afresh
    assert concept_states_before(settings, FIRST + dt.timedelta(days=60), "v2") == {}
    assert set(concept_states_before(settings, FIRST + dt.timedelta(days=60), "v1")) == {"adwin", "ddm"}


def _holdout(customers: int, seed: int, snapshot: dt.date = dt.date(2025, 2, 1)) -> pd.DataFrame:
    """A model's holdout predictions as the version keeps them: a stable night of ``customers``."""
    frame = _night(snapshot, customers, seed).drop(columns="model_version")
    return frame.assign(snapshot_date=snapshot, label=frame["label"].astype("int8"))


def _errors(rng: np.random.Generator, n: int, factor: float) -> pd.DataFrame:
    """``n`` matured scores as :func:`_night` draws them (without ids: fast), a ``factor`` for the half that drifts."""
    p = rng.beta(1.2, 18, n)
    truth = np.where(np.arange(n) % 2 == 0, np.minimum(p * factor, 1.0), p)
    return pd.DataFrame({"label": (rng.random(n) < truth).astype("int8"), "churn_probability": p})


def _first_rise(seed: int, seed_rows: int, factor: float, nights: int, per_night: int = 214) -> int | None:
    """The first night (0-based) a detector finds the errors rose, over ``nights`` nights of ``per_night`` errors
    (a 3,000-customer business, 14-day label window) whose second half churns ``factor`` times as often as scored
    from the first night on, after seeding with ``seed_rows`` of a stable holdout (0: unseeded)."""
    rng = np.random.default_rng([seed, 1])
    holdout = _errors(rng, max(seed_rows, 1), 1.0).assign(snapshot_date="2025-02-01")
    options = {k: v for k, v in DETECT.items() if k != "detectors"}
    trackers = [concept.start_tracker(name, 0.1, holdout, seed_rows, **options) for name in DETECT["detectors"]]
    for k in range(nights):
        stream = concept.holdout_errors(_errors(rng, per_night, factor), 0.1, per_night)
        for tracker in trackers:
            if any(d.worse for d in tracker.feed(stream[concept.ERRORS[tracker.name]].to_numpy(),
                                                 (FIRST + dt.timedelta(days=k)).isoformat())):
                return k
    return None


def test_seeding_feeds_the_holdout_errors_in_a_fixed_order_and_reports_nothing_found_then():
    holdout = _holdout(5000, seed=4)
    seed = concept.holdout_errors(holdout, 0.1, 3000)
    assert len(seed) == 3000 and seed["night"].eq("2025-02-01").all()
    again = concept.holdout_errors(holdout.sample(frac=1.0, random_state=2), 0.1, 3000)
    pd.testing.assert_frame_equal(seed, again)  # the lowest customer hashes, by hash: whatever the stored order
    options = {k: v for k, v in DETECT.items() if k != "detectors"}
    tracker = concept.start_tracker("ddm", 0.1, holdout, 3000, **options)
    assert tracker.seeded == tracker.seen == 3000 and tracker.detections == 0 and tracker.seed_note is None
    assert tracker.seed_error_rate == pytest.approx(seed["decision_error"].mean())
    assert tracker.nights == [("2025-02-01", 3000)]
    off = concept.start_tracker("adwin", 0.1, holdout, 0, **options)
    assert off.seen == 0 and "concept_drift_seed_rows is 0" in (off.seed_note or "")
    night = concept.run_night(FIRST + dt.timedelta(days=30), "v1", _night(FIRST, 3000, 1), 0.1, 30, {}, **DETECT,
                              holdout=holdout, seed_rows=3000)
    rows = {r["detector"]: r for r in night.rows}
    assert rows["adwin"]["seeded"] == 3000 and rows["adwin"]["seen"] == 3000 + rows["adwin"]["fed"]
    assert night.to_dict()["rows"][0]["seeded"] == 3000 and "seed_error_rate" in night.to_dict()["rows"][0]


@pytest.mark.parametrize("seed", range(5))
def test_seeded_detectors_find_a_change_from_the_first_night_where_unseeded_ones_do_not(seed):
    """A change from the deployment day on: every error fed is after it. Started empty the detectors learn the
    changed rate as normal and find nothing in 31 nights (~6,600 errors); seeded with the model's stable holdout
    (3,000 errors: the small business's whole holdout) they find it within 10 nights (~2,100 errors)."""
    assert _first_rise(seed, 0, 3.0, 31) is None
    found = _first_rise(seed, 3000, 3.0, 31)
    assert found is not None and found < 10, found


def test_seeded_detectors_raise_no_false_alarm_on_stable_streams():
    """50 stable streams of 60 nights of 214 errors (a 3,000-customer business, 14-day label window: 12,840
    errors each), seeded with the default concept_drift_seed_rows of a holdout from the same business: at most
    one stream raises anything (measured: none or one of 50, ADWIN's delta alone allows that many)."""
    from pipeline.config import load_settings

    rows = load_settings().concept_drift_seed_rows
    alarms = [s for s in range(50) if _first_rise(s, rows, 1.0, 60) is not None]
    assert len(alarms) <= 1, alarms


def test_a_concept_drift_alert_names_the_detector_window_and_rates_and_asks_for_retraining(settings):
    from pipeline.monitoring.alerts import KINDS, evaluate_rules, retrain_requested
    from pipeline.monitoring.metrics import PredictionDrift
    from pipeline.monitoring.night import DriftFacts, MonitoringResult

    night = next(n for n in _run(90, seed=0, drift_from=60) if any(d.worse for d in n.detections))
    prediction = PredictionDrift("2025-06-01", "v1", 0.1, 0.2, 0.1, 0.2, 0.01, 0.2, 7)
    facts = {"drift_share": 0.0, "drifted": [], "max_psi": 0.01, "max_psi_feature": "age"}

    def result(drift: dict) -> MonitoringResult:
        return MonitoringResult("2025-06-01", "v1", 0.1, DriftFacts.from_dict(drift), prediction, None,
                                pd.DataFrame(columns=["segment", "group", "positive_rate_ratio"]), concept=night)

    alerts = [a for a in evaluate_rules(settings, result(facts)) if a.rule == "concept_drift"]
    detection = [d for d in night.detections if d.worse][-1]
    alert = next(a for a in alerts if a.group == detection.detector)
    assert alert.severity == "critical" and KINDS["concept_drift"] == "concept drift" and KINDS["data_drift"] == "data drift"
    assert detection.detector.upper() in alert.message and detection.window_start in alert.message
    assert f"{detection.rate_before:.4f}" in alert.message and f"{detection.rate_after:.4f}" in alert.message
    assert "did not drift" in alert.message and "not data drift" in alert.message
    raised = pd.DataFrame([{"rule": a.rule, "severity": a.severity} for a in alerts])
    assert retrain_requested(settings, raised) and not retrain_requested(settings.replace(retrain_on_critical=False), raised)
    drifted = [a for a in evaluate_rules(settings, result({**facts, "drift_share": 0.6, "drifted": ["monthly_fee"]}))
               if a.rule == "concept_drift"]
    assert drifted and all("features drifted too" in a.message for a in drifted)
    assert not [a for a in evaluate_rules(settings.replace(concept_drift_detectors="ddm"), result(facts))
                if a.group == "adwin"]


def test_the_detectors_are_a_setting():
    from pipeline.config import load_settings

    assert load_settings().concept_detectors == ["adwin", "ddm"]
    assert load_settings(concept_drift_detectors="").concept_detectors == []
    with pytest.raises(ValueError, match=r"concept_drift_detectors: unknown detector\(s\) \['kswin'\]"):
        load_settings(concept_drift_detectors="adwin,kswin")


def test_the_generator_drifts_the_concept_of_one_segment_and_records_it(tmp_path):
    """--concept-drift-from: from that month start the basic plan's customers churn CONCEPT_HAZARD_FACTOR times as
    often; nothing before it changes, the other plans' truth at that month start is the same, and the truth says so."""
    import json

    import sqlalchemy as sa

    from churnflow_sim import generate as gen
    from churnflow_sim.constants import CONCEPT_HAZARD_FACTOR
    from churnflow_sim.writers import CONCEPT_TRUTH_FILE, TRUTH_FILE
    from pipeline.config import load_settings

    runs = {}
    for name, when in (("plain", None), ("concept", dt.date(2025, 3, 1))):
        s = load_settings(data_dir=tmp_path / name)
        summary = gen.generate(s, customers=600, months=4, seed=11, concept_drift_from=when, progress=None)
        truth = pd.read_parquet(s.truth_dir / TRUTH_FILE)
        with sa.create_engine(s.db_url).connect() as conn:
            plans = pd.read_sql("SELECT customer_id, plan, start_date FROM subscriptions ORDER BY start_date", conn,
                                parse_dates=["start_date"])
        runs[name] = (s, summary, truth, plans)
    (plain, _, truth0, plans), (drifted, summary, truth1, _) = runs["plain"], runs["concept"]
    assert summary["concept_drift"]["from"] == "2025-03-01" and "plan = basic" in summary["concept_drift"]["segment"]
    assert json.loads((drifted.truth_dir / CONCEPT_TRUTH_FILE).read_text()) == summary["concept_drift"]
    assert not (plain.truth_dir / CONCEPT_TRUTH_FILE).exists()
    assert "concept drift from 2025-03-01" in gen.format_summary(summary)
    at = pd.Timestamp("2025-03-01")
    pd.testing.assert_frame_equal(truth0[truth0["month_start"] < at], truth1[truth1["month_start"] < at])
    plan_then = plans[plans["start_date"] < at].groupby("customer_id")["plan"].last()
    a = truth0[truth0["month_start"] == at].set_index("customer_id")["p_cancel_30d"]
    b = truth1[truth1["month_start"] == at].set_index("customer_id")["p_cancel_30d"]
    assert list(a.index) == list(b.index)
    basic = plan_then.reindex(a.index) == "basic"
    assert basic.sum() > 50
    np.testing.assert_array_equal(a[~basic].to_numpy(), b[~basic].to_numpy())
    ratio = (b[basic] / a[basic]).to_numpy()
    assert (ratio > 1).all() and 2.0 < np.median(ratio) <= CONCEPT_HAZARD_FACTOR
    with pytest.raises(ValueError, match="must be a month start"):
        gen.generate(plain, customers=10, months=2, seed=1, concept_drift_from=dt.date(2025, 1, 15), progress=None)
