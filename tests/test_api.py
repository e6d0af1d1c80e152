"""The score API (pipeline/api.py, ``python -m pipeline serve``) against a results store written
by a real nightly of the session's trained business: the campaign CSV the night e-mails and the
API say the same, through a real uvicorn; integer and text ids (``/`` and ``+`` included);
unknown ids; the token; ETags; a read-only engine; and a night published while the API reads.
(PostgreSQL: tests/test_postgres.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import RUN_DATE, TRAINED, copy_business
from fastapi.testclient import TestClient

from pipeline import results
from pipeline.api import create_app
from pipeline.artifacts import write_parquet
from pipeline.config import Settings, load_settings
from pipeline.model.score import CAMPAIGN_FILE_COLUMNS, publish_scores, round_probability

NEXT = "2025-07-02"
#: text ids a business may give, "/" and "+" included (URL-encoded in the path)
TEXT_IDS = ("AB/12+3", "00123", "c:42 x", "ümlaut-7")


@pytest.fixture(scope="module")
def night(trained_source: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the trained business and its night RUN_DATE (no drift report nor e-mail: ~30 s), with
    the night's campaign CSV as the e-mail step writes it (pipeline.monitoring.steps: campaign_file's
    CSV; the e-mailed file itself against the API: tests/test_monitor.py)."""
    from pipeline.flows import run_nightly
    from pipeline.model.score import campaign_file

    data_dir = copy_business(trained_source, tmp_path_factory.mktemp("api") / "data")
    settings = load_settings(data_dir=data_dir, **TRAINED)
    out = run_nightly(settings, RUN_DATE, reports=False)
    csv = data_dir / f"campaign_{RUN_DATE}.csv"
    csv.write_text(campaign_file(settings, pd.read_parquet(out["scores"]["path"]), out["scores"]["threshold"],
                                 RUN_DATE).to_csv(index=False))
    campaign = pd.read_csv(csv, dtype={"customer_id": str}, float_precision="round_trip")
    assert len(campaign) > 10
    return settings, out, campaign


@pytest.fixture(scope="module")
def client(night) -> TestClient:
    return TestClient(create_app(night[0]))


def _path(customer_id: str) -> str:
    return "/v1/customers/" + quote(customer_id, safe="")


def _text_night(settings: Settings, to: Path, day: str = NEXT) -> tuple[Settings, pd.DataFrame]:
    """A copy of ``settings``' results store with a night ``day`` whose customers have text ids
    (the night's scores, the first ones renamed to :data:`TEXT_IDS`, the rest prefixed)."""
    to.mkdir(parents=True)
    shutil.copy(settings.data_dir / "results.db", to / "results.db")
    other = load_settings(data_dir=to)
    scores = pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")
    ids = [*TEXT_IDS, *(f"T-{c}" for c in scores["customer_id"].iloc[len(TEXT_IDS):])]
    scores = scores.assign(customer_id=ids, as_of=pd.Timestamp(day))
    write_parquet(scores, to / "text_scores.parquet")
    publish_scores(other, to / "text_scores.parquet", day)
    return other, scores


