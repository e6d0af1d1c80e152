"""``make airflow``: a local Airflow (standalone) serving the churnflow DAGs and the UI.

- UI: http://localhost:8080, user ``admin``, password ``admin`` (local development only:
  the password file lives in .airflow/ and can be changed there).
- E-mail: unless ``AIRFLOW_CONN_SMTP_DEFAULT`` is already set, a local SMTP server on
  127.0.0.1:8025 catches the nightly report and saves it under data/outbox/.
- Data: the embedded defaults (data/source.db, data/lake, ...); run ``make demo`` first,
  or ``python -m pipeline generate ...``, so there is something to ingest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow")))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")


def main() -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    passwords = HOME / "simple_auth_manager_passwords.json.generated"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": "admin"}))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)

    sink = None
    if "AIRFLOW_CONN_SMTP_DEFAULT" not in os.environ:
        from pipeline.config import load_settings
        from pipeline.smtp_sink import SmtpSink

        sink = SmtpSink(outbox=load_settings().data_dir / "outbox", port=8025).__enter__()
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = sink.airflow_connection_uri()
    print(
        "\n  churnflow Airflow: http://localhost:8080  (user admin, password admin)\n"
        "  DAGs: churn_training, churn_nightly (paused at creation: unpause or use 'Trigger')\n"
        + (f"  e-mails are caught by a local SMTP server on 127.0.0.1:{sink.port} -> data/outbox/\n" if sink else "")
        + "  Ctrl-C stops everything.\n",
        flush=True,
    )
    try:
        return subprocess.call([sys.executable, "-m", "airflow", "standalone"])
    except KeyboardInterrupt:
        return 0
    finally:
        if sink is not None:
            sink.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
