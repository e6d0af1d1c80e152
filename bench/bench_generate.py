"""Benchmark the synthetic data generator: wall time, peak memory and rows per table.

    python bench/bench_generate.py [--customers 1000000] [--months 6] [--seed 1] [--data-dir DIR]

Writes into a temporary data directory (SQLite source database) unless ``--data-dir``
is given, so it never touches the configured data.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from churnflow_sim.generate import generate
from pipeline.config import load_settings


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(customers: int, months: int, seed: int, data_dir: Path) -> dict:
    settings = load_settings(config_file=None, data_dir=data_dir, source_db_url="")
    t0 = time.perf_counter()
    summary = generate(settings, customers, months, seed)
    wall = time.perf_counter() - t0
    print(f"\n{customers:,} customers x {months} months (seed {seed})")
    print(f"wall time: {wall:.1f} s")
    print(f"peak RSS:  {_peak_rss_mib():,.0f} MiB")
    for table, n in summary["rows"].items():
        print(f"  {table:<16} {n:>13,}")
    print(f"30-day churn rate: {summary['churn_rate_30d']:.2%}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the output here")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        run(args.customers, args.months, args.seed, args.data_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="churnflow-bench-") as tmp:
        run(args.customers, args.months, args.seed, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
