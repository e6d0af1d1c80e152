"""Customer-hash partitions: the nightly's heavy steps run as ``partitions`` mapped pieces,
each over the customers of one bucket.

A customer's bucket is the first 32 bits of the MD5 digest of its id as text (an integer id
as its decimal digits, a text id as it is), modulo the number of partitions: MD5 is the same
in every Python and every DuckDB version (unlike Python's ``hash`` or DuckDB's ``hash()``),
so a customer stays in its bucket from night to night and :func:`bucket_of` (Python) and the
DuckDB macro ``in_part(id)`` (:func:`register_part`) agree on every id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Part:
    """Bucket ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def check(self) -> Part:
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 0 <= self.index < self.count):
            raise ValueError(f"partition {self.index} of {self.count}: expected 0 <= index < count")
        return self

    @property
    def name(self) -> str:
        """Its artifact folder: ``part-0002-of-0004``."""
        return f"part-{self.index:04d}-of-{self.count:04d}"

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        return cls(int(data["index"]), int(data["count"])).check()


def all_parts(count: int) -> list[Part]:
    """The ``count`` buckets of a night (``partitions`` setting)."""
    if count < 1:
        raise ValueError(f"config partitions: {count} (expected at least 1)")
    return [Part(i, count) for i in range(count)]


def customer_hash(ids: pd.Series) -> np.ndarray:
    """Each id's stable hash: the first 32 bits of the MD5 digest of its text (what buckets use)."""
    return np.array([int(hashlib.md5(str(v).encode("utf-8")).hexdigest()[:8], 16) for v in ids], dtype=np.int64)


def customer_hash_duckdb(ids: pd.Series) -> np.ndarray:
    """:func:`customer_hash` computed by DuckDB (the same value: ``in_part``'s rule), vectorized:
    a million ids in a fraction of a second."""
    import duckdb
    import pyarrow as pa

    table = pa.table({"id": pa.Array.from_pandas(ids.reset_index(drop=True))})
    with duckdb.connect() as con:
        con.register("ids", table)
        return con.execute("SELECT ('0x' || left(md5(CAST(id AS VARCHAR)), 8))::UBIGINT AS h FROM ids"
                           ).fetchnumpy()["h"].astype(np.int64)


def bucket_of(ids: pd.Series, count: int) -> np.ndarray:
    """Each id's bucket in ``[0, count)``."""
    return customer_hash(ids) % count


#: the same rule in DuckDB: the parameters live in a one-row table (no value in the SQL text)
_PART_TABLE = "CREATE OR REPLACE TEMP TABLE churnflow_part AS SELECT $index::UBIGINT AS idx, $count::UBIGINT AS cnt"
_PART_MACRO = ("CREATE OR REPLACE TEMP MACRO in_part(id) AS "
               "(('0x' || left(md5(CAST(id AS VARCHAR)), 8))::UBIGINT % (SELECT cnt FROM churnflow_part)) "
               "= (SELECT idx FROM churnflow_part)")


def register_part(con: Any, part: Part) -> None:
    """Define ``in_part(id)`` on a DuckDB connection: true for the ids in ``part``'s bucket."""
    part.check()
    con.execute(_PART_TABLE, {"index": part.index, "count": part.count})
    con.execute(_PART_MACRO)
