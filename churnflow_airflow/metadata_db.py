"""Connection arguments for Airflow's metadata database (``[database] sql_alchemy_connect_args``).

On SQLite (``make airflow``'s metadata database) a connection waits 5 s for a lock by default.
On a busy machine the scheduler, the dag-processor, the triggerer, the API server and every
running task write to the one file, and a lock held longer than that turns a UI page or a REST
call (a trigger, a listing) into a 500 "Database error". :data:`CONNECT_ARGS` makes it wait
:data:`SQLITE_BUSY_TIMEOUT_S` instead; on any other database it is empty (Airflow's defaults).

Airflow imports this module while it configures its ORM, so it imports only the configuration.
"""

from __future__ import annotations

from typing import Any

from airflow.configuration import conf

#: seconds a SQLite connection waits for another's lock before it fails with "database is locked"
SQLITE_BUSY_TIMEOUT_S = 60


def connect_args(sql_alchemy_conn: str) -> dict[str, Any]:
    """The driver's connect arguments for a metadata database at ``sql_alchemy_conn``."""
    return {"timeout": SQLITE_BUSY_TIMEOUT_S} if sql_alchemy_conn.startswith("sqlite") else {}


CONNECT_ARGS: dict[str, Any] = connect_args(conf.get("database", "sql_alchemy_conn"))
#: the async engine's (aiosqlite passes them on to sqlite3); a copy: Airflow adds to the sync one
CONNECT_ARGS_ASYNC: dict[str, Any] = dict(CONNECT_ARGS)
