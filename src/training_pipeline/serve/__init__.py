"""The scan service: HTTP endpoints over ``training_pipeline.scan`` and packaged models (A/B and shadow
traffic, the inference log, access control, limits). Top layer: it may import everything below it; nothing
imports it (tests/unit/test_layers.py).
"""
