"""Command line: ``python -m pipeline <command> ...`` (also installed as ``churnflow``).

Every stage the DAGs run is here, plus the two whole flows:

  generate        synthetic source data (database tables + daily event files); --live for a live business,
                  --business retail for a transactions-only shop (examples/retail)
  land            land a live business's days up to a date (what churn_landing_simulator does)
                  (both need churnflow-sim, the demo/test package in sim/: make install has it)
  ingest          one table's window from the database / landing files into Parquet
  validate        an ingested Parquet batch against its expectation suite (+ quarantine)
  features        point-in-time features as of one or more dates
  run-training    the churn_training flow end to end, in-process
  run-nightly     the churn_nightly flow end to end, in-process
  models          list | promote VERSION | rollback | migrate: the MLflow model registry
  experiments     compare the last training runs (MLflow: candidates, CV and holdout metrics, gate)
  train-table     train and evaluate on any labelled CSV customer table
  contract        the source data contract: tables, columns, types, nullability, values, what needs them
  catalogue       the feature catalogue as markdown
  results         migrate | tables: the results store (scores, monitoring tables, alerts)
  serve           the score API (read-only, over the results store): http://127.0.0.1:8001/docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.config import load_settings


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _known_table(table: str, *, features: bool = False) -> None:
    """A one-line error (exit 2) for a table name the contract does not know."""
    from pipeline.errors import DataError
    from pipeline.tables import LAKE_TABLE_NAMES

    known = [*LAKE_TABLE_NAMES, *(["features"] if features else [])]
    if table not in known:
        raise DataError(f"unknown table {table!r}: the tables are {', '.join(known)}")


def _cmd_ingest(args: argparse.Namespace) -> int:
    import datetime as dt

    from pipeline.errors import DataError
    from pipeline.ingestion.extract import IngestionError, ingest_events, ingest_table

    _known_table(args.table)
    settings = load_settings()
    out = Path(args.out)
    try:
        start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    except ValueError as exc:
        raise DataError(f"--start/--end: {exc} (dates as YYYY-MM-DD)") from exc
    try:
        if args.table == "events":
            result = ingest_events(settings, start, end, out)
        else:
            result = ingest_table(settings, args.table, start, end, out)
    except (IngestionError, ValueError) as exc:  # a source that cannot be read, an empty window
        raise DataError(str(exc).splitlines()[0]) from exc
    _print(result.to_dict())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.errors import DataError
    from pipeline.ingestion.validate import DataValidationError, validate_and_quarantine

    _known_table(args.table, features=True)
    settings = load_settings()
    try:
        df = pd.read_parquet(args.input)
    except (OSError, ValueError) as exc:
        raise DataError(f"--input {args.input} cannot be read as Parquet ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    try:
        result = validate_and_quarantine(df, args.table, settings, run_key=args.run_key)
    except DataValidationError as exc:
        broken = "; ".join(f.describe(len(df)) for f in exc.result.failures[:3])
        more = f" (+{len(exc.result.failures) - 3} more)" if len(exc.result.failures) > 3 else ""
        where = f"; rejected rows in {exc.quarantined}" if exc.quarantined else ""
        raise DataError(f"validation of {args.table} FAILED: {broken}{more}{where}") from exc
    print(f"validation passed: {result.rows} rows, {len(result.rejected)} quarantined")
    return 0


def _sim(module: str) -> Any:
    """A module of churnflow-sim, the demo/test package (not a dependency of churnflow)."""
    import importlib

    try:
        return importlib.import_module(f"churnflow_sim.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("churnflow_sim", f"churnflow_sim.{module}"):
            raise
        raise SystemExit("this command needs churnflow-sim, the generator/simulator package churnflow's demo and "
                         "tests use: pip install -e sim/ (from a churnflow checkout; make install does it)") from exc


def _cmd_generate(args: argparse.Namespace) -> int:
    return int(_sim("cli").main(args) or 0)


def _cmd_land(args: argparse.Namespace) -> int:
    import datetime as dt

    _print(_sim("simulator").land(load_settings(), args.until or dt.datetime.now(dt.UTC).date()))
    return 0


def _cmd_migrate_lake(args: argparse.Namespace) -> int:
    from pipeline import storage
    from pipeline.ingestion import lake

    settings = load_settings()
    if args.check:
        old = lake.legacy_files(settings)
        for table, files in old.items():
            print(f"  {table:<16} {len(files):>6,} files to rewrite (arrival order, or compacted a day at a time)")
        print(f"lake {storage.lake_root(settings)}: " + ("in customer order" if not old else
                                                         "to migrate: python -m pipeline migrate-lake"))
        return 0
    done = lake.migrate(settings)
    print(f"lake {storage.lake_root(settings)}: " + (", ".join(f"{t} {n} files" for t, n in done.items()) + " rewritten"
                                                     if done else "in customer order already"))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from pipeline import results
    from pipeline.ingestion.source import masked

    settings = load_settings()
    engine = results.results_engine(settings)  # migrates: a new store is created at the current version
    with engine.connect() as conn:
        version = results.schema_version(conn)
        print(f"results store {masked(settings.results_url)}: schema version {version}")
        if args.action == "tables":
            for name, table in results.TABLES.items():
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                print(f"  {name:<18} {count:>12,} rows")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.api import serve

    serve(load_settings(), args.host, args.port, access_log=not args.no_access_log)
    return 0


def _cmd_run_training(args: argparse.Namespace) -> int:
    from pipeline.flows import run_training

    out = run_training(load_settings(), args.date, snapshots=args.snapshots)
    _print(out["train"])
    return 0


def _cmd_run_nightly(args: argparse.Namespace) -> int:
    from pipeline.flows import run_nightly
    from pipeline.monitoring.notify import SmtpSettings

    settings = load_settings()
    recipients = [r for r in (args.recipients or "").split(",") if r] or settings.recipients
    out = run_nightly(
        settings, args.date, lookback_days=args.lookback_days, send=args.send_email,
        smtp=SmtpSettings(host=settings.smtp_host, port=settings.smtp_port), recipients=recipients,
        reports=not args.no_reports,
    )
    _print({k: out[k] for k in ("run", "scores", "drift", "report", "published", "email") if k in out})
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline.model import migrate, registry

    settings = load_settings()
    name = args.name or settings.model_name
    if args.action == "list":
        versions = registry.list_versions(settings, name)
        if not versions:
            print(f"no versions of registered model {name!r} in {registry.where(settings)}")
            return 0
        print(f"registered model {name!r} in {registry.where(settings)} (* = champion)")
        for v in versions:
            mark = "*" if registry.ALIAS in v.aliases else " "
            gate = {"true": "served", "false": "not served"}.get(v.tags.get(registry.TAG_GATE_SERVED, ""), "")
            print(f"{mark} {v.version:<5} trained as of {v.tags.get('churnflow.training_date', '?'):<10}  "
                  f"{v.tags.get('churnflow.candidate', '?'):<14} roc_auc={v.float_tag('churnflow.roc_auc'):.4f}  "
                  f"pr_auc={v.float_tag('churnflow.pr_auc'):.4f}  threshold={v.float_tag('churnflow.threshold'):.3f}  "
                  f"holdout={v.tags.get('churnflow.holdout', '')}  {gate}  "
                  f"{v.tags.get('churnflow.migrated_from', '') and 'migrated from ' + v.tags['churnflow.migrated_from']}"
                  .rstrip())
        for move in registry.history(settings)["log"][-5:] if name == settings.model_name else []:
            print(f"  {move['at']}  champion {move.get('previous') or 'none'} -> {move['version']}: {move['reason']}")
    elif args.action == "promote":
        if not args.version:
            print("models promote needs a VERSION (e.g. v3)", file=sys.stderr)
            return 2
        registry.promote(settings, args.version, args.reason or "manual promotion")
        print(f"champion: {registry.label(registry.parse_version(args.version))}")
    elif args.action == "rollback":
        print(f"champion: {registry.rollback(settings, args.reason or 'manual rollback').version}")
    else:
        pairs = migrate.migrate_file_registry(settings)
        for old, new in pairs:
            print(f"{old} -> {new}")
        champ = registry.champion_number(settings)
        print(f"migrated {len(pairs)} version(s) into MLflow ({registry.where(settings)}); champion: "
              f"{registry.label(champ) if champ else 'none'}; the old folder is {settings.models_dir}.pre-mlflow")
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.model.tracking import compare

    settings = load_settings()
    table = compare(settings, args.last)
    if table.empty:
        print(f"no training runs logged in experiment {settings.model_name!r} ({settings.tracking_uri}): "
              "run training first")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4f}".format):
        print(table.drop(columns="started"))
    return 0


def _cmd_train_table(args: argparse.Namespace) -> int:
    from pipeline.errors import TrainingError
    from pipeline.model.steps import train_table_step

    drop = [c.strip() for c in (args.drop or "").split(",") if c.strip()]
    try:
        result = train_table_step(load_settings(), Path(args.csv), args.label, id_column=args.id, drop=drop,
                                  positive=args.positive)
    except TrainingError as exc:
        print(f"train-table: {exc}", file=sys.stderr)
        return 2
    m = result.metrics
    print(f"model {result.version} ({m['model']}): held-out ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
          f"base rate {m['base_rate']:.4f}  ECE {m['ece']:.4f}\n"
          f"threshold {m['threshold']:.4f} (expected value {m['expected_value']:,.0f}); "
          f"F1-optimal {m['f1_optimal']['threshold']:.4f} (value {m['f1_optimal']['expected_value']:,.0f})\n"
          f"registered as {result.name} {result.version} (MLflow run {result.run_id}); never the pipeline's champion\n"
          f"model card: {result.path / 'churnflow' / 'model_card.html'}")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from pipeline.errors import DataError
    from pipeline.monitoring import dashboard

    settings = load_settings()
    if args.rebuild:
        out = dashboard.rebuild(settings)
    elif args.date:
        try:
            out = dashboard.add_night(settings, args.date)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
    else:
        raise DataError("say which night (--date YYYY-MM-DD) or --rebuild (every night in the results store)")
    _print(out)
    return 0


def _cmd_contract(args: argparse.Namespace) -> int:
    from pipeline.ingestion.contract import reference_markdown

    print(reference_markdown())
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    """Compute features for ``args.as_of`` with the configured settings into ``args.out``."""
    from pipeline.features.build import write_features

    print(write_features(load_settings(), args.as_of, args.out))
    return 0


def _cmd_catalogue(args: argparse.Namespace) -> int:
    from pipeline.features.catalogue import feature_catalogue_markdown
    from pipeline.features.selection import active_groups

    print(feature_catalogue_markdown())
    settings = load_settings()
    active, left_out = active_groups(settings)
    print(f"feature groups a training run on {settings.data_dir} would use: {', '.join(active) or 'none'}"
          + "".join(f"\n  left out: {g}: {why}" for g, why in left_out.items()), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="generate synthetic source data (needs churnflow-sim)")
    try:
        from churnflow_sim import cli

        cli.add_arguments(p)
    except ModuleNotFoundError:  # said when run (_sim, its arguments unparsed), so the rest of the CLI works
        p.set_defaults(without_sim=True)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("land", help="land a live business's pending days before --until")
    p.add_argument("--until", default=None, help="first day not landed (default: today, UTC)")
    p.set_defaults(func=_cmd_land)

    p = sub.add_parser("ingest", help="extract one table's window into Parquet")
    p.add_argument("--table", required=True, help="a source table name or 'events'")
    p.add_argument("--start", required=True, help="window start date (inclusive)")
    p.add_argument("--end", required=True, help="window end date (exclusive)")
    p.add_argument("--out", required=True, help="output Parquet path")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("validate", help="validate a Parquet batch; bad rows go to quarantine")
    p.add_argument("--table", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--run-key", default="cli", help="names the quarantine file")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("features", help="point-in-time features as of dates")
    p.add_argument("--as-of", dest="as_of", action="append", required=True, type=dt.date.fromisoformat,
                   help="snapshot date YYYY-MM-DD (repeat for several)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("run-training", help="the churn_training flow, in-process")
    p.add_argument("--date", required=True, help="logical date (training data strictly before it)")
    p.add_argument("--snapshots", type=int, default=None, help="month-start snapshots to train on")
    p.set_defaults(func=_cmd_run_training)

    p = sub.add_parser("run-nightly", help="the churn_nightly flow, in-process")
    p.add_argument("--date", required=True, help="logical date D: scores as of D")
    p.add_argument("--lookback-days", type=int, default=1, help="days of data to ingest before D")
    p.add_argument("--send-email", action="store_true", help="e-mail the report (smtp_host/smtp_port)")
    p.add_argument("--recipients", default="", help="comma-separated, overrides config")
    p.add_argument("--no-reports", action="store_true",
                   help="a backfill: every results table, but no drift report, dashboard snapshot or e-mail")
    p.set_defaults(func=_cmd_run_nightly)

    p = sub.add_parser("models", help="the model registry (MLflow): list, promote, rollback, migrate")
    p.add_argument("action", choices=["list", "promote", "rollback", "migrate"],
                   help="migrate: import churnflow's earlier file registry (data/models/) into MLflow")
    p.add_argument("version", nargs="?", help="promote: the version to serve (v3 or 3)")
    p.add_argument("--reason", default="", help="recorded with the champion's move")
    p.add_argument("--name", default="", help="registered model (default: model_name; train-table: NAME-table)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("experiments", help="compare the last training runs")
    p.add_argument("--last", type=int, default=5, help="how many runs")
    p.set_defaults(func=_cmd_experiments)

    p = sub.add_parser("train-table", help="train and evaluate on any labelled CSV or Parquet table")
    p.add_argument("--csv", "--file", dest="csv", required=True,
                   help="CSV (comma-separated, with a header) or Parquet file, one row per customer")
    p.add_argument("--label", required=True, help="label column: 0/1 (1 = churned), or text with --positive")
    p.add_argument("--positive", default=None, help="the label value that means churn (e.g. Yes), for a text label")
    p.add_argument("--id", default=None, help="customer id column (not a feature)")
    p.add_argument("--drop", default="", help="comma-separated columns to leave out")
    p.set_defaults(func=_cmd_train_table)

    p = sub.add_parser("contract", help="print the source data contract: every table and column (markdown)")
    p.set_defaults(func=_cmd_contract)

    p = sub.add_parser("catalogue", help="print the feature catalogue (markdown)")
    p.set_defaults(func=_cmd_catalogue)

    p = sub.add_parser("dashboard", help="add a night's snapshot to the Evidently dashboard (make dashboard shows it)")
    p.add_argument("--date", help="the night (YYYY-MM-DD), from what it published in the results store")
    p.add_argument("--rebuild", action="store_true", help="reset the panels and add every night in the results store")
    p.set_defaults(func=_cmd_dashboard)

    p = sub.add_parser("migrate-lake", help="rewrite a lake written before the customer order (once; with progress)")
    p.add_argument("--check", action="store_true", help="only say which tables still hold files in arrival order")
    p.set_defaults(func=_cmd_migrate_lake)

    p = sub.add_parser("results", help="the results store: migrate it, or count its rows")
    p.add_argument("action", choices=["migrate", "tables"])
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser("serve", help="the score API over the results store, read-only (api_host, api_port, api_token)")
    p.add_argument("--host", default=None, help="listen on this address (default: api_host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen on this port (default: api_port, 8001)")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "without_sim", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "evidently", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from pipeline.errors import DataError
    from pipeline.storage import StorageError

    try:
        return int(args.func(args) or 0)
    except DataError as exc:  # bad input or configuration: one message, no traceback
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, StorageError) as exc:
        if not str(exc).startswith("config "):
            raise
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
