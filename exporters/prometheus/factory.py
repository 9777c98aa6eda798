"""Factory of the `prometheus` exporter (metrics only)."""

from exporters.prometheus.config import PrometheusExporterConfig
from exporters.prometheus.exporter import PrometheusExporter
from gateway.component import Factory, Kind
from gateway.signals import Signal

factory = Factory(kind=Kind.EXPORTER, type="prometheus", config_model=PrometheusExporterConfig,
                  create=PrometheusExporter, signals=frozenset({Signal.METRICS}))
