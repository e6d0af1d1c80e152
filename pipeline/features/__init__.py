"""Features: point-in-time features from the lake (DuckDB SQL in ``sql/``), the labels of each
churn definition, and the training set of month-start snapshots.

``build`` (the feature catalogue and the SQL), ``labels`` (what churn means, and the labels of
matured nights), ``dataset`` (the training set: building, reading, splitting, sampling),
``steps`` (what the DAGs and the CLI run).
"""
