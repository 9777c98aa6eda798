"""Kubernetes label and field selectors: parsed (so a config error is reported at start-up, as
kubectl and client-go would reject it) and matched (by the test API server, and by anyone who
filters objects already in hand).

Grammar as in k8s.io/apimachinery labels.Parse / fields.ParseSelector:
  label:  key | !key | key=v | key==v | key!=v | key in (a,b) | key notin (a,b) | key>n | key<n
  field:  path=v | path==v | path!=v          (`\\,` `\\=` `\\\\` escape inside a value)
Requirements are joined with commas; all must hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*"
                  r"[A-Za-z0-9])?")
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # "exists" "!exists" "=" "!=" "in" "notin" ">" "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        try:  # ">" / "<": both sides must be integers, as in apimachinery
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return present and (have > want if self.op == ">" else have < want)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _check_key(key: str, selector: str) -> str:
    if not _KEY.fullmatch(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise ValueError(f"invalid label selector {selector!r}: {key!r} is not a valid label key")
    return key


def _check_value(value: str, selector: str) -> str:
    if len(value) > 63 or not _VALUE.fullmatch(value):
        raise ValueError(f"invalid label selector {selector!r}: {value!r} is not a valid label "
                         f"value")
    return value


_SET_OP = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_OP = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*?)\s*$")


def parse_label_selector(selector: str) -> tuple[LabelRequirement, ...]:
    """Parse `selector`; raise ValueError naming the offending part."""
    if not selector.strip():
        return ()
    reqs = []
    for part in _split_top(selector):
        if not part.strip():
            raise ValueError(f"invalid label selector {selector!r}: empty requirement")
        if m := _SET_OP.match(part):
            values = tuple(_check_value(v.strip(), selector) for v in m.group(3).split(","))
            reqs.append(LabelRequirement(_check_key(m.group(1), selector), m.group(2), values))
        elif m := _CMP_OP.match(part):
            key, op, value = m.groups()
            op = "=" if op == "==" else op
            if op in "<>":
                try:
                    int(value)
                except ValueError:
                    raise ValueError(f"invalid label selector {selector!r}: {op} needs an "
                                     f"integer, got {value!r}") from None
            else:
                _check_value(value, selector)
            reqs.append(LabelRequirement(_check_key(key, selector), op, (value,)))
        else:
            text = part.strip()
            op = "!exists" if text.startswith("!") else "exists"
            reqs.append(LabelRequirement(_check_key(text.lstrip("!").strip(), selector), op))
    return tuple(reqs)


def labels_match(reqs: tuple[LabelRequirement, ...], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str

    def matches(self, actual: str) -> bool:
        return (actual == self.value) == (self.op == "=")


def _split_escaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str, selector: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise ValueError(f"invalid field selector {selector!r}: bad escape in {value!r}")
            out.append(value[i + 1])
            i += 2
        else:
            if value[i] in ",=":
                raise ValueError(f"invalid field selector {selector!r}: unescaped {value[i]!r} "
                                 f"in {value!r}")
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_field_selector(selector: str) -> tuple[FieldRequirement, ...]:
    """Parse `selector`; raise ValueError naming the offending part."""
    if not selector.strip():
        return ()
    reqs = []
    for part in _split_escaped(selector, ","):
        for op in ("!=", "==", "="):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                field = part[:idx].strip()
                if not field:
                    raise ValueError(f"invalid field selector {selector!r}: missing field name")
                value = _unescape(part[idx + len(op):], selector)
                reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
                break
        else:
            raise ValueError(f"invalid field selector {selector!r}: {part!r} has no operator "
                             f"(=, == or !=)")
    return tuple(reqs)


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            return i
        i += 1
    return -1
