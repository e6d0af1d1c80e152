"""The validation gate: real Great Expectations 1.x on tiny hand-built batches."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.config import EXPECTATIONS_DIR
from pipeline.errors import DataError
from pipeline.ingestion import suites, validate
from pipeline.ingestion.contract import LAKE_TABLES, SOURCE_TABLES
from pipeline.ingestion.quarantine import quarantine
from pipeline.ingestion.suites import load_suite
from pipeline.ingestion.validate import DataValidationError, validate_and_quarantine, validate_batch

START, END = dt.datetime(2025, 6, 1), dt.datetime(2025, 6, 2)
WINDOW = {"window_start": START, "window_end": END}
T0, T1, T2 = (dt.datetime(2025, 6, 1, h) for h in (1, 9, 17))

#: three valid rows per lake table, inside WINDOW
CLEAN: dict[str, list[dict]] = {
    "customers": [
        {"customer_id": 1, "signup_date": T0, "birth_year": 1980, "gender": "F", "region": "north",
         "acquisition_channel": "organic", "updated_at": T0},
        {"customer_id": 1, "signup_date": T0, "birth_year": 1980, "gender": "F", "region": "south",
         "acquisition_channel": "organic", "updated_at": T1},
        {"customer_id": 2, "signup_date": T2, "birth_year": None, "gender": None, "region": "east",
         "acquisition_channel": "tiktok", "updated_at": T2},
    ],
    "subscriptions": [
        {"subscription_id": i, "customer_id": i, "plan": plan, "monthly_fee": fee, "payment_method": "card", "start_date": t}
        for i, (plan, fee, t) in enumerate([("basic", 9.99, T0), ("standard", 15.99, T1), ("premium", 22.99, T2)], 1)
    ],
    "payments": [
        {"payment_id": i, "customer_id": 10 + i, "paid_at": t, "amount": amount, "status": status}
        for i, (t, amount, status) in enumerate([(T0, 9.99, "success"), (T1, 0.0, "failed"), (T2, 15.99, "refunded")], 1)
    ],
    "plan_changes": [
        {"change_id": i, "customer_id": i, "changed_at": t, "old_plan": old, "new_plan": new}
        for i, (t, old, new) in enumerate([(T0, "basic", "premium"), (T1, "premium", "standard"), (T2, "standard", "basic")], 1)
    ],
    "support_tickets": [
        {"ticket_id": 1, "customer_id": 1, "opened_at": T0, "category": "billing", "resolved_at": T1},
        {"ticket_id": 2, "customer_id": 2, "opened_at": T1, "category": "technical", "resolved_at": None},
        {"ticket_id": 3, "customer_id": 2, "opened_at": T2, "category": "cancellation", "resolved_at": T2},
    ],
    "cancellations": [
        {"customer_id": i, "cancelled_at": t, "reason": reason}
        for i, (t, reason) in enumerate([(T0, "price"), (T1, "not_using"), (T2, "other")], 1)
    ],
    "labels": [
        {"customer_id": i, "label_date": t, "churned": y} for i, (t, y) in enumerate([(T0, 0), (T1, 1), (T2, 0)], 1)
    ],
    "events": [
        {"customer_id": 1, "event_ts": T0, "event_type": "login", "duration_s": 0.0, "content_units": 0},
        {"customer_id": 1, "event_ts": T1, "event_type": "session", "duration_s": 420.5, "content_units": 0},
        {"customer_id": 2, "event_ts": T2, "event_type": "content", "duration_s": 1500.0, "content_units": 2},
    ],
}


def batch(table: str, rows: list[dict]) -> pd.DataFrame:
    """``rows`` with the contract's dtypes (pyarrow schema -> pandas, as ingestion produces)."""
    return pa.Table.from_pylist(rows, schema=LAKE_TABLES[table][0]).to_pandas()


def payment(i: int, **changes) -> dict:
    return {"payment_id": i, "customer_id": 100 + i, "paid_at": T1, "amount": 9.99, "status": "success", **changes}


def broken_payments() -> pd.DataFrame:
    """Rows 0 and 1 are fine; 2..6 break one rule each."""
    return batch("payments", [
        payment(1), payment(2),
        payment(3, customer_id=None), payment(4, payment_id=None),
        payment(5, amount=-5.0), payment(6, amount=-0.01),
        payment(7, status="chargeback"),
    ])


def reasons_by_row(result: validate.ValidationResult) -> dict[int, str]:
    return dict(zip(result.rejected.index, result.rejected["_reason"], strict=True))


