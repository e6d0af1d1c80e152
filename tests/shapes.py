"""The shape matrix (issue 32): a generated business transformed into the legal shapes of the
source contract, each mapped in exactly as docs/data-contract.md says (a ``sql_dir`` of
``ingest_<table>.sql`` files over the business's database, event files in the landing folder,
a ``churnflow.yaml``) and run through ``python -m pipeline run-training`` and ``run-nightly``.

Two generated bases, made once per session, hold the contract's tables in their plain form
(integer ids, text codes): a subscription business (``churnflow_sim.generate``: every table and
the event files; provided labels derived from its cancellations) and a membership service
(``churnflow_sim.memberships``: customers and subscription periods with ``end_date`` and
``auto_renew``, for non-renewal churn). A :class:`Shape` says how the business looks instead:
text ids with ``/``, ``+``, unicode and leading zeros, integer category codes, optional columns
absent or null, optional tables not declared, one plan, free plans, the churn definition, one
labelled snapshot, nobody due in the first snapshots. :func:`materialize` writes the shape's
data dir, SQL and config; :func:`run_shape` runs the two commands and returns what happened.

:func:`shapes` is the hypothesis strategy over every dimension; :data:`COVERING` lists shapes
in which each dimension's every value occurs at least once (the matrix ``.ci/run`` runs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml
from hypothesis import strategies as st

from pipeline.ingestion.contract import TABLES

#: the logical date of every shape's training and night (the bases end the day before)
RUN_DATE = "2025-07-01"
#: label dates a provided-labels business may give (month starts whose 30-day window closed by RUN_DATE)
LABEL_DATES = ("2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01")
#: a text id: leading zeros, a slash, a plus and a non-ASCII letter (printf over the integer id)
TEXT_ID = "printf('0%05d/ü+{tag}', {col})"
#: the optional tables a business may not have (customers is required; labels only with provided)
OPTIONAL_TABLES = ("subscriptions", "payments", "plan_changes", "support_tickets", "cancellations", "events")
#: what each churn definition needs: (table, column or None) - a shape without it must fail in one line
NEEDS = {"cancellation": ("cancellations", None), "inactivity": ("payments", None),
         "non_renewal": ("subscriptions", "end_date"), "provided": ("labels", None)}
#: the category vocabularies: columns that share one set of codes
VOCABULARY = {"subscriptions.plan": "plan", "plan_changes.old_plan": "plan", "plan_changes.new_plan": "plan"}

# cheap training: one candidate family, one draw, one time fold; every first model served
BASE_SETTINGS = {"search_iterations": 1, "cv_folds": 1, "training_snapshots": 4, "promotion_min_roc_auc": 0.0,
                 "concept_drift_detectors": "", "importance_sample_rows": 2000, "reference_sample_rows": 2000,
                 "drift_report_sample_rows": 500, "min_free_disk_mb": 0, "readiness_timeout_minutes": 0}


def optional_columns(table: str) -> tuple[str, ...]:
    """The contract's optional columns of ``table`` (not keys, not required)."""
    return tuple(c.name for c in TABLES[table].columns if not c.required)


def category_columns(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table].columns if c.kind == "category" and c.allowed is None)


def numeric_columns(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table].columns if not c.required and c.kind in ("number", "count"))


#: every optional column of every table, "table.column"
ALL_OPTIONAL = tuple(f"{t}.{c}" for t in (*OPTIONAL_TABLES, "customers") for c in optional_columns(t))
ALL_CATEGORIES = tuple(f"{t}.{c}" for t in TABLES for c in category_columns(t))
ALL_NUMERIC = tuple(f"{t}.{c}" for t in TABLES for c in numeric_columns(t))


