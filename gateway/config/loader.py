"""Load a Collector-shaped YAML file into typed component configs and pipelines.

Every problem is collected with its path (`receivers::otlp::protocols::grpc::endpoint: ...`)
and reported at once, before anything starts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from gateway.component import ComponentID, Factory, Kind
from gateway.config.expand import expand_value
from gateway.config.types import ComponentConfig, Duration
from gateway.errors import ConfigError
from gateway.signals import Signal

log = logging.getLogger(__name__)


class PipelineSpec(ComponentConfig):
    receivers: list[str] = Field(default_factory=list, description="Receiver ids feeding it.")
    processors: list[str] = Field(default_factory=list, description="Processor ids, in order.")
    exporters: list[str] = Field(default_factory=list, description="Exporter ids it feeds.")


class LogSampling(ComponentConfig):
    enabled: bool = Field(True, description="Rate-limit repeats of the same log message.")
    tick: Duration = Field(10.0, gt=0, description="Window over which repeats are counted.")
    initial: int = Field(10, ge=0, description="Lines of one message logged per tick in full.")
    thereafter: int = Field(100, ge=0, description="After that, every Nth line (0: none).")


class LogsTelemetry(ComponentConfig):
    level: Literal["debug", "info", "warn", "error"] = Field("info", description="Log level.")
    encoding: Literal["console", "json"] = Field("console", description="Log line format.")
    sampling: LogSampling = Field(default_factory=LogSampling,
                                  description="Rate limit of repeated messages (as the "
                                              "Collector's zap sampling).")


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


# Option names whose values are credentials (password, token, key_pem, headers, …): an error
# about them never shows the value, whatever its type.
_SECRET_NAME = re.compile(r"pass|secret|token|pem|credential|auth|cookie|signature|headers|"
                          r"api_?key|private|bearer", re.IGNORECASE)
_SCALAR_TYPES = {"int_type", "float_type", "bool_type", "string_type", "bytes_type"}
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s:]*:[^/@\s]*@")


def redact(text: str) -> str:
    """The password of a URL's userinfo (scheme://user:password@host) replaced by ***."""
    return _URL_USERINFO.sub(lambda m: m.group(0).split(":", 1)[0] + ":***@", text)


def _shown_input(kind: str, loc: tuple[Any, ...], value: Any) -> str:
    """What an error may say it got: never a credential (by the option's name or the value's
    look), never the contents of a mapping or list, nor a string given where a mapping or list
    belongs (`query_endpoint: user:password@host`)."""
    if any(_SECRET_NAME.search(str(p)) for p in loc):
        return "a value (not shown: it may be a credential)"
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    if isinstance(value, str) and (kind not in _SCALAR_TYPES or _SECRET_NAME.search(value)):
        return "a string"
    return redact(repr(value))


def format_validation_error(prefix: str, error: ValidationError) -> list[str]:
    out = []
    for item in error.errors():
        loc = "::".join(str(p) for p in item["loc"])
        where = f"{prefix}::{loc}" if loc else prefix
        msg = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"].endswith("_type") and "input" in item:
            msg = f"{msg} (got {_shown_input(item['type'], tuple(item['loc']), item['input'])})"
        out.append(f"{where}: {redact(msg)}")
    return out


