"""The results store: every table churnflow *writes*, apart from the customer database it reads.

``results_db_url`` (default: SQLite at ``<data_dir>/results.db``; PostgreSQL by URL) holds:

* ``churn_scores`` - one row per customer per scored night (``as_of``);
* ``drift_metrics`` - one row per feature per night (method, statistic, threshold, drifted, PSI);
* ``prediction_drift`` - a night's score distribution vs the champion's reference and recent nights;
* ``model_performance`` - the scores of night ``D - horizon`` against what happened since;
* ``fairness_metrics`` - per segment and group: positive-rate ratio (80% rule) and TPR gap;
* ``concept_drift`` - per night, model version and detector: the sequential detectors over the
  matured errors (their pickled state, what they saw, what they found: :mod:`pipeline.monitoring.concept`);
* ``feature_importance_drift`` - per night and feature: mean |SHAP| tonight vs the training reference;
* ``challenger_scores`` - per customer per night: the challenger's shadow scores (never the campaign);
* ``challenger_performance`` - per night and role: champion and challenger on the same matured labels;
* ``alerts`` - the alert rules' findings and what the analysts were told (see :mod:`pipeline.monitoring.alerts`);
* ``schema_version`` - the migrations applied (:data:`MIGRATIONS`).

The tables are declared here (:data:`METADATA`), not inferred from DataFrames: a write whose
frame has a column the table lacks fails naming both, instead of altering a table by accident.
:func:`results_engine` brings a store up to :data:`SCHEMA_VERSION` (creating it on first use)
once per process; ``python -m pipeline results migrate`` does the same by hand.
A night's rows are replaced as a whole (:func:`replace_rows`): a rerun of a night leaves one
set of rows, and a failed write leaves the previous set.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Boolean, Column, Date, DateTime, Float, Index, Integer, LargeBinary, String, Text

from pipeline.config import Settings
from pipeline.errors import DataError

log = logging.getLogger(__name__)

METADATA = sa.MetaData()

SCORES = sa.Table(
    "churn_scores", METADATA,
    Column("as_of", DateTime, primary_key=True),
    # the business's own ids, integers or text, kept as given (as text: 42 is '42')
    Column("customer_id", String(128), primary_key=True),
    Column("churn_probability", Float, nullable=False),
    Column("risk_band", String(16), nullable=False),
    Column("model_version", String(64), nullable=False),
    # the top reasons of the score (pipeline.model.explain), as an analyst reads them
    Column("reason_1", Text),
    Column("reason_2", Text),
    Column("reason_3", Text),
)
DRIFT = sa.Table(
    "drift_metrics", METADATA,
    Column("run_date", DateTime, primary_key=True),
    Column("feature", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("method", String(64), nullable=False),
    Column("statistic", Float),
    Column("threshold", Float),
    Column("drifted", Boolean, nullable=False),
    Column("psi", Float),
    Column("model_version", String(64), nullable=False),
)
PREDICTION = sa.Table(
    "prediction_drift", METADATA,
    Column("run_date", DateTime, primary_key=True),
    Column("model_version", String(64), nullable=False),
    Column("mean_score", Float),
    Column("high_risk_share", Float),
    Column("reference_mean_score", Float),
    Column("reference_high_risk_share", Float),
    Column("psi_vs_reference", Float),
    Column("baseline_high_risk_share", Float),
    Column("baseline_nights", Integer, nullable=False),
)
PERFORMANCE = sa.Table(
    "model_performance", METADATA,
    Column("run_date", DateTime, primary_key=True),
    Column("scored_on", Date, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("positives", Integer, nullable=False),
    Column("base_rate", Float),
    Column("roc_auc", Float),
    Column("pr_auc", Float),
    Column("precision", Float),
    Column("recall", Float),
    Column("threshold", Float),
    Column("champion_roc_auc", Float),
    Column("champion_pr_auc", Float),
    Column("concept_drift", Boolean, nullable=False),
)
FAIRNESS = sa.Table(
    "fairness_metrics", METADATA,
    Column("run_date", DateTime, primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("group", String(128), primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("positive_rate", Float),
    Column("positive_rate_ratio", Float),
    Column("expected_positives_at_top", Float),
    Column("tpr", Float),
    Column("tpr_gap", Float),
    Column("reference_ratio", Float),
)
ALERTS = sa.Table(
    "alerts", METADATA,
    Column("run_date", DateTime, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("alert_group", String(128), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Index("ix_alerts_key", "rule", "alert_group", "model_version", "run_date"),
)
#: the concept_drift columns after its key, (name, type, nullable): where the detector is, what it
#: found tonight (the prediction nights of its reference, of the change and the last fed), and the
#: detector as the night left it (pickled) with its SHA-256, which a replay reproduces
_CONCEPT_COLUMNS = (
    ("scored_on", Date, False), ("error", String(32), False), ("fed", Integer, False), ("seen", Integer, False),
    ("in_window", Integer, False), ("error_rate", Float, True), ("night_error_rate", Float, True),
    ("detections", Integer, False), ("detected", Boolean, False), ("rate_before", Float, True),
    ("rate_after", Float, True), ("window_start", Date, True), ("change_at", Date, True), ("window_end", Date, True),
    ("state", LargeBinary, False), ("state_sha256", String(64), False),
)
CONCEPT = sa.Table(
    "concept_drift", METADATA,
    # one row per night, model version and detector (pipeline.monitoring.concept)
    Column("run_date", DateTime, primary_key=True),
    *(Column(name, String(64), primary_key=True) for name in ("model_version", "detector")),
    *(Column(name, kind, nullable=nullable) for name, kind, nullable in _CONCEPT_COLUMNS),
)
IMPORTANCE = sa.Table(
    "feature_importance_drift", METADATA,
    # per night and feature: mean |SHAP| tonight vs on the model's training reference
    *(Column(name, kind, primary_key=True) for name, kind in (("run_date", DateTime), ("feature", String(128)))),
    *(Column(name, Float) for name in ("reference_mean_abs_shap", "mean_abs_shap", "change", "ratio")),
    *(Column(name, Integer, nullable=False) for name in ("reference_rank", "rank")),
    Column("model_version", String(64), nullable=False),
)
CHALLENGER_SCORES = sa.Table(
    "challenger_scores", METADATA,
    # the challenger's shadow scores of a night (never the campaign: churn_scores is the champion's)
    *(Column(name, kind, primary_key=True) for name, kind in (("as_of", DateTime), ("customer_id", String(128)))),
    Column("churn_probability", Float, nullable=False),
    # the challenger, and the champion it was scored beside
    *(Column(name, String(64), nullable=False) for name in ("model_version", "champion_version")),
)
#: the challenger_performance columns after its key: model_performance's matured-label metrics
_COMPARED_COLUMNS = (("rows", Integer, False), ("positives", Integer, False), ("base_rate", Float, True),
                     ("roc_auc", Float, True), ("pr_auc", Float, True), ("precision", Float, True),
                     ("recall", Float, True), ("threshold", Float, True))
CHALLENGER_PERFORMANCE = sa.Table(
    "challenger_performance", METADATA,
    # per night and role (champion, challenger): both models' scores of the same matured night, on the
    # same customers; beats_champion on the challenger's row (pipeline.monitoring.challenger)
    *(Column(name, kind, primary_key=True) for name, kind in (("run_date", DateTime), ("role", String(16)))),
    Column("scored_on", Date, nullable=False),
    Column("model_version", String(64), nullable=False),
    *(Column(name, kind, nullable=nullable) for name, kind, nullable in _COMPARED_COLUMNS),
    Column("beats_champion", Boolean),
)
SCHEMA_VERSION_TABLE = sa.Table(
    "schema_version", METADATA,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime, nullable=False),
    Column("description", Text, nullable=False),
)
#: name -> table, for every table the store owns (what ``results tables`` lists)
TABLES: dict[str, sa.Table] = {t.name: t for t in METADATA.sorted_tables if t is not SCHEMA_VERSION_TABLE}


def _create_v1(conn: sa.Connection) -> None:
    METADATA.create_all(conn, tables=list(TABLES.values()))


#: (version, description, step) in order; a new column or table is a new entry here, never an
#: edit of an applied one (a store at version N runs the steps after N, each in its transaction)
def _text_customer_ids_v2(conn: sa.Connection) -> None:
    """Customer ids as text (a business's ids may be strings). A store created at v1 by this code
    has the text column already; an older store had an integer column, and SQLite would turn a
    text id that looks like a number ('00123') into the number 123 in it: the table is rebuilt
    with the text column and its rows copied, the ids as their digits."""
    column = next(c for c in sa.inspect(conn).get_columns(SCORES.name) if c["name"] == "customer_id")
    if isinstance(column["type"], sa.String):
        return
    old = f"{SCORES.name}_v1"
    for index in sa.inspect(conn).get_indexes(SCORES.name):  # index names are the new table's too
        conn.execute(sa.text(f'DROP INDEX "{index["name"]}"'))  # names from the catalogue, not values
    conn.execute(sa.text(f'ALTER TABLE "{SCORES.name}" RENAME TO "{old}"'))
    if conn.dialect.name == "postgresql":  # the primary key's index keeps its name across a rename
        conn.execute(sa.text(f'ALTER TABLE "{old}" DROP CONSTRAINT IF EXISTS "{SCORES.name}_pkey"'))
    SCORES.create(conn)
    kept = [c["name"] for c in sa.inspect(conn).get_columns(old)]  # the columns the old table had
    names = ", ".join(f'"{c}"' for c in kept)
    picked = ", ".join(f'CAST("{c}" AS VARCHAR(128))' if c == "customer_id" else f'"{c}"' for c in kept)
    conn.execute(sa.text(f'INSERT INTO "{SCORES.name}" ({names}) SELECT {picked} FROM "{old}"'))
    conn.execute(sa.text(f'DROP TABLE "{old}"'))


def _score_reasons_v3(conn: sa.Connection) -> None:
    """The top three reasons of each score (a store rebuilt by v2 in this code has them)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(SCORES.name)}
    for name in ("reason_1", "reason_2", "reason_3"):
        if name not in have:  # names from this module, not values
            conn.execute(sa.text(f'ALTER TABLE "{SCORES.name}" ADD COLUMN "{name}" TEXT'))


