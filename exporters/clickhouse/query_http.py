"""A read-only, ClickHouse-compatible HTTP endpoint over the embedded store.

The subset that curl, clickhouse-connect and Grafana's ClickHouse data source use: `GET/POST /`
with the query in the `query` parameter and/or the body, `FORMAT` in the query or
`default_format`, `database`, credentials by basic auth, `X-ClickHouse-User/Key` headers or
`user`/`password` parameters, and `/ping`. Only reading statements run; the store is the gateway's:
one statement per request, checked to be a read, then run on a connection with ClickHouse's
`readonly=2` (no writes or DDL; format settings allowed, as clients send them). Table functions
that reach files, processes or the network (file, url, s3, remote, …), which readonly=2 allows,
and INTO OUTFILE, which chDB does not stop in readonly mode, are refused before the query runs.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re

from aiohttp import web

from exporters.clickhouse.config import QueryEndpoint
from exporters.clickhouse.engines import Engine, EngineError, code_of
from gateway.endpoints import split_host_port

log = logging.getLogger(__name__)

# A single-quoted string, a double-quoted or backquoted identifier, or a comment: what may
# contain `;` or words without meaning anything.
_LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`"
                      r"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_EXTERNAL = re.compile(
    r"\b(?:file|fileCluster|url|urlCluster|s3|s3Cluster|gcs|oss|cosn|azureBlobStorage|"
    r"azureBlobStorageCluster|hdfs|hdfsCluster|remote|remoteSecure|cluster|clusterAllReplicas|"
    r"mysql|postgresql|mongodb|redis|sqlite|jdbc|odbc|executable|input|iceberg\w*|deltaLake\w*|"
    r"hudi\w*|hive|python|arrowFlight|ytsaurus)\s*\(", re.IGNORECASE)
_DATABASE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")
_READING = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|"
                      r"EXISTS|EXPLAIN)\b", re.IGNORECASE | re.DOTALL)


class QueryServer:
    def __init__(self, engine: Engine, cfg: QueryEndpoint, database: str) -> None:
        self.engine = engine
        self.cfg = cfg
        self.database = database
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("GET", "/ping", self._ping)
        app.router.add_route("*", "/", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = split_host_port(self.cfg.endpoint)
        await web.TCPSite(self._runner, host, port).start()
        log.info("ClickHouse-compatible query endpoint (read-only) on http://%s:%d", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _ping(self, _: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _authorized(self, request: web.Request) -> bool:
        want_user = self.cfg.username
        want_pass = self.cfg.password.get_secret_value()
        if not want_user and not want_pass:
            return True
        user = request.headers.get("X-ClickHouse-User") or request.query.get("user", "")
        password = request.headers.get("X-ClickHouse-Key") or request.query.get("password", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
        # bytes: compare_digest refuses non-ASCII str
        return (hmac.compare_digest(user.encode(), want_user.encode())
                & hmac.compare_digest(password.encode(), want_pass.encode()))

    async def _query(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            return _error(405, "only GET and POST are supported")
        if not self._authorized(request):
            return _error(401, "authentication failed: wrong user or password", code=516)
        body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        sql = " ".join(p for p in (request.query.get("query", ""), body) if p.strip()).strip()
        if not sql:
            return _error(400, "empty query: pass it in the 'query' parameter or the body", 62)
        sql = sql.rstrip().rstrip(";")
        bare = _LITERAL.sub(" ", sql)
        if ";" in bare:
            return _error(400, "multi-statements are not allowed: send one query per request",
                          code=62)
        if not _READING.match(sql) or _OUTFILE.search(bare):
            return _error(403, "this endpoint is read-only: only SELECT, WITH, SHOW, DESCRIBE, "
                               "EXISTS and EXPLAIN run here, without INTO OUTFILE", code=164)
        external = _EXTERNAL.search(bare)
        if external:
            return _error(403, f"table function {external.group(0).rstrip('( ')}() is not "
                               "allowed here: this endpoint reads the gateway's tables only",
                          code=164)
        fmt = request.query.get("default_format", "TabSeparated")
        database = request.query.get("database") or self.database
        if not _DATABASE.match(database):
            return _error(400, f"invalid database name {database[:64]!r}", code=81)
        try:
            data = await asyncio.to_thread(self._run, sql, fmt, database)
        except EngineError as exc:
            code = code_of(str(exc)) or 1000
            return _error(404 if code in (60, 81) else 400, str(exc), code)
        return web.Response(body=data, content_type="text/plain",
                            headers={"X-ClickHouse-Format": fmt})

    def _run(self, sql: str, fmt: str, database: str) -> bytes:
        return bytes(self.engine.query_in(database, sql, fmt, readonly=True))  # type: ignore[attr-defined]


def _error(status: int, message: str, code: int = 0) -> web.Response:
    if code and not message.startswith("Code:"):
        message = f"Code: {code}. DB::Exception: {message}"
    headers = {"X-ClickHouse-Exception-Code": str(code)} if code else {}
    return web.Response(status=status, text=message.rstrip() + "\n", headers=headers)
