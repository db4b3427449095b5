"""Scathat's training pipeline: data, models, tuning, evaluation and deployment for smart-contract risk."""

__version__ = "0.1.0"
