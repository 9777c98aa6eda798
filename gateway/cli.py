"""`otelgw`: run the gateway, validate a config, query the store, print the schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import base64
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config.loader import GatewayConfig, load_config, redact
from gateway.endpoints import local_host
from gateway.errors import ConfigError, GatewayError

_REPO_DEFAULT = Path(__file__).resolve().parents[1] / "config" / "gateway.yaml"


def _default_config() -> str:
    local = Path("config/gateway.yaml")
    return str(local if local.exists() else _REPO_DEFAULT)


def _load(path: str, warn: bool = True) -> GatewayConfig:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"otelgw: {path}: {redact(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None
    for warning in cfg.warnings if warn else ():
        print(f"otelgw: warning: {redact(warning)}", file=sys.stderr)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.service import Service

    cfg = _load(args.config, warn=not args.worker_index)  # the owner has said it once
    tel = cfg.service.telemetry.logs
    sampling = tel.sampling
    logs.setup(tel.level, tel.encoding, logs.Sampler(sampling.tick, sampling.initial,
                                                     sampling.thereafter)
               if sampling.enabled else None)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        runner = asyncio.run
    if args.worker_index:
        from gateway.workers.worker import run_worker

        main: Any = run_worker(cfg, args.worker_index, args.owner_socket)
    else:
        main = Service(cfg, args.workers, str(Path(args.config).resolve())).run()
    try:
        runner(main)
    except (OSError, GatewayError) as exc:  # a port in use, a store that refuses us, …
        logging.getLogger("otelgw").debug("start-up failed", exc_info=True)
        print(f"otelgw: cannot start: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0


def _workers(text: str) -> int:
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of processes from 1 to "
                                         "256, or 'auto'")
    return n


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{args.config}: valid ({len(cfg.pipelines)} pipelines, {len(cfg.receivers)} "
          f"receivers, {len(cfg.processors)} processors, {len(cfg.exporters)} exporters)")
    return 0


def _clickhouse(cfg: GatewayConfig, name: str | None) -> Any:
    specs = [s for cid, s in cfg.exporters.items()
             if s.factory.type == "clickhouse" and (name is None or str(cid) == name)]
    if not specs:
        raise SystemExit("otelgw: the configuration has no clickhouse exporter"
                         + (f" named {name!r}" if name else ""))
    return specs[0].config


def _query_http(ch: Any, sql: str, fmt: str) -> bytes | None:
    qe = ch.query_endpoint
    if not qe.enabled:
        return None
    host, port = local_host(qe.endpoint)
    url = f"http://{host}:{port}/?" + urllib.parse.urlencode(
        {"default_format": fmt, "database": ch.database})
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    if qe.username or qe.password.get_secret_value():
        token = base64.b64encode(f"{qe.username}:{qe.password.get_secret_value()}".encode())
        req.add_header("Authorization", "Basic " + token.decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"otelgw: {exc.read().decode(errors='replace').strip()}") from None
    except (urllib.error.URLError, ConnectionError):
        return None  # the gateway is not running: read the store directly


def cmd_query(args: argparse.Namespace) -> int:
    from exporters.clickhouse.engines import EngineError
    from exporters.clickhouse.exporter import open_engine

    ch = _clickhouse(_load(args.config), args.exporter)
    out = None if ch.endpoint else _query_http(ch, args.sql, args.format)
    if out is None:
        engine = open_engine(ch)
        try:
            if hasattr(engine, "query_in"):
                out = engine.query_in(ch.database, args.sql, args.format)
            else:
                out = engine.query(args.sql, args.format)
        except EngineError as exc:
            raise SystemExit(f"otelgw: {exc}") from None
        finally:
            engine.close()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from exporters.clickhouse.ingest import schema_ddl

    cfg = _clickhouse(_load(args.config), args.exporter)
    if args.cluster:  # as cluster_name in the config: its replication/distributed options apply
        cfg = cfg.model_copy(update={"cluster_name": args.cluster})
    for stmt in schema_ddl(cfg.schema_options(), cfg.aggregations):
        print(stmt.rstrip() + ";\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    # gRPC's core logs every failed TLS handshake (a plaintext or certificate-less client) at
    # INFO on stderr, past the log sampling; keep its errors only, unless asked for more
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = argparse.ArgumentParser(prog="otelgw", description="OpenTelemetry ingest gateway "
                                     "for ClickHouse")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=_default_config(),
                       help="Collector-style YAML (default: config/gateway.yaml)")
        return p

    r = with_config(sub.add_parser("run", help="run the gateway"))
    r.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="processes sharing the receivers' ports (SO_REUSEPORT); 'auto': one "
                        "per CPU (default: 1)")
    # how the gateway starts its own worker processes (gateway/workers)
    r.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    r.add_argument("--owner-socket", default="", help=argparse.SUPPRESS)
    r.set_defaults(fn=cmd_run)
    with_config(sub.add_parser("validate", help="check a configuration, exit non-zero on error")
                ).set_defaults(fn=cmd_validate)
    q = with_config(sub.add_parser("query", help="run a read-only SQL query on the store"))
    q.add_argument("sql")
    q.add_argument("--format", default="PrettyCompact", help="ClickHouse output format")
    q.add_argument("--exporter", help="clickhouse exporter id, when there are several")
    q.set_defaults(fn=cmd_query)
    s = with_config(sub.add_parser("schema", help="print the DDL the clickhouse exporter runs"))
    s.add_argument("--cluster", help="emit ON CLUSTER DDL for this cluster (overrides "
                   "cluster_name; replication and distributed come from the config)")
    s.add_argument("--exporter", help="clickhouse exporter id, when there are several")
    s.set_defaults(fn=cmd_schema)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
