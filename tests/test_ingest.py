"""Ingestion against a real SQLite database and real landed files."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline.config import SQL_DIR
from pipeline.ingestion.contract import EVENTS_SCHEMA, SOURCE_TABLES
from pipeline.ingestion.extract import IngestionError, ingest_events, ingest_table
from pipeline.ingestion.source import engine_for


def _seed_payments(settings, rows: list[tuple]) -> None:
    df = pd.DataFrame(rows, columns=["payment_id", "customer_id", "paid_at", "amount", "status"])
    df["paid_at"] = pd.to_datetime(df["paid_at"])
    df.to_sql("payments", engine_for(settings.db_url), if_exists="replace", index=False)


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
    with engine_for(settings.db_url).begin() as conn:
        conn.execute(sa.text("ALTER TABLE payments DROP COLUMN status"))
    res = ingest_table(settings, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    assert res.missing_columns == ("status",)
    assert "status" not in pd.read_parquet(res.path).columns


def test_unconvertible_value_names_table_and_column(settings, tmp_path):
    _seed_payments(settings, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    with engine_for(settings.db_url).begin() as conn:
        conn.execute(sa.text("UPDATE payments SET amount = 'lots'"))
    with pytest.raises(IngestionError, match="table payments, column amount"):
        ingest_table(settings, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")


#: every category column of the database tables, and a code of each kind to give it
CATEGORY_COLUMNS = {"customers": ["gender", "region", "acquisition_channel"], "subscriptions": ["plan", "payment_method"],
                    "plan_changes": ["old_plan", "new_plan"], "support_tickets": ["category"],
                    "cancellations": ["reason"]}


def test_integer_codes_of_every_category_column_are_kept_as_text_codes(settings, tmp_path):
    """A subscription service whose plans and payment methods are integer ids was refused with a
    traceback (cannot convert to string: Expected a string or bytes dtype, got int64). Integer
    codes of every category column are text codes ("40"), also where SQLite reads an integer
    column with NULLs as floats (40.0 -> "40", never "40.0"), and never numbers."""
    from pipeline.ingestion.contract import TABLES

    engine = engine_for(settings.db_url)
    for table, columns in CATEGORY_COLUMNS.items():
        rows: dict[str, list] = {}
        for column in TABLES[table].columns:
            if column.kind == "id":
                rows[column.name] = [1, 2, 3]
            elif column.kind == "time":
                rows[column.name] = pd.to_datetime(["2025-03-01 01:00", "2025-03-01 02:00", "2025-03-01 03:00"])
            elif column.name in columns:  # the first with a NULL (read back as float), the others integers
                rows[column.name] = [40, None, 7] if column.name == columns[0] else [40, 1, 7]
        pd.DataFrame(rows).to_sql(table, engine, if_exists="replace", index=False)
        res = ingest_table(settings, table, "2025-03-01", "2025-03-02", tmp_path / f"{table}.parquet")
        lake = pq.read_table(res.path)
        for column in columns:
            assert lake.schema.field(column).type == pa.string(), (table, column)
            want = ["40", None, "7"] if column == columns[0] else ["40", "1", "7"]
            assert lake.column(column).to_pylist() == want, (table, column)


def test_boolean_and_mixed_codes_are_text_codes_and_anything_else_names_its_column():
    """Booleans (true/false), decimals, a column of text and integer codes mixed (one SQLite
    column) and a categorical column read as text codes; values that are no codes (times,
    bytes that are not text) are one line naming the table and column, a DataError (exit 2)."""
    import datetime as dt_
    from decimal import Decimal

    from pipeline.errors import DataError
    from pipeline.ingestion.extract import conform

    schema = SOURCE_TABLES["subscriptions"].schema
    frame = pd.DataFrame({"subscription_id": [1, 2, 3], "customer_id": [1, 2, 3], "monthly_fee": [9.0, 0, 5],
                          "start_date": ["2025-03-01"] * 3})
    for plan, want in [(pd.Series([True, False, None], dtype="boolean"), ["true", "false", None]),
                       (pd.Series(["gold", 7, 12.0], dtype=object), ["gold", "7", "12"]),
                       (pd.Series([Decimal("40"), Decimal("2.50"), None], dtype=object), ["40", "2.5", None]),
                       (pd.Series([2.5, float("nan"), 1e11]), ["2.5", None, "100000000000"]),
                       (pd.Series(["b", "a", "b"], dtype="category"), ["b", "a", "b"])]:
        got = conform(frame.assign(plan=plan, payment_method=3), schema, "subscriptions")
        assert got.column("plan").to_pylist() == want and got.column("payment_method").to_pylist() == ["3"] * 3
    for plan, words in [([dt_.datetime(2025, 1, 1)] * 3, "values of type timestamp"),
                        ([b"\xff", "gold", None], "cannot read as text codes"),
                        (["gold", "gold", [1, 2]], "values of type list")]:
        with pytest.raises(DataError, match=r"^table subscriptions, column plan: ") as err:
            conform(frame.assign(plan=pd.Series(plan, dtype=object)), schema, "subscriptions")
        assert words in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)


def test_a_value_that_cannot_be_conformed_stops_a_run_in_one_line(source_data, monkeypatch, capsys):
    """Not a traceback and exit 1 from run-training: exit 2 with one line naming the table and
    column (a value the contract's type cannot hold: rereading it cannot help, so no retries)."""
    from conftest import RUN_DATE

    from pipeline.__main__ import main

    monkeypatch.setenv("CHURNFLOW_SOURCE_TABLES", "customers,subscriptions,cancellations")  # no events: faster
    with engine_for(source_data.db_url).begin() as conn:
        conn.execute(sa.text("UPDATE subscriptions SET plan = X'FF' WHERE subscription_id = "
                             "(SELECT MIN(subscription_id) FROM subscriptions)"))
    assert main(["run-training", "--date", RUN_DATE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "table subscriptions, column plan: " in err, err


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


def test_postgresql_by_url_only(settings, tmp_path, postgres_db):
    pg = settings.replace(source_db_url=postgres_db)
    _seed_payments(pg, [(1, 10, "2025-03-01 01:00:00", 9.99, "success")])
    res = ingest_table(pg, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    assert res.rows == 1


# ---------------------------------------------------------------- chunked ingest + validate + publish
def _lake_rows(settings, table: str) -> pd.DataFrame:
    from pipeline.ingestion import lake

    rows = lake.read_table(settings, table)
    return rows.sort_values(rows.columns[0]).reset_index(drop=True)


def test_chunk_size_does_not_change_what_reaches_the_lake_or_quarantine(settings):
    """Three rows per chunk or all in one: the same partitions and rows; for a broken batch
    the same verdict, counts and quarantined rows."""
    from pipeline.context import RunContext
    from pipeline.ingestion.steps import ingest_step
    from pipeline.ingestion.validate import DataValidationError

    rows = [(i, 100 + i, f"2025-03-0{1 + i % 3} {i % 24:02d}:00:00", 5.0 + i, "success") for i in range(12)]
    broken = [(i, c, t, -1.0 if i in (4, 9) else a, st) for i, c, t, a, st in rows]
    results, errors = {}, {}
    for chunk_rows in (3, 1000):
        s = settings.replace(data_dir=settings.data_dir / str(chunk_rows), ingest_chunk_rows=chunk_rows)
        _seed_payments(s, broken)
        with pytest.raises(DataValidationError) as err:
            ingest_step(RunContext.of(s, "churn_nightly", "2025-03-04", lookback_days=3), "payments")
        errors[chunk_rows] = (err.value.result, pd.read_parquet(err.value.quarantined).sort_values("payment_id"))
        _seed_payments(s, rows)
        out = ingest_step(RunContext.of(s, "churn_nightly", "2025-03-04", lookback_days=3), "payments")
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
    from pipeline.context import RunContext
    from pipeline.ingestion import lake
    from pipeline.ingestion.steps import ingest_step
    from pipeline.ingestion.validate import DataValidationError

    rows = [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 5.0, "success") for i in range(6)]
    rows.append((2, 999, "2025-03-01 20:00:00", 7.0, "success"))  # payment_id 2 again, in the last chunk
    s = settings.replace(ingest_chunk_rows=3)
    _seed_payments(s, rows)
    with pytest.raises(DataValidationError) as err:
        ingest_step(RunContext.of(s, "churn_nightly", "2025-03-02"), "payments")
    text = str(err.value)
    assert "payments.payment_id: expect_column_values_to_be_unique failed for 2 of 7 rows" in text
    assert "across chunks" in text and "(3 chunks)" in text
    assert not lake.has_data(s, "payments")
    quarantined = pd.read_parquet(err.value.quarantined)
    assert sorted(quarantined["customer_id"]) == [102, 999]
    assert not list((s.lake_dir / ".staging").rglob("*.parquet"))  # staged pieces are cleaned up


def test_a_failed_chunk_keeps_the_earlier_lake_partitions(settings):
    """A batch that fails in its last chunk leaves the lake as it was (nothing half published)."""
    from pipeline.context import RunContext
    from pipeline.ingestion import lake
    from pipeline.ingestion.steps import ingest_step
    from pipeline.ingestion.validate import DataValidationError

    s = settings.replace(ingest_chunk_rows=2)
    _seed_payments(s, [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 5.0, "success") for i in range(5)])
    ingest_step(RunContext.of(s, "churn_nightly", "2025-03-02"), "payments")
    before = lake.read_table(s, "payments")
    _seed_payments(s, [(i, 100 + i, f"2025-03-01 {i:02d}:00:00", 6.0, "success" if i < 4 else "lost")
                       for i in range(5)])
    with pytest.raises(DataValidationError, match=r"payments\.status: expect_column_values_to_be_in_set"):
        ingest_step(RunContext.of(s, "churn_nightly", "2025-03-02"), "payments")
    pd.testing.assert_frame_equal(lake.read_table(s, "payments"), before)


def test_long_ingest_logs_progress_with_counts_and_eta(settings, caplog):
    from pipeline.context import RunContext
    from pipeline.ingestion.steps import ingest_step

    _seed_payments(settings, [(i, i, f"2025-03-{1 + i:02d} 10:00:00", 1.0, "success") for i in range(20)])
    with caplog.at_level("INFO", logger="pipeline.progress"):
        ingest_step(RunContext.of(settings.replace(ingest_chunk_rows=5), "churn_nightly", "2025-03-21", lookback_days=20),
                    "payments")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    assert lines and re.search(r"ingest payments \[2025-03-01, 2025-03-21\): 20/20 days \(100%\), 20 rows, 0 rejected, "
                               r"20 partitions, \d+s elapsed", lines[-1]), lines


@pytest.mark.parametrize("fault", ["missing", "empty"])
def test_a_missing_or_empty_landing_day_fails_and_keeps_the_lake(settings, fault):
    """A rerun of a night whose landing day vanished (or holds an empty file) used to delete
    that day's lake partition and score without it (exit 0)."""
    import shutil

    from pipeline.context import RunContext
    from pipeline.errors import IncompleteDataError
    from pipeline.ingestion import lake
    from pipeline.ingestion.steps import ingest_step

    day_dir = settings.landing_dir / "events" / "date=2025-03-01"
    day_dir.mkdir(parents=True)
    rows = pd.DataFrame({"customer_id": [1, 2], "event_ts": pd.to_datetime(["2025-03-01 08:00", "2025-03-01 09:00"]),
                         "event_type": ["login", "session"], "duration_s": [0.0, 60.0], "content_units": [0, 0]})
    pq.write_table(pa.Table.from_pandas(rows, schema=EVENTS_SCHEMA, preserve_index=False), day_dir / "events.parquet")
    assert ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "events")["rows"] == 2
    shutil.rmtree(day_dir)
    if fault == "empty":
        day_dir.mkdir()
        pq.write_table(EVENTS_SCHEMA.empty_table(), day_dir / "events.parquet")
    expected = "no partition for 1 day(s): 2025-03-01" if fault == "missing" else "only empty files for 1 day(s): 2025-03-01"
    with pytest.raises(IncompleteDataError) as err:
        ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "events")
    assert str(err.value).startswith("events [2025-03-01, 2025-03-02): the landing") and expected in str(err.value)
    assert len(lake.read_table(settings, "events")) == 2


