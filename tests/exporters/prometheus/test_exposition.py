"""The exposition formats as client_golang writes them, checked by promtool where it applies."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporters.prometheus.accumulator import Accumulator
from exporters.prometheus.exposition import OPENMETRICS, TEXT, negotiate, om_float, text_float
from tests.exporters.prometheus import DELTA, SEC, Req, render, samples

PROMTOOL = shutil.which("promtool")
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


def with_exemplars() -> Accumulator:
    req = Req()
    req.sum("orders", 12, start=SEC, t=2 * SEC, attrs={"region": "eu"})
    req.sm.metrics[-1].sum.data_points[0].exemplars.add(
        as_double=3.0, time_unix_nano=1_700_000_000 * SEC, trace_id=TRACE, span_id=SPAN)
    req.histogram("latency", [0.1, 1.0], [1, 1, 1], 2.35, start=SEC, t=2 * SEC)
    dp = req.sm.metrics[-1].histogram.data_points[0]
    dp.exemplars.add(as_double=0.5, time_unix_nano=1_700_000_000 * SEC, trace_id=TRACE)
    dp.exemplars.add(as_double=2.0, time_unix_nano=1_700_000_001 * SEC, span_id=SPAN)
    req.gauge("queue.size", 7.0, unit="{item}")
    acc = Accumulator(300)
    acc.accumulate(req.msg)
    return acc


def test_openmetrics_output() -> None:
    text = render(with_exemplars(), openmetrics=True)
    labels = 'instance="pod-1",job="checkout"'
    assert text.endswith("# EOF\n")
    assert "# HELP orders orders help\n# TYPE orders counter\n" in text
    assert (f'orders_total{{{labels},region="eu"}} 12.0 # {{span_id="eee19b7ec3c1b174",'
            f'trace_id="5b8efff798038103d269b633813fc60c"}} 3.0 1.7e+09\n') in text
    assert (f'latency_seconds_bucket{{{labels},le="1.0"}} 2 # '
            f'{{trace_id="5b8efff798038103d269b633813fc60c"}} 0.5 1.7e+09\n') in text
    # an exemplar above every bound sits in the +Inf bucket
    assert (f'latency_seconds_bucket{{{labels},le="+Inf"}} 3 # {{span_id="eee19b7ec3c1b174"}} '
            f"2.0 1.700000001e+09\n") in text
    assert f"queue_size{{{labels}}} 7.0\n" in text
    assert "_created" not in text


def test_openmetrics_output_parses_with_an_independent_parser() -> None:
    fams = {f.name: f for f in text_string_to_metric_families(
        render(with_exemplars(), openmetrics=True))}
    assert {n: f.type for n, f in fams.items()} == {
        "orders": "counter", "latency_seconds": "histogram", "queue_size": "gauge",
        "target_info": "gauge"}
    (counter,) = fams["orders"].samples
    assert counter.value == 12 and counter.exemplar is not None
    assert counter.exemplar.labels == {"trace_id": TRACE.hex(), "span_id": SPAN.hex()}
    buckets = {s.labels["le"]: s for s in fams["latency_seconds"].samples
               if s.name.endswith("_bucket")}
    assert [buckets[le].value for le in ("0.1", "1.0", "+Inf")] == [1, 2, 3]
    assert buckets["1.0"].exemplar.value == 0.5 and buckets["+Inf"].exemplar.value == 2.0


def test_text_format_has_no_exemplars_and_keeps_total_on_the_family() -> None:
    text = render(with_exemplars())
    assert "# TYPE orders_total counter" in text and "#  {" not in text and " # {" not in text
    assert not text.endswith("# EOF\n")


def test_send_timestamps() -> None:
    acc = Accumulator(300)
    acc.accumulate(Req().sum("orders", 3, t=1_700_000_000_123_456_789))
    text = render(acc, send_timestamps=True)
    assert 'orders_total{instance="pod-1",job="checkout"} 3 1700000000123\n' in text
    assert 'target_info{instance="pod-1",job="checkout",k8s_pod_name="checkout-7d9f"} 1\n' in text
    om = render(acc, send_timestamps=True, openmetrics=True)
    assert 'orders_total{instance="pod-1",job="checkout"} 3.0 1.700000000123e+09\n' in om


def test_namespace_and_const_labels() -> None:
    acc = Accumulator(300)
    acc.accumulate(Req().sum("orders", 3))
    got = samples(render(acc, namespace="test-space",
                         const_labels={"label1": "value1", "another label": "spaced value"}))
    assert got == {
        'test_space_orders_total{another_label="spaced value",instance="pod-1",job="checkout",'
        'label1="value1"}': "3",
        # target_info carries no const labels (client_golang's Desc for it has none)
        'test_space_target_info{instance="pod-1",job="checkout",k8s_pod_name="checkout-7d9f"}':
            "1"}


def test_label_values_and_help_are_escaped() -> None:
    req = Req()
    req.gauge("weird", 1.0, attrs={"path": 'C:\\dir\n"quoted"'})
    req.sm.metrics[-1].description = 'line one\nline "two" \\ end'
    acc = Accumulator(300)
    acc.accumulate(req.msg)
    text = render(acc)
    assert '# HELP weird line one\\nline "two" \\\\ end\n' in text
    assert 'path="C:\\\\dir\\n\\"quoted\\""' in text
    assert '# HELP weird line one\\nline \\"two\\" \\\\ end\n' in render(acc, openmetrics=True)


def test_without_suffixes() -> None:
    acc = Accumulator(300)
    acc.accumulate(Req().sum("http.server.requests", 5, unit="{request}"))
    text = render(acc, add_suffixes=False)
    assert "# TYPE http_server_requests counter" in text
    assert 'http_server_requests{instance="pod-1",job="checkout"} 5' in text
    om = render(acc, add_suffixes=False, openmetrics=True)
    assert "# TYPE http_server_requests counter" in om
    assert 'http_server_requests_total{instance="pod-1",job="checkout"} 5.0' in om


@pytest.mark.parametrize(("value", "text", "om"), [
    (1.0, "1", "1.0"), (0.0, "0", "0.0"), (-1.0, "-1", "-1.0"), (2.5, "2.5", "2.5"),
    (1e6, "1e+06", "1e+06"), (123456.0, "123456", "123456.0"), (1e-5, "1e-05", "1e-05"),
    (0.0001, "0.0001", "0.0001"), (float("inf"), "+Inf", "+Inf"), (float("nan"), "NaN", "NaN"),
    (-1234567.0, "-1.234567e+06", "-1.234567e+06"),
])
def test_numbers_as_go_writes_them(value: float, text: str, om: str) -> None:
    assert text_float(value) == text
    assert om_float(value) == om


@pytest.mark.parametrize(("accept", "enabled", "want"), [
    ("", True, TEXT),
    ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True, TEXT),
    # Prometheus 2.x's scrape Accept header
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True, OPENMETRICS.format("1.0.0")),
    ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", False, TEXT),
    ("application/openmetrics-text; version=0.0.1", True, OPENMETRICS.format("0.0.1")),
    ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.2", True,
     TEXT),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
     "encoding=delimited,text/plain;q=0.5", True, TEXT),  # protobuf is not offered
])
def test_content_negotiation(accept: str, enabled: bool, want: str) -> None:
    assert negotiate(accept, enabled)[1] == want


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_finds_nothing_to_lint() -> None:
    req = Req()
    req.sum("http.server.requests", 5, unit="{request}", attrs={"http.method": "GET"})
    req.sum("queue.depth", -2, monotonic=False, unit="{item}")
    req.histogram("http.server.duration", [0.005, 0.01, 0.1, 1, 10], [1, 2, 3, 4, 5, 6], 99.5)
    req.gauge("system.cpu.utilization", 0.42, unit="1")
    req.gauge("process.memory.usage", 1.5e9, unit="By")
    for i in range(3):
        req.sum("bytes.sent", 100 * (i + 1), start=i * SEC, t=(i + 1) * SEC, temporality=DELTA,
                unit="By")
    acc = Accumulator(300)
    acc.accumulate(req.msg)
    out = subprocess.run([PROMTOOL or "", "check", "metrics"], input=render(acc).encode(),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b"", out
