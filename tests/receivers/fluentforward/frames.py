"""Forward protocol messages as real senders write them, built with the msgpack library.

The Collector's fluentforwardreceiver tests replay hex dumps recorded from real senders
(testdata/ in opentelemetry-collector-contrib): a Docker fluentd-log-driver Message
(`container_id`, `container_name`, `source`, `log`, integer time), Fluent Bit's `mem` input
through out_forward as a Forward message (EventTime, `Mem.total`/`Mem.used`/`Mem.free`/
`Swap.*` integers, tag `mem.0`), and Fluentd's own `fluent.info` events as PackedForward and
gzip CompressedPackedForward. Those files are not copied here; the builders below make
messages of the same shapes, plus what current Fluent Bit sends by default (PackedForward with
`size` and, with Require_ack_response, `chunk`; `compressed: gzip` with Compress gzip; the
2.1+ `[[time, metadata], record]` entries).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import struct
from typing import Any

import msgpack


def event_time(ns: int) -> msgpack.ExtType:
    """EventTime, ext type 0: big-endian uint32 seconds and nanoseconds."""
    return msgpack.ExtType(0, struct.pack(">II", *divmod(ns, 1_000_000_000)))


def chunk_id() -> str:
    """A chunk id as Fluent Bit and Fluentd make them: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode()


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def message(tag: str, time: Any, record: dict[str, Any], option: dict[str, Any] | None = None
            ) -> bytes:
    return pack([tag, time, record] + ([option] if option is not None else []))


def forward(tag: str, entries: list[Any], option: dict[str, Any] | None = None) -> bytes:
    return pack([tag, entries] + ([option] if option is not None else []))


def packed_stream(entries: list[Any]) -> bytes:
    return b"".join(pack(e) for e in entries)


def packed(tag: str, entries: list[Any], option: dict[str, Any] | None = None) -> bytes:
    return pack([tag, packed_stream(entries)] + ([option] if option is not None else []))


def compressed(tag: str, entries: list[Any], option: dict[str, Any] | None = None,
               per_event: bool = False) -> bytes:
    """CompressedPackedForward; per_event compresses each event as its own gzip member, the
    way Fluentd's out_forward does."""
    if per_event:
        data = b"".join(gzip.compress(pack(e)) for e in entries)
    else:
        data = gzip.compress(packed_stream(entries))
    return pack([tag, data, {**(option or {}), "compressed": "gzip"}])


def k8s_record(i: int, pod: str = "api-7d9c6b8f5-x2k4z") -> dict[str, Any]:
    """A container log line after Fluent Bit's tail + kubernetes filter."""
    return {
        "log": f"2024-05-01T10:00:00Z INFO handled request id={i} status=200",
        "stream": "stdout",
        "time": "2024-05-01T10:00:00.123456789Z",
        "kubernetes": {"pod_name": pod, "namespace_name": "prod", "host": "node-1",
                       "container_name": "api", "labels": {"app": "api"}},
    }


def mem_record() -> dict[str, Any]:
    """Fluent Bit's `mem` input."""
    return {"Mem.total": 8040440, "Mem.used": 7201508, "Mem.free": 838932,
            "Swap.total": 0, "Swap.used": 0, "Swap.free": 0}


def docker_record(line: str) -> dict[str, Any]:
    """Docker's fluentd logging driver."""
    return {"container_id": "4d1c2b3a" * 8, "container_name": "/quirky_turing",
            "source": "stdout", "log": line}


async def read_acks(reader: asyncio.StreamReader, n: int, timeout: float = 10) -> list[Any]:
    """The next n msgpack responses on a connection."""
    unpacker = msgpack.Unpacker(raw=False)
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            data = await reader.read(4096)
            if not data:
                raise ConnectionError(f"closed after {len(out)} of {n} acks")
            unpacker.feed(data)
            out.extend(unpacker)
    return out


async def closed(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    """True once the server has closed the connection (read gives EOF or a reset)."""
    try:
        await rest(reader, timeout)
    except TimeoutError:
        return False
    return True


async def rest(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything the server still sends until it closes the connection."""
    out = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(4096):
                out += data
    except ConnectionError:
        pass
    return bytes(out)