def _land_events(settings, day: str, rows: list[tuple]) -> None:
    folder = settings.landing_dir / "events" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=["customer_id", "event_ts", "event_type", "duration_s", "content_units"])
    df["event_ts"] = pd.to_datetime(df["event_ts"])
    pq.write_table(pa.Table.from_pandas(df, schema=EVENTS_SCHEMA, preserve_index=False), folder / "events.parquet")


def test_exact_duplicate_rows_are_quarantined_once_and_the_batch_goes_on(settings):
    """An event delivered twice used to be counted twice in the features."""
    from pipeline.context import RunContext
    from pipeline.ingestion import lake
    from pipeline.ingestion.steps import ingest_step

    row = (1, "2025-03-01 08:00:00", "session", 60.0, 0)
    _land_events(settings, "2025-03-01", [row, (1, "2025-03-01 09:00:00", "login", 0.0, 0), row, row])
    out = ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "events")
    assert out["rows"] == 4 and out["rejected"] == 2 and out["tolerated"] == {"duplicate_row": 2}
    assert len(lake.read_table(settings, "events")) == 2
    quarantined = pd.read_parquet(out["quarantine"])
    assert len(quarantined) == 2 and (quarantined["_rules"] == "*:duplicate_row").all()
    assert quarantined["_reason"].str.startswith("events.*: duplicate_row (exact copy of an earlier row").all()


