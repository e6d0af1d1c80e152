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
* ``performance_estimates`` - per night: the champion's performance estimated before the labels mature,
  with its band, and the realised metrics once they did (:mod:`pipeline.monitoring.estimate`);
* ``retraining_requests`` - per night: whether retraining was requested, on which snapshots, or why not
  (:mod:`pipeline.monitoring.retraining`);
* ``published_nights`` - one row per night whose scores are published (counts, model, digest: :func:`publish_night`);
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
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
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
    # the customer's place in the night, 1 = the highest churn probability (ties by customer id): the
    # campaign is ranks 1..campaign of published_nights (pipeline.model.score.campaign_list ranks the same)
    Column("rank", Integer),
    # the primary key (as_of, customer_id) finds a customer's score on a night (the score API, pipeline.api, looks
    # the latest published night up first, then the others: published_nights); an index by customer_id alone
    # made the publish 13 % (SQLite) to 41 % (PostgreSQL) slower (bench/bench_api.py at 50,000 customers).
    # A night's campaign in rank order: only its "high" rows are indexed (a few hundred a night)
    Index("ix_churn_scores_campaign", "as_of", "rank", sqlite_where=sa.text("risk_band = 'high'"),
          postgresql_where=sa.text("risk_band = 'high'")),
)
#: one row per published night, written in the same transaction as its churn_scores rows: a night is
#: here exactly when all its scores are (what the score API reads as "the latest night", and its ETag)
PUBLISHED_NIGHTS = sa.Table(
    "published_nights", METADATA,
    Column("as_of", DateTime, primary_key=True),
    *(Column(name, Integer, nullable=False) for name in ("rows", "campaign", "at_risk")),
    Column("model_version", String(64), nullable=False),
    # a digest of the night's ids, probabilities and model versions: changes when a rerun changes the scores
    Column("digest", String(32), nullable=False),
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
    # the model's holdout errors the detector was seeded with before its first night (0: none), their rate, why none
    ("seeded", Integer, True), ("seed_error_rate", Float, True), ("seed_note", Text, True),
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
RETRAINING_REQUESTS = sa.Table(
    "retraining_requests", METADATA,
    # one row per night: whether its alerts requested retraining, and why (pipeline.monitoring.retraining)
    Column("run_date", DateTime, primary_key=True),
    Column("model_version", String(64), nullable=False),
    Column("requested", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rule", String(64)),
    Column("change_date", Date),
    Column("snapshots", Text),
    Column("could_help_from", Date),
)
#: the performance_estimates metrics, each with its band's bounds (pipeline.monitoring.estimate.METRICS)
_ESTIMATED = ("roc_auc", "pr_auc", "precision_at_capacity")
PERFORMANCE_ESTIMATES = sa.Table(
    "performance_estimates", METADATA,
    # one row per night: the champion's performance estimated from its calibrated scores before their
    # labels mature, its band, the holdout baseline, the calibration check, and the realised metrics once
    # the night's labels matured (pipeline.monitoring.estimate)
    Column("run_date", DateTime, primary_key=True),
    Column("model_version", String(64), nullable=False),
    *(Column(name, Integer, nullable=False) for name in ("rows", "capacity")),
    *(Column(f"{m}{end}", Float) for m in _ESTIMATED for end in ("", "_lower", "_upper")),
    Column("confidence", Float),
    *(Column(name, Integer) for name in ("simulations", "sample_rows")),
    *(Column(name, Float) for name in ("baseline_roc_auc", "baseline_pr_auc", "calibration_gap")),
    Column("calibration_scored_on", Date),
    *(Column(name, Boolean, nullable=False) for name in ("reliable", "below")),
    Column("below_since", Date),
    *(Column(f"realised_{m}", Float) for m in _ESTIMATED),
    Column("realised_on", Date),
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

def _concept_seed_v6(conn: sa.Connection) -> None:
    """concept_drift's seed columns (a store created at v1 or v4 by this code has them already)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(CONCEPT.name)}
    for name, kind in (("seeded", "INTEGER"), ("seed_error_rate", "FLOAT"), ("seed_note", "TEXT")):
        if name not in have:  # names and types from this module, not values
            conn.execute(sa.text(f'ALTER TABLE "{CONCEPT.name}" ADD COLUMN "{name}" {kind}'))


def _retraining_requests_v7(conn: sa.Connection) -> None:
    """The nights' retraining decisions (a store created at v1 by this code has the table already)."""
    RETRAINING_REQUESTS.create(conn, checkfirst=True)


def _performance_estimates_v8(conn: sa.Connection) -> None:
    """The nights' estimated performance (a store created at v1 by this code has the table already)."""
    PERFORMANCE_ESTIMATES.create(conn, checkfirst=True)


def _published_nights_v9(conn: sa.Connection) -> None:
    """churn_scores.rank and its index for a night's campaign, and published_nights, filled from the
    nights already published (their digest from their counts: a rerun changes it)."""
    if "rank" not in {c["name"] for c in sa.inspect(conn).get_columns(SCORES.name)}:
        conn.execute(sa.text(f'ALTER TABLE "{SCORES.name}" ADD COLUMN "rank" INTEGER'))
    for index in SCORES.indexes:
        index.create(conn, checkfirst=True)
    PUBLISHED_NIGHTS.create(conn, checkfirst=True)
    s = SCORES.c
    counted = sa.select(s.as_of, sa.func.count(), sa.func.sum(sa.case((s.risk_band == "high", 1), else_=0)),
                        sa.func.sum(sa.case((s.risk_band.in_(("high", "medium")), 1), else_=0)),
                        sa.func.max(s.model_version)).group_by(s.as_of)
    for as_of, rows, campaign, at_risk, version in conn.execute(counted).all():
        conn.execute(PUBLISHED_NIGHTS.insert().values(as_of=as_of, rows=rows, campaign=campaign, at_risk=at_risk,
                                                      model_version=version, digest=f"v9-{rows}-{campaign}"))


MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "scores, drift, prediction drift, performance, fairness and alert tables", _create_v1),
    (2, "churn_scores.customer_id as text (string or integer ids, kept as given)", _text_customer_ids_v2),
    (3, "churn_scores.reason_1 .. reason_3: the top reasons of each score", _score_reasons_v3),
    (4, "concept_drift (the sequential detectors' state per model version and night) and "
        "feature_importance_drift (mean |SHAP| per feature vs the training reference)", _concept_drift_v4),
    (5, "challenger_scores (a challenger's shadow scores) and challenger_performance (champion vs challenger "
        "on the same matured labels)", _challenger_v5),
    (6, "concept_drift.seeded, seed_error_rate, seed_note: the holdout errors each detector was seeded with",
     _concept_seed_v6),
    (7, "retraining_requests (per night: retraining requested or not, the snapshots, the change, why)",
     _retraining_requests_v7),
    (8, "performance_estimates (per night: ROC-AUC, PR-AUC and precision at capacity estimated before the "
        "labels mature, with their band, the calibration check and the realised metrics)", _performance_estimates_v8),
    (9, "churn_scores.rank with an index of a night's campaign, and published_nights (one row per "
        "night whose scores are published, written with them: the score API's latest night)", _published_nights_v9),
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


def _with_nulls(out: list[Any], missing: np.ndarray) -> list[Any]:
    for i in np.flatnonzero(missing):
        out[i] = None
    return out


def _stamps(values: pd.Series, convert: Callable[[dt.datetime], Any]) -> list[Any]:
    """``values`` as timestamps, each distinct one converted once (a night's rows share their
    ``as_of``); NaT as NULL."""
    codes, distinct = pd.factorize(pd.to_datetime(values))
    table = np.array([*(convert(v) for v in distinct.to_pydatetime()), None], dtype=object)
    return table[codes].tolist()  # code -1 (NaT): the None at the end


def _python_values(column: sa.Column, values: pd.Series) -> list[Any]:
    """``values`` as the Python objects the column's type binds (NaN/NaT as NULL)."""
    kind = column.type
    if isinstance(kind, DateTime):
        return _stamps(values, lambda v: v)
    if isinstance(kind, Date):
        return _stamps(values, lambda v: v.date())
    if isinstance(kind, Boolean):
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v) for v in values]
    if isinstance(kind, Integer):  # BigInteger too
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":  # no missing values: at once
            return list(values.to_numpy().tolist())
        return [None if pd.isna(v) else int(v) for v in values]
    if isinstance(kind, LargeBinary):
        return [None if v is None else bytes(v) for v in values]
    if isinstance(kind, Float):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        return _with_nulls(floats.tolist(), np.isnan(floats))
    return [v if type(v) is str else None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in values.to_numpy(dtype=object)]


