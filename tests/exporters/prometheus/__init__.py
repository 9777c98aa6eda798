"""Tests of the prometheus exporter, and small builders of OTLP metric requests they share."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from exporters.prometheus.accumulator import Accumulator
from exporters.prometheus.exposition import Families, Naming, Renderer

DELTA, CUMULATIVE = 1, 2
SEC = 1_000_000_000
RESOURCE = {"service.name": "checkout", "service.instance.id": "pod-1",
            "k8s.pod.name": "checkout-7d9f"}


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            av = AnyValue(bool_value=v)
        elif isinstance(v, int):
            av = AnyValue(int_value=v)
        elif isinstance(v, float):
            av = AnyValue(double_value=v)
        else:
            av = AnyValue(string_value=v)
        out.append(KeyValue(key=k, value=av))
    return out


class Req:
    """One request: one resource, one scope, metrics appended with the helpers below."""

    def __init__(self, resource: dict[str, Any] | None = None, scope: str = "lib") -> None:
        self.msg = ExportMetricsServiceRequest()
        rm = self.msg.resource_metrics.add()
        rm.resource.attributes.extend(kvs(RESOURCE if resource is None else resource))
        self.sm = rm.scope_metrics.add()
        self.sm.scope.name = scope

    def metric(self, name: str, unit: str = "", description: str = "") -> Any:
        m = self.sm.metrics.add()
        m.name, m.unit, m.description = name, unit, description
        return m

    def sum(self, name: str, value: float | int, *, start: int = 0, t: int = SEC,
            temporality: int = CUMULATIVE, monotonic: bool = True, unit: str = "",
            attrs: dict[str, Any] | None = None, flags: int = 0) -> ExportMetricsServiceRequest:
        m = self.metric(name, unit, f"{name} help")
        m.sum.aggregation_temporality = temporality
        m.sum.is_monotonic = monotonic
        dp = m.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t, flags=flags)
        if isinstance(value, int):
            dp.as_int = value
        else:
            dp.as_double = value
        dp.attributes.extend(kvs(attrs or {}))
        return self.msg

    def gauge(self, name: str, value: float, *, t: int = SEC, unit: str = "",
              attrs: dict[str, Any] | None = None, flags: int = 0) -> ExportMetricsServiceRequest:
        m = self.metric(name, unit, f"{name} help")
        dp = m.gauge.data_points.add(time_unix_nano=t, as_double=value, flags=flags)
        dp.attributes.extend(kvs(attrs or {}))
        return self.msg

    def histogram(self, name: str, bounds: list[float], counts: list[int], total: float, *,
                  start: int = 0, t: int = SEC, temporality: int = CUMULATIVE, unit: str = "s",
                  attrs: dict[str, Any] | None = None, flags: int = 0
                  ) -> ExportMetricsServiceRequest:
        m = self.metric(name, unit, f"{name} help")
        m.histogram.aggregation_temporality = temporality
        dp = m.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=t,
                                         count=sum(counts), sum=total, flags=flags)
        dp.explicit_bounds.extend(bounds)
        dp.bucket_counts.extend(counts)
        dp.attributes.extend(kvs(attrs or {}))
        return self.msg


def render(acc: Accumulator, *, openmetrics: bool = False, namespace: str = "",
           add_suffixes: bool = True, const_labels: dict[str, str] | None = None,
           send_timestamps: bool = False) -> str:
    renderer = Renderer(Naming(namespace, add_suffixes, const_labels or {}),
                        Families(acc.expiration), send_timestamps)
    return renderer.render(acc.snapshot(), openmetrics).decode()


def samples(text: str) -> dict[str, str]:
    """`name{labels}` → value of every sample line of a text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = value
    return out
