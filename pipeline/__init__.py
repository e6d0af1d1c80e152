"""churnflow: a batch-first customer-churn pipeline.

``pipeline`` is a plain Python library (no Airflow imports): one module per stage,
small typed functions taking DataFrames or paths and returning DataFrames or paths.
The Airflow DAGs in ``dags/`` only wire these functions together, and everything
they do can also be run from the command line with ``python -m pipeline``.
"""

__version__ = "0.1.0"