def _check_columns(table: sa.Table, df: pd.DataFrame) -> None:
    unknown = [c for c in df.columns if c not in table.c]
    if unknown:
        raise ValueError(f"results table {table.name} has no column(s) {unknown}: add them with a migration "
                         "in pipeline/results.py (MIGRATIONS)")


def records(table: sa.Table, df: pd.DataFrame) -> list[dict[str, Any]]:
    """``df``'s rows as insert parameters for ``table``; a column ``table`` lacks is an error
    naming both (a new result field needs a migration, not a silently altered table)."""
    _check_columns(table, df)
    columns = {name: _python_values(table.c[name], df[name]) for name in df.columns}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)] if len(df) else []


def _bound(values: list[Any], process: Callable[[Any], Any] | None, *, distinct: bool) -> list[Any]:
    """``values`` through the dialect's bind ``process`` of their column; ``distinct``: each
    distinct value once (timestamps: a night's rows share one)."""
    if process is None:
        return values
    if not distinct:
        return [process(v) for v in values]
    memo: dict[Any, Any] = {}
    out = []
    for v in values:
        try:
            out.append(memo[v])
        except KeyError:
            out.append(memo.setdefault(v, process(v)))
        except TypeError:  # unhashable
            out.append(process(v))
    return out


def insert_frame(conn: sa.Connection, table: sa.Table, df: pd.DataFrame, *, batch_rows: int = 50_000) -> None:
    """Insert ``df``'s rows into ``table`` in batches of ``batch_rows`` (a column ``table`` lacks
    is an error naming both). On SQLite the rows go to the driver's ``executemany`` as tuples,
    bound by the columns' own types: the same rows as ``conn.execute(table.insert(), records)``
    without SQLAlchemy's per-row work, which cost more than the writes (a million rows: ~10 s);
    other stores take the records through SQLAlchemy (its batched multi-row inserts)."""
    _check_columns(table, df)
    if not len(df):
        return
    defaults = [c.name for c in table.c if c.default is not None and c.name not in df.columns]
    if conn.dialect.name != "sqlite" or conn.dialect.paramstyle != "qmark" or defaults:
        for start in range(0, len(df), batch_rows):
            conn.execute(table.insert(), records(table, df.iloc[start:start + batch_rows]))
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(df.columns))
    order = list(compiled.positiontup or [])
    if sorted(order) != sorted(df.columns):
        raise ValueError(f"results table {table.name}: cannot bind the columns {list(df.columns)} (got {order})")
    processors = {name: table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for name in order}
    for start in range(0, len(df), batch_rows):
        part = df.iloc[start:start + batch_rows]
        columns = [_bound(_python_values(table.c[name], part[name]), processors[name],
                          distinct=isinstance(table.c[name].type, (DateTime, Date))) for name in order]
        conn.exec_driver_sql(str(compiled), list(zip(*columns, strict=True)))


