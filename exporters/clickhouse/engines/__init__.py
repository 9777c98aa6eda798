"""Where the SQL runs: the embedded chDB store, or a ClickHouse server through clickhouse-connect.

Both take the same DDL and the same INSERT (raw OTLP protobuf into the ingest table); they differ
only in transport. Calls are blocking and run in worker threads (chDB releases the GIL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from gateway.errors import GatewayError

Settings = Mapping[str, str | int | float]


class EngineError(GatewayError):
    """ClickHouse refused a statement. `retryable` tells a transient failure from a bad request."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Engine(ABC):
    @abstractmethod
    def command(self, sql: str) -> None: ...

    @abstractmethod
    def insert(self, sql: str, data: bytes, fmt: str, settings: Settings) -> None:
        """Run `sql` (an `INSERT INTO t` without FORMAT) with `data` in format `fmt`."""

    @abstractmethod
    def query(self, sql: str, fmt: str, settings: Settings | None = None) -> bytes: ...

    @abstractmethod
    def close(self) -> None: ...

    def store_sync(self) -> Callable[[], None] | None:
        """What makes the rows of the INSERTs so far survive a crash of the machine, for the
        sending queue to call before it lets their batches go; None: the store keeps its own
        promise once an INSERT succeeded (a server: its settings, its replicas)."""
        return None


# ClickHouse error codes that mean "this data/statement is wrong", not "try again later"; 395
# (throwIf in a view) and 469 (a CHECK constraint) fail the same data again on every retry.
# Not among them, as they say the store is not (yet) as it should be, an outage to wait out, not
# bad data to set aside: 60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE (a table or database dropped or
# not yet created), 497 ACCESS_DENIED (a grant revoked), 76 CANNOT_OPEN_FILE (the embedded
# engine's staging file).
PERMANENT_CODES = {
    6, 26, 27, 32, 33, 38, 41, 43, 44, 47, 53, 62, 69, 70, 72, 117, 130, 131, 135,
    167, 173, 180, 215, 386, 395, 403, 404, 433, 434, 435, 436, 437, 438, 444, 469,
}

# The permanent refusals raised while ClickHouse reads the input, before any view writes a row:
# an INSERT refused with one of these stored nothing. Any other refusal may come from a view
# (throwIf, 395) or a constraint (469) after the views before it stored their rows.
INPUT_CODES = {6, 26, 27, 32, 33, 38, 41, 72, 117, 130, 131, 433, 434, 435, 436, 437, 438, 444}


def code_of(message: str) -> int | None:
    import re

    match = re.search(r"Code: (\d+)", message)
    return int(match.group(1)) if match else None
