"""Artifact layout and atomic writes.

Every artifact lives under a path keyed by DAG, logical date and task
(``<runs>/<dag_id>/<YYYY-MM-DD>/<task>/<name>``; ``<runs>`` is ``<data_dir>/runs`` or
``artifacts_url``), so a rerun of the same date replaces its outputs instead of adding new
ones. Every write goes to a temporary name in the same directory and is then renamed into
place (on an object store: written locally, then uploaded as one complete object,
:mod:`pipeline.storage`): a crash leaves at most a ``.tmp-*`` file, never a half-written file
under the final name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import Settings
from pipeline.storage import Location, ObjectPath

#: a local path or an object, given and returned as the same type
AnyLocation = TypeVar("AnyLocation", bound=Path | ObjectPath)


def as_date(value: str | dt.date | dt.datetime | pd.Timestamp) -> dt.date:
    """Normalise a logical date given as a string, date, datetime or Timestamp."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def check_writable(settings: Settings) -> Path:
    """The data dir exists (or can be made), takes a file and has ``min_free_disk_mb`` free:
    else a DataError naming the setting, before any work (every run's first task checks); an
    object store that ``lake_url`` or ``artifacts_url`` names is reachable and has its bucket
    (:func:`pipeline.storage.check`)."""
    from pipeline.errors import DataError

    root = Path(settings.data_dir)
    probe = root / f".write-test-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"config data_dir (CHURNFLOW_DATA_DIR): {root.resolve()} is not writable: "
                        f"{exc.strerror or exc}") from exc
    free_mib = shutil.disk_usage(root).free / 2**20
    if free_mib < settings.min_free_disk_mb:
        raise DataError(f"config data_dir (CHURNFLOW_DATA_DIR): {root.resolve()} has {free_mib:,.0f} MiB free, less "
                        f"than min_free_disk_mb ({settings.min_free_disk_mb:,}): free space before this run "
                        "writes anything (a run that fills the disk half-way leaves a half-published night)")
    storage.check(settings)
    return root


def run_dir(settings: Settings, dag_id: str, logical_date: str | dt.date, task: str) -> Location:
    """Directory for one task's artifacts of one DAG run (a local one created on demand)."""
    return storage.make_dir(storage.artifacts_root(settings) / dag_id / as_date(logical_date).isoformat() / task)


@contextlib.contextmanager
def atomic_path(final: Location | str) -> Iterator[Path]:
    """Yield a temporary local path (beside ``final``, or for an object in TMPDIR); put it in
    place as ``final`` on success (a rename; an object: one upload)."""
    final = storage.location(final)
    tmp = storage.scratch_for(final)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        storage.publish_file(tmp, final)
    except OSError as exc:
        if exc.filename or exc.errno is None:
            raise
        # ENOSPC / EFBIG / EIO from a write carry no file name: say which artifact could not be written
        raise OSError(exc.errno, f"{exc.strerror or exc}: writing {final}", str(final)) from exc
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_parquet(df: pd.DataFrame, path: AnyLocation, schema: pa.Schema | None = None) -> AnyLocation:
    """Write ``df`` to ``path`` atomically as Parquet and return the path."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


class ParquetAppender(Generic[AnyLocation]):
    """One Parquet file written chunk by chunk, published atomically on :meth:`close`.

    Memory is bounded by one chunk. The schema is ``schema`` if given (extra columns of a
    chunk are an error, missing ones are written as nulls), else the first chunk's. A column
    typed null (from an empty chunk, or one whose values are all null) never fixes the file's
    type: the first chunk that has a real type for it gives it, and the rows written before are
    rewritten as nulls of that type (:meth:`_settle`). With ``keep_empty=False`` a file that
    received no rows is not written, and an earlier file under that name is removed (a rerun
    that rejects nothing leaves no stale quarantine). Leaving the ``with`` block by an
    exception discards everything.
    """

    def __init__(self, path: AnyLocation, schema: pa.Schema | None = None, *, keep_empty: bool = False) -> None:
        self.path = path
        self.schema = schema
        self.keep_empty = keep_empty
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp = storage.scratch_for(self.path)
        self._done = False
        self.published: AnyLocation | None = None

    def write(self, df: pd.DataFrame | pa.Table) -> None:
        table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        if self.schema is None:
            self.schema = table.schema.remove_metadata()
        extra = [n for n in table.schema.names if n not in self.schema.names]
        if extra:
            raise ValueError(f"{self.path.name}: columns {extra} are not in the file's schema {self.schema.names}")
        self._settle(table.schema)
        if table.num_rows == 0:  # nothing to write: an empty chunk only tells the columns
            return
        if self._writer is None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        arrays = [table.column(f.name).cast(f.type) if f.name in table.schema.names
                  else pa.nulls(table.num_rows, f.type) for f in self.schema]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += table.num_rows

    def _settle(self, chunk: pa.Schema) -> None:
        """Give each column of the file's schema still typed null the real type ``chunk`` has
        for it; the rows already written are rewritten to that schema (their values of such a
        column are all null), one row group at a time."""
        assert self.schema is not None
        found = {f.name: chunk.field(f.name).type for f in self.schema if pa.types.is_null(f.type)
                 and f.name in chunk.names and not pa.types.is_null(chunk.field(f.name).type)}
        if not found:
            return
        self.schema = pa.schema([f.with_type(found[f.name]) if f.name in found else f for f in self.schema])
        if self._writer is None:
            return
        self._writer.close()
        old, self._tmp = self._tmp, storage.scratch_for(self.path)
        self._writer = pq.ParquetWriter(self._tmp, self.schema)
        try:
            with pq.ParquetFile(old) as written:
                for i in range(written.num_row_groups):
                    group = written.read_row_group(i)
                    self._writer.write_table(pa.Table.from_arrays(
                        [group.column(f.name).cast(f.type) for f in self.schema], schema=self.schema))
        finally:
            old.unlink(missing_ok=True)

    def close(self) -> AnyLocation | None:
        """Publish the file (None, and any earlier file removed, when empty and not ``keep_empty``)."""
        if self._done:
            return self.published
        self._done = True
        if self._writer is None and self.keep_empty:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, self.schema or pa.schema([]))
        if self._writer is None:
            storage.remove(self.path)
            return None
        self._writer.close()
        storage.publish_file(self._tmp, self.path)
        self.published = self.path
        return self.path

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetAppender[AnyLocation]:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_text(text: str, path: AnyLocation) -> AnyLocation:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_bytes(data: bytes, path: AnyLocation) -> AnyLocation:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_zip(source: Path, path: AnyLocation, arcname: str | None = None) -> AnyLocation:
    """Deflate the local file ``source`` into the zip file ``path`` (as ``arcname``, default its own name), atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.write(source, arcname or Path(source).name)
    return path


def replace_dir(build: Path, final: Path) -> Path:
    """Swap a fully built directory ``build`` into place as ``final``.

    The previous ``final`` (if any) is moved aside and deleted only after the swap,
    so readers never see a half-filled directory under the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".old-{uuid.uuid4().hex}-{final.name}")
    if final.exists():
        os.replace(final, old)
    os.replace(build, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def nan_to_none(value: Any) -> Any:
    """``value`` with every float NaN, also inside dicts and lists, replaced by ``None``
    (JSON has no NaN, and neither has Airflow's XCom)."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return None if isinstance(value, float) and value != value else value
