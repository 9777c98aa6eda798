"""The attribute action engine shared by the `attributes` and `resource` processors: the
Collector's attraction package (insert, update, upsert, delete, hash, extract, convert).

Each checked action (processors/attributes/checks.py) becomes a small function over a repeated
KeyValue field that reports whether it changed anything, so a request that no action touches
keeps its received bytes. `from_context` values are looked up once per request, not per item.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from gateway.payload import RequestContext
from processors.attributes.checks import SETTERS, ActionSpec
from processors.attributes.convert import sha256_text, to_double, to_int, to_string


Step = Callable[[Any, Any], bool]  # (repeated KeyValue, its Source or None) -> changed


@dataclass(frozen=True, slots=True)
class Source:
    """A value to set, with the KeyValue it makes already serialized: appending it to an
    attribute list is one small parse in C instead of building the message field by field."""

    value: AnyValue
    entry: bytes  # serialized KeyValue(key, value)


def source(key: str, value: AnyValue) -> Source:
    return Source(value, KeyValue(key=key, value=value).SerializeToString())


class AttrProc:
    """Runs a list of checked actions over attribute lists, in order."""

    def __init__(self, specs: Sequence[ActionSpec]) -> None:
        self._steps: list[tuple[Step, ActionSpec]] = [(_step(s), s) for s in specs]
        self._static = [(step, source(s.key, s.value) if s.value is not None else None)
                        for step, s in self._steps if not s.from_context]
        self.uses_context = any(s.from_context for _, s in self._steps)

    def bind(self, context: RequestContext) -> list[tuple[Step, Source | None]]:
        """The steps for one request, with its `from_context` values; an action whose context
        value is absent does nothing (as upstream) and is left out."""
        if not self.uses_context:
            return self._static
        bound = []
        static = iter(self._static)
        for step, spec in self._steps:
            if not spec.from_context:
                bound.append(next(static))
                continue
            value = context_value(context, spec.from_context)
            if value is not None:
                bound.append((step, source(spec.key, value)))
        return bound


def apply(steps: list[tuple[Step, Source | None]], attrs: Any) -> bool:
    changed = False
    for step, src in steps:
        if step(attrs, src):
            changed = True
    return changed


def context_value(context: RequestContext, key: str) -> AnyValue | None:
    """`client.address`, `metadata.<name>` (or a bare name) from the request: several values
    of one header are joined with ';', as upstream."""
    if key == "client.address":
        return AnyValue(string_value=_ip_text(context.client_address))
    name = (key[len("metadata."):] if key.startswith("metadata.") else key).lower()
    values = [v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")
              for k, v in context.headers if k == name]
    return AnyValue(string_value=";".join(values)) if values else None


def _ip_text(address: str) -> str:
    """The address as Go's net.IP.String() writes it: IPv4-mapped IPv6 as IPv4, no zone."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _step(spec: ActionSpec) -> Step:
    if spec.action in SETTERS:
        if spec.from_attribute:
            return _from_attribute(spec.action, spec.key, spec.from_attribute)
        return {"insert": _insert, "update": _update, "upsert": _upsert}[spec.action](spec.key)
    if spec.action == "delete":
        return _delete(spec.key, spec.regex)
    if spec.action == "hash":
        return _hash(spec.key, spec.regex)
    if spec.action == "extract":
        assert spec.regex is not None
        return _extract(spec.key, spec.regex, spec.names)
    return _convert(spec.key, spec.converted_type)


def _find(attrs: Any, key: str) -> Any:
    for kv in attrs:
        if kv.key == key:
            return kv
    return None


def _insert(key: str) -> Step:
    def step(attrs: Any, src: Source) -> bool:
        for kv in attrs:
            if kv.key == key:
                return False
        attrs.add().MergeFromString(src.entry)
        return True
    return step


def _update(key: str) -> Step:
    def step(attrs: Any, src: Source) -> bool:
        for kv in attrs:
            if kv.key == key:
                if kv.value == src.value:
                    return False
                kv.value.CopyFrom(src.value)
                return True
        return False
    return step


def _upsert(key: str) -> Step:
    def step(attrs: Any, src: Source) -> bool:
        for kv in attrs:
            if kv.key == key:
                if kv.value == src.value:
                    return False
                kv.value.CopyFrom(src.value)
                return True
        attrs.add().MergeFromString(src.entry)
        return True
    return step


def _from_attribute(action: str, key: str, from_key: str) -> Step:
    def step(attrs: Any, _: Any) -> bool:
        target = src = None
        for kv in attrs:  # one pass finds both (the first of each, as pcommon.Map.Get)
            k = kv.key
            if target is None and k == key:
                target = kv
            if src is None and k == from_key:
                src = kv
        if src is None:
            return False
        if target is None:
            if action == "update":
                return False
            entry = attrs.add()
            entry.key = key
            entry.value.CopyFrom(src.value)
            return True
        if action == "insert" or target.value == src.value:
            return False
        target.value.CopyFrom(src.value)
        return True
    return step


def _matching_keys(attrs: Any, regex: re.Pattern[str]) -> list[str]:
    search = regex.search
    return [k for k in (kv.key for kv in attrs) if search(k)]


def _delete(key: str, regex: re.Pattern[str] | None) -> Step:
    def step(attrs: Any, _: Any) -> bool:
        # As upstream: `key` (even when empty), then every key the pattern matches.
        changed = _remove(attrs, key)
        if regex is not None:
            for k in _matching_keys(attrs, regex):
                changed |= _remove(attrs, k)
        return changed
    return step


def _remove(attrs: Any, key: str) -> bool:
    for i, kv in enumerate(attrs):
        if kv.key == key:
            del attrs[i]
            return True
    return False


def _hash(key: str, regex: re.Pattern[str] | None) -> Step:
    def step(attrs: Any, _: Any) -> bool:
        # As upstream: `key` (even when empty), then every key the pattern matches (again if it
        # matches `key`), each time the first attribute of that name.
        changed = _hash_first(attrs, key)
        if regex is not None:
            for k in _matching_keys(attrs, regex):
                changed |= _hash_first(attrs, k)
        return changed
    return step


def _hash_first(attrs: Any, key: str) -> bool:
    for kv in attrs:
        if kv.key == key:
            kv.value.string_value = sha256_text(kv.value)
            return True
    return False


def _extract(key: str, regex: re.Pattern[str], names: tuple[str, ...]) -> Step:
    def step(attrs: Any, _: Any) -> bool:
        kv = _find(attrs, key)
        if kv is None or kv.value.WhichOneof("value") != "string_value":
            return False
        match = regex.search(kv.value.string_value)
        if match is None:
            return False
        for name, text in zip(names, match.groups(default="")):
            target = _find(attrs, name)
            if target is None:
                attrs.add(key=name).value.string_value = text
            else:
                target.value.string_value = text
        return True
    return step


def _convert(key: str, to: str) -> Step:
    convert = {"int": to_int, "double": to_double, "string": to_string}[to]

    def step(attrs: Any, _: Any) -> bool:
        kv = _find(attrs, key)
        return kv is not None and convert(kv.value, key)
    return step
