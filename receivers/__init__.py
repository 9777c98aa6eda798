"""Receivers: where data enters (OTLP, …). One folder per configuration type."""
