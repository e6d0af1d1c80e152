"""``python -m pipeline generate``: a generated business, subscription (:mod:`churnflow_sim.generate`),
a transactions-only shop (:mod:`churnflow_sim.retail`) or a membership service
(:mod:`churnflow_sim.memberships`), the last two in their own schema."""

from __future__ import annotations

import argparse
import datetime as dt

from churnflow_sim import generate, memberships, retail
from churnflow_sim.constants import CONCEPT_HAZARD_FACTOR
from pipeline.config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m pipeline generate``."""
    parser.add_argument("--business", choices=("subscription", "retail", "memberships"), default="subscription",
                        help="subscription (default: the contract's tables and daily event files); retail: a "
                             "shop with only customers and orders, in its own schema (map it with examples/retail); "
                             "memberships: a service of text member keys, its own plans and payment method ids, "
                             "free trials and non-renewal churn (map it with examples/memberships)")
    parser.add_argument("--customers", type=int, default=2_000, help="customers in total (default 2000)")
    parser.add_argument("--months", type=int, default=6,
                        help="months of data (default 6); with --live, whole months of history before --until")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, default=None, help="first day, a month start (default 2025-01-01)"
    )
    parser.add_argument(
        "--drift-from", type=dt.date.fromisoformat, default=None, help="price rise and tiktok channel from DATE"
    )
    parser.add_argument(
        "--concept-drift-from", type=dt.date.fromisoformat, default=None,
        help="concept drift from DATE (a month start): the basic plan's customers churn more often "
             "(--concept-drift-factor times, default 3), no feature moves")
    parser.add_argument("--concept-drift-factor", type=float, default=CONCEPT_HAZARD_FACTOR,
                        help="with --concept-drift-from: how many times as often the segment churns (default 3)")
    parser.add_argument("--live", action="store_true",
                        help="a live business: history up to --until, later days held back to land day by day")
    parser.add_argument("--until", type=dt.date.fromisoformat, default=None,
                        help="with --live: the first day not yet landed (default: today, UTC)")
    parser.add_argument("--ahead-days", type=int, default=45, help="with --live: days held back to land (default 45)")


def main(args: argparse.Namespace) -> int:
    """Generate with the configured settings and print where everything was written."""
    if args.business == "retail":
        if args.live or args.drift_from or args.until or args.concept_drift_from:
            raise SystemExit("generate: --business retail takes --customers, --months, --seed and --start only")
        return retail.main(args, load_settings())
    if args.business == "memberships":
        if args.live or args.drift_from or args.until or args.concept_drift_from:
            raise SystemExit("generate: --business memberships takes --customers, --months, --seed and --start only")
        return memberships.main(args, load_settings())
    if args.live:
        if args.start is not None:
            raise SystemExit("generate: --start and --live exclude each other (--live anchors on --until)")
        until = args.until or dt.datetime.now(dt.UTC).date()
        start, months = generate.live_period(until, args.months, args.ahead_days)
        summary = generate.generate(load_settings(), args.customers, months, args.seed, start=start,
                           drift_from=args.drift_from, hold_from=until, concept_drift_from=args.concept_drift_from,
                           concept_drift_factor=args.concept_drift_factor)
    else:
        if args.until is not None:
            raise SystemExit("generate: --until needs --live")
        summary = generate.generate(load_settings(), args.customers, args.months, args.seed,
                           start=args.start or dt.date(2025, 1, 1), drift_from=args.drift_from,
                           concept_drift_from=args.concept_drift_from,
                           concept_drift_factor=args.concept_drift_factor)
    print(generate.format_summary(summary))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m churnflow_sim.cli", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
