"""Forward messages of every mode into OTLP log records, with the Collector's mapping, and the
malformed messages that must be refused with a clear reason."""

from __future__ import annotations

import gzip
import math
import random
from typing import Any

import msgpack
import pytest
from google.protobuf.json_format import MessageToDict

from receivers.fluentforward import decode
from receivers.fluentforward.convert import LogsBuilder
from tests.receivers.fluentforward import frames as f

T0 = 1_714_557_600_123_456_789  # ns
OBSERVED = 1_800_000_000_000_000_000


def convert(*messages: bytes, limit: int = 1 << 20) -> tuple[list[Any], list[str | None]]:
    """Log records as dicts (attributes as a plain dict) and the chunk of each message."""
    unpacker = decode.unpacker(1 << 22)
    unpacker.feed(b"".join(messages))
    builder = LogsBuilder(OBSERVED)
    chunks = []
    for obj in unpacker:
        frame = decode.parse(obj, limit)
        if frame is not None:
            builder.add(frame.tag, frame.entries)
            chunks.append(frame.chunk)
    request = builder.request
    assert len(request.resource_logs) == 1 and len(request.resource_logs[0].scope_logs) == 1
    records = request.resource_logs[0].scope_logs[0].log_records
    assert builder.count == len(records)
    out = []
    for r in records:
        d = MessageToDict(r, preserving_proto_field_name=True)
        d["attributes"] = {a["key"]: a.get("value", {}) for a in d.get("attributes", [])}
        out.append(d)
    return out, chunks


def refused(data: bytes, limit: int = 1 << 20) -> str:
    with pytest.raises(decode.MalformedFrame) as err:
        convert(data, limit=limit)
    return str(err.value)


def test_message_mode_docker_driver() -> None:
    [rec], [chunk] = convert(f.message("4d1c2b3a4d1c", 1593031012, f.docker_record("...")))
    assert chunk is None
    assert rec["time_unix_nano"] == str(1593031012 * 10**9)
    assert rec["observed_time_unix_nano"] == str(OBSERVED)
    assert rec["body"] == {"string_value": "..."}
    assert rec["attributes"] == {
        "fluent.tag": {"string_value": "4d1c2b3a4d1c"},
        "container_id": {"string_value": "4d1c2b3a" * 8},
        "container_name": {"string_value": "/quirky_turing"},
        "source": {"string_value": "stdout"}}


def test_forward_mode_fluent_bit_mem_input_with_event_time() -> None:
    records, [chunk] = convert(f.forward("mem.0", [[f.event_time(T0), f.mem_record()],
                                                   [f.event_time(T0 + 980_000_000),
                                                    f.mem_record()]]))
    assert chunk is None
    assert [r["time_unix_nano"] for r in records] == [str(T0), str(T0 + 980_000_000)]
    assert "body" not in records[0]  # no log/message field: an empty body, as the Collector
    assert records[0]["attributes"]["Mem.total"] == {"int_value": "8040440"}
    assert records[0]["attributes"]["Swap.free"] == {"int_value": "0"}
    assert records[1]["attributes"]["fluent.tag"] == {"string_value": "mem.0"}


@pytest.mark.parametrize("build", [f.packed, f.compressed,
                                   lambda *a, **k: f.compressed(*a, **k, per_event=True)],
                         ids=["packed", "compressed", "compressed-per-event-members"])
def test_packed_modes_with_size_and_chunk(build: Any) -> None:
    entries = [[f.event_time(T0 + i), f.k8s_record(i)] for i in range(3)]
    chunk = f.chunk_id()
    records, chunks = convert(build("kube.var.log.containers.api", entries,
                                    {"size": 3, "chunk": chunk}))
    assert chunks == [chunk]
    assert [r["body"]["string_value"] for r in records] == [
        f"2024-05-01T10:00:00Z INFO handled request id={i} status=200" for i in range(3)]
    assert [int(r["time_unix_nano"]) for r in records] == [T0, T0 + 1, T0 + 2]
    kube = records[0]["attributes"]["kubernetes"]["kvlist_value"]["values"]
    assert {kv["key"]: kv["value"] for kv in kube}["labels"] == {
        "kvlist_value": {"values": [{"key": "app", "value": {"string_value": "api"}}]}}
    assert records[2]["attributes"]["stream"] == {"string_value": "stdout"}


