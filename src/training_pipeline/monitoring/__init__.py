"""Monitoring: reference profiles written into model packages, drift reports of the inference log against
them, alert rules and delivery, and gated champion/challenger retraining. Top layer: it reads packages
(``deploy``) and the service's inference log (``serve``); nothing below imports it
(tests/unit/test_layers.py).
"""