# ---------------------------------------------------------------------------- suites on disk
def test_a_suite_per_lake_table_and_features_in_gx_format():
    on_disk = {p.stem for p in EXPECTATIONS_DIR.glob("*.json")}
    assert on_disk == set(LAKE_TABLES) | {"features"}
    for name in on_disk:
        stored = json.loads((EXPECTATIONS_DIR / f"{name}.json").read_text())
        suite = load_suite(name)
        assert suite.name == name
        round_trip = suite.to_json_dict()["expectations"]
        assert [(e["type"], e["kwargs"]) for e in round_trip] == [(e["type"], e["kwargs"]) for e in stored["expectations"]]


@pytest.mark.parametrize("table", list(LAKE_TABLES))
def test_every_contract_column_has_an_existence_rule(table):
    """Fails when a column is added to (or removed from) pipeline/schemas.py without its expectation."""
    configs = [e.configuration for e in load_suite(table).expectations]
    exist = [c.kwargs["column"] for c in configs if c.type == "expect_column_to_exist"]
    assert exist == LAKE_TABLES[table][0].names


@pytest.mark.parametrize("table", list(LAKE_TABLES))
def test_keys_are_unique_and_the_time_column_is_bounded_by_the_window(table):
    configs = [e.configuration for e in load_suite(table).expectations]
    key = SOURCE_TABLES[table].key if table in SOURCE_TABLES else ()
    unique = {(c.kwargs["column"],) for c in configs if c.type == "expect_column_values_to_be_unique"}
    unique |= {tuple(c.kwargs["column_list"]) for c in configs if c.type == "expect_compound_columns_to_be_unique"}
    assert unique == ({key} if key else set())
    window = {"min_value": {"$PARAMETER": "window_start"}, "max_value": {"$PARAMETER": "window_end"}, "strict_max": True}
    assert {"column": LAKE_TABLES[table][1], **window} in [c.kwargs for c in configs]


def test_unknown_table_has_no_suite():
    with pytest.raises(FileNotFoundError, match="no expectation suite for table 'nope'"):
        load_suite("nope")


def test_importing_the_module_does_not_import_gx():
    code = "import sys, pipeline.ingestion.validate; sys.exit('great_expectations' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


# ------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("table", list(LAKE_TABLES))
def test_clean_batch_of_every_table_passes(table):
    df = batch(table, CLEAN[table])
    result = validate_batch(df, table, **WINDOW)
    assert result.passed and result.failures == [] and result.rows == 3
    assert result.rejected.empty
    pd.testing.assert_frame_equal(result.clean, df)


def test_broken_payments_fail_with_table_column_rule_and_count(settings):
    df = broken_payments()
    with pytest.raises(DataValidationError) as err:
        validate_and_quarantine(df, "payments", settings, "run1", **WINDOW)
    lines = [line.strip() for line in str(err.value).splitlines()]
    path = settings.quarantine_dir / "payments" / "run1.parquet"
    assert lines == [
        "validation of payments failed: 4 rule(s) broken in a batch of 7 rows",
        "payments.payment_id: expect_column_values_to_not_be_null failed for 1 of 7 rows",
        "payments.customer_id: expect_column_values_to_not_be_null failed for 1 of 7 rows",
        "payments.status: expect_column_values_to_be_in_set failed for 1 of 7 rows "
        "(value_set=['success', 'failed', 'refunded']; e.g. 'chargeback')",
        "payments.amount: expect_column_values_to_be_between failed for 2 of 7 rows (min_value=0, where "
        'status!="refunded"; e.g. -5, -0.01)',
        f"5 rejected rows quarantined -> {path}",
    ]
    assert err.value.quarantined == path
    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)  # survives a trip between processes


def test_every_rejected_row_is_quarantined_with_its_reason(settings):
    df = broken_payments()
    result = validate_and_quarantine(df, "payments", settings, "run1", raise_on_failure=False, **WINDOW)
    assert not result.passed
    assert len(result.clean) + len(result.rejected) == len(df)
    assert result.clean.index.tolist() == [0, 1]
    assert reasons_by_row(result) == {
        2: "payments.customer_id: expect_column_values_to_not_be_null",
        3: "payments.payment_id: expect_column_values_to_not_be_null",
        4: "payments.amount: expect_column_values_to_be_between(min_value=0, where status!=\"refunded\")",
        5: "payments.amount: expect_column_values_to_be_between(min_value=0, where status!=\"refunded\")",
        6: "payments.status: expect_column_values_to_be_in_set(value_set=['success', 'failed', 'refunded'])",
    }
    assert result.rejected.loc[4, "_rules"] == "amount:expect_column_values_to_be_between"
    stored = pd.read_parquet(settings.quarantine_dir / "payments" / "run1.parquet")
    pd.testing.assert_frame_equal(stored, result.rejected.reset_index(drop=True))
    pd.testing.assert_frame_equal(stored.drop(columns=["_reason", "_rules"]), df.iloc[2:].reset_index(drop=True))


