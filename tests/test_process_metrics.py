"""The Collector's process metrics on :8888, and how the owner adds up its workers' series."""

from __future__ import annotations

import json
import time

import psutil
from prometheus_client import Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry import SelfTelemetry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposition(tel: SelfTelemetry) -> tuple[Samples, dict[str, str]]:
    text = tel.exposition()[0].decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in families for s in fam.samples}
    return samples, {fam.name: fam.type for fam in families}


def test_process_metrics_have_the_collector_names_and_this_process_values() -> None:
    busy_until = time.process_time() + 0.05
    while time.process_time() < busy_until:
        pass
    samples, kinds = exposition(SelfTelemetry())
    proc = psutil.Process()
    cpu = proc.cpu_times()
    assert 0 < samples[("otelcol_process_uptime_seconds_total", ())] <= \
        time.time() - proc.create_time() + 1
    assert 0.05 <= samples[("otelcol_process_cpu_seconds_total", ())] <= cpu.user + cpu.system
    rss = samples[("otelcol_process_memory_rss_bytes", ())]
    assert abs(rss - proc.memory_info().rss) < 64 << 20
    heap = samples[("otelcol_process_runtime_heap_alloc_bytes", ())]
    from_os = samples[("otelcol_process_runtime_total_sys_memory_bytes", ())]
    assert 0 < heap <= from_os < rss
    # the names the Collector v0.129 exposes, with their types (the memory_limiter's old
    # otelcol_process_memory_rss is gone: one source of truth)
    assert kinds["otelcol_process_uptime_seconds"] == "counter"
    assert kinds["otelcol_process_cpu_seconds"] == "counter"
    assert kinds["otelcol_process_memory_rss_bytes"] == "gauge"
    assert not any(name == "otelcol_process_memory_rss" for name, _ in samples)


def test_the_owner_sums_worker_series_and_keeps_counters_of_exited_workers() -> None:
    owner, worker = SelfTelemetry(), SelfTelemetry()
    owner.receiver_accepted["spans"].labels("otlp", "http").inc(5)
    worker.receiver_accepted["spans"].labels("otlp", "http").inc(7)
    worker.receiver_accepted["spans"].labels("otlp", "grpc").inc(3)
    worker.metric(Gauge, "otelgw_test_in_flight", "in flight", []).set(4)
    worker.metric(Counter, "otelgw_test_only_in_workers", "only there", ["x"]).labels("a").inc(2)
    worker.batch_send_size.labels("batch").observe(100)
    owner.set_remote(1, json.loads(json.dumps(worker.snapshot())))  # as sent over the socket

    samples, _ = exposition(owner)
    accepted = "otelcol_receiver_accepted_spans_total"
    assert samples[(accepted, (("receiver", "otlp"), ("transport", "http")))] == 12
    assert samples[(accepted, (("receiver", "otlp"), ("transport", "grpc")))] == 3
    assert samples[("otelgw_test_in_flight", ())] == 4
    assert samples[("otelgw_test_only_in_workers_total", (("x", "a"),))] == 2
    assert samples[("otelcol_processor_batch_batch_send_size_count",
                    (("processor", "batch"),))] == 1
    # uptime is the owner's own; CPU adds up
    own, _ = exposition(SelfTelemetry())
    assert samples[("otelcol_process_uptime_seconds_total", ())] < \
        own[("otelcol_process_uptime_seconds_total", ())] * 1.5 + 1
    assert samples[("otelcol_process_cpu_seconds_total", ())] >= \
        2 * own[("otelcol_process_cpu_seconds_total", ())] - 0.5

    owner.retire_remote(1)  # the worker exited: counters stay, gauges go
    worker.receiver_accepted["spans"].labels("otlp", "http").inc(100)  # never sent
    owner.set_remote(1, [])  # its replacement has counted nothing yet
    samples, _ = exposition(owner)
    assert samples[(accepted, (("receiver", "otlp"), ("transport", "http")))] == 12
    assert samples[("otelgw_test_only_in_workers_total", (("x", "a"),))] == 2
    assert ("otelgw_test_in_flight", ()) not in samples
