"""The fluentforward receiver in a real gateway process (fluentforward → batch → clickhouse):
a real forward client (fluent-logger), messages of every mode as Fluent Bit and Fluentd send
them, malformed and oversized input beside good traffic, the UDP heartbeat, and the rows and
self-metrics a user checks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from loadtests.gatewayproc import Gateway, free_port
from tests.receivers.fluentforward import frames as f

T0 = 1_714_557_600_123_456_789


def _config(gw_ports: dict[str, int], data_dir: str) -> dict[str, Any]:
    return {
        "receivers": {
            "fluentforward": {"endpoint": f"127.0.0.1:{gw_ports['fluent']}",
                              "max_frame_size": 65536, "max_decompressed_size": 1 << 20},
            "fluent_forward/alias": {"endpoint": f"127.0.0.1:{gw_ports['fluent_alias']}"},
        },
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {"clickhouse": {
            "path": data_dir,
            "query_endpoint": {"enabled": True, "endpoint": f"127.0.0.1:{gw_ports['query']}"}}},
        "service": {
            "telemetry": {"metrics": {"address": f"127.0.0.1:{gw_ports['metrics']}"}},
            "pipelines": {"logs": {"receivers": ["fluentforward", "fluent_forward/alias"],
                                   "processors": ["batch"], "exporters": ["clickhouse"]}}},
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("fluentforward")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics", "fluent",
                                      "fluent_alias")}
    gateway = Gateway(workdir, _config(ports, str(workdir / "data")), ports=ports).start()
    yield gateway
    assert gateway.stop() == 0, gateway.logs()


def rows(gw: Gateway, tag: str, n: int) -> list[dict[str, Any]]:
    where = f"LogAttributes['fluent.tag'] = '{tag}'"
    assert gw.wait_count("otel_logs", n, where) == n, gw.logs()[-3000:]
    return gw.rows("SELECT toUnixTimestamp64Nano(Timestamp) AS ts, Body, LogAttributes, "
                   f"ServiceName, ScopeName FROM otel_logs WHERE {where} ORDER BY ts, Body")


async def send(port: int, data: bytes, acks: int = 0) -> list[Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await f.read_acks(reader, acks) if acks else []
    finally:
        writer.close()


def test_fluent_logger_client(gw: Gateway) -> None:
    sender = pytest.importorskip("fluent.sender", reason="fluent-logger (test extra) is needed")
    handler = pytest.importorskip("fluent.handler")
    logger = sender.FluentSender("pyapp", port=gw.ports["fluent"], nanosecond_precision=True)
    try:
        assert logger.emit_with_time("orders", T0 / 1e9, {
            "message": "order placed", "order_id": 42, "amount": 9.5, "paid": True,
            "items": ["a", "b"], "customer": {"tier": "gold"}, "note": None}), logger.last_error
    finally:
        logger.close()
    log = logging.getLogger("fluentforward-test")
    fluent_handler = handler.FluentHandler("pyapp.logging", port=gw.ports["fluent"],
                                           nanosecond_precision=True)
    fluent_handler.setFormatter(handler.FluentRecordFormatter(
        {"level": "%(levelname)s", "message": "%(message)s"}))
    log.addHandler(fluent_handler)
    try:
        log.warning("disk almost full")
    finally:
        log.removeHandler(fluent_handler)
        fluent_handler.close()

    [row] = rows(gw, "pyapp.orders", 1)
    assert row["Body"] == "order placed"
    # float seconds through fluent-logger's EventTime lose only float precision
    assert abs(int(row["ts"]) - T0) < 1000
    assert row["LogAttributes"] == {
        "fluent.tag": "pyapp.orders", "order_id": "42", "amount": "9.5", "paid": "true",
        "items": '["a","b"]', "customer": '{"tier":"gold"}', "note": ""}
    [row] = rows(gw, "pyapp.logging", 1)
    assert row["Body"] == "disk almost full"
    assert row["LogAttributes"]["level"] == "WARNING"


def test_every_mode_lands_in_otel_logs(gw: Gateway) -> None:
    port = gw.ports["fluent"]
    chunks = [f.chunk_id() for _ in range(5)]
    kube = [[f.event_time(T0 + i), f.k8s_record(i)] for i in range(3)]
    acks = asyncio.run(send(port, b"".join([
        # Docker's fluentd logging driver: Message mode, integer time
        f.message("docker.4d1c2b3a", 1593031012, f.docker_record("GET /healthz 200"),
                  {"chunk": chunks[0]}),
        # Fluent Bit mem input, Time_as_Integer off: Forward mode with EventTime
        f.forward("mem.0", [[f.event_time(T0), f.mem_record()],
                            [f.event_time(T0 + 10**9), f.mem_record()]], {"chunk": chunks[1]}),
        # Fluent Bit default: PackedForward with size and (Require_ack_response) chunk
        f.packed("kube.packed", kube, {"size": 3, "chunk": chunks[2]}),
        # Fluent Bit Compress gzip: CompressedPackedForward
        f.compressed("kube.gzip", kube, {"size": 3, "chunk": chunks[3]}),
        # Fluentd out_forward compress gzip (one gzip member per event), Fluent Bit 2.1
        # metadata entries
        f.compressed("fluentd.gzip", [[[f.event_time(T0), {}], {"message": "worker started",
                                                                "pid": 17}],
                                      [[f.event_time(T0 + 5), {"k": 1}], {"message": "ready"}]],
                     {"size": 2, "chunk": chunks[4]}, per_event=True),
    ]), acks=5))
    assert acks == [{"ack": c} for c in chunks]

    [docker] = rows(gw, "docker.4d1c2b3a", 1)
    assert docker["ts"] == 1593031012 * 10**9
    assert docker["Body"] == "GET /healthz 200"
    assert docker["LogAttributes"] == {
        "fluent.tag": "docker.4d1c2b3a", "container_id": "4d1c2b3a" * 8,
        "container_name": "/quirky_turing", "source": "stdout"}
    mem = rows(gw, "mem.0", 2)
    assert [m["ts"] for m in mem] == [T0, T0 + 10**9]
    assert mem[0]["Body"] == "" and mem[0]["LogAttributes"]["Mem.free"] == "838932"
    for tag in ("kube.packed", "kube.gzip"):
        got = rows(gw, tag, 3)
        assert [r["ts"] for r in got] == [T0, T0 + 1, T0 + 2]
        assert got[1]["Body"] == "2024-05-01T10:00:00Z INFO handled request id=1 status=200"
        attrs = got[1]["LogAttributes"]
        assert attrs["stream"] == "stdout" and attrs["time"] == "2024-05-01T10:00:00.123456789Z"
        assert json.loads(attrs["kubernetes"])["pod_name"] == "api-7d9c6b8f5-x2k4z"
        assert got[1]["ServiceName"] == "" and got[1]["ScopeName"] == ""
    fluentd = rows(gw, "fluentd.gzip", 2)
    assert [r["Body"] for r in fluentd] == ["worker started", "ready"]
    assert fluentd[0]["LogAttributes"] == {"fluent.tag": "fluentd.gzip", "pid": "17"}


def test_time_zero_reads_as_arrival_time(gw: Gateway) -> None:
    asyncio.run(send(gw.ports["fluent"], f.message("zero.time", 0, {"log": "when?"}, {"chunk": "z"}),
                     acks=1))
    [row] = rows(gw, "zero.time", 1)
    [now] = gw.rows("SELECT toUnixTimestamp64Nano(now64(9)) AS n")
    assert abs(int(now["n"]) - int(row["ts"])) < 60 * 10**9


def test_the_fluent_forward_alias(gw: Gateway) -> None:
    assert asyncio.run(send(gw.ports["fluent_alias"],
                            f.message("via.alias", 1, {"log": "x"}, {"chunk": "a"}), acks=1))
    assert rows(gw, "via.alias", 1)[0]["Body"] == "x"


BAD = {
    "garbage": b"\x00\xff" * 64,
    "wrong-types": msgpack.packb(["bad.types", [[1, ["not", "a", "map"]]], {"chunk": "x"}]),
    "bad-time": msgpack.packb(["bad.time", [["tomorrow", {"log": "x"}]]]),
    "oversized": f.message("bad.big", 1, {"log": "x" * 70000}, {"chunk": "big"}),
    "gzip-bomb": f.compressed("bad.bomb", [[1, {"log": "y" * (2 << 20)}]], {"chunk": "bomb"}),
    "bad-gzip": msgpack.packb(["bad.gzip", b"\x1f\x8bnot really", {"compressed": "gzip"}]),
}


async def _malformed_beside_good_traffic(port: int) -> None:
    good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
    good_writer.write(f.message("good.traffic", 1, {"log": "before"}, {"chunk": "g0"}))
    assert await f.read_acks(good_reader, 1) == [{"ack": "g0"}]
    for i, (name, data) in enumerate(BAD.items()):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        assert await f.closed(reader), name
        good_writer.write(f.message("good.traffic", 1, {"log": f"after {name}"},
                                    {"chunk": f"g{i + 1}"}))
        assert await f.read_acks(good_reader, 1) == [{"ack": f"g{i + 1}"}], name
    # truncated: the sender goes away mid-message; nothing of it is stored
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f.packed("bad.truncated", [[1, {"log": "half"}]] * 10, {"chunk": "t"})[:-40])
    writer.write_eof()
    assert await f.closed(reader)
    good_writer.close()


def test_malformed_input_closes_only_its_connection(gw: Gateway) -> None:
    asyncio.run(_malformed_beside_good_traffic(gw.ports["fluent"]))
    got = rows(gw, "good.traffic", 1 + len(BAD))
    assert sorted(r["Body"] for r in got) == sorted(
        ["before"] + [f"after {name}" for name in BAD])
    assert gw.count("otel_logs", "startsWith(LogAttributes['fluent.tag'], 'bad.')") == 0
    logs = gw.logs()
    assert "exceeds max_frame_size (65536 bytes)" in logs
    assert "max_decompressed_size" in logs and "time must be an integer or EventTime" in logs
    assert gw.proc is not None and gw.proc.poll() is None


def test_udp_heartbeat(gw: Gateway) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"\x00", ("127.0.0.1", gw.ports["fluent"]))
        reply, _ = udp.recvfrom(16)
    assert reply == b"\x00"


def test_self_metrics(gw: Gateway) -> None:
    asyncio.run(send(gw.ports["fluent"], f.message("metrics", 1, {"log": "m"}, {"chunk": "m"}),
                     acks=1))
    url = f"http://127.0.0.1:{gw.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    accepted = samples['otelcol_receiver_accepted_log_records_total{receiver="fluentforward",'
                       'transport="tcp"}']
    assert accepted >= 1
    assert samples['otelcol_fluent_opened_connections{receiver="fluentforward"}'] >= 1
    assert samples['otelcol_fluent_records_generated{receiver="fluentforward"}'] >= accepted
