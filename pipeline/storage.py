"""Where the lake and the run artifacts live: a local folder (the default) or an object store.

``lake_url`` and ``artifacts_url`` (:mod:`pipeline.config`) name either a local folder (empty:
``<data_dir>/lake`` and ``<data_dir>/runs``) or ``s3://bucket/prefix``, read and written through
fsspec (s3fs: ``pip install 'churnflow[s3]'``). The endpoint and the credentials come from the
standard AWS places (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws/config``, an instance role).

A place is a :data:`Location`: a :class:`~pathlib.Path`, or an :class:`ObjectPath` (an
``s3://`` URL with the few path operations the pipeline uses: ``/``, ``name``, ``parent``).
``str()`` of either is what XCom carries, and :func:`location` turns it back.

Every write is atomic, in both: a file is written in full under a temporary local name
(:func:`scratch_for`) and then published (:func:`publish_file`) by a rename beside it, or by
one upload of the complete object (an S3 PUT, or a multipart upload completed at once: a reader
sees the old object or the new one, never a part). An object store has no directory rename:
replacing a lake partition writes its one new object, then deletes any other object of that
day or month (a partition is one file, so the overwrite itself is the switch).

DuckDB reads an object-store lake through the same filesystem (:func:`register_duckdb`,
``con.register_filesystem``): it fetches the byte ranges it needs of a large object, no table is
downloaded first; a small object (most of a lake: day files, the slowly changing tables' month
files) is fetched whole, once per connection, into a local copy DuckDB then reads
(:class:`ObjectCopies`), where each of DuckDB's opens of an ``s3://`` path would be a GET.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import functools
import os
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipeline.config import URL_SETTINGS, Settings, is_url, parse_url
from pipeline.errors import first_line

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

INSTALL_HINT = "pip install 'churnflow[s3]'"


class StorageError(RuntimeError):
    """An object store that cannot be used (s3fs missing, endpoint unreachable, no bucket)."""


@dataclass(frozen=True, order=True)
class ObjectPath:
    """An object (or a prefix) in an object store: ``s3://bucket/key``."""

    url: str

    def __post_init__(self) -> None:
        scheme, bucket, key = parse_url(self.url)
        object.__setattr__(self, "url", f"{scheme}://{bucket}" + (f"/{key}" if key else ""))

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, part: str | os.PathLike[str]) -> ObjectPath:
        part = str(part).strip("/")
        return ObjectPath(f"{self.url}/{part}") if part else self

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]

    @property
    def bucket(self) -> str:
        return parse_url(self.url)[1]

    @property
    def key(self) -> str:
        """``bucket/key``: the path fsspec names it by."""
        return self.url.partition("://")[2]

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def parent(self) -> ObjectPath:
        head = self.key.rpartition("/")[0]
        return ObjectPath(f"{self.scheme}://{head}") if head else self

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name


#: a local folder or file, or an object in an object store
Location = Path | ObjectPath


def location(value: str | os.PathLike[str] | ObjectPath) -> Location:
    """The :data:`Location` of a path or URL as XCom carries it (``str()`` of a Location)."""
    if isinstance(value, ObjectPath | Path):
        return value
    return ObjectPath(str(value)) if is_url(str(value)) else Path(value)


def lake_root(settings: Settings) -> Location:
    """The lake: ``lake_url``, else ``<data_dir>/lake``."""
    return location(settings.lake_url) if settings.lake_url else settings.lake_dir


def artifacts_root(settings: Settings) -> Location:
    """The run artifacts (``<root>/<dag>/<D>/<task>/``): ``artifacts_url``, else ``<data_dir>/runs``."""
    return location(settings.artifacts_url) if settings.artifacts_url else settings.runs_dir


# ------------------------------------------------------------------ the filesystem
def filesystem() -> Any:
    """The process's s3fs filesystem (one per process: an fsspec async filesystem does not
    survive a fork). Listings are never cached: another task may have written since."""
    return _filesystem(os.getpid())


@functools.cache
def _filesystem(pid: int) -> Any:
    try:
        import s3fs
    except ImportError as exc:
        raise StorageError(f"s3:// storage needs s3fs: {INSTALL_HINT}") from exc
    return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)


def endpoint() -> str:
    """The object store's endpoint as botocore resolves it (AWS_ENDPOINT_URL, ~/.aws/config, AWS)."""
    try:
        fs = filesystem()
        fs.connect()
        return str(fs.s3.meta.endpoint_url)
    except Exception:  # only for messages: say where the setting comes from instead
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3's default endpoint"