def test_rows_of_unknown_customers_are_quarantined_with_their_reason(settings):
    from pipeline.context import RunContext
    from pipeline.ingestion import lake
    from pipeline.ingestion.steps import ingest_step

    customers = pd.DataFrame({"customer_id": [1, 2], "signup_date": pd.to_datetime(["2024-01-01"] * 2),
                              "birth_year": [1980, 1990], "gender": ["F", "M"], "region": ["north", "south"],
                              "acquisition_channel": ["organic", "social"],
                              "updated_at": pd.to_datetime(["2025-02-01", "2025-02-02"])})
    lake.write_window(settings, "customers", customers, "2025-02-01", "2025-02-03")
    _land_events(settings, "2025-03-01", [(1, "2025-03-01 08:00:00", "login", 0.0, 0),
                                          (7, "2025-03-01 09:00:00", "login", 0.0, 0),
                                          (2, "2025-03-01 10:00:00", "session", 30.0, 0)])
    out = ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "events")
    assert out["tolerated"] == {"unknown_customer": 1} and out["rejected"] == 1
    assert sorted(lake.read_table(settings, "events")["customer_id"]) == [1, 2]
    quarantined = pd.read_parquet(out["quarantine"])
    assert quarantined["customer_id"].tolist() == [7]
    assert quarantined["_reason"].iloc[0] == ("events.customer_id: unknown_customer "
                                              "(no such customer in the customers table)")


