"""Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`), as model/relabel does it.

Behaviour follows Prometheus 3 (the generation the Collector's prometheus receiver embeds):

* Regexes are Go RE2 syntax, anchored as `^(?s:<regex>)$` (so `.` matches a newline), compiled
  once per config by gateway.goregex with Go's meaning (what Go rejects is rejected there).
* `$1`, `${1}`, `$name`, `${name}` and `$$` expand as Go's Regexp.Expand does (`$1x` is the
  group named "1x", i.e. empty; an unknown group is empty; a malformed `$` is kept).
* Empty label values are absent labels; `replace` with an empty result deletes the target.
* `hashmod` uses the last 8 bytes of the MD5 of the joined values, big-endian, mod `modulus`, so
  a target lands in the same shard as in Prometheus.
* Label names are validated for UTF-8 names by default (Prometheus 3's
  `metric_name_validation_scheme: utf8`); pass `legacy_names=True` / call
  `check_legacy_names()` for the legacy `[a-zA-Z_][a-zA-Z0-9_]*` rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from gateway import goregex
from receivers.prometheus.httpconfig import PromConfig

Action = Literal["replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap",
                 "labeldrop", "labelkeep", "lowercase", "uppercase"]
_ACTIONS = Action.__args__  # type: ignore[attr-defined]

_LEGACY_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").fullmatch
# model/relabel's relabelTargetLegacy: legacy characters plus $var / ${var} references.
_LEGACY_TEMPLATE = re.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", re.ASCII).fullmatch


class RelabelConfig(PromConfig):
    """One relabeling step; field names, defaults and validation as in Prometheus."""

    source_labels: list[str] = Field(
        default_factory=list,
        description="Labels whose values are joined with `separator` and matched by `regex`.")
    separator: str = Field(";", description="Put between the source label values.")
    regex: str = Field(
        "(.*)", description="RE2 regular expression, anchored at both ends, matched against the "
                            "joined source values (labelmap/labeldrop/labelkeep: label names).")
    modulus: int = Field(0, ge=0, description="Modulus for the hashmod action.")
    target_label: str = Field(
        "", description="Label written by replace, hashmod, lowercase and uppercase, or "
                        "compared by keepequal/dropequal; replace may use $1, ${name}.")
    replacement: str = Field(
        "$1", description="Value written by replace (new label name for labelmap); may use "
                          "$1, ${1}, $name, ${name}; $$ is a literal $.")
    action: Action = Field(
        "replace", description="replace, keep, drop, keepequal, dropequal, hashmod, labelmap, "
                               "labeldrop, labelkeep, lowercase or uppercase.")

    _step: _Step = PrivateAttr()

    @field_validator("action", mode="before")
    @classmethod
    def _action_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lower() not in _ACTIONS:
                raise ValueError(f'unknown relabel action "{value}" (one of '
                                 f'{", ".join(_ACTIONS)})')
            return value.lower()
        return value

    @field_validator("regex", "separator", "target_label", "replacement", mode="before")
    @classmethod
    def _scalar_text(cls, value: Any) -> Any:
        # YAML `regex: 200` or `replacement: ~` reach a Go string field as "200" and "".
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        return value

    @field_validator("source_labels", mode="before")
    @classmethod
    def _source_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("source_labels")
    @classmethod
    def _source_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name:
                raise ValueError('"" is not a valid label name')
        return value

    @model_validator(mode="after")
    def _validate(self) -> RelabelConfig:
        action, target = self.action, self.target_label
        given = self.model_fields_set
        if action == "hashmod" and self.modulus == 0:
            raise ValueError("relabel configuration for hashmod requires non-zero modulus")
        if action in _NEEDS_TARGET and not target:
            raise ValueError(f"relabel configuration for {action} action requires "
                             f"'target_label' value")
        if action in ("lowercase", "uppercase", "keepequal", "dropequal") \
                and self.replacement != "$1":
            raise ValueError(f"'replacement' can not be set for {action} action")
        if action == "labelmap" and not self.replacement:
            raise ValueError(f'"{self.replacement}" is invalid \'replacement\' for {action} '
                             f"action")
        if action in ("keepequal", "dropequal") and (
                "regex" in given or self.modulus or self.separator != ";"):
            raise ValueError(f"{action} action requires only 'source_labels' and "
                             f"`target_label`, and no other fields")
        if action in ("labeldrop", "labelkeep") and (
                "source_labels" in given or target or self.modulus or self.separator != ";"
                or self.replacement != "$1"):
            raise ValueError(f"{action} action requires only 'regex', and no other fields")
        return self

    def model_post_init(self, context: Any) -> None:
        # Compiled once per config: relabel() runs per target and per scraped series. This runs
        # before the checks above, as Prometheus compiles the regex while it reads the YAML.
        try:
            pattern = goregex.compile(self.regex, anchored=True, dotall=True)
        except goregex.GoRegexError as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        self._step = _Step(self, pattern)

    def check_legacy_names(self) -> None:
        """The extra checks Prometheus makes under `metric_name_validation_scheme: legacy`."""
        action, target = self.action, self.target_label
        if action == "replace":
            ok = _LEGACY_TEMPLATE(target) if "$" in target else _LEGACY_NAME(target)
        elif action in ("hashmod", "lowercase", "uppercase", "keepequal", "dropequal"):
            ok = _LEGACY_NAME(target)
        else:
            ok = True
        if not ok:
            raise ValueError(f'"{target}" is invalid \'target_label\' for {action} action')
        if action == "labelmap" and not _LEGACY_TEMPLATE(self.replacement):
            raise ValueError(f'"{self.replacement}" is invalid \'replacement\' for {action} '
                             f"action")
        for name in self.source_labels:
            if not _LEGACY_NAME(name):
                raise ValueError(f'"{name}" is not a valid label name')


_NEEDS_TARGET = frozenset(("replace", "hashmod", "lowercase", "uppercase", "keepequal",
                           "dropequal"))


def relabel(labels: dict[str, str], configs: Sequence[RelabelConfig], *,
            legacy_names: bool = False) -> dict[str, str] | None:
    """Apply configs in order. Returns the new labels (without empty values), or None when a
    step dropped them. Does not mutate `labels`."""
    builder = _Builder(labels)
    for cfg in configs:
        # Straight from pydantic's private dict: its __getattr__ costs more than a step.
        if not cfg.__pydantic_private__["_step"].run(builder, legacy_names):
            return None
    return builder.labels()


class _Step:
    """A config in the shape relabel() needs on its hot path."""

    __slots__ = ("action", "search", "target", "target_template", "replacement", "sources",
                 "separator", "modulus")

    def __init__(self, cfg: RelabelConfig, pattern: re.Pattern[str]) -> None:
        self.action = cfg.action
        self.search = pattern.search
        self.target = cfg.target_label
        self.target_template = goregex.Template(cfg.target_label, pattern)
        self.replacement = goregex.Template(cfg.replacement, pattern)
        self.sources = tuple(cfg.source_labels)
        self.separator = cfg.separator
        self.modulus = cfg.modulus

    def run(self, lb: _Builder, legacy: bool) -> bool:
        """Apply to lb; False when the labels are dropped."""
        action, search = self.action, self.search
        if action == "labeldrop" or action == "labelkeep":
            keep = action == "labelkeep"
            for name, _ in lb.items():
                if (search(name) is not None) is not keep:
                    lb.delete(name)
            return True
        if action == "labelmap":
            for name, value in lb.items():
                m = search(name)
                if m is not None:
                    lb.set(_replace_all(m, self.replacement, name), value)
            return True
        get, sources = lb.get, self.sources
        val = get(sources[0]) if len(sources) == 1 else self.separator.join(
            [get(name) for name in sources])
        if action == "replace":
            m = search(val)
            if m is not None:
                target = self.target_template.expand(m)
                if target and (not legacy or _LEGACY_NAME(target)):
                    lb.set(target, self.replacement.expand(m))
            return True
        if action == "keep":
            return search(val) is not None
        if action == "drop":
            return search(val) is None
        if action == "keepequal":
            return get(self.target) == val
        if action == "dropequal":
            return get(self.target) != val
        if action == "hashmod":
            digest = hashlib.md5(val.encode("utf-8", "surrogateescape")).digest()
            lb.set(self.target, str(int.from_bytes(digest[8:], "big") % self.modulus))
        elif action == "lowercase":
            lb.set(self.target, go_lower(val))
        else:  # uppercase
            lb.set(self.target, go_upper(val))
        return True


class _Builder:
    """Prometheus's labels.Builder: changes kept apart from the (sorted) base labels, so that
    labelmap visits labels in the same order and the last write wins as it does there."""

    __slots__ = ("base", "add", "deleted")

    def __init__(self, base: dict[str, str]) -> None:
        self.base = base
        self.add: dict[str, str] = {}
        self.deleted: set[str] = set()

    def get(self, name: str) -> str:
        value = self.add.get(name)
        if value is not None:
            return value
        if name in self.deleted:
            return ""
        return self.base.get(name, "")

    def set(self, name: str, value: str) -> None:
        if not value:
            self.delete(name)
        else:
            self.add[name] = value

    def delete(self, name: str) -> None:
        self.add.pop(name, None)
        self.deleted.add(name)

    def items(self) -> list[tuple[str, str]]:
        """A snapshot: unchanged base labels by name, then the changed ones as set."""
        add, deleted = self.add, self.deleted
        out = [(k, v) for k, v in sorted(self.base.items())
               if v and k not in deleted and k not in add]
        out.extend(add.items())
        return out

    def labels(self) -> dict[str, str]:
        base, deleted = self.base, self.deleted
        if not deleted and "" not in base.values():
            out = dict(base)
        else:
            out = {k: v for k, v in base.items() if v and k not in deleted}
        out.update(self.add)
        return out


# --- Go's case mapping ----------------------------------------------------------------------


def go_lower(text: str) -> str:
    """strings.ToLower: one rune to one rune (Python's lower() maps 'İ' to two characters and
    turns a final 'Σ' into 'ς')."""
    if text.isascii():
        return text.lower()
    return "".join(_lower_rune(c) for c in text)


def go_upper(text: str) -> str:
    """strings.ToUpper: one rune to one rune (Python's upper() turns 'ß' into 'SS')."""
    if text.isascii():
        return text.upper()
    return "".join(_upper_rune(c) for c in text)


def _lower_rune(c: str) -> str:
    low = c.lower()
    if len(low) == 1:
        return low
    return "i" if c == "\u0130" else c


def _upper_rune(c: str) -> str:
    up = c.upper()
    if len(up) == 1:
        return up
    # Letters whose full uppercase is several characters: the simple mapping, where one
    # exists, is the one-character titlecase form (ᾳ → ᾼ); otherwise the letter stays.
    title = c.title()
    return title if len(title) == 1 else c


# --- Go's Regexp.ReplaceAllString ------------------------------------------------------------


def _replace_all(first: re.Match[str], template: goregex.Template, text: str) -> str:
    """Go's Regexp.ReplaceAllString from its first match on (not re.sub: Go treats empty
    matches differently). With the anchored relabel regex there is one match, the whole text,
    unless the regex itself closes the anchoring group early, e.g. `a)|(b`."""
    pattern, out, last_end, copied, pos, n = first.re, [], -1, 0, 0, len(text)
    m: re.Match[str] | None = first
    while m is not None:
        start, end = m.span()
        out.append(text[copied:start])
        if end > last_end or start == 0:
            out.append(template.expand(m))
        copied = last_end = end
        pos = pos + 1 if pos + 1 > end else end  # always advance, as Go does
        m = pattern.search(text, pos) if pos <= n else None
    out.append(text[copied:])
    return "".join(out)
