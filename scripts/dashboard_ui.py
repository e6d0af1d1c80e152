"""``make dashboard``: Evidently's UI on churnflow's dashboard of nights.

- Workspace: ``dashboard_workspace`` (default ``<data_dir>/dashboard``; ``make airflow``'s live
  business is ``CHURNFLOW_DATA_DIR=data/live``). The project ``churnflow: <model_name>`` holds a
  snapshot per night, added by the nightly's ``dashboard_snapshot`` task; nights already in
  the results store without a snapshot (a store from before the dashboard) are added first.
- UI: http://localhost:8000 (``DASHBOARD_PORT``): Projects > churnflow > Dashboard, panels over
  the nights; Reports lists the nights' pages, which the nightly e-mail links (``dashboard_url``).
- With ``dashboard_workspace`` set to a running Evidently UI's URL there is nothing to start.
- Ctrl-C stops it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from serve import serve  # scripts/ is on sys.path when run as a script

BIN = Path(sys.executable).parent


def main() -> int:
    from pipeline.config import load_settings
    from pipeline.monitoring import dashboard

    settings = load_settings()
    location = settings.dashboard_location
    if location.startswith(("http://", "https://")):
        print(f"dashboard_workspace is {location}: the nightly writes to that Evidently UI; open it there")
        return 0
    added = dashboard.rebuild(settings, missing_only=True)["nights_added"]
    port = int(os.environ.get("DASHBOARD_PORT", "8000"))
    host = os.environ.get("DASHBOARD_HOST", "127.0.0.1")
    print(f"==> Evidently dashboard of churnflow's nights ({location}{f', {added} nights added' if added else ''}): "
          f"http://localhost:{port}  (Ctrl-C stops it)", flush=True)
    if settings.dashboard_url.rstrip("/") not in ("", f"http://localhost:{port}"):
        print(f"    the nightly e-mails link each night's page at {settings.dashboard_url} (dashboard_url)", flush=True)
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
    return serve([str(BIN / "evidently"), "ui", "--workspace", location, "--host", host,
                             "--port", str(port)], env)


if __name__ == "__main__":
    sys.exit(main())