def test_packed_entries_sent_as_str_fluentd_v0_12() -> None:
    # v0.12's msgpack had no bin type: the packed stream came as a str that is not UTF-8
    stream = f.packed_stream([[1593032517, {"message": "starting fluentd worker", "pid": 17}],
                              [1593032518, {"message": "\u00e9t\u00e9", "pid": 255}]])
    with pytest.raises(UnicodeDecodeError):
        stream.decode()
    data = msgpack.Packer(use_bin_type=False).pack(["fluent.info", stream])
    records, _ = convert(data)
    assert [r["body"]["string_value"] for r in records] == ["starting fluentd worker",
                                                           "\u00e9t\u00e9"]
    assert records[1]["attributes"]["pid"] == {"int_value": "255"}


def test_fluent_bit_metadata_entries_and_float_time() -> None:
    records, _ = convert(f.forward("fb", [[[f.event_time(T0), {"otlp": {}}], {"log": "a"}],
                                          [[1714557600.5, {}], {"log": "b"}]]),
                         f.message("fb", 1714557600.25, {"log": "c"}),
                         f.message("fb", [f.event_time(T0 + 1), {"m": 1}], {"log": "d"}))
    assert [int(r["time_unix_nano"]) for r in records] == [
        T0, 1714557600_500_000_000, 1714557600_250_000_000, T0 + 1]
    assert [r["body"]["string_value"] for r in records] == ["a", "b", "c", "d"]
    assert "otlp" not in records[0]["attributes"]  # metadata is dropped


def test_value_types_follow_the_collector() -> None:
    record = {"s": "x", "t": True, "f": False, "i": -5, "big": 2**64 - 1, "d": 1.5,
              "bin": b"raw\xffbytes", "nil": None, "arr": [1, "a", [True]], "map": {},
              "empty_arr": [], "et": f.event_time(T0), "ext": msgpack.ExtType(5, b"\x01")}
    [rec], _ = convert(f.message("types", 1, record))
    a = rec["attributes"]
    assert a["s"] == {"string_value": "x"}
    assert a["t"] == {"bool_value": True} and a["f"] == {"bool_value": False}
    assert a["i"] == {"int_value": "-5"}
    assert a["big"] == {"string_value": str(2**64 - 1)}  # beyond int64: its decimal text
    assert a["d"] == {"double_value": 1.5}
    assert a["bin"] == {"string_value": "raw\ufffdbytes"}
    assert a["nil"] == {}  # present, empty
    assert a["arr"] == {"array_value": {"values": [
        {"int_value": "1"}, {"string_value": "a"},
        {"array_value": {"values": [{"bool_value": True}]}}]}}
    assert a["map"] == {"kvlist_value": {}} and a["empty_arr"] == {"array_value": {}}
    assert a["et"] == {"string_value": "2024-05-01T10:00:00.123456789Z"}
    assert a["ext"]["string_value"].startswith("ExtType(code=5")


def test_body_from_log_or_message_last_wins() -> None:
    records, _ = convert(f.message("b", 1, {"log": "first", "message": "second", "k": 1}),
                         f.message("b", 1, {"message": {"structured": 1}}),
                         f.message("b", 1, {"log": "kept", "message": None}))
    assert records[0]["body"] == {"string_value": "second"}
    assert "log" not in records[0]["attributes"] and "message" not in records[0]["attributes"]
    assert records[1]["body"] == {"kvlist_value": {"values": [
        {"key": "structured", "value": {"int_value": "1"}}]}}
    assert records[2]["body"] == {"string_value": "kept"}


def test_invalid_utf8_and_binary_keys_become_valid_text() -> None:
    raw = msgpack.Packer(use_bin_type=False)
    data = raw.pack(["t\xff".encode("latin-1"), 1, {b"k\xfe": b"v\xfd", "log": b"ok"}])
    [rec], _ = convert(data)
    assert rec["attributes"]["fluent.tag"] == {"string_value": "t\ufffd"}
    assert rec["attributes"]["k\ufffd"] == {"string_value": "v\ufffd"}


def test_deep_nesting_is_kept_as_text() -> None:
    value: Any = "leaf"
    for _ in range(40):
        value = {"n": value}
    [rec], _ = convert(f.message("deep", 1, {"v": value}))
    depth, node = 0, rec["attributes"]["v"]
    while "kvlist_value" in node:
        node = node["kvlist_value"]["values"][0]["value"]
        depth += 1
    assert depth == 16 and node["string_value"].startswith('{"n": {"n":')


