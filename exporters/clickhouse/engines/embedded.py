"""The embedded store: chDB (the ClickHouse engine in-process) on disk under `path`.

chDB serialises statements per connection, so inserts use a small pool of connections (they run
in parallel and release the GIL) and reads get a connection of their own: queries answer while
ingest runs.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from exporters.clickhouse.engines import PERMANENT_CODES, Engine, EngineError, Settings, code_of
from gateway.errors import ConfigError


def _settings_clause(settings: Settings | None) -> str:
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        if isinstance(value, str):
            if "$$" in value:
                raise ValueError(f"setting {key} cannot hold '$$'")
            parts.append(f"{key} = $${value}$$")
        else:
            parts.append(f"{key} = {value}")
    return " SETTINGS " + ", ".join(parts)


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backquotes, with backquotes and backslashes escaped."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _error(exc: Exception) -> EngineError:
    message = str(exc)
    code = code_of(message)
    return EngineError(message, retryable=code not in PERMANENT_CODES)


class EmbeddedEngine(Engine):
    def __init__(self, path: str, insert_connections: int = 2) -> None:
        try:
            import chdb
        except ImportError:  # the server-only image leaves the engine out
            raise ConfigError([
                "exporters::clickhouse: the embedded store needs the chdb-core package, which is "
                "not installed; install it, or set exporters::clickhouse::endpoint to a "
                "ClickHouse server"]) from None

        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(path).resolve())
        self._chdb = chdb
        self._pool: queue.Queue[object] = queue.Queue()
        self._all = []
        for _ in range(max(1, insert_connections)):
            conn = chdb.connect(self.path)
            self._all.append(conn)
            self._pool.put(conn)
        self._reader = chdb.connect(self.path)
        self._reader_lock = threading.Lock()
        self._all.append(self._reader)
        self._guest: object | None = None  # read-only connection for the query endpoint
        self._guest_lock = threading.Lock()

    def command(self, sql: str) -> None:
        self.query(sql, "TSV")

    def insert(self, sql: str, data: bytes, fmt: str, settings: Settings) -> None:
        conn = self._pool.get()
        try:
            with conn.send_insert(sql + _settings_clause(settings), fmt) as ins:  # type: ignore[attr-defined]
                ins.append(data)
                ins.finish()
        except Exception as exc:  # chDB raises RuntimeError/ChdbError with the server message
            raise _error(exc) from None
        finally:
            self._pool.put(conn)

    def query(self, sql: str, fmt: str, settings: Settings | None = None) -> bytes:
        with self._reader_lock:
            try:
                result = self._reader.query(sql + _settings_clause(settings), fmt)  # type: ignore[attr-defined]
            except Exception as exc:
                raise _error(exc) from None
        return bytes(result.bytes()) if result is not None else b""

    def query_in(self, database: str, sql: str, fmt: str, readonly: bool = False) -> bytes:
        """A query with `database` as the current database (set on every call, so each query
        sees its own). `readonly` runs it on a connection with ClickHouse's readonly=2: no
        writes, no DDL, no change of `readonly`; format settings stay allowed (the caller
        refuses table functions that reach files or the network: readonly=2 allows them)."""
        conn, lock = self._reader, self._reader_lock
        if readonly:
            conn, lock = self._guest_connection(), self._guest_lock
        with lock:
            try:
                conn.query(f"USE {quote_identifier(database)}", "TSV")  # type: ignore[attr-defined]
                result = conn.query(sql, fmt)  # type: ignore[attr-defined]
            except Exception as exc:
                raise _error(exc) from None
        return bytes(result.bytes()) if result is not None else b""

    def _guest_connection(self) -> object:
        with self._guest_lock:
            if self._guest is None:
                conn = self._chdb.connect(self.path)
                conn.query("SET readonly = 2", "TSV")  # type: ignore[attr-defined]
                self._all.append(conn)
                self._guest = conn
            return self._guest

    def close(self) -> None:
        for conn in self._all:
            try:
                conn.close()  # type: ignore[attr-defined]
            except Exception:
                pass
        self._all.clear()
