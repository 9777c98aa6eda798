"""One target's scrape loop against real HTTP targets (aiohttp on loopback), in process.

Each test drives `ScrapeLoop.scrape_and_report` directly, so every scrape is one call and the
tests need no waiting for intervals; what a scrape committed is checked in the OTLP request the
receiver would push.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import shutil
import ssl
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from receivers.prometheus.adjust import InitialPointAdjuster
from receivers.prometheus.config import PrometheusReceiverConfig, ScrapeConfig
from receivers.prometheus.convert import Transaction, to_request
from receivers.prometheus.httpconfig import HTTPClient
from receivers.prometheus.scrape import (
    LoopOptions,
    ScrapeLoop,
    ScrapeResult,
    Target,
    discovered_labels,
    populate_labels,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TargetServer:
    """aiohttp on a free loopback port in a thread of its own (so a gateway subprocess or an
    in-process receiver can scrape it); `routes[path]` is the handler of a path, swappable at
    any time; `requests[path]` keeps every request's headers."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.routes: dict[str, Handler] = {}
        self.requests: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path].append(dict(request.headers))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such target")
        return await handler(request)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> TargetServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def body(text: str | bytes, content_type: str = "text/plain; version=0.0.4",
         status: int = 200) -> Handler:
    data = text.encode() if isinstance(text, str) else text

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, headers={"Content-Type": content_type})
    return handler


def sequence(*texts: str) -> Handler:
    """A target whose exposition changes on each scrape (the last one repeats)."""
    calls = [0]

    async def handler(request: web.Request) -> web.StreamResponse:
        text = texts[min(calls[0], len(texts) - 1)]
        calls[0] += 1
        return web.Response(text=text, content_type="text/plain")
    return handler


def slow(seconds: float, text: str = "x 1\n") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text=text, content_type="text/plain")
    return handler


def truncated(text: str) -> Handler:
    """Promises more bytes than it sends, then drops the connection."""
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.content_length = len(text) + 1000
        await resp.prepare(request)
        await resp.write(text.encode())
        assert request.transport is not None
        request.transport.close()
        return resp
    return handler


@pytest.fixture(scope="module")
def server() -> Iterator[TargetServer]:
    srv = TargetServer().start()
    yield srv
    srv.stop()


# ---- a loop with its commits captured --------------------------------------------------


class Loop:
    """A ScrapeLoop for one path of the server; `scrape()` returns the OTLP request."""

    def __init__(self, server: TargetServer, path: str, extra_metrics: bool = False,
                 **scrape_config: Any) -> None:
        self.extra_metrics = extra_metrics
        cfg = {"job_name": "test", "scrape_interval": "1s", "scrape_timeout": "500ms",
               "metrics_path": path, "static_configs": [{"targets": [server.address]}],
               "scheme": "https" if server.ssl_context else "http", **scrape_config}
        rc = PrometheusReceiverConfig.model_validate({"config": {"scrape_configs": [cfg]}})
        self.cfg: ScrapeConfig = rc.config.scrape_configs[0]
        labels = populate_labels(self.cfg, discovered_labels(
            self.cfg, {"__address__": server.address}, {"env": "test"}))
        assert labels is not None
        self.target = Target(labels, discovered_labels(
            self.cfg, {"__address__": server.address}, {}), self.cfg.params)
        self.commits: list[tuple[Transaction, ScrapeResult]] = []
        self.adjuster = InitialPointAdjuster(120)
        self.client: HTTPClient | None = None

    def _commit(self, target: Target, txn: Transaction, result: ScrapeResult) -> None:
        self.commits.append((txn, result))

    async def scrape(self, at: float | None = None) -> tuple[Any, ScrapeResult]:
        if self.client is None:
            self.client = HTTPClient(self.cfg)
            self.loop = ScrapeLoop(self.target, LoopOptions(
                self.cfg, self.client, self._commit, extra_metrics=self.extra_metrics))
        await self.loop.scrape_and_report(at or time.time())
        txn, result = self.commits[-1]
        txn.set_initial_start_times()
        resources = list(txn.resources.values())
        self.adjuster.adjust(resources)
        return to_request(resources, "test"), result

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def metrics(req: Any) -> dict[str, Any]:
    return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


def attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def value(req: Any, name: str) -> float:
    (p,) = points(metrics(req)[name])
    return float(p.as_double)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


GOOD = "# TYPE a_total counter\na_total{k=\"1\"} 5\n# TYPE g gauge\ng 7\n"