def replace_rows(settings: Settings, table: sa.Table, df: pd.DataFrame, key_column: str, key_value: object,
                 *, batch_rows: int = 50_000) -> int:
    """Replace the rows of ``table`` whose ``key_column`` equals ``key_value`` with ``df``.

    Delete and insert run in one transaction: a rerun of the same key replaces its rows and a
    failure leaves the previous rows in place.
    """
    with results_engine(settings).begin() as conn:
        conn.execute(sa.delete(table).where(table.c[key_column] == key_value))
        insert_frame(conn, table, df, batch_rows=batch_rows)  # checks the columns: a bad frame rolls back the delete
    return len(df)


def publish_night(settings: Settings, scores: pd.DataFrame, day: dt.date | str, *, batch_rows: int = 50_000) -> int:
    """Night ``day``'s scores (with their ``rank``) become its ``churn_scores`` rows and its
    ``published_nights`` row, in one transaction: a reader of the store sees the previous set of
    the night or the new one, never a mix, and a night is in ``published_nights`` exactly when all
    its scores are. A rerun of the night replaces both."""
    key = night(day)
    bands = scores["risk_band"].to_numpy()
    digest = hashlib.sha256(scores["churn_probability"].to_numpy(dtype="float64").tobytes())
    digest.update("\x1f".join(scores["customer_id"].astype(str)).encode())
    digest.update("\x1f".join(pd.unique(scores["model_version"].astype(str))).encode())
    versions = scores["model_version"].astype(str)
    summary = {"as_of": key, "rows": len(scores), "campaign": int((bands == "high").sum()),
               "at_risk": int(np.isin(bands, ("high", "medium")).sum()),
               "model_version": versions.mode().iloc[0] if len(versions) else "", "digest": digest.hexdigest()[:32]}
    with results_engine(settings).begin() as conn:
        conn.execute(sa.delete(PUBLISHED_NIGHTS).where(PUBLISHED_NIGHTS.c.as_of == key))
        conn.execute(sa.delete(SCORES).where(SCORES.c.as_of == key))
        insert_frame(conn, SCORES, scores, batch_rows=batch_rows)
        conn.execute(PUBLISHED_NIGHTS.insert().values(**summary))
    return len(scores)


