"""The nights of one trained business run with partitions 1 and with partitions 4, and the check
that both publish the same results: shared by test_partitions.py (local storage) and test_s3.py
(the lake and the run artifacts on an object store)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from conftest import RUN_DATE, TRAINED

from pipeline import storage
from pipeline.config import Settings, load_settings
from pipeline.results import TABLES
from pipeline.results import read as read_table

#: a quiet night, and the night one horizon (30 days) later: matured labels, performance rows and the drift alerts
NIGHTS = ("2025-05-28", "2025-06-27")

Nights = dict[int, tuple[Settings, list[dict[str, Any]]]]


def one_and_four_nights(source: Path, base: Path, *, where: Callable[[str], dict[str, Any]] = lambda name: {},
                        trained: Callable[[Settings], None] = lambda settings: None, is_trained: bool = False,
                        reports: bool = True, **training: Any) -> Nights:
    """One business trained once (conftest.TRAINED's settings, ``training``: extra settings of
    that run) and copied twice, its nights run with partitions 1 and 4. ``source``: the
    generated business, or with ``is_trained`` one already trained so (conftest's
    ``trained_source``: only copied). ``where(name)``: the settings placing the copy ``name``
    ("one", "four") for its nights, e.g. its lake_url; ``trained(settings)`` is called with each
    copy's settings once it holds the trained business (to move its lake there). ``reports=False``:
    the nights write no drift report or dashboard snapshot (made from the combined files, so the
    same whatever the partitions: only their cost would be paid twice)."""
    from pipeline.flows import run_nightly, run_training

    one, four = base / "one" / "data", base / "four" / "data"
    shutil.copytree(source, one)
    if not is_trained:
        run_training(load_settings(data_dir=one, **TRAINED, **training), RUN_DATE)
    shutil.copytree(one, four)
    runs = {k: load_settings(data_dir=data_dir, horizon_days=30, partitions=k, **where(name))
            for data_dir, name, k in ((one, "one", 1), (four, "four", 4))}
    for settings in runs.values():
        trained(settings)
    return {k: (settings, [run_nightly(settings, night, lookback_days=31, reports=reports) for night in NIGHTS])
            for k, settings in runs.items()}


def assert_identical(nights: Nights) -> None:
    """K=1 and K=4 published the same rows in every results table (exactly), and the nights'
    combined features and scores files are the unpartitioned ones, row for row."""
    (s1, nights1), (s4, nights4) = nights[1], nights[4]
    assert nights4[-1]["scores"]["partitions"] == 4 and "partitions" not in nights1[-1]["scores"]
    assert nights1[-1]["monitoring"]["performance"] is not None  # the matured night is compared too
    for name, table in TABLES.items():
        a, b = read_table(s1, table), read_table(s4, table)
        assert len(a) == len(b), name
        key = [c.name for c in table.primary_key.columns] or [c for c in a.columns if c not in ("message",)]
        a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert len(read_table(s1, "churn_scores")) > 1000 and len(read_table(s1, "alerts"))
    # the night's artifacts too: the combined scores file is the unpartitioned one, row for row
    for n1, n4 in zip(nights1, nights4, strict=True):
        for artifact in ("scores", "features"):
            pd.testing.assert_frame_equal(storage.read_parquet(storage.location(n1[artifact]["path"])),
                                          storage.read_parquet(storage.location(n4[artifact]["path"])))
