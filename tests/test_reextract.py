"""The training run's re-extract of the database tables reads only the days that changed
(``training_reextract: changed``), against a real SQLite database (and PostgreSQL), and still
heals the lake where the database changed behind the nights' windows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from test_s3 import BUCKET, s3  # noqa: F401  (s3: the moto S3 server fixture)

from pipeline.context import RunContext
from pipeline.ingestion import lake
from pipeline.ingestion.reconcile import PROFILE_FILE, profile_path
from pipeline.ingestion.source import engine_for
from pipeline.ingestion.steps import ingest_all_step

FIRST = dt.date(2025, 4, 1)
WEEK = dt.timedelta(days=7)
TABLES = "customers,payments,support_tickets"


def _insert(settings, table: str, rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    for column in ("signup_date", "updated_at", "paid_at", "opened_at", "resolved_at"):
        if column in df.columns:
            df[column] = pd.to_datetime(df[column])
    df.to_sql(table, engine_for(settings.db_url), if_exists="append", index=False)


def _execute(settings, sql: str) -> None:
    with engine_for(settings.db_url).begin() as conn:
        conn.execute(sa.text(sql))


def _payment(pid: int, day: dt.date, customer: int | None = None, hour: int = 10, amount: float = 9.99) -> dict:
    return {"payment_id": pid, "customer_id": customer or pid % 20 + 1,
            "paid_at": dt.datetime.combine(day, dt.time(hour)), "amount": amount, "status": "success"}


def _payments_of(start: dt.date, end: dt.date, first_id: int) -> list[dict]:
    """Two payments a day in [start, end)."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    return [_payment(first_id + 2 * i + k, day, hour=8 + k) for i, day in enumerate(days) for k in (0, 1)]


def _business(settings) -> None:
    """20 customers (updated in January 2025), two payments a day until FIRST, three tickets."""
    _insert(settings, "customers", [
        {"customer_id": c, "signup_date": "2024-12-01", "birth_year": 1980, "gender": "F", "region": "north",
         "acquisition_channel": "organic", "updated_at": f"2025-01-{c:02d} 09:00:00"} for c in range(1, 21)])
    _insert(settings, "payments", _payments_of(dt.date(2025, 1, 1), FIRST, 1))
    _insert(settings, "support_tickets", [
        {"ticket_id": t, "customer_id": t, "opened_at": f"2025-02-0{t} 10:00:00", "category": "billing",
         "resolved_at": None if t == 3 else f"2025-02-0{t} 15:00:00"} for t in (1, 2, 3)])


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, settings):
    """A business's database (SQLite, or a real PostgreSQL server) and its settings."""
    s = settings.replace(source_tables=TABLES)
    if request.param == "postgresql":
        s = s.replace(source_db_url=request.getfixturevalue("postgres_db"))
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _business(s)
    return s


@pytest.fixture
def sqlite_source(settings):
    s = settings.replace(source_tables=TABLES)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _business(s)
    return s


def _train_ingest(settings, day: dt.date) -> dict[str, dict]:
    """The churn_training DAG's ingest task for ``day``."""
    return {r["table"]: r for r in ingest_all_step(RunContext.of(settings, "churn_training", day))}


def _lake_ids(settings, table: str = "payments", key: str = "payment_id") -> list:
    return sorted(lake.read_table(settings, table)[key].tolist())


def test_a_row_inserted_late_in_a_past_day_is_healed_by_the_next_training(source):
    first = _train_ingest(source, FIRST)
    assert first["payments"]["rows"] == 180 and first["payments"]["reextract"]["reasons"] == {"no record": 90}
    assert lake.table_files(source, "payments")[0].period == "2025-01", "a closed month is one file"

    # a week of nights' data, and a payment written late into February (behind every night's window)
    _insert(source, "payments", [*_payments_of(FIRST, FIRST + WEEK, 1000), _payment(5000, dt.date(2025, 2, 10))])
    out = _train_ingest(source, FIRST + WEEK)["payments"]
    done = out["reextract"]
    assert done["mode"] == "changed" and done["days"] == 8 and out["rows"] == 2 * 7 + 3
    assert done["reasons"] == {"changed": 1, "new": 7}
    assert done["ranges"] == [["2025-02-10", "2025-02-11"], ["2025-04-01", "2025-04-08"]]
    assert done["changed"] == [{"day": "2025-02-10", "source": {"rows": 3}, "recorded": {"rows": 2}}]
    assert 5000 in _lake_ids(source), "the late row reached the lake"
    assert len(_lake_ids(source)) == 180 + 14 + 1
    february = [f for f in lake.table_files(source, "payments") if f.period == "2025-02"]
    assert len(february) == 1 and len(february[0].days) == 28, "the month file was rewritten with the day"


