"""
### churn_landing_simulator

Only for a **live simulated business** (`python -m pipeline generate --live`, which
`make airflow` creates): every night at midnight it lands the day that just ended, as
the business's systems would, moving that day's database rows into the source database
and its event files into `landing/events/date=DAY/`. `churn_nightly` for the same
logical date waits for exactly that data at its `wait_for_data` gate.

The DAG exists only where the data dir holds the simulator's pending store
(`data/.../simulator/pending.db`), so a production deployment never sees it. It starts
unpaused: the simulated business goes on as soon as Airflow runs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from churnflow_airflow.params import parse_settings
from churnflow_airflow.tasks import nightly_dag_args, run_date, settings_for

if parse_settings().simulator_db.is_file():

    @dag(
        dag_id="churn_landing_simulator",
        description=("Lands a simulated business's daily event files and database rows (make airflow's live business "
                     "only)"),
        **nightly_dag_args(),
        is_paused_upon_creation=False,
        tags=["churnflow", "simulator"],
        doc_md=__doc__,
    )
    def churn_landing_simulator() -> None:
        @task
        def land_day(**context: Any) -> dict[str, Any]:
            """Everything that happened before the logical date lands (idempotent)."""
            from churnflow_sim.simulator import land

            return land(settings_for(context), run_date(context))

        land_day()

    churn_landing_simulator()
