"""A TEST DOUBLE of the ClickHouse server's HTTP interface, over the real ClickHouse engine (chDB).

No ClickHouse server can run where the tests run, but chDB is the ClickHouse engine itself,
in-process (one data path per process). This module puts the part of the server's HTTP interface
(https://clickhouse.com/docs/interfaces/http) that clickhouse-connect uses in front of a chDB store,
in a process of its own, so the gateway's server mode (exporters/clickhouse/engines/server.py) is
tested over real HTTP against the real engine:

    python -m tests.chserver --port 8123 --path DIR [--user U --password P] [--access-log FILE]

The SQL is executed by ClickHouse (chDB 26.x); only the HTTP layer is reimplemented here:

* `GET /ping` answers `Ok.`; `GET`/`POST /` take the statement from the `query` parameter and/or
  the body (the parameter, a newline, then the body, as the server concatenates them). GET runs
  with readonly = 2, as on the server.
* `INSERT ... FORMAT <fmt>` followed by data (in the body after the statement, or the whole body
  when the statement is in `query`) is inserted by chDB (`INSERT … FROM INFILE` of a temporary
  file); the data starts after the format name, blanks and one newline, as the server's parser
  decides.
* Every other URL parameter is a setting and is applied (`SET name = 'value'` on the request's own
  chDB connection, so it holds for that statement only); `param_<name>` are query parameters;
  `database` (or `X-ClickHouse-Database`) is the current database (UNKNOWN_DATABASE if missing);
  `default_format` (or `X-ClickHouse-Format`) is the output format when the statement has no FORMAT.
* Request bodies may be compressed by HTTP `Content-Encoding`: lz4 (frame), zstd, gzip, deflate,
  br, xz, bz2. Responses are compressed with the client's first supported `Accept-Encoding`
  when `enable_http_compression` is on (chDB's default for it is 1, and system.settings says so).
* Credentials: basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key` or `user`/`password`
  parameters, checked against `--user`/`--password` (default: user `default`, no password).
* Errors: the server's text (`Code: N. DB::Exception: ... (NAME) (version V)`), the
  `X-ClickHouse-Exception-Code` header and the HTTP status the server gives that code.
* Response headers clickhouse-connect reads: `X-ClickHouse-Summary`, `X-ClickHouse-Query-Id`,
  `X-ClickHouse-Timezone`, `X-ClickHouse-Format` (only for statements that produce a result),
  `X-ClickHouse-Server-Display-Name`. At connect time clickhouse-connect runs
  `SELECT version(), timezone()` and reads `system.settings`; chDB answers both itself.

Not implemented (the gateway and clickhouse-connect's default options do not use them): sessions
(`session_id` is accepted but each request is its own chDB session: a SET does not carry over),
ClickHouse's own block compression (`compress=1` / `decompress=1`: refused with NOT_IMPLEMENTED),
multipart bodies (external data, form-encoded queries), progress headers, TLS, users and grants.

`--access-log FILE` appends one JSON line per request (method, statement head, setting names,
encodings, status, exception code); never the credentials, the data, or setting values.

`ChServer` (below) runs it as a subprocess for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bz2
import gzip
import hmac
import json
import lzma
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.gatewayproc import stop_process

# URL parameters that are not settings (ClickHouse's HTTPHandler reserves the same names)
RESERVED_PARAMS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "stacktrace", "role", "buffer_size", "wait_end_of_query", "session_id", "session_timeout",
    "session_check", "client_protocol_version", "close_session", "compress", "decompress",
}
MAX_QUERY_SIZE = 262144  # ClickHouse's max_query_size: how far an INSERT's statement is looked for

_INSERT_WITH_DATA = re.compile(
    rb"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(INSERT\s+INTO\s.+?)\s+FORMAT\s+([A-Za-z][A-Za-z0-9_]*)",
    re.IGNORECASE | re.DOTALL)
_NOT_FORMAT_INSERT = re.compile(rb"\b(?:VALUES|SELECT|WITH)\b", re.IGNORECASE)
_PRODUCES_RESULT = re.compile(
    r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN|"
    r"CHECK)\b", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"Code: (\d+)")

# exception code -> HTTP status, as ClickHouse's exceptionCodeToHTTPStatus (the common ones)
_HTTP_STATUS = {
    **dict.fromkeys((192, 193, 194, 516), 401),          # unknown user, wrong password, auth failed
    **dict.fromkeys((164, 497), 403),                     # READONLY, ACCESS_DENIED
    **dict.fromkeys((6, 25, 26, 27, 38, 41, 53, 62, 72, 117, 130, 131, 167, 168), 400),
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 79, 81, 115, 336), 404),
    48: 501,                                              # NOT_IMPLEMENTED
    209: 503,                                             # SOCKET_TIMEOUT
}


class ChError(Exception):
    """An error answered the ClickHouse way."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Statement:
    sql: str                      # the statement (for an INSERT with data: without FORMAT / data)
    insert_format: str = ""       # set for INSERT ... FORMAT X with data
    data: bytes = b""
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    database: str = ""
    output_format: str = "TabSeparated"
    readonly: bool = False


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        # clickhouse-connect sends one lz4 / zstd frame per block: a body is frames in a row
        if encoding == "lz4":
            import lz4.frame

            return _frames(body, lz4.frame.LZ4FrameDecompressor)
        if encoding == "zstd":
            import zstandard

            return _frames(body, zstandard.ZstdDecompressor().decompressobj)
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            import brotli

            return bytes(brotli.decompress(body))
        if encoding == "xz":
            return lzma.decompress(body)
        if encoding in ("bz2", "bzip2"):
            return bz2.decompress(body)
    except ChError:
        raise
    except Exception as exc:
        raise ChError(271, f"Cannot decompress the {encoding} request body: {exc}. "
                           "(CANNOT_DECOMPRESS)") from None
    raise ChError(48, f"Unknown HTTP Content-Encoding: {encoding!r}. (NOT_IMPLEMENTED)")