@dataclass(frozen=True)
class Shape:
    """How a business's data looks. Defaults: the generator's subscription business as it is."""

    label_kind: str = "cancellation"
    #: customer (and every other) id: "int" or "text"
    ids: str = "int"
    #: category codes: "text" or "int" (the business's own integer codes)
    codes: str = "text"
    #: ("table.column", "absent" | "null") for optional columns that are not there as generated
    columns: tuple[tuple[str, str], ...] = ()
    #: optional tables the business does not have (not in source_tables)
    tables_absent: tuple[str, ...] = ()
    one_plan: bool = False
    zero_fee: bool = False
    #: provided labels: how many label dates (the latest of LABEL_DATES)
    label_dates: int = 3
    #: non_renewal: periods starting before 2025-03-15 have no end_date (nobody due in the first snapshots)
    nobody_due_early: bool = False
    #: the event files: "parquet" or "csv"
    event_format: str = "parquet"
    candidate: str = "logreg"
    #: the purchases feature group (RFM over payments) on as well
    purchases: bool = False

    @property
    def base(self) -> str:
        return "memberships" if self.label_kind == "non_renewal" else "subscription"

    def column_mode(self, table: str, column: str) -> str:
        return dict(self.columns).get(f"{table}.{column}", "present")

    @property
    def expected_error(self) -> str | None:
        """The name the one-line error must contain when the churn definition lacks what it needs, else None."""
        table, column = NEEDS[self.label_kind]
        if table in self.tables_absent:
            return table
        if column and self.column_mode(table, column) != "present":
            return column
        return None

    def describe(self) -> str:
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default}
        return ", ".join(f"{k}={v}" for k, v in changed.items()) or "as generated"


# --- the hypothesis strategy -----------------------------------------------------------------

@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    """Any legal shape: every dimension drawn independently."""
    kind = draw(st.sampled_from(tuple(NEEDS)))
    base_tables = ("subscriptions",) if kind == "non_renewal" else OPTIONAL_TABLES
    absent = tuple(t for t in base_tables if draw(st.booleans()) and draw(st.booleans()))
    present_tables = ("customers", *[t for t in base_tables if t not in absent])
    columns = []
    for table in present_tables:
        for column in optional_columns(table):
            mode = draw(st.sampled_from(("present", "present", "absent", "null")))
            if mode != "present":
                columns.append((f"{table}.{column}", mode))
    return Shape(
        label_kind=kind, ids=draw(st.sampled_from(("int", "text"))), codes=draw(st.sampled_from(("text", "int"))),
        columns=tuple(columns), tables_absent=absent, one_plan=draw(st.booleans()), zero_fee=draw(st.booleans()),
        label_dates=draw(st.sampled_from((1, 3))) if kind == "provided" else 3,
        nobody_due_early=draw(st.booleans()) if kind == "non_renewal" else False,
        event_format=draw(st.sampled_from(("parquet", "csv"))), candidate=draw(st.sampled_from(("logreg", "xgboost"))),
        purchases=draw(st.booleans()),
    )


def _every(columns: tuple[str, ...], mode: str) -> tuple[tuple[str, str], ...]:
    return tuple((c, mode) for c in columns)