def check(settings: Settings) -> None:
    """Each object store the settings name is usable: s3fs installed, the endpoint reachable, the
    bucket there. Else a one-line :class:`StorageError` naming the setting (a run's first task
    checks, before any work)."""
    for setting in URL_SETTINGS:
        root = location(getattr(settings, setting) or ".")
        if not isinstance(root, ObjectPath):
            continue
        try:
            fs = filesystem()
        except StorageError as exc:
            raise StorageError(f"config {setting}: {root}: {exc}") from exc
        try:
            info = fs.info(root.bucket)
        except FileNotFoundError as exc:
            raise StorageError(f"config {setting}: {root}: bucket {root.bucket!r} does not exist at {endpoint()}") from exc
        except PermissionError as exc:
            raise StorageError(f"config {setting}: {root}: access to bucket {root.bucket!r} at {endpoint()} denied "
                               "(credentials: AWS_ACCESS_KEY_ID / AWS_PROFILE)") from exc
        except Exception as exc:  # botocore's connection and credential errors share no base but Exception
            raise StorageError(f"config {setting}: {root}: cannot use the object store at {endpoint()} "
                               f"(AWS_ENDPOINT_URL): {first_line(exc)}") from exc
        if info.get("type") != "directory":
            raise StorageError(f"config {setting}: {root}: {root.bucket!r} is not a bucket at {endpoint()}")


# ------------------------------------------------------------------ files
def glob(folder: Location, pattern: str) -> list[Location]:
    """The files under ``folder`` matching ``pattern`` (``date=*/*.parquet``: ``*`` within one
    level), sorted. On an object store one recursive listing (a LIST request per 1,000 objects),
    filtered here: fsspec's own glob lists each matched folder again and asks for each file."""
    found: list[Location] = []
    if isinstance(folder, ObjectPath):
        wanted = pattern.split("/")
        for key in filesystem().find(folder.key):
            parts = key.removeprefix(folder.key + "/").split("/")
            if len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted)):
                found.append(ObjectPath(f"{folder.scheme}://{key}"))
        found.sort(key=str)
    else:
        found += sorted(Path(folder).glob(pattern))
    return found


def is_file(path: Location) -> bool:
    if isinstance(path, ObjectPath):
        return bool(filesystem().isfile(path.key))
    return Path(path).is_file()


def size(path: Location) -> int:
    if isinstance(path, ObjectPath):
        return int(filesystem().size(path.key))
    return Path(path).stat().st_size


def remove(path: Location) -> None:
    """Delete a file (nothing when it is not there)."""
    if isinstance(path, ObjectPath):
        with contextlib.suppress(FileNotFoundError):
            filesystem().rm_file(path.key)
    else:
        Path(path).unlink(missing_ok=True)


def make_dir(folder: Location) -> Location:
    """Create a local folder (with its parents); an object store has no folders to make."""
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def scratch_for(final: Location) -> Path:
    """A temporary local file to write ``final``'s content into: beside it (a rename publishes
    it) or, for an object, in the temporary directory (``TMPDIR``; an upload publishes it).
    Its folder is made by whoever writes it."""
    name = f".tmp-{uuid.uuid4().hex}-{final.name}"
    if isinstance(final, ObjectPath):
        return Path(tempfile.gettempdir()) / name
    return final.with_name(name)


def publish_file(tmp: Path, final: Location) -> None:
    """Put the complete local file ``tmp`` in place as ``final``, atomically: a rename, or one
    upload of the whole object; ``tmp`` is gone afterwards."""
    if isinstance(final, ObjectPath):
        filesystem().put_file(str(tmp), final.key)
        tmp.unlink()
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)


@contextlib.contextmanager
def opened(path: Location) -> Iterator[Any]:
    """What pyarrow and pandas read ``path`` from: the local path, or an open object."""
    if isinstance(path, ObjectPath):
        with filesystem().open(path.key, "rb") as handle:
            yield handle
    else:
        yield path


@contextlib.contextmanager
def local_dir(folder: Location) -> Iterator[Path]:
    """A local folder to write ``folder``'s files in: ``folder`` itself, or (an object store) a
    temporary one whose files are uploaded into ``folder`` on leaving, also after an error
    (each file was written completely before)."""
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="churnflow-") as work:
        try:
            yield Path(work)
        finally:
            for file in sorted(p for p in Path(work).rglob("*") if p.is_file() and not p.name.startswith(".tmp-")):
                publish_file(file, folder / file.relative_to(work).as_posix())


