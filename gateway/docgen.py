"""The configuration reference, generated from the config models:

    python -m gateway.docgen > docs/configuration.md

Every registered component (gateway/registry.py) gets a section with one row per option: its
YAML key (aliases such as `from` and `global` as written in YAML; nested options as dotted paths,
`[]` for list items, `<name>` for map keys), type and constraints, default and the `Field`
description. The `service` section comes from the loader's model.

Options are read from each model's fields, never from an instance of the component's config:
several default configs are invalid on purpose (memory_limiter, the prometheus exporter's
endpoint, the resource and attributes actions), as in the Collector.

Whoever adds a component or changes an option regenerates docs/configuration.md with the command
above; tests/test_docgen.py fails while the committed file differs from a regeneration.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gateway.component import Factory, Kind
from gateway.config.types import parse_duration
from gateway.registry import factories
from gateway.signals import Signal

COMMAND = "python -m gateway.docgen > docs/configuration.md"

# Value types known by the BeforeValidator that parses them (the name, not an import: the core
# does not import components). An unknown parser falls back to the underlying Python type.
_PARSED_TYPES = {
    "parse_duration": "duration",
    "parse_prom_duration": "duration (Prometheus)",
    "parse_size": "size (Prometheus)",
}

_KIND_TITLES = {Kind.RECEIVER: "Receivers", Kind.PROCESSOR: "Processors",
                Kind.EXPORTER: "Exporters", Kind.EXTENSION: "Extensions"}
_KIND_NOUNS = {Kind.RECEIVER: "receiver", Kind.PROCESSOR: "processor",
               Kind.EXPORTER: "exporter", Kind.EXTENSION: "extension"}

_PREAMBLE = f"""\
# Configuration reference

<!-- Generated from the config models by `{COMMAND}`: do not edit by hand. -->

otelgw reads the OpenTelemetry Collector's YAML: `receivers`, `processors`, `exporters` and
`extensions` are maps from a component id (`type` or `type/name`) to that component's options,
and `service` wires them into pipelines. Every option of every component is listed below with
its type, default and meaning. An unknown key is an error, and all errors are reported at once
with their path (`receivers::otlp::protocols::grpc::endpoint: …`).

Writing values:

- **duration**: Go syntax, `200ms`, `5s`, `1m30s`, `72h` (units `ns`, `us`, `ms`, `s`, `m`,
  `h`); a bare number is seconds.
- **duration (Prometheus)**: Prometheus syntax inside the prometheus receiver's `config`, whole
  numbers with units `ms`, `s`, `m`, `h`, `d`, `w`, `y`, e.g. `15s`, `1h30m`.
- **size (Prometheus)**: bytes, or a number with a base-2 unit: `10MB` (= 10 MiB), `512KiB`.
- **string (secret)**: a string that the gateway keeps out of its logs and error messages.
- Environment variables: `${{env:VAR}}`, `${{VAR}}` and `${{env:VAR:-default}}` are expanded in
  every string; `$$` is a literal `$` (so a Prometheus `replacement: $1` is written `$$1`).
- In option names, `a.b` is key `b` inside map `a`, `a[].b` is key `b` of each item of list `a`,
  and `a.<name>.b` is key `b` under any key of map `a`.