#: each dimension's every value at least once (and the issue's five failures by name)
COVERING: dict[str, Shape] = {
    "as-generated": Shape(),
    "text-ids-int-codes": Shape(ids="text", codes="int", candidate="xgboost"),
    "int-codes-no-events": Shape(codes="int", tables_absent=("events",)),
    "no-categorical-column": Shape(ids="text", columns=_every(ALL_CATEGORIES, "absent"), candidate="xgboost",
                                   label_kind="inactivity", tables_absent=("cancellations",)),
    "no-numeric-optional-column": Shape(columns=_every(ALL_NUMERIC, "absent"), event_format="csv"),
    "every-optional-column-null": Shape(columns=_every(ALL_OPTIONAL, "null"), ids="text"),
    "every-optional-column-absent": Shape(columns=_every(ALL_OPTIONAL, "absent"), candidate="xgboost"),
    "shop-without-categories": Shape(label_kind="inactivity", ids="text", columns=_every(ALL_CATEGORIES, "absent"),
                                     tables_absent=("subscriptions", "plan_changes", "support_tickets",
                                                    "cancellations", "events"), candidate="xgboost", purchases=True),
    "only-customers-and-payments": Shape(label_kind="inactivity", tables_absent=(
        "subscriptions", "plan_changes", "support_tickets", "cancellations", "events"), ids="text"),
    "one-plan-free": Shape(one_plan=True, zero_fee=True, codes="int"),
    "csv-events-text-ids": Shape(event_format="csv", ids="text", label_kind="inactivity"),
    "provided-one-date": Shape(label_kind="provided", label_dates=1, tables_absent=("cancellations",)),
    "provided-three-dates": Shape(label_kind="provided", label_dates=3, ids="text", codes="int",
                                  candidate="xgboost"),
    "non-renewal": Shape(label_kind="non_renewal", codes="int"),
    "non-renewal-nobody-due-early": Shape(label_kind="non_renewal", nobody_due_early=True, ids="text"),
    "non-renewal-no-auto-renew": Shape(label_kind="non_renewal", columns=(("subscriptions.auto_renew", "null"),
                                                                          ("customers.acquisition_channel", "absent"))),
    # found by the drawn shapes: without events, payments or subscriptions the customers bound the history
    "no-activity-table": Shape(ids="text", tables_absent=("subscriptions", "payments", "events"), candidate="xgboost",
                               columns=(("customers.gender", "null"), ("plan_changes.new_plan", "null"))),
    "cancellation-without-cancellations": Shape(tables_absent=("cancellations",)),
    "non-renewal-without-end-date": Shape(label_kind="non_renewal", columns=(("subscriptions.end_date", "absent"),)),
}


# --- the bases -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """A generated business in the contract's plain form: ``source.db`` (tables named as the
    contract's, with the columns it generated) and ``landing/`` (the event files)."""

    name: str
    data_dir: Path
    #: table -> the columns the base has
    columns: dict[str, tuple[str, ...]]


def _table_columns(db: Path) -> dict[str, tuple[str, ...]]:
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: tuple(r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')) for n in names}


def subscription_base(folder: Path, customers: int = 1000, seed: int = 5) -> Base:
    """The generator's subscription business (6 months to RUN_DATE), plus a ``labels`` table of
    provided labels: at each of LABEL_DATES, every customer signed up and not cancelled before it,
    churned when they cancelled within 30 days."""
    from churnflow_sim.generate import generate
    from pipeline.config import load_settings

    data_dir = folder / "data"
    generate(load_settings(data_dir=data_dir), customers=customers, months=6, seed=seed,
             start=dt.date(2025, 1, 1), progress=None)
    with sqlite3.connect(data_dir / "source.db") as conn:
        conn.execute("CREATE TABLE labels (customer_id BIGINT, label_date TIMESTAMP, churned INTEGER)")
        for day in LABEL_DATES:
            conn.execute(
                """INSERT INTO labels
                   SELECT c.customer_id, :day, CASE WHEN x.cancelled_at >= :day AND x.cancelled_at < datetime(:day, '+30 days')
                                                    THEN 1 ELSE 0 END
                   FROM (SELECT DISTINCT customer_id FROM customers WHERE signup_date < :day) c
                   LEFT JOIN cancellations x ON x.customer_id = c.customer_id
                   WHERE x.cancelled_at IS NULL OR x.cancelled_at >= :day""", {"day": f"{day} 00:00:00"})
    return Base("subscription", data_dir, _table_columns(data_dir / "source.db"))


def membership_base(folder: Path, members: int = 900, seed: int = 5) -> Base:
    """The generated membership service (9 months to RUN_DATE: a 60-day label window leaves 4
    training snapshots before the holdout), mapped once by examples/memberships' SQL into the
    contract's ``customers`` and ``subscriptions`` with integer ids (a shape makes them text)."""
    from churnflow_sim.memberships import generate_memberships
    from pipeline.config import load_settings

    raw = folder / "raw"
    generate_memberships(load_settings(data_dir=raw), members, months=9, seed=seed, start=dt.date(2024, 10, 1),
                         progress=None)
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    example = Path(__file__).resolve().parent.parent / "examples" / "memberships" / "sql"
    window = {"window_start": "1900-01-01 00:00:00", "window_end": "2100-01-01 00:00:00"}
    with sqlite3.connect(raw / "source.db") as src, sqlite3.connect(data_dir / "source.db") as out:
        keys = {k: i + 1 for i, (k,) in enumerate(src.execute("SELECT member_key FROM members ORDER BY member_key"))}
        for table in ("customers", "subscriptions"):
            cursor = src.execute((example / f"ingest_{table}.sql").read_text(), window)
            names = [d[0] for d in cursor.description]
            rows = [tuple(keys[v] if n == "customer_id" else v for n, v in zip(names, row, strict=True)) for row in cursor]
            if table == "subscriptions":  # the service's text refs as integer ids too
                at = names.index("subscription_id")
                rows = [(*r[:at], i + 1, *r[at + 1:]) for i, r in enumerate(rows)]
            out.execute(f"CREATE TABLE {table} ({', '.join(names)})")
            out.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(names))})", rows)
    return Base("memberships", data_dir, _table_columns(data_dir / "source.db"))


