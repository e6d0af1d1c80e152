"""The results store (pipeline.results): declared tables, migrations, replace-by-night writes;
each test on SQLite (the default store) and on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import results
from pipeline.config import load_settings
from pipeline.errors import DataError


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path):
    base = load_settings(config_file=None, data_dir=tmp_path / "data", source_db_url="", results_db_url="")
    if request.param == "postgresql":
        return base.replace(results_db_url=request.getfixturevalue("postgres_db"))
    return base


def _scores(day: str, ids: list[int] | list[str], version: str = "v1") -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids, "as_of": pd.Timestamp(day), "churn_probability": 0.25,
                         "risk_band": "medium", "model_version": version})


def test_a_new_store_is_created_at_the_current_schema_version(settings):
    eng = results.results_engine(settings)
    assert settings.results_url.endswith("/data/results.db") or settings.results_db_url
    with eng.connect() as conn:
        assert results.schema_version(conn) == results.SCHEMA_VERSION
        assert set(results.TABLES) <= set(sa.inspect(conn).get_table_names())
    assert results.migrate(eng) == []  # up to date: nothing to apply


def test_a_rerun_of_a_night_replaces_its_rows_and_other_nights_stay(settings):
    results.replace_rows(settings, results.SCORES, _scores("2026-01-01", [1, 2, 3]), "as_of", dt.datetime(2026, 1, 1))
    results.replace_rows(settings, results.SCORES, _scores("2026-01-02", [1, 2]), "as_of", dt.datetime(2026, 1, 2))
    results.replace_rows(settings, results.SCORES, _scores("2026-01-01", [4], "v2"), "as_of", dt.datetime(2026, 1, 1))
    got = results.read(settings, "churn_scores")
    assert got.groupby(got["as_of"].dt.date.astype(str))["customer_id"].apply(sorted).to_dict() == {
        "2026-01-01": ["4"], "2026-01-02": ["1", "2"]}
    assert results.read(settings, results.SCORES, since=dt.date(2026, 1, 2))["customer_id"].tolist() == ["1", "2"]


def test_a_failed_write_leaves_the_previous_rows(settings):
    results.replace_rows(settings, results.SCORES, _scores("2026-01-01", [1, 2]), "as_of", dt.datetime(2026, 1, 1))
    twice = _scores("2026-01-01", [7, 7])  # the primary key (as_of, customer_id) refuses a repeated customer
    with pytest.raises(sa.exc.IntegrityError):
        results.replace_rows(settings, results.SCORES, twice, "as_of", dt.datetime(2026, 1, 1))
    assert sorted(results.read(settings, "churn_scores")["customer_id"]) == ["1", "2"]


def test_a_column_the_table_lacks_is_named_instead_of_altering_the_table(settings):
    frame = _scores("2026-01-01", [1]).assign(uplift=0.1)
    with pytest.raises(ValueError, match=r"table churn_scores has no column\(s\) \[.uplift.\]: add them with a migration"):
        results.replace_rows(settings, results.SCORES, frame, "as_of", dt.datetime(2026, 1, 1))


def test_nan_is_stored_as_null_and_booleans_round_trip(settings):
    row = pd.DataFrame([{"run_date": dt.datetime(2026, 1, 1), "model_version": "v1", "mean_score": 0.2,
                         "high_risk_share": float("nan"), "reference_mean_score": 0.2, "reference_high_risk_share": 0.1,
                         "psi_vs_reference": 0.01, "baseline_high_risk_share": float("nan"), "baseline_nights": 0}])
    results.replace_rows(settings, results.PREDICTION, row, "run_date", dt.datetime(2026, 1, 1))
    with results.results_engine(settings).connect() as conn:
        assert conn.execute(sa.text("SELECT high_risk_share FROM prediction_drift")).one() == (None,)
    got = results.read(settings, results.PREDICTION)
    assert pd.isna(got.loc[0, "high_risk_share"]) and got.loc[0, "baseline_nights"] == 0


def test_a_store_newer_than_the_code_is_refused(settings):
    eng = results.results_engine(settings)
    with eng.begin() as conn:
        conn.execute(results.SCHEMA_VERSION_TABLE.insert().values(
            version=results.SCHEMA_VERSION + 1, applied_at=dt.datetime(2027, 1, 1), description="from the future"))
    with pytest.raises(DataError, match=rf"schema version {results.SCHEMA_VERSION + 1}, newer than this churnflow"):
        results.migrate(eng)


def test_a_bad_results_url_names_the_setting(settings):
    if settings.results_db_url:
        down = settings.results_db_url.rsplit(":", 1)[0] + ":1/nowhere"  # nothing listens on port 1
        with pytest.raises(DataError, match=r"config results_db_url: cannot open the results store postgresql"):
            results.results_engine(settings.replace(results_db_url=down))
    with pytest.raises(DataError, match=r"config results_db_url: 'not a url' is not an SQLAlchemy URL"):
        results.results_engine(settings.replace(results_db_url="not a url"))


def test_customer_ids_are_kept_as_given_integers_as_their_digits(settings):
    """A business's ids may be text ('00123' keeps its zeros, base64-like keys their case) or
    integers (stored as their digits): one text column serves both."""
    ids = ["00123", "aGVsbG8=", "Zm9v-Bar_9"]
    results.replace_rows(settings, results.SCORES, _scores("2026-01-01", ids), "as_of", dt.datetime(2026, 1, 1))
    results.replace_rows(settings, results.SCORES, _scores("2026-01-02", [5, 10**12]), "as_of", dt.datetime(2026, 1, 2))
    got = results.read(settings, results.SCORES)
    assert sorted(got["customer_id"]) == sorted([*ids, "5", str(10**12)])


def test_a_store_with_integer_customer_ids_migrates_to_text_and_keeps_its_rows(settings):
    """A store made by an earlier churnflow (schema version 1, churn_scores.customer_id an
    integer) is rebuilt with the text column on first use; its rows stay, as their digits."""
    from pipeline.ingestion.source import engine_for

    engine = engine_for(settings.results_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE churn_scores (as_of TIMESTAMP NOT NULL, customer_id BIGINT NOT NULL, "
                             "churn_probability FLOAT NOT NULL, risk_band VARCHAR(16) NOT NULL, "
                             "model_version VARCHAR(64) NOT NULL, PRIMARY KEY (as_of, customer_id))"))
        conn.execute(sa.text("INSERT INTO churn_scores VALUES ('2026-01-01 00:00:00', 7, 0.5, 'high', 'v1')"))
        results.METADATA.create_all(conn, tables=[t for t in results.METADATA.sorted_tables
                                                  if t.name != "churn_scores"])
        conn.execute(results.SCHEMA_VERSION_TABLE.insert().values(version=1, applied_at=dt.datetime(2026, 1, 1),
                                                                  description="v1"))
    engine.dispose()
    results._migrated_engine.cache_clear()
    results.replace_rows(settings, results.SCORES, _scores("2026-01-02", ["00123"]), "as_of", dt.datetime(2026, 1, 2))
    got = results.read(settings, results.SCORES).sort_values("as_of")
    assert got["customer_id"].tolist() == ["7", "00123"]
    with results.results_engine(settings).connect() as conn:
        assert results.schema_version(conn) == results.SCHEMA_VERSION


def test_a_frame_is_stored_as_sqlalchemy_stores_its_records(settings):
    """:func:`results.insert_frame` (on SQLite: the driver's executemany of tuples bound by the
    columns' types) stores what SQLAlchemy's own insert of :func:`results.records` stores:
    timestamps, NaN and None as NULL, integers, text ids, a number in a text column."""
    frame = pd.DataFrame({"as_of": pd.Timestamp("2026-01-01"), "customer_id": ["00123", "7", "x"],
                          "churn_probability": [0.25, 0.5, 0.75], "risk_band": ["low", "medium", "high"],
                          "model_version": "v1", "reason_1": ["a: 1", None, 5], "reason_2": [float("nan"), "b", None],
                          "rank": [3, 2, 1]})
    engine = results.results_engine(settings)
    with engine.begin() as conn:
        results.insert_frame(conn, results.SCORES, frame, batch_rows=2)
        conn.execute(results.SCORES.insert(), results.records(results.SCORES, frame.assign(as_of=pd.Timestamp("2026-01-02"))))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(results.SCORES).order_by(results.SCORES.c.as_of, results.SCORES.c.customer_id)).all()
    first, second = rows[:3], rows[3:]
    assert [r[1:] for r in first] == [r[1:] for r in second]
    assert [r[0] for r in first] == [dt.datetime(2026, 1, 1)] * 3 and [r[0] for r in second] == [dt.datetime(2026, 1, 2)] * 3
    assert [(r.customer_id, r.reason_1, r.reason_2, r.rank) for r in first] == [
        ("00123", "a: 1", None, 3), ("7", None, "b", 2), ("x", "5", None, 1)]
    with engine.connect() as conn:  # as the store holds them (SQLite: the timestamp's text, the types of its values)
        raw = conn.exec_driver_sql("SELECT * FROM churn_scores ORDER BY as_of, customer_id").all()
    assert [tuple(r)[1:] for r in raw[:3]] == [tuple(r)[1:] for r in raw[3:]]
    assert {str(r[0]).replace("01-02", "01-01") for r in raw} == {str(raw[0][0])}
    with pytest.raises(ValueError, match=r"table churn_scores has no column\(s\) \[.uplift.\]"), engine.begin() as conn:
        results.insert_frame(conn, results.SCORES, frame.assign(uplift=0.1))