def test_an_unchanged_database_re_extracts_only_the_new_window(sqlite_source):
    s = sqlite_source
    _train_ingest(s, FIRST)
    _insert(s, "payments", _payments_of(FIRST, FIRST + WEEK, 1000))
    out = _train_ingest(s, FIRST + WEEK)
    assert out["payments"]["reextract"]["reasons"] == {"new": 7}
    assert out["payments"]["reextract"]["ranges"] == [["2025-04-01", "2025-04-08"]]
    assert out["customers"]["reextract"]["days"] == 0 and out["customers"]["rows"] == 0
    assert out["support_tickets"]["reextract"]["days"] == 0
    before = {t: lake.read_table(s, t) for t in ("customers", "payments", "support_tickets")}
    again = _train_ingest(s, FIRST + WEEK)  # a rerun of the date: nothing changed since
    assert {t: (r["reextract"]["days"], r["rows"]) for t, r in again.items()} == {
        "customers": (0, 0), "payments": (0, 0), "support_tickets": (0, 0)}
    for table, rows in before.items():
        pd.testing.assert_frame_equal(lake.read_table(s, table), rows)


def test_full_re_extracts_every_day_and_heals_an_in_place_update(sqlite_source):
    """What the counts cannot see (an amount corrected in place) only ``full`` reads again."""
    s = sqlite_source
    _train_ingest(s, FIRST)
    _execute(s, "UPDATE payments SET amount = 99.0 WHERE payment_id = 7")
    changed = _train_ingest(s, FIRST)["payments"]
    assert changed["reextract"]["days"] == 0
    amount = lambda: lake.read_table(s, "payments").set_index("payment_id").loc[7, "amount"]
    assert amount() == pytest.approx(9.99)
    full = _train_ingest(s.replace(training_reextract="full"), FIRST)["payments"]
    assert full["reextract"]["mode"] == "full" and full["reextract"]["ranges"] == [["2025-01-01", "2025-04-01"]]
    assert full["rows"] == 180 and full["reextract"]["days"] == 90
    assert amount() == pytest.approx(99.0)
    assert profile_path(s, "payments").name == PROFILE_FILE and lake.partition_dates(s, "payments")[0] == dt.date(2025, 1, 1)


def test_quarantined_rows_do_not_cause_a_re_extract_every_time(sqlite_source):
    """An exact copy of a row is quarantined (one copy kept): the database still holds both, the
    lake one; the record is the database's, so the day does not look changed."""
    s = sqlite_source
    _insert(s, "payments", [_payment(3, dt.date(2025, 1, 2), hour=8)])  # payment 3 again, the very same row
    first = _train_ingest(s, FIRST)["payments"]
    assert first["tolerated"] == {"duplicate_row": 1} and first["rejected"] == 1
    _insert(s, "payments", _payments_of(FIRST, FIRST + WEEK, 1000))
    out = _train_ingest(s, FIRST + WEEK)["payments"]
    assert out["reextract"]["reasons"] == {"new": 7} and out["rejected"] == 0
    assert _lake_ids(s).count(3) == 1


def test_rows_of_a_customer_unknown_then_are_accepted_once_it_arrives(sqlite_source):
    s = sqlite_source
    _insert(s, "payments", [_payment(900, dt.date(2025, 2, 2), customer=99)])
    first = _train_ingest(s, FIRST)["payments"]
    assert first["tolerated"] == {"unknown_customer": 1} and 900 not in _lake_ids(s)
    second = _train_ingest(s, FIRST)["payments"]  # read again (the customer may have come), still unknown
    assert second["reextract"]["reasons"] == {"unknown customers": 1} and second["rejected"] == 1
    _insert(s, "customers", [{"customer_id": 99, "signup_date": "2025-01-30", "birth_year": 1990, "gender": "M",
                              "region": "south", "acquisition_channel": "social", "updated_at": "2025-04-02 09:00:00"}])
    third = _train_ingest(s, FIRST + WEEK)
    assert third["customers"]["reextract"]["reasons"] == {"new": 1}
    assert third["payments"]["reextract"]["reasons"] == {"unknown customers": 1} and third["payments"]["rejected"] == 0
    assert 900 in _lake_ids(s)
    assert _train_ingest(s, FIRST + WEEK)["payments"]["reextract"]["days"] == 0, "healed: not read again"


def test_a_ticket_resolved_after_it_was_ingested_is_read_again(sqlite_source):
    s = sqlite_source
    _train_ingest(s, FIRST)
    _execute(s, "UPDATE support_tickets SET resolved_at = '2025-02-05 11:00:00' WHERE ticket_id = 3")
    out = _train_ingest(s, FIRST)["support_tickets"]["reextract"]
    assert out["changed"] == [{"day": "2025-02-03", "source": {"rows": 1, "resolved_at": 1},
                               "recorded": {"rows": 1, "resolved_at": 0}}]
    tickets = lake.read_table(s, "support_tickets").set_index("ticket_id")
    assert tickets.loc[3, "resolved_at"] == pd.Timestamp("2025-02-05 11:00:00")


