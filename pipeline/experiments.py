"""The experiment log: every candidate of every training run, with its search params, CV
metrics and (for the chosen one) holdout metrics, in ``<models_dir>/experiments.parquet``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd

from pipeline.artifacts import write_parquet
from pipeline.config import Settings

FILE = "experiments.parquet"
HOLDOUT_KEYS = ("roc_auc", "pr_auc", "brier", "ece", "threshold", "expected_value", "base_rate")


def append(settings: Settings, version: str, trials: list[Any], best: Any, metrics: dict[str, Any],
           promoted: bool) -> pd.DataFrame:
    """Append one run's candidates (rewritten atomically); the rows of an earlier build of the
    same ``version`` (a rerun of its date) are replaced."""
    now = dt.datetime.now(dt.UTC).isoformat()
    rows = [{
        "run_at": now, "version": version, "candidate": t.candidate, "params": json.dumps(t.params, default=str),
        "cv_roc_auc": t.cv_roc_auc, "cv_pr_auc": t.cv_pr_auc, "chosen": t is best, "promoted": promoted and t is best,
        **{f"holdout_{k}": (float(metrics[k]) if t is best else None) for k in HOLDOUT_KEYS},
    } for t in trials]
    new = pd.DataFrame(rows)
    old = load(settings)
    old = old[old["version"] != version] if len(old) else old
    table = pd.concat([old, new], ignore_index=True) if len(old) else new
    write_parquet(table, settings.models_dir / FILE)
    return table


def load(settings: Settings) -> pd.DataFrame:
    path = settings.models_dir / FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def compare(settings: Settings, last: int = 5) -> pd.DataFrame:
    """One row per run (its chosen candidate) for the last ``last`` runs, plus the best CV
    ROC-AUC of each candidate family in that run."""
    table = load(settings)
    if table.empty:
        return table
    runs = table["version"].drop_duplicates().tail(last)
    table = table[table["version"].isin(runs)]
    chosen = table[table["chosen"]].set_index("version")[
        ["run_at", "candidate", "promoted", *[f"holdout_{k}" for k in HOLDOUT_KEYS]]]
    per_family = table.pivot_table(index="version", columns="candidate", values="cv_roc_auc", aggfunc="max")
    return chosen.join(per_family.add_prefix("cv_auc_")).sort_values("run_at")