def test_a_missing_sqlite_source_is_named_and_never_created(settings, tmp_path):
    """A misspelt path used to create an empty database and report `no such table: customers`."""
    from pipeline.context import RunContext
    from pipeline.errors import DataError
    from pipeline.ingestion.steps import ingest_step

    missing = tmp_path / "nowhere" / "sourse.db"
    s = settings.replace(source_db_url=f"sqlite:///{missing}")
    with pytest.raises(DataError, match=rf"config source_db_url: the source database {missing} does not exist"):
        ingest_step(RunContext.of(s, "churn_nightly", "2025-03-02"), "payments")
    assert not missing.exists() and not missing.parent.exists()
    with pytest.raises(DataError, match=r"source_db_url \(unset: SQLite at <data_dir>/source.db\)"):
        ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "payments")
    assert not (settings.data_dir / "source.db").exists()


def test_a_malformed_source_url_names_the_setting_and_masks_the_password(settings):
    from pipeline.context import RunContext
    from pipeline.errors import DataError
    from pipeline.ingestion.steps import ingest_step

    s = settings.replace(source_db_url="postgresql//churn:s3cret@db:5432/prod")
    with pytest.raises(DataError, match=r"config source_db_url: .* is not an SQLAlchemy URL") as err:
        ingest_step(RunContext.of(s, "churn_nightly", "2025-03-02"), "payments")
    assert "s3cret" not in str(err.value)
    from pipeline.ingestion.source import masked

    assert masked("postgresql+psycopg://churn:s3cret@db/prod") == "postgresql+psycopg://churn:***@db/prod"


