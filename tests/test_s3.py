"""The lake and the run artifacts on an object store (s3://, a real moto S3 server on 127.0.0.1):
the storage module's atomic writes, listing and errors, and the K=1 vs K=4 nights publishing
the same results with lake_url and artifacts_url on s3://, nothing of either on local disk."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import socket
import sys

import pandas as pd
import pytest
from partitioned_nights import NIGHTS, assert_identical, one_and_four_nights

from pipeline import storage
from pipeline.artifacts import ParquetAppender, atomic_path, run_dir, write_parquet, write_text
from pipeline.config import load_settings
from pipeline.storage import ObjectPath, StorageError

BUCKET = "churnflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free local port, the AWS settings pointing at it (and nowhere
    else: no profile, no config file), its bucket made; the s3fs filesystem of this process."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        storage._filesystem.cache_clear()
        fs = storage.filesystem()
        fs.mkdir(BUCKET)
        yield fs
        storage._filesystem.cache_clear()
    server.stop()


def keys(fs, prefix: str) -> list[str]:
    """The objects under ``prefix`` (bucket/...), relative to it."""
    return sorted(k.removeprefix(prefix.rstrip("/") + "/") for k in fs.find(prefix))


# ------------------------------------------------------------------ configuration (no server needed)
def test_a_bad_url_is_refused_naming_its_setting():
    with pytest.raises(ValueError, match=r"config lake_url: 's3://' names no bucket"):
        load_settings(lake_url="s3://")
    with pytest.raises(ValueError, match=r"config artifacts_url: 'gs://b/runs': unknown scheme 'gs'"):
        load_settings(artifacts_url="gs://b/runs")
    assert load_settings(lake_url="s3://b/a/lake/").lake_url == "s3://b/a/lake/"


def test_object_paths_do_what_the_steps_do_with_paths(tmp_path):
    root = storage.location("s3://bucket/prefix/")
    assert isinstance(root, ObjectPath) and str(root) == "s3://bucket/prefix"
    file = root / "runs" / "" / "score" / "scores.parquet"
    assert str(file) == "s3://bucket/prefix/runs/score/scores.parquet" and file.key == "bucket/prefix/runs/score/scores.parquet"
    assert (file.name, file.suffix, str(file.parent), str(file.with_name("x.csv"))) == (
        "scores.parquet", ".parquet", "s3://bucket/prefix/runs/score", "s3://bucket/prefix/runs/score/x.csv")
    assert storage.location(str(file)) == file and storage.location(str(tmp_path)) == tmp_path
    assert str(ObjectPath("s3://bucket").parent) == "s3://bucket"
    # the defaults stay local, under the data folder
    settings = load_settings(data_dir=tmp_path)
    assert storage.lake_root(settings) == tmp_path / "lake" and storage.artifacts_root(settings) == tmp_path / "runs"
    assert run_dir(settings, "dag", "2025-07-01", "task") == tmp_path / "runs" / "dag" / "2025-07-01" / "task"
    local = load_settings(data_dir=tmp_path, lake_url=str(tmp_path / "elsewhere"))
    assert storage.lake_root(local) == tmp_path / "elsewhere"


def test_without_s3fs_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now fails
    storage._filesystem.cache_clear()
    try:
        with pytest.raises(StorageError, match=r"^config lake_url: s3://b/lake: .*pip install 'churnflow\[s3\]'$"):
            storage.check(load_settings(data_dir=tmp_path, lake_url="s3://b/lake"))
    finally:
        storage._filesystem.cache_clear()


# ------------------------------------------------------------------ the storage module on S3
def test_atomic_writes_replace_an_object_whole_or_not_at_all(s3):
    target = ObjectPath(f"s3://{BUCKET}/unit/atomic/scores.parquet")
    write_parquet(pd.DataFrame({"a": [1, 2]}), target)
    assert storage.read_parquet(target)["a"].tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("failed half-way")
    assert storage.read_parquet(target)["a"].tolist() == [1, 2]  # the old object, untouched
    assert not tmp.exists()  # the local scratch file is gone too
    write_parquet(pd.DataFrame({"a": [3]}), target)
    assert storage.read_parquet(target)["a"].tolist() == [3]
    assert keys(s3, f"{BUCKET}/unit/atomic") == ["scores.parquet"]  # no temporary object ever

    # chunk by chunk into one object; an empty file that must not be kept removes the earlier one
    appended = ObjectPath(f"s3://{BUCKET}/unit/atomic/appended.parquet")
    with ParquetAppender(appended) as out:
        out.write(pd.DataFrame({"a": [1]}))
        out.write(pd.DataFrame({"a": [2]}))
        assert not storage.is_file(appended)  # nothing visible before close
    with storage.parquet_file(appended) as file:
        assert file.metadata.num_rows == 2
    with ParquetAppender(appended) as out:
        pass
    assert not storage.is_file(appended)

    # a task's folder composed locally: its files are uploaded, also when the task fails after writing them
    folder = ObjectPath(f"s3://{BUCKET}/unit/email_report")
    with pytest.raises(KeyError), storage.local_dir(folder) as work:
        write_text("id\n1\n", work / "campaign.csv")
        raise KeyError("smtp")
    assert storage.read_text(folder / "campaign.csv") == "id\n1\n" and storage.size(folder / "campaign.csv") == 5


def test_the_lake_on_s3_replaces_partitions_and_duckdb_reads_it_in_place(s3, tmp_path):
    from pipeline.ingestion import lake

    settings = load_settings(data_dir=tmp_path / "data", lake_url=f"s3://{BUCKET}/unit/lake")
    rows = lambda day, ids: pd.DataFrame({"customer_id": ids, "updated_at": pd.Timestamp(day)})
    written = lake.write_window(settings, "customers", pd.concat([rows("2025-01-01", [1, 2]), rows("2025-01-02", [3])]),
                                "2025-01-01", "2025-01-03")
    assert [str(p) for p in written] == [f"s3://{BUCKET}/unit/lake/customers/date=2025-01-0{d}/part-1.parquet"
                                         for d in (1, 2)]
    stale = ObjectPath(f"s3://{BUCKET}/unit/lake/customers/date=2025-01-02/part-old.parquet")
    write_parquet(rows("2025-01-02", [99]), stale)
    # the window again: day 1 replaced, day 2 without rows kept as it was (with its stray file), day 3 new
    lake.write_window(settings, "customers", pd.concat([rows("2025-01-01", [4]), rows("2025-01-03", [5])]),
                      "2025-01-01", "2025-01-04")
    assert lake.partition_dates(settings, "customers") == [dt.date(2025, 1, d) for d in (1, 2, 3)]
    assert sorted(lake.read_table(settings, "customers")["customer_id"]) == [3, 4, 5, 99]
    # a day replaced by a batch holds exactly its one new file
    lake.write_window(settings, "customers", rows("2025-01-02", [6]), "2025-01-02", "2025-01-03")
    assert keys(s3, f"{BUCKET}/unit/lake/customers") == [f"date=2025-01-0{d}/part-1.parquet" for d in (1, 2, 3)]
    assert lake.customer_ids(settings).tolist() == [4, 5, 6]  # DuckDB over the bucket
    assert lake.id_type(settings) is not None and lake.has_data(settings, "customers")
    assert not lake.has_data(settings, "payments") and lake.partition_dates(settings, "payments") == []
    with lake.duckdb_connection(settings) as con:
        assert con.list_filesystems() == ["s3"]  # fsspec's s3fs, registered: DuckDB reads the objects in place
        lake.register_lake_table(con, settings, "customers", [(dt.date(2025, 1, 2), dt.date(2025, 1, 4))])
        assert con.execute("SELECT list(customer_id ORDER BY customer_id) FROM customers").fetchone()[0] == [5, 6]
    assert not (tmp_path / "data" / "lake").exists()  # staged under data/lake-staging/, then uploaded
    assert not any((tmp_path / "data" / "lake-staging").rglob("*.parquet"))


class _ServerRequests(logging.Handler):
    """The object GETs moto's server logs (werkzeug's access log): their targets, LISTs left out."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.gets: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r'"GET (\S+)', re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))
        if match and "list-type" not in match.group(1) and "prefix=" not in match.group(1):
            self.gets.append(match.group(1))


