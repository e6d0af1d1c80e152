"""``make airflow`` (``python -m churnflow_sim.standalone``): a local Airflow 3 (standalone:
scheduler, dag-processor, triggerer, API server with the UI) serving the churnflow DAGs on a
*live* simulated business.

- UI: http://localhost:8080 (``AIRFLOW_PORT``), user ``admin``, password ``admin`` (local
  development only: the password file lives in .airflow/).
- Data: ``CHURNFLOW_DATA_DIR`` (default ``data/live/``). Unless it already holds one, a live
  business is generated there, anchored on today: its source database and landing files
  run up to yesterday, and ``churn_landing_simulator`` lands each new day at midnight. Sizes:
  ``LIVE_CUSTOMERS`` (3000), ``LIVE_MONTHS`` (6 months of history), ``LIVE_SEED`` (7);
  ``LIVE_DRIFT_FROM`` (default 10 days ago; "" for none) injects a price rise and a new
  channel. Without a champion model, a first one is trained in-process before Airflow
  starts, so the first scheduled night can score (what to expect is said first, scaled by the
  size and the machine's load from the measured default; how long it took, after). ``CHURNFLOW_LIVE=0`` serves the data dir
  as it is (no generation, no training).
- E-mail: unless an ``smtp_default`` connection exists (UI, REST API, CLI, or
  ``AIRFLOW_CONN_SMTP_DEFAULT``), one is created pointing at a local SMTP server on
  127.0.0.1:8025 (``LIVE_SMTP_PORT``) that saves every message under ``data/outbox/``
  (``CHURNFLOW_OUTBOX``). A connection you define is never overwritten.
- Ctrl-C (or SIGTERM) stops every Airflow component and the SMTP server.

It works from a fresh shell: the virtualenv's ``bin`` goes on PATH, because standalone
starts its components as a bare ``airflow`` command.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import REPO_ROOT as ROOT  # the checkout: its dags/, data/ and .airflow/

if TYPE_CHECKING:
    from churnflow_sim.smtp_sink import SmtpSink

BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
HOME = Path(os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow")))
PORT = int(os.environ.get("AIRFLOW_PORT", os.environ.get("AIRFLOW__API__PORT", "8080")))
os.environ["AIRFLOW__API__PORT"] = str(PORT)
os.environ.setdefault("AIRFLOW__API__BASE_URL", f"http://localhost:{PORT}")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
os.environ.setdefault("CHURNFLOW_DATA_DIR", str(ROOT / "data" / "live"))
# tasks fork from workers that already imported the heavy libraries (churnflow_airflow.executors)
os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "churnflow_airflow.executors.PreloadingLocalExecutor")
STOP_GRACE_S = 8  # then SIGKILL: every component is gone well within 15 s of Ctrl-C, even under load
#: the live business's default size (LIVE_CUSTOMERS x LIVE_MONTHS)
DEFAULT_CUSTOMERS, DEFAULT_MONTHS = 3000, 6
#: what a first start takes at the default size on 2 free cores, measured (python -m churnflow_sim.standalone from a
#: bare PATH, empty data dir and AIRFLOW_HOME, 2026-12): the first model 53 s (ingest and training set 14 s, the
#: search 24 s, fit, calibration and registration 12 s), Airflow from `airflow standalone` to the UI 14 s. The
#: model's part grows with the customers and months (rows of the training set); a busy machine takes longer (expect)
FIRST_MODEL_FIXED_S, FIRST_MODEL_DEFAULT_S, AIRFLOW_START_S = 10.0, 55.0, 15.0


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def about(seconds: float) -> str:
    """A duration as a person says it ahead: "about 20 s", "about a minute", "about 3 minutes", "about 2 hours"."""
    if seconds < 45:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    if minutes >= 90:
        return f"about {round(minutes / 60)} hours"
    return "about a minute" if minutes <= 1 else f"about {minutes} minutes"


def expect(seconds: float) -> str:
    """What to expect of work measured at ``seconds`` on 2 free cores, on this machine now: a busy one
    (its 1-minute load above its cores) takes about load/cores times longer (measured at a load of 14 on
    2 cores: the first model 9x, Airflow's start 4x)."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load <= 1.5 * cores:
        return f"{about(seconds)} on 2 free cores"
    return f"{about(seconds * load / cores)}: this machine is busy, load {load:.0f} on {cores} cores"


def took(seconds: float) -> str:
    """A measured duration: "53 s", "2 min 5 s"."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def first_model_estimate(customers: int, months: int) -> float:
    """Seconds the first model takes for a live business of ``customers`` x ``months`` (on 2 free cores): the
    measured default, its size-dependent part scaled by the rows of the training set."""
    scale = (customers / DEFAULT_CUSTOMERS) * (max(months - 1, 1) / (DEFAULT_MONTHS - 1))
    return FIRST_MODEL_FIXED_S + (FIRST_MODEL_DEFAULT_S - FIRST_MODEL_FIXED_S) * scale


def prepare_business() -> None:
    """A live business in the data dir and a champion model to score with."""
    from churnflow_sim import simulator
    from pipeline.config import load_settings
    from pipeline.model import registry

    settings = load_settings()
    today = dt.datetime.now(dt.UTC).date()
    if not simulator.is_live(settings):
        drift = os.environ.get("LIVE_DRIFT_FROM", (today - dt.timedelta(days=10)).isoformat())
        say(f"generating a live business into {settings.data_dir} (data up to {today - dt.timedelta(days=1)})")
        customers, months = live_size()
        cmd = [sys.executable, "-m", "pipeline", "generate", "--live", "--until", today.isoformat(),
               "--customers", str(customers), "--months", str(months),
               "--seed", os.environ.get("LIVE_SEED", "7")] + (["--drift-from", drift] if drift else [])
        subprocess.run(cmd, check=True)
    else:
        say(f"live business in {settings.data_dir}: landing what happened before {today}")
        simulator.land(settings, today)
    if registry.champion(settings) is None:
        customers, months = live_size()
        say(f"no champion model yet: training a first one as of {today} for {customers:,} customers x {months} months "
            f"({expect(first_model_estimate(customers, months))})")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pipeline", "run-training", "--date", today.isoformat()], check=True,
                       stdout=subprocess.DEVNULL)
        say(f"champion: {registry.require_champion(settings).version} (trained in {took(time.monotonic() - started)})")


def live_size() -> tuple[int, int]:
    """The live business's customers and months of history (LIVE_CUSTOMERS, LIVE_MONTHS)."""
    return (int(os.environ.get("LIVE_CUSTOMERS", str(DEFAULT_CUSTOMERS))),
            int(os.environ.get("LIVE_MONTHS", str(DEFAULT_MONTHS))))


def ensure_smtp_connection(port: int) -> bool:
    """Create ``smtp_default`` pointing at the local sink unless one is defined; True if ours."""
    if os.environ.get("AIRFLOW_CONN_SMTP_DEFAULT"):
        say("smtp_default comes from AIRFLOW_CONN_SMTP_DEFAULT")
        return False
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        existing = session.query(Connection).filter(Connection.conn_id == "smtp_default").one_or_none()
        if existing is not None:
            ours = existing.host == "127.0.0.1" and existing.port == port
            say(f"smtp_default: {existing.host}:{existing.port}" + (" (the local sink)" if ours else " (yours)"))
            return ours
        session.add(Connection(conn_id="smtp_default", conn_type="smtp", host="127.0.0.1", port=port,
                               description="churnflow local SMTP sink (make airflow); edit to use your server",
                               extra=json.dumps({"disable_ssl": True, "disable_tls": True})))
    say(f"smtp_default created: the local SMTP sink on 127.0.0.1:{port}")
    return True


def _serving(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(*procs: subprocess.Popen) -> None:
    """SIGTERM to each process's whole group (every component), SIGKILL what is left after the grace."""
    live = [p for p in procs if p.poll() is None or _group_alive(p.pid)]
    if not live:
        return
    say("stopping Airflow ...")
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 3)):
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for p in live:
                p.poll()
            live = [p for p in live if _group_alive(p.pid)]
            if not live:
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def prepare_home(port: int) -> bool:
    """AIRFLOW_HOME with the admin/admin password file; False (said why) if ``port`` is taken."""
    HOME.mkdir(parents=True, exist_ok=True)
    passwords = HOME / "simple_auth_manager_passwords.json.generated"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": "admin"}))
    if _serving(port):
        print(f"port {port} is already in use: stop what serves it or set AIRFLOW_PORT", file=sys.stderr)
        return False
    return True


