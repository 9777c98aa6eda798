"""The embedded store: chDB (the ClickHouse engine in-process) on disk under `path`.

chDB serialises statements per connection, so inserts use a small pool of connections (they run
in parallel and release the GIL) and reads get a connection of their own: queries answer while
ingest runs.

An INSERT reads its data from a file (`INSERT … FROM INFILE`), one per insert connection,
rewritten for each INSERT: chDB 26.9's streaming insert (`send_insert`)
reports success when the INSERT fails after its input was read (a CHECK constraint, an exception
in a materialized view), which would let the sending queue drop a batch that was never stored,
and inline data in the query text loses the leading newline byte every OTLP request starts with.
On Linux the file is a memfd (read as /proc/self/fd/N): it never reaches a disk. A staging file
on the store's file system did: the store's syncfs wrote every INSERT's input out again (as many
bytes as the queue's log, 16 MiB per 64k spans), competing with the log's fsyncs. Elsewhere it
is a file in a directory of this engine's own under `<path>/.inserts` (two exporters may share a
`path`), emptied after its INSERT so that a sync finds little of it.

ClickHouse writes parts without fsync (`fsync_after_insert` is off by default, and a wide part is
dozens of files): a crash of the machine may lose the last seconds of them. The sending queue
keeps their batches until `store_sync()`, one syncfs of the store's file system, has run after
their INSERT.

The engine starts with a configuration file of this module's own (ENGINE_CONFIG), for the
MergeTree settings of the store: ingest-heavy tables that are read by time range.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from exporters.clickhouse.engines import PERMANENT_CODES, Engine, EngineError, Settings, code_of
from gateway.errors import ConfigError


# The embedded engine's server settings (a ClickHouse server's are its administrator's).
#
# merge_selector_base: the number of equal-sized parts a background merge joins at least
# (ClickHouse's SimpleMergeSelector; default 5): each row is rewritten about log_base(part size / INSERT size)
# times in its life, and at ~100k spans/s those rewrites cost as much CPU as the INSERTs' own
# storing. Measured (64k-span INSERTs, 40 in a row): rows merged 7.4M → 3.3–4.0M, merge time
# 11.8 s → 6.6–8.0 s per 2.7M spans with 8–12 instead of 5. The price: up to ~10 parts per
# level of a partition instead of ~5, which queries by time range hardly notice.
#
# min_bytes_for_wide_part: the size (uncompressed) from which a part is stored Wide, one file or
# more per column, instead of Compact, all columns in one file (default 10 MiB). An INSERT of 64k
# spans is ~30 MiB (64k log records ~20 MiB): Wide, it created 137 files, and ext4 spent ~8 % of
# the process's CPU in openat() finding inodes for them. 48 MiB keeps the default INSERTs Compact
# (13 files), while merged parts of 48 MiB and more are Wide, as before: the columns of large
# parts are best read apart, and merging into Compact parts measured no cheaper (metrics, whose
# INSERT parts are small anyway). The size counts the columns that skip indexes are built from:
# with the attribute-map indexes built at INSERT, a 64k-span block measured over 48 MiB and was
# stored Wide all the same; the store leaves them to merges (ingest.EMBEDDED_INSERT_SETTINGS).
MERGE_TREE_SETTINGS = {"merge_selector_base": 10, "min_bytes_for_wide_part": 48 << 20}
ENGINE_CONFIG = "<clickhouse><merge_tree>" + "".join(
    f"<{k}>{v}</{k}>" for k, v in MERGE_TREE_SETTINGS.items()) + "</merge_tree></clickhouse>\n"


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # releases the GIL while it runs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


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


class _Stage:
    """The file an insert connection's INSERT reads (`path`): the memfd `fd`, or a file."""

    def __init__(self, fd: int | None, path: Path) -> None:
        self.fd = fd
        self.path = path

    def write(self, data: bytes) -> None:
        if self.fd is not None:
            fd = self.fd
            os.ftruncate(fd, 0)
        else:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view, at = memoryview(data), 0
            while at < len(view):
                at += os.pwrite(fd, view[at:], at)
        finally:
            if fd != self.fd:
                os.close(fd)

    def clear(self) -> None:
        """After the INSERT: the memory (or the dirty pages) go."""
        try:
            if self.fd is not None:
                os.ftruncate(self.fd, 0)
            else:
                os.truncate(self.path, 0)
        except OSError:
            pass  # rewritten (O_TRUNC) by the next INSERT all the same

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _memfd(name: str) -> int | None:
    """An anonymous in-memory file that the engine can open as /proc/self/fd/N, or None (not
    Linux, or memfd_create or /proc not available)."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        return None
    try:
        fd = create(name)
    except OSError:
        return None
    if not os.path.exists(f"/proc/self/fd/{fd}"):
        os.close(fd)
        return None
    return fd


def _staging_directory(root: Path) -> Path:
    """A directory of this engine's own, `<pid>-<random>`, so no other engine (another exporter
    on the same path, another process) can overwrite a file between its write and its INSERT;
    directories of processes that no longer run (a crash) are removed."""
    root.mkdir(exist_ok=True)
    _remove_stale(root)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def _remove_stale(root: Path) -> None:
    for old in root.iterdir():
        pid = old.name.partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _engine_config(store: Path) -> Path:
    """ENGINE_CONFIG as `<store>/.otelgw-engine.xml`, replaced atomically (another process may be
    reading it as it starts). chDB reads its connection parameters as `name=value&…`: where the
    store's path holds `&` or `?`, the file goes to the temporary directory instead."""
    root = Path(tempfile.gettempdir()) if any(c in str(store) for c in "&?") else store
    path = root / ".otelgw-engine.xml"
    fd, tmp = tempfile.mkstemp(prefix=".otelgw-engine-", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ENGINE_CONFIG)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quote_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace("'", "\\'")


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backquotes, with backquotes and backslashes escaped."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _error(exc: Exception) -> EngineError:
    message = str(exc)
    code = code_of(message)
    return EngineError(message, retryable=code not in PERMANENT_CODES)


