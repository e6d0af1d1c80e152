"""churnflow as an installed package: the wheel is built, installed (not editable) into a
fresh virtual environment and its CLI run from a folder that is not the repository, as on an
Airflow worker. The SQL and expectation suites must come from the package's resources, the
data folder from the working directory, and the demo/test tooling must not be in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: what building the wheel needs from the checkout (nothing else is copied)
SOURCES = ["pyproject.toml", "README.md", "pipeline", "churnflow_airflow", "sql", "expectations"]
NIGHT = "2025-05-31"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(src)], check=True, capture_output=True)
    (built,) = out.glob("churnflow-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its pinned dependencies (uv links them from its cache)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv (installed by make install) is needed to install the wheel's dependencies")
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "-c", str(ROOT / "requirements.lock"), str(wheel)], check=True, capture_output=True)
    return venv


def _run(venv: Path, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURNFLOW_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    proc = subprocess.run([str(venv / "bin" / "churnflow"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f"churnflow {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def test_the_wheel_carries_its_resources_and_not_the_demo_tooling(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    sql = {Path(n).name for n in names if n.startswith("pipeline/sql/") and n.endswith(".sql")}
    suites = {Path(n).name for n in names if n.startswith("pipeline/expectations/") and n.endswith(".json")}
    assert sql == {p.name for p in (ROOT / "sql").glob("*.sql")}
    assert suites == {p.name for p in (ROOT / "expectations").glob("*.json")}
    tooling = [n for n in names if n.startswith("churnflow_sim") or Path(n).stem in ("generate", "simulator", "smtp_sink")]
    assert not tooling, tooling
    # the Airflow plugin (the DAGs' timetable) is found by every component that has the wheel installed
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[airflow.plugins]" in text and "churnflow_airflow.plugin:ChurnflowPlugin" in text
    assert "churnflow_airflow/timetables.py" in names


def test_the_installed_cli_runs_from_another_folder(installed: Path, tmp_path: Path):
    """catalogue, then a whole night (ingest, features, score, drift report, monitoring) with
    a model trained by the checkout: the data folder is ./data of the working directory."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import pipeline, sys; print(pipeline.__file__)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed)), where  # the installed copy, not the checkout

    from pipeline.features.catalogue import feature_catalogue_markdown

    assert _run(installed, work, "catalogue").stdout.strip() == feature_catalogue_markdown().strip()

    refused = _run(installed, work, "generate", "--customers", "10", check=False)
    assert refused.returncode != 0 and "needs churnflow-sim" in refused.stderr

    import datetime as dt

    from churnflow_sim.generate import generate
    from pipeline.config import load_settings
    from pipeline.flows import run_training

    settings = load_settings(data_dir=work / "data", candidates="logreg", search_iterations=1, cv_folds=1,
                             training_snapshots=4)
    generate(settings, customers=400, months=6, seed=5, start=dt.date(2025, 1, 1), progress=None)
    run_training(settings, "2025-06-01")  # the checkout trains; the installed package scores with it
    night = _run(installed, work, "run-nightly", "--date", NIGHT)
    out = json.loads(night.stdout)
    assert out["scores"]["rows"] > 0 and Path(out["scores"]["path"]).is_relative_to(work / "data")
    assert Path(out["report"]["report"]).is_file() and out["run"]["model_version"] == out["scores"]["model_version"]
    tables = _run(installed, work, "results", "tables").stdout
    assert f"churn_scores {out['scores']['rows']:>12,} rows".replace(" ", "") in tables.replace(" ", "")
