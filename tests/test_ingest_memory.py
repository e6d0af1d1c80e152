"""Ingest + validate memory is bounded by a chunk, not by the history (issue 11).

The first training run ingests the whole event history; at a million customers a frame of
it did not fit in memory. Each run below ingests a history of landed event files through
the real step (``pipeline.ingestion.steps.ingest_step``: read, Great Expectations, quarantine, lake) in a
fresh interpreter and reports the step's own peak RSS (``pipeline.resources``). Four times
the history must not cost more than a small, fixed allowance: holding the history in one
frame would cost many times that allowance (checked below, so the test cannot pass
vacuously).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import load_settings
from pipeline.ingestion import lake as lake_module
from pipeline.ingestion.contract import EVENT_TYPES, EVENTS_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
END = dt.date(2025, 7, 1)
ROWS_PER_DAY = 20_000
ALLOWED_GROWTH = 48 * 2**20  # bytes of peak RSS that 90 more days may add

_RUN = """
import json, sys
from pathlib import Path
from pipeline.config import load_settings
from pipeline.context import RunContext
from pipeline.ingestion.steps import ingest_step
from pipeline.resources import measured
settings = load_settings(data_dir=Path(sys.argv[1]))
with measured("ingest_events", Path(sys.argv[1]) / "measure"):
    out = ingest_step(RunContext.of(settings, "churn_training", sys.argv[2]), "events")
print(json.dumps(out))
"""


def _land(data_dir: Path, days: int) -> pd.DataFrame:
    """``days`` landed event files before END; returns them as one frame (for its size)."""
    rng = np.random.default_rng(days)
    frames = []
    for i in range(days):
        day = END - dt.timedelta(days=days - i)
        seconds = rng.integers(0, 86_400, ROWS_PER_DAY)
        frame = pd.DataFrame({
            "customer_id": rng.integers(1, 50_000, ROWS_PER_DAY),
            "event_ts": pd.Timestamp(day) + pd.to_timedelta(np.sort(seconds), unit="s"),
            "event_type": rng.choice(EVENT_TYPES, ROWS_PER_DAY),
            "duration_s": rng.exponential(300.0, ROWS_PER_DAY),
            "content_units": rng.integers(0, 5, ROWS_PER_DAY).astype("int32"),
        })
        folder = data_dir / "landing" / "events" / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, schema=EVENTS_SCHEMA, preserve_index=False),
                       folder / "events.parquet")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _ingest_peak(data_dir: Path) -> tuple[int, dict]:
    # a chunk of two days: both histories are many chunks, so the comparison is the history's length alone
    env = {**os.environ, "CHURNFLOW_INGEST_CHUNK_ROWS": str(2 * ROWS_PER_DAY)}
    proc = subprocess.run([sys.executable, "-c", _RUN, str(data_dir), END.isoformat()], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = json.loads((data_dir / "measure" / "resources.json").read_text())["peak_rss_bytes"]
    return peak, out


def test_ingest_peak_memory_does_not_grow_with_history(tmp_path: Path) -> None:
    short, long = tmp_path / "d30" / "data", tmp_path / "d120" / "data"
    _land(short, 30)
    history = _land(long, 120)
    peak_short, out_short = _ingest_peak(short)
    peak_long, out_long = _ingest_peak(long)

    assert out_short["rows"] == 30 * ROWS_PER_DAY and out_long["rows"] == 120 * ROWS_PER_DAY
    # 120 days in the lake: the closed months compacted into one file each, the open month's days as day files
    settings = load_settings(data_dir=long)
    assert len(lake_module.partition_dates(settings, "events")) == 120 and out_long["rejected"] == 0
    assert out_long["partitions"] == len(lake_module.partition_files(settings, "events")) < 120
    # not vacuous: one frame of the history alone is far more than the allowance
    assert history.memory_usage(deep=True).sum() > 4 * ALLOWED_GROWTH
    growth = peak_long - peak_short
    assert growth < ALLOWED_GROWTH, (
        f"ingesting 120 days peaked at {peak_long / 2**20:.0f} MiB, 30 days at {peak_short / 2**20:.0f} MiB: "
        f"+{growth / 2**20:.0f} MiB for 90 more days (allowed {ALLOWED_GROWTH / 2**20:.0f} MiB)")