def migrate_metadata() -> None:
    say(f"preparing the Airflow metadata database ({HOME})")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)


def start_smtp_sink() -> SmtpSink | None:
    """The local SMTP sink when ``smtp_default`` is ours (None: the user's own); OSError says why not."""
    smtp_port = int(os.environ.get("LIVE_SMTP_PORT", "8025"))
    if not ensure_smtp_connection(smtp_port):
        return None
    import logging

    from churnflow_sim.smtp_sink import SmtpSink

    # aiosmtpd's per-connection notes ("Peer", "EOF received", "connection lost") at INFO: its warnings still show
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    outbox = Path(os.environ.get("CHURNFLOW_OUTBOX", ROOT / "data" / "outbox"))
    try:
        sink = SmtpSink(outbox=outbox, port=smtp_port).__enter__()
    except OSError as exc:
        raise OSError(f"cannot start the local SMTP sink on 127.0.0.1:{smtp_port} ({exc}): set LIVE_SMTP_PORT, "
                      "or point smtp_default at your mail server") from exc
    say(f"e-mails are caught by the local SMTP server on 127.0.0.1:{smtp_port} -> {outbox}/")
    return sink


def handle_stop_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt. Explicit handlers: a shell that started us
    in the background left SIGINT ignored, and a closed terminal must not leave components running."""
    def _terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)


def banner(title: str) -> str:
    return (f"\n  {title}: http://localhost:{PORT}  (user admin, password admin)\n"
            f"  data: {os.environ['CHURNFLOW_DATA_DIR']}\n"
            "  DAGs: churn_training, churn_nightly (paused at creation: unpause them or use Trigger);\n"
            "        churn_landing_simulator lands each new day of the live business at midnight\n")


def main() -> int:
    if not prepare_home(PORT):
        return 1
    if os.environ.get("CHURNFLOW_LIVE", "1") != "0":
        prepare_business()
    migrate_metadata()
    try:
        sink = start_smtp_sink()
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1

    say(f"starting Airflow: scheduler, DAG processor, triggerer, API server ({expect(AIRFLOW_START_S)})")
    started = time.monotonic()
    proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], start_new_session=True)
    handle_stop_signals()
    try:
        while not _serving(PORT):
            if proc.poll() is not None:
                print(f"airflow standalone exited with {proc.returncode} before serving port {PORT}", file=sys.stderr)
                return 1
            time.sleep(1)
        say(f"Airflow serves in {took(time.monotonic() - started)}")
        print(banner("churnflow Airflow") + "  Ctrl-C stops everything.\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)
        if sink is not None:
            sink.__exit__(None, None, None)
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
