"""Benchmark the concept-drift detectors' added time on a night (pipeline.monitoring.concept).

    python bench/bench_concept.py [--customers N]

Synthesises one night's matured predictions of ``--customers`` customers (calibrated
probabilities and their labels) and times :func:`pipeline.monitoring.concept.run_night`, the
monitor step's whole added work (the customer hashes, the night's rotation, the fixed order, both
detectors from a stored state, their pickled states):

* ``night``: the 30-day label window's rotation (what a night feeds: each customer once per window);
* ``every customer``: a 1-day window, so every matured prediction is fed: the detectors' worst case,
  a 1M-error stream through ADWIN and DDM.

Target: under 5 s each at 1,000,000 customers. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time

import numpy as np
import pandas as pd

TIME_TARGET_S = 5.0


def matured(customers: int, seed: int = 0) -> pd.DataFrame:
    """One night's matured scores: a churn probability per customer and the label it got."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 18, customers)
    frame = pd.DataFrame({"customer_id": np.arange(1, customers + 1), "churn_probability": p,
                          "label": (rng.random(customers) < p).astype(int), "model_version": "v1"})
    frame.attrs["scored_on"] = dt.date(2025, 6, 1)
    return frame


def main(argv: list[str] | None = None) -> int:
    from pipeline.monitoring.concept import run_night

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    night = matured(args.customers)
    settings = {"detectors": ["adwin", "ddm"], "adwin_delta": 0.002, "ddm_threshold": 3.0, "warm_start": 300}
    # a state to start from, as a night finds it: the previous night's
    warm = run_night("2025-07-01", "v1", matured(max(args.customers // 30, 1000), seed=1), 0.1, 1, {}, **settings)
    previous = {r["detector"]: r["state"] for r in warm.rows}
    failed = False
    for case, window in (("night (30-day window's rotation)", 30), ("every customer (1-day window)", 1)):
        t0 = time.perf_counter()
        out = run_night("2025-07-02", "v1", night, 0.1, window, previous, **settings)
        seconds = time.perf_counter() - t0
        fed = out.rows[0]["fed"]
        state = max(len(r["state"]) for r in out.rows)
        ok = seconds < TIME_TARGET_S
        failed |= not ok
        print(f"concept drift, {case}: {args.customers:,} matured predictions, {fed:,} errors fed to ADWIN and DDM "
              f"in {seconds:.2f} s (target < {TIME_TARGET_S:g} s: {'ok' if ok else 'MISSED'}); largest state "
              f"{state:,} bytes; detections {len(out.detections)}", flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
