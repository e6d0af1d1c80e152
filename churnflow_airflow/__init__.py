"""churnflow's Airflow side: what the scheduler, the DAG processor and the API server need
besides the DAG files (an Airflow plugin, registered by the ``airflow.plugins`` entry point of
the churnflow distribution, so every component that has churnflow installed loads it).

``pipeline`` knows nothing about Airflow; this package is where Airflow meets it.
"""