def test_a_row_breaking_several_rules_lists_them_all():
    df = batch("payments", [payment(1), payment(2, customer_id=None, amount=-1.0, status="??")])
    result = validate_batch(df, "payments", **WINDOW)
    assert result.rejected["_reason"].tolist() == [
        "payments.customer_id: expect_column_values_to_not_be_null"
        " ; payments.status: expect_column_values_to_be_in_set(value_set=['success', 'failed', 'refunded'])"
        " ; payments.amount: expect_column_values_to_be_between(min_value=0, where status!=\"refunded\")"
    ]
    assert result.rejected["_rules"].tolist() == [
        "customer_id:expect_column_values_to_not_be_null;status:expect_column_values_to_be_in_set;"
        "amount:expect_column_values_to_be_between"
    ]


def test_duplicate_keys_reject_every_copy():
    rows = CLEAN["customers"] + [CLEAN["customers"][0]]
    result = validate_batch(batch("customers", rows), "customers", **WINDOW)
    assert not result.passed
    assert result.rejected.index.tolist() == [0, 3]
    assert (result.rejected["_reason"] == "customers.customer_id,updated_at: expect_compound_columns_to_be_unique").all()


def test_a_plan_name_is_the_business_s_own_unless_a_closed_set_is_declared(settings):
    """Plans used to be a closed set (basic/standard/premium): a real service's plan names, and its
    free or trial plans (fee 0), were rejected for every row."""
    rows = CLEAN["subscriptions"] + [{**CLEAN["subscriptions"][0], "subscription_id": 9, "plan": "Family 12m",
                                      "monthly_fee": 0.0, "payment_method": "41"}]
    assert validate_batch(batch("subscriptions", rows), "subscriptions", **WINDOW).passed
    declared = settings.replace(closed_vocabularies="subscriptions.plan=basic|standard|premium")
    result = validate_batch(batch("subscriptions", rows), "subscriptions", settings=declared, **WINDOW)
    assert not result.passed
    assert [(f.table, f.column, f.rule, f.unexpected_count) for f in result.failures] == [
        ("subscriptions", "plan", "expect_column_values_to_be_in_set", 1)]
    assert result.rejected["plan"].tolist() == ["Family 12m"]
    assert result.failures[0].describe(4).startswith(
        "subscriptions.plan: expect_column_values_to_be_in_set failed for 1 of 4 rows (value_set=")
    with pytest.raises(DataError, match=r"config closed_vocabularies: subscriptions.monthly_fee is not a category"):
        validate_batch(batch("subscriptions", rows), "subscriptions",
                       settings=settings.replace(closed_vocabularies="subscriptions.monthly_fee=1|2"), **WINDOW)


def test_an_open_vocabulary_is_bounded_by_max_category_values(settings):
    rows = [{**CLEAN["subscriptions"][0], "subscription_id": i, "plan": f"plan-{i}"} for i in range(1, 6)]
    assert validate_batch(batch("subscriptions", rows), "subscriptions", settings=settings, **WINDOW).passed
    result = validate_batch(batch("subscriptions", rows), "subscriptions",
                            settings=settings.replace(max_category_values=4), **WINDOW)
    assert [(f.column, f.rule) for f in result.failures] == [("plan", "expect_column_unique_value_count_to_be_between")]


def test_refunds_may_be_negative_other_payments_not():
    rows = [payment(1, amount=-9.99, status="refunded"), payment(2, amount=-1.0, status="success")]
    result = validate_batch(batch("payments", rows), "payments", **WINDOW)
    assert result.rejected["payment_id"].tolist() == [2]


