"""OTLP names, units, attributes → Prometheus metric names, label names and label values.

The rules are those of the contrib translator the Collector v0.129.0 prometheus exporter uses
(pkg/translator/prometheus: BuildCompliantName, NormalizeLabel, CleanUpString); label values are
pdata's Value.AsString() (gateway/pdata.py):

- add_metric_suffixes (default): the name is split into tokens at every rune that is neither a
  letter nor a digit (so `.`, `_`, `:` and runs of them all become one `_`); the main unit
  (`s` → `seconds`, `By` → `bytes`, …, unknown units cleaned up as they are) is appended unless
  it is blank, holds `{}` (an annotation such as `{requests}`) or is already a token; a `/unit`
  adds `per_<unit>` likewise (`s` → `second`); monotonic sums end in `_total` and gauges of unit
  `1` in `_ratio` (an existing `total` / `ratio` token moves to the end); the namespace comes
  first; a leading digit gets a `_` prefix.
- without suffixes: runes other than letters, digits, `_` and `:` become `_` (runs collapse), the
  namespace is prefixed with `_`, and a leading digit gets `_` when there is no namespace.
- label names: every rune that is not a letter or digit becomes `_`; a leading digit gets `key_`,
  a single leading `_` gets `key` (`__` is kept: such labels are reserved, and the series is
  refused when it is exposed, as client_golang does).

Letters and digits are Unicode ones, as in Go; names that still hold runes outside
[a-zA-Z0-9_:] are written with those runes as `_` (`escape`), which is what client_golang's
default underscore escaping does for a scraper that does not ask for UTF-8 names.
"""

from __future__ import annotations

import re

from gateway.pdata import as_string

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week",
              "mo": "month", "y": "year"}

TARGET_INFO = "target_info"
_DIGITS = "0123456789"
_LEGACY = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NOT_LEGACY = re.compile(r"[^a-zA-Z0-9_:]")


def _tokens(s: str, keep: str = "") -> list[str]:
    """Go's strings.FieldsFunc splitting at every rune that is not a letter, digit or in keep."""
    out, cur = [], []
    for ch in s:
        if ch.isalpha() or ch.isdecimal() or ch in keep:
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def clean_up(s: str) -> str:
    return "_".join(_tokens(s))


def _main_unit(unit: str) -> str:
    main = unit.split("/", 1)[0].strip()
    if not main or "{" in main or "}" in main:
        return ""
    return clean_up(_UNITS.get(main, main))


def _per_unit(unit: str) -> str:
    parts = unit.split("/", 1)
    if len(parts) < 2:
        return ""
    per = parts[1].strip()
    if not per or "{" in per or "}" in per:
        return ""
    return clean_up(_PER_UNITS.get(per, per))


def metric_name(name: str, unit: str, kind: str, monotonic: bool, namespace: str,
                add_suffixes: bool) -> str:
    """The Prometheus family name of an OTLP metric; kind is gauge, sum, histogram or summary.
    `namespace` must already be cleaned up (`clean_up`)."""
    if not add_suffixes:
        base = "_".join(_tokens(name, "_:"))
        if namespace:
            return f"{namespace}_{base}"
        return "_" + base if base[:1] in _DIGITS and base else base
    tokens = _tokens(name)
    main = _main_unit(unit)
    if main and main not in tokens:
        tokens.append(main)
    per = _per_unit(unit)
    if per and per not in tokens:
        tokens += ["per", per]
    if kind == "sum" and monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    if namespace:
        tokens.insert(0, namespace)
    out = "_".join(tokens)
    return "_" + out if out[:1] in _DIGITS and out else out


def label_name(key: str) -> str:
    if not key:
        return key
    out = "".join(ch if ch.isalpha() or ch.isdecimal() else "_" for ch in key)
    if out[0] in _DIGITS:
        return "key_" + out
    if out.startswith("_") and not out.startswith("__"):
        return "key" + out
    return out


def escape(name: str) -> str:
    """A name as written for a scraper that expects classic names: other runes become `_`."""
    if _LEGACY.fullmatch(name):
        return name
    out = _NOT_LEGACY.sub("_", name)
    return "_" + out[1:] if out[:1] in _DIGITS else out


# ------------------------------------------------------------------ job / instance

def job_instance(attrs: dict[str, str]) -> tuple[str | None, str | None]:
    """`job` from service.namespace/service.name, `instance` from service.instance.id."""
    job = attrs.get("service.name")
    if job is not None and "service.namespace" in attrs:
        job = f"{attrs['service.namespace']}/{job}"
    return job, attrs.get("service.instance.id")


# ------------------------------------------------------------------ label values

label_value = as_string  # a label value is the attribute's pdata Value.AsString()
