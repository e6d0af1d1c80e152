"""The source data contract, as code.

One place names every source table, its columns and types, the column that drives
incremental ingestion (rows whose ``time_column`` falls in the logical date's window
are that window's batch), and the allowed category values. The generator writes to
this contract, ingestion enforces it, and ``expectations/*.json`` check it.

Design choice (differs from the sketch in DESIGN.md): ``subscriptions`` are immutable
*periods* - a plan change or price change appends a new row with a new ``start_date``
instead of updating ``end_date`` of the old row. Append-only rows make incremental
ingestion exact and point-in-time lookups cannot see an ``end_date`` written later.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

PLANS: tuple[str, ...] = ("basic", "standard", "premium")
#: list price per plan before any price change (the generator's drift raises these)
PLAN_FEES: dict[str, float] = {"basic": 9.99, "standard": 15.99, "premium": 22.99}
PLAN_RANK: dict[str, int] = {"basic": 0, "standard": 1, "premium": 2}
GENDERS: tuple[str, ...] = ("F", "M", "X")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
CHANNELS: tuple[str, ...] = ("organic", "paid_search", "social", "referral", "partner", "tiktok")
PAYMENT_METHODS: tuple[str, ...] = ("card", "paypal", "bank_transfer")
PAYMENT_STATUSES: tuple[str, ...] = ("success", "failed", "refunded")
TICKET_CATEGORIES: tuple[str, ...] = ("billing", "technical", "content", "account", "cancellation")
CANCEL_REASONS: tuple[str, ...] = ("price", "not_using", "technical", "competitor", "other")
EVENT_TYPES: tuple[str, ...] = ("login", "session", "content")

TS = pa.timestamp("us")


@dataclass(frozen=True)
class SourceTable:
    """A table in the customer database."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    #: timestamp column that places a row in an ingestion window (half-open [start, end))
    time_column: str


SOURCE_TABLES: dict[str, SourceTable] = {
    t.name: t
    for t in [
        SourceTable(
            "customers",
            pa.schema(
                [
                    ("customer_id", pa.int64()),
                    ("signup_date", TS),
                    ("birth_year", pa.int32()),
                    ("gender", pa.string()),
                    ("region", pa.string()),
                    ("acquisition_channel", pa.string()),
                    ("updated_at", TS),
                ]
            ),
            key=("customer_id", "updated_at"),
            time_column="updated_at",
        ),
        SourceTable(
            "subscriptions",
            pa.schema(
                [
                    ("subscription_id", pa.int64()),
                    ("customer_id", pa.int64()),
                    ("plan", pa.string()),
                    ("monthly_fee", pa.float64()),
                    ("payment_method", pa.string()),
                    ("start_date", TS),
                ]
            ),
            key=("subscription_id",),
            time_column="start_date",
        ),
        SourceTable(
            "payments",
            pa.schema(
                [
                    ("payment_id", pa.int64()),
                    ("customer_id", pa.int64()),
                    ("paid_at", TS),
                    ("amount", pa.float64()),
                    ("status", pa.string()),
                ]
            ),
            key=("payment_id",),
            time_column="paid_at",
        ),
        SourceTable(
            "plan_changes",
            pa.schema(
                [
                    ("change_id", pa.int64()),
                    ("customer_id", pa.int64()),
                    ("changed_at", TS),
                    ("old_plan", pa.string()),
                    ("new_plan", pa.string()),
                ]
            ),
            key=("change_id",),
            time_column="changed_at",
        ),
        SourceTable(
            "support_tickets",
            pa.schema(
                [
                    ("ticket_id", pa.int64()),
                    ("customer_id", pa.int64()),
                    ("opened_at", TS),
                    ("category", pa.string()),
                    ("resolved_at", TS),
                ]
            ),
            key=("ticket_id",),
            time_column="opened_at",
        ),
        SourceTable(
            "cancellations",
            pa.schema(
                [
                    ("customer_id", pa.int64()),
                    ("cancelled_at", TS),
                    ("reason", pa.string()),
                ]
            ),
            key=("customer_id",),
            time_column="cancelled_at",
        ),
    ]
}

from pipeline.tables import LAKE_TABLE_NAMES, SOURCE_TABLE_NAMES  # noqa: E402

assert tuple(SOURCE_TABLES) == SOURCE_TABLE_NAMES, "pipeline/tables.py and SOURCE_TABLES disagree"

#: daily event files: <landing>/events/date=YYYY-MM-DD/*.parquet (or *.csv)
EVENTS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("event_ts", TS),
        ("event_type", pa.string()),
        ("duration_s", pa.float64()),
        ("content_units", pa.int32()),
    ]
)
EVENTS_TIME_COLUMN = "event_ts"

#: every table that lands in the lake, with its schema and time column
LAKE_TABLES: dict[str, tuple[pa.Schema, str]] = {
    **{name: (t.schema, t.time_column) for name, t in SOURCE_TABLES.items()},
    "events": (EVENTS_SCHEMA, EVENTS_TIME_COLUMN),
}
assert tuple(LAKE_TABLES) == LAKE_TABLE_NAMES