def test_heartbeat_nil_and_text_compression_option() -> None:
    records, chunks = convert(msgpack.packb(None),
                              f.packed("t", [[1, {"log": "x"}]], {"compressed": "text"}))
    assert len(records) == 1 and chunks == [None]


def test_multi_member_gzip_and_limit() -> None:
    entries = [[1, {"log": "y" * 1000}] for _ in range(50)]
    records, _ = convert(f.compressed("g", entries, per_event=True))
    assert len(records) == 50
    bomb = f.compressed("g", entries)
    assert "max_decompressed_size (20000 bytes)" in refused(bomb, limit=20000)


@pytest.mark.parametrize("data, reason", [
    (msgpack.packb(42), "forward message is an array"),
    (msgpack.packb(["only-tag"]), "2 to 4 elements"),
    (msgpack.packb([1, 2, {}]), "tag must be a string, got int"),
    (msgpack.packb(["t", {"a": 1}, {}]), "cannot tell the mode"),
    (msgpack.packb(["t", 1]), "record is missing"),
    (msgpack.packb(["t", 1, "not a map"]), "a record must be a map, got str"),
    (msgpack.packb(["t", [[1, {}]], {}, {}]), "at most 3 elements"),
    (msgpack.packb(["t", [[1]]]), "an entry is [time, record]"),
    (msgpack.packb(["t", [["yesterday", {}]]]), "time must be an integer or EventTime, got str"),
    (msgpack.packb(["t", -1, {}]), "time -1 is out of range"),
    (msgpack.packb(["t", [[1, {}]], "opt"]), "option must be a map"),
    (msgpack.packb(["t", [[1, {}]], {"chunk": 7}]), "option chunk must be a string"),
    (msgpack.packb(["t", b"xx", {"compressed": "zstd"}]), "unsupported compression 'zstd'"),
    (msgpack.packb(["t", b"not gzip", {"compressed": "gzip"}]), "invalid gzip entries"),
    (msgpack.packb(["t", gzip.compress(b"\x92\x01\x80")[:-6], {"compressed": "gzip"}]),
     "truncated gzip"),
    (msgpack.packb(["t", f.pack([1, {}]) + b"\x92\x01"]), "truncated event"),
    (msgpack.packb(["t", b"\xc1"]), "invalid packed entries"),
    (msgpack.packb(["t", [[msgpack.ExtType(0, b"\x00" * 4), {}]]]), "EventTime must hold 8"),
])
def test_malformed_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    assert reason in refused(data)


def test_a_malformed_frame_leaves_no_records_behind() -> None:
    builder = LogsBuilder(0)
    builder.add("ok", [[1, {"log": "a"}]])
    with pytest.raises(decode.MalformedFrame):
        builder.add("bad", [[1, {"log": "b"}], [1, "not a map"]])
    records = builder.request.resource_logs[0].scope_logs[0].log_records
    assert builder.count == 1 and [r.body.string_value for r in records] == ["a"]


def test_time_conversion_edges() -> None:
    assert decode.time_ns(0) == 0
    assert decode.time_ns(msgpack.Timestamp(5, 7)) == 5_000_000_007
    assert decode.time_ns(1.000000001) == 1_000_000_001
    for bad in (math.inf, math.nan, 2**64, True, None):
        with pytest.raises(decode.MalformedFrame):
            decode.time_ns(bad)


def test_mutated_messages_fail_only_as_malformed() -> None:
    """Bytes flipped, dropped and inserted in messages of every mode: each outcome is either
    records or a MalformedFrame/msgpack error (what the connection turns into a close), never
    another exception."""
    rng = random.Random(7)
    entries = [[f.event_time(T0 + i), f.k8s_record(i)] for i in range(3)]
    seeds = [f.message("m", 1, f.docker_record("x"), {"chunk": "c"}),
             f.forward("f", entries, {"chunk": "c"}), f.packed("p", entries, {"size": 3}),
             f.compressed("g", entries, {"chunk": "c"})]
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.6:
                data[pos] = rng.randrange(256)
            elif op < 0.8:
                del data[pos]
            else:
                data.insert(pos, rng.randrange(256))
        unpacker = decode.unpacker(1 << 16)
        unpacker.feed(bytes(data))
        builder = LogsBuilder(0)
        try:
            for obj in unpacker:
                frame = decode.parse(obj, 1 << 16)
                if frame is not None:
                    builder.add(frame.tag, frame.entries)
        except (ValueError, msgpack.UnpackException):
            pass  # MalformedFrame is a ValueError, as msgpack's own errors are
        builder.request.SerializeToString()
