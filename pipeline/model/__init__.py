"""The model: candidates and their search, training and evaluation, the MLflow registry and
its gate, scoring.

``candidates``, ``train`` (fit, calibrate, evaluate), ``evaluate`` (metrics, campaign value),
``tracking`` (MLflow runs), ``registry`` (immutable versions, the champion alias), ``model_cache``
(their verified local copies), ``serving`` (the challenger, what a night says of its model),
``gate`` (a new version against the serving champion), ``card`` (the model card), ``score`` (the
night's scores, risk bands, the campaign), ``steps``.
"""