# ---- the request ---------------------------------------------------------------------------


def test_request_headers_and_url(server: TargetServer) -> None:
    server.routes["/hdr"] = body(GOOD)

    async def go() -> None:
        loop = Loop(server, "/hdr", params={"module": ["a", "b"]},
                    basic_auth={"username": "u", "password": "p"})
        await loop.scrape()
        await loop.close()
    run(go())
    (h,) = server.requests["/hdr"]
    assert h["Accept"].startswith("application/openmetrics-text;version=1.0.0;"
                                  "escaping=allow-utf-8;q=0.6,application/openmetrics-text;"
                                  "version=0.0.1;q=0.5,text/plain;version=1.0.0")
    assert h["Accept"].endswith("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
    assert h["Accept-Encoding"] == "gzip"
    assert h["X-Prometheus-Scrape-Timeout-Seconds"] == "0.5"
    assert h["Authorization"] == "Basic dTpw"
    assert h["User-Agent"].startswith("otelgw")


def test_gzip_body_is_decompressed(server: TargetServer) -> None:
    async def gz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(GOOD.encode()), headers={
            "Content-Type": "text/plain", "Content-Encoding": "gzip"})
    server.routes["/gz"] = gz

    async def go() -> Any:
        loop = Loop(server, "/gz")
        req, result = await loop.scrape()
        await loop.close()
        return req, result
    req, result = run(go())
    assert result.error is None
    assert value(req, "g") == 7 and value(req, "a_total") == 5


# ---- what a scrape produces ----------------------------------------------------------------


def test_synthetic_series_and_target_labels(server: TargetServer) -> None:
    server.routes["/good"] = body(GOOD)

    async def go() -> Any:
        loop = Loop(server, "/good")
        out = await loop.scrape()
        await loop.close()
        return out
    req, result = run(go())
    m = metrics(req)
    assert value(req, "up") == 1.0
    assert value(req, "scrape_samples_scraped") == 2
    assert value(req, "scrape_samples_post_metric_relabeling") == 2
    assert value(req, "scrape_series_added") == 2
    assert 0 < value(req, "scrape_duration_seconds") < 0.5
    assert m["scrape_duration_seconds"].unit == "s"
    (rm,) = req.resource_metrics
    assert attrs(rm.resource.attributes) == {
        "service.name": "test", "service.instance.id": server.address,
        "server.port": str(server.port), "url.scheme": "http"}
    # the group label `env` is a target label: on every point, never on the resource
    assert attrs(points(m["up"])[0].attributes) == {"env": "test"}
    assert attrs(points(m["a_total"])[0].attributes) == {"k": "1", "env": "test"}
    assert m["a_total"].sum.is_monotonic and m["a_total"].sum.aggregation_temporality == 2


def test_honor_labels_false_renames_conflicts_to_exported(server: TargetServer) -> None:
    server.routes["/conflict"] = body('m{env="prod",job="other",exported_env="x"} 1\n')

    async def go(**kw: Any) -> Any:
        loop = Loop(server, "/conflict", **kw)
        req, _ = await loop.scrape()
        await loop.close()
        return req
    req = run(go())
    (rm,) = [r for r in req.resource_metrics if any(
        m.name == "m" for sm in r.scope_metrics for m in sm.metrics)]
    assert attrs(rm.resource.attributes)["service.name"] == "test"
    p = points(metrics(req)["m"])[0]
    assert attrs(p.attributes) == {"env": "test", "exported_env": "x",
                                   "exported_exported_env": "prod", "exported_job": "other"}
    req = run(go(honor_labels=True))
    # honored: the exposed job wins, so the sample belongs to another (job, instance) resource
    jobs = {attrs(r.resource.attributes)["service.name"] for r in req.resource_metrics}
    assert jobs == {"test", "other"}
    m = [m for r in req.resource_metrics for sm in r.scope_metrics for m in sm.metrics
         if m.name == "m"][0]
    assert attrs(points(m)[0].attributes) == {"env": "prod", "exported_env": "x"}


def test_metric_relabel_configs_drop_and_rewrite(server: TargetServer) -> None:
    server.routes["/relabel"] = body("keep_me 1\ndrop_me 2\nother{a=\"x\"} 3\n")

    async def go() -> Any:
        loop = Loop(server, "/relabel", metric_relabel_configs=[
            {"source_labels": ["__name__"], "regex": "drop_.*", "action": "drop"},
            {"source_labels": ["a"], "target_label": "b", "replacement": "got_$1"}])
        req, _ = await loop.scrape()
        await loop.close()
        return req
    req = run(go())
    m = metrics(req)
    assert "drop_me" not in m and "keep_me" in m
    assert attrs(points(m["other"])[0].attributes)["b"] == "got_x"
    assert value(req, "scrape_samples_scraped") == 3
    assert value(req, "scrape_samples_post_metric_relabeling") == 2