# --- a shape's data dir, SQL and config ------------------------------------------------------

def _vocabularies(db: Path, base: Base) -> dict[str, dict[str, int]]:
    """Integer codes for every category vocabulary of the base (10, 11, ...: never 0/1, which read as booleans)."""
    values: dict[str, set[str]] = {}
    with sqlite3.connect(db) as conn:
        for table, columns in base.columns.items():
            for column in columns:
                if table in TABLES and column in category_columns(table):
                    vocab = VOCABULARY.get(f"{table}.{column}", f"{table}.{column}")
                    found = {r[0] for r in conn.execute(f'SELECT DISTINCT "{column}" FROM "{table}"') if r[0] is not None}
                    values.setdefault(vocab, set()).update(found)
    return {vocab: {v: 10 + i for i, v in enumerate(sorted(found))} for vocab, found in values.items()}


def _expression(shape: Shape, table: str, column: str, codes: dict[str, dict[str, int]]) -> str | None:
    """The SELECT expression of one contract column in the shape (None: the query does not return it)."""
    spec = TABLES[table].column(column)
    mode = shape.column_mode(table, column)
    if mode == "absent":
        return None
    if mode == "null":
        return f"NULL AS {column}"
    quoted = f'"{column}"'
    if spec.kind == "id":
        return f"{TEXT_ID.format(tag=column[0], col=quoted)} AS {column}" if shape.ids == "text" else quoted
    vocab = VOCABULARY.get(f"{table}.{column}", f"{table}.{column}")
    if vocab == "plan" and shape.one_plan:
        return f"{'10' if shape.codes == 'int' else repr('standard')} AS {column}"
    if column == "monthly_fee" and shape.zero_fee:
        return f"0.0 AS {column}"
    if spec.kind == "category" and spec.allowed is None and shape.codes == "int":
        cases = " ".join(f"WHEN '{v}' THEN {code}" for v, code in codes[vocab].items())
        return f"CASE {quoted} {cases} END AS {column}"
    if column == "end_date" and shape.nobody_due_early:
        return f"CASE WHEN start_date >= '2025-03-15' THEN {quoted} END AS {column}"
    return quoted