@pytest.fixture
def server_gets():
    """The object GETs the moto server answers while the test runs."""
    server_log = logging.getLogger("werkzeug")
    requests, level = _ServerRequests(), server_log.level
    server_log.addHandler(requests)
    server_log.setLevel(logging.INFO)
    try:
        yield requests.gets
    finally:
        server_log.removeHandler(requests)
        server_log.setLevel(level)


def test_a_connection_reads_each_small_object_once_from_a_local_copy(s3, tmp_path, server_gets, monkeypatch):
    from pipeline.ingestion import lake

    settings = load_settings(data_dir=tmp_path / "data", lake_url=f"s3://{BUCKET}/copies/lake")
    rows = lambda day, ids: pd.DataFrame({"customer_id": ids, "updated_at": pd.Timestamp(day)})
    lake.write_window(settings, "customers", pd.concat([rows(f"2025-01-0{d}", [d, 10 + d]) for d in (1, 2, 3)]),
                      "2025-01-01", "2025-01-04")
    objects = [f"/{BUCKET}/copies/lake/customers/date=2025-01-0{d}/{lake.PART_NAME}" for d in (1, 2, 3)]
    everything = [(None, dt.date(2025, 1, 4))]
    server_gets.clear()
    with lake.duckdb_connection(settings) as con:
        lake.register_lake_table(con, settings, "customers", [(dt.date(2025, 1, 2), dt.date(2025, 1, 4))])
        lake.register_lake_table(con, settings, "customers", everything, name="all_customers")
        for _ in range(3):  # each query over a view opens every file again (union_by_name: twice)
            assert con.execute("SELECT list(customer_id ORDER BY customer_id) FROM customers").fetchone()[0] == [2, 3, 12, 13]
            assert con.execute("SELECT count(*) FROM all_customers").fetchone()[0] == 6
        folder = storage._COPIES[con].folder
        assert sorted(p.name.partition("-")[2] for p in folder.iterdir()) == [lake.PART_NAME] * 3
    assert not folder.exists()  # the copies go with the connection's temporary folder
    # each object once (the footer lake.id_type reads aside: its own open of the newest file)
    assert sorted(set(server_gets)) == objects and len([g for g in server_gets if g != objects[-1]]) == 2, server_gets
    assert server_gets.count(objects[-1]) <= 3, server_gets
    # an object larger than WHOLE_OBJECT_MAX_BYTES is read in place, by byte ranges: a GET per open
    monkeypatch.setattr(storage, "WHOLE_OBJECT_MAX_BYTES", 0)
    server_gets.clear()
    with lake.duckdb_connection(settings) as con:
        lake.register_lake_table(con, settings, "customers", everything)
        for _ in range(2):
            assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == 6
    assert sorted(set(server_gets)) == objects and len(server_gets) > 2 * len(objects)
    # an object gone after the connection listed the lake: one line naming it
    monkeypatch.undo()
    listed = storage.listed_filesystem(ObjectPath(settings.lake_url))
    s3.rm_file(objects[0].lstrip("/"))
    with pytest.raises(StorageError, match=rf"^cannot read s3:/{re.escape(objects[0])} from the object store at "
                                           r"http://127\.0\.0\.1:\d+: "):
        storage.ObjectCopies(listed, tmp_path / "copies").local([ObjectPath(f"s3:/{o}") for o in objects])


