"""`${env:VAR}`, `${VAR}` and `${env:VAR:-default}` expansion, `$$` for a literal `$`.

Expansion happens on string values after YAML parsing, as in the Collector. The result stays the
variable's text: the typed config coerces it (`${env:PORT}` becomes an int for an int field, "off"
a bool for a bool field), and a string field keeps it exactly, so PASSWORD=0123 stays "0123".
Any other `${...}` (a `${file:...}` provider, a typo) is an error rather than literal text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\$\{[^}]*\}?)")


def _lookup(match: re.Match[str], env: Mapping[str, str], missing: list[str],
            bad: list[str]) -> str:
    if match.group(0) == "$$":
        return "$"
    if match.group(3) is not None:
        bad.append(match.group(3))
        return match.group(3)
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    missing.append(name)
    return ""


def expand_value(value: Any, env: Mapping[str, str] | None = None, path: str = "",
                 problems: list[str] | None = None, errors: list[str] | None = None) -> Any:
    """Expand every string in `value`. Unset variables (they expand to "") are reported in
    `problems` (warnings); references otelgw cannot expand in `errors`."""
    env = os.environ if env is None else env
    problems = [] if problems is None else problems
    errors = [] if errors is None else errors
    if isinstance(value, dict):
        return {k: expand_value(v, env, f"{path}::{k}" if path else str(k), problems, errors)
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_value(v, env, f"{path}[{i}]", problems, errors)
                for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    missing: list[str] = []
    bad: list[str] = []
    text = _REF.sub(lambda m: _lookup(m, env, missing, bad), value)
    for name in missing:
        # The Collector expands an unset variable to "" too; say so, since it is rarely meant.
        problems.append(f"{path}: environment variable {name} is not set (expands to empty)")
    for ref in bad:
        errors.append(f"{path}: cannot expand {ref!r}: only ${{env:VAR}}, ${{VAR}} and "
                      "${env:VAR:-default} are supported (write $$ for a literal $)")
    return text
