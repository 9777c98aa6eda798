"""Self-telemetry with the Collector's metric names, on a registry of the gateway's own.

Names follow the Collector's internal telemetry (otelcol_receiver_accepted_spans_total, …) so the
dashboards and alerts people already have for a Collector work against otelgw.

With --workers the owner's exposition is the sum over the gateway's processes: each worker sends
`snapshot()` over its handover socket, the owner keeps the latest per worker (`set_remote`) and
sums them with its own series by name and labels. When a worker exits its counters and histograms
are kept (`retire_remote`: cumulative series never go down), its gauges dropped. The owner's
uptime is the gateway's; the other process metrics add up (CPU and memory of all processes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric

from gateway.process_metrics import UPTIME, ProcessMetrics
from gateway.signals import Signal

_ITEMS = [s.item_name for s in Signal]


# The Collector exposes no *_created series; dashboards written for it do not expect them.
disable_created_metrics()

# JSON shape of one metric family: [name, type, help, [[sample name, [[label, value], …], value]]]
Family = list[Any]
_CUMULATIVE = {"counter", "histogram", "summary"}
_OWN_ONLY = {UPTIME}  # the gateway's uptime is the owner's, not a sum


def _to_json(metric: Metric) -> Family:
    return [metric.name, metric.type, metric.documentation,
            [[s.name, sorted(s.labels.items()), s.value] for s in metric.samples]]


class _Families:
    """What generate_latest() reads: anything with collect()."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _sum(sources: Iterable[Iterable[Family]]) -> list[Metric]:
    meta: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in sources:
        for name, kind, doc, samples in families:
            meta.setdefault(name, (kind, doc))
            series = values.setdefault(name, {})
            for sample, labels, value in samples:
                key = (sample, tuple(tuple(pair) for pair in labels))
                series[key] = series.get(key, 0.0) + value
    out = []
    for name, (kind, doc) in meta.items():
        metric = Metric(name, doc, kind)
        for (sample, labels), value in values[name].items():
            metric.add_sample(sample, dict(labels), value)
        out.append(metric)
    return out


class SelfTelemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._own: dict[str, Any] = {}
        self._remote: dict[Any, list[Family]] = {}
        self._retired: list[Family] = []
        r = self.registry
        r.register(ProcessMetrics())

        def per_item(prefix: str, labels: list[str], doc: str) -> dict[str, Counter]:
            return {i: Counter(f"{prefix}_{i}", doc.format(i.replace("_", " ")), labels,
                               registry=r) for i in _ITEMS}

        rl = ["receiver", "transport"]
        self.receiver_accepted = per_item("otelcol_receiver_accepted", rl,
                                          "Number of {} successfully pushed into the pipeline.")
        self.receiver_refused = per_item("otelcol_receiver_refused", rl,
                                         "Number of {} that could not be pushed into the pipeline.")
        self.receiver_failed = per_item("otelcol_receiver_failed", rl,
                                        "Number of {} the receiver could not decode or accept.")
        el = ["exporter"]
        self.exporter_sent = per_item("otelcol_exporter_sent", el,
                                      "Number of {} successfully sent to destination.")
        self.exporter_send_failed = per_item("otelcol_exporter_send_failed", el,
                                             "Number of {} in failed attempts to send.")
        self.exporter_enqueue_failed = per_item("otelcol_exporter_enqueue_failed", el,
                                                "Number of {} failed to be added to the queue.")
        self.exporter_queue_size = Gauge("otelcol_exporter_queue_size",
                                         "Current size of the retry queue (in batches)", el,
                                         registry=r)
        self.exporter_queue_capacity = Gauge("otelcol_exporter_queue_capacity",
                                             "Fixed capacity of the retry queue (in batches)", el,
                                             registry=r)
        pl = ["processor"]
        self.batch_send_size = Histogram(
            "otelcol_processor_batch_batch_send_size", "Number of units in the batch", pl,
            buckets=(10, 25, 50, 75, 100, 250, 500, 750, 1000, 2000, 3000, 4000, 5000, 6000,
                     7000, 8000, 9000, 10000, 20000, 30000, 50000, 100000), registry=r)
        self.batch_size_trigger = Counter(
            "otelcol_processor_batch_batch_size_trigger_send",
            "Number of times the batch was sent due to a size trigger", pl, registry=r)
        self.batch_timeout_trigger = Counter(
            "otelcol_processor_batch_timeout_trigger_send",
            "Number of times the batch was sent due to a timeout trigger", pl, registry=r)
        cl = ["exporter", "table"]
        self.insert_duration = Histogram(
            "otelgw_clickhouse_insert_duration_seconds", "Duration of one ClickHouse INSERT",
            ["exporter", "signal"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.insert_rows = Counter("otelgw_clickhouse_insert_rows", "Rows written by INSERTs",
                                   cl, registry=r)
        self.insert_bytes = Counter("otelgw_clickhouse_insert_bytes",
                                    "Request bytes sent to ClickHouse INSERTs",
                                    ["exporter", "signal"], registry=r)

    def metric(self, kind: type[Counter] | type[Gauge] | type[Histogram], name: str, doc: str,
               labels: list[str], **kwargs: Any) -> Any:
        """A component's own metric, created on first use: several instances of a component (one
        per pipeline) share it and tell themselves apart by their labels."""
        found = self._own.get(name)
        if found is None:
            found = self._own[name] = kind(name, doc, labels, registry=self.registry, **kwargs)
        return found

    def snapshot(self) -> list[Family]:
        """This process's series, for the owner to add up (see the module docstring)."""
        return [_to_json(m) for m in self.registry.collect() if m.name not in _OWN_ONLY]

    def set_remote(self, source: Any, families: list[Family]) -> None:
        self._remote[source] = families

    def retire_remote(self, source: Any) -> None:
        """`source` (a worker process) has exited: its cumulative series stay in the sums."""
        families = self._remote.pop(source, None)
        if families:
            kept = [f for f in families if f[1] in _CUMULATIVE]
            self._retired = _to_families_json(_sum([self._retired, kept]))

    def exposition(self) -> tuple[bytes, str]:
        if not self._remote and not self._retired:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        own = [_to_json(m) for m in self.registry.collect()]
        merged = _sum([own, self._retired, *self._remote.values()])
        return generate_latest(_Families(merged)), CONTENT_TYPE_LATEST  # type: ignore[arg-type]


def _to_families_json(metrics: list[Metric]) -> list[Family]:
    return [_to_json(m) for m in metrics]