def _frames(body: bytes, decompressor: Any) -> bytes:
    out = bytearray()
    while body:
        d = decompressor()
        out += d.decompress(body)
        if not d.eof:
            raise ValueError("the compressed body is truncated")
        body = d.unused_data
    return bytes(out)


def encode_body(body: bytes, encoding: str) -> bytes:
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.compress(body))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(body)
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=3)
    if encoding == "deflate":
        return zlib.compress(body, 3)
    if encoding == "br":
        import brotli

        return bytes(brotli.compress(body, quality=4))
    raise ValueError(encoding)


def _response_encodings() -> list[str]:
    out = []
    for name, module in (("lz4", "lz4.frame"), ("zstd", "zstandard"), ("br", "brotli")):
        try:
            __import__(module)
            out.append(name)
        except ImportError:
            pass
    return out + ["gzip", "deflate"]


def parse_statement(full: bytes) -> tuple[str, str, bytes]:
    """(sql, insert_format, data): an INSERT with a FORMAT is split from its data."""
    head = full[:MAX_QUERY_SIZE]
    match = _INSERT_WITH_DATA.match(head)
    if match and not _NOT_FORMAT_INSERT.search(match.group(1)):
        pos = match.end()
        # data starts after blanks and one newline (ClickHouse's ParserInsertQuery)
        while pos < len(full) and full[pos:pos + 1] in (b" ", b"\t", b"\f"):
            pos += 1
        if full[pos:pos + 1] == b"\r":
            pos += 1
        if full[pos:pos + 1] == b"\n":
            pos += 1
        if full[pos:pos + 1] == b";" and not full[pos + 1:].strip():
            pos = len(full)
        try:
            sql = match.group(1).decode()
        except UnicodeDecodeError:
            raise ChError(62, "Syntax error: the INSERT statement is not UTF-8. "
                              "(SYNTAX_ERROR)") from None
        return sql, match.group(2).decode(), full[pos:]
    try:
        sql = full.decode()
    except UnicodeDecodeError:
        raise ChError(62, "Syntax error: the query is not UTF-8. (SYNTAX_ERROR)") from None
    return sql.strip(), "", b""