def test_a_campaign_customer_is_served_as_the_campaign_csv_says_by_a_real_uvicorn(night):
    """Done when: after a night, `python -m pipeline serve` answers /v1/customers/<id from the campaign CSV>
    with the CSV's probability and reasons."""
    settings, out, campaign = night
    from churnflow_sim.pg_server import free_port

    port = free_port()
    env = {**os.environ, "CHURNFLOW_DATA_DIR": str(settings.data_dir)}
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = http.get("/health")
                    break
                except httpx.TransportError:
                    assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.stdout else ""
                    time.sleep(0.2)
            assert health.json()["latest_night"] == RUN_DATE and health.json()["status"] == "ok"
            for row in campaign.head(25).itertuples():
                got = http.get(_path(row.customer_id))
                assert got.status_code == 200, got.text
                body = got.json()
                assert round_probability(body["churn_probability"]) == row.churn_probability  # the CSV's: rounded
                assert body["reasons"] == [r for r in (row.reason_1, row.reason_2, row.reason_3) if isinstance(r, str)]
                assert (body["rank"], body["risk_band"], body["on_campaign"]) == (row.rank, "high", True)
                assert (body["night"], body["latest_night"], body["current"]) == (RUN_DATE, RUN_DATE, True)
                assert body["model_version"] == out["scores"]["model_version"]
                assert body["scored"] == out["scores"]["rows"]
            page = http.get(f"/v1/campaigns/{RUN_DATE}", params={"limit": 7, "offset": 3}).json()
            assert [c["customer_id"] for c in page["customers"]] == list(campaign["customer_id"].iloc[3:10])
            assert (page["total"], page["next_offset"]) == (len(campaign), 10)
            assert http.get("/docs").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_nights_campaign_file_is_one_an_agent_acts_on(night, client):
    """Issue 37: the night's campaign CSV had unrounded probabilities (0.561381004456517), reasons
    with feature names ("total duration s in 7 days: 387"), 500 rows "high" with nothing saying
    why, and no column an agent would use. Now: rounded (as the API's campaign says them), the
    catalogue's words, why each row is there and what its contact is worth, plan and tenure."""
    import re

    from pipeline.features.catalogue import feature_specs, human_label

    settings, out, campaign = night
    csv = (settings.data_dir / f"campaign_{RUN_DATE}.csv").read_text()
    header = csv.splitlines()[0].split(",")
    # the default campaign_columns: plan and tenure; the generated business maps in no contact field
    assert header == [*CAMPAIGN_FILE_COLUMNS, "reason_1", "reason_2", "reason_3", "plan", "tenure_days"], header
    assert not re.search(r"\d\.\d{4,}", csv), "a number with more than 3 decimals"
    assert campaign["plan"].notna().all() and (campaign["tenure_days"] > 0).all()
    reasons = pd.concat([campaign[c] for c in ("reason_1", "reason_2", "reason_3")]).dropna()
    assert len(reasons) >= len(campaign)
    names = {f.name for f in feature_specs()}
    # a raw name, or its words where the catalogue's label says something else ("total duration s in 7 days")
    leaked = sorted({n for r in reasons for n in names if "_" in n
                     and (n in r or (n.replace("_", " ") in r and human_label(n) != n.replace("_", " ")))})
    assert not leaked, (leaked, reasons.head())
    threshold, capacity = out["scores"]["threshold"], settings.campaign_daily_capacity
    assert (campaign["churn_probability"] >= round(threshold, 3) - 1e-9).all() and len(campaign) <= capacity
    assert campaign["on_list_because"].iloc[0] == (
        f"rank 1 of {len(campaign)} on tonight's list (capacity {capacity}); churn probability "
        f"{campaign['churn_probability'].iloc[0]:.3f} at or above the model's threshold {threshold:.3f}")
    value = campaign["churn_probability"] * settings.campaign_customer_value * settings.campaign_save_rate \
        - settings.campaign_contact_cost
    assert np.allclose(campaign["expected_value"], value, atol=0.04)  # from the unrounded probability
    page = client.get("/v1/campaigns/latest", params={"limit": 1000}).json()
    assert [c["churn_probability"] for c in page["customers"]] == campaign["churn_probability"].tolist()


def test_integer_ids_unknown_ids_and_the_whole_campaign_by_pages(night, client):
    _, out, campaign = night
    scores = pd.read_parquet(out["scores"]["path"])
    low = scores[scores["risk_band"] == "low"].iloc[0]
    body = client.get(f"/v1/customers/{low['customer_id']}").json()  # the business's integer id, as given
    assert body["customer_id"] == str(low["customer_id"]) and body["risk_band"] == "low" and not body["on_campaign"]
    assert body["churn_probability"] == low["churn_probability"] and body["rank"] > len(campaign)
    for unknown in ("999999999", "nobody", "AB/12+3", ""):
        got = client.get(_path(unknown))
        assert got.status_code == 404 and "\n" not in got.text and set(got.json()) == {"error"}, got.text
        assert client.get(_path(unknown) + "/history").status_code == 404
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/v1/campaigns/latest", params={"limit": 40, "offset": offset}).json()
        pages += page["customers"]
        offset = page["next_offset"]
    assert [p["customer_id"] for p in pages] == list(campaign["customer_id"])
    assert [p["rank"] for p in pages] == list(campaign["rank"])
    assert client.get("/v1/campaigns/2025-01-01").status_code == 404
    assert client.get("/v1/campaigns/yesterday").status_code == 422
    bad = client.get("/v1/campaigns/latest", params={"limit": 0})
    assert bad.status_code == 422 and "\n" not in bad.text and "limit" in bad.json()["error"]
    summary = client.get("/v1/nights/latest").json()
    assert (summary["night"], summary["scored"], summary["campaign"]) == (RUN_DATE, len(scores), len(campaign))
    assert summary["drift"]["features"] > 0 and summary["drift"]["verdict"] in ("none", "warning", "critical")
    assert summary["severity"] == out["monitoring"]["severity"]


def test_text_ids_with_slash_and_plus_history_and_a_customer_no_longer_scored(night, tmp_path):
    settings, out, _ = night
    other, scores = _text_night(settings, tmp_path / "text")
    api = TestClient(create_app(other))
    for given in TEXT_IDS:
        body = api.get(_path(given)).json()
        expected = scores[scores["customer_id"] == given].iloc[0]
        assert (body["customer_id"], body["night"], body["current"]) == (given, NEXT, True), body
        assert body["churn_probability"] == expected["churn_probability"]
        history = api.get(_path(given) + "/history", params={"nights": 5}).json()
        assert [s["night"] for s in history["scores"]] == [NEXT]
    # an integer id scored on RUN_DATE only: its last score, not on tonight's campaign
    first = pd.read_parquet(out["scores"]["path"]).sort_values("churn_probability").iloc[-1]
    body = api.get(f"/v1/customers/{first['customer_id']}").json()
    assert (body["night"], body["latest_night"], body["current"], body["risk_band"], body["on_campaign"]) == (
        RUN_DATE, NEXT, False, "high", False)
    assert api.get(f"/v1/customers/{first['customer_id']}/history", params={"nights": 1}).json()["scores"] == []
    assert api.get(f"/v1/customers/{first['customer_id']}/history").json()["scores"][0]["night"] == RUN_DATE


