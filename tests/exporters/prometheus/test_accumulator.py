"""Accumulation as the contrib prometheus exporter (v0.129.0) does it, read back through the
exposition a scraper gets."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from exporters.prometheus.accumulator import Accumulator
from tests.exporters.prometheus import DELTA, SEC, Req, render, samples

LABELS = 'instance="pod-1",job="checkout"'


def feed(acc: Accumulator, *requests: ExportMetricsServiceRequest,
         now: float | None = None) -> None:
    for r in requests:
        acc.accumulate(r, now=now)


def test_delta_sums_accumulate_into_one_cumulative_counter() -> None:
    acc = Accumulator(300)
    feed(acc, *(Req().sum("orders", v, start=i * SEC, t=(i + 1) * SEC, temporality=DELTA)
                for i, v in enumerate([3, 4, 5])))
    assert samples(render(acc))[f"orders_total{{{LABELS}}}"] == "12"
    (series,) = acc.series.values()
    assert (series.point.start, series.point.time) == (0, 3 * SEC)  # the first start is kept


def test_delta_sum_that_does_not_continue_restarts_the_counter() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("orders", 3.5, start=0, t=SEC, temporality=DELTA),
         Req().sum("orders", 1.5, start=SEC, t=2 * SEC, temporality=DELTA),
         # a gap: the producer restarted; the value starts over with the new start time
         Req().sum("orders", 2.0, start=5 * SEC, t=6 * SEC, temporality=DELTA))
    assert samples(render(acc))[f"orders_total{{{LABELS}}}"] == "2"
    assert next(iter(acc.series.values())).point.start == 5 * SEC


def test_non_monotonic_delta_sums_are_dropped_and_counted() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("queue.depth", 4, start=0, t=SEC, temporality=DELTA, monotonic=False))
    assert acc.series == {} and acc.dropped["non_monotonic_delta"] == 1


def test_cumulative_sums_keep_the_latest_point_and_ignore_older_ones() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("orders", 10, t=2 * SEC), Req().sum("orders", 7, t=SEC),
         Req().sum("orders", 12, t=3 * SEC), Req().sum("orders", 11, t=2 * SEC))
    assert samples(render(acc))[f"orders_total{{{LABELS}}}"] == "12"
    assert acc.dropped["out_of_order"] == 2


def test_non_monotonic_cumulative_sum_is_a_gauge() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("queue.depth", -3, monotonic=False, unit="{item}"))
    text = render(acc)
    assert "# TYPE queue_depth gauge" in text
    assert samples(text)[f"queue_depth{{{LABELS}}}"] == "-3"


def test_gauges_keep_the_point_with_the_latest_timestamp() -> None:
    acc = Accumulator(300)
    feed(acc, Req().gauge("temperature", 21.5, t=2 * SEC, unit="Cel"),
         Req().gauge("temperature", 19.0, t=SEC, unit="Cel"))
    assert samples(render(acc))[f"temperature_celsius{{{LABELS}}}"] == "21.5"


def test_delta_histograms_add_up_bucket_by_bucket() -> None:
    acc = Accumulator(300)
    feed(acc, Req().histogram("latency", [0.1, 1], [1, 2, 0], 1.5, start=0, t=SEC,
                              temporality=DELTA),
         Req().histogram("latency", [0.1, 1], [0, 1, 3], 40.0, start=SEC, t=2 * SEC,
                         temporality=DELTA))
    got = samples(render(acc))
    assert got[f'latency_seconds_bucket{{{LABELS},le="0.1"}}'] == "1"
    assert got[f'latency_seconds_bucket{{{LABELS},le="1"}}'] == "4"
    assert got[f'latency_seconds_bucket{{{LABELS},le="+Inf"}}'] == "7"
    assert got[f"latency_seconds_sum{{{LABELS}}}"] == "41.5"
    assert got[f"latency_seconds_count{{{LABELS}}}"] == "7"
    assert next(iter(acc.series.values())).point.start == 0


def test_overlapping_delta_histogram_is_dropped_and_a_gap_restarts() -> None:
    acc = Accumulator(300)
    feed(acc, Req().histogram("latency", [1], [1, 0], 0.5, start=0, t=2 * SEC, temporality=DELTA),
         # starts before the accumulated point ended: out of order or a second writer
         Req().histogram("latency", [1], [5, 5], 9.0, start=SEC, t=3 * SEC, temporality=DELTA))
    assert samples(render(acc))[f"latency_seconds_count{{{LABELS}}}"] == "1"
    assert acc.dropped["misaligned"] == 1
    feed(acc, Req().histogram("latency", [1], [0, 2], 8.0, start=4 * SEC, t=5 * SEC,
                              temporality=DELTA))
    assert samples(render(acc))[f"latency_seconds_count{{{LABELS}}}"] == "2"


def test_delta_histogram_with_new_bounds_keeps_the_newer_layout_alone() -> None:
    acc = Accumulator(300)
    feed(acc, Req().histogram("latency", [1], [1, 1], 2.0, start=0, t=SEC, temporality=DELTA),
         Req().histogram("latency", [0.5, 2], [1, 0, 0], 0.1, start=SEC, t=2 * SEC,
                         temporality=DELTA))
    got = samples(render(acc))
    assert got[f'latency_seconds_bucket{{{LABELS},le="0.5"}}'] == "1"
    assert got[f"latency_seconds_count{{{LABELS}}}"] == "1"


def test_cumulative_histogram_buckets_are_made_cumulative_with_inf_as_count() -> None:
    acc = Accumulator(300)
    feed(acc, Req().histogram("size", [10, 100, 1000], [1, 0, 2, 4], 5210.0, unit="By"))
    got = samples(render(acc))
    assert [got[f'size_bytes_bucket{{{LABELS},le="{le}"}}'] for le in
            ("10", "100", "1000", "+Inf")] == ["1", "1", "3", "7"]


def test_no_recorded_value_removes_the_series() -> None:
    acc = Accumulator(300)
    feed(acc, Req().gauge("temperature", 21.5, t=SEC), Req().sum("orders", 3, t=SEC))
    feed(acc, Req().gauge("temperature", 0.0, t=2 * SEC, flags=1))
    text = render(acc)
    assert "temperature" not in text and "orders_total" in text


def test_series_expire_after_metric_expiration() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("orders", 3), now=1000.0)
    feed(acc, Req().sum("refunds", 1), now=1200.0)
    assert len(acc.snapshot(now=1299.0)) == 2
    assert [s.meta.name for s in acc.snapshot(now=1301.0)] == ["refunds"]
    assert acc.snapshot(now=1501.0) == []


def test_exponential_histograms_are_not_translated_by_this_version() -> None:
    req = Req()
    m = req.metric("payload.size", "By")
    m.exponential_histogram.aggregation_temporality = 2
    m.exponential_histogram.data_points.add(count=3, sum=10, scale=2, time_unix_nano=SEC)
    acc = Accumulator(300)
    assert acc.accumulate(req.msg) == 0
    assert acc.dropped["unsupported_type"] == 1 and acc.series == {}


def test_summaries_pass_through() -> None:
    req = Req()
    m = req.metric("rpc.duration", "s", "rpc latency")
    dp = m.summary.data_points.add(count=10, sum=2.5, time_unix_nano=SEC)
    for q, v in ((0.99, 0.9), (0.5, 0.2)):
        dp.quantile_values.add(quantile=q, value=v)
    acc = Accumulator(300)
    feed(acc, req.msg)
    text = render(acc)
    assert "# TYPE rpc_duration_seconds summary" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("rpc_duration_seconds")]
    assert lines == [f'rpc_duration_seconds{{{LABELS},quantile="0.5"}} 0.2',
                     f'rpc_duration_seconds{{{LABELS},quantile="0.99"}} 0.9',
                     f"rpc_duration_seconds_sum{{{LABELS}}} 2.5",
                     f"rpc_duration_seconds_count{{{LABELS}}} 10"]


def test_target_info_one_per_job_and_instance_without_the_service_attributes() -> None:
    acc = Accumulator(300)
    res = {"service.name": "checkout", "service.namespace": "shop",
           "service.instance.id": "pod-1", "k8s.pod.name": "checkout-7d9f", "host.arch": "amd64"}
    feed(acc, Req(res).sum("orders", 1), Req(res).gauge("temperature", 2.0),
         Req({"service.name": "cart", "service.instance.id": "pod-2"}).sum("orders", 5),
         Req({"service.name": "no-instance"}).sum("orders", 7))  # no instance: no target_info
    text = render(acc, namespace="otel")
    info = [ln for ln in text.splitlines() if ln.startswith("otel_target_info")]
    assert info == [  # client_golang order: fewer labels first, then by label values
        'otel_target_info{instance="pod-2",job="cart"} 1',
        'otel_target_info{host_arch="amd64",instance="pod-1",job="shop/checkout",'
        'k8s_pod_name="checkout-7d9f"} 1']
    assert "# HELP otel_target_info Target metadata\n# TYPE otel_target_info gauge" in text
    assert samples(text)['otel_orders_total{job="no-instance"}'] == "7"


def test_resource_to_telemetry_copies_resource_attributes_onto_every_series() -> None:
    acc = Accumulator(300, resource_to_labels=True)
    feed(acc, Req().sum("orders", 3, attrs={"region": "eu", "k8s.pod.name": "from-point"}))
    got = samples(render(acc))
    assert got['orders_total{instance="pod-1",job="checkout",k8s_pod_name="checkout-7d9f",'
               'region="eu",service_instance_id="pod-1",service_name="checkout"}'] == "3"
    assert "target_info{" in render(acc)  # still there


def test_identity_is_job_and_instance_not_the_whole_resource() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("orders", 3, t=SEC),
         Req({**{"service.name": "checkout", "service.instance.id": "pod-1"},
              "k8s.pod.name": "moved"}).sum("orders", 4, t=2 * SEC))
    assert len(acc.series) == 1
    text = render(acc)
    assert samples(text)[f"orders_total{{{LABELS}}}"] == "4"
    assert 'k8s_pod_name="moved"' in text  # target_info follows the latest resource


def test_same_series_from_two_scopes_is_exposed_once() -> None:
    acc = Accumulator(300)
    feed(acc, Req(scope="a").sum("orders", 3), Req(scope="b").sum("orders", 4))
    assert len(acc.series) == 2  # two series in the accumulator (scope is part of identity)…
    lines = [ln for ln in render(acc).splitlines() if ln.startswith("orders_total")]
    assert lines == [f"orders_total{{{LABELS}}} 3"]  # …one in the exposition, the first kept


def test_a_name_keeps_the_type_it_was_first_seen_with() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("jobs", 3), Req().gauge("jobs.total", 9.0))  # both are jobs_total
    text = render(acc)
    assert "# TYPE jobs_total counter" in text and samples(text) == {
        f"jobs_total{{{LABELS}}}": "3", f'target_info{{{LABELS},k8s_pod_name="checkout-7d9f"}}':
        "1"}


def test_series_with_conflicting_label_names_are_left_out() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("a", 1, attrs={"http.method": "GET", "http_method": "POST"}),
         Req().sum("b", 1, attrs={"job": "mine"}),  # clashes with job from service.name
         Req().sum("c", 1, attrs={"__meta": "x"}),  # reserved
         Req().sum("d", 1, attrs={"ok": "yes"}))
    names = {ln.split("{")[0] for ln in render(acc).splitlines() if not ln.startswith("#")}
    assert names == {"d_total", "target_info"}


def test_int_and_double_points() -> None:
    acc = Accumulator(300)
    feed(acc, Req().sum("big", 2**53 + 1), Req().gauge("tiny", 1.5e-7), Req().gauge("huge", 2e6))
    got = samples(render(acc))
    assert got[f"big_total{{{LABELS}}}"] == "9.007199254740992e+15"  # float64, as Go writes it
    assert got[f"tiny{{{LABELS}}}"] == "1.5e-07"
    assert got[f"huge{{{LABELS}}}"] == "2e+06"
