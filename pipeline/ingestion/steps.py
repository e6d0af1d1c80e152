"""The ingestion steps the DAGs and the command line run (load, call, save; counts returned
for XCom)."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.context import TRAINING_DAG, RunContext
from pipeline.ingestion import lake
from pipeline.ingestion.batch import ingest_batch
from pipeline.ingestion.extract import window_for
from pipeline.ingestion.reconcile import reextract
from pipeline.tables import LAKE_TABLE_NAMES

log = logging.getLogger(__name__)


def ingest_step(ctx: RunContext, table: str, *, known_customers: Any = None) -> dict[str, Any]:
    """One table's window for this run (:func:`~pipeline.ingestion.extract.window_for`) as one
    validated batch (:func:`~pipeline.ingestion.batch.ingest_batch`). A training run's database
    table: the days that changed since the last training run, or every day
    (``training_reextract``: :func:`~pipeline.ingestion.reconcile.reextract`; its output's
    ``reextract`` says what was read and why)."""
    if ctx.dag_id == TRAINING_DAG and table != "events":
        return reextract(ctx.settings, table, ctx.day, ctx.key, known_customers=known_customers)
    start, end = window_for(ctx.settings, table, ctx.day, None if ctx.dag_id == TRAINING_DAG else ctx.window)
    return ingest_batch(ctx.settings, table, start, end, ctx.key, known_customers=known_customers)


def ingest_all_step(ctx: RunContext) -> list[dict[str, Any]]:
    """:func:`ingest_step` for every declared lake input, in one process (Great Expectations is
    imported once, not once per table).

    Every table is tried, so one error lists every table whose batch failed (each
    quarantine file is written); returns the per-table validation summaries.
    """
    from pipeline.artifacts import check_writable
    from pipeline.errors import DataError

    settings = ctx.settings
    check_writable(settings)
    results, failed = [], []
    known = None  # the customer ids, read once the customers batch is in the lake (it comes first)
    declared = settings.source_table_names
    skipped = [t for t in LAKE_TABLE_NAMES if t not in declared]
    if skipped:
        log.info("ingest: %s not declared in source_tables: not ingested", ", ".join(skipped))
    for table in (t for t in LAKE_TABLE_NAMES if t in declared):
        if table != "customers" and known is None:
            known = lake.customer_ids(settings)
        try:
            results.append(ingest_step(ctx, table, known_customers=known))
        except DataError as exc:
            log.error("%s", exc)
            failed.append((table, exc))
    if failed:
        if len(failed) == 1:
            raise failed[0][1]
        raise DataError(f"{len(failed)} of {len(results) + len(failed)} input batches failed validation "
                        f"({', '.join(t for t, _ in failed)}):\n" + "\n".join(str(e) for _, e in failed))
    log.info("ingested %s: %d rows, %d quarantined", ctx.day,
             sum(r["rows"] for r in results), sum(r["rejected"] for r in results))
    return results