class ChServer:
    """Runs `python -m tests.chserver` as a subprocess on loopback (start / stop / url)."""

    def __init__(self, path: Path, port: int, user: str = "default", password: str = "",
                 log_dir: Path | None = None) -> None:
        self.path = path
        self.port = port
        self.user = user
        self.password = password
        self.log_dir = log_dir or path.parent
        self.log_path = self.log_dir / f"chserver-{port}.log"
        self.access_log = self.log_dir / f"chserver-{port}.access.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ChServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tests.chserver", "--host", "127.0.0.1",
                "--port", str(self.port), "--path", str(self.path), "--user", self.user,
                "--access-log", str(self.access_log)]
        root = str(Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
        if self.password:
            env["CHSERVER_PASSWORD"] = self.password  # not on the command line
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.log_dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chserver exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"chserver did not answer /ping in {timeout}s:\n{self.logs()}")

    def stop(self, timeout: float = 20) -> int:
        code = stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None
        return code

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]

    def sql(self, query: str, database: str = "", fmt: str = "JSONEachRow") -> bytes:
        params = {"default_format": fmt, **({"database": database} if database else {})}
        url = f"{self.url}/?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=query.encode(), method="POST")
        if self.user != "default" or self.password:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return bytes(resp.read())

    def rows(self, query: str, database: str = "") -> list[dict[str, Any]]:
        out = self.sql(query, database)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- server