def test_the_source_is_read_read_only(settings):
    """Ingest cannot write to the customer database (SQLite opened with mode=ro)."""
    from pipeline.ingestion.source import source_engine

    _seed_payments(settings, [(1, 10, "2025-03-01 00:00:00", 9.99, "success")])
    with pytest.raises(sa.exc.OperationalError, match="readonly"), source_engine(settings).begin() as conn:
        conn.execute(sa.text("DELETE FROM payments"))


@pytest.mark.parametrize(("content", "expected"), [
    (b"customer_id;event_ts;event_type;duration_s;content_units\n1;2025-03-01 08:00:00;login;0;0\n",
     r"no column\(s\) \['customer_id', 'event_ts', .*\]; its columns are \['customer_id;event_ts;event_type"),
    (b"customer_id,event_ts,event_type,duration_s,content_units\n1,2025-03-01 08:00:00,l\xe9\xff\xfegin,0,0\n",
     r"cannot be read as CSV: .*(UTF8|utf-8|invalid)"),
    (b"",
     r"cannot be read as CSV: .*[Ee]mpty"),
])
def test_an_unparseable_landing_file_is_named(settings, content, expected):
    """A wrong delimiter said "14 rule(s) broken in a batch of 0 rows"; bad bytes gave a raw pyarrow error."""
    from pipeline.context import RunContext
    from pipeline.ingestion.extract import LandingFileError
    from pipeline.ingestion.steps import ingest_step

    folder = settings.landing_dir / "events" / "date=2025-03-01"
    folder.mkdir(parents=True)
    (folder / "events.csv").write_bytes(content)
    with pytest.raises(LandingFileError) as err:
        ingest_step(RunContext.of(settings, "churn_nightly", "2025-03-02"), "events")
    assert str(err.value).startswith(f"events landing file {folder / 'events.csv'}")
    assert re.search(expected, str(err.value)), str(err.value)


