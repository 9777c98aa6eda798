"""Logs from Fluent Bit and Fluentd over the forward protocol v1: Message, Forward,
PackedForward and gzip CompressedPackedForward messages, EventTime, a `chunk` acknowledged once
the pipeline has taken its events, and the UDP heartbeat. Each event becomes a log record with
the tag in the `fluent.tag` attribute, `log` or `message` as the body and every other field as
an attribute, as the Collector's fluentforward receiver maps it. The Collector's `endpoint`,
plus limits it does not have; no TLS and no handshake (shared_key), as in the Collector."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.config.types import ComponentConfig, Duration

_MIB = 1024 * 1024


def unix_path(endpoint: str) -> str | None:
    """The socket path of a `unix://path` (or bare `/path`) endpoint, else None."""
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    return endpoint if endpoint.startswith("/") else None


class FluentForwardConfig(ComponentConfig):
    endpoint: str = Field(
        "localhost:24224",
        description="host:port to listen on for TCP (and the UDP heartbeat on the same port), "
                    "or unix:///path/to/socket for a Unix domain socket (no heartbeat).")
    max_connections: int = Field(
        1000, ge=1, description="Open connections at most; one more is closed at once.")
    max_frame_size: int = Field(
        16 * _MIB, ge=1024,
        description="Largest forward message (one Message, Forward or PackedForward array as "
                    "sent, before decompression), in bytes; a larger one closes its connection. "
                    "Keep it above the sender's chunk size (Fluentd `chunk_limit_size`).")
    max_decompressed_size: int = Field(
        64 * _MIB, ge=1024,
        description="Largest entries stream of a CompressedPackedForward message once "
                    "decompressed, in bytes (a bound on gzip bombs).")
    idle_timeout: Duration = Field(
        300.0, ge=0,
        description="A connection that sends nothing for this long is closed (0: never).")
    udp_heartbeat: bool = Field(
        True, description="Answer the forward protocol's UDP heartbeat on the TCP port.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        path = unix_path(value)
        if path is not None:
            if not path:
                raise ValueError("unix:// endpoint needs a socket path, e.g. unix:///run/fluent.sock")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"endpoint {value!r} must be host:port (e.g. 0.0.0.0:24224) "
                             "or unix:///path/to/socket")
        if int(port) > 65535:
            raise ValueError(f"endpoint {value!r}: port {port} is out of range (0-65535)")
        if host.startswith("[") != host.endswith("]"):
            raise ValueError(f"endpoint {value!r}: unbalanced brackets around an IPv6 address")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> FluentForwardConfig:
        if self.max_decompressed_size < self.max_frame_size:
            raise ValueError("max_decompressed_size must be at least max_frame_size "
                             f"({self.max_frame_size} bytes)")
        return self
