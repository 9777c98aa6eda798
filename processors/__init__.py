"""Processors: stages between receivers and exporters. One folder per configuration type."""
