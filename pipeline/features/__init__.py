"""Features: point-in-time features from the lake (DuckDB SQL in ``sql/``), the labels of each
churn definition, and the training set of month-start snapshots.

``catalogue`` (every feature column: group, kind, window, meaning), ``selection`` (which of them
a model uses on this lake), ``build`` (the DuckDB SQL that computes them), ``labels`` (what churn
means, and the labels of matured nights), ``dataset`` (the training set: building, reading,
splitting, sampling), ``steps`` (what the DAGs and the CLI run).
"""