def test_timestamps_outside_the_window_are_rejected():
    rows = [
        {**CLEAN["events"][0], "event_ts": START},                                # first instant: in
        {**CLEAN["events"][0], "event_ts": END - dt.timedelta(microseconds=1)},  # last instant: in
        {**CLEAN["events"][0], "event_ts": END},                                  # window end: out
        {**CLEAN["events"][0], "event_ts": dt.datetime(2031, 1, 1)},              # future: out
        {**CLEAN["events"][0], "event_ts": START - dt.timedelta(seconds=1)},      # before: out
    ]
    result = validate_batch(batch("events", rows), "events", **WINDOW)
    assert not result.passed
    assert result.rejected.index.tolist() == [2, 3, 4]
    assert result.rejected["_reason"].str.startswith("events.event_ts: expect_column_values_to_be_between(").all()
    [failure] = result.failures
    assert (failure.column, failure.rule, failure.unexpected_count) == ("event_ts", "expect_column_values_to_be_between", 3)
    assert "max_value=2025-06-02 00:00:00, strict_max=True" in failure.detail


def test_without_a_window_the_future_is_now():
    tomorrow = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    df = batch("payments", [payment(1), payment(2, paid_at=tomorrow)])
    result = validate_batch(df, "payments")
    assert result.rejected.index.tolist() == [1]


def test_resolved_before_opened_is_rejected():
    early = {**CLEAN["support_tickets"][0], "ticket_id": 9, "resolved_at": T0 - dt.timedelta(minutes=1)}
    rows = [*CLEAN["support_tickets"], early]
    result = validate_batch(batch("support_tickets", rows), "support_tickets", **WINDOW)
    assert [(f.column, f.rule) for f in result.failures] == [
        ("resolved_at,opened_at", "expect_column_pair_values_a_to_be_greater_than_b")]
    assert result.rejected.index.tolist() == [3]


def test_missing_column_fails_the_batch_and_its_row_rules_are_reported_not_run(settings):
    df = batch("payments", [payment(1), payment(2), payment(3, amount=-1.0)]).drop(columns=["payment_id"])
    with pytest.raises(DataValidationError) as err:
        validate_and_quarantine(df, "payments", settings, "run1", **WINDOW)
    lines = str(err.value).splitlines()
    assert "  payments.payment_id: expect_column_to_exist failed for 3 of 3 rows (column is missing from the batch)" \
        in lines
    not_run = [line for line in lines if line.startswith("  payments.payment_id:") and "not evaluated" in line]
    assert len(not_run) == 2  # not-null and unique on the missing column
    assert ('  payments.amount: expect_column_values_to_be_between failed for 1 of 3 rows (min_value=0, where '
            'status!="refunded"; e.g. -1)') in lines
    assert err.value.result.rejected.index.tolist() == [2]  # rules on other columns still quarantine


def test_missing_column_alone_quarantines_nothing(settings):
    df = batch("payments", CLEAN["payments"]).drop(columns=["amount"])
    result = validate_and_quarantine(df, "payments", settings, "run1", raise_on_failure=False, **WINDOW)
    assert not result.passed and result.rejected.empty and len(result.clean) == 3
    with pytest.raises(DataValidationError, match="no rows quarantined"):
        validate_and_quarantine(df, "payments", settings, "run1", **WINDOW)


def test_empty_batch_passes():
    assert validate_batch(LAKE_TABLES["events"][0].empty_table().to_pandas(), "events", **WINDOW).passed


# ------------------------------------------------------------------------------- quarantine
def test_rerun_with_the_same_run_key_replaces_the_quarantine(settings):
    path = settings.quarantine_dir / "payments" / "run1.parquet"
    first = validate_and_quarantine(broken_payments(), "payments", settings, "run1", raise_on_failure=False, **WINDOW)
    assert len(pd.read_parquet(path)) == len(first.rejected) == 5
    second = batch("payments", [payment(1), payment(2, status="lost")])
    validate_and_quarantine(second, "payments", settings, "run1", raise_on_failure=False, **WINDOW)
    assert pd.read_parquet(path)["status"].tolist() == ["lost"]
    assert [p.name for p in path.parent.iterdir()] == ["run1.parquet"]  # no temporary leftovers
    clean = validate_and_quarantine(batch("payments", CLEAN["payments"]), "payments", settings, "run1", **WINDOW)
    assert clean.passed and not path.exists()


def test_quarantine_returns_none_without_rejected_rows(settings):
    result = validate_batch(batch("payments", CLEAN["payments"]), "payments", **WINDOW)
    assert quarantine(result, settings, "run1") is None


