"""Scrapes → OTLP, checked against the expositions themselves.

The captures in ../shared/data/prometheus are served by a real HTTP target and scraped by the
real loop; what the receiver would push is compared with what a small independent reader of the
same files (below, regexes over the lines; the captures have no escapes) says every histogram,
counter, summary and gauge holds. Smaller tests pin the mapping rules the Collector's receiver
has (resources, exemplar ids, info/stateset/gaugehistogram, units, suffix trimming).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from receivers.prometheus.adjust import InitialPointAdjuster, StartTimeMetricAdjuster
from receivers.prometheus.convert import (
    SCOPE_NAME,
    Exemplar,
    Transaction,
    resource_attributes,
    to_request,
    trim_suffixes,
    unit_to_ucum,
)
from tests.receivers.prometheus.test_scrape_loop import (
    Loop,
    TargetServer,
    attrs,
    body,
    metrics,
    points,
)

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?[ \t]+(\S+)(?:[ \t]+([0-9.e+]+))?'
                   r'(?: # \{([^}]*)\} (\S+)(?: (\S+))?)?$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
Labels = tuple[tuple[str, str], ...]


# ---- an independent reader of the captures ------------------------------------------------


class Exposition:
    """Families, types and samples of a capture, read line by line."""

    def __init__(self, text: str, om: bool) -> None:
        self.types: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float, Any]] = []
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line and not line.startswith("#"):
                m = _LINE.match(line)
                assert m, line
                labels = dict(_PAIR.findall(m.group(2) or ""))
                ex = None
                if m.group(5) is not None:
                    ex = (dict(_PAIR.findall(m.group(5))), float(m.group(6)),
                          float(m.group(7)) if m.group(7) else None)
                self.samples.append((m.group(1), labels, float(m.group(3)), ex))
        self.om = om

    def family(self, name: str) -> tuple[str, str]:
        """(family, type) of a sample name."""
        if name in self.types:
            return name, self.types[name]
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
            base = name.removesuffix(suffix)
            if base != name and base in self.types:
                return base, self.types[base]
        return name, "unknown"

    @staticmethod
    def key(labels: dict[str, str], drop: str = "") -> Labels:
        return tuple(sorted((k, v) for k, v in labels.items() if v and k != drop))

    def histograms(self) -> dict[tuple[str, Labels], dict[str, Any]]:
        out: dict[tuple[str, Labels], dict[str, Any]] = defaultdict(
            lambda: {"buckets": {}, "exemplars": []})
        for name, labels, value, ex in self.samples:
            fam, kind = self.family(name)
            if kind != "histogram":
                continue
            h = out[(fam, self.key(labels, "le"))]
            if name.endswith("_bucket"):
                h["buckets"][float(labels["le"])] = value
                if ex:
                    h["exemplars"].append(ex)
            elif name.endswith("_sum"):
                h["sum"] = value
            elif name.endswith("_count"):
                h["count"] = value
            elif name.endswith("_created"):
                h["created"] = value
        return out

    def expected_histogram(self, h: dict[str, Any]) -> tuple[list[float], list[int]]:
        bounds = sorted(b for b in h["buckets"] if b != math.inf)
        cumulative = [h["buckets"][b] for b in bounds] + [h["count"]]
        counts = [int(c - p) for c, p in zip(cumulative, [0.0, *cumulative[:-1]])]
        return bounds, counts


def scrape_capture(server: TargetServer, path: str, text: str, content_type: str,
                   times: int = 1) -> list[Any]:
    server.routes[path] = body(text, content_type)

    async def go() -> list[Any]:
        loop = Loop(server, path)
        out = [(await loop.scrape(1_700_000_000.0 + i))[0] for i in range(times)]
        await loop.close()
        return out
    return asyncio.run(go())


@pytest.fixture(scope="module")
def server() -> Any:
    srv = TargetServer().start()
    yield srv
    srv.stop()


def by_series(req: Any) -> dict[tuple[str, Labels], Any]:
    out = {}
    for name, m in metrics(req).items():
        for p in points(m):
            labels = tuple(sorted((k, v) for k, v in attrs(p.attributes).items() if k != "env"))
            out[(name, labels)] = (m, p)
    return out


CAPTURES = [("linkerd-proxy.prom", "text/plain; version=0.0.4"),
            ("linkerd-proxy-2022.prom", "text/plain; version=0.0.4"),
            ("traefik.prom", "text/plain; version=0.0.4"),
            ("openmetrics-sample.txt", OM)]


@pytest.mark.parametrize("file,content_type", CAPTURES, ids=[c[0] for c in CAPTURES])
def test_capture_round_trip(server: TargetServer, shared_data: Path, file: str,
                            content_type: str) -> None:
    text = (shared_data / "prometheus" / file).read_text()
    exp = Exposition(text, content_type.startswith("application/openmetrics"))
    first, second = scrape_capture(server, "/" + file, text, content_type, times=2)
    got = by_series(second)
    checked = defaultdict(int)
    for (fam, key), h in exp.histograms().items():
        m, p = got[(fam, key)]
        bounds, counts = exp.expected_histogram(h)
        assert m.WhichOneof("data") == "histogram" and m.histogram.aggregation_temporality == 2
        assert list(p.explicit_bounds) == bounds, (fam, key)
        assert list(p.bucket_counts) == counts, (fam, key)
        assert p.count == h["count"] and p.sum == h["sum"]
        if "created" in h:
            assert p.start_time_unix_nano == int(h["created"] * 1000) * 10**6
        else:  # first observation carried over
            assert p.start_time_unix_nano == 1_700_000_000 * 10**9
        assert [(attrs(e.filtered_attributes), e.as_double, e.time_unix_nano)
                for e in p.exemplars] == [(lab, v, int(ts * 1000) * 10**6)
                                          for lab, v, ts in h["exemplars"]]
        checked["histogram"] += 1
    for name, labels, value, _ in exp.samples:
        fam, kind = exp.family(name)
        key = exp.key(labels)
        if kind in ("counter", "gauge"):
            if exp.om and name.endswith("_created"):
                assert (name, key) not in got
                continue
            m, p = got[(name, key)]
            assert p.as_double == value or (math.isnan(value) and math.isnan(p.as_double))
            if kind == "counter":
                assert m.sum.is_monotonic and m.sum.aggregation_temporality == 2
                assert p.start_time_unix_nano > 0
            else:
                assert m.WhichOneof("data") == "gauge" and p.start_time_unix_nano == 0
            checked[kind] += 1
        elif kind == "summary" and "quantile" in labels:
            m, p = got[(fam, exp.key(labels, "quantile"))]
            q = {qv.quantile: qv.value for qv in p.quantile_values}
            assert q[float(labels["quantile"])] == value
            checked["summary"] += 1
    assert checked["histogram"] and checked["counter"], checked
    assert set(got) >= {(n, ()) for n in ("up", "scrape_duration_seconds")}


def test_openmetrics_capture_details(server: TargetServer, shared_data: Path) -> None:
    text = (shared_data / "prometheus" / "openmetrics-sample.txt").read_text()
    (req,) = scrape_capture(server, "/om-details", text, OM)
    m = metrics(req)
    counter = m["rpc_requests_total"]
    starts = {attrs(p.attributes)["service"]: p.start_time_unix_nano
              for p in counter.sum.data_points}
    assert starts["normal"] == 1726839813016 * 10**6  # rpc_requests_created, in ms
    (summary_normal,) = [p for p in m["rpc_durations_seconds"].summary.data_points
                         if attrs(p.attributes)["service"] == "normal"]
    assert summary_normal.count == 15 and summary_normal.sum == -8.452185437166741e-05
    assert [(q.quantile, q.value) for q in summary_normal.quantile_values] == [
        (0.5, -5.066758674917046e-06), (0.9, 0.0002935723711788224),
        (0.99, 0.0003023094636293776)]
    # empty label values are left out, as upstream
    assert attrs(m["go_build_info"].gauge.data_points[0].attributes) == {"env": "test"}
    assert m["rpc_requests_total"].description == "Total number of RPC requests received."
    (rm,) = req.resource_metrics
    (sm,) = rm.scope_metrics
    assert sm.scope.name == SCOPE_NAME


# ---- mapping rules ---------------------------------------------------------------------


def _txn(metadata: dict[str, tuple[str, str, str]], discovered: dict[str, str] | None = None
         ) -> Transaction:
    return Transaction({"job": "j", "instance": "10.1.2.3:8080"}, discovered or
                       {"__scheme__": "https"}, metadata)


def _append(txn: Transaction, name: str, value: float, t: int = 1000, **labels: str) -> None:
    txn.append({"__name__": name, "job": "j", "instance": "10.1.2.3:8080", **labels}, t, value)


def _request(txn: Transaction, trim: bool = False) -> Any:
    txn.set_initial_start_times()
    return to_request(list(txn.resources.values()), "1.2.3", trim)


def test_resource_attributes_from_target_and_kubernetes_discovery() -> None:
    meta = {"__scheme__": "http", "__meta_kubernetes_namespace": "shop",
            "__meta_kubernetes_pod_name": "web-7d9f", "__meta_kubernetes_pod_uid": "u-1",
            "__meta_kubernetes_pod_container_name": "app",
            "__meta_kubernetes_pod_node_name": "node-a",
            "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
            "__meta_kubernetes_pod_controller_name": "web-7d9f"}
    assert resource_attributes("j", "10.1.2.3:8080", meta) == {
        "service.name": "j", "server.address": "10.1.2.3", "service.instance.id": "10.1.2.3:8080",
        "server.port": "8080", "url.scheme": "http", "k8s.namespace.name": "shop",
        "k8s.pod.name": "web-7d9f", "k8s.pod.uid": "u-1", "k8s.container.name": "app",
        "k8s.node.name": "node-a", "k8s.replicaset.name": "web-7d9f"}
    # loopback, unspecified and localhost are not a server.address
    for instance in ("127.0.0.1:9100", "0.0.0.0:1", "localhost:80", "[::1]:9100"):
        assert "server.address" not in resource_attributes("j", instance, {})
    assert resource_attributes("j", "[2001:db8::1]:9100", {})["server.address"] == "2001:db8::1"
    assert resource_attributes("j", "host-without-port", {})["server.port"] == ""


def test_target_info_and_scope_labels() -> None:
    txn = _txn({"target_info": ("info", "", ""), "m": ("gauge", "", "")})
    _append(txn, "target_info", 1, **{"deployment.environment": "prod"})
    _append(txn, "m", 1, otel_scope_name="lib", otel_scope_version="2", a="b")
    _append(txn, "otel_scope_info", 1, otel_scope_name="lib", otel_scope_version="2", x="y")
    req = _request(txn)
    (rm,) = req.resource_metrics
    assert attrs(rm.resource.attributes)["deployment.environment"] == "prod"
    (sm,) = rm.scope_metrics
    assert (sm.scope.name, sm.scope.version, attrs(sm.scope.attributes)) == ("lib", "2",
                                                                             {"x": "y"})
    assert attrs(sm.metrics[0].gauge.data_points[0].attributes) == {"a": "b"}


def test_info_stateset_gaugehistogram_and_unknown_as_upstream() -> None:
    txn = _txn({"build": ("info", "", ""), "state": ("stateset", "", ""),
                "queue": ("gaugehistogram", "", ""), "u": ("unknown", "", "")})
    _append(txn, "build_info", 1, version="1.0")
    _append(txn, "state", 1, state="a")
    _append(txn, "state", 0, state="b")
    _append(txn, "queue_bucket", 3, le="1.0")
    _append(txn, "queue_bucket", 5, le="+Inf")
    _append(txn, "queue_gcount", 5)
    _append(txn, "u", 2)
    m = metrics(_request(txn))
    assert m["build"].WhichOneof("data") == "sum" and not m["build"].sum.is_monotonic
    assert m["state"].WhichOneof("data") == "sum" and len(m["state"].sum.data_points) == 2
    assert m["queue"].WhichOneof("data") == "gauge"
    assert [attrs(p.attributes)["le"] for p in m["queue"].gauge.data_points] == ["1.0", "+Inf"]
    assert m["queue_gcount"].WhichOneof("data") == "gauge"
    assert m["u"].WhichOneof("data") == "gauge"
    assert [(md.key, md.value.string_value) for md in m["state"].metadata] == [
        ("prometheus.type", "stateset")]


def test_exemplar_trace_and_span_ids_as_upstream() -> None:
    txn = _txn({"c": ("counter", "", "")})
    ex = [Exemplar({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "span_id": "00f067aa0ba902b7", "user": "u1"}, 0.5, 999),
          Exemplar({"TRACE_ID": "abcd", "span_id": "not-hex!"}, 1.5, 998)]
    txn.append({"__name__": "c_total", "job": "j", "instance": "i"}, 1000, 3, exemplars=ex)
    (p,) = metrics(_request(txn))["c_total"].sum.data_points
    e1, e2 = p.exemplars
    assert e1.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert e1.span_id.hex() == "00f067aa0ba902b7"
    assert attrs(e1.filtered_attributes) == {"user": "u1"}
    assert (e1.as_double, e1.time_unix_nano) == (0.5, 999 * 10**6)
    assert e2.trace_id.hex() == "0" * 28 + "abcd"  # short ids are left-padded, as upstream
    assert attrs(e2.filtered_attributes) == {"span_id": "not-hex!"}


def test_units_and_trim_metric_suffixes() -> None:
    assert unit_to_ucum("seconds") == "s" and unit_to_ucum("bytes_per_second") == "By/s"
    assert unit_to_ucum("widgets") == "widgets" and unit_to_ucum("") == ""
    assert trim_suffixes("http_request_duration_seconds_total", "sum", "seconds") == \
        "http_request_duration"
    assert trim_suffixes("process_open_fds", "gauge", "") == "process_open_fds"
    assert trim_suffixes("requests_total", "gauge", "") == "requests_total"
    txn = _txn({"d_seconds": ("counter", "", "seconds")})
    _append(txn, "d_seconds_total", 1)
    m = metrics(_request(txn, trim=True))
    assert "d" in m and m["d"].unit == "s"


def test_histogram_with_bad_buckets_is_dropped_not_garbled() -> None:
    txn = _txn({"h": ("histogram", "", "")})
    for le, v in (("1", 5), ("2", 3), ("+Inf", 6)):  # decreasing: invalid
        _append(txn, "h_bucket", v, le=le)
    _append(txn, "h_count", 6)
    _append(txn, "ok", 1)
    m = metrics(_request(txn))
    assert "h" not in m and "ok" in m


def test_histogram_without_count_is_dropped_and_without_sum_kept() -> None:
    txn = _txn({"a": ("histogram", "", ""), "b": ("histogram", "", "")})
    _append(txn, "a_bucket", 1, le="+Inf")
    _append(txn, "a_sum", 1)
    _append(txn, "b_bucket", 2, le="+Inf")
    _append(txn, "b_count", 2)
    m = metrics(_request(txn))
    assert "a" not in m
    (p,) = m["b"].histogram.data_points
    assert p.count == 2 and not p.HasField("sum") and list(p.bucket_counts) == [2]


def test_start_time_metric_adjuster() -> None:
    adj = StartTimeMetricAdjuster("", 120)
    for t, v in ((1000, 5), (2000, 7), (3000, 2)):
        txn = _txn({"process_start_time_seconds": ("gauge", "", ""), "c": ("counter", "", "")})
        _append(txn, "process_start_time_seconds", 500.25, t)
        _append(txn, "c_total", v, t)
        txn.set_initial_start_times()
        adj.adjust(list(txn.resources.values()))
        (p,) = metrics(to_request(list(txn.resources.values()), "x"))["c_total"].sum.data_points
        # the process's start, until the counter goes down: then the point's own time
        assert p.start_time_unix_nano == (500_250_000_000 if t < 3000 else 3000 * 10**6)


def test_summary_reset_detected_on_count() -> None:
    adj = InitialPointAdjuster(120)
    starts = []
    for t, count in ((1000, 10), (2000, 12), (3000, 1)):
        txn = _txn({"s": ("summary", "", "")})
        _append(txn, "s", 0.1, t, quantile="0.5")
        _append(txn, "s_count", count, t)
        _append(txn, "s_sum", count * 0.1, t)
        txn.set_initial_start_times()
        adj.adjust(list(txn.resources.values()))
        (p,) = metrics(to_request(list(txn.resources.values()), "x"))["s"].summary.data_points
        starts.append(p.start_time_unix_nano // 10**6)
    assert starts == [1000, 1000, 3000]
