"""The source data contract, as code.

One place names every source table and its columns: type, whether the ingest SQL must return
it (``required``) and whether it may be null, the allowed range, the closed set of values
where the *contract* fixes one (a payment's ``status``, an event's ``event_type``), what
needs it (feature groups, churn definitions), and the column that drives incremental
ingestion (rows whose ``time_column`` falls in a window are that window's batch).
``expectations/*.json`` check it; ``python -m pipeline contract`` prints it.

What the contract does not fix is a business's own words: plans, payment methods, regions,
channels, ticket categories and cancellation reasons are open vocabularies (validation
checks their type, nulls and a cardinality bound; a closed set only where the configuration
declares one, ``closed_vocabularies``); their codes may be text, integers or booleans, and
the lake keeps them as text codes ("40", never "40.0": ``pipeline.ingestion.extract.codes``),
never as numbers. Identifiers may be integers or text: the lake keeps
them as given (``kind="id"``: int64 when the source's ids are integers, text otherwise, the
same type in every table as in ``customers``). Optional columns that the ingest SQL does
not return arrive as nulls, and what needs them is switched off with a recorded reason.

Design choice (differs from the sketch in DESIGN.md): ``subscriptions`` are immutable
*periods* - a plan or price change, or a renewal, appends a new row with a new ``start_date``
instead of updating the old one. Append-only rows make incremental ingestion exact and
point-in-time lookups cannot see a value written later. ``end_date`` (optional) is the end of
the period paid for (its expiry), known when the period starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

#: closed sets fixed by the contract (the pipeline's logic reads these values)
PAYMENT_STATUSES: tuple[str, ...] = ("success", "failed", "refunded")
EVENT_TYPES: tuple[str, ...] = ("login", "session", "content")

TS = pa.timestamp("us")
#: the default lake type of an identifier (a business with text ids gets pa.string())
ID = pa.int64()


@dataclass(frozen=True)
class Column:
    """One contract column."""

    name: str
    type: pa.DataType
    #: id | time | category | number | count | flag | contact (text for the campaign file only)
    kind: str
    #: the ingest SQL must return it (else the batch fails naming it); optional columns absent
    #: from a source arrive as nulls and switch off what needs them
    required: bool = False
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    #: a closed set the contract fixes (None: an open vocabulary, or not a category)
    allowed: tuple[str, ...] | None = None
    #: what needs the column: feature groups, churn definitions (label_kind), fairness
    used_by: tuple[str, ...] = ()
    description: str = ""

    @property
    def type_name(self) -> str:
        if self.kind == "id":
            return "id (integer or text)"
        if self.kind == "time":
            return "timestamp"
        if self.kind == "contact":
            return "text (contact)"
        return {pa.string(): "text", pa.float64(): "number", pa.int32(): "integer", pa.int64(): "integer",
                pa.bool_(): "boolean"}.get(self.type, str(self.type))

    @property
    def rule(self) -> str:
        """The values it takes, in words."""
        if self.allowed:
            return "one of " + ", ".join(self.allowed)
        if self.minimum is not None or self.maximum is not None:
            lo = "" if self.minimum is None else f">= {self.minimum:g}"
            hi = "" if self.maximum is None else f"<= {self.maximum:g}"
            return " and ".join(p for p in (lo, hi) if p)
        if self.kind == "category":
            return "any values (open vocabulary; closed_vocabularies can fix a set)"
        return ""


@dataclass(frozen=True)
class SourceTable:
    """A table that lands in the lake: from the customer database, or the event files."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    #: timestamp column that places a row in an ingestion window (half-open [start, end))
    time_column: str
    description: str = ""

    @property
    def schema(self) -> pa.Schema:
        """The default Arrow schema (integer ids; :func:`schema_with_ids` for a text-id business)."""
        return pa.schema([(c.name, c.type) for c in self.columns])

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def id_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "id"]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _id(name: str, description: str, used_by: tuple[str, ...] = ()) -> Column:
    return Column(name, ID, "id", required=True, nullable=False, used_by=used_by, description=description)


def _time(name: str, description: str, *, required: bool = True, used_by: tuple[str, ...] = ()) -> Column:
    return Column(name, TS, "time", required=required, nullable=not required, used_by=used_by, description=description)


