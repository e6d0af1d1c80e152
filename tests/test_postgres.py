"""churnflow on a real PostgreSQL server (a throwaway one per session, see churnflow_sim/pg_server.py):
the customer database read from PostgreSQL gives the same lake as from SQLite, and a whole
training + nightly run keeps its results store on PostgreSQL while the source stays untouched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import results
from pipeline.config import Settings, load_settings
from pipeline.context import TRAINING_DAG
from pipeline.flows import run_ingestion, run_nightly, run_training
from pipeline.ingestion import lake
from pipeline.model.score import round_probability
from pipeline.tables import LAKE_TABLE_NAMES

GEN = {"customers": 400, "months": 5, "seed": 11, "start": dt.date(2025, 1, 1)}
TRAIN_ON, NIGHT = "2025-06-01", "2025-05-31"
FAST = {"candidates": "logreg", "search_iterations": 1, "cv_folds": 1, "training_snapshots": 4}


def _generate(settings: Settings) -> None:
    from churnflow_sim.generate import generate

    generate(settings, GEN["customers"], GEN["months"], GEN["seed"], start=GEN["start"], progress=None)


@pytest.fixture(scope="module")
def both_sources(tmp_path_factory: pytest.TempPathFactory, postgres_server: str):
    """The same generated business once with a SQLite source and once with a PostgreSQL one."""
    from churnflow_sim import pg_server

    lite = load_settings(data_dir=tmp_path_factory.mktemp("lite") / "data", **FAST)
    pg = load_settings(data_dir=tmp_path_factory.mktemp("pg") / "data",
                       source_db_url=pg_server.create_database(postgres_server, "churn_source"),
                       results_db_url=pg_server.create_database(postgres_server, "churn_results"), **FAST)
    _generate(lite)
    _generate(pg)
    return lite, pg


def _lake(settings: Settings, table: str) -> pd.DataFrame:
    frame = lake.read_table(settings, table)
    return frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)


def test_a_postgresql_source_gives_the_same_lake_as_sqlite(both_sources):
    lite, pg = both_sources
    assert sa.engine.make_url(pg.db_url).get_backend_name() == "postgresql"
    for settings in (lite, pg):
        validated = run_ingestion(settings, TRAINING_DAG, TRAIN_ON)
        assert all(v["rejected"] == 0 for v in validated.values()), validated
    for table in LAKE_TABLE_NAMES:
        pd.testing.assert_frame_equal(_lake(pg, table), _lake(lite, table), check_like=True, obj=table)
    assert len(_lake(pg, "customers")) == GEN["customers"]


def test_training_and_a_night_on_postgresql_write_results_there_and_not_into_the_source(both_sources, tmp_path: Path):
    _, pg = both_sources
    trained = run_training(pg, TRAIN_ON)
    assert trained["train"]["promoted"], trained["train"]
    night = run_nightly(pg, NIGHT)
    assert night["published"]["rows"] == night["scores"]["rows"] > 0
    scores = results.read(pg, results.SCORES)
    assert len(scores) == night["scores"]["rows"] and set(scores["as_of"].dt.date.astype(str)) == {NIGHT}
    assert len(results.read(pg, results.DRIFT)) > 0 and len(results.read(pg, results.PREDICTION)) == 1
    with sa.create_engine(pg.results_url).connect() as conn:
        assert results.schema_version(conn) == results.SCHEMA_VERSION
    source_tables = set(sa.inspect(sa.create_engine(pg.db_url)).get_table_names())
    assert not source_tables & set(results.TABLES), source_tables  # the source is only read
    # (a rerun replacing a night's rows on PostgreSQL: tests/test_results.py, on both backends)
    _the_score_api_reads_the_night_and_cannot_write(pg, night)


def _the_score_api_reads_the_night_and_cannot_write(pg: Settings, night: dict) -> None:
    """The score API (pipeline/api.py) over the PostgreSQL store the night wrote: its answers are the
    night's scores, its engine cannot write, and a night republished while it reads is seen whole."""
    import threading

    from fastapi.testclient import TestClient

    from pipeline.api import create_app
    from pipeline.model.score import publish_scores

    engine = results.read_only_engine(pg)
    api = TestClient(create_app(pg, engine))
    scores = pd.read_parquet(night["scores"]["path"])
    top = scores.sort_values(["churn_probability", "customer_id"], ascending=[False, True]).iloc[0]
    body = api.get(f"/v1/customers/{top['customer_id']}").json()
    assert (body["night"], body["rank"], body["churn_probability"]) == (NIGHT, 1, top["churn_probability"]), body
    assert body["reasons"] == [r for r in top[["reason_1", "reason_2", "reason_3"]] if isinstance(r, str)]
    assert api.get("/v1/customers/nobody").status_code == 404
    assert api.get("/health").json()["store"] == "postgresql"
    etag = api.get("/v1/nights/latest").headers["etag"]
    assert api.get("/v1/nights/latest", headers={"If-None-Match": etag}).status_code == 304
    for statement in (results.SCORES.delete(), sa.text("CREATE TABLE sneaky (x INTEGER)")):
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"), engine.begin() as conn:
            conn.execute(statement)
    assert api.get("/v1/nights/latest").json()["scored"] == len(scores)
    # the night republished by another model (every probability changed) while the API reads
    other = scores.assign(churn_probability=1 - scores["churn_probability"], model_version="vX")
    path = Path(night["scores"]["path"]).with_name("other.parquet")
    other.to_parquet(path)
    expected = {v: f.assign(customer_id=f["customer_id"].astype(str)).set_index("customer_id")["churn_probability"]
                for v, f in (("v1", scores), ("vX", other))}
    writer = threading.Thread(target=lambda: [publish_scores(pg, p, NIGHT) for p in (path, night["scores"]["path"]) * 3])
    writer.start()
    while writer.is_alive():
        page = api.get("/v1/campaigns/latest", params={"limit": 20}).json()
        probs = expected[page["model_version"]]
        # the campaign rounds as the campaign file does (score.round_probability)
        assert all(round_probability(probs[c["customer_id"]]) == c["churn_probability"] for c in page["customers"]), page
    writer.join()
