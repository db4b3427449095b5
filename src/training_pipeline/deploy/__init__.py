"""Deployment: model packages (safetensors weights, the config that rebuilds the network, featurizer state,
label maps, thresholds, calibration, accepted metrics, a sha256 manifest), the model registry with
champion/challenger aliases, loading with integrity checks, and the append-only audit log.

Layer: above ``tasks``/``pipeline`` (it packages what they train), below ``scan``/``serve``/``monitoring``
(which load packages, never training run dirs). tests/unit/test_layers.py holds that order.
"""
