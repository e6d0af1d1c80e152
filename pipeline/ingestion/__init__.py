"""Ingestion: the data contract, the customer database (read-only) and the landing files in,
validated by Great Expectations, into the lake; rejected rows quarantined with their reason.

``contract`` (tables, columns, types), ``source`` (the database), ``extract`` (ingest SQL and
event files, in chunks), ``suites`` (the expectation suites), ``validate`` (the gate: a batch run
through its suite), ``quarantine`` (the rejected rows, with their reason), ``lake`` (partitions
per table and day, staging, DuckDB over the lake), ``readiness`` (has a night's data landed?),
``steps`` (what the DAGs and the CLI run: load, call, save).
"""