"""

_SERVICE_INTRO = """\
How the components are wired and how the gateway reports on itself. `extensions` lists the
extension ids to start; each pipeline (`traces`, `metrics`, `logs`, or a named one such as
`traces/2`) lists receiver, processor and exporter ids of components defined above. Processors
run in the order given; data from a receiver in several pipelines goes to each.
"""


@dataclass(frozen=True)
class Row:
    option: str
    type: str
    default: str
    description: str


# ---- types ---------------------------------------------------------------------------------


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _split_annotated(tp: Any) -> tuple[Any, list[Any]]:
    metadata: list[Any] = []
    while get_origin(tp) is Annotated:
        metadata.extend(tp.__metadata__)
        tp = tp.__origin__
    return tp, metadata


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def _parsed_name(metadata: list[Any]) -> str | None:
    for item in metadata:
        func = getattr(item, "func", None)
        name = getattr(func, "__name__", "")
        if type(item).__name__ == "BeforeValidator" and name.startswith("parse_"):
            return _PARSED_TYPES.get(name, name.removeprefix("parse_").replace("_", " "))
    return None


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            out.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length:
            out.append("non-empty" if item.min_length == 1 else f"length ≥ {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            out.append(f"length ≤ {item.max_length}")
        elif getattr(item, "pattern", None):
            out.append(f"matching `{item.pattern}`")
    return out


def _literal_choices(tp: Any) -> list[Any] | None:
    """The values of a Literal, or of a union made only of Literals (None aside)."""
    tp, _ = _split_annotated(tp)
    if get_origin(tp) is Literal:
        return list(get_args(tp))
    members = _union_args(tp)
    if members is None:
        return None
    choices: list[Any] = []
    for member in members:
        if member is type(None):
            continue
        sub = _literal_choices(member)
        if sub is None:
            return None
        choices.extend(c for c in sub if c not in choices)
    return choices


def _choices_text(choices: list[Any]) -> str:
    return "one of " + ", ".join(f"`{_scalar(c)}`" for c in choices)


def _type_text(tp: Any, metadata: list[Any] | None = None) -> str:
    """`integer ≥ 0`, `list of strings`, `one of `a`, `b``, `duration, optional`, …"""
    tp, inner = _split_annotated(tp)
    metadata = [*(metadata or []), *inner]
    optional = False
    members = _union_args(tp)
    if members is not None and type(None) in members:
        optional = True
        rest = tuple(m for m in members if m is not type(None))
        tp = rest[0] if len(rest) == 1 else Union[rest]
        tp, inner = _split_annotated(tp)
        metadata += inner
    base = _base_text(tp, metadata)
    constraints = _constraints(metadata)
    if constraints and constraints[0] == "non-empty":
        base, constraints = f"non-empty {base}", constraints[1:]
    text = base + (" " + ", ".join(constraints) if constraints else "")
    return text + (", optional" if optional else "")


def _base_text(tp: Any, metadata: list[Any]) -> str:
    parsed = _parsed_name(metadata)
    if parsed:
        return parsed
    if (choices := _literal_choices(tp)) is not None:
        return _choices_text(choices)
    if (members := _union_args(tp)) is not None:
        return " or ".join(_type_text(m) for m in members)
    if get_origin(tp) in (list, tuple, set, frozenset):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if not args:
            return "list"
        if (choices := _literal_choices(args[0])) is not None:
            return "list, each " + _choices_text(choices)
        return f"list of {_plural(_type_text(args[0]))}"
    if get_origin(tp) is dict:
        key, value = get_args(tp) or (str, Any)
        return f"map of {_type_text(key)} to {_type_text(value)}"
    if _is_model(tp):
        return "object"
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return _choices_text([m.value for m in tp])
    return _SIMPLE.get(tp, getattr(tp, "__name__", str(tp)))


_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                           Any: "any", SecretStr: "string (secret)", type(None): "null"}


def _plural(text: str) -> str:
    head, sep, tail = text.partition(" ")
    if head in ("string", "integer", "number", "boolean", "object", "list", "map"):
        return head + "s" + sep + tail
    return text


def _nested_model(tp: Any) -> tuple[type[BaseModel], str] | None:
    """The model documented under a field, with the path suffix of its items."""
    tp, _ = _split_annotated(tp)
    if _is_model(tp):
        return tp, ""
    members = _union_args(tp)
    if members is not None:
        found = [n for n in (_nested_model(m) for m in members if m is not type(None)) if n]
        return found[0] if len(found) == 1 else None
    if get_origin(tp) in (list, tuple, set, frozenset):
        args = get_args(tp)
        inner = _nested_model(args[0]) if args else None
        return (inner[0], "[]" + inner[1]) if inner else None
    if get_origin(tp) is dict:
        args = get_args(tp)
        inner = _nested_model(args[1]) if len(args) == 2 else None
        return (inner[0], ".<name>" + inner[1]) if inner else None
    return None


# ---- values --------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_./:@$()*^+\-\\]+")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "~"}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    text = str(value)
    looks_like_number = re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?", text) is not None
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS and not looks_like_number:
        return text
    return json.dumps(text, ensure_ascii=False)


def _flow(value: Any) -> str:
    """A JSON-like value the way it is written in YAML flow style."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "[" + ", ".join(sorted(_flow(v) for v in value)) + "]"
    return _scalar(value)