def _concept_drift_v4(conn: sa.Connection) -> None:
    """The concept-drift monitoring tables (a store created at v1 by this code has them already)."""
    for table in V4_TABLES:
        table.create(conn, checkfirst=True)


#: the tables migration 4 adds
V4_TABLES = (CONCEPT, IMPORTANCE)


def _challenger_v5(conn: sa.Connection) -> None:
    """The challenger's tables (a store created at v1 by this code has them already)."""
    for table in V5_TABLES:
        table.create(conn, checkfirst=True)


#: the tables migration 5 adds
V5_TABLES = (CHALLENGER_SCORES, CHALLENGER_PERFORMANCE)

MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "scores, drift, prediction drift, performance, fairness and alert tables", _create_v1),
    (2, "churn_scores.customer_id as text (string or integer ids, kept as given)", _text_customer_ids_v2),
    (3, "churn_scores.reason_1 .. reason_3: the top reasons of each score", _score_reasons_v3),
    (4, "concept_drift (the sequential detectors' state per model version and night) and "
        "feature_importance_drift (mean |SHAP| per feature vs the training reference)", _concept_drift_v4),
    (5, "challenger_scores (a challenger's shadow scores) and challenger_performance (champion vs challenger "
        "on the same matured labels)", _challenger_v5),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _setting(settings: Settings) -> str:
    from pipeline.ingestion.source import url_setting

    return url_setting("results_db_url", settings.results_db_url, "results.db")