def test_duplicate_series_dropped_up_stays_1(server: TargetServer,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """As Prometheus: a repeated series is dropped (the first value is kept) and warned about;
    the scrape itself succeeds."""
    server.routes["/dupe"] = body('d{a="1"} 1\nd{a="1"} 2\nok 3\n')

    async def go() -> Any:
        loop = Loop(server, "/dupe")
        req, result = await loop.scrape()
        await loop.close()
        return req, result
    with caplog.at_level(logging.WARNING):
        req, result = run(go())
    assert result.error is None and value(req, "up") == 1
    assert value(req, "d") == 1 and value(req, "ok") == 3
    assert value(req, "scrape_samples_post_metric_relabeling") == 3
    assert any("more than once" in r.getMessage() and "/dupe" in r.getMessage()
               for r in caplog.records)


# ---- failures ----------------------------------------------------------------------------


FAILURES = [
    ("timeout", slow(2.0), {}, "timed out after 500ms"),
    ("http500", body("oops", status=500), {}, "HTTP status 500"),
    ("garbage", body("<html><body>not metrics</body></html>", "text/html"), {},
     "cannot parse"),
    ("invalid_line", body("ok 1\nbad{ 2\n"), {}, "line 2"),
    ("truncated", truncated("ok 1\npartial_metric{a=\"b\"} 1"), {}, "truncated"),
    ("too_big", body("x" * 100 + " 1\n"), {"body_size_limit": "64B"}, "body size limit"),
    ("too_many", body("".join(f"s{i} {i}\n" for i in range(20))), {"sample_limit": 10},
     "sample limit exceeded"),
    ("too_many_labels", body('m{a="1",b="2",c="3"} 1\n'), {"label_limit": 6}, "label_limit"),
    ("om_without_eof", body("a 1\n", "application/openmetrics-text; version=1.0.0"), {},
     "EOF"),
]


@pytest.mark.parametrize("name,handler,extra,error", FAILURES, ids=[f[0] for f in FAILURES])
def test_failed_scrape_reports_up_0_and_marks_series_stale(
        server: TargetServer, caplog: pytest.LogCaptureFixture, name: str, handler: Handler,
        extra: dict[str, Any], error: str) -> None:
    path = f"/fail_{name}"
    good = body("ok 1\ngone_soon 2\n")

    async def go() -> Any:
        loop = Loop(server, path, **extra)
        server.routes[path] = good
        first, r1 = await loop.scrape()
        server.routes[path] = handler
        second, r2 = await loop.scrape()
        server.routes[path] = good
        third, r3 = await loop.scrape()
        await loop.close()
        return first, r1, second, r2, third, r3
    with caplog.at_level(logging.WARNING):
        first, r1, second, r2, third, r3 = run(go())
    assert r1.error is None and value(first, "up") == 1
    assert r2.error is not None and error in r2.error, r2.error
    assert value(second, "up") == 0
    m = metrics(second)
    for series in ("ok", "gone_soon"):  # everything of the target is stale
        (p,) = points(m[series])
        assert p.flags == 1 and p.WhichOneof("value") is None
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(path in msg and error in msg for msg in logged), logged
    assert r3.error is None and value(third, "up") == 1 and value(third, "ok") == 1


def test_body_size_limit_is_on_the_uncompressed_size(server: TargetServer) -> None:
    text = "# a comment to make the body long " + "x" * 200 + "\nm 1\n"

    async def gz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(text.encode()), headers={
            "Content-Type": "text/plain", "Content-Encoding": "gzip"})
    server.routes["/gzbig"] = gz

    async def go() -> Any:
        loop = Loop(server, "/gzbig", body_size_limit="128B")
        _, result = await loop.scrape()
        await loop.close()
        return result
    assert len(gzip.compress(text.encode())) < 128
    assert "body size limit" in (run(go()).error or "")


def test_failures_are_logged_rate_limited(server: TargetServer,
                                          caplog: pytest.LogCaptureFixture) -> None:
    server.routes["/down"] = body("no", status=503)

    async def go() -> None:
        loop = Loop(server, "/down")
        for _ in range(5):
            await loop.scrape()
        await loop.close()
    with caplog.at_level(logging.WARNING):
        run(go())
    lines = [r for r in caplog.records if "/down" in r.getMessage()]
    assert len(lines) == 1 and "HTTP status 503" in lines[0].getMessage()