# ---------------------------------------------------------------- your own schema: sql_dir, history_start
def test_your_own_ingest_sql_maps_your_schema_onto_the_contract(settings, tmp_path):
    """A database without a payments table, only orders(order_no, cust, ordered_at, total):
    an ingest_payments.sql of one's own in sql_dir maps it; the packaged SQL serves the rest."""
    orders = pd.DataFrame({"order_no": [7, 8, 9], "cust": [1, 2, 1], "total": [20.0, 35.5, 12.25],
                           "ordered_at": pd.to_datetime(["2025-03-01 09:00", "2025-03-01 18:30", "2025-03-02 08:00"])})
    orders.to_sql("orders", engine_for(settings.db_url), if_exists="replace", index=False)
    own = tmp_path / "my_sql"
    own.mkdir()
    (own / "ingest_payments.sql").write_text(
        "-- my shop's orders as the contract's payments\n"
        "SELECT order_no AS payment_id, cust AS customer_id, ordered_at AS paid_at, total AS amount,\n"
        "       'success' AS status\n"
        "FROM orders WHERE ordered_at >= :window_start AND ordered_at < :window_end ORDER BY ordered_at\n")
    mine = settings.replace(sql_dir=str(own))
    res = ingest_table(mine, "payments", "2025-03-01", "2025-03-02", tmp_path / "p.parquet")
    table = pq.read_table(res.path)
    assert table.schema == SOURCE_TABLES["payments"].schema
    assert table.column("payment_id").to_pylist() == [7, 8] and set(table.column("status").to_pylist()) == {"success"}
    from pipeline.errors import DataError

    with pytest.raises(DataError, match=r"config sql_dir: .*nowhere is not a folder"):
        ingest_table(settings.replace(sql_dir=str(tmp_path / "nowhere")), "payments", "2025-03-01", "2025-03-02",
                     tmp_path / "q.parquet")


def test_a_first_training_run_starts_each_table_at_its_earliest_row(settings):
    """history_start used to default to 2000-01-01 and silently skip older data; unset, a
    table's history starts at its earliest row (set, it bounds it)."""
    import datetime as dt

    from pipeline.ingestion.extract import window_for

    _seed_payments(settings, [(1, 10, "1996-05-04 10:00:00", 9.99, "success"), (2, 10, "2025-03-01 10:00:00", 9.99, "success")])
    end = dt.date(2025, 4, 1)
    assert settings.history_start == "" and window_for(settings, "payments", end, None) == (dt.date(1996, 5, 4), end)
    bounded = settings.replace(history_start="2020-01-01")
    assert window_for(bounded, "payments", end, None) == (dt.date(2020, 1, 1), end)
    nightly = (dt.date(2025, 3, 31), end)
    assert window_for(settings, "payments", end, nightly) == nightly


@pytest.mark.parametrize("spelling", ["2025-03-01", "2025-03-01 00:00:00", "2025-03-01T00:00:00",
                                      "2025-03-01 00:00:00.000000"])
def test_a_row_at_the_first_instant_of_a_window_is_in_it_on_sqlite(settings, spelling):
    """SQLite compares text: a bound '2025-03-01 00:00:00.000000' sorted after a row's
    '2025-03-01 00:00:00' (or a date '2025-03-01'), so the rows of a window's first instant
    were in no window (a first training run starts at the earliest row: it lost that day)."""
    from pipeline.ingestion.extract import earliest_day, table_chunks

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(settings.data_dir / "source.db") as conn:
        conn.execute("CREATE TABLE cancellations (customer_id INTEGER, cancelled_at TEXT, reason TEXT)")
        conn.executemany("INSERT INTO cancellations VALUES (?, ?, ?)",
                         [(1, spelling, "price"), (2, spelling.replace("03-01", "03-02"), "price")])
    assert earliest_day(settings, "cancellations", dt.date(2025, 4, 1)) == dt.date(2025, 3, 1)
    day = lambda start, end: pa.concat_tables(table_chunks(settings, "cancellations", start, end)).column(
        "customer_id").to_pylist()
    assert day("2025-03-01", "2025-03-02") == [1] and day("2025-03-02", "2025-03-03") == [2]
    assert day("2025-02-28", "2025-03-01") == []


