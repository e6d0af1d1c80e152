"""Run one UI server in the foreground for a ``make`` target: Ctrl-C (or the terminal closing)
stops it and everything it started."""

from __future__ import annotations

import os
import signal
import subprocess


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` in its own process group until it exits or this process is asked to stop."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
