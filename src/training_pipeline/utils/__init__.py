"""Shared helpers of the entrypoints: errors, provenance, instantiation, callbacks."""
