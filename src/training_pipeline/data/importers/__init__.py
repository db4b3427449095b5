"""Importers that turn real labelled datasets into contract records (see data/contracts.py SOURCES)."""