def _cat(name: str, description: str, used_by: tuple[str, ...], allowed: tuple[str, ...] | None = None,
         required: bool = False) -> Column:
    return Column(name, pa.string(), "category", required=required, nullable=not required, allowed=allowed,
                  used_by=used_by, description=description)


def _contact(name: str, description: str) -> Column:
    """A contact field a business may map in for its retention agents: text, never a feature nor a
    category (no cardinality bound), carried only into the campaign file (``campaign_columns``)."""
    return Column(name, pa.string(), "contact", used_by=("campaign",),
                  description=f"{description}, for the campaign file (campaign_columns); no model reads it")


CUSTOMERS = SourceTable(
    "customers",
    (
        _id("customer_id", "the customer (every other table's customer_id refers to it)"),
        _time("signup_date", "when the customer signed up", used_by=("customer",)),
        Column("birth_year", pa.int32(), "number", minimum=1900, maximum=2030, used_by=("customer", "fairness"),
               description="year of birth (age features and the age_band fairness segment)"),
        _cat("gender", "gender, in the business's own codes", ("customer", "fairness")),
        _cat("region", "region, in the business's own names", ("customer", "fairness")),
        _cat("acquisition_channel", "how the customer was acquired", ("customer",)),
        _contact("name", "the customer's name"),
        _contact("email", "the customer's e-mail address"),
        _contact("phone", "the customer's phone number (kept as text: leading zeros and + stay)"),
        _time("updated_at", "when this version of the customer row was written (a change adds a version)"),
    ),
    key=("customer_id", "updated_at"), time_column="updated_at",
    description="one row per version of a customer (append-only)")

SUBSCRIPTIONS = SourceTable(
    "subscriptions",
    (
        _id("subscription_id", "the subscription period"),
        _id("customer_id", "the customer"),
        _cat("plan", "plan name, the business's own", ("subscription", "plan_changes")),
        Column("monthly_fee", pa.float64(), "number", minimum=0, used_by=("subscription", "plan_changes"),
               description="price per month (0 for a free or trial plan); ranks plans for the downgrade flag"),
        _cat("payment_method", "payment method, the business's own codes", ("subscription",)),
        _time("start_date", "when the period starts (a plan or price change, or a renewal, starts a new one)",
              used_by=("subscription", "renewal")),
        _time("end_date", "end of the period paid for (its expiry), known when it starts", required=False,
              used_by=("renewal", "label:non_renewal")),
        Column("auto_renew", pa.bool_(), "flag", used_by=("renewal",),
               description="the period renews by itself unless cancelled"),
    ),
    key=("subscription_id",), time_column="start_date",
    description="subscription periods (append-only)")

PAYMENTS = SourceTable(
    "payments",
    (
        _id("payment_id", "the payment"),
        _id("customer_id", "the customer"),
        _time("paid_at", "when it was paid (or failed)", used_by=("payments", "purchases", "label:inactivity")),
        Column("amount", pa.float64(), "number", used_by=("purchases",),
               description="amount; a refund may be recorded negative or positive (status refunded); success and "
                           "failed payments are >= 0"),
        _cat("status", "what happened", ("payments", "purchases", "label:inactivity"), allowed=PAYMENT_STATUSES,
             required=True),
    ),
    key=("payment_id",), time_column="paid_at", description="payments, purchases and refunds")

PLAN_CHANGES = SourceTable(
    "plan_changes",
    (
        _id("change_id", "the change"),
        _id("customer_id", "the customer"),
        _time("changed_at", "when the plan changed", used_by=("plan_changes",)),
        _cat("old_plan", "the plan before", ("plan_changes",)),
        _cat("new_plan", "the plan after", ("plan_changes",)),
    ),
    key=("change_id",), time_column="changed_at", description="plan changes")

SUPPORT_TICKETS = SourceTable(
    "support_tickets",
    (
        _id("ticket_id", "the ticket"),
        _id("customer_id", "the customer"),
        _time("opened_at", "when it was opened", used_by=("support",)),
        _cat("category", "ticket category, the business's own", ()),
        _time("resolved_at", "when it was resolved (null while open)", required=False, used_by=("support",)),
    ),
    key=("ticket_id",), time_column="opened_at", description="support tickets")