def ingest_sql(shape: Shape, base: Base, table: str, codes: dict[str, dict[str, int]]) -> str:
    """The shape's ``ingest_<table>.sql``: the contract's columns as the shape has them."""
    spec = TABLES[table]
    exprs = [e for c in spec.columns if c.name in base.columns[table]
             if (e := _expression(shape, table, c.name, codes)) is not None]
    time = spec.time_column
    return (f"-- shape: {shape.describe()}\nSELECT {', '.join(exprs)}\nFROM {table}\n"
            f"WHERE {time} >= :window_start AND {time} < :window_end\nORDER BY {time}\n")


def _events(shape: Shape, src: Path, dst: Path) -> None:
    """The landing folder's event files in the shape: ids, optional columns, Parquet or CSV."""
    for day in sorted(src.glob("events/date=*")):
        out = dst / "events" / day.name
        out.mkdir(parents=True)
        for file in day.glob("*.parquet"):
            table = pq.read_table(file)
            if shape.ids == "text":
                ids = [f"0{i:05d}/ü+c" for i in table.column("customer_id").to_pylist()]
                table = table.set_column(table.schema.get_field_index("customer_id"), "customer_id",
                                         pa.array(ids, pa.string()))
            for column in optional_columns("events"):
                mode = shape.column_mode("events", column)
                if mode == "absent" and column in table.schema.names:
                    table = table.drop_columns([column])
                elif mode == "null" and column in table.schema.names:
                    at = table.schema.get_field_index(column)
                    table = table.set_column(at, column, pa.nulls(table.num_rows, table.schema.field(column).type))
            if shape.event_format == "csv":
                pacsv.write_csv(table, out / f"{file.stem}.csv")
            else:
                pq.write_table(table, out / file.name)


