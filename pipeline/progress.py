"""Progress lines for long work: counts, elapsed time and an ETA, at most every few seconds.

They go to the module's logger, so they show in the Airflow task log and on the command
line alike::

    ingest events: 120/365 days (33%), 41,302,118 rows, 12 rejected, 1m05s elapsed, ETA 2m12s
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("pipeline.progress")


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Reports ``done`` of ``total`` ``unit`` for ``what`` every ``every_s`` seconds at most
    (and always on :meth:`finish`). The ETA extrapolates the rate so far."""

    def __init__(self, what: str, total: float, unit: str, *, every_s: float = 10.0) -> None:
        self.what, self.total, self.unit, self.every_s = what, float(total), unit, every_s
        self.started = time.monotonic()
        self._last = self.started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, done: float, detail: str = "") -> str:
        elapsed = self.elapsed()
        share = done / self.total if self.total > 0 else 1.0
        eta = elapsed * (1 - share) / share if 0 < share < 1 else 0.0
        counts = f", {detail}" if detail else ""
        return (f"{self.what}: {done:,.0f}/{self.total:,.0f} {self.unit} ({share:.0%}){counts}, "
                f"{duration(elapsed)} elapsed" + (f", ETA {duration(eta)}" if share < 1 else ""))

    def update(self, done: float, detail: str = "") -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info("%s", self.line(done, detail))

    def finish(self, detail: str = "") -> None:
        log.info("%s", self.line(self.total, detail))