# ---- staleness and start times -------------------------------------------------------------


def test_vanished_series_gets_a_no_recorded_value_point(server: TargetServer) -> None:
    server.routes["/flap"] = sequence(
        "# TYPE c_total counter\nc_total 1\nstays 1\n# TYPE h histogram\n"
        'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n',
        "stays 2\n")

    async def go() -> Any:
        loop = Loop(server, "/flap")
        a, _ = await loop.scrape(1000.0)
        b, _ = await loop.scrape(1001.0)
        c, _ = await loop.scrape(1002.0)
        await loop.close()
        return a, b, c
    a, b, c = run(go())
    m = metrics(b)
    (sp,) = points(m["c_total"])
    assert sp.flags == 1 and sp.time_unix_nano == 1001 * 10**9
    assert sp.start_time_unix_nano == 1000 * 10**9  # the series' start carried to its end
    (hp,) = points(m["h"])
    assert hp.flags == 1 and list(hp.explicit_bounds) == [1.0] and hp.count == 0
    assert value(b, "stays") == 2
    assert "c_total" not in metrics(c) and "h" not in metrics(c)  # one marker, not one per scrape


def test_counter_start_time_first_observation_then_reset(server: TargetServer) -> None:
    server.routes["/reset"] = sequence(*(f"# TYPE r_total counter\nr_total {v}\n"
                                         for v in (10, 20, 5, 7)))

    async def go() -> list[Any]:
        loop = Loop(server, "/reset")
        out = [(await loop.scrape(100.0 + i))[0] for i in range(4)]
        await loop.close()
        return out
    reqs = run(go())
    got = [(points(metrics(r)["r_total"])[0].start_time_unix_nano // 10**9,
            points(metrics(r)["r_total"])[0].time_unix_nano // 10**9,
            points(metrics(r)["r_total"])[0].as_double) for r in reqs]
    assert got == [(100, 100, 10), (100, 101, 20), (102, 102, 5), (102, 103, 7)]


def test_openmetrics_created_is_the_start_time(server: TargetServer) -> None:
    om = ("# TYPE c counter\nc_total 3\nc_created 1700000000.5\n"
          "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\n"
          "h_count 1\nh_created 1600000000\n# EOF\n")
    server.routes["/created"] = body(om, "application/openmetrics-text; version=1.0.0")

    async def go() -> Any:
        loop = Loop(server, "/created")
        a, _ = await loop.scrape()
        b, _ = await loop.scrape()
        await loop.close()
        return a, b
    for req in run(go()):
        m = metrics(req)
        assert "c_created" not in m and "h_created" not in m
        assert points(m["c_total"])[0].start_time_unix_nano == 1700000000500 * 10**6
        assert points(m["h"])[0].start_time_unix_nano == 1600000000 * 10**9
        assert value(req, "scrape_samples_scraped") == 5  # _created lines are not samples


def test_honor_timestamps(server: TargetServer) -> None:
    server.routes["/ts"] = body("with_ts 1 1600000000000\nwithout 2\n")

    async def go(**kw: Any) -> Any:
        loop = Loop(server, "/ts", **kw)
        req, _ = await loop.scrape(1700000000.0)
        await loop.close()
        return req
    req = run(go())
    assert points(metrics(req)["with_ts"])[0].time_unix_nano == 1600000000000 * 10**6
    assert points(metrics(req)["without"])[0].time_unix_nano == 1700000000000 * 10**6
    req = run(go(honor_timestamps=False))
    assert points(metrics(req)["with_ts"])[0].time_unix_nano == 1700000000000 * 10**6


def test_extra_scrape_metrics(server: TargetServer) -> None:
    server.routes["/extra"] = body(GOOD)

    async def go() -> Any:
        loop = Loop(server, "/extra", extra_metrics=True, sample_limit=100)
        req, _ = await loop.scrape()
        await loop.close()
        return req
    req = run(go())
    assert value(req, "scrape_timeout_seconds") == 0.5
    assert value(req, "scrape_sample_limit") == 100
    assert value(req, "scrape_body_size_bytes") == len(GOOD)


# ---- targets ---------------------------------------------------------------------------


