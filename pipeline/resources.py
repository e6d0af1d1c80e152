"""What one task cost: wall time and its own peak resident memory, saved beside its artifacts.

:func:`measured` resets the process's peak-RSS mark on entry (``/proc/self/clear_refs``,
Linux), so the peak it reports is the task's own even when several tasks share a process
(``dag.test()``, the command-line flows: what earlier blocks freed is handed back to the OS
first), and writes ``resources.json`` into the task's run
folder on exit (also when the task fails)::

    {"task": "train", "started_at": "2026-12-01T21:05:39+00:00", "wall_s": 312.4,
     "peak_rss_bytes": 3411017728, "ok": true}

Where the mark cannot be reset (not Linux), the process's lifetime peak is reported and
``peak_is_process_lifetime`` says so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.artifacts import write_text
from pipeline.storage import Location

log = logging.getLogger(__name__)

RESOURCES_FILE = "resources.json"


def release_memory(*, collect: bool = True) -> None:
    """Hand freed memory back to the OS: Python's garbage (``collect``), glibc's arenas
    (``malloc_trim``) and Arrow's pool. What one task freed then no longer counts against the next
    one that shares its process (``dag.test()``, ``run-training``), as it would not in separate
    task processes. A full garbage collection walks every live object (~0.5 s in a process
    holding Airflow, pandas and a test session), so :func:`measured` collects once per block, on
    its way out: the next block sharing the process starts from that."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (``VmHWM``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak RSS since the last reset (``VmHWM``), else since it started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


@contextlib.contextmanager
def measured(task: str, out_dir: Location) -> Iterator[None]:
    """Time the block and record its peak RSS in ``out_dir/resources.json`` (the mark is reset
    after :func:`release_memory`, so the peak is the block's own; the garbage of an earlier block
    sharing the process was collected when it ended)."""
    release_memory(collect=False)
    fresh = reset_peak_rss()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        wall, peak = time.monotonic() - started, peak_rss_bytes()
        release_memory()
        record = {"task": task, "started_at": started_at, "wall_s": round(wall, 2), "peak_rss_bytes": peak, "ok": ok}
        if not fresh:
            record["peak_is_process_lifetime"] = True
        try:
            write_text(json.dumps(record), out_dir / RESOURCES_FILE)
        except OSError as exc:  # never hide the task's own outcome behind this
            log.warning("could not write %s: %s", out_dir / RESOURCES_FILE, exc)
        log.info("task %s: %.1f s wall, peak RSS %s%s", task, wall, gib(peak), "" if ok else " (failed)")


def read(runs_dir: Path, dag_id: str, day: str) -> list[dict]:
    """Every task's record of one run (``runs/<dag>/<day>/*/resources.json``), in the order they started."""
    records = [json.loads(p.read_text()) for p in (Path(runs_dir) / dag_id / day).glob(f"*/{RESOURCES_FILE}")]
    return sorted(records, key=lambda r: (r.get("started_at", ""), r["task"]))
