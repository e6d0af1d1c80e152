"""``make mlflow``: the MLflow UI (and tracking server) on churnflow's model store.

- Store: the settings' (``CHURNFLOW_DATA_DIR``, default ``data/``; ``make airflow``'s live
  business is ``CHURNFLOW_DATA_DIR=data/live``): ``<data_dir>/mlflow/mlflow.db`` and its
  artifacts, created empty if there is none yet. With ``mlflow_tracking_uri`` set to a server,
  there is nothing to start: it says where that server's UI is.
- UI: http://localhost:5000 (``MLFLOW_PORT``); the line it prints links the experiment
  ``model_name`` (MLflow's model-training view: one run per training, logged while it trains,
  a child run per candidate draw, the chosen one tagged ``churnflow.chosen`` and linked from
  its training run's description) and the registered model (its versions, each described in a
  sentence, and the ``champion`` alias). MLflow's empty "Default" experiment is deleted from
  churnflow's store (:func:`pipeline.model.tracking.retire_default_experiment`).
- The same server is a tracking server for other machines: point their
  ``mlflow_tracking_uri`` at it (new experiments keep their artifacts under
  ``<data_dir>/mlflow/artifacts``, served through it).
- Ctrl-C stops it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from serve import serve  # scripts/ is on sys.path when run as a script

BIN = Path(sys.executable).parent
#: MLflow 3.17's UI opens every experiment in its GenAI view (a blank Overview) unless the address
#: asks for the model-training view (or the user switched to it once in that browser)
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def main() -> int:
    from pipeline.config import load_settings
    from pipeline.model import tracking

    settings = load_settings()
    port = int(os.environ.get("MLFLOW_PORT", "5000"))
    host = os.environ.get("MLFLOW_HOST", "127.0.0.1")
    if not tracking.is_local(settings):
        print(f"mlflow_tracking_uri is {settings.mlflow_tracking_uri}: churnflow's models live on that server; open its "
              "UI there (nothing to start here)")
        return 0
    experiment = tracking.experiment_id(settings, settings.model_name)  # the store exists before the UI opens it
    artifacts = settings.mlflow_dir / "artifacts"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", settings.tracking_uri,
           "--serve-artifacts", "--artifacts-destination", artifacts.resolve().as_uri(),
           "--host", host, "--port", str(port), "--workers", "1"]
    print(f"==> MLflow UI on churnflow's store {settings.mlflow_dir}: http://localhost:{port}  (Ctrl-C stops it)\n"
          f"    training runs: http://localhost:{port}/#/experiments/{experiment}?{MODEL_TRAINING_VIEW}\n"
          f"    model versions and the champion: http://localhost:{port}/#/models/{settings.model_name}?"
          f"{MODEL_TRAINING_VIEW}", flush=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return serve(cmd, env)


if __name__ == "__main__":
    sys.exit(main())
