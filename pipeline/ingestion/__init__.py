"""Ingestion: the data contract, the customer database (read-only) and the landing files in,
validated by Great Expectations, into the lake; rejected rows quarantined with their reason.

``contract`` (tables, columns, types), ``source`` (the database), ``extract`` (ingest SQL and
event files, in chunks), ``validate`` (the gate and the quarantine), ``lake`` (partitions per
table and day, staging, DuckDB over the lake), ``readiness`` (has a night's data landed?),
``steps`` (what the DAGs and the CLI run: load, call, save).
"""
