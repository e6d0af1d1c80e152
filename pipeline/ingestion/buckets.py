"""The lake's customer order: every file of a per-customer table holds its rows sorted by
``customer_hash`` (the first 32 bits of the MD5 digest of the customer id as text), stored as a
column, in row groups of at most :func:`row_group_rows` rows.

A nightly piece over bucket ``i`` of ``K`` (:mod:`pipeline.features.partitions`: a contiguous
range of hashes) then reads only the row groups whose ``customer_hash`` statistics meet its
range: its cost is its share of the rows plus a fixed cost per file (a footer), where before
every piece read every row and hashed each id. One layout serves every K.

Why row groups, not one folder per bucket (``date=D/bucket=B/``): a folder per bucket fixes the
number of buckets when the lake is written and multiplies the files (365 days x B buckets of
small objects: on S3 a GET each), while sorted row groups keep one file per partition, serve
any K, and prune to within one row group per file edge (docs/benchmarks.md has the
measurements).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: the stored hash column of every per-customer lake file
HASH_COLUMN = "customer_hash"
#: a file is written in about this many row groups (the unit a piece skips), each of at least
#: :data:`MIN_ROW_GROUP_ROWS` rows (smaller ones cost more in footers than they save)
ROW_GROUPS_PER_FILE = 64
MIN_ROW_GROUP_ROWS = 8192
#: the customer hash in DuckDB SQL, over a column or expression ``id``
HASH_SQL = "('0x' || left(md5(CAST({id} AS VARCHAR)), 8))::UBIGINT"


def customer_hash(ids: pd.Series) -> np.ndarray:
    """Each id's stable hash: the first 32 bits of the MD5 digest of its text (what buckets use),
    computed by DuckDB, vectorized (a million ids in a fraction of a second). A null id hashes to
    -1 (in no bucket)."""
    return arrow_hash(pa.Array.from_pandas(ids.reset_index(drop=True))).to_numpy(zero_copy_only=False)


def arrow_hash(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`customer_hash` of an Arrow array of ids, as int64 (-1 for a null id): in Python for a
    few ids (a query costs ~4 ms of its own), else by DuckDB, vectorized."""
    if len(ids) <= PYTHON_HASH_MAX_IDS:
        return pa.array([-1 if v is None else int(hashlib.md5(str(v).encode("utf-8")).hexdigest()[:8], 16)
                         for v in ids.to_pylist()], pa.int64())
    con = _connection()
    con.register("ids", pa.table({"id": ids}))
    try:
        result = con.sql("SELECT coalesce(" + HASH_SQL.format(id="id") + "::BIGINT, -1) AS h FROM ids").to_arrow_table()
    finally:
        con.unregister("ids")
    return result.column("h").combine_chunks()


#: up to this many ids are hashed in Python (the same digest as DuckDB's md5: tests/test_partitions.py)
PYTHON_HASH_MAX_IDS = 2000
_local = threading.local()


def _connection() -> Any:
    """This thread's DuckDB connection for hashing (opening one costs ~30 ms: a day's file, or a
    thousand of them in a migration, would pay it each time); a forked child opens its own."""
    import duckdb

    held = getattr(_local, "held", None)
    if held is None or held[0] != os.getpid():
        held = _local.held = (os.getpid(), duckdb.connect(config={"threads": 1}))
    return held[1]


def row_group_rows(rows: int) -> int:
    """The row-group size of a lake file of ``rows`` rows."""
    return max(MIN_ROW_GROUP_ROWS, -(-rows // ROW_GROUPS_PER_FILE))


class HashLookup:
    """The customer hashes of a batch's known customers (the lake's ids), computed once when the
    batch has hashed as many rows as there are customers: from then on a chunk's hashes are a
    lookup (a first ingest hashes each customer once, not each of its hundred events). An id not
    known is hashed as before."""

    def __init__(self, known: np.ndarray | None) -> None:
        self._known = known
        self._index: pd.Index | None = None
        self._hashes: np.ndarray | None = None
        self._hashed = 0

    def __call__(self, ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        if self._index is None:
            self._hashed += len(ids)
            if self._known is None or self._hashed < len(self._known):
                return arrow_hash(ids)
            self._index = pd.Index(self._known)
            self._hashes = arrow_hash(pa.array(self._known)).to_numpy(zero_copy_only=False)
        assert self._hashes is not None
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        at = self._index.get_indexer(ids.to_numpy(zero_copy_only=False))
        out = self._hashes[np.maximum(at, 0)]
        missing = np.flatnonzero(at < 0)
        if len(missing):
            out[missing] = arrow_hash(ids.take(pa.array(missing))).to_numpy(zero_copy_only=False)
        return pa.array(out, pa.int64())


def in_customer_order(table: pa.Table, hashes: HashLookup | None = None) -> pa.Table:
    """``table`` with its ``customer_hash`` column and its rows sorted by it, stably (a customer's
    rows keep their order). The hash is computed from ``customer_id`` (by ``hashes`` where
    given) unless the table holds it already (the lake's own pieces: hashed once, when staged)."""
    if HASH_COLUMN in table.column_names:
        return table.take(pc.sort_indices(table.column(HASH_COLUMN)))
    column = (hashes or arrow_hash)(table.column("customer_id"))
    table = table.append_column(pa.field(HASH_COLUMN, pa.int64()), column)
    return table.take(pc.sort_indices(column))


def has_customers(schema: pa.Schema) -> bool:
    """Whether files of this schema are kept in customer order (they have a ``customer_id``)."""
    return "customer_id" in schema.names
