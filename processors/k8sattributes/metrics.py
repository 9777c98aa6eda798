"""The Collector's k8sattributes watch metrics.

otelcol_otelsvc_k8s_<object>_<added|updated|deleted> (counters, so their Prometheus names end in
_total), otelcol_otelsvc_k8s_pod_table_size and otelcol_otelsvc_k8s_ip_lookup_miss. A `processor`
label tells processor ids apart."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from gateway.telemetry import SelfTelemetry


class WatchMetrics:
    """The Collector's k8sattributes self-metrics (otelcol_otelsvc_k8s_*)."""

    def __init__(self, telemetry: SelfTelemetry | None, processor: str) -> None:
        self._labels = {"processor": processor}
        self._telemetry = telemetry
        self._cache: dict[str, Any] = {}

    def _metric(self, kind: type[Any], name: str, doc: str) -> Any:
        found = self._cache.get(name)
        if found is None:
            if self._telemetry is None:
                return None
            found = self._cache[name] = self._telemetry.metric(
                kind, f"otelcol_otelsvc_k8s_{name}", doc, ["processor"]).labels(**self._labels)
        return found

    def event(self, obj: str, event: str) -> None:
        counter = self._metric(Counter, f"{obj}_{event}",
                               f"Number of {obj} {event[:-1] if event != 'added' else 'add'} "
                               "events received")
        if counter is not None:
            counter.inc()

    def table_size(self, size: int) -> None:
        gauge = self._metric(Gauge, "pod_table_size", "Size of table containing pod info")
        if gauge is not None:
            gauge.set(size)

    def lookup_miss(self, n: int = 1) -> None:
        counter = self._metric(Counter, "ip_lookup_miss",
                               "Number of times pod by IP lookup failed.")
        if counter is not None:
            counter.inc(n)