def read_only_engine(settings: Settings, url: str | None = None) -> sa.Engine:
    """An engine on the results store (or ``url``: a read-only role's) that cannot write, for
    its readers (the score API): SQLite opened ``mode=ro`` with ``query_only``, PostgreSQL
    sessions ``default_transaction_read_only`` and read-only transactions. Each use of a
    connection is one read transaction (SQLite: an explicit ``BEGIN``; PostgreSQL: REPEATABLE
    READ), so what one request reads comes from one state of the store. Never migrates: a store
    older than this code is a DataError saying to run ``python -m pipeline results migrate``."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    from pipeline.ingestion.source import masked

    url = url or settings.results_url
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DataError(f"config {_setting(settings)}: {masked(url)!r} is not an SQLAlchemy URL") from exc
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise DataError(f"config {_setting(settings)}: the results store {path or '(no file)'} does not exist "
                            "(it is opened read-only and never created): publish a night first")

        def connect() -> sqlite3.Connection:
            # autocommit at the driver (isolation_level=None): the BEGIN below makes each use one read transaction;
            # a publish holds the write lock for its commit: wait for it rather than fail
            conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None, timeout=60)
            conn.execute("PRAGMA query_only = ON")
            return conn

        engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.QueuePool, pool_size=8,
                                  max_overflow=8)

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")
    else:
        try:
            engine = sa.create_engine(url, pool_pre_ping=True, isolation_level="REPEATABLE READ",
                                      connect_args={"options": "-c default_transaction_read_only=on"},
                                      execution_options={"postgresql_readonly": True})
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataError(f"config {_setting(settings)}: cannot use {masked(url)!r}: {exc}") from exc
    try:
        with engine.connect() as conn:
            version = schema_version(conn)
    except sa.exc.OperationalError as exc:
        raise DataError(f"config {_setting(settings)}: cannot open the results store {masked(url)}: "
                        f"{str(exc).splitlines()[0]}") from exc
    if version != SCHEMA_VERSION:
        raise DataError(f"results store {masked(url)} is at schema version {version}, this churnflow reads "
                        f"{SCHEMA_VERSION}: " + ("upgrade churnflow" if version > SCHEMA_VERSION else
                                                 "run python -m pipeline results migrate (or publish a night)"))
    return engine


def night(day: dt.date | str) -> dt.datetime:
    """The ``run_date`` / ``as_of`` key of a night (midnight of the day)."""
    from pipeline.artifacts import as_date

    return dt.datetime.combine(as_date(day), dt.time())


def read(settings: Settings, which: sa.Table | str, since: dt.date | None = None, until: dt.date | None = None,
         *, column: str | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of a results table (or its name) with ``column`` (default: ``run_date``, ``as_of``
    for the scores and a table without ``run_date``) in ``[since, until]``, oldest first, in the table's declared column order
    (an empty frame with those columns when there are none); ``columns``: only those (a night's
    million scores are read in a tenth of the time without their reasons)."""
    table = which if isinstance(which, sa.Table) else _named(which)
    key = table.c[column or ("run_date" if "run_date" in table.c and table is not SCORES else "as_of")]
    unknown = [c for c in columns or () if c not in table.c]
    if unknown:
        raise ValueError(f"results table {table.name} has no column(s) {unknown}")
    query = sa.select(*(table.c[c] for c in columns)) if columns else sa.select(table)
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
