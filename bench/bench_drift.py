"""Benchmark the nightly drift report: all-rows statistics + Evidently HTML on a sample.

    python bench/bench_drift.py [--rows N] [--compare-rows M]

Synthesises 30 features (20 numeric, 10 categorical) for a reference and two current
batches of ``--rows`` rows each: a quiet one (same distributions) and one with drift
injected into known columns. Times :func:`pipeline.monitoring.report.drift_report` on each and prints
wall time and peak RSS against the targets (<= 20 s per report, <= 3 GiB peak).

Agreement: the drifted-feature set of each case is compared (a) with the injected columns
and (b) with Evidently's own ``DataDriftPreset`` run on full data of ``--compare-rows`` rows
(default 100,000: full Evidently at 1,000,000 rows takes ~140 s a report). Above 1,000
rows both use distance tests (Wasserstein, Jensen-Shannon), not p-values; the method names
are compared too. Exits 1 when a target is missed or a verdict disagrees.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 20, 10
NUMERIC = [f"num_{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(N_CATEGORICAL)]
#: columns that get drift injected in the "drift" case
DRIFTED_NUMERIC = ["num_00", "num_01", "num_02"]
DRIFTED_CATEGORICAL = ["cat_00", "cat_01"]
TIME_TARGET_S = 20.0
MEMORY_TARGET_GIB = 3.0


def synthesize(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    """30 mixed columns; with ``drift`` the known columns shift clearly (numeric by 0.5 std)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 4
        if kind == 0:
            values = rng.normal(50, 10, rows)
        elif kind == 1:
            values = rng.lognormal(3, 0.8, rows)
        elif kind == 2:
            values = rng.poisson(4, rows).astype("float64")
        else:
            values = rng.exponential(20, rows)
        if drift and name in DRIFTED_NUMERIC:
            values = values + 0.5 * float(np.std(values))
        if i % 5 == 4:  # some missing values, like real features
            values[rng.random(rows) < 0.05] = np.nan
        cols[name] = values
    for i, name in enumerate(CATEGORICAL):
        levels = [f"v{j}" for j in range(3 + i)]
        shares = np.linspace(1, 2, len(levels))
        if drift and name in DRIFTED_CATEGORICAL:
            shares = shares[::-1] ** 3  # strong re-weighting
        cols[name] = pd.Categorical(rng.choice(levels, rows, p=shares / shares.sum()), categories=levels)
    return pd.DataFrame(cols)


def evidently_drifted(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[bool, str]]:
    """Evidently's own DataDriftPreset on the full frames: column -> (drifted, method)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    ref, cur = reference.copy(), current.copy()
    for c in CATEGORICAL:  # Evidently wants plain values
        ref[c], cur[c] = ref[c].astype(str), cur[c].astype(str)
    snapshot = Report([DataDriftPreset(columns=NUMERIC + CATEGORICAL)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    out = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if "column" in cfg:
            value, threshold, method = float(m["value"]), float(cfg["threshold"]), cfg["method"]
            fires = value <= threshold if "p_value" in method else value >= threshold
            out[cfg["column"]] = (fires, method)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side (default 1,000,000)")
    parser.add_argument("--compare-rows", type=int, default=100_000,
                        help="rows per side for the full-data Evidently comparison (default 100,000)")
    parser.add_argument("--sample-rows", type=int, default=20_000, help="rows in the Evidently HTML (as config)")
    args = parser.parse_args(argv)

    from pipeline.monitoring.drift import compute_drift
    from pipeline.monitoring.report import drift_report

    ok = True
    reference = synthesize(args.rows, seed=1, drift=False)
    cases = {"quiet": synthesize(args.rows, seed=2, drift=False), "drift": synthesize(args.rows, seed=3, drift=True)}
    expected = {"quiet": set(), "drift": set(DRIFTED_NUMERIC + DRIFTED_CATEGORICAL)}
    print(f"drift report: {args.rows:,} current x {len(NUMERIC) + len(CATEGORICAL)} features vs "
          f"{args.rows:,} reference rows; HTML on a {args.sample_rows:,}-row sample", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, current in cases.items():
            t0 = time.perf_counter()
            _, _, summary = drift_report(reference, current, NUMERIC, CATEGORICAL, Path(tmp) / name,
                                         sample_rows=args.sample_rows, share_threshold=0.5)
            wall = time.perf_counter() - t0
            got = {f.column for f in summary.drifted_features}
            hit = got == expected[name]
            ok &= hit and wall <= TIME_TARGET_S
            print(f"  {name:5s}: {wall:6.1f} s (target <= {TIME_TARGET_S:.0f} s) "
                  f"{'OK' if wall <= TIME_TARGET_S else 'MISSED'}; drifted {sorted(got)}; "
                  f"injected {sorted(expected[name])}: {'agree' if hit else 'DISAGREE'}", flush=True)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    ok &= peak_gib <= MEMORY_TARGET_GIB
    print(f"  peak RSS: {peak_gib:.2f} GiB (target <= {MEMORY_TARGET_GIB:.0f} GiB) "
          f"{'OK' if peak_gib <= MEMORY_TARGET_GIB else 'MISSED'}", flush=True)

    n = min(args.compare_rows, args.rows)
    print(f"agreement with Evidently's DataDriftPreset on full data of {n:,} rows per side "
          f"(not {args.rows:,}: full Evidently there takes ~140 s a report)", flush=True)
    for name, current in cases.items():
        ref, cur = reference.head(n), current.head(n)
        ours = {f.column: (f.drifted, f.method) for f in compute_drift(ref, cur, NUMERIC, CATEGORICAL).features}
        t0 = time.perf_counter()
        theirs = evidently_drifted(ref, cur)
        wall = time.perf_counter() - t0
        differ = sorted(c for c in ours if ours[c] != theirs.get(c))
        agree = len(ours) - len(differ)
        ok &= not differ
        methods = sorted({m for _, m in theirs.values()})
        print(f"  {name:5s}: {agree}/{len(ours)} verdicts and methods agree (Evidently {wall:.1f} s, "
              f"methods {methods}); drifted per Evidently {sorted(c for c, (d, _) in theirs.items() if d)}"
              + (f"; DIFFER: {differ}" if differ else ""), flush=True)
    print("RESULT:", "all targets met" if ok else "TARGET MISSED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
