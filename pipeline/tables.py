"""Names of the tables churnflow ingests (``labels`` only with ``label_kind: provided``), importable without pandas or pyarrow
(the DAG files need them at parse time, which must stay fast)."""

SOURCE_TABLE_NAMES: tuple[str, ...] = (
    "customers",
    "subscriptions",
    "payments",
    "plan_changes",
    "support_tickets",
    "cancellations",
    "labels",
)
#: everything that lands in the lake: the database tables and the daily event files
LAKE_TABLE_NAMES: tuple[str, ...] = (*SOURCE_TABLE_NAMES, "events")
#: the feature groups (pipeline.features.catalogue.GROUPS, which a test keeps in lockstep with this)
FEATURE_GROUP_NAMES: tuple[str, ...] = ("customer", "subscription", "events", "payments", "plan_changes", "support",
                                        "purchases", "renewal")