def test_text_customer_ids_are_kept_as_given_in_event_files(settings, tmp_path):
    """A business whose ids are text: '00042' keeps its zeros in a CSV (a reader that guesses
    types would make it 42) and base64-like keys their case; an integer business's CSV ids are
    integers like its customers'."""
    from pipeline.ingestion.extract import event_chunks

    day = settings.landing_dir / "events" / "date=2025-03-01"
    day.mkdir(parents=True)
    (day / "events.csv").write_text("customer_id,event_ts,event_type,duration_s,content_units\n"
                                    "00042,2025-03-01 10:00:00,login,,\n"
                                    "aGVsbG8=,2025-03-01 11:00:00,session,30.0,\n")
    chunks = list(event_chunks(settings, "2025-03-01", "2025-03-02", pa.string()))
    assert pa.concat_tables(chunks).column("customer_id").to_pylist() == ["00042", "aGVsbG8="]
    (day / "events.csv").write_text("customer_id,event_ts,event_type,duration_s,content_units\n"
                                    "42,2025-03-01 10:00:00,login,,\n")
    chunks = list(event_chunks(settings, "2025-03-01", "2025-03-02", pa.int64()))
    assert pa.concat_tables(chunks).column("customer_id").to_pylist() == [42]


def test_the_contract_command_prints_every_table_and_column(capsys):
    """``python -m pipeline contract``: the reference the README shows (docs/data-contract.md
    holds its output, and must stay equal to it)."""
    from pipeline.__main__ import main
    from pipeline.ingestion.contract import TABLES, reference_markdown

    assert main(["contract"]) == 0
    out = capsys.readouterr().out
    for name, table in TABLES.items():
        assert f"### `{name}`" in out, name
        for column in table.columns:
            assert f"| `{column.name}` |" in out, (name, column.name)
    assert "| `status` | text | yes | no | one of success, failed, refunded |" in out
    assert "id (integer or text)" in out and ">= 0" in out and "label:non_renewal" in out
    docs, readme = SQL_DIR.parent / "docs" / "data-contract.md", SQL_DIR.parent / "README.md"
    if docs.is_file():  # a checkout (not an installed wheel): the docs show the command's output
        assert reference_markdown() in docs.read_text(encoding="utf-8"), "run: python -m pipeline contract"
        excerpt = readme.read_text(encoding="utf-8").split("### `subscriptions`", 1)[1].split("\n\n", 3)
        assert "### `subscriptions`" + "\n\n".join(excerpt[:3]) in out, "README's excerpt of the contract"


@pytest.mark.parametrize(("args", "expected"), [
    (["ingest", "--table", "customers", "--start", "2025-01-01", "--end", "2025-02-01"], "source.db"),
    (["ingest", "--table", "orders", "--start", "2025-01-01", "--end", "2025-02-01"], "unknown table 'orders'"),
    (["ingest", "--table", "customers", "--start", "2025-02-30", "--end", "2025-03-01"], "--start/--end"),
    (["validate", "--table", "payments", "--input", "nowhere.parquet"], "nowhere.parquet"),
])
def test_ingest_and_validate_commands_answer_bad_input_in_one_line(settings, tmp_path, monkeypatch, capsys, args,
                                                                  expected):
    """These printed tracebacks; now one line naming what is wrong, and exit status 2."""
    from pipeline.__main__ import main

    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(settings.data_dir))
    monkeypatch.chdir(tmp_path)
    out = ["--out", str(tmp_path / "out.parquet")] if args[0] == "ingest" else []
    assert main([*args, *out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_validate_command_names_the_broken_rule_in_one_line(settings, tmp_path, monkeypatch, capsys):
    from pipeline.__main__ import main

    monkeypatch.setenv("CHURNFLOW_DATA_DIR", str(settings.data_dir))
    batch = tmp_path / "payments.parquet"
    pd.DataFrame({"payment_id": [1], "customer_id": [1], "amount": [9.99], "status": ["success"]}).to_parquet(batch)
    assert main(["validate", "--table", "payments", "--input", str(batch)]) == 2  # paid_at is required
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "validation of payments FAILED" in err and "paid_at" in err, err
