"""The lake's layout (issue 35): files in customer order (a piece reads only its bucket's row
groups), closed months compacted into one file each, reruns replacing a day inside its month,
and a lake written before the layout read as before and migrated once."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import load_settings
from pipeline.features.partitions import all_parts, bucket_of, hash_range
from pipeline.ingestion import lake
from pipeline.ingestion.buckets import HASH_COLUMN, customer_hash


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data")


def events(start: str, days: int, customers: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(days):
        day = pd.Timestamp(start) + pd.Timedelta(days=i)
        ids = rng.integers(1, customers, size=50)
        rows.append(pd.DataFrame({"customer_id": ids, "event_ts": day + pd.to_timedelta(rng.integers(0, 86_399, 50), "s"),
                                  "event_type": "login", "duration_s": rng.integers(1, 900, 50).astype(float)}))
    return pd.concat(rows, ignore_index=True)


def names(settings, table: str) -> list[str]:
    base = lake.table_dir(settings, table)
    return sorted(str(p.relative_to(base)) for p in base.glob("*=*/*.parquet"))


def read(settings, table: str, ranges, hashes=None) -> pd.DataFrame:
    with lake.duckdb_connection(settings) as con:
        lake.register_lake_table(con, settings, table, ranges, hashes=hashes)
        return con.execute(f"SELECT * FROM {table}").df()


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_closed_months_are_one_file_each_in_customer_order_and_days_stay_exact(settings):
    batch = events("2025-01-01", 31 + 28 + 14)  # Jan 1 .. Mar 14
    lake.write_window(settings, "events", batch, "2025-01-01", "2025-03-15")
    assert names(settings, "events") == sorted(["month=2025-01/days-01-31.parquet", "month=2025-02/days-01-28.parquet"]
                                               + [f"date=2025-03-{d:02d}/part-1.parquet" for d in range(1, 15)])
    assert lake.partition_dates(settings, "events") == [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(73)]
    january = pq.ParquetFile(lake.table_dir(settings, "events") / "month=2025-01" / "days-01-31.parquet")
    assert january.metadata.num_row_groups == 31  # a day per row group: the day prunes too
    table = january.read()
    hashes = table.column(HASH_COLUMN).to_numpy()
    days = pd.to_datetime(table.column("event_ts").to_numpy()).normalize()
    for day in np.unique(days):  # each day's rows sorted by the stored customer hash
        inside = hashes[days == day]
        assert (np.diff(inside) >= 0).all()
    assert (hashes == customer_hash(table.column("customer_id").to_pandas())).all()
    # exactly the rows of the range, from a month file as from day files
    got = read(settings, "events", [(dt.date(2025, 1, 10), dt.date(2025, 2, 3)), (dt.date(2025, 3, 13), dt.date(2025, 4, 1))])
    ts = batch["event_ts"]
    want = batch[((ts >= "2025-01-10") & (ts < "2025-02-03")) | (ts >= "2025-03-13")]
    pd.testing.assert_frame_equal(canonical(got[want.columns]), canonical(want), check_dtype=False)


def test_a_rerun_replaces_a_day_inside_its_month_and_a_month_is_compacted_once_it_has_settled(settings):
    assert settings.lake_compact_after_days == 7
    lake.write_window(settings, "events", events("2025-01-01", 68), "2025-01-01", "2025-03-10")  # to Mar 9
    lake.write_window(settings, "events", events("2025-03-10", 21), "2025-03-10", "2025-03-31")  # March still open
    assert names(settings, "events")[:2] == ["date=2025-03-01/part-1.parquet", "date=2025-03-02/part-1.parquet"]
    # the rerun of Jan 7 and Jan 8 (with new rows for the 7th only): the 7th replaced, the 8th kept
    rerun = events("2025-01-07", 1, seed=7)
    lake.write_window(settings, "events", rerun, "2025-01-07", "2025-01-09")
    assert names(settings, "events")[-2:] == ["month=2025-01/days-01-31.parquet", "month=2025-02/days-01-28.parquet"]
    seventh = read(settings, "events", [(dt.date(2025, 1, 7), dt.date(2025, 1, 8))])
    pd.testing.assert_frame_equal(canonical(seventh[rerun.columns]), canonical(rerun), check_dtype=False)
    assert len(read(settings, "events", [(dt.date(2025, 1, 8), dt.date(2025, 1, 9))])) == 50
    # the night of April 1 (window March 31): a day file (a night that re-ingests a month's last
    # days rewrites that day, not a month file); March is compacted once it has settled, 7 days on
    lake.write_window(settings, "events", events("2025-03-31", 1), "2025-03-31", "2025-04-01")
    assert "date=2025-03-31/part-1.parquet" in names(settings, "events")
    assert not any(n.startswith("month=2025-03") for n in names(settings, "events"))
    lake.write_window(settings, "events", events("2025-04-01", 6), "2025-04-01", "2025-04-07")
    assert not any(n.startswith("month=2025-03") for n in names(settings, "events"))
    lake.write_window(settings, "events", events("2025-04-07", 1), "2025-04-07", "2025-04-08")
    assert names(settings, "events") == [f"date=2025-04-{d:02d}/part-1.parquet" for d in range(1, 8)] + [
        "month=2025-01/days-01-31.parquet", "month=2025-02/days-01-28.parquet", "month=2025-03/days-01-31.parquet"]
    assert len(read(settings, "events", [(None, dt.date(2025, 4, 8))])) == 50 * (59 + 31 + 7)


@pytest.mark.parametrize("count", [1, 4, 7])
def test_the_pieces_of_a_bucketed_read_are_the_whole_and_a_legacy_lake_reads_the_same_then_migrates(settings, count):
    batch = events("2025-01-20", 20, customers=5000)
    lake.write_window(settings, "events", batch, "2025-01-20", "2025-02-09")
    whole = canonical(read(settings, "events", [(None, dt.date(2025, 3, 1))]))
    pieces = [read(settings, "events", [(None, dt.date(2025, 3, 1))], hashes=hash_range(p)) for p in all_parts(count)]
    for part, piece in zip(all_parts(count), pieces, strict=True):
        assert (bucket_of(piece["customer_id"], count) == part.index).all()
    pd.testing.assert_frame_equal(canonical(pd.concat(pieces)), whole)
    # the same rows as a lake written before the layout (arrival order, no hash column, part-0)
    base = lake.table_dir(settings, "events")
    for f in lake.table_files(settings, "events"):
        for day in f.days:
            rows = batch[batch["event_ts"].dt.normalize() == pd.Timestamp(day)]
            folder = base / f"date={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            schema = lake.schema_of(settings, "events")
            pq.write_table(pa.Table.from_pandas(rows.reindex(columns=schema.names), schema=schema, preserve_index=False),
                           folder / lake.LEGACY_PART_NAME)
        f.path.unlink()
    assert set(lake.legacy_files(settings)) == {"events"}
    legacy = [read(settings, "events", [(None, dt.date(2025, 3, 1))], hashes=hash_range(p)) for p in all_parts(count)]
    pd.testing.assert_frame_equal(canonical(pd.concat(legacy)), whole)
    assert lake.migrate(settings) == {"events": 20}
    assert names(settings, "events") == ([f"date=2025-02-{d:02d}/part-1.parquet" for d in range(1, 9)]
                                         + ["month=2025-01/days-20-31.parquet"])
    assert lake.migrate(settings) == {} and lake.legacy_files(settings) == {}
    migrated = [read(settings, "events", [(None, dt.date(2025, 3, 1))], hashes=hash_range(p)) for p in all_parts(count)]
    pd.testing.assert_frame_equal(canonical(pd.concat(migrated)), whole)


def test_a_compaction_that_stopped_half_way_shows_no_row_twice(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", lake_compact_after_days=0)  # January closes on Feb 1
    lake.write_window(settings, "events", events("2025-01-01", 31), "2025-01-01", "2025-02-01")
    month = lake.table_dir(settings, "events") / "month=2025-01" / "days-01-31.parquet"
    # the day files the month file replaced, back as if their removal had not happened
    for day, rows in events("2025-01-01", 31).groupby(lambda i: i // 50):
        folder = month.parent.parent / f"date=2025-01-{day + 1:02d}"
        folder.mkdir()
        rows.to_parquet(folder / lake.PART_NAME, index=False)
    assert len(read(settings, "events", [(None, dt.date(2025, 2, 1))])) == 50 * 31
    assert lake.partition_files(settings, "events") == [month]


@pytest.mark.parametrize("text", [False, True])
def test_the_hash_lookup_of_known_customers_is_the_hash_itself(text):
    from pipeline.ingestion.buckets import HashLookup, arrow_hash

    known = np.arange(1, 3001)
    ids = [5, 17, None, 4000, 2999, 5, -3, 3000] * 500  # known, unknown, repeated and null ids
    if text:
        known = np.array(sorted(f"c{i}" for i in known), dtype=object)
        ids = [None if i is None else f"c{i}" for i in ids]
    lookup = HashLookup(known)
    array = pa.array(ids)
    first = lookup(array.slice(0, 2000))  # fewer rows than customers: hashed
    assert lookup._index is None
    second = lookup(pa.chunked_array([array.slice(0, 1000), array.slice(1000)]))  # past 3,000: a lookup
    assert lookup._index is not None
    expected = arrow_hash(array)
    assert first.equals(expected.slice(0, 2000)) and second.equals(expected)


def plan_changes(start: str, days: int, seed: int = 0, first_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.repeat(np.arange(days), 3) * 86_400 + rng.integers(0, 86_399, 3 * days)
    stamps = pd.Timestamp(start) + pd.to_timedelta(seconds, "s")
    return pd.DataFrame({"change_id": np.arange(first_id, first_id + 3 * days), "customer_id": rng.integers(1, 500, 3 * days),
                         "changed_at": stamps, "old_plan": "basic", "new_plan": "plus"})


def test_a_slowly_changing_table_s_closed_years_are_one_file_each_and_a_rerun_rewrites_its_year(settings):
    # 2023-12-01 .. 2025-03-09: 2023 and 2024 closed (and settled), 2025's January and February months
    batch = plan_changes("2023-12-01", 31 + 366 + 31 + 28 + 9)
    lake.write_window(settings, "plan_changes", batch, "2023-12-01", "2025-03-10")
    files = names(settings, "plan_changes")
    assert files[-4:] == ["month=2025-01/days-01-31.parquet", "month=2025-02/days-01-28.parquet",
                          "year=2023/days-1201-1231.parquet", "year=2024/days-0101-1231.parquet"]
    assert files[:-4] == [f"date=2025-03-{d:02d}/part-1.parquet" for d in range(1, 10)]
    whole = canonical(read(settings, "plan_changes", [(None, dt.date(2025, 3, 10))]))
    pd.testing.assert_frame_equal(whole[batch.columns], canonical(batch)[batch.columns], check_dtype=False)
    # the events are read by their window: their months are not merged into years
    lake.write_window(settings, "events", events("2024-12-01", 40), "2024-12-01", "2025-01-10")
    assert "month=2024-12/days-01-31.parquet" in names(settings, "events")
    assert not any(n.startswith("year=") for n in names(settings, "events"))
    # a year compaction that stopped after the year file was written: the month files left over
    # are not read twice
    year = lake.table_dir(settings, "plan_changes") / "year=2024"
    leftover = lake.table_dir(settings, "plan_changes") / "month=2024-07"
    leftover.mkdir()
    july = [("changed_at", ">=", pd.Timestamp("2024-07-01")), ("changed_at", "<", pd.Timestamp("2024-08-01"))]
    pq.write_table(pq.read_table(year / "days-0101-1231.parquet", filters=july), leftover / "days-01-31.parquet")
    assert len(read(settings, "plan_changes", [(None, dt.date(2025, 3, 10))])) == len(batch)
    # a rerun of one day of a closed year: its year file is rewritten with that day replaced (and
    # the year's other files go)
    rerun = plan_changes("2024-06-15", 1, seed=9, first_id=10_000)
    lake.write_window(settings, "plan_changes", rerun, "2024-06-15", "2024-06-16")
    assert names(settings, "plan_changes")[-1] == "year=2024/days-0101-1231.parquet"
    assert not list(leftover.glob("*.parquet"))
    day = read(settings, "plan_changes", [(dt.date(2024, 6, 15), dt.date(2024, 6, 16))])
    pd.testing.assert_frame_equal(canonical(day[rerun.columns]), canonical(rerun), check_dtype=False)
    assert len(read(settings, "plan_changes", [(None, dt.date(2025, 3, 10))])) == len(batch)


def test_a_year_file_s_name_lists_its_days_however_scattered():
    from pipeline.ingestion.lake import _year_days, year_file_name

    rng = np.random.default_rng(3)
    for picked in ([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)],
                   [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 12, 31)],
                   sorted({dt.date(2024, 1, 1) + dt.timedelta(days=int(i)) for i in rng.integers(0, 366, 150)})):
        name = year_file_name(picked)
        assert len(name) < 120 and _year_days("2024", name) == tuple(picked)
    assert year_file_name([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]) == "days-0101-1231.parquet"
