"""Monitoring: data and prediction drift, performance on matured labels, fairness, alerts, the
drift report and the analysts' e-mail.

``drift`` (per-feature tests, PSI, the Evidently report), ``metrics`` (prediction drift,
performance, fairness: pure), ``store`` (the monitoring tables), ``alerts`` (rules, dedup,
status), ``charts``, ``notify`` (the e-mail), ``steps``.
"""
