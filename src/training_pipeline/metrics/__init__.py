"""Metrics the models compute while they train and the evaluation reports reuse: contract-level
classification, multi-class history metrics, calibration and vulnerable-line localization.

It sits below ``models`` (models log these) and above ``data``; reports and benchmarks live in
``evaluation``, above the models."""
