"""Monitoring: reference profiles written into model packages, drift reports of the inference log against
them, alert rules and delivery, and gated champion/challenger retraining. Top layer: it reads packages
(``deploy``) and the service's inference log (``serve``); nothing below imports it
(tests/unit/test_layers.py).

``features`` (input features per scanned contract, written into the inference log), ``drift`` (PSI and
KS/chi-square tests of the log against ``reference_profile.json``, which ``deploy.package`` writes from
``evaluation.profile``), ``report`` (drift.json + report.html), ``alerts``, and the CLI
``python -m training_pipeline.monitoring drift`` (exit 0 ok, 1 warning, 2 alert, 4 bad input).
"""
