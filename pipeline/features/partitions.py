"""Customer-hash partitions: the nightly's heavy steps run as ``partitions`` mapped pieces,
each over the customers of one bucket.

A customer's hash is the first 32 bits of the MD5 digest of its id as text (an integer id
as its decimal digits, a text id as it is): MD5 is the same in every Python and every DuckDB
version (unlike Python's ``hash`` or DuckDB's ``hash()``), so a customer stays in its bucket
from night to night, and :func:`bucket_of` (Python), the DuckDB macro ``in_part(id)``
(:func:`register_part`) and the lake's stored ``customer_hash`` column agree on every id.

Bucket ``i`` of ``K`` is a contiguous range of hashes, ``[ceil(i * 2**32 / K), ceil((i+1) *
2**32 / K))`` (:func:`hash_range`), not a residue modulo K: the lake keeps each file's rows
sorted by ``customer_hash`` in small row groups (:mod:`pipeline.ingestion.lake`), so a piece
reads only the row groups whose hash range meets its own (Parquet min/max statistics), for any
K, without a layout per K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.ingestion.buckets import HASH_SQL, customer_hash


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


HASH_SPACE = 1 << 32


def bucket_of_hash(hashes: np.ndarray, count: int) -> np.ndarray:
    """The bucket in ``[0, count)`` of each 32-bit customer hash: ``hash * count >> 32``."""
    return (np.asarray(hashes, dtype=np.int64) * count) >> 32


def bucket_of(ids: pd.Series, count: int) -> np.ndarray:
    """Each id's bucket in ``[0, count)``."""
    return bucket_of_hash(customer_hash(ids), count)


def hash_range(part: Part) -> tuple[int, int]:
    """The half-open range ``[lo, hi)`` of the customer hashes in ``part``'s bucket."""
    part.check()

    def edge(i: int) -> int:
        return -(-i * HASH_SPACE // part.count)

    return edge(part.index), edge(part.index + 1)


#: the same rule in DuckDB: the parameters live in a one-row table (no value in the SQL text)
_PART_TABLE = "CREATE OR REPLACE TEMP TABLE churnflow_part AS SELECT $index::UBIGINT AS idx, $count::UBIGINT AS cnt"
_PART_MACRO = ("CREATE OR REPLACE TEMP MACRO in_part(id) AS "
               f"(({HASH_SQL.format(id='id')} * (SELECT cnt FROM churnflow_part)) >> 32) "
               "= (SELECT idx FROM churnflow_part)")


def register_part(con: Any, part: Part) -> None:
    """Define ``in_part(id)`` on a DuckDB connection: true for the ids in ``part``'s bucket."""
    part.check()
    con.execute(_PART_TABLE, {"index": part.index, "count": part.count})
    con.execute(_PART_MACRO)
