"""What runs where with --workers N: the worker's share of the configuration, the ports the
processes share, and sending queues left behind by workers that no longer exist.

A worker gets the push receivers (they accept connections; the kernel spreads those over the
processes) with their pipelines' processors. Its pipelines end in a handover to the owner, except
clickhouse exporters with a server `endpoint`, which a worker runs itself with a sending queue of
its own: every process inserts into the server directly. Extensions come along (authenticators,
storage) except those that listen on a port of their own.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from gateway.component import ComponentID, Factory, Host, Kind
from gateway.config.loader import ComponentSpec, GatewayConfig, PipelineSpec
from gateway.config.types import ComponentConfig
from gateway.errors import ConfigError, GatewayError
from gateway.queue.wal import may_hold_records

PUSH_RECEIVERS = frozenset({"otlp", "fluentforward"})
OWNER_ONLY_EXTENSIONS = frozenset({"health_check", "pprof", "zpages"})
HANDOVER = "otelgw_handover"


class HandoverConfig(ComponentConfig):
    pipeline: str = Field(description="Pipeline id in the owner.")
    exporters: list[str] = Field(description="The owner's exporters that take the batch.")


def handover_factory(create: Any) -> Factory:
    return Factory(Kind.EXPORTER, HANDOVER, HandoverConfig, create)


def shared(spec: ComponentSpec) -> bool:
    """A receiver the workers run too: a push receiver on a TCP port (a Unix socket path has one
    owner: a second listener would replace the first one's socket file)."""
    endpoint = str(getattr(spec.config, "endpoint", ""))
    return spec.factory.type in PUSH_RECEIVERS and not endpoint.startswith(("unix://", "/"))


def direct_insert(spec: ComponentSpec) -> bool:
    """A clickhouse exporter writing to a server: every process may insert itself."""
    return spec.factory.type == "clickhouse" and bool(getattr(spec.config, "endpoint", ""))


def queue_directory(cfg: GatewayConfig, spec: ComponentSpec) -> Path | None:
    """The owner's sending-queue directory of a direct-insert exporter (None: queue off)."""
    if not spec.config.sending_queue.enabled:  # type: ignore[attr-defined]
        return None
    # the exporter's own rule, with the storage extension it names created but not started
    from exporters.clickhouse.exporter import queue_directory as rule

    extensions = {cid: s.factory.create(cid, s.config) for cid, s in cfg.extensions.items()
                  if s.factory.type == "file_storage"}
    return rule(spec.id, spec.config, Host(telemetry=None, extensions=extensions))  # type: ignore[arg-type]


def _own_queue(spec: ComponentSpec, directory: Path | None) -> ComponentSpec:
    """The exporter with its sending queue in `directory`, no DDL and no query endpoint (the
    owner runs those)."""
    c: Any = spec.config
    update: dict[str, Any] = {"create_schema": False,
                              "query_endpoint": c.query_endpoint.model_copy(update={"enabled": False})}
    if directory is not None:
        update["sending_queue"] = c.sending_queue.model_copy(
            update={"directory": str(directory), "storage": ""})
    return ComponentSpec(spec.id, spec.factory, c.model_copy(update=update))


def worker_directory(base: Path, worker: int) -> Path:
    return base.with_name(f"{base.name}-w{worker}")


def worker_config(cfg: GatewayConfig, worker: int, handover: Factory) -> GatewayConfig:
    out = GatewayConfig(warnings=[])
    out.extensions = {cid: s for cid, s in cfg.extensions.items()
                      if s.factory.type not in OWNER_ONLY_EXTENSIONS}
    for pid, pipe in cfg.pipelines.items():
        receivers = [r for r in pipe.receivers if shared(cfg.receivers[ComponentID.parse(r)])]
        if not receivers:
            continue
        exporters, remote = [], []
        for ref in pipe.exporters:
            spec = cfg.exporters[ComponentID.parse(ref)]
            if direct_insert(spec):
                base = queue_directory(cfg, spec)
                out.exporters[spec.id] = _own_queue(
                    spec, base and worker_directory(base, worker))
                exporters.append(str(spec.id))
            else:
                remote.append(str(spec.id))
        if remote:
            hid = ComponentID(HANDOVER, str(pid))
            out.exporters[hid] = ComponentSpec(hid, handover, HandoverConfig(
                pipeline=str(pid), exporters=remote))
            exporters.append(str(hid))
        for ref in receivers:
            out.receivers[ComponentID.parse(ref)] = cfg.receivers[ComponentID.parse(ref)]
        for ref in pipe.processors:
            out.processors[ComponentID.parse(ref)] = cfg.processors[ComponentID.parse(ref)]
        out.pipelines[pid] = PipelineSpec(receivers=receivers, processors=pipe.processors,
                                          exporters=exporters)
    extensions = [e for e in cfg.service.extensions if ComponentID.parse(e) in out.extensions]
    out.service = cfg.service.model_copy(update={"extensions": extensions})
    return out


def orphan_queues(cfg: GatewayConfig, workers: int) -> Iterator[tuple[ComponentSpec, Path]]:
    """Direct-insert exporters' queues of workers >= `workers` that still hold batches."""
    for spec in cfg.exporters.values():
        if not direct_insert(spec):
            continue
        base = queue_directory(cfg, spec)
        if base is None or not base.parent.is_dir():
            continue
        for path in sorted(base.parent.glob(f"{base.name}-w*")):
            suffix = path.name[len(base.name) + 2:]
            if suffix.isdigit() and int(suffix) >= workers and may_hold_records(path):
                yield _own_queue(spec, path), path


def shared_endpoints(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(where, host:port) of every listener the workers share, from the pipelines' receivers."""
    used = {ComponentID.parse(r) for p in cfg.pipelines.values() for r in p.receivers}
    out = []
    for cid in sorted(used):
        spec = cfg.receivers[cid]
        if not shared(spec):
            continue
        protocols = getattr(spec.config, "protocols", None)
        if protocols is not None:
            for name in ("grpc", "http"):
                proto = getattr(protocols, name, None)
                if proto is not None:
                    out.append((f"receivers::{cid}::protocols::{name}::endpoint", proto.endpoint))
        else:
            out.append((f"receivers::{cid}::endpoint", str(getattr(spec.config, "endpoint"))))
    return out


def check_ports(cfg: GatewayConfig) -> None:
    """Each shared port fixed and free. SO_REUSEPORT would let a second gateway run by the same
    user join our group silently; a plain bind first makes that fail as it does without
    workers."""
    problems = []
    for where, endpoint in shared_endpoints(cfg):
        host, _, port = endpoint.rpartition(":")
        if not port.isdigit() or int(port) == 0:
            problems.append(f"{where}: --workers needs a fixed port, not {endpoint!r}")
    if problems:
        raise ConfigError(problems)
    for where, endpoint in shared_endpoints(cfg):
        host, _, port = endpoint.rpartition(":")
        try:
            _probe(host.strip("[]") or None, int(port))
        except OSError as exc:
            raise GatewayError(f"{where}: cannot listen on {endpoint}: {exc.strerror or exc}"
                               " (is another gateway running?)") from None


def _probe(host: str | None, port: int) -> None:
    for family, kind, proto, _, addr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