def test_a_day_gone_from_the_lake_or_a_lake_without_a_record_is_read_again(sqlite_source):
    s = sqlite_source
    _train_ingest(s, FIRST)
    lake.storage.remove(profile_path(s, "support_tickets"))  # a lake written before the record
    [march_3] = [f.path for f in lake.table_files(s, "payments") if dt.date(2025, 3, 3) in f.days]
    out = _train_ingest(s, FIRST)
    assert out["support_tickets"]["reextract"]["reasons"] == {"no record": 3}
    assert out["payments"]["reextract"]["reasons"] == {} and out["payments"]["reextract"]["days"] == 0
    lake.storage.remove(march_3)  # a day of the open month, gone
    out = _train_ingest(s, FIRST)["payments"]
    assert out["reextract"]["reasons"] == {"missing from the lake": 1} and out["rows"] == 2
    assert len(_lake_ids(s)) == 180


@pytest.mark.usefixtures("s3")
def test_the_record_lives_beside_a_lake_on_s3(sqlite_source):
    s = sqlite_source.replace(lake_url=f"s3://{BUCKET}/lake")
    _train_ingest(s, FIRST)
    record = profile_path(s, "payments")
    assert str(record) == f"s3://{BUCKET}/lake/payments/{PROFILE_FILE}" and lake.storage.is_file(record)
    _insert(s, "payments", [_payment(5000, dt.date(2025, 2, 10))])
    out = _train_ingest(s, FIRST)["payments"]
    assert out["reextract"]["reasons"] == {"changed": 1} and 5000 in _lake_ids(s)
    assert _train_ingest(s, FIRST)["payments"]["reextract"]["days"] == 0


def test_the_plan_joins_runs_of_days_over_days_without_rows():
    """Pure: which days are read again, and as how many windows (queries)."""
    from pipeline.ingestion.extract import DayProfile
    from pipeline.ingestion.reconcile import Record, plan

    d = lambda n: dt.date(2025, 5, n)
    profile = DayProfile(("rows",), {d(1): (2,), d(3): (2,), d(4): (5,), d(5): (3,), d(11): (1,)})
    record = Record(("rows",), {d(1): (1,), d(3): (1,), d(4): (5,), d(5): (2,), d(7): (1,)}, checked="2025-05-10")
    todo = plan(profile, record, {d(1), d(3), d(4), d(5), d(7)}, d(1), d(12))
    assert todo.ranges == [(d(1), d(4)), (d(5), d(12))]  # d2, d6, d8-d10: no rows to read; d4 unchanged
    assert todo.reasons == {d(1): "changed", d(3): "changed", d(5): "changed", d(7): "changed", d(11): "new"}
    assert todo.changes[d(7)] == ((0,), (1,)), "rows deleted from the database"
    assert plan(profile, None, set(), d(1), d(12)).reasons == dict.fromkeys(profile.days, "no record")
    other = Record(("rows", "resolved_at"), {day: (*v, 0) for day, v in profile.days.items()}, checked="2025-05-12")
    assert set(plan(profile, other, set(), d(1), d(12)).reasons.values()) == {"no record"}, "another profile"


@pytest.mark.parametrize(("sql", "counted"), [
    ("SELECT * FROM p WHERE paid_at >= :window_start ORDER BY paid_at", "SELECT * FROM p WHERE paid_at >= :window_start"),
    ('SELECT * FROM t ORDER BY "t".a DESC, b', "SELECT * FROM t"),
    ("SELECT * FROM t ORDER BY a LIMIT 5", "SELECT * FROM t ORDER BY a LIMIT 5"),  # the order picks the rows
    ("SELECT * FROM (SELECT * FROM t ORDER BY a) q", "SELECT * FROM (SELECT * FROM t ORDER BY a) q"),
    ("SELECT * FROM t ORDER BY a -- newest last", "SELECT * FROM t ORDER BY a -- newest last"),
])
def test_the_profile_counts_the_ingest_sql_without_its_order(sql, counted):
    from pipeline.ingestion.extract import unordered

    assert unordered(sql) == counted


def test_times_that_are_not_iso_days_re_extract_the_table_whole(settings):
    """SQLite keeps what it is given: a time spelt '2025-03-1 10:00' is in the window (text order)
    and read as 1 March, but names no day the count could compare: the table is read whole."""
    import sqlite3

    s = settings.replace(source_tables="customers,cancellations", history_start="2025-01-01")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _insert(s, "customers", [{"customer_id": c, "signup_date": "2024-12-01", "updated_at": "2025-01-05"}
                             for c in (1, 2)])
    with sqlite3.connect(s.data_dir / "source.db") as conn:
        conn.execute("CREATE TABLE cancellations (customer_id INTEGER, cancelled_at TEXT, reason TEXT)")
        conn.executemany("INSERT INTO cancellations VALUES (?, ?, ?)",
                         [(1, "2025-03-1 10:00", "price"), (2, "2025-03-02 10:00:00", "price")])
    out = _train_ingest(s, FIRST)["cancellations"]
    assert out["reextract"]["mode"] == "full" and out["rows"] == 2
    assert out["reextract"]["why_full"] == "1 row(s) whose time the database does not spell as an ISO day"
    assert lake.partition_dates(s, "cancellations") == [dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
