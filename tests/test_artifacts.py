"""Artifact layout, atomic writes, lake partitions and configuration."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.artifacts import ParquetAppender, atomic_path, run_dir, write_parquet
from pipeline.config import load_settings
from pipeline.ingestion import lake


def test_run_dir_is_keyed_by_dag_date_and_task(settings):
    path = run_dir(settings, "churn_nightly", "2025-07-01T00:00:00+00:00", "score")
    assert path == settings.runs_dir / "churn_nightly" / "2025-07-01" / "score"
    assert path.is_dir()


def test_atomic_write_leaves_no_partial_file_on_crash(tmp_path: Path):
    final = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces(tmp_path: Path):
    path = tmp_path / "x.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), path)
    write_parquet(pd.DataFrame({"a": [3]}), path)
    assert pd.read_parquet(path)["a"].tolist() == [3]
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_empty_or_all_null_chunks_never_fix_an_appended_files_types(tmp_path: Path):
    """The training set of a non_renewal business whose first snapshots nobody was due in
    starts with empty parts: their columns are typed null, and a later part's text or numbers
    could not be cast to null. A later chunk's real type wins; the rows before are its nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "training_set.parquet"
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "plan": pd.Series([], dtype=object),
                          "fee": pd.Series([], dtype=object), "label": pd.Series([], dtype="int64")})
    with ParquetAppender(path, keep_empty=True) as out:
        out.write(empty)  # the first snapshots: nobody due
        out.write(pd.DataFrame({"customer_id": ["c/1"], "plan": [None], "fee": [None], "label": [0]}))
        out.write(pd.DataFrame({"customer_id": ["c/2", "c/3"], "plan": ["basic", None], "fee": [None, None],
                                "label": [1, 0]}))
        out.write(empty)
        out.write(pd.DataFrame({"customer_id": ["c/4"], "plan": [None], "fee": [9.5], "label": [1]}))
    schema = pq.read_schema(path)
    assert schema.field("customer_id").type == pa.string() and schema.field("plan").type == pa.string()
    assert schema.field("fee").type == pa.float64() and schema.field("label").type == pa.int64()
    back = pd.read_parquet(path)
    assert back["customer_id"].tolist() == ["c/1", "c/2", "c/3", "c/4"] and back["label"].tolist() == [0, 1, 0, 1]
    assert back["plan"].tolist() == [None, "basic", None, None]
    assert back["fee"].isna().tolist() == [True, True, True, False] and back["fee"].iloc[3] == 9.5
    assert [p.name for p in tmp_path.iterdir()] == ["training_set.parquet"]  # no scratch file left

    # only empty chunks: an empty file whose schema a caller may still set (ingestion: the contract's)
    with ParquetAppender(tmp_path / "none.parquet", keep_empty=True) as out:
        out.write(empty)
        out.schema = pa.schema([("customer_id", pa.string()), ("plan", pa.string())])
    assert pq.read_schema(tmp_path / "none.parquet").field("plan").type == pa.string()
    # and with keep_empty=False no file at all: it received no rows
    with ParquetAppender(tmp_path / "quarantine.parquet") as out:
        out.write(empty)
    assert not (tmp_path / "quarantine.parquet").exists()


def _payments(ts: list[str]) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame({"payment_id": range(n), "customer_id": range(n), "paid_at": pd.to_datetime(ts),
                         "amount": [9.99] * n, "status": ["success"] * n})


def test_lake_window_replaces_days_and_never_duplicates(settings, caplog):
    lake.write_window(settings, "payments", _payments(["2025-01-01 10:00", "2025-01-02 11:00"]), "2025-01-01", "2025-01-03")
    # re-ingesting an overlapping window replaces the days it has rows for ...
    lake.write_window(settings, "payments", _payments(["2025-01-02 12:00"]), "2025-01-01", "2025-01-03")
    df = lake.read_table(settings, "payments")
    # ... and never deletes a partition with nothing: 2025-01-01 had no rows in this batch
    assert df["paid_at"].tolist() == [pd.Timestamp("2025-01-01 10:00"), pd.Timestamp("2025-01-02 12:00")]
    assert lake.partition_dates(settings, "payments") == [dt.date(2025, 1, 1), dt.date(2025, 1, 2)]
    assert "kept the existing partition(s) of 1 day(s) with no rows in this batch: 2025-01-01" in caplog.text


