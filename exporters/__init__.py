"""Exporters: where pipelines end (ClickHouse, …). One folder per configuration type."""
