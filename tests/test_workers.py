"""`otelgw run --workers N`: real gateway processes sharing their ports, real OTLP clients."""

from __future__ import annotations

import http.client
import re
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psutil
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loadtests.gatewayproc import Gateway, default_config, free_port

SPANS = 50  # per request
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def request(client: int, seq: int) -> bytes:
    """SPANS spans whose trace ids say who sent them: (client, seq, i); client > 0, as an
    all-zero trace id is stored as ''."""
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for i in range(SPANS):
        span = spans.add()
        span.trace_id = struct.pack(">IIQ", client, seq, i)
        span.span_id = struct.pack(">Q", i + 1)
        span.name = "work"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return bytes(req.SerializeToString())


def post_http(gw: Gateway, body: bytes) -> int:
    """One request on a connection of its own, so the kernel picks a process for each."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.ports["http"], timeout=30)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Clients:
    """Concurrent OTLP/HTTP and OTLP/gRPC clients; remembers what the gateway acknowledged."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.acked: set[tuple[int, int]] = set()
        self.lock = threading.Lock()

    def http_client(self, client: int, requests: int, retry: bool = False) -> None:
        for seq in range(requests):
            self._send(lambda body: post_http(self.gw, body) == 200, client, seq, retry)

    def grpc_client(self, client: int, requests: int, retry: bool = False) -> None:
        # a channel of its own: its own connection, so the kernel picks a process for it
        with grpc.insecure_channel(self.gw.grpc_endpoint,
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            export = channel.unary_unary(EXPORT)

            def send(body: bytes) -> bool:
                export(body, timeout=30)
                return True

            for seq in range(requests):
                self._send(send, client, seq, retry)

    def _send(self, send: Callable[[bytes], bool], client: int, seq: int, retry: bool) -> None:
        body = request(client, seq)
        deadline = time.monotonic() + 30
        while True:
            try:
                if send(body):
                    with self.lock:
                        self.acked.add((client, seq))
                    return
            except (OSError, grpc.RpcError, http.client.HTTPException):
                pass
            if not retry or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def run(self, http_clients: int, grpc_clients: int, requests: int,
            retry: bool = False, first: int = 1) -> None:
        with ThreadPoolExecutor(http_clients + grpc_clients) as pool:
            jobs = [pool.submit(self.http_client, first + c, requests, retry)
                    for c in range(http_clients)]
            jobs += [pool.submit(self.grpc_client, 1000 + c, requests, retry)
                     for c in range(grpc_clients)]
            for job in jobs:
                job.result()


def total(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return sum(v for (n, lbl), v in m.items()
               if n == name and all((k, val) in lbl for k, val in labels.items()))


def stored(gw: Gateway) -> tuple[int, set[tuple[int, int]]]:
    """(rows, {(client, seq)}) of the spans in the store."""
    rows = gw.rows("SELECT count() AS n, groupUniqArray(substring(TraceId, 1, 16)) AS sent "
                   "FROM otel_traces")
    return int(rows[0]["n"]), {(int(h[:8], 16), int(h[8:], 16)) for h in rows[0]["sent"]}


def worker_pid(gw: Gateway, after: int = 0) -> int:
    found = re.findall(r"worker 1 \(pid (\d+)\) is ready", gw.logs()[after:])
    assert found, gw.logs()
    return int(found[-1])


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    gw = Gateway(tmp_path / "gw", workers=2)
    yield gw.start()
    gw.stop()


def test_two_processes_share_the_ports_and_store_every_acknowledged_span_once(
        gateway: Gateway) -> None:
    gw = gateway
    owner = psutil.Process(gw.proc.pid)  # type: ignore[union-attr]
    assert [p.pid for p in owner.children()] == [worker_pid(gw)]
    clients = Clients(gw)
    clients.run(http_clients=6, grpc_clients=6, requests=8)
    assert len(clients.acked) == 12 * 8  # nothing refused on an idle gateway
    acked_spans = len(clients.acked) * SPANS
    assert gw.wait_count("otel_traces", acked_spans) == acked_spans
    rows, sent = stored(gw)
    assert rows == acked_spans and sent == clients.acked  # each acknowledged span, once

    deadline = time.monotonic() + 5  # workers report their counts every second
    while True:
        m = gw.self_metrics()
        accepted = total(m, "otelcol_receiver_accepted_spans_total")
        if accepted == acked_spans or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert accepted == acked_spans
    assert total(m, "otelcol_receiver_accepted_spans_total", transport="grpc") == 6 * 8 * SPANS
    # connections landed on both processes: the worker handed some over, the owner took some
    handed_over = total(m, "otelgw_worker_handover_items_total", worker="1", signal="traces")
    assert 0 < handed_over < acked_spans
    assert total(m, "otelcol_exporter_sent_spans_total") == acked_spans
    assert total(m, "otelgw_workers_ready") == 1

    offset = len(gw.logs())
    assert gw.stop() == 0
    tail = gw.logs()[offset:]
    assert tail.index("worker 1 stopped") < tail.index("otelgw stopped"), tail


def test_a_killed_worker_is_restarted_and_no_acknowledged_span_is_lost(
        gateway: Gateway) -> None:
    gw = gateway
    first = worker_pid(gw)
    offset = len(gw.logs())
    clients = Clients(gw)
    sender = threading.Thread(target=clients.run, args=(4, 4, 30, True))
    sender.start()
    time.sleep(0.5)
    psutil.Process(first).kill()  # SIGKILL: requests in flight there get no answer, and retry
    deadline = time.monotonic() + 20
    while not re.search(r"worker 1 \(pid \d+\) is ready", gw.logs()[offset:]):
        assert time.monotonic() < deadline, gw.logs()[offset:]
        time.sleep(0.1)
    sender.join(60)
    assert not sender.is_alive()
    assert "worker 1 (pid %d) exited with signal SIGKILL; restarting it" % first in gw.logs()
    second = worker_pid(gw, offset)
    assert second != first and psutil.pid_exists(second)
    assert len(clients.acked) == 8 * 30  # every client got through, retrying
    deadline = time.monotonic() + 30  # acknowledged: in the write-ahead queue; stored soon
    while not clients.acked <= (found := stored(gw))[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    rows, sent = found
    # at least once: a batch the dead worker handed over but never answered is sent again
    assert clients.acked <= sent and rows >= len(clients.acked) * SPANS
    assert total(gw.self_metrics(), "otelgw_worker_restarts_total", worker="1") == 1

    psutil.Process(gw.proc.pid).kill()  # type: ignore[union-attr]
    psutil.Process(second).wait(10)  # a worker does not outlive its owner


def test_a_second_gateway_on_the_same_ports_fails_with_a_clear_error(
        gateway: Gateway, tmp_path: Path) -> None:
    for workers in (1, 2):
        ports = {**gateway.ports, "query": free_port(), "metrics": free_port()}
        other = Gateway(tmp_path / f"other{workers}", ports=ports, workers=workers)
        with pytest.raises(RuntimeError) as err:
            other.start()
        text = str(err.value)
        assert "otelgw: cannot start: " in text and "Traceback" not in text, text[-2000:]
        assert f"cannot listen on 127.0.0.1:{ports['grpc']}: " in text and "in use" in text
    # the first gateway still serves, from both processes
    assert post_http(gateway, request(1, 1)) == 200
    assert gateway.proc is not None and gateway.proc.poll() is None


def test_without_workers_there_is_one_process(tmp_path: Path) -> None:
    gw = Gateway(tmp_path / "gw").start()
    try:
        assert psutil.Process(gw.proc.pid).children() == []  # type: ignore[union-attr]
        assert post_http(gw, request(1, 1)) == 200
        assert gw.wait_count("otel_traces", SPANS) == SPANS
        assert "[worker" not in gw.logs()
    finally:
        assert gw.stop() == 0


def test_workers_need_fixed_ports(tmp_path: Path) -> None:
    gw = Gateway(tmp_path / "gw", workers=2)
    gw.config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "127.0.0.1:0"
    gw.config_path.write_text(yaml.safe_dump(gw.config))
    with pytest.raises(RuntimeError) as err:
        gw.start()
    assert "receivers::otlp::protocols::http::endpoint: --workers needs a fixed port" in \
        str(err.value)


def test_with_a_clickhouse_server_every_process_inserts_and_a_former_workers_queue_is_drained(
        tmp_path: Path) -> None:
    from tests.chserver import ChServer

    ch_port = free_port()
    ch = ChServer(tmp_path / "ch", ch_port, log_dir=tmp_path).start()
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    config = default_config(tmp_path / "data", ports)
    config["exporters"]["clickhouse"] = {
        "endpoint": ch.url, "path": str(tmp_path / "data"),
        "sending_queue": {"drain_timeout": "1s"}, "retry_on_failure": {"initial_interval": "100ms"}}
    gw = Gateway(tmp_path / "gw", config, ports, workers=2)
    acked: set[tuple[int, int]] = set()
    try:
        gw.start()
        clients = Clients(gw)
        clients.run(http_clients=8, grpc_clients=0, requests=3)
        m = gw.self_metrics()
        # the worker inserted by itself, through a sending queue of its own
        assert (tmp_path / "data" / "queue" / "clickhouse-w1").is_dir()
        assert total(m, "otelgw_worker_handover_items_total") == 0
        ch.stop()  # an outage: batches stay in the processes' queues
        outage = Clients(gw)
        outage.run(http_clients=16, grpc_clients=0, requests=1, first=101)
        assert len(outage.acked) == 16  # acknowledged: on disk in a queue
        acked = clients.acked | outage.acked
        assert gw.stop() == 0
        # the next run has no worker 1: the owner drains what worker 1 left in its queue
        ch = ChServer(tmp_path / "ch", ch_port, log_dir=tmp_path).start()
        gw.workers = 1
        gw.start()
        assert "left by a former worker" in gw.logs() and "clickhouse-w1" in gw.logs()
        deadline, sent = time.monotonic() + 30, set()
        while time.monotonic() < deadline:
            rows = ch.rows("SELECT groupUniqArray(substring(TraceId, 1, 16)) AS sent "
                           "FROM otel_traces")
            sent = {(int(h[:8], 16), int(h[8:], 16)) for h in rows[0]["sent"]}
            if sent >= acked:
                break
            time.sleep(0.2)
        assert sent == acked
    finally:
        gw.stop()
        ch.stop()


def test_the_owners_outcome_reaches_the_workers_client(tmp_path: Path) -> None:
    """Over the real socket: the owner's refusal (a full queue) comes out of the worker's
    pipeline as the same error, with its retry delay; an owner that goes away is retryable."""
    import asyncio

    from gateway.errors import PermanentError, RefusedError, RetryableError
    from gateway.payload import Payload
    from gateway.signals import Signal
    from gateway.workers.handover import HandoverExporter, HandoverServer, OwnerLink

    got: list[tuple[str, tuple[str, ...], bytes, int]] = []

    class Exporters:
        def __init__(self, pipeline: str, exporters: tuple[str, ...]) -> None:
            self.pipeline, self.exporters = pipeline, exporters

        async def consume(self, payload: Payload) -> None:
            got.append((self.pipeline, self.exporters, payload.raw, payload.items))
            outcome = payload.raw[:1]
            if outcome == b"R":
                raise RefusedError("sending queue is full", retry_after=3.0)
            if outcome == b"P":
                raise PermanentError("bad data")

    async def scenario() -> list[BaseException | None]:
        path = str(tmp_path / "h.sock")
        server = HandoverServer(path, Exporters, lambda *_: None, lambda *_: None)
        await server.start()
        lost = asyncio.Event()
        link = OwnerLink(path, 1, lost.set)
        await link.connect()
        exporter = HandoverExporter(None, "traces/x", ["clickhouse"], link)  # type: ignore[arg-type]
        outcomes: list[BaseException | None] = []
        for body in (b"ok", b"R", b"P"):
            try:
                await exporter.consume(Payload(Signal.TRACES, body, None, 7))
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
                outcomes.append(exc)
        await server.stop()  # the owner goes away
        await asyncio.wait_for(lost.wait(), 5)
        try:
            await exporter.consume(Payload(Signal.TRACES, b"ok", None, 7))
        except RetryableError as exc:
            outcomes.append(exc)
        await link.close()
        return outcomes

    ok, refused, permanent, gone = asyncio.run(scenario())
    assert ok is None and got[0] == ("traces/x", ("clickhouse",), b"ok", 7)
    assert isinstance(refused, RefusedError) and refused.retry_after == 3.0
    assert str(refused) == "sending queue is full"
    assert isinstance(permanent, PermanentError) and str(permanent) == "bad data"
    assert type(gone) is RetryableError and "owner process is not reachable" in str(gone)


_DRAINS = ("import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.5), sys.exit(0)))\n"
           "time.sleep(60)\n")


@pytest.mark.timeout(30)
def test_a_worker_restarted_while_the_owner_stops_is_stopped_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker 2 is being (re)started when stop() begins, and comes up while stop() waits for
    worker 1 to drain: it must get SIGTERM too, not outlive the owner's shutdown."""
    import asyncio
    import contextlib
    import os
    import signal
    import sys

    from gateway.telemetry import SelfTelemetry
    from gateway.workers.supervisor import Supervisor

    real = asyncio.create_subprocess_exec
    procs: dict[str, asyncio.subprocess.Process] = {}

    async def run() -> None:
        spawning, release = asyncio.Event(), asyncio.Event()

        async def spawn(*args: str, **kwargs: object) -> asyncio.subprocess.Process:
            worker = args[args.index("--worker-index") + 1]
            if worker == "2":
                spawning.set()
                await release.wait()
            code = _DRAINS if worker == "1" else "import time; time.sleep(60)"
            procs[worker] = await real(sys.executable, "-c", code)
            return procs[worker]

        monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn)
        sup = Supervisor(str(tmp_path / "unused.yaml"), 3, {}, SelfTelemetry())
        sup._tasks = [asyncio.create_task(sup._supervise(k)) for k in (1, 2)]
        await asyncio.wait_for(spawning.wait(), 10)
        while "1" not in procs:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # worker 1 has installed its SIGTERM handler
        stopping = asyncio.create_task(sup.stop())
        await asyncio.sleep(0.05)  # stop() sent its SIGTERMs and waits for worker 1
        release.set()              # worker 2 comes up only now
        await asyncio.wait_for(stopping, 20)
        assert procs["1"].returncode == 0
        assert "2" in procs and procs["2"].returncode == -signal.SIGTERM

    try:
        asyncio.run(run())
    finally:
        for proc in procs.values():  # never leave a process behind, even when failing
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
