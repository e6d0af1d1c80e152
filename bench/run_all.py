"""``make bench``: run every benchmark in its own process and print its figures.

    python bench/run_all.py [--customers N] [--only NAME ...]

Each ``bench/bench_<name>.py`` prints its own wall time, peak memory and the targets it is
read against. They run one after another (never in parallel: the timings are the point),
each in a fresh interpreter so that one benchmark's peak memory is not another's.
``--customers`` scales all of them down for a quick check (the targets are for 1,000,000).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> extra arguments at a given customer count (events scale with customers: ~100 each)
BENCHMARKS: dict[str, object] = {
    "generate": lambda n: ["--customers", str(n)],
    "features": lambda n: ["--customers", str(n), "--events", str(100 * n)],
    # a nightly piece's cost against its share: K = 1, 4, 8 on the lake in customer order, and the
    # GETs of a feature build on S3 (issue 35)
    "partitions": lambda n: ["--customers", str(n)],
    "drift": lambda n: ["--rows", str(n)],
    # the concept-drift detectors' added time on a night of n matured predictions (issue 25)
    "concept": lambda n: ["--customers", str(n)],
    # the performance estimated before the labels mature, with its band, at n scores (issue 34)
    "estimate": lambda n: ["--customers", str(n)],
    # the gate's paired bootstrap of the ROC-AUC difference on a holdout of n rows (issue 34)
    "gate": lambda n: ["--rows", str(n)],
    # the demo-sized nightly in a running Airflow vs in-process (scheduler overhead; size fixed)
    "live": lambda n: [],
    # the 1M nightly on the two-worker Celery cluster over 4 partitions vs LocalExecutor over 1 (issue 24)
    "cluster": lambda n: ["--customers", str(n)],
    # the score API: customer lookups against uvicorn on SQLite and PostgreSQL, and the publish with its indexes (issue 38)
    "api": lambda n: ["--customers", str(n)],
    # the whole flow through the DAGs at n customers x 12 months (issue 11): ~40 min at 1M
    "e2e": lambda n: ["--customers", str(n)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000, help="scale (default 1,000,000)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)

    failed: list[str] = []
    for name, extra in BENCHMARKS.items():
        script = HERE / f"bench_{name}.py"
        if args.only and name not in args.only:
            continue
        if not script.is_file():
            print(f"\n### {name}: {script.name} missing", flush=True)
            failed.append(name)
            continue
        cmd = [sys.executable, str(script), *extra(args.customers)]  # type: ignore[operator]
        print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"### {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed or missed a target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
