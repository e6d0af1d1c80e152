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
