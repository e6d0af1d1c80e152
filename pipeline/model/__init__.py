"""The model: candidates and their search, training and evaluation, the MLflow registry and
its gate, scoring.

``candidates``, ``train`` (fit, calibrate, evaluate), ``evaluate`` (metrics, campaign value),
``tracking`` (MLflow runs), ``registry`` (immutable versions, the champion alias, verified
copies), ``gate`` (a new version against the serving champion), ``card`` (the model card),
``score`` (the night's scores, risk bands, the campaign), ``steps``.
"""