class Server:
    def __init__(self, path: str, user: str, password: str, access_log: str | None) -> None:
        import chdb

        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(path).resolve())
        self._chdb = chdb
        self.user = user
        self.password = password
        self.access_log = open(access_log, "a", buffering=1) if access_log else None
        # one connection stays open for the life of the server (the engine and its parts stay up)
        self._anchor = chdb.connect(self.path)
        info = self._anchor.query(
            "SELECT version(), timezone(), getSetting('enable_http_compression')", "TSV")
        self.version, self.timezone, compression = bytes(info.bytes()).decode().split("\t")
        self.http_compression_default = compression.strip() not in ("0", "false")
        self.display_name = socket.gethostname()
        self.encodings = _response_encodings()

    def close(self) -> None:
        self._anchor.close()
        if self.access_log:
            self.access_log.close()

    # -- HTTP

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=1024**3)
        app.router.add_route("GET", "/ping", self._ping)
        app.router.add_route("HEAD", "/ping", self._ping)
        app.router.add_route("*", "/", self._root)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _ping(self, _: Any) -> Any:
        from aiohttp import web

        return web.Response(text="Ok.\n")

    async def _unknown(self, request: Any) -> Any:
        return self._error(ChError(0, f"There is no handle {request.path}"), status=404)

    def _credentials(self, request: Any) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user, password
            except ValueError:
                return "", ""
        user = request.headers.get("X-ClickHouse-User") or request.query.get("user") or "default"
        password = request.headers.get("X-ClickHouse-Key") or request.query.get("password") or ""
        return user, password

    async def _root(self, request: Any) -> Any:
        started = time.perf_counter()
        entry: dict[str, Any] = {"method": request.method, "path": request.path,
                                 "content_encoding": request.headers.get("Content-Encoding", ""),
                                 "accept_encoding": request.headers.get("Accept-Encoding", "")}
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        try:
            if request.method not in ("GET", "POST"):
                raise ChError(0, f"HTTP method {request.method} is not allowed")
            user, password = self._credentials(request)
            entry["user"] = user
            if not (hmac.compare_digest(user, self.user)
                    and hmac.compare_digest(password, self.password)):
                raise ChError(516, f"{user}: Authentication failed: password is incorrect, or "
                                   "there is no user with such name. (AUTHENTICATION_FAILED)")
            if request.query.get("decompress", "0") not in ("", "0") or \
                    request.query.get("compress", "0") not in ("", "0"):
                raise ChError(48, "ClickHouse's block compression (compress=1 / decompress=1) is "
                                  "not implemented by this test double. (NOT_IMPLEMENTED)")
            if request.content_type.startswith("multipart/"):
                raise ChError(48, "multipart requests (external data, form-encoded queries) are "
                                  "not implemented by this test double. (NOT_IMPLEMENTED)")
            wire = await request.read() if request.can_read_body else b""
            entry["body_bytes"] = len(wire)
            body = decode_body(wire, request.headers.get("Content-Encoding", ""))
            stmt = self._statement(request, body)
            entry.update(statement=stmt.sql[:300], insert_format=stmt.insert_format,
                         data_bytes=len(stmt.data), database=stmt.database,
                         settings=sorted(stmt.settings))
            result, summary = await asyncio.to_thread(self._execute, stmt)
        except ChError as exc:
            response = self._error(exc)
        else:
            response = self._ok(request, stmt, result, summary, query_id, entry)
        entry.update(status=response.status,
                     exception_code=response.headers.get("X-ClickHouse-Exception-Code", ""),
                     ms=round((time.perf_counter() - started) * 1000, 1))
        if self.access_log:
            self.access_log.write(json.dumps(entry) + "\n")
        return response

    def _statement(self, request: Any, body: bytes) -> Statement:
        query = request.query.get("query", "")
        full = (query.encode() + b"\n" + body) if query else body
        sql, insert_format, data = parse_statement(full)
        if not sql:
            raise ChError(62, "Empty query. (SYNTAX_ERROR)")
        stmt = Statement(sql=sql, insert_format=insert_format, data=data)
        stmt.database = (request.headers.get("X-ClickHouse-Database")
                         or request.query.get("database", ""))
        stmt.output_format = (request.headers.get("X-ClickHouse-Format")
                              or request.query.get("default_format") or "TabSeparated")
        stmt.readonly = request.method == "GET"
        for key, value in request.query.items():
            if key.startswith("param_"):
                stmt.params[key[6:]] = value
            elif key not in RESERVED_PARAMS:
                if not _SETTING_NAME.match(key):
                    raise ChError(115, f"Unknown setting '{key}'. (UNKNOWN_SETTING)")
                stmt.settings[key] = value
        return stmt

    def _execute(self, stmt: Statement) -> tuple[bytes, dict[str, str]]:
        """Run one statement on a connection of its own (its settings die with it)."""
        conn = self._chdb.connect(self.path)
        try:
            if stmt.database:
                conn.query(f"USE {_quote_ident(stmt.database)}", "TSV")
            for key, value in stmt.settings.items():
                conn.query(f"SET {key} = {_quote(value)}", "TSV")
            if stmt.readonly and stmt.settings.get("readonly", "0") == "0":
                conn.query("SET readonly = 2", "TSV")
            started = time.perf_counter()
            if stmt.insert_format:
                # FROM INFILE, not send_insert: chDB 26.9's send_insert reports success when
                # the INSERT fails after its input was read (a view that throws, a constraint,
                # a shard that is down), where the server answers with the error
                with tempfile.NamedTemporaryFile(prefix="insert-", dir=self.path) as f:
                    f.write(stmt.data)
                    f.flush()
                    path = f.name.replace("\\", "\\\\").replace("'", "\\'")
                    conn.query(f"{stmt.sql} FROM INFILE '{path}' FORMAT {stmt.insert_format}",
                               "TSV")
                elapsed = time.perf_counter() - started
                return b"", _summary(0, 0, 0, len(stmt.data), 0, elapsed)
            result = conn.query(stmt.sql.rstrip().rstrip(";"), stmt.output_format,
                                params=stmt.params or None)
            if result is None:
                return b"", _summary(0, 0, 0, 0, 0, time.perf_counter() - started)
            data = bytes(result.bytes())
            return data, _summary(result.rows_read(), result.bytes_read(), 0, 0, len(data),
                                  result.elapsed())
        except Exception as exc:
            message = str(exc)
            match = _CODE.search(message)
            if match:
                message = message[match.end():].lstrip(". ").removeprefix("DB::Exception: ")
            raise ChError(int(match.group(1)) if match else 1001, message) from None
        finally:
            conn.close()

    def _ok(self, request: Any, stmt: Statement, data: bytes, summary: dict[str, str],
            query_id: str, entry: dict[str, Any]) -> Any:
        from aiohttp import web

        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.timezone,
                   "X-ClickHouse-Server-Display-Name": self.display_name,
                   "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":"))}
        fmt = ""
        if not stmt.insert_format and _PRODUCES_RESULT.match(stmt.sql):
            trailing = _TRAILING_FORMAT.search(stmt.sql)
            fmt = trailing.group(1) if trailing else stmt.output_format
            headers["X-ClickHouse-Format"] = fmt
        headers["Content-Type"] = _content_type(fmt)
        compression = stmt.settings.get("enable_http_compression")
        enabled = (compression not in ("0", "false") if compression is not None
                   else self.http_compression_default)
        if enabled and data:
            wanted = [e.split(";")[0].strip().lower()
                      for e in request.headers.get("Accept-Encoding", "").split(",")]
            chosen = next((e for e in wanted if e in self.encodings), "")
            if chosen:
                data = encode_body(data, chosen)
                headers["Content-Encoding"] = chosen
                entry["response_encoding"] = chosen
        return web.Response(body=data, headers=headers)

    def _error(self, exc: ChError, status: int | None = None) -> Any:
        from aiohttp import web

        text = str(exc)
        if exc.code:
            text = f"Code: {exc.code}. DB::Exception: {text}"
            if "(version " not in text:
                text += f" (version {self.version})"
        headers = {"X-ClickHouse-Server-Display-Name": self.display_name,
                   "Content-Type": "text/plain; charset=UTF-8"}
        if exc.code:
            headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        status = status or _HTTP_STATUS.get(exc.code, 500)
        return web.Response(status=status, text=text.rstrip() + "\n", headers=headers)