def test_check_names_the_setting_the_bucket_and_the_endpoint(s3, tmp_path, monkeypatch):
    storage.check(load_settings(data_dir=tmp_path, lake_url=f"s3://{BUCKET}/lake", artifacts_url=f"s3://{BUCKET}/runs"))
    with pytest.raises(StorageError, match=r"^config artifacts_url: s3://nobucket/runs: bucket 'nobucket' does not "
                                           r"exist at http://127\.0\.0\.1:\d+$"):
        storage.check(load_settings(data_dir=tmp_path, artifacts_url="s3://nobucket/runs"))
    # an endpoint nothing listens on (one attempt: botocore's standard settings)
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage._filesystem.cache_clear()
    try:
        with pytest.raises(StorageError, match=rf"^config lake_url: s3://{BUCKET}/lake: cannot use the object store at "
                                               rf"{dead} \(AWS_ENDPOINT_URL\): .*{dead}"):
            storage.check(load_settings(data_dir=tmp_path, lake_url=f"s3://{BUCKET}/lake"))
    finally:
        storage._filesystem.cache_clear()


# ------------------------------------------------------------------ the nights on S3
@pytest.fixture(scope="module")
def nights_on_s3(s3, generated_source, tmp_path_factory):
    """test_partitions' business and nights, each copy's lake and artifacts under its own prefix
    of the bucket. The training (setup, not the test) keeps its artifacts on S3 but reads a local
    lake, then uploaded: its three snapshots' features over ~2,200 tiny day files would take
    minutes of requests to moto on two cores; the nights ingest into the S3 lake and read it."""

    def upload_lake(settings):
        local = settings.data_dir / "lake"
        s3.put(str(local), ObjectPath(settings.lake_url).key, recursive=True)
        shutil.rmtree(local)

    where = lambda name: {"lake_url": f"s3://{BUCKET}/{name}/lake", "artifacts_url": f"s3://{BUCKET}/{name}/runs"}
    return one_and_four_nights(generated_source, tmp_path_factory.mktemp("s3"), where=where, trained=upload_lake,
                               artifacts_url=f"s3://{BUCKET}/training/runs")