def test_etag_by_the_night(night, tmp_path):
    settings, _, campaign = night
    api = TestClient(create_app(settings))
    one = campaign["customer_id"].iloc[0]
    first = api.get(_path(one))
    etag = first.headers["etag"]
    assert RUN_DATE in etag
    again = api.get(_path(one), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    for path in ("/v1/nights/latest", f"/v1/campaigns/{RUN_DATE}", _path(one) + "/history"):
        assert api.get(path, headers={"If-None-Match": etag}).status_code == 304, path
    assert api.get(_path(one), headers={"If-None-Match": '"2025-06-30-0000"'}).status_code == 200
    # a new night: the old ETag no longer holds
    other, _ = _text_night(settings, tmp_path / "text")
    newer = TestClient(create_app(other)).get(_path(one), headers={"If-None-Match": etag})
    assert newer.status_code == 200 and newer.headers["etag"] != etag and NEXT in newer.headers["etag"]


def test_the_bearer_token_when_api_token_is_set_and_never_logged(night, caplog):
    settings, _, campaign = night
    token = "s3cr3t-token-value"
    api = TestClient(create_app(settings.replace(api_token=token)))
    path = _path(campaign["customer_id"].iloc[0])
    with caplog.at_level("DEBUG"):
        missing = api.get(path)
        wrong = api.get(path, headers={"Authorization": "Bearer nope"})
        right = api.get(path, headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == wrong.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "\n" not in missing.text and set(missing.json()) == {"error"}
    assert right.status_code == 200
    assert api.get("/health").status_code == 200  # a load balancer's probe needs no token
    assert token not in caplog.text and token not in repr(settings.replace(api_token=token))


def test_the_api_engine_cannot_write(night):
    settings, _, _ = night
    engine = results.read_only_engine(settings)
    before = TestClient(create_app(settings, engine)).get("/v1/nights/latest").json()
    for statement in (results.SCORES.delete(), results.PUBLISHED_NIGHTS.delete(),
                      sa.text("CREATE TABLE sneaky (x INTEGER)")):
        with pytest.raises(sa.exc.OperationalError, match=r"readonly"), engine.begin() as conn:
            conn.execute(statement)
    assert TestClient(create_app(settings, engine)).get("/v1/nights/latest").json() == before
    with pytest.raises(results.DataError, match="does not exist"):  # opened read-only: never created
        results.read_only_engine(settings.replace(results_db_url=f"sqlite:///{settings.data_dir / 'nope.db'}"))


def test_a_night_published_while_the_api_reads_is_seen_whole_or_not_at_all(night, tmp_path):
    """A writer republishes night NEXT again and again, each time by another model (every probability
    changed), while the API reads: every answer is one version's, never a mix, and its ETag is that version's."""
    settings, _, _ = night
    other, scores = _text_night(settings, tmp_path / "text")
    versions = {}
    for name, shift in (("vA", 0.0), ("vB", 0.5)):
        frame = scores.assign(churn_probability=(scores["churn_probability"] + shift) % 1.0, model_version=name)
        frame = frame.assign(risk_band=np.where(frame["churn_probability"] > 0.9, "high", "low"))
        write_parquet(frame, tmp_path / f"{name}.parquet")
        versions[name] = frame.set_index("customer_id")["churn_probability"]
    publish_scores(other, tmp_path / "vA.parquet", NEXT)
    api = TestClient(create_app(other))
    done, errors = threading.Event(), []

    def publish() -> None:
        try:
            for i in range(12):
                publish_scores(other, tmp_path / f"{'vB' if i % 2 == 0 else 'vA'}.parquet", NEXT)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=publish)
    writer.start()
    seen: dict[str, set[str]] = {}
    reads = 0
    while not done.is_set() or reads < 20:
        page = api.get("/v1/campaigns/latest", params={"limit": 50}).json()
        kinds = {page["model_version"]}
        for entry in page["customers"]:
            kinds |= {name for name, probs in versions.items() if probs[entry["customer_id"]] == entry["churn_probability"]}
        assert len(kinds) == 1, page  # the page's night and every entry: one version
        got = api.get(_path(TEXT_IDS[0]))
        body = got.json()
        assert body["churn_probability"] == versions[body["model_version"]][TEXT_IDS[0]], body
        seen.setdefault(body["model_version"], set()).add(got.headers["etag"])
        reads += 1
    writer.join()
    assert not errors, errors
    assert all(len(tags) == 1 for tags in seen.values()) and len({t for ts in seen.values() for t in ts}) == len(seen)
    assert reads >= 20
