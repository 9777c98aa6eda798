"""The checks of one attribute action, as the Collector's attraction.NewAttrProc makes them:
each wrong combination of fields is refused with the message upstream gives, at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway import goregex
from processors.attributes.values import from_raw

ACTIONS = ("insert", "update", "upsert", "delete", "hash", "extract", "convert")
CONVERTED_TYPES = ("int", "double", "string")
SETTERS = ("insert", "update", "upsert")


@dataclass(frozen=True)
class ActionSpec:
    """One checked action, ready to run."""

    action: str
    key: str = ""
    value: AnyValue | None = None
    regex: re.Pattern[str] | None = None
    names: tuple[str, ...] = ()  # extract: the attribute each capture group writes
    from_attribute: str = ""
    from_context: str = ""
    converted_type: str = ""


def check_action(action: str, key: str = "", value: Any = None, pattern: str = "",
                 from_attribute: str = "", from_context: str = "",
                 converted_type: str = "") -> ActionSpec:
    """The Collector's checks of one action (attraction.NewAttrProc); ValueError says what is
    wrong. `action` is case-insensitive, as upstream."""
    action = action.lower()
    if action not in ACTIONS:
        raise ValueError(f"unsupported action {action!r} (valid: {', '.join(ACTIONS)})")
    if action in ("delete", "hash"):
        if not key and not pattern:
            raise ValueError('missing required field (at least one of "key" and "pattern" '
                             "have to be used)")
    elif not key:
        raise ValueError('missing required field "key"')
    sources = (value is not None) + bool(from_attribute) + bool(from_context)
    if action in SETTERS:
        return _check_setter(action, key, value, pattern, from_attribute, from_context,
                             converted_type, sources)
    if action in ("delete", "hash"):
        if value is not None or from_attribute:
            raise ValueError(f'action "{action}" does not use "value" or "from_attribute" '
                             "field. These must not be specified")
        _no_converted_type(action, converted_type)
        return ActionSpec(action, key, regex=_compile(pattern) if pattern else None)
    if action == "extract":
        return _check_extract(key, pattern, converted_type, sources)
    if sources or pattern:
        raise ValueError('action "convert" does not use value sources or "pattern" field. '
                         "These must not be specified")
    if not converted_type:
        raise ValueError('missing required field "converted_type" for action "convert"')
    if converted_type not in CONVERTED_TYPES:
        raise ValueError(f'invalid value "{converted_type}" in field "converted_type" for '
                         f'action "convert" (valid: {", ".join(CONVERTED_TYPES)})')
    return ActionSpec(action, key, converted_type=converted_type)


def _check_setter(action: str, key: str, value: Any, pattern: str, from_attribute: str,
                  from_context: str, converted_type: str, sources: int) -> ActionSpec:
    if sources == 0:
        raise ValueError('either field "value", "from_attribute" or "from_context" setting '
                         "must be specified")
    if sources > 1:
        raise ValueError('multiple value sources are set: use only one of "value", '
                         '"from_attribute" and "from_context"')
    if pattern:
        raise ValueError(f'action "{action}" does not use the "pattern" field. This must not '
                         "be specified")
    _no_converted_type(action, converted_type)
    if from_context.startswith("auth."):
        raise ValueError(f'from_context "{from_context}": "auth." values come from a server '
                         "authenticator, which otelgw does not have")
    return ActionSpec(action, key, value=from_raw(value) if value is not None else None,
                      from_attribute=from_attribute, from_context=from_context)


def _check_extract(key: str, pattern: str, converted_type: str, sources: int) -> ActionSpec:
    if sources:
        raise ValueError('action "extract" does not use a value source field. These must not '
                         "be specified")
    if not pattern:
        raise ValueError('missing required field "pattern" for action "extract"')
    _no_converted_type("extract", converted_type)
    regex = _compile(pattern)
    # Go's SubexpNames: a name may repeat (the last group of that name wins when extracting).
    names = tuple(goregex.subexp_names(regex)[1:])
    if not names:
        raise ValueError(f'field "pattern" contains no named matcher groups: "{pattern}"')
    if "" in names:
        raise ValueError('field "pattern" contains at least one unnamed matcher group: '
                         f'"{pattern}"')
    return ActionSpec("extract", key, regex=regex, names=names)


def _no_converted_type(action: str, converted_type: str) -> None:
    if converted_type:
        raise ValueError(f'action "{action}" does not use the "converted_type" field. This '
                         "must not be specified")


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return goregex.compile(pattern)
    except ValueError as exc:
        raise ValueError(f'field "pattern" has invalid pattern: {exc}') from None
