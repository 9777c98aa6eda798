"""The forward listener in-process, over real sockets, with a pipeline stand-in that can hold,
refuse or reject what it is given: acknowledgements follow the pipeline's answer, limits and
malformed input close one connection only, the UDP heartbeat is answered, shutdown drains."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gateway.component import ComponentID, Host
from gateway.errors import PermanentError, RefusedError
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.fluentforward.config import FluentForwardConfig
from receivers.fluentforward.connection import PIPELINE_DEPTH
from receivers.fluentforward.factory import factory
from tests.receivers.fluentforward import frames as f


class Pipeline:
    """Records what it takes; `gate` holds every consume, `holds` the next ones (one each),
    `errors` make the next ones raise and `error` every one."""

    def __init__(self) -> None:
        self.payloads: list[Payload] = []
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.holds: list[asyncio.Event] = []
        self.errors: list[Exception | None] = []
        self.error: Exception | None = None

    async def consume(self, payload: Payload) -> None:
        self.calls += 1
        hold = self.holds.pop(0) if self.holds else self.gate
        error = self.errors.pop(0) if self.errors else self.error
        if hold is not None:
            await hold.wait()
        if error is not None:
            raise error
        self.payloads.append(payload)

    def bodies(self) -> list[str]:
        return [r.body.string_value for p in self.payloads
                for rl in p.message.resource_logs for sl in rl.scope_logs
                for r in sl.log_records]


class Running:
    def __init__(self, receiver: Any, pipeline: Pipeline, telemetry: SelfTelemetry) -> None:
        self.receiver, self.pipeline, self.telemetry = receiver, pipeline, telemetry
        self.port = receiver.server.port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def metric(self, name: str, **labels: str) -> float:
        labels = {"receiver": "fluentforward", **labels}
        return self.telemetry.registry.get_sample_value(name, labels) or 0.0

    def outcome(self, kind: str) -> float:
        return self.metric(f"otelcol_receiver_{kind}_log_records_total", transport="tcp")


def run(scenario: Callable[[Running], Awaitable[None]], **cfg: Any) -> None:
    async def main() -> None:
        pipeline, telemetry = Pipeline(), SelfTelemetry()
        config = FluentForwardConfig(**{"endpoint": "127.0.0.1:0", **cfg})
        receiver = factory.create(ComponentID("fluentforward"), config, {Signal.LOGS: pipeline})
        await receiver.start(Host(telemetry=telemetry))
        try:
            await asyncio.wait_for(scenario(Running(receiver, pipeline, telemetry)), 20)
        finally:
            await receiver.shutdown()

    asyncio.run(main())


def one(body: str, chunk: str | None = None, tag: str = "app") -> bytes:
    return f.message(tag, 1714557600, {"log": body}, {"chunk": chunk} if chunk else None)


def test_ack_waits_for_the_pipeline_to_take_the_events() -> None:
    async def scenario(gw: Running) -> None:
        gw.pipeline.gate = asyncio.Event()
        reader, writer = await gw.connect()
        chunk = f.chunk_id()
        writer.write(one("held", chunk))
        with pytest.raises(TimeoutError):
            await f.read_acks(reader, 1, timeout=0.3)
        assert gw.pipeline.payloads == []
        gw.pipeline.gate.set()
        assert await f.read_acks(reader, 1) == [{"ack": chunk}]
        assert gw.pipeline.bodies() == ["held"]
        assert gw.outcome("accepted") == 1
        writer.close()

    run(scenario)


def test_one_request_per_read_and_acks_in_order() -> None:
    async def scenario(gw: Running) -> None:
        reader, writer = await gw.connect()
        chunks = [f.chunk_id() for _ in range(3)]
        writer.write(one("a", chunks[0]) + f.forward("fwd", [[1, {"log": "b"}]], {"chunk": chunks[1]})
                     + f.packed("pk", [[1, {"log": "c"}], [2, {"log": "d"}]],
                                {"size": 2, "chunk": chunks[2]}))
        assert await f.read_acks(reader, 3) == [{"ack": c} for c in chunks]
        assert len(gw.pipeline.payloads) == 1 and gw.pipeline.payloads[0].items == 4
        assert gw.pipeline.payloads[0].context.client_address == "127.0.0.1"
        assert gw.metric("otelcol_fluent_events_parsed") == 3
        assert gw.metric("otelcol_fluent_records_generated") == 4
        writer.close()

    run(scenario)


async def _wait_calls(pipeline: Pipeline, n: int) -> None:
    for _ in range(200):
        if pipeline.calls >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pipeline.calls} deliveries started, expected {n}")


def test_acks_keep_message_order_when_a_later_read_is_taken_first() -> None:
    async def scenario(gw: Running) -> None:
        first = asyncio.Event()
        gw.pipeline.holds = [first]
        reader, writer = await gw.connect()
        writer.write(one("slow", "a"))
        await _wait_calls(gw.pipeline, 1)
        writer.write(one("fast", "b"))
        await _wait_calls(gw.pipeline, 2)
        assert gw.pipeline.bodies() == ["fast"]  # taken, but its ack waits behind "a"
        with pytest.raises(TimeoutError):
            await f.read_acks(reader, 1, timeout=0.3)
        first.set()
        assert await f.read_acks(reader, 2) == [{"ack": "a"}, {"ack": "b"}]
        writer.close()

    run(scenario)


def test_reads_in_the_pipeline_per_connection_are_bounded() -> None:
    async def scenario(gw: Running) -> None:
        gw.pipeline.gate = asyncio.Event()
        reader, writer = await gw.connect()
        for i in range(PIPELINE_DEPTH + 3):
            writer.write(one(f"m{i}", f"c{i}"))
            await writer.drain()
            await asyncio.sleep(0.02)  # one read each
        await _wait_calls(gw.pipeline, PIPELINE_DEPTH)
        await asyncio.sleep(0.2)
        assert gw.pipeline.calls == PIPELINE_DEPTH  # the rest waits in the socket
        gw.pipeline.gate.set()
        acks = await f.read_acks(reader, PIPELINE_DEPTH + 3)
        assert acks == [{"ack": f"c{i}"} for i in range(PIPELINE_DEPTH + 3)]
        writer.close()

    run(scenario)


def test_no_ack_after_a_refusal_even_for_later_reads_taken() -> None:
    async def scenario(gw: Running) -> None:
        first = asyncio.Event()
        gw.pipeline.holds = [first]
        gw.pipeline.errors = [RefusedError("queue full"), None]
        reader, writer = await gw.connect()
        writer.write(one("refused", "a"))
        await _wait_calls(gw.pipeline, 1)
        writer.write(one("taken", "b"))
        await _wait_calls(gw.pipeline, 2)
        first.set()
        assert await f.rest(reader) == b""  # the client resends both: at least once
        assert gw.outcome("refused") == 1 and gw.outcome("accepted") == 1

    run(scenario)


def test_a_message_split_over_many_reads() -> None:
    async def scenario(gw: Running) -> None:
        reader, writer = await gw.connect()
        data = f.compressed("split", [[f.event_time(1), f.k8s_record(i)] for i in range(200)],
                            {"chunk": "c-split"})
        for i in range(0, len(data), 97):
            writer.write(data[i:i + 97])
            await writer.drain()
            await asyncio.sleep(0)
        assert await f.read_acks(reader, 1) == [{"ack": "c-split"}]
        assert len(gw.pipeline.bodies()) == 200
        writer.close()

    run(scenario)


def test_refused_events_get_no_ack_and_the_client_resends() -> None:
    async def scenario(gw: Running) -> None:
        gw.pipeline.error = RefusedError("memory limit")
        reader, writer = await gw.connect()
        writer.write(one("first try", "c1"))
        assert await f.rest(reader) == b""  # closed, and no ack came before
        assert gw.outcome("refused") == 1 and gw.outcome("accepted") == 0
        gw.pipeline.error = None
        reader, writer = await gw.connect()
        writer.write(one("first try", "c1"))
        assert await f.read_acks(reader, 1) == [{"ack": "c1"}]
        assert gw.pipeline.bodies() == ["first try"]
        writer.close()

    run(scenario)


def test_permanently_invalid_events_are_acknowledged_and_counted_failed() -> None:
    async def scenario(gw: Running) -> None:
        gw.pipeline.error = PermanentError("cannot be stored")
        reader, writer = await gw.connect()
        writer.write(one("bad", "c1"))
        assert await f.read_acks(reader, 1) == [{"ack": "c1"}]
        assert gw.outcome("failed") == 1
        writer.close()

    run(scenario)


@pytest.mark.parametrize("garbage", [
    b"\xc1\xc1\xc1", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    msgpack.packb(["t", "not a time or entries", {"x": 1}, 4]),
    msgpack.packb(["t", [[1, "record is not a map"]], {"chunk": "never"}]),
], ids=["invalid-msgpack", "http", "wrong-types", "bad-record"])
def test_malformed_input_closes_only_its_connection(garbage: bytes, caplog: Any) -> None:
    async def scenario(gw: Running) -> None:
        good_reader, good_writer = await gw.connect()
        reader, writer = await gw.connect()
        writer.write(one("before the garbage", "ok") + garbage + one("after", "lost"))
        assert await f.read_acks(reader, 1) == [{"ack": "ok"}]
        assert await f.closed(reader)
        assert gw.metric("otelcol_fluent_parse_failures") == 1
        good_writer.write(one("still fine", "c2"))
        assert await f.read_acks(good_reader, 1) == [{"ack": "c2"}]
        assert gw.pipeline.bodies() == ["before the garbage", "still fine"]
        good_writer.close()

    with caplog.at_level(logging.WARNING, "receivers.fluentforward"):
        run(scenario)
    assert "closing the connection from 127.0.0.1:" in caplog.text


def test_a_message_over_max_frame_size_closes_the_connection(caplog: Any) -> None:
    async def scenario(gw: Running) -> None:
        reader, writer = await gw.connect()
        writer.write(one("x" * 20000, "big"))
        assert await f.closed(reader)
        reader, writer = await gw.connect()
        writer.write(one("x" * 1000, "small"))
        assert await f.read_acks(reader, 1) == [{"ack": "small"}]
        writer.close()

    with caplog.at_level(logging.WARNING, "receivers.fluentforward"):
        run(scenario, max_frame_size=8192, max_decompressed_size=8192)
    assert "exceeds max_frame_size (8192 bytes)" in caplog.text


def test_max_connections() -> None:
    async def scenario(gw: Running) -> None:
        first = await gw.connect()
        second = await gw.connect()
        await asyncio.sleep(0.05)
        third_reader, _ = await gw.connect()
        assert await f.closed(third_reader, timeout=5)
        first[1].close()
        await asyncio.sleep(0.1)
        reader, writer = await gw.connect()
        writer.write(one("room again", "c"))
        assert await f.read_acks(reader, 1) == [{"ack": "c"}]
        assert gw.metric("otelcol_fluent_opened_connections") == 3
        second[1].close()
        writer.close()

    run(scenario, max_connections=2)


def test_idle_connections_are_closed() -> None:
    async def scenario(gw: Running) -> None:
        reader, writer = await gw.connect()
        writer.write(one("then silence"))
        assert await f.closed(reader, timeout=5)
        assert gw.pipeline.bodies() == ["then silence"]

    run(scenario, idle_timeout="300ms")


def test_udp_heartbeat_is_answered() -> None:
    def ping(port: int) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(b"\x00", ("127.0.0.1", port))
            return udp.recvfrom(16)[0]

    async def scenario(gw: Running) -> None:
        assert await asyncio.to_thread(ping, gw.port) == b"\x00"

    run(scenario)


def test_fluent_logger_over_a_unix_socket(tmp_path: Path) -> None:
    sender = pytest.importorskip("fluent.sender", reason="fluent-logger (test extra) is needed")
    path = tmp_path / "fluent.sock"

    async def scenario(gw: Running) -> None:
        logger = sender.FluentSender("unix.app", host=f"unix://{path}", nanosecond_precision=True)
        try:
            ok = await asyncio.to_thread(logger.emit_with_time, "evt", 1714557600.5,
                                         {"message": "over unix", "n": 1})
            assert ok, logger.last_error
        finally:
            logger.close()
        for _ in range(100):
            if gw.pipeline.payloads:
                break
            await asyncio.sleep(0.05)
        [payload] = gw.pipeline.payloads
        record = payload.message.resource_logs[0].scope_logs[0].log_records[0]
        assert record.body.string_value == "over unix"
        assert record.attributes[0].value.string_value == "unix.app.evt"
        assert record.time_unix_nano == 1714557600_500_000_000
        assert payload.context.client_address == ""

    run(scenario, endpoint=f"unix://{path}")
    assert not path.exists()  # removed at shutdown


def test_shutdown_closes_idle_connections_and_finishes_in_flight_ones() -> None:
    async def main() -> None:
        pipeline = Pipeline()
        pipeline.gate = asyncio.Event()
        receiver = factory.create(ComponentID("fluentforward"),
                                  FluentForwardConfig(endpoint="127.0.0.1:0"),
                                  {Signal.LOGS: pipeline})
        await receiver.start(Host(telemetry=SelfTelemetry()))
        port = receiver.server.port
        idle_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_writer.write(one("in flight", "c"))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(receiver.shutdown())
        assert await f.closed(idle_reader, timeout=2)
        assert not stopping.done()
        pipeline.gate.set()
        assert await f.read_acks(busy_reader, 1) == [{"ack": "c"}]
        await asyncio.wait_for(stopping, 5)
        assert pipeline.bodies() == ["in flight"]
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(main())


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="must be host:port"):
        FluentForwardConfig(endpoint="24224")
    with pytest.raises(ValueError, match="port 99999 is out of range"):
        FluentForwardConfig(endpoint="0.0.0.0:99999")
    with pytest.raises(ValueError, match="max_decompressed_size must be at least"):
        FluentForwardConfig(max_frame_size=1 << 20, max_decompressed_size=1 << 19)
    with pytest.raises(ValueError, match="extra"):
        FluentForwardConfig(**{"security": {"shared_key": "x"}})
    assert FluentForwardConfig(endpoint="unix:///run/x.sock").endpoint == "unix:///run/x.sock"
    assert FluentForwardConfig().endpoint == "localhost:24224"
