"""Load a Collector-shaped YAML file into typed component configs and pipelines.

Every problem is collected with its path (`receivers::otlp::protocols::grpc::endpoint: ...`)
and reported at once, before anything starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from gateway.component import ComponentID, Factory, Kind
from gateway.config.expand import expand_value
from gateway.config.types import ComponentConfig
from gateway.errors import ConfigError
from gateway.signals import Signal

log = logging.getLogger(__name__)


class PipelineSpec(ComponentConfig):
    receivers: list[str] = Field(default_factory=list, description="Receiver ids feeding it.")
    processors: list[str] = Field(default_factory=list, description="Processor ids, in order.")
    exporters: list[str] = Field(default_factory=list, description="Exporter ids it feeds.")


class LogsTelemetry(ComponentConfig):
    level: Literal["debug", "info", "warn", "error"] = Field("info", description="Log level.")
    encoding: Literal["console", "json"] = Field("console", description="Log line format.")


class MetricsTelemetry(ComponentConfig):
    level: Literal["none", "basic", "normal", "detailed"] = Field(
        "normal", description="'none' turns the self-metrics endpoint off.")
    address: str = Field("127.0.0.1:8888", description="Where /metrics with otelcol_* is served.")
    readers: list[Any] | None = Field(None, description="Accepted for Collector compatibility.")


class TelemetrySpec(ComponentConfig):
    logs: LogsTelemetry = Field(default_factory=LogsTelemetry)
    metrics: MetricsTelemetry = Field(default_factory=MetricsTelemetry)


class ServiceSpec(ComponentConfig):
    extensions: list[str] = Field(default_factory=list)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=dict)
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)


@dataclass(frozen=True)
class ComponentSpec:
    id: ComponentID
    factory: Factory
    config: BaseModel


@dataclass
class GatewayConfig:
    receivers: dict[ComponentID, ComponentSpec] = field(default_factory=dict)
    processors: dict[ComponentID, ComponentSpec] = field(default_factory=dict)
    exporters: dict[ComponentID, ComponentSpec] = field(default_factory=dict)
    extensions: dict[ComponentID, ComponentSpec] = field(default_factory=dict)
    pipelines: dict[ComponentID, PipelineSpec] = field(default_factory=dict)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    warnings: list[str] = field(default_factory=list)

    def section(self, kind: Kind) -> dict[ComponentID, ComponentSpec]:
        return getattr(self, kind.value)  # type: ignore[no-any-return]


_TOP = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}


def format_validation_error(prefix: str, error: ValidationError) -> list[str]:
    out = []
    for item in error.errors():
        loc = "::".join(str(p) for p in item["loc"])
        where = f"{prefix}::{loc}" if loc else prefix
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"].endswith("_type") and "input" in item:
            msg = f"{msg} (got {item['input']!r})"
        out.append(f"{where}: {msg}")
    return out


def _load_section(kind: Kind, raw: Any, problems: list[str]) -> dict[ComponentID, ComponentSpec]:
    from gateway import registry

    out: dict[ComponentID, ComponentSpec] = {}
    if raw is None:
        return out
    if not isinstance(raw, Mapping):
        problems.append(f"{kind.value}: must be a mapping of component id to its config")
        return out
    for key, body in raw.items():
        where = f"{kind.value}::{key}"
        try:
            cid = ComponentID.parse(key)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        factory = registry.lookup(kind, cid.type)
        if factory is None:
            known = ", ".join(sorted(registry.types(kind))) or "none"
            problems.append(f"{where}: unknown {kind.value[:-1]} type {cid.type!r} (known: {known})")
            continue
        try:
            config = factory.config_model.model_validate(body or {})
        except ValidationError as exc:
            problems.extend(format_validation_error(where, exc))
            continue
        out[cid] = ComponentSpec(cid, factory, config)
    return out


def _check_pipeline(
    cfg: GatewayConfig, name: str, spec: PipelineSpec, problems: list[str]
) -> ComponentID | None:
    where = f"service::pipelines::{name}"
    try:
        pid = ComponentID.parse(name)
        signal = Signal(pid.type)
    except ValueError:
        problems.append(f"{where}: pipeline id must be traces, metrics or logs[/name]")
        return None
    for kind, refs in ((Kind.RECEIVER, spec.receivers), (Kind.PROCESSOR, spec.processors),
                       (Kind.EXPORTER, spec.exporters)):
        if not refs and kind is not Kind.PROCESSOR:
            problems.append(f"{where}::{kind.value}: must list at least one {kind.value[:-1]}")
        seen: set[ComponentID] = set()
        for ref in refs:
            try:
                cid = ComponentID.parse(ref)
            except ValueError as exc:
                problems.append(f"{where}::{kind.value}: {exc}")
                continue
            comp = cfg.section(kind).get(cid)
            if comp is None:
                problems.append(f"{where}::{kind.value}: references {kind.value[:-1]} "
                                f"{ref!r} which is not configured")
            elif signal not in comp.factory.signals:
                problems.append(f"{where}::{kind.value}: {ref!r} does not support {signal.value}")
            if cid in seen:
                problems.append(f"{where}::{kind.value}: {ref!r} is listed twice")
            seen.add(cid)
    return pid


def load_config_text(text: str, source: str = "<config>",
                     env: Mapping[str, str] | None = None) -> GatewayConfig:
    problems: list[str] = []
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    warnings: list[str] = []
    raw = expand_value(dict(raw), env, problems=warnings)
    for key in raw:
        if key not in _TOP:
            problems.append(f"{key}: unknown top-level key (expected one of {', '.join(sorted(_TOP))})")
    if raw.get("connectors"):
        problems.append("connectors: connectors are not supported by otelgw")
    cfg = GatewayConfig(warnings=warnings)
    for kind in Kind:
        cfg.section(kind).update(_load_section(kind, raw.get(kind.value), problems))
    try:
        cfg.service = ServiceSpec.model_validate(raw.get("service") or {})
    except ValidationError as exc:
        problems.extend(format_validation_error("service", exc))
    for name, spec in cfg.service.pipelines.items():
        pid = _check_pipeline(cfg, name, spec, problems)
        if pid is not None:
            cfg.pipelines[pid] = spec
    for ref in cfg.service.extensions:
        try:
            if ComponentID.parse(ref) not in cfg.extensions:
                problems.append(f"service::extensions: {ref!r} is not configured")
        except ValueError as exc:
            problems.append(f"service::extensions: {exc}")
    if not cfg.pipelines and not problems:
        problems.append("service::pipelines: at least one pipeline must be configured")
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return load_config_text(text, str(path), env)
