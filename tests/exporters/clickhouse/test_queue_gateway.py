"""Nothing acknowledged is lost, nothing is stored twice: real otelgw processes under load from
several OTLP/HTTP clients, killed with SIGKILL, cut off from their ClickHouse server, stopped with
SIGTERM. Each client sends spans with unique SpanIds and never resends a request it got no 200
for, so every SpanId acknowledged must be in otel_traces exactly once afterwards.

The queue merges requests into larger INSERTs (`sending_queue::batch`), as configured for
production: a kill between an INSERT and the log recording it must not make the restarted queue
merge the same requests differently (under another deduplication token)."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loadtests.gatewayproc import Gateway, default_config, free_port
from tests.chserver import ChServer

pytestmark = pytest.mark.timeout(120)

SPANS_PER_REQUEST = 100
BASE_NS = 1_767_225_600 * 10**9


class Clients:
    """`n` threads posting traces until stopped; each SpanId is (client, sequence) and is sent
    once. Records what was acknowledged, refused (with Retry-After) and failed."""

    def __init__(self, url: Callable[[], str], service: str, n: int = 6) -> None:
        self.url = url
        self.service = service
        self.acked: set[str] = set()
        self.statuses: Counter[int | str] = Counter()
        self.retry_after: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(n)]

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _request(self, client: int, seq: int) -> tuple[bytes, list[str]]:
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", self.service
        spans = rs.scope_spans.add().spans
        trace_id = random.randbytes(16)
        ids = []
        for i in range(SPANS_PER_REQUEST):
            span_id = ((client + 1) << 40 | (seq * SPANS_PER_REQUEST + i)).to_bytes(8, "big")
            s = spans.add()
            s.trace_id, s.span_id, s.name = trace_id, span_id, "op"
            s.start_time_unix_nano = BASE_NS + seq
            s.end_time_unix_nano = BASE_NS + seq + 1000
            ids.append(span_id.hex())
        return req.SerializeToString(), ids

    def _run(self, client: int) -> None:
        seq = 0
        while not self._stop.is_set():
            body, ids = self._request(client, seq)
            seq += 1
            req = urllib.request.Request(f"{self.url()}/v1/traces", data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(req, timeout=20) as resp:
                    status: int | str = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                if exc.headers.get("Retry-After"):
                    self.retry_after.append(exc.headers["Retry-After"])
            except (OSError, urllib.error.URLError) as exc:  # killed, restarting
                status = type(exc).__name__
            with self._lock:
                self.statuses[status] += 1
                if status == 200:
                    self.acked.update(ids)
            if status != 200:
                time.sleep(0.05)


def _stored(rows: Callable[[str], list[dict[str, Any]]], service: str) -> Counter[str]:
    got = rows(f"SELECT SpanId AS s, count() AS n FROM otel_traces WHERE ServiceName = "
               f"'{service}' GROUP BY SpanId")
    return Counter({r["s"]: int(r["n"]) for r in got})


def _settle(rows: Callable[[str], list[dict[str, Any]]], service: str, acked: set[str],
            timeout: float = 40) -> Counter[str]:
    """What is stored once every acknowledged span is (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored(rows, service)
        if acked <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


def _check(stored: Counter[str], clients: Clients, capsys: pytest.CaptureFixture[str],
           what: str) -> None:
    missing = clients.acked - stored.keys()
    duplicated = {s: n for s, n in stored.items() if n > 1}
    unacked = len(stored.keys() - clients.acked)  # sent, no 200 seen (killed mid-request)
    with capsys.disabled():
        print(f"\n{what}: {len(clients.acked)} spans acknowledged, {sum(stored.values())} rows, "
              f"{len(missing)} acknowledged missing, {len(duplicated)} duplicated, {unacked} "
              f"stored without an acknowledgement; responses {dict(clients.statuses)}")
    assert clients.acked, "no request was acknowledged"
    assert not missing, f"{len(missing)} acknowledged spans are missing, e.g. {sorted(missing)[:5]}"
    assert not duplicated, f"{len(duplicated)} spans stored more than once: " \
                           f"{list(duplicated.items())[:5]}"


def _metric(gw: Gateway, name: str) -> float:
    url = f"http://127.0.0.1:{gw.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(name: str = "gw", extensions: dict[str, Any] | None = None,
             batch_processor: bool = False, **clickhouse: Any) -> Gateway:
        ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
        config = default_config(tmp_path / name / "data", ports)
        config["processors"]["batch"] = {"send_batch_size": 8192, "timeout": "100ms"}
        for pipeline in config["service"]["pipelines"].values():
            pipeline["processors"] = ["batch"] if batch_processor else []
        # each request a record, ~10 of them per INSERT: many groups for a kill to cut into
        queue = {"batch": {"flush_timeout": "50ms", "min_size": 10 * SPANS_PER_REQUEST}}
        queue.update(clickhouse.pop("sending_queue", {}))
        config["exporters"]["clickhouse"]["sending_queue"] = queue
        config["exporters"]["clickhouse"].update(clickhouse)
        if extensions:
            config["extensions"] = extensions
            config["service"]["extensions"] = list(extensions)
        gw = Gateway(tmp_path / name, config, ports)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop(signal.SIGKILL, timeout=10)