def test_run_key_must_be_a_file_name(settings):
    result = validate_batch(broken_payments(), "payments", **WINDOW)
    with pytest.raises(ValueError, match="run_key"):
        quarantine(result, settings, "../escape")


# ---------------------------------------------------------------------------------- features
def test_feature_suite_applies_its_rules_to_every_matching_column():
    df = pd.DataFrame({
        "customer_id": [1, 2, 3, 3, None],
        "as_of": pd.to_datetime(["2025-06-01"] * 5),
        "n_events_7d": [0, 3, -1, 2, 1],
        "days_since_last_login": [0.0, 2.0, 5.0, -3.0, 1.0],
        "tenure_days": [-10, 5, 5, 5, 5],  # no rule on it
    })
    result = validate_batch(df, "features")
    assert not result.passed
    assert {f.column for f in result.failures} == {"customer_id", "customer_id,as_of", "n_events_7d", "days_since_last_login"}
    reasons = reasons_by_row(result)
    assert sorted(reasons) == [2, 3, 4]
    assert "features.n_events_7d: expect_column_values_to_be_between(min_value=0)" in reasons[2]
    assert "features.days_since_last_login: expect_column_values_to_be_between(min_value=0)" in reasons[3]
    assert "features.customer_id,as_of: expect_compound_columns_to_be_unique" in reasons[2]


def test_a_wide_table_is_validated_in_narrow_parts_with_the_outcomes_of_the_whole_suite(monkeypatch):
    days = range(1, 25)
    df = pd.DataFrame({"customer_id": [1, 2, 3, 3], "as_of": pd.to_datetime(["2025-06-01"] * 4),
                       **{f"n_events_{d}d": [0, d, 1, 2] for d in days}})
    df.loc[1, "n_events_3d"] = -1
    df.loc[2, "n_events_20d"] = -5
    names = tuple(df.columns)
    parts = suites.suite_parts("features", names)
    assert len(parts) > 2 and all(len(c or ()) <= suites.PART_COLUMNS for c, _ in parts)
    whole = suites.build_suite("features", names)
    configs = sorted(repr(e.configuration.to_json_dict()) for _, part in parts for e in part.expectations)
    assert configs == sorted(repr(e.configuration.to_json_dict()) for e in whole.expectations)
    narrow = validate_batch(df, "features")
    monkeypatch.setattr(validate, "suite_parts", lambda table, columns, closed=(): ((None, whole),))
    wide = validate_batch(df, "features")
    assert [(f.column, f.rule, f.unexpected_count) for f in narrow.failures] == [
        (f.column, f.rule, f.unexpected_count) for f in wide.failures]
    assert reasons_by_row(narrow) == reasons_by_row(wide) and sorted(reasons_by_row(narrow)) == [1, 2, 3]


def test_feature_batch_without_templated_columns_passes():
    df = pd.DataFrame({"customer_id": [1, 2], "as_of": pd.to_datetime(["2025-06-01"] * 2), "plan": ["basic", "x"]})
    assert validate_batch(df, "features").passed


# ------------------------------------------------------------------------------ any suite
@pytest.fixture
def widget_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A suite outside the repository: a lenient (``mostly``) row rule and a table-level rule."""
    suite = {"name": "widgets", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "size", "mostly": 0.5}, "meta": {}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 3}, "meta": {}},
    ]}
    (tmp_path / "widgets.json").write_text(json.dumps(suite))
    monkeypatch.setattr(suites, "EXPECTATIONS_DIR", tmp_path)
    suites.build_suite.cache_clear()
    yield "widgets"
    suites.build_suite.cache_clear()


def test_mostly_tolerates_bad_rows_but_still_quarantines_them(widget_suite):
    result = validate_batch(pd.DataFrame({"size": [1.0, None, 3.0]}), widget_suite)
    assert result.passed and result.failures == []
    assert result.rejected.index.tolist() == [1]
    assert result.rejected["_reason"].tolist() == ["widgets.size: expect_column_values_to_not_be_null(mostly=0.5)"]


def test_table_level_rule_fails_without_rejecting_rows(widget_suite):
    result = validate_batch(pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0]}), widget_suite)
    assert not result.passed and result.rejected.empty
    [failure] = result.failures
    assert (failure.column, failure.rule, failure.unexpected_count) == (None, "expect_table_row_count_to_be_between", 4)
    assert failure.describe(4) == ("widgets.<table>: expect_table_row_count_to_be_between failed for 4 of 4 rows "
                                   "(min_value=1, max_value=3; observed 4)")
