"""Ingestion against a real SQLite database and real landed files."""

from __future__ import annotations

import os
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline.config import SQL_DIR
from pipeline.db import engine
from pipeline.ingest import IngestionError, ingest_events, ingest_table
from pipeline.schemas import EVENTS_SCHEMA, SOURCE_TABLES


def _seed_payments(settings, rows: list[tuple]) -> None:
    df = pd.DataFrame(rows, columns=["payment_id", "customer_id", "paid_at", "amount", "status"])
    df["paid_at"] = pd.to_datetime(df["paid_at"])
    df.to_sql("payments", engine(settings), if_exists="replace", index=False)


def test_window_is_half_open_and_types_follow_the_contract(settings, tmp_path):
    _seed_payments(settings, [
        (1, 10, "2025-03-01 00:00:00", 9.99, "success"),   # at window start: in
        (2, 11, "2025-03-01 23:59:59", 15.99, "failed"),
        (3, 12, "2025-03-02 00:00:00", 22.99, "success"),  # at window end: out
        (4, 13, "2025-02-28 23:59:59", 9.99, "success"),   # before: out
    ])
    res = ingest_table(settings, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    table = pq.read_table(res.path)
    assert table.schema == SOURCE_TABLES["payments"].schema
    assert table.column("payment_id").to_pylist() == [1, 2]
    assert res.rows == 2 and res.missing_columns == ()


def test_reads_in_chunks_into_one_file(settings, tmp_path):
    _seed_payments(settings, [(i, i, f"2025-03-01 0{i}:00:00", 1.0, "success") for i in range(7)])
    res = ingest_table(settings.replace(ingest_chunk_rows=2), "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    assert res.rows == 7
    assert pd.read_parquet(res.path)["payment_id"].tolist() == list(range(7))


def test_missing_column_travels_on_to_validation(settings, tmp_path):
    _seed_payments(settings, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    with engine(settings).begin() as conn:
        conn.execute(sa.text("ALTER TABLE payments DROP COLUMN status"))
    res = ingest_table(settings, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    assert res.missing_columns == ("status",)
    assert "status" not in pd.read_parquet(res.path).columns


def test_unconvertible_value_names_table_and_column(settings, tmp_path):
    _seed_payments(settings, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    with engine(settings).begin() as conn:
        conn.execute(sa.text("UPDATE payments SET amount = 'lots'"))
    with pytest.raises(IngestionError, match="table payments, column amount"):
        ingest_table(settings, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")


def test_empty_window_writes_an_empty_file_with_the_schema(settings, tmp_path):
    _seed_payments(settings, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    res = ingest_table(settings, "payments", "2025-04-01", "2025-04-02", tmp_path / "p.parquet")
    assert res.rows == 0
    assert pq.read_table(res.path).schema == SOURCE_TABLES["payments"].schema


@pytest.mark.parametrize("table", list(SOURCE_TABLES))
def test_ingest_sql_uses_bound_parameters_only(table):
    sql = (SQL_DIR / f"ingest_{table}.sql").read_text()
    assert ":window_start" in sql and ":window_end" in sql
    assert not re.search(r"\{.*\}|%s|%\(", sql), "values must be bound, never formatted into SQL"


def test_events_parquet_and_csv_with_schema_enforced(settings, tmp_path):
    root = settings.landing_dir / "events"
    day1, day2, day3 = root / "date=2025-03-01", root / "date=2025-03-02", root / "date=2025-03-03"
    for d in (day1, day2, day3):
        d.mkdir(parents=True)
    ev = pd.DataFrame({"customer_id": [1, 2], "event_ts": pd.to_datetime(["2025-03-01 08:00", "2025-03-01 09:00"]),
                       "event_type": ["login", "session"], "duration_s": [0.0, 120.5], "content_units": [0, 0]})
    ev.to_parquet(day1 / "events.parquet")  # int64 content_units: cast to the contract's int32
    (day2 / "events.csv").write_text("customer_id,event_ts,event_type,duration_s,content_units\n"
                                     "3,2025-03-02 10:00:00,content,30.0,2\n")
    ev.to_parquet(day3 / "events.parquet")  # outside the window
    res = ingest_events(settings, "2025-03-01", "2025-03-03", tmp_path / "e.parquet")
    table = pq.read_table(res.path)
    assert table.schema == EVENTS_SCHEMA
    assert table.column("customer_id").to_pylist() == [1, 2, 3]


@pytest.mark.skipif(not os.environ.get("CHURNFLOW_TEST_POSTGRES_URL"),
                    reason="set CHURNFLOW_TEST_POSTGRES_URL to run against a real PostgreSQL")
def test_postgresql_by_url_only(settings, tmp_path):
    pg = settings.replace(source_db_url=os.environ["CHURNFLOW_TEST_POSTGRES_URL"])
    _seed_payments(pg, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    res = ingest_table(pg, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    assert res.rows == 1


# ---------------------------------------------------------------- chunked ingest + validate + publish
def _lake_rows(settings, table: str) -> pd.DataFrame:
    from pipeline import lake

    rows = lake.read_table(settings, table)
    return rows.sort_values(rows.columns[0]).reset_index(drop=True)


def test_chunk_size_does_not_change_what_reaches_the_lake_or_quarantine(settings):
    """Three rows per chunk or all in one: the same partitions and rows; for a broken batch
    the same verdict, counts and quarantined rows."""
    from pipeline.flows import ingest_step
    from pipeline.validate import DataValidationError

    rows = [(i, 100 + i, f"2025-03-0{1 + i % 3} {i % 24:02d}:00:00", 5.0 + i, "success") for i in range(12)]
    broken = [(i, c, t, -1.0 if i in (4, 9) else a, st) for i, c, t, a, st in rows]
    results, errors = {}, {}
    for chunk_rows in (3, 1000):
        s = settings.replace(data_dir=settings.data_dir / str(chunk_rows), ingest_chunk_rows=chunk_rows)
        _seed_payments(s, broken)
        with pytest.raises(DataValidationError) as err:
            ingest_step(s, "churn_nightly", "2025-03-04", "payments", lookback_days=3)
        errors[chunk_rows] = (err.value.result, pd.read_parquet(err.value.quarantined).sort_values("payment_id"))
        _seed_payments(s, rows)
        out = ingest_step(s, "churn_nightly", "2025-03-04", "payments", lookback_days=3)
        results[chunk_rows] = (out, _lake_rows(s, "payments"))
    (small, lake_small), (big, lake_big) = results[3], results[1000]
    assert small["chunks"] == 4 and big["chunks"] == 1
    assert small["rows"] == big["rows"] == 12 and small["rejected"] == big["rejected"] == 0
    assert small["partitions"] == big["partitions"] == 3 and small["quarantine"] is None
    pd.testing.assert_frame_equal(lake_small, lake_big)
    assert len(lake_small) == 12
    (res_small, q_small), (res_big, q_big) = errors[3], errors[1000]
    assert [(f.column, f.rule, f.unexpected_count) for f in res_small.failures] == \
        [(f.column, f.rule, f.unexpected_count) for f in res_big.failures] == \
        [("amount", "expect_column_values_to_be_between", 2)]
    assert q_small["payment_id"].tolist() == q_big["payment_id"].tolist() == [4, 9]
    assert q_small["_reason"].str.contains("payments.amount: expect_column_values_to_be_between").all()


def test_a_key_repeated_in_another_chunk_fails_the_batch_and_publishes_nothing(settings):
    """Uniqueness holds over the whole batch, not only within each chunk."""
    from pipeline import lake
    from pipeline.flows import ingest_step
    from pipeline.validate import DataValidationError

    rows = [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 5.0, "success") for i in range(6)]
    rows.append((2, 999, "2025-03-01 20:00:00", 7.0, "success"))  # payment_id 2 again, in the last chunk
    s = settings.replace(ingest_chunk_rows=3)
    _seed_payments(s, rows)
    with pytest.raises(DataValidationError) as err:
        ingest_step(s, "churn_nightly", "2025-03-02", "payments")
    text = str(err.value)
    assert "payments.payment_id: expect_column_values_to_be_unique failed for 2 of 7 rows" in text
    assert "across chunks" in text and "(3 chunks)" in text
    assert not lake.has_data(s, "payments")
    quarantined = pd.read_parquet(err.value.quarantined)
    assert sorted(quarantined["customer_id"]) == [102, 999]
    assert not list((s.lake_dir / ".staging").rglob("*.parquet"))  # staged pieces are cleaned up


def test_a_failed_chunk_keeps_the_earlier_lake_partitions(settings):
    """A batch that fails in its last chunk leaves the lake as it was (nothing half published)."""
    from pipeline import lake
    from pipeline.flows import ingest_step
    from pipeline.validate import DataValidationError

    s = settings.replace(ingest_chunk_rows=2)
    _seed_payments(s, [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 5.0, "success") for i in range(5)])
    ingest_step(s, "churn_nightly", "2025-03-02", "payments")
    before = lake.read_table(s, "payments")
    _seed_payments(s, [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 6.0, "success" if i < 4 else "lost")
                       for i in range(5)])
    with pytest.raises(DataValidationError, match="payments.status: expect_column_values_to_be_in_set"):
        ingest_step(s, "churn_nightly", "2025-03-02", "payments")
    pd.testing.assert_frame_equal(lake.read_table(s, "payments"), before)


def test_long_ingest_logs_progress_with_counts_and_eta(settings, caplog):
    from pipeline.flows import ingest_step

    _seed_payments(settings, [(i, i, f"2025-03-{1 + i:02d} 10:00:00", 1.0, "success") for i in range(20)])
    with caplog.at_level("INFO", logger="pipeline.progress"):
        ingest_step(settings.replace(ingest_chunk_rows=5), "churn_nightly", "2025-03-21", "payments", lookback_days=20)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    assert lines and re.search(r"ingest payments \[2025-03-01, 2025-03-21\): 20/20 days \(100%\), 20 rows, 0 rejected, "
                               r"20 partitions, \d+s elapsed", lines[-1]), lines
