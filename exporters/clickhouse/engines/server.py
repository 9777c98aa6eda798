"""A ClickHouse server (or a load balancer in front of a cluster) through clickhouse-connect."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from exporters.clickhouse.engines import PERMANENT_CODES, Engine, EngineError, Settings, code_of


def _error(exc: Exception) -> EngineError:
    message = str(exc)
    code = code_of(message)
    return EngineError(message, retryable=code is None or code not in PERMANENT_CODES)


class ServerEngine(Engine):
    def __init__(self, endpoint: str, username: str, password: str, database: str,
                 compress: bool, timeout: float, connection_params: dict[str, str]) -> None:
        import clickhouse_connect

        url = urlparse(endpoint)
        self._client: Any = clickhouse_connect.get_client(
            host=url.hostname or "localhost",
            port=url.port or (8443 if url.scheme == "https" else 8123),
            secure=url.scheme == "https",
            username=username or "default",
            password=password,
            database=database,
            compress=compress,
            send_receive_timeout=int(timeout) or 30,
            settings=dict(connection_params),
            autogenerate_session_id=False,
        )

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise _error(exc) from None

    def insert(self, sql: str, data: bytes, fmt: str, settings: Settings) -> None:
        table = sql.removeprefix("INSERT INTO ").strip()
        try:
            self._client.raw_insert(table, insert_block=data, settings=dict(settings), fmt=fmt)
        except Exception as exc:
            raise _error(exc) from None

    def query(self, sql: str, fmt: str, settings: Settings | None = None) -> bytes:
        try:
            return bytes(self._client.raw_query(sql, settings=dict(settings or {}), fmt=fmt))
        except Exception as exc:
            raise _error(exc) from None

    def close(self) -> None:
        self._client.close()