def _summary(read_rows: int, read_bytes: int, written_rows: int, written_bytes: int,
             result_bytes: int, elapsed: float) -> dict[str, str]:
    return {"read_rows": str(read_rows), "read_bytes": str(read_bytes),
            "written_rows": str(written_rows), "written_bytes": str(written_bytes),
            "total_rows_to_read": str(read_rows), "result_rows": "0",
            "result_bytes": str(result_bytes), "elapsed_ns": str(int(elapsed * 1e9))}


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if f.startswith("pretty") or f in ("", "vertical", "markdown"):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m tests.chserver", description=(
        "Test double of the ClickHouse server's HTTP interface over chDB (the real ClickHouse "
        "engine). The password comes from --password or $CHSERVER_PASSWORD."))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--path", required=True, help="chDB data directory")
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default=os.environ.get("CHSERVER_PASSWORD", ""))
    parser.add_argument("--access-log", default=None)
    args = parser.parse_args(argv)

    server = Server(args.path, args.user, args.password, args.access_log)
    # ClickHouse keeps format schemas given as strings (format_schema_source = 'string') in a
    # __cache__ directory under the working directory: the data directory, as on a server
    os.chdir(server.path)
    app = server.app()

    async def close(_: Any) -> None:
        server.close()

    app.on_cleanup.append(close)
    # settings travel as URL parameters (format_schema holds a whole .proto): allow long URLs,
    # as the server does (http_max_uri_size = 1 MiB)
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                max_line_size=1024**2, max_field_size=1024**2,
                auto_decompress=False,  # Content-Encoding is decoded here, lz4 included
                print=lambda *_: print(f"chserver (chDB {server.version}) on "
                                       f"http://{args.host}:{args.port}, data in {server.path}",
                                       flush=True))


if __name__ == "__main__":
    main()