CANCELLATIONS = SourceTable(
    "cancellations",
    (
        _id("customer_id", "the customer"),
        _time("cancelled_at", "when the customer cancelled", used_by=("population", "label:cancellation")),
        _cat("reason", "the reason given", ()),
    ),
    key=("customer_id",), time_column="cancelled_at",
    description="explicit cancellations: the churn event of label_kind cancellation; a cancelled customer leaves "
                "the population")

LABELS = SourceTable(
    "labels",
    (
        _id("customer_id", "the customer"),
        _time("label_date", "the snapshot date the label is for (features see only data before it)",
              used_by=("label:provided",)),
        Column("churned", pa.int32(), "flag", required=True, nullable=False, minimum=0, maximum=1,
               used_by=("label:provided",),
               description="1 when the customer churned, in the business's own definition, within horizon_days "
                           "of label_date"),
    ),
    key=("customer_id", "label_date"), time_column="label_date",
    description="labels the business supplies (label_kind provided; ingested only then)")

EVENTS = SourceTable(
    "events",
    (
        _id("customer_id", "the customer"),
        _time("event_ts", "when it happened", used_by=("events", "label:inactivity")),
        _cat("event_type", "what happened", ("events",), allowed=EVENT_TYPES, required=True),
        Column("duration_s", pa.float64(), "number", minimum=0, used_by=("events",),
               description="session time in seconds (null: 0)"),
        Column("content_units", pa.int32(), "count", minimum=0, used_by=("events",),
               description="content consumed (null: 0)"),
    ),
    key=(), time_column="event_ts",
    description="daily event files: <landing>/events/date=YYYY-MM-DD/*.parquet (or *.csv)")

SOURCE_TABLES: dict[str, SourceTable] = {
    t.name: t for t in (CUSTOMERS, SUBSCRIPTIONS, PAYMENTS, PLAN_CHANGES, SUPPORT_TICKETS, CANCELLATIONS, LABELS)}

from pipeline.tables import LAKE_TABLE_NAMES, SOURCE_TABLE_NAMES  # noqa: E402

assert tuple(SOURCE_TABLES) == SOURCE_TABLE_NAMES, "pipeline/tables.py and SOURCE_TABLES disagree"

EVENTS_SCHEMA = EVENTS.schema
EVENTS_TIME_COLUMN = EVENTS.time_column

#: every table that lands in the lake, with its default schema and time column
LAKE_TABLES: dict[str, tuple[pa.Schema, str]] = {
    **{name: (t.schema, t.time_column) for name, t in SOURCE_TABLES.items()},
    "events": (EVENTS_SCHEMA, EVENTS_TIME_COLUMN),
}
assert tuple(LAKE_TABLES) == LAKE_TABLE_NAMES

#: every table's spec by name, the event files included
TABLES: dict[str, SourceTable] = {**SOURCE_TABLES, "events": EVENTS}


def schema_with_ids(table: str, id_type: pa.DataType) -> pa.Schema:
    """``table``'s schema with its ``customer_id`` (and every other id) typed ``id_type``."""
    spec = TABLES[table]
    return pa.schema([(c.name, id_type if c.kind == "id" else c.type) for c in spec.columns])


def reference_markdown() -> str:
    """The contract as a reference (``python -m pipeline contract``; docs/data-contract.md)."""
    out = []
    for spec in TABLES.values():
        source = "event files" if spec.name == "events" else f"ingest_{spec.name}.sql"
        out.append(f"### `{spec.name}` ({source}; time column `{spec.time_column}`"
                   + (f"; key {', '.join(spec.key)})" if spec.key else ")") + f"\n\n{spec.description}.\n")
        out.append("| column | type | required | nullable | values | needed by | meaning |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for c in spec.columns:
            out.append(f"| `{c.name}` | {c.type_name} | {'yes' if c.required else 'optional'} | "
                       f"{'yes' if c.nullable else 'no'} | {c.rule} | {', '.join(c.used_by)} | {c.description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