def test_sigkill_three_times_under_load(gateway_factory: Callable[..., Gateway],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # a small queue: what it holds at the end is stored within seconds
    gw = gateway_factory(sending_queue={"queue_size": 20}).start()
    rng = random.Random()
    with Clients(lambda: gw.http_url, "crash") as clients:
        for _ in range(3):
            time.sleep(rng.uniform(1.5, 3.5))
            gw.stop(signal.SIGKILL)
            gw.start()
        time.sleep(1.5)
    assert clients.statuses[200] > 20, clients.statuses
    stored = _settle(gw.rows, "crash", clients.acked)
    _check(stored, clients, capsys, "SIGKILL x3")
    replays = gw.logs().count("from before the last stop are being sent")
    regrouped = gw.logs().count("merged exports they were in")
    assert gw.stop() == 0, gw.logs()[-3000:]
    assert replays >= 1, "no restart found batches to replay: the kills tested nothing"
    with capsys.disabled():
        print(f"{replays} restarts replayed batches, {regrouped} of them merged exports")


def test_sigterm_drains_under_load(tmp_path: Path, gateway_factory: Callable[..., Gateway],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Also: the queue in a Collector `file_storage` extension's directory."""
    storage = tmp_path / "file_storage"
    gw = gateway_factory(extensions={"file_storage/queue": {"directory": str(storage),
                                                            "create_directory": True}},
                         sending_queue={"queue_size": 20, "storage": "file_storage/queue"})
    gw.start()
    with Clients(lambda: gw.http_url, "drain") as clients:
        time.sleep(3)
        assert list((storage / "exporter_clickhouse").glob("*.wal"))
        assert gw.stop(signal.SIGTERM) == 0, gw.logs()[-3000:]
    assert "otelgw stopped" in gw.logs()
    assert "stay in the queue" not in gw.logs()  # drained within drain_timeout
    gw.start()
    stored = _settle(gw.rows, "drain", clients.acked, timeout=10)
    _check(stored, clients, capsys, "SIGTERM under load")
    assert gw.stop() == 0


def test_clickhouse_outage_fills_the_queue_then_everything_is_stored_once(
        tmp_path: Path, gateway_factory: Callable[..., Gateway],
        capsys: pytest.CaptureFixture[str]) -> None:
    ch = ChServer(tmp_path / "store", free_port())
    ch.start()
    try:
        # requests of ~600 spans (the batch processor's), so 15 of them fill the disk
        gw = gateway_factory(endpoint=ch.url, database="otel_outage", batch_processor=True,
                             sending_queue={"queue_size": 15},
                             retry_on_failure={"initial_interval": "200ms",
                                               "max_interval": "500ms"}).start()
        queue_dir = gw.data_dir / "queue" / "clickhouse"
        with Clients(lambda: gw.http_url, "outage") as clients:
            time.sleep(1.5)
            ch.stop()
            deadline = time.monotonic() + 20
            while not clients.statuses[429] and time.monotonic() < deadline:
                time.sleep(0.1)
            queued = _metric(gw, "otelcol_exporter_queue_size")
            # files may be larger than their data: segments are preallocated
            on_disk = sum(p.stat().st_size for p in queue_dir.glob("*.[wa][ac][lk]"))
            gauge = _metric(gw, "otelgw_exporter_queue_bytes")
            refused_at = dict(clients.statuses)
            ch.start()
            time.sleep(2)
        assert clients.statuses[429], f"no 429 while ClickHouse was down: {refused_at}"
        assert queued == 15, f"the queue held {queued} batches at the first 429"
        assert 15 * 10_000 < gauge <= on_disk, (on_disk, gauge)
        assert clients.retry_after and all(int(v) >= 1 for v in clients.retry_after)
        assert _metric(gw, "otelcol_exporter_enqueue_failed_spans_total") > 0
        stored = _settle(lambda q: ch.rows(q, "otel_outage"), "outage", clients.acked)
        _check(stored, clients, capsys, "ClickHouse outage")
        assert gw.stop() == 0, gw.logs()[-3000:]
        assert not list(queue_dir.glob("*.wal")), "the queue was not emptied"
    finally:
        ch.stop()