def schema_version(conn: sa.Connection) -> int:
    """The store's schema version (0: a new, empty store)."""
    if not sa.inspect(conn).has_table(SCHEMA_VERSION_TABLE.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(SCHEMA_VERSION_TABLE.c.version))).scalar() or 0)


def migrate(engine: sa.Engine) -> list[int]:
    """Apply the migrations the store lacks, each in its own transaction; return the versions
    applied (none when it is up to date). A store newer than this code is an error."""
    with engine.connect() as conn:
        current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise DataError(f"results store {engine.url.render_as_string(hide_password=True)} is at schema "
                        f"version {current}, newer than this churnflow ({SCHEMA_VERSION}): upgrade churnflow")
    applied = []
    for version, description, step in MIGRATIONS:
        if version <= current:
            continue
        with engine.begin() as conn:
            SCHEMA_VERSION_TABLE.create(conn, checkfirst=True)
            step(conn)
            conn.execute(SCHEMA_VERSION_TABLE.insert().values(
                version=version, applied_at=dt.datetime.now(dt.UTC).replace(tzinfo=None), description=description))
        log.info("results store: migrated to schema version %d (%s)", version, description)
        applied.append(version)
    return applied


@functools.lru_cache(maxsize=8)
def _migrated_engine(url: str) -> sa.Engine:
    from pipeline.ingestion.source import engine_for

    engine = engine_for(url)
    migrate(engine)
    return engine


