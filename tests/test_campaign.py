"""The campaign file a retention agent acts on (issue 37): probabilities rounded (the same
function as the score API's campaign), why each customer is on the list (rank within the
capacity, the model's threshold, the expected value of the contact), and the customer columns the
``campaign_columns`` setting names, contact fields a business maps in included, read from a real
lake. The file of a real night: tests/test_api.py (``night``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.config import CAMPAIGN_COLUMN_NAMES, load_settings
from pipeline.model.evaluate import Campaign, campaign_value
from pipeline.model.score import (
    CAMPAIGN_FILE_COLUMNS,
    campaign_details,
    campaign_file,
    campaign_list,
    campaign_rows,
    expected_value,
    risk_bands,
    round_probability,
    why_on_list,
)

NIGHT = "2025-03-04"
ECONOMICS = Campaign(customer_value=200.0, save_rate=0.3, contact_cost=5.0, capacity=3)


def _scores() -> pd.DataFrame:
    scores = pd.DataFrame({"customer_id": [5, 3, 9, 1, 7],
                           "churn_probability": [0.561381004456517, 0.3000004, 0.3, 0.1, 0.0626],
                           "reason_1": ["logins in the last 30 days: 0 (usually 12)", None, "plan: basic", None, "x"],
                           "reason_2": [None] * 5, "reason_3": [None] * 5, "model_version": "v1"})
    return scores.assign(risk_band=risk_bands(scores, 0.06, 3))


def test_probabilities_are_rounded_by_one_function():
    assert float(round_probability(0.561381004456517)) == 0.561
    assert round_probability(pd.Series([0.0626, 0.99951, 1e-9])).tolist() == [0.063, 1.0, 0.0]


def test_expected_value_is_the_campaign_economics_per_customer():
    """What the threshold search sums (evaluate.campaign_value), one customer at a time: a
    contact below the break-even probability (cost / (value x save rate) = 0.083) loses money."""
    p = np.array([0.561381004456517, 0.0626])
    assert expected_value(p, ECONOMICS) == pytest.approx([0.561381004456517 * 60 - 5, 0.0626 * 60 - 5])
    assert expected_value(p, ECONOMICS)[1] < 0
    # in expectation over the labels, the sum is campaign_value of contacting them
    y_draws = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    weights = np.array([p[0] * (1 - p[1]), (1 - p[0]) * p[1], p[0] * p[1], (1 - p[0]) * (1 - p[1])])
    expected_total = sum(w * campaign_value(y, p, 0.0, ECONOMICS) for w, y in zip(weights, y_draws, strict=True))
    assert expected_value(p, ECONOMICS).sum() == pytest.approx(expected_total)


def test_each_row_says_why_it_is_on_the_list():
    said = why_on_list(np.array([1, 2]), np.array([0.561381, 0.0626]), 0.0601, 500)
    assert said == ["rank 1 of 2 on tonight's list (capacity 500); churn probability 0.561 at or above the model's "
                    "threshold 0.060",
                    "rank 2 of 2 on tonight's list (capacity 500); churn probability 0.063 at or above the model's "
                    "threshold 0.060"]
    assert "(no daily limit)" in why_on_list(np.array([1]), np.array([0.5]), 0.2, 0)[0]


def test_the_file_an_agent_reads():
    scores = _scores()
    listed = campaign_list(scores, 0.06, ECONOMICS.capacity)
    details = pd.DataFrame({"customer_id": [3, 5, 9, 42], "plan": ["pro", "basic", None, "x"],
                            "tenure_days": pd.array([10, 400, 7, 1], dtype="Int64")})
    rows = campaign_rows(listed, 0.06, ECONOMICS, details)
    assert list(rows.columns) == [*CAMPAIGN_FILE_COLUMNS, "reason_1", "reason_2", "reason_3", "plan", "tenure_days"]
    assert rows["customer_id"].tolist() == [5, 3, 9] and rows["rank"].tolist() == [1, 2, 3]  # capacity 3
    assert rows["churn_probability"].tolist() == [0.561, 0.3, 0.3]
    assert rows["expected_value"].tolist() == [28.68, 13.0, 13.0]
    assert rows["plan"].tolist() == ["basic", "pro", None] and rows["tenure_days"].tolist() == [400, 10, 7]
    assert (rows["risk_band"] == "high").all()
    assert rows["on_list_because"].iloc[0].startswith("rank 1 of 3 on tonight's list (capacity 3)")
    text = rows.to_csv(index=False)
    assert "0.561381" not in text and "0.3000004" not in text
    # no campaign_columns: the same file without them
    assert list(campaign_rows(listed, 0.06, ECONOMICS).columns) == [*CAMPAIGN_FILE_COLUMNS, "reason_1", "reason_2",
                                                                      "reason_3"]


def test_campaign_columns_names_a_customers_column_or_fails_in_one_line(tmp_path):
    settings = load_settings(data_dir=tmp_path, campaign_columns=" plan , email ")
    assert settings.campaign_column_names == ["plan", "email"]
    assert load_settings(data_dir=tmp_path, campaign_columns="").campaign_column_names == []
    with pytest.raises(ValueError, match=r"^config campaign_columns: 'mobile' is not a customers column; choose from "
                                         r"plan, tenure_days, .*phone") as err:
        load_settings(data_dir=tmp_path, campaign_columns="plan,mobile")
    assert "\n" not in str(err.value)
    from pipeline.ingestion.contract import CUSTOMERS

    contract = {c.name for c in CUSTOMERS.columns}
    # every name is the customers table's, or what the night knows of the customer (tenure, subscription)
    assert set(CAMPAIGN_COLUMN_NAMES) - contract == {"tenure_days", "plan", "monthly_fee", "payment_method"}
    assert {"name", "email", "phone"} <= contract


def _business(settings, tmp_path) -> None:
    """A business whose customers table has its own contact columns (``mail``, ``mobile`` with a
    leading zero) mapped in by its ingest_customers.sql, ingested for real; two customer versions;
    subscription periods in the lake."""
    from pipeline.context import RunContext
    from pipeline.ingestion import lake
    from pipeline.ingestion.source import engine_for
    from pipeline.ingestion.steps import ingest_step

    people = pd.DataFrame({
        "cust": [1, 2, 3, 3], "joined": pd.to_datetime(["2024-03-04", "2025-01-01", "2024-12-04", "2024-12-04"]),
        "mail": ["a@example.com", None, "old@example.com", "c@example.com"],
        "mobile": ["0612345678", "+33 6 99", None, "0700"], "region": ["north", "south", "west", "east"],
        "changed": pd.to_datetime(["2025-03-01 08:00", "2025-03-01 09:00", "2025-03-01 10:00", "2025-03-03 10:00"])})
    people.to_sql("people", engine_for(settings.db_url), if_exists="replace", index=False)
    own = tmp_path / "my_sql"
    own.mkdir()
    (own / "ingest_customers.sql").write_text(
        "SELECT cust AS customer_id, joined AS signup_date, region, mail AS email, mobile AS phone,\n"
        "       changed AS updated_at\n"
        "FROM people WHERE changed >= :window_start AND changed < :window_end ORDER BY changed\n")
    out = ingest_step(RunContext.of(settings.replace(sql_dir=str(own)), "churn_nightly", NIGHT, lookback_days=3),
                      "customers")
    assert out["rows"] == 4 and out["rejected"] == 0, out
    periods = pd.DataFrame({"subscription_id": [10, 11, 12, 13], "customer_id": [1, 1, 3, 3],
                            "plan": ["basic", "pro", "basic", "premium"], "monthly_fee": [9.99, 19.99, 9.99, 29.99],
                            "payment_method": ["card", "card", "sepa", "sepa"],
                            "start_date": pd.to_datetime(["2025-03-01", "2025-03-02", "2025-03-01", "2025-03-04"]),
                            "end_date": pd.NaT, "auto_renew": True})
    lake.write_window(settings, "subscriptions", periods, "2025-03-01", "2025-03-05")


def test_campaign_columns_come_from_the_lake_as_the_night_knows_them(settings, tmp_path, caplog):
    """The latest customer version written before the night (3's later e-mail not on the night before),
    the subscription in force (3's premium period starts on the night: not yet), tenure as the
    feature counts it; a contact field the business does not map (name) is left out, said why."""
    _business(settings, tmp_path)
    wanted = settings.replace(campaign_columns="email,phone,plan,tenure_days,monthly_fee,name,signup_date")
    frame, left_out = campaign_details(wanted, pd.Series([3, 1, 2]), NIGHT)
    assert list(frame.columns) == ["customer_id", "email", "phone", "plan", "tenure_days", "monthly_fee",
                                   "signup_date"]
    assert frame["email"].tolist() == ["c@example.com", "a@example.com", None]
    assert frame["phone"].tolist() == ["0700", "0612345678", "+33 6 99"]  # as given: leading zeros, +
    assert frame["plan"].tolist() == ["basic", "pro", None] and frame["monthly_fee"].tolist()[:2] == [9.99, 19.99]
    day = dt.date.fromisoformat(NIGHT)
    assert frame["tenure_days"].tolist() == [(day - dt.date(2024, 12, 4)).days, (day - dt.date(2024, 3, 4)).days,
                                             (day - dt.date(2025, 1, 1)).days]
    assert frame["signup_date"].tolist() == ["2024-12-04", "2024-03-04", "2025-01-01"]
    assert set(left_out) == {"name"} and "customers.name" in left_out["name"] and "ingest_customers.sql" in left_out["name"]
    earlier, _ = campaign_details(wanted, pd.Series([3]), "2025-03-03")  # 3's new e-mail came later that day
    assert earlier["email"].tolist() == ["old@example.com"]
    # a business without subscriptions: the rest, the reason recorded, never a crash
    bare = wanted.replace(source_tables="customers,payments,events")
    frame, left_out = campaign_details(bare, pd.Series([1]), NIGHT)
    assert list(frame.columns) == ["customer_id", "email", "phone", "tenure_days", "signup_date"]
    assert left_out["plan"] == left_out["monthly_fee"] == "subscriptions is not in source_tables"
    # the whole file, the left-out columns logged
    scores = pd.DataFrame({"customer_id": [1, 2, 3], "churn_probability": [0.2, 0.9, 0.5], "risk_band": "?"})
    with caplog.at_level("INFO", logger="pipeline.model.score"):
        written = campaign_file(wanted, scores, 0.3, NIGHT)
    assert written["customer_id"].tolist() == [2, 3] and written["email"].tolist() == [None, "c@example.com"]
    assert "campaign_columns name left out: no customer on tonight's list has a customers.name" in caplog.text
