"""Artifact layout, atomic writes, lake partitions and configuration."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline import lake
from pipeline.artifacts import atomic_path, run_dir, write_parquet
from pipeline.config import load_settings


def test_run_dir_is_keyed_by_dag_date_and_task(settings):
    path = run_dir(settings, "churn_nightly", "2025-07-01T00:00:00+00:00", "score")
    assert path == settings.runs_dir / "churn_nightly" / "2025-07-01" / "score"
    assert path.is_dir()


def test_atomic_write_leaves_no_partial_file_on_crash(tmp_path: Path):
    final = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
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


def _payments(ts: list[str]) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame({"payment_id": range(n), "customer_id": range(n), "paid_at": pd.to_datetime(ts),
                         "amount": [9.99] * n, "status": ["success"] * n})


def test_lake_window_replaces_days_and_never_duplicates(settings):
    lake.write_window(settings, "payments", _payments(["2025-01-01 10:00", "2025-01-02 11:00"]), "2025-01-01", "2025-01-03")
    # re-ingesting an overlapping window replaces those days; a day now empty disappears
    lake.write_window(settings, "payments", _payments(["2025-01-02 12:00"]), "2025-01-01", "2025-01-03")
    df = lake.read_table(settings, "payments")
    assert df["paid_at"].tolist() == [pd.Timestamp("2025-01-02 12:00")]
    assert lake.partition_dates(settings, "payments") == [dt.date(2025, 1, 2)]


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
    with pytest.raises(ValueError, match="unknown settings.*horizon_dayz"):
        load_settings(cfg)
    monkeypatch.setenv("CHURNFLOW_HORIZON_DAYS", "soon")
    with pytest.raises(ValueError, match="config horizon_days: expected int"):
        load_settings()
