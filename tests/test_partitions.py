"""Customer-hash partitions: the nightly's features and scores as K pieces publish exactly what one piece does."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import RUN_DATE
from partitioned_nights import assert_identical, one_and_four_nights

from pipeline.features.partitions import Part, all_parts, bucket_of, bucket_of_hash, hash_range, register_part


def test_python_and_duckdb_put_every_id_in_the_same_bucket():
    ids = pd.Series(["00042", "42", "A-7", "ünï", "", "x" * 100])
    numbers = pd.Series([0, 1, 42, -7, 2**62, 123456789])
    con = duckdb.connect()
    for count in (1, 2, 4, 7):
        for values in (ids, numbers):
            buckets = bucket_of(values, count)
            assert ((buckets >= 0) & (buckets < count)).all()
            for part in all_parts(count):
                register_part(con, part)
                con.register("ids", pd.DataFrame({"id": values}))
                inside = con.execute("SELECT id FROM ids WHERE in_part(id)").df()["id"].tolist()
                assert sorted(map(str, inside)) == sorted(str(v) for v, b in zip(values, buckets, strict=True)
                                                          if b == part.index), (count, part)
    # the rule is MD5 (stable across Python and DuckDB versions), a bucket a contiguous range of
    # hashes (the lake's row groups are sorted by it): pinned, and "00042" is not 42
    assert bucket_of(pd.Series(["00042", "42"]), 1000).tolist() == [
        int("fa0fe7a2", 16) * 1000 >> 32, int(__import__("hashlib").md5(b"42").hexdigest()[:8], 16) * 1000 >> 32]
    for count in (1, 3, 4, 7, 1000):
        edges = [hash_range(part) for part in all_parts(count)]
        assert edges[0][0] == 0 and edges[-1][1] == 2**32 and all(a[1] == b[0] for a, b in itertools.pairwise(edges))
        for part, (lo, hi) in zip(all_parts(count), edges, strict=True):
            assert (bucket_of_hash(np.array([lo, hi - 1]), count) == part.index).all()
    with pytest.raises(ValueError, match="partition 4 of 4"):
        Part(4, 4).check()
    with pytest.raises(ValueError, match="config partitions: 0"):
        all_parts(0)


@pytest.fixture(scope="module")
def one_and_four(trained_source, tmp_path_factory):
    """The session's trained business copied twice: its nights run with partitions 1 and with partitions 4."""
    return one_and_four_nights(trained_source, tmp_path_factory.mktemp("partitions"), is_trained=True, reports=False)


def test_one_and_four_partitions_publish_identical_scores_alerts_and_monitoring_rows(one_and_four):
    assert_identical(one_and_four)


def test_the_features_of_the_buckets_are_the_features_of_everyone(one_and_four, tmp_path):
    from pipeline.features.build import build_features, write_features

    settings = one_and_four[1][0]
    whole = build_features(settings, [RUN_DATE])
    assert len(whole) > 1000
    pieces = []
    for part in all_parts(3):
        out = write_features(settings, [RUN_DATE], tmp_path / f"{part.name}.parquet", part=part)
        piece = pd.read_parquet(out)
        assert len(piece) and (bucket_of(piece["customer_id"], 3) == part.index).all()
        pieces.append(piece)
    together = pd.concat(pieces).sort_values(["as_of", "customer_id"]).reset_index(drop=True)
    whole = whole.reset_index(drop=True)
    together["as_of"], whole["as_of"] = pd.to_datetime(together["as_of"]), pd.to_datetime(whole["as_of"])
    pd.testing.assert_frame_equal(together, whole, check_dtype=False)


def test_a_slowly_changing_table_s_year_is_in_customer_order_across_its_file_and_an_older_one_migrates(tmp_path):
    """A day of a slowly changing table fills part of one row group, which spans every customer
    hash: only the year file's own order lets a piece skip the other buckets' row groups."""
    import datetime as dt

    import pyarrow.parquet as pq

    from pipeline.config import load_settings
    from pipeline.ingestion import lake
    from pipeline.ingestion.buckets import HASH_COLUMN, row_group_rows

    settings = load_settings(data_dir=tmp_path / "data")
    rng = np.random.default_rng(5)
    days, per_day = 366 + 31, 80  # 2024 (a closed year) and January 2025 (a closed month)
    seconds = np.repeat(np.arange(days), per_day) * 86_400 + rng.integers(0, 86_399, days * per_day)
    batch = pd.DataFrame({"change_id": np.arange(days * per_day), "customer_id": rng.integers(1, 20_000, days * per_day),
                          "changed_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(seconds, "s"),
                          "old_plan": "basic", "new_plan": "plus"})
    lake.write_window(settings, "plan_changes", batch, "2024-01-01", "2025-02-10")
    year = lake.table_dir(settings, "plan_changes") / "year=2024" / "days-0101-1231.parquet"
    everything = [(None, dt.date(2025, 2, 10))]

    def spans() -> list[tuple[int, int]]:
        meta = pq.ParquetFile(year).metadata
        at = pq.ParquetFile(year).schema_arrow.get_field_index(HASH_COLUMN)
        return [(meta.row_group(i).column(at).statistics.min, meta.row_group(i).column(at).statistics.max)
                for i in range(meta.num_row_groups)]

    def read(part: Part | None) -> pd.DataFrame:
        with lake.duckdb_connection(settings) as con:
            lake.register_lake_table(con, settings, "plan_changes", everything,
                                     hashes=hash_range(part) if part else None)
            return con.execute("SELECT * FROM plan_changes ORDER BY change_id").df()

    def in_file_order() -> None:
        groups = spans()
        assert len(groups) == 4 and all(a[1] <= b[0] for a, b in itertools.pairwise(groups)), groups
        for part in all_parts(4):  # each piece's hash range meets at most two of the four row groups
            lo, hi = hash_range(part)
            assert sum(g_lo < hi and g_hi >= lo for g_lo, g_hi in groups) <= 2
        whole = read(None)
        assert len(whole) == len(batch)
        pieces = pd.concat([read(part) for part in all_parts(4)]).sort_values("change_id", ignore_index=True)
        pd.testing.assert_frame_equal(pieces, whole)

    in_file_order()
    assert lake.legacy_files(settings) == {}
    # the year file as the lake wrote it before (each day's rows in row groups of their own): read
    # the same, listed by legacy_files and rewritten by the migration
    rows = pq.read_table(year)
    day = pd.to_datetime(rows.column("changed_at").to_numpy()).normalize()
    with pq.ParquetWriter(year, rows.schema) as writer:
        for d in np.unique(day):
            piece = rows.filter(pa.array(day == d)).sort_by(HASH_COLUMN)
            writer.write_table(piece, row_group_size=row_group_rows(piece.num_rows))
    assert len(spans()) == 366
    assert [f.path for f in lake.legacy_files(settings)["plan_changes"]] == [year]
    assert lake.migrate(settings) == {"plan_changes": 1} and lake.legacy_files(settings) == {}
    in_file_order()
