"""A ClickHouse server (or a load balancer in front of a cluster) through clickhouse-connect.

The client connects lazily, on first use: clickhouse-connect queries the server when the client
is made, and a gateway with `create_schema: false` must start while the server is down (as the
Collector's exporter does); until the server answers, every statement fails with a retryable
EngineError.

The client has no current database: every statement the exporter runs names its database, and
the configured database may not exist until the schema DDL creates it (the server refuses a
`database` parameter naming a missing database). Reads through the query endpoint say their
database per request (`query_in`).

INSERT bodies are compressed here with the configured HTTP Content-Encoding; clickhouse-connect
compresses only the blocks it builds itself, and a raw insert sends its bytes as they are.
"""

from __future__ import annotations

import gzip
import re
import threading
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

from exporters.clickhouse.engines import PERMANENT_CODES, Engine, EngineError, Settings, code_of

_MAX_MESSAGE = 2000


def _compressor(method: str) -> Callable[[bytes], bytes]:
    if method == "lz4":
        import lz4.frame

        return lambda data: bytes(lz4.frame.compress(data))
    if method == "zstd":
        import zstandard

        return lambda data: zstandard.ZstdCompressor(level=3).compress(data)
    if method == "gzip":
        return lambda data: gzip.compress(data, compresslevel=3)
    if method == "deflate":
        return lambda data: zlib.compress(data, 3)
    if method == "br":
        try:
            import brotli
        except ImportError:
            raise ValueError("compress: br needs the brotli package") from None
        return lambda data: bytes(brotli.compress(data, quality=4))
    raise ValueError(f"compress: unsupported method {method!r} "
                     "(none, lz4, zstd, gzip, deflate, br)")


def compression_method(compress: str | bool) -> str | None:
    """The HTTP Content-Encoding for the `compress` option ('' / 'none' / false: none)."""
    value = str(compress).strip().lower()
    if value in ("", "none", "false", "0"):
        return None
    if value == "true":
        return "lz4"
    _compressor(value)  # unknown or unavailable: ValueError now, at start
    return value


def redact(endpoint: str) -> str:
    """The endpoint without the password of its userinfo (for logs)."""
    url = urlparse(endpoint)
    if url.password is None:
        return endpoint
    netloc = f"{url.username}:***@{url.netloc.rpartition('@')[2]}"
    return url._replace(netloc=netloc).geturl()


def _error(exc: Exception, what: str = "") -> EngineError:
    code = getattr(exc, "code", None)
    message = str(exc)
    if not isinstance(code, int) or not code:
        code = code_of(message)
    # urllib3 names the whole URL, format_schema (a .proto) included
    message = re.sub(r"with url: \S+", "with url: /?…", message)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    if what:
        message = f"{what}: {message}"
    return EngineError(message, retryable=code is None or code not in PERMANENT_CODES)


class ServerEngine(Engine):
    def __init__(self, endpoint: str, username: str, password: str, database: str,
                 compress: str | bool, timeout: float, connection_params: dict[str, str]) -> None:
        url = urlparse(endpoint)
        self.endpoint = redact(endpoint)
        self._host = url.hostname or "localhost"
        self._port = url.port or (8443 if url.scheme == "https" else 8123)
        self._secure = url.scheme == "https"
        # credentials in the URL (http://user:password@host:8123) count when not set apart
        self._username = username or unquote(url.username or "") or "default"
        self._password = password or unquote(url.password or "")
        self.database = database
        self._method = compression_method(compress)
        self._compress = _compressor(self._method) if self._method else None
        self._timeout = int(timeout) or 30
        self._settings = dict(connection_params)
        self._client: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def _connected(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise EngineError("the ClickHouse client is closed", retryable=True)
            if self._client is None:
                import clickhouse_connect

                try:
                    self._client = clickhouse_connect.get_client(
                        host=self._host, port=self._port, secure=self._secure,
                        username=self._username, password=self._password,
                        database=None,
                        compress=self._method or False,
                        connect_timeout=min(10, self._timeout),
                        send_receive_timeout=self._timeout,
                        settings=dict(self._settings),
                        autogenerate_session_id=False,  # inserts run in parallel
                        client_name="otelgw",
                    )
                except Exception as exc:
                    raise _error(exc, f"cannot connect to ClickHouse at {self.endpoint}") \
                        from None
                # urllib3 would retry a refused connection once at once and log a warning with
                # the whole URL (format_schema: a .proto) for every insert while the server is
                # down; the exporter retries with backoff, and clickhouse-connect still replays
                # a request on a keep-alive connection the server closed
                self._client.http_retries = 0
            return self._client

    def command(self, sql: str) -> None:
        client = self._connected()
        try:
            client.command(sql)
        except Exception as exc:
            raise _error(exc) from None

    def insert(self, sql: str, data: bytes, fmt: str, settings: Settings) -> None:
        client = self._connected()
        table = sql.removeprefix("INSERT INTO ").strip()
        body, encoding = data, None
        if self._compress is not None:
            body, encoding = self._compress(data), self._method
        try:
            client.raw_insert(table, insert_block=body, settings=dict(settings), fmt=fmt,
                              compression=encoding)
        except Exception as exc:
            raise _error(exc) from None

    def query(self, sql: str, fmt: str, settings: Settings | None = None) -> bytes:
        """`fmt` is the default format, as for the embedded store: a FORMAT clause in `sql` wins
        (clickhouse-connect's `fmt` would append a second FORMAT; the header does not)."""
        client = self._connected()
        try:
            return bytes(client.raw_query(sql, settings=dict(settings or {}),
                                          transport_settings={"X-ClickHouse-Format": fmt}))
        except Exception as exc:
            raise _error(exc) from None

    def query_in(self, database: str, sql: str, fmt: str, readonly: bool = False) -> bytes:
        """A query with `database` as the current database (the query endpoint's reads)."""
        return self.query(sql, fmt, {"database": database, **({"readonly": 2} if readonly else {})})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()