def results_engine(settings: Settings) -> sa.Engine:
    """The engine of the results store, migrated to :data:`SCHEMA_VERSION` (once per process).
    A URL that does not parse or a server that cannot be reached is a DataError naming
    ``results_db_url``."""
    from pipeline.ingestion.source import masked

    url = settings.results_url
    try:
        sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DataError(f"config {_setting(settings)}: {masked(url)!r} is not an SQLAlchemy URL") from exc
    try:
        return _migrated_engine(url)
    except (sa.exc.OperationalError, sa.exc.ArgumentError, ImportError) as exc:
        raise DataError(f"config {_setting(settings)}: cannot open the results store {masked(url)}: "
                        f"{str(exc).splitlines()[0]}") from exc


def _python_values(column: sa.Column, values: pd.Series) -> list[Any]:
    """``values`` as the Python objects the column's type binds (NaN/NaT as NULL)."""
    kind = column.type
    if isinstance(kind, DateTime):
        stamps = pd.to_datetime(values)
        return [None if pd.isna(v) else v.to_pydatetime() for v in stamps]
    if isinstance(kind, Date):
        stamps = pd.to_datetime(values)
        return [None if pd.isna(v) else v.date() for v in stamps]
    if isinstance(kind, Boolean):
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v) for v in values]
    if isinstance(kind, Integer):  # BigInteger too
        return [None if pd.isna(v) else int(v) for v in values]
    if isinstance(kind, LargeBinary):
        return [None if v is None else bytes(v) for v in values]
    if isinstance(kind, Float):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        return [None if math.isnan(v) else float(v) for v in floats]
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]


def records(table: sa.Table, df: pd.DataFrame) -> list[dict[str, Any]]:
    """``df``'s rows as insert parameters for ``table``; a column ``table`` lacks is an error
    naming both (a new result field needs a migration, not a silently altered table)."""
    unknown = [c for c in df.columns if c not in table.c]
    if unknown:
        raise ValueError(f"results table {table.name} has no column(s) {unknown}: add them with a migration "
                         "in pipeline/results.py (MIGRATIONS)")
    columns = {name: _python_values(table.c[name], df[name]) for name in df.columns}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)] if len(df) else []


def replace_rows(settings: Settings, table: sa.Table, df: pd.DataFrame, key_column: str, key_value: object,
                 *, batch_rows: int = 50_000) -> int:
    """Replace the rows of ``table`` whose ``key_column`` equals ``key_value`` with ``df``.

    Delete and insert run in one transaction: a rerun of the same key replaces its rows and a
    failure leaves the previous rows in place.
    """
    with results_engine(settings).begin() as conn:
        conn.execute(sa.delete(table).where(table.c[key_column] == key_value))
        for start in range(0, len(df), batch_rows):
            conn.execute(table.insert(), records(table, df.iloc[start:start + batch_rows]))
    return len(df)


def night(day: dt.date | str) -> dt.datetime:
    """The ``run_date`` / ``as_of`` key of a night (midnight of the day)."""
    from pipeline.artifacts import as_date

    return dt.datetime.combine(as_date(day), dt.time())


def read(settings: Settings, which: sa.Table | str, since: dt.date | None = None, until: dt.date | None = None,
         *, column: str | None = None) -> pd.DataFrame:
    """Rows of a results table (or its name) with ``column`` (default: ``run_date``, ``as_of``
    for the scores and a table without ``run_date``) in ``[since, until]``, oldest first, in the table's declared column order
    (an empty frame with those columns when there are none)."""
    table = which if isinstance(which, sa.Table) else _named(which)
    key = table.c[column or ("run_date" if "run_date" in table.c and table is not SCORES else "as_of")]
    query = sa.select(table)
    if since is not None:
        query = query.where(key >= night(since))
    if until is not None:
        query = query.where(key <= night(until))
    with results_engine(settings).connect() as conn:
        df = pd.read_sql(query.order_by(key), conn)
    for c in table.c:
        if isinstance(c.type, DateTime) and c.name in df:
            df[c.name] = pd.to_datetime(df[c.name])
    return df


def _named(name: str) -> sa.Table:
    """The results table called ``name`` (a ValueError listing the known ones otherwise)."""
    if name not in TABLES:
        raise ValueError(f"no results table {name!r}; the store has {', '.join(TABLES)}")
    return TABLES[name]
