"""Scathat's training pipeline: data, models, tuning, evaluation and deployment for smart-contract risk.

The public Python API (``training_pipeline/api.py``)::

    from training_pipeline import ModelTrainer, HyperparameterOptimizer, ModelEvaluator
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["HyperparameterOptimizer", "ModelEvaluator", "ModelTrainer"]


def __getattr__(name: str) -> Any:  # imported on first use: `import training_pipeline.data...` stays light
    if name in __all__:
        from training_pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'training_pipeline' has no attribute {name!r}")