def test_lake_rejects_rows_outside_the_window(settings):
    with pytest.raises(ValueError, match="payments: 1 rows have paid_at outside"):
        lake.write_window(settings, "payments", _payments(["2025-01-05"]), "2025-01-01", "2025-01-02")


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "churnflow.yaml"
    cfg.write_text("horizon_days: 45\nemail_recipients: a@x.org, b@x.org\nemail_enabled: false\n")
    s = load_settings(cfg)
    assert (s.horizon_days, s.recipients, s.email_enabled) == (45, ["a@x.org", "b@x.org"], False)
    monkeypatch.setenv("CHURNFLOW_HORIZON_DAYS", "60")
    assert load_settings(cfg).horizon_days == 60
    assert load_settings(cfg, horizon_days=7).horizon_days == 7


def test_config_errors_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("horizon_dayz: 3\n")
    with pytest.raises(ValueError, match=r"unknown settings.*horizon_dayz"):
        load_settings(cfg)
    monkeypatch.setenv("CHURNFLOW_HORIZON_DAYS", "soon")
    with pytest.raises(ValueError, match="config horizon_days: expected int"):
        load_settings()


@pytest.mark.parametrize(("env", "value", "message"), [
    ("CHURNFLOW_HORIZON_DAYS", "-30", "config horizon_days: -30 is out of its valid range [1, 730]"),
    ("CHURNFLOW_CAMPAIGN_SAVE_RATE", "1.5", "config campaign_save_rate: 1.5 is out of its valid range [0, 1]"),
    ("CHURNFLOW_TRAINING_SNAPSHOTS", "0", "config training_snapshots: 0 is out of its valid range [2, 120]"),
])
def test_out_of_range_settings_are_refused_with_name_value_and_range(monkeypatch, tmp_path, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError) as err:
        load_settings()
    assert str(err.value) == message
    monkeypatch.delenv(env)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"{env.removeprefix('CHURNFLOW_').lower()}: {value}\n")
    with pytest.raises(ValueError, match="out of its valid range"):
        load_settings(cfg)


def test_a_full_disk_names_the_artifact_it_could_not_write(tmp_path):
    """A write that fails for space (here the file-size limit: EFBIG, the same errno path as
    ENOSPC) used to raise without a path; the temporary file does not stay behind."""
    script = f"""
import resource, signal, sys
import numpy as np, pandas as pd
from pathlib import Path
from pipeline.artifacts import write_parquet
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    write_parquet(pd.DataFrame({{"x": np.random.default_rng(0).random(500_000)}}), Path({str(tmp_path)!r}) / "big.parquet")
except OSError as exc:
    print("ERROR", exc)
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert f"writing {tmp_path / 'big.parquet'}" in out.stdout, out.stdout + out.stderr
    assert not list(tmp_path.iterdir())


def test_an_unwritable_data_dir_names_the_setting(tmp_path):
    import os

    from pipeline.artifacts import check_writable
    from pipeline.errors import DataError

    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-dir"
        blocked.write_text("")
        data_dir = blocked / "data"  # root ignores permission bits; a path under a file is unwritable for anyone
    else:
        data_dir = tmp_path / "ro"
        data_dir.mkdir(mode=0o500)
    with pytest.raises(DataError, match=r"config data_dir \(CHURNFLOW_DATA_DIR\): .* is not writable"):
        check_writable(load_settings(data_dir=data_dir))


def test_a_run_refuses_to_start_without_free_space(tmp_path):
    import shutil as sh

    from pipeline.artifacts import check_writable
    from pipeline.errors import DataError

    free = sh.disk_usage(tmp_path).free // 2**20
    with pytest.raises(DataError, match=r"MiB free, less than min_free_disk_mb"):
        check_writable(load_settings(data_dir=tmp_path / "d", min_free_disk_mb=free + 10_000))
    check_writable(load_settings(data_dir=tmp_path / "d", min_free_disk_mb=1))


def test_relative_paths_in_a_config_file_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    cfg = folder / "churnflow.yaml"
    cfg.write_text("data_dir: data\nsql_dir: sql\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(cfg)
    assert (s.data_dir, Path(s.sql_dir)) == (folder / "data", folder / "sql")
    cfg.write_text(f"sql_dir: {tmp_path / 'abs'}\n")
    assert Path(load_settings(cfg).sql_dir) == tmp_path / "abs"
    monkeypatch.setenv("CHURNFLOW_SQL_DIR", "mine")  # an environment variable: the working directory's
    assert load_settings(cfg).sql_dir == "mine"