def read_parquet(path: Location, columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    with opened(path) as source:
        return pd.read_parquet(source, columns=columns)


def read_arrow(path: Location, columns: list[str] | None = None, schema: pa.Schema | None = None,
               **options: Any) -> pa.Table:
    import pyarrow.parquet as pq

    with opened(path) as source:
        return pq.read_table(source, columns=columns, schema=schema, **options)


@contextlib.contextmanager
def parquet_file(path: Location) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile`` of ``path`` (an object is read as its batches are asked for)."""
    import pyarrow.parquet as pq

    with opened(path) as source:
        yield pq.ParquetFile(source)


def read_text(path: Location) -> str:
    if isinstance(path, ObjectPath):
        return str(filesystem().cat_file(path.key).decode("utf-8"))
    return Path(path).read_text(encoding="utf-8")


# ------------------------------------------------------------------ DuckDB
def register_duckdb(con: Any, settings: Settings, copies_dir: Path | None = None) -> None:
    """Let DuckDB read the object store the lake is on (``s3://`` paths in ``read_parquet``)
    through fsspec (:func:`listed_filesystem`): byte ranges on demand. With ``copies_dir`` (a
    local folder that lives as long as the connection), :func:`duckdb_paths` names the small
    objects by their local copies for this connection (:class:`ObjectCopies`)."""
    root = lake_root(settings)
    if isinstance(root, ObjectPath):
        fs = listed_filesystem(root)
        con.register_filesystem(fs)
        if copies_dir is not None:
            _COPIES[con] = ObjectCopies(fs, copies_dir)


def duckdb_paths(con: Any, paths: Sequence[Location]) -> list[str]:
    """The names DuckDB reads ``paths`` by on ``con``: a small object's local copy where the
    connection keeps them (:func:`register_duckdb` ``copies_dir``, :class:`ObjectCopies`), else
    the path or URL itself."""
    copies = _COPIES.get(con)
    return copies.local(paths) if copies is not None else [str(p) for p in paths]


class ObjectCopies:
    """Local copies of the small objects (up to :data:`WHOLE_OBJECT_MAX_BYTES`) one DuckDB
    connection reads: each fetched whole by one GET the first time it is asked for (the objects
    of one call in parallel threads), then read by DuckDB from local disk however often it opens
    it. Read through the filesystem, every open is a GET of its own: the schema read of
    ``union_by_name``, then each scan and each thread, about six per file (make bench,
    bench_partitions). A larger object keeps its URL: DuckDB reads only the byte ranges it needs
    (a nightly piece's row groups). Each copy is a file of its own, so concurrent reads never
    share a position. A connection only reads: nothing writes the lake while it is open, so a
    copy stays true for its life; the copies go with ``folder`` (the connection's temporary
    folder)."""

    def __init__(self, fs: Any, folder: Path) -> None:
        self.fs, self.folder = fs, folder
        self._local: dict[str, Path] = {}
        self._lock = threading.Lock()

    def local(self, paths: Sequence[Location]) -> list[str]:
        """``paths`` as DuckDB should read them: each small object's local copy (fetched now if
        it was not before), any other path as it is."""
        small = {p for p in paths if isinstance(p, ObjectPath) and self.fs.size(p.key) <= WHOLE_OBJECT_MAX_BYTES}
        with self._lock:
            todo = sorted(p for p in small if p.key not in self._local)
            fetched = self._fetch(todo)
            self._local.update(fetched)
            return [str(self._local[p.key]) if p in small else str(p) for p in paths]

    def _fetch(self, objects: Sequence[ObjectPath]) -> dict[str, Path]:
        """Fetch ``objects`` into the folder, in parallel threads: their keys and local copies."""
        if not objects:
            return {}
        targets = {p.key: self.folder / f"{len(self._local) + i:06d}-{p.name}" for i, p in enumerate(objects)}
        self.folder.mkdir(parents=True, exist_ok=True)

        def fetch(path: ObjectPath) -> None:
            try:
                self.fs.get_file(path.key, str(targets[path.key]))
            except Exception as exc:  # botocore's errors share no base but Exception
                raise StorageError(f"cannot read {path} from the object store at {endpoint()}: "
                                   f"{first_line(exc)}") from exc

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(objects))) as pool:
            list(pool.map(fetch, objects))
        return targets


#: the connections with local copies of their small objects (:func:`register_duckdb`)
_COPIES: weakref.WeakKeyDictionary[Any, ObjectCopies] = weakref.WeakKeyDictionary()
#: objects fetched at once into a connection's local copies
FETCH_THREADS = 16

def listed_filesystem(root: ObjectPath) -> Any:
    """An s3fs filesystem of its own for one DuckDB connection, holding the listing of everything
    under ``root`` (one LIST request per 1,000 objects). DuckDB asks for every file's size and
    lists its folder before reading it: answered from that listing, those cost no request (without
    it, about ten per file), and a small partition is then one ranged GET. A connection only
    reads: nothing writes the lake while it is open, so its listing stays true."""
    filesystem()  # s3fs is there (else the StorageError saying what to install)
    import s3fs

    class ListedS3(s3fs.S3FileSystem):
        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            # a small object is fetched whole by a file's first read: one GET, where ranged
            # reads of its footer, then of its columns, cost two or more
            if mode == "rb" and "cache_type" not in kwargs and self.size(path) <= WHOLE_OBJECT_MAX_BYTES:
                kwargs["cache_type"] = "all"
            return super()._open(path, mode, **kwargs)

    fs = ListedS3(use_listings_cache=True, skip_instance_cache=True)
    fs.find(root.key)
    return fs


#: an object up to this size is read whole by one GET when DuckDB opens it (:func:`listed_filesystem`)
WHOLE_OBJECT_MAX_BYTES = 16 * 2**20