def _cfg(**kw: Any) -> ScrapeConfig:
    rc = PrometheusReceiverConfig.model_validate({"config": {"scrape_configs": [
        {"job_name": "j", "scrape_interval": "30s", **kw}]}})
    return rc.config.scrape_configs[0]


def test_target_labels_as_prometheus_builds_them() -> None:
    cfg = _cfg(params={"module": ["http_2xx"]}, relabel_configs=[
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__address__"], "target_label": "__param_target"}])
    disc = discovered_labels(cfg, {"__address__": "10.0.0.1:9100",
                                   "__meta_kubernetes_pod_name": "web-1"}, {"zone": "a"})
    assert disc["__scrape_interval__"] == "30s" and disc["__scrape_timeout__"] == "10s"
    assert disc["__param_module"] == "http_2xx" and disc["job"] == "j"
    labels = populate_labels(cfg, disc)
    assert labels is not None
    t = Target(labels, disc, cfg.params)
    assert t.public == {"instance": "10.0.0.1:9100", "job": "j", "pod": "web-1", "zone": "a"}
    assert t.url == "http://10.0.0.1:9100/metrics?module=http_2xx&target=10.0.0.1%3A9100"
    assert t.interval == 30 and t.timeout == 10


def test_target_dropped_or_invalid() -> None:
    cfg = _cfg(relabel_configs=[{"source_labels": ["keep"], "regex": "yes", "action": "keep"}])
    assert populate_labels(cfg, discovered_labels(cfg, {"__address__": "a:1"}, {})) is None
    with pytest.raises(ValueError, match="no address"):
        populate_labels(_cfg(), discovered_labels(_cfg(), {"__address__": ""}, {}))
    cfg = _cfg(relabel_configs=[{"target_label": "__scrape_timeout__", "replacement": "1m"}])
    with pytest.raises(ValueError, match="greater than scrape interval"):
        populate_labels(cfg, discovered_labels(cfg, {"__address__": "a:1"}, {}))


def test_first_scrapes_spread_over_the_interval() -> None:
    cfg = _cfg()
    offsets = []
    for i in range(200):
        disc = discovered_labels(cfg, {"__address__": f"10.0.{i // 250}.{i % 250}:9100"}, {})
        labels = populate_labels(cfg, disc)
        assert labels is not None
        offsets.append(Target(labels, disc).offset(seed=0, now=1000.0))
    assert all(0 <= o <= 30 for o in offsets)
    # a fixed point per target: the same offset again, and the targets fill the interval
    assert Target(populate_labels(cfg, disc) or {}, disc).offset(0, 1000.0) == offsets[-1]
    buckets = {int(o // 3) for o in offsets}
    assert len(buckets) == 10
    assert not math.isclose(min(offsets), max(offsets))


# ---- the shipped scrape examples --------------------------------------------------------

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"


def _example_job(file: str, job: str) -> ScrapeConfig:
    from gateway.component import ComponentID
    from gateway.config.loader import load_config

    cfg = load_config(CONFIG_DIR / file, env={})
    rc = cfg.receivers[ComponentID("prometheus")].config
    return next(sc for sc in rc.config.scrape_configs if sc.job_name == job)  # type: ignore


def test_linkerd_example_keeps_proxy_admin_ports_with_linkerds_labels() -> None:
    cfg = _example_job("scrape-linkerd.yaml", "linkerd-proxy")
    pod = {"__meta_kubernetes_namespace": "emojivoto", "__meta_kubernetes_pod_name": "web-1",
           "__meta_kubernetes_pod_label_linkerd_io_control_plane_ns": "linkerd",
           "__meta_kubernetes_pod_label_linkerd_io_proxy_deployment": "web",
           "__meta_kubernetes_pod_label_linkerd_io_proxy_job": "batch",
           "__meta_kubernetes_pod_label_linkerd_io_workload_ns": "emojivoto",
           "__meta_kubernetes_pod_label_app": "web-svc",
           "__meta_kubernetes_pod_label_pod_template_hash": "5f86686c4d"}
    admin = {"__address__": "10.42.0.12:4191", "__meta_kubernetes_pod_container_name":
             "linkerd-proxy", "__meta_kubernetes_pod_container_port_name": "linkerd-admin",
             **pod}
    labels = populate_labels(cfg, discovered_labels(cfg, admin, {}))
    assert labels is not None
    assert Target(labels, admin).public == {
        "instance": "10.42.0.12:4191", "job": "linkerd-proxy", "namespace": "emojivoto",
        "pod": "web-1", "k8s_job": "batch", "deployment": "web", "control_plane_ns": "linkerd",
        "workload_ns": "emojivoto", "app": "web-svc", "pod_template_hash": "5f86686c4d"}
    app_port = {**admin, "__meta_kubernetes_pod_container_name": "web-svc",
                "__meta_kubernetes_pod_container_port_name": "http"}
    assert populate_labels(cfg, discovered_labels(cfg, app_port, {})) is None


def test_node_exporter_example_rewrites_the_kubelet_port() -> None:
    cfg = _example_job("scrape-node-exporter.yaml", "node-exporter-k8s")
    node = {"__address__": "192.168.1.20:10250", "__meta_kubernetes_node_name": "worker-2"}
    labels = populate_labels(cfg, discovered_labels(cfg, node, {}))
    assert labels is not None
    t = Target(labels, node)
    assert t.url == "http://192.168.1.20:9100/metrics"
    assert t.public == {"instance": "192.168.1.20:9100", "job": "node-exporter-k8s",
                        "node": "worker-2"}
    static = _example_job("scrape-node-exporter.yaml", "node-exporter")
    assert static.static_configs[0].targets == ["127.0.0.1:9100"]


def test_traefik_example_keeps_the_metrics_port() -> None:
    cfg = _example_job("scrape-traefik.yaml", "traefik-k8s")
    pod = {"__address__": "10.42.0.7:9100", "__meta_kubernetes_namespace": "ingress",
           "__meta_kubernetes_pod_name": "traefik-abc",
           "__meta_kubernetes_pod_label_app_kubernetes_io_name": "traefik",
           "__meta_kubernetes_pod_container_port_name": "metrics"}
    labels = populate_labels(cfg, discovered_labels(cfg, pod, {}))
    assert labels is not None and Target(labels, pod).public["pod"] == "traefik-abc"
    web = {**pod, "__address__": "10.42.0.7:8000",
           "__meta_kubernetes_pod_container_port_name": "web"}
    assert populate_labels(cfg, discovered_labels(cfg, web, {})) is None


# ---- TLS and credentials ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TargetServer, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=target.test", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:target.test",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    srv = TargetServer(ctx).start()
    srv.routes["/secure"] = body(GOOD)
    yield srv, d / "cert.pem"
    srv.stop()


@pytest.mark.parametrize("tls,ok", [
    ({}, False), ({"insecure_skip_verify": True}, True), ("ca", True),
    ({"server_name": "target.test", "ca_file": "ca"}, True),
    ({"server_name": "other.test", "ca_file": "ca"}, False)])
def test_https_targets_verified_with_tls_config(tls_server: tuple[TargetServer, Path],
                                                tls: Any, ok: bool) -> None:
    server, ca = tls_server
    if tls == "ca":
        tls = {"ca_file": str(ca)}
    elif tls.get("ca_file") == "ca":
        tls = {**tls, "ca_file": str(ca)}

    async def go() -> ScrapeResult:
        loop = Loop(server, "/secure", tls_config=tls)
        _, result = await loop.scrape()
        await loop.close()
        return result
    result = run(go())
    assert (result.error is None) == ok, result.error
    if not ok:
        assert "certificate" in (result.error or "").lower() or "hostname" in (
            result.error or "").lower()


def test_credentials_file_is_read_for_every_scrape(server: TargetServer, tmp_path: Path) -> None:
    server.routes["/auth"] = body(GOOD)
    token = tmp_path / "token"
    token.write_text("first\n")

    async def go() -> None:
        loop = Loop(server, "/auth", authorization={"credentials_file": str(token)})
        await loop.scrape()
        token.write_text("rotated\n")
        await loop.scrape()
        await loop.close()
    run(go())
    assert [h["Authorization"] for h in server.requests["/auth"]] == ["Bearer first",
                                                                     "Bearer rotated"]


def test_scrape_failure_log_file(server: TargetServer, tmp_path: Path) -> None:
    server.routes["/flog"] = body("nope", status=502)
    path = tmp_path / "failures.log"

    async def go() -> None:
        loop = Loop(server, "/flog")
        loop.client = HTTPClient(loop.cfg)
        loop.loop = ScrapeLoop(loop.target, LoopOptions(loop.cfg, loop.client, loop._commit,
                                                        failure_log=str(path)))
        await loop.scrape()
        await loop.close()
    run(go())
    (line,) = path.read_text().splitlines()
    entry = json.loads(line)
    assert entry["target"].endswith("/flog") and "HTTP status 502" in entry["msg"]