def _yaml_error(source: str, exc: yaml.YAMLError) -> str:
    """PyYAML's message without the excerpt of the file it quotes (it may be a password)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"{source}: not valid YAML"
    parts = []
    for what, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if what:
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            parts.append(f"{what}{at}")
    return f"{source}: not valid YAML: " + "; ".join(parts)


def _load_section(kind: Kind, raw: Any, problems: list[str],
                  invalid: set[tuple[Kind, ComponentID]]) -> dict[ComponentID, ComponentSpec]:
    """The valid components of one section; ids configured with errors go to `invalid`, so a
    pipeline naming one is not also told it "is not configured"."""
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
        if cid in out or (kind, cid) in invalid:
            problems.append(f"{where}: {str(cid)!r} is configured twice")
            continue
        factory = registry.lookup(kind, cid.type)
        if factory is None:
            known = ", ".join(sorted(registry.types(kind))) or "none"
            problems.append(f"{where}: unknown {kind.value[:-1]} type {cid.type!r} (known: {known})")
            invalid.add((kind, cid))
            continue
        try:
            config = factory.config_model.model_validate(body or {})
        except ValidationError as exc:
            problems.extend(format_validation_error(where, exc))
            invalid.add((kind, cid))
            continue
        out[cid] = ComponentSpec(cid, factory, config)
    return out


def _check_pipeline(
    cfg: GatewayConfig, name: str, spec: PipelineSpec, problems: list[str],
    invalid: set[tuple[Kind, ComponentID]],
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
            if comp is None and (kind, cid) in invalid:
                pass  # its own errors are reported where it is configured
            elif comp is None:
                problems.append(f"{where}::{kind.value}: references {kind.value[:-1]} "
                                f"{ref!r} which is not configured")
            elif signal not in comp.factory.signals:
                problems.append(f"{where}::{kind.value}: {ref!r} does not support {signal.value}")
            if cid in seen:
                problems.append(f"{where}::{kind.value}: {ref!r} is listed twice")
            seen.add(cid)
    return pid


def _duplicate_keys(node: yaml.Node, path: str, problems: list[str]) -> None:
    """go-yaml (the Collector) refuses a mapping key given twice; PyYAML keeps the last one."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{path}::{name}" if path else str(name)
            if name is not None and name != "<<":
                if name in seen:
                    problems.append(f"{where}: defined twice (lines {seen[name] + 1} and "
                                    f"{key.start_mark.line + 1})")
                else:
                    seen[name] = key.start_mark.line
            _duplicate_keys(value, where, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{i}]", problems)


def _load_service(raw: Any, cfg: GatewayConfig, problems: list[str],
                  invalid: set[tuple[Kind, ComponentID]]) -> None:
    """Service settings, then each pipeline on its own, so that one pipeline's mistake does not
    hide another's."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append("service: must be a mapping (extensions, pipelines, telemetry)")
        return
    raw_pipelines = raw.get("pipelines")
    try:
        service = ServiceSpec.model_validate({k: v for k, v in raw.items() if k != "pipelines"})
    except ValidationError as exc:
        problems.extend(format_validation_error("service", exc))
        service = ServiceSpec()
    pipelines: dict[str, PipelineSpec] = {}
    if raw_pipelines is not None and not isinstance(raw_pipelines, Mapping):
        problems.append("service::pipelines: must be a mapping of pipeline id "
                        "(traces, metrics, logs[/name]) to its components")
        raw_pipelines = None
    for name, body in (raw_pipelines or {}).items():
        name = str(name)
        try:
            spec = PipelineSpec.model_validate(body or {})
        except ValidationError as exc:
            problems.extend(format_validation_error(f"service::pipelines::{name}", exc))
            try:  # still check what it references, leaving out the keys in error
                known = {k: v for k, v in body.items() if k in PipelineSpec.model_fields}
                _check_pipeline(cfg, name, PipelineSpec.model_validate(known), problems, invalid)
            except (ValidationError, AttributeError):
                pass
            continue
        pipelines[name] = spec
        pid = _check_pipeline(cfg, name, spec, problems, invalid)
        if pid is not None:
            cfg.pipelines[pid] = spec
    cfg.service = service.model_copy(update={"pipelines": pipelines})


def load_config_text(text: str, source: str = "<config>",
                     env: Mapping[str, str] | None = None) -> GatewayConfig:
    problems: list[str] = []
    try:
        raw = yaml.safe_load(text)
        _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), "", problems)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(source, exc)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    warnings: list[str] = []
    raw = expand_value(dict(raw), env, problems=warnings, errors=problems)
    for key in raw:
        if key not in _TOP:
            problems.append(f"{key}: unknown top-level key (expected one of {', '.join(sorted(_TOP))})")
    if raw.get("connectors"):
        problems.append("connectors: connectors are not supported by otelgw")
    cfg = GatewayConfig(warnings=warnings)
    invalid: set[tuple[Kind, ComponentID]] = set()
    for kind in Kind:
        cfg.section(kind).update(_load_section(kind, raw.get(kind.value), problems, invalid))
    _load_service(raw.get("service"), cfg, problems, invalid)
    for ref in cfg.service.extensions:
        try:
            cid = ComponentID.parse(ref)
            if cid not in cfg.extensions and (Kind.EXTENSION, cid) not in invalid:
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
