"""Scanning contracts: read the inputs (``inputs``), load the trained models with their featurizers
(``models``), run them (``inference``), fuse their views (``fusion``) into one report per input (``report``),
shown on the terminal (``render``) or by the ``scathat-scan`` command (``cli``)."""

from training_pipeline.pipeline.run_dirs import latest_pipeline_dir
from training_pipeline.scan.inputs import ScanInput, compile_source, read_inputs
from training_pipeline.scan.render import render
from training_pipeline.scan.scanner import Scanner

__all__ = ["ScanInput", "Scanner", "compile_source", "latest_pipeline_dir", "read_inputs", "render"]