@pytest.mark.slow  # 3.5 min on 2 busy cores (2026-12-07; 19 min while DuckDB's every open of an object was a GET):
# a training and four nights, each feature build fetching each object it reads once (storage.ObjectCopies)
def test_one_and_four_partitions_publish_identical_results_with_the_lake_and_artifacts_on_s3(s3, nights_on_s3):
    assert_identical(nights_on_s3)
    for k, (settings, nights) in nights_on_s3.items():
        name = {1: "one", 4: "four"}[k]
        assert all(night[step]["path"].startswith(f"s3://{BUCKET}/{name}/runs/churn_nightly/")
                   for night in nights for step in ("features", "scores"))
        lake_objects = keys(s3, f"{BUCKET}/{name}/lake")
        for table in ("customers", "subscriptions", "payments", "events"):
            assert f"{table}/date=2025-06-26/part-1.parquet" in lake_objects, table
        runs = keys(s3, f"{BUCKET}/{name}/runs")
        for night in NIGHTS:
            for artifact in ("build_features/features.parquet", "score/scores.parquet", "alerts/monitoring.json"):
                assert f"churn_nightly/{night}/{artifact}" in runs
            if k == 4:
                assert f"churn_nightly/{night}/score/part-0003-of-0004/scores.parquet" in runs
        # nothing of the lake or the artifacts on local disk; the model store, results and reports stay local
        data = settings.data_dir
        assert not (data / "lake").exists() and not (data / "runs").exists()
        assert (data / "results.db").is_file() and (data / "reports" / NIGHTS[-1]).is_dir()
    assert {"churn_training/2025-07-01/build_training_set/training_set.parquet", "churn_training/2025-07-01/train/result.json"
            } <= set(keys(s3, f"{BUCKET}/training/runs"))