class EmbeddedEngine(Engine):
    def __init__(self, path: str, insert_connections: int = 2,
                 insert_settings: Settings | None = None) -> None:
        """`insert_settings`: settings of every INSERT, under those the INSERT names."""
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
        self._insert_settings = dict(insert_settings or {})
        self._pool: queue.Queue[tuple[object, _Stage]] = queue.Queue()
        self._all = []
        fds = [_memfd(f"otelgw-insert-{i}") for i in range(max(1, insert_connections))]
        inserts = Path(self.path) / ".inserts"
        self._inbox: Path | None = None  # without memfds: files in a directory of our own
        if None in fds:
            self._inbox = inbox = _staging_directory(inserts)
        elif inserts.is_dir():
            _remove_stale(inserts)  # files of a process that crashed
        self._stages = [_Stage(fd, Path(f"/proc/self/fd/{fd}")) if fd is not None
                        else _Stage(None, inbox / f"{i}.in") for i, fd in enumerate(fds)]
        # every connection names the same file: the first to start the engine configures it
        self._target = f"{self.path}?config-file={_engine_config(Path(self.path))}"
        for stage in self._stages:
            conn = chdb.connect(self._target)
            self._all.append(conn)
            self._pool.put((conn, stage))
        self._reader = chdb.connect(self._target)
        self._reader_lock = threading.Lock()
        self._all.append(self._reader)
        self._guest: object | None = None  # read-only connection for the query endpoint
        self._guest_lock = threading.Lock()

    def command(self, sql: str) -> None:
        self.query(sql, "TSV")

    def insert(self, sql: str, data: bytes, fmt: str, settings: Settings) -> None:
        conn, stage = self._pool.get()
        try:
            try:
                stage.write(data)
            except OSError as exc:
                raise EngineError(f"cannot stage the insert in {stage.path}: {exc}",
                                  retryable=True) from None
            statement = (f"{sql} FROM INFILE '{_quote_path(stage.path)}'"
                         f"{_settings_clause({**self._insert_settings, **settings})} FORMAT {fmt}")
            conn.query(statement, "TSV")  # type: ignore[attr-defined]
        except EngineError:
            raise
        except Exception as exc:  # chDB raises RuntimeError/ChdbError with the server message
            raise _error(exc) from None
        finally:
            stage.clear()
            self._pool.put((conn, stage))

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

    def store_sync(self) -> Callable[[], None]:
        return self._sync

    def _sync(self) -> None:
        """Everything written to the store's file system so far reaches the disk."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _syncfs is None:  # not Linux: every file system
                os.sync()
            elif _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs {self.path}: {os.strerror(err)}")
        finally:
            os.close(fd)

    def _guest_connection(self) -> object:
        with self._guest_lock:
            if self._guest is None:
                conn = self._chdb.connect(self._target)
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
        for stage in self._stages:
            stage.close()
        if self._inbox is not None:
            shutil.rmtree(self._inbox, ignore_errors=True)
