"""`${env:VAR}`, `${VAR}` and `${env:VAR:-default}` expansion, `$$` for a literal `$`.

Expansion happens on string values after YAML parsing, as in the Collector; a value that is
exactly one `${...}` reference takes the variable's text as YAML, so `${env:PORT}` can be an int.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _lookup(match: re.Match[str], env: Mapping[str, str], missing: list[str]) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    missing.append(name)
    return ""


def expand_value(value: Any, env: Mapping[str, str] | None = None, path: str = "",
                 problems: list[str] | None = None) -> Any:
    env = os.environ if env is None else env
    problems = [] if problems is None else problems
    if isinstance(value, dict):
        return {k: expand_value(v, env, f"{path}::{k}" if path else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_value(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    missing: list[str] = []
    whole = _REF.fullmatch(value)
    text = _REF.sub(lambda m: _lookup(m, env, missing), value)
    for name in missing:
        # The Collector expands an unset variable to "" too; say so, since it is rarely meant.
        problems.append(f"{path}: environment variable {name} is not set (expands to empty)")
    if whole and whole.group(0) != "$$" and text:
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(parsed, (int, float, bool)):
            return parsed
    return text
