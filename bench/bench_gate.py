"""Benchmark the gate's paired bootstrap of the ROC-AUC difference (issue 34).

    python bench/bench_gate.py [--rows N ...] [--samples B] [--base-rate R]

Synthesises a holdout of ``--rows`` rows (churn at ``--base-rate``) scored by two correlated
models, the champion's scores rounded to 3 decimals (ties, as a calibrated model has), and times
:func:`pipeline.model.gate.paired_bootstrap` with ``--samples`` resamples (the default
``promotion_bootstrap_samples``), after checking the unweighted AUC against scikit-learn's. Prints
the wall and CPU time per size (CPU time: the fairer figure on a shared machine) against the
target (<= 60 s CPU at 1,000,000 rows and 1,000 resamples: a small part of a 1M-row training).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

TIME_TARGET_S = 60.0


def holdout(rows: int, base_rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores: the candidate slightly better than the champion."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < base_rate).astype(np.int64)
    signal = rng.normal(size=rows) + 1.2 * y
    candidate = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.9, size=rows))))
    champion = np.round(1 / (1 + np.exp(-(signal + rng.normal(scale=1.0, size=rows)))), 3)
    return y, candidate, champion


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from pipeline.model.gate import evidence, paired_bootstrap, weighted_roc_auc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--base-rate", type=float, default=0.06)
    args = parser.parse_args(argv)
    slow = False
    for rows in args.rows:
        y, candidate, champion = holdout(rows, args.base_rate)
        observed = weighted_roc_auc(y, candidate) - weighted_roc_auc(y, champion)
        assert abs(observed - (roc_auc_score(y, candidate) - roc_auc_score(y, champion))) < 1e-9
        start, cpu = time.perf_counter(), time.process_time()
        differences = paired_bootstrap(y, candidate, champion, samples=args.samples, seed=42)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        found = evidence(differences, observed, margin=0.0, confidence=0.95, rows=rows)
        print(f"gate bootstrap: {rows:>10,} rows ({int(y.sum()):,} churners), {args.samples:,} resamples: "
              f"{took:6.2f} s wall, {cpu:6.2f} s CPU ({1000 * took / args.samples:.2f} ms a resample); "
              f"difference {observed:+.4f}, 95% lower bound {found.ci_low:+.4f}, not better in {found.share_not_better:.1%}")
        slow |= rows >= 1_000_000 and cpu * 1000 / args.samples > TIME_TARGET_S  # scaled to 1,000 resamples
    print(f"target: <= {TIME_TARGET_S:.0f} s CPU at 1,000,000 rows and 1,000 resamples: {'MISSED' if slow else 'met'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