def materialize(shape: Shape, base: Base, folder: Path) -> Path:
    """Write the shape's business into ``folder`` (``data/``, ``sql/``, ``churnflow.yaml``);
    returns the config file."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    shutil.copy2(base.data_dir / "source.db", data_dir / "source.db")
    if (base.data_dir / "landing").is_dir():
        if "events" in shape.tables_absent:
            shutil.copytree(base.data_dir / "landing", data_dir / "landing")
        else:
            _events(shape, base.data_dir / "landing", data_dir / "landing")
    codes = _vocabularies(data_dir / "source.db", base)
    declared = [t for t in ("customers", *OPTIONAL_TABLES) if t in base.columns and t not in shape.tables_absent]
    if shape.base == "subscription" and "events" not in shape.tables_absent:
        declared.append("events")
    sql_dir = folder / "sql"
    sql_dir.mkdir()
    for table in declared + (["labels"] if shape.label_kind == "provided" else []):
        if table != "events":
            (sql_dir / f"ingest_{table}.sql").write_text(ingest_sql(shape, base, table, codes))
    if shape.label_kind == "provided":
        keep = LABEL_DATES[-shape.label_dates:]
        with sqlite3.connect(data_dir / "source.db") as conn:
            conn.execute(f"DELETE FROM labels WHERE substr(label_date, 1, 10) NOT IN ({', '.join('?' * len(keep))})",
                         keep)
    config = {**BASE_SETTINGS, "data_dir": "data", "sql_dir": "sql", "source_tables": ",".join(declared),
              "label_kind": shape.label_kind, "candidates": shape.candidate}
    if shape.purchases:
        config.update(feature_groups="customer,subscription,events,payments,plan_changes,support,renewal,purchases")
    if shape.label_kind == "non_renewal":
        config.update(horizon_days=30, renewal_grace_days=30,
                      feature_groups="customer,subscription,renewal")
    path = folder / "churnflow.yaml"
    path.write_text(f"# shape: {shape.describe()}\n" + yaml.safe_dump(config, sort_keys=True))
    return path


# --- running it ------------------------------------------------------------------------------

#: a log line (logging's format in pipeline.__main__): anything else on stderr is the command's own words
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@dataclass
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def said(self) -> list[str]:
        """What the command said on stderr that is not a log line."""
        return [line for line in self.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def run(config: Path, *args: str) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNFLOW_")}
    env.update(CHURNFLOW_CONFIG=str(config), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=config.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    return Outcome(" ".join(args), done.returncode, done.stdout, done.stderr)


def run_shape(shape: Shape, base: Base, folder: Path) -> list[Outcome]:
    """``run-training`` then (if it succeeded) ``run-nightly`` for RUN_DATE; the outcomes."""
    config = materialize(shape, base, folder)
    outcomes = [run(config, "run-training", "--date", RUN_DATE)]
    if outcomes[0].returncode == 0:
        outcomes.append(run(config, "run-nightly", "--date", RUN_DATE))
    return outcomes


def published_scores(folder: Path) -> list[tuple[str, float]]:
    """The night's (customer_id, probability) rows in the shape's results store."""
    with sqlite3.connect(folder / "data" / "results.db") as conn:
        return [(str(r[0]), float(r[1])) for r in
                conn.execute("SELECT customer_id, churn_probability FROM churn_scores WHERE substr(as_of, 1, 10) = ?",
                             (RUN_DATE,))]


def check(shape: Shape, base: Base, folder: Path) -> None:
    """The property: exit 0 with published scores, or exit 2 with one line naming what is missing; never a traceback."""
    outcomes = run_shape(shape, base, folder)
    for out in outcomes:
        assert "Traceback" not in out.stderr, f"[{shape.describe()}] {out.command}: a traceback\n{out.stderr[-4000:]}"
        assert out.returncode in (0, 2), f"[{shape.describe()}] {out.command}: exit {out.returncode}\n{out.stderr[-3000:]}"
    last = outcomes[-1]
    expected = shape.expected_error
    if expected is not None:
        assert last.returncode == 2 and len(outcomes) == 1, (
            f"[{shape.describe()}] training without {expected} should fail in one line:\n{last.stderr[-2000:]}")
        assert len(last.said) == 1 and expected in last.said[0], f"[{shape.describe()}] {last.said}"
        return
    assert last.returncode == 0 and len(outcomes) == 2, (
        f"[{shape.describe()}] {last.command}: exit {last.returncode}: {last.said or last.stderr[-3000:]}")
    scores = published_scores(folder)
    assert scores, f"[{shape.describe()}] the night published no scores"
    assert all(0.0 <= p <= 1.0 for _, p in scores)
    if shape.ids == "text":
        assert all(re.fullmatch(r"0\d{5}/ü\+c", cid) for cid, _ in scores), scores[:3]
    else:
        assert all(cid.isdigit() for cid, _ in scores), scores[:3]
    # the campaign file the e-mail attaches, whatever columns the business has (issue 37): plan and tenure
    # when it has them, left out with their reason when not, never a crash
    campaign = campaign_of(folder, json.loads(last.stdout)["scores"]["threshold"])
    assert list(campaign.columns[:3]) == ["customer_id", "rank", "churn_probability"], list(campaign.columns)
    assert campaign["churn_probability"].between(0, 1).all() and (campaign["risk_band"] == "high").all()
    if len(campaign):  # (a model whose campaign pays for nobody has an empty one)
        assert ("plan" in campaign.columns) == ("subscriptions" not in shape.tables_absent and
                                                shape.column_mode("subscriptions", "plan") == "present"), list(campaign)
        assert "tenure_days" in campaign.columns, list(campaign.columns)


def campaign_of(folder: Path, threshold: float) -> Any:
    """The shape's campaign file as the nightly's e-mail step writes it (pipeline.model.score.campaign_file)."""
    import pandas as pd

    from pipeline.config import load_settings
    from pipeline.model.score import campaign_file

    settings = load_settings(folder / "churnflow.yaml")
    scores = pd.read_parquet(settings.runs_dir / "churn_nightly" / RUN_DATE / "score" / "scores.parquet")
    return campaign_file(settings, scores, threshold, RUN_DATE)
