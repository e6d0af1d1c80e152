"""churnflow-sim: what churnflow's demo, tests and benchmarks need and production does not.

* :mod:`churnflow_sim.generate` - a synthetic subscription business (the customer database,
  daily event files and the generator's true churn probabilities), from its parameters
  (:mod:`~churnflow_sim.constants`), its customers' behaviour (:mod:`~churnflow_sim.behaviour`), the
  tables it samples (:mod:`~churnflow_sim.tables`) and their writers (:mod:`~churnflow_sim.writers`);
* :mod:`churnflow_sim.retail` - a synthetic shop (only customers and orders, in its own schema:
  examples/retail maps it) whose customers stop buying, with its true inactivity probabilities;
* :mod:`churnflow_sim.simulator` - a *live* generated business that lands its days as time passes;
* :mod:`churnflow_sim.smtp_sink` - a local SMTP server that keeps every message (needs ``aiosmtpd``).

A separate distribution (``sim/pyproject.toml``), so the ``churnflow`` wheel an Airflow worker
installs carries none of it. ``python -m pipeline generate`` and ``land`` use it when installed.
"""