def go_duration(seconds: float) -> str:
    """Seconds the way a Collector user writes them: `5m`, `1m30s`, `200ms`, `720h`, `0s`."""
    if seconds == 0:
        return "0s"
    sign, rest = ("-" if seconds < 0 else ""), abs(seconds)
    if rest < 1:
        return f"{sign}{rest * 1000:g}ms"
    out = ""
    for unit, size in (("h", 3600), ("m", 60)):
        if rest >= size:
            count = int(rest // size)
            out += f"{count}{unit}"
            rest -= count * size
    if rest or not out:
        out += f"{rest:g}s"
    return sign + out


def _is_go_duration(info: FieldInfo) -> bool:
    metadata = list(info.metadata)
    for member in _union_args(info.annotation) or ():
        metadata += _split_annotated(member)[1]
    return any(getattr(m, "func", None) is parse_duration for m in metadata)


def _default_value(info: FieldInfo, parent: BaseModel | None, name: str) -> Any:
    """The parent's default instance knows best (a factory may set nested defaults)."""
    if parent is not None:
        return getattr(parent, name)
    return info.get_default(call_default_factory=True, validated_data={})


def _default_text(info: FieldInfo, value: Any) -> str:
    if value is PydanticUndefined:
        return "**required**"
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    elif isinstance(value, float) and _is_go_duration(info):
        return f"`{go_duration(value)}`"
    else:
        try:
            value = TypeAdapter(info.rebuild_annotation()).dump_python(
                value, mode="json", by_alias=True)
        except Exception:  # a type pydantic cannot serialise alone: show it as Python has it
            pass
    text = _flow(value)
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


# ---- rows ----------------------------------------------------------------------------------


def _doc_summary(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from a base), first paragraph."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


_MARKUP = re.compile(r"<|\*|(?<!\w)_")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """A description as a table cell: outside code spans, escape what would turn
    `metadata.<header>` into an HTML tag or `__meta_x` into emphasis."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside code spans
        parts[i] = _MARKUP.sub(lambda m: "\\" + m.group(0), parts[i])
    return _cell("`".join(parts))


def rows(model: type[BaseModel], prefix: str = "", instance: BaseModel | None = None,
         seen: dict[type[BaseModel], str] | None = None) -> Iterator[Row]:
    """One row per option of `model`, recursing into nested models. A model met again (the
    TLS settings of several clients, say) refers to where it was documented first."""
    seen = {} if seen is None else seen
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}.{key}" if prefix else key
        try:
            value = _default_value(info, instance, name)
        except Exception:  # a default factory that needs context: no default worth showing
            value = PydanticUndefined
        nested = _nested_model(info.annotation)
        description = info.description or (_doc_summary(nested[0]) if nested else "")
        if nested and nested[0] in seen:
            description += f" Same options as `{seen[nested[0]]}`."
        # A plain nested object without a word of its own adds nothing to its options' rows.
        if description or not nested or nested[1] or value is None:
            yield Row(path, _type_text(info.annotation, info.metadata),
                      _default_text(info, value), description.strip())
        if nested and nested[0] not in seen:
            sub_model, suffix = nested
            seen[sub_model] = path + suffix
            child_instance = value if isinstance(value, sub_model) and not suffix else None
            yield from rows(sub_model, path + suffix, child_instance, seen)


def _table(model_rows: list[Row]) -> list[str]:
    out = ["| Option | Type | Default | Description |", "|---|---|---|---|"]
    for r in model_rows:
        out.append(f"| `{r.option}` | {_cell(r.type)} | {_cell(r.default)} | "
                   f"{_prose(r.description)} |")
    return out


def _module_doc(model: type[BaseModel]) -> str:
    module = sys.modules.get(model.__module__)
    doc = inspect.getdoc(module) if module is not None else None
    return doc.strip() if doc else ""


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def _unique_factories(kind: Kind) -> list[tuple[Factory, list[str]]]:
    by_type: dict[str, Factory] = {}
    for f in factories()[kind].values():
        by_type[f.type] = f
    return [(f, sorted(f.aliases)) for _, f in sorted(by_type.items())]


def _component(kind: Kind, f: Factory, aliases: list[str]) -> list[str]:
    out = [f"### `{f.type}` {_KIND_NOUNS[kind]}", ""]
    facts = []
    if kind is not Kind.EXTENSION:
        facts.append("Signals: " + ", ".join(s.value for s in Signal if s in f.signals) + ".")
    if aliases:
        facts.append("Also accepted as " + ", ".join(f"`{a}`" for a in aliases) + ".")
    if facts:
        out += [" ".join(facts), ""]
    doc = _module_doc(f.config_model)
    if doc:
        out += [doc, ""]
    model_rows = list(rows(f.config_model))
    if model_rows:
        out += _table(model_rows)
    else:
        out.append("No options.")
    return out + [""]


def render() -> str:
    from gateway.config.loader import ServiceSpec

    out = [_PREAMBLE]
    contents = []
    sections: list[str] = []
    for kind in Kind:
        sections += [f"## {_KIND_TITLES[kind]}", ""]
        contents.append(f"- [{_KIND_TITLES[kind]}](#{_anchor(_KIND_TITLES[kind])}): " + ", ".join(
            f"[`{f.type}`](#{_anchor(f'{f.type} {_KIND_NOUNS[kind]}')})"
            for f, _ in _unique_factories(kind)))
        for f, aliases in _unique_factories(kind):
            sections += _component(kind, f, aliases)
    contents.append("- [Service](#service)")
    sections += ["## Service", "", _SERVICE_INTRO, *_table(list(rows(ServiceSpec, "service"))),
                 ""]
    out += ["Contents:", "", *contents, "", *sections]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
