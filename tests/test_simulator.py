"""A live generated business (generate --live) and its landing simulator, and the readiness
gate of the nightly run (pipeline/readiness.py), on real SQLite and real landing folders."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from churnflow_sim import simulator
from churnflow_sim.constants import TABLES
from churnflow_sim.generate import generate, live_period
from pipeline.config import load_settings
from pipeline.ingestion import readiness
from pipeline.ingestion.contract import EVENTS_SCHEMA, SOURCE_TABLES

#: the contract's tables the subscription generator writes (not labels: a business supplies those)
GENERATED = {name: SOURCE_TABLES[name] for name in TABLES}

START, MONTHS, CUTOFF = dt.date(2025, 1, 1), 4, dt.date(2025, 3, 10)


def _tables(url: str) -> dict[str, pd.DataFrame]:
    eng = sa.create_engine(url)
    try:
        return {name: pd.read_sql_table(name, eng) for name in TABLES}
    finally:
        eng.dispose()


def _event_days(root: Path) -> list[str]:
    return sorted(p.name.removeprefix("date=") for p in (root / "events").glob("date=*"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same business generated twice: all landed at once, and live with a cut-off."""
    whole = load_settings(data_dir=tmp_path_factory.mktemp("whole") / "data")
    live = load_settings(data_dir=tmp_path_factory.mktemp("live") / "data")
    args = {"customers": 300, "months": MONTHS, "seed": 4, "start": START, "progress": None}
    generate(whole, **args)
    summary = generate(live, **args, hold_from=CUTOFF)
    return whole, live, summary


def test_live_business_holds_back_everything_from_the_cutoff(pair):
    whole, live, summary = pair
    assert summary["landed_until"] == CUTOFF.isoformat() and summary["pending_until"] == "2025-05-01"
    assert simulator.is_live(live) and not simulator.is_live(whole)
    cut = pd.Timestamp(CUTOFF)
    source, pending = _tables(live.db_url), _tables(simulator.pending_db_url(live))
    for name, table in GENERATED.items():
        assert (source[name][table.time_column] < cut).all(), name
        assert (pending[name][table.time_column] >= cut).all(), name
    assert _event_days(live.landing_dir)[-1] == (CUTOFF - dt.timedelta(days=1)).isoformat()
    assert _event_days(live.simulator_dir)[0] == CUTOFF.isoformat()


def test_landing_day_by_day_rebuilds_exactly_the_whole_business(pair, tmp_path):
    whole, live, _ = pair
    settings = load_settings(data_dir=tmp_path / "data")
    shutil.copytree(live.data_dir, settings.data_dir)
    first = simulator.land(settings, CUTOFF + dt.timedelta(days=1))
    assert first["event_days"] == [CUTOFF.isoformat()] and first["pending_from"] == "2025-03-11"
    again = simulator.land(settings, CUTOFF + dt.timedelta(days=1))  # a rerun lands nothing twice
    assert again["event_days"] == [] and sum(again["rows"].values()) == 0
    last = simulator.land(settings, dt.date(2025, 6, 1))  # past the end: the store is used up
    assert last["pending_from"] is None
    expected, got = _tables(whole.db_url), _tables(settings.db_url)
    for name, table in GENERATED.items():
        key = list(table.key)
        pd.testing.assert_frame_equal(got[name].sort_values(key).reset_index(drop=True),
                                      expected[name].sort_values(key).reset_index(drop=True), check_dtype=False)
    assert _event_days(settings.landing_dir) == _event_days(whole.landing_dir)
    day = "date=2025-04-02"
    assert pq.read_table(settings.landing_dir / "events" / day / "events.parquet", schema=EVENTS_SCHEMA).equals(
        pq.read_table(whole.landing_dir / "events" / day / "events.parquet", schema=EVENTS_SCHEMA))


def test_land_without_a_live_business_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate --live"):
        simulator.land(load_settings(data_dir=tmp_path), dt.date(2025, 1, 1))


def test_live_period_covers_the_history_and_the_days_ahead():
    start, months = live_period(dt.date(2026, 12, 1), 6, 45)
    assert start == dt.date(2026, 6, 1) and months == 8  # [Jun 2026, Feb 2027) covers Dec 1 + 45 days
    assert live_period(dt.date(2026, 12, 15), 2, 10) == (dt.date(2026, 10, 1), 3)


# ------------------------------------------------------------------------ readiness gate
def test_ready_when_the_window_has_landed_and_the_source_is_fresh(pair):
    _, live, _ = pair
    state = readiness.check(live, CUTOFF - dt.timedelta(days=3), CUTOFF)
    assert state.ready, state.message()
    assert state.source_latest >= dt.datetime.combine(CUTOFF - dt.timedelta(days=1), dt.time())


def test_a_day_not_landed_yet_is_waited_for(pair):
    _, live, _ = pair
    state = readiness.check(live, CUTOFF, CUTOFF + dt.timedelta(days=1))
    assert not state.ready and not state.gap  # it may still come: the sensor waits
    assert state.missing_days == [CUTOFF]
    assert "no landing partition for day(s) 2025-03-10" in state.message()
    assert "source database not fresh" in state.message()


def test_a_missing_day_before_landed_ones_fails_at_once(pair, tmp_path):
    _, live, _ = pair
    settings = load_settings(data_dir=tmp_path / "data")
    shutil.copytree(live.data_dir, settings.data_dir)
    shutil.rmtree(settings.landing_dir / "events" / "date=2025-02-03")
    (settings.landing_dir / "events" / "date=2025-02-04" / "events.parquet").unlink()
    pq.write_table(EVENTS_SCHEMA.empty_table(), settings.landing_dir / "events" / "date=2025-02-04" / "e.parquet")
    state = readiness.check(settings, dt.date(2025, 2, 3), dt.date(2025, 2, 5))
    assert state.gap and state.missing_days == [dt.date(2025, 2, 3)] and state.empty_days == [dt.date(2025, 2, 4)]
    assert "waiting will not bring it" in state.message() and "empty landing partition" in state.message()


def test_a_stale_source_is_not_ready(pair, tmp_path):
    _, live, _ = pair
    settings = load_settings(data_dir=tmp_path / "data")
    shutil.copytree(live.data_dir, settings.data_dir)
    eng = sa.create_engine(settings.db_url)
    with eng.begin() as conn:  # the database stopped syncing on Feb 20; event files still came
        for name, table in GENERATED.items():
            conn.execute(sa.text(f"DELETE FROM {name} WHERE {table.time_column} >= :cut"), {"cut": "2025-02-20"})
    eng.dispose()
    state = readiness.check(settings, CUTOFF - dt.timedelta(days=1), CUTOFF)
    assert not state.ready and not state.missing_days
    assert "source database not fresh (newest row 2025-02-19" in state.message()
