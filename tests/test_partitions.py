"""Customer-hash partitions: the nightly's features and scores as K pieces publish exactly what one piece does."""

from __future__ import annotations

import shutil

import duckdb
import pandas as pd
import pytest
from conftest import RUN_DATE

from pipeline.config import load_settings
from pipeline.features.partitions import Part, all_parts, bucket_of, register_part
from pipeline.results import TABLES
from pipeline.results import read as read_table

#: a quiet night, and the night one horizon (30 days) later: matured labels, performance rows and the drift alerts
NIGHTS = ("2025-05-28", "2025-06-27")


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
    # the rule is MD5 (stable across Python and DuckDB versions): pinned, and "00042" is not 42
    assert bucket_of(pd.Series(["00042", "42"]), 1000).tolist() == [
        int("fa0fe7a2", 16) % 1000, int(__import__("hashlib").md5(b"42").hexdigest()[:8], 16) % 1000]
    with pytest.raises(ValueError, match="partition 4 of 4"):
        Part(4, 4).check()
    with pytest.raises(ValueError, match="config partitions: 0"):
        all_parts(0)


@pytest.fixture(scope="module")
def one_and_four(generated_source, tmp_path_factory):
    """One trained business copied twice: its nights run with partitions 1 and with partitions 4."""
    from pipeline.flows import run_nightly, run_training

    base = tmp_path_factory.mktemp("partitions")
    one, four = base / "one" / "data", base / "four" / "data"
    shutil.copytree(generated_source, one)
    trained = load_settings(data_dir=one, horizon_days=30, training_snapshots=3, search_iterations=1)
    run_training(trained, RUN_DATE)
    shutil.copytree(one, four)
    out = {}
    for data_dir, k in ((one, 1), (four, 4)):
        settings = load_settings(data_dir=data_dir, horizon_days=30, partitions=k)
        out[k] = settings, [run_nightly(settings, night, lookback_days=31) for night in NIGHTS]
    return out


def test_one_and_four_partitions_publish_identical_scores_alerts_and_monitoring_rows(one_and_four):
    (s1, nights1), (s4, nights4) = one_and_four[1], one_and_four[4]
    assert nights4[-1]["scores"]["partitions"] == 4 and "partitions" not in nights1[-1]["scores"]
    assert nights1[-1]["monitoring"]["performance"] is not None  # the matured night is compared too
    for name, table in TABLES.items():
        a, b = read_table(s1, table), read_table(s4, table)
        assert len(a) == len(b), name
        key = [c.name for c in table.primary_key.columns] or [c for c in a.columns if c not in ("message",)]
        a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert len(read_table(s1, "churn_scores")) > 1000 and len(read_table(s1, "alerts"))
    # the night's artifacts too: the combined scores file is the unpartitioned one, row for row
    for n1, n4 in zip(nights1, nights4, strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(n1["scores"]["path"]), pd.read_parquet(n4["scores"]["path"]))
        pd.testing.assert_frame_equal(pd.read_parquet(n1["features"]["path"]),
                                      pd.read_parquet(n4["features"]["path"]))


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
