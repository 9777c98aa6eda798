"""Go (RE2) regular expressions on Python's `re`.

Collector configs are written for Go's regexp package. Most of its syntax means the same in
Python; this module rewrites the parts that do not, and refuses what RE2 refuses (backreferences,
lookaround) so a config that the Collector rejects is rejected here too:

- `(?<name>…)` (Go 1.22+) becomes `(?P<name>…)`; `\\z` becomes `\\Z`; `$` outside multi-line
  mode means the end of the text only, as in Go (Python's also matches before a final newline);
- `[[:alpha:]]`-style ASCII classes, `\\Q…\\E` literals, `\\x{10FFFF}` and octal `\\123` escapes
  are spelled the Python way;
- `\\d \\w \\s \\b` are ASCII-only, as in RE2 (re.ASCII).

Not available: Unicode classes (`\\pL`, `\\p{Greek}`) and the `U` (ungreedy) flag — an error
says so. Python's engine backtracks where RE2 does not, so a pathological pattern can be slow on
long values; patterns come from the operator's configuration, not from the data.
"""

from __future__ import annotations

import re

_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_NAME = re.compile(r"[A-Za-z0-9_]+>")
_FLAGS = re.compile(r"\(\?([a-zA-Z-]*)[:)]")
_OCTAL = "01234567"


def compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile a Go regexp for Python; ValueError says what is wrong with it."""
    try:
        return re.compile(translate(pattern), re.ASCII)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def translate(pattern: str) -> str:
    multiline = any("m" in m.group(1).partition("-")[0] for m in _FLAGS.finditer(pattern))
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1  # where the current class's items begin (a ']' there is literal)
    while i < n:
        c = pattern[i]
        if c == "\\":
            text, i = _escape(pattern, i, in_class)
            out.append(text)
        elif in_class:
            if c == "[" and pattern.startswith("[:", i):
                text, i = _posix(pattern, i)
                out.append(text)
                continue
            if c == "]" and i != class_start:
                in_class = False
                out.append(c)
            elif c in "[&~|":
                out.append("\\" + c)  # literal in RE2; Python warns of future set syntax
            else:
                out.append(c)
            i += 1
        elif c == "[":
            in_class = True
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            class_start = j
            out.append(pattern[i:j])
            i = j
        elif c == "(" and pattern.startswith("(?", i):
            text, i = _group(pattern, i)
            out.append(text)
        elif c == "$" and not multiline:
            out.append(r"\Z")
            i += 1
        elif c in "*+?" and i + 1 < n and pattern[i + 1] == "+":
            raise ValueError(f"invalid regular expression {pattern!r}: invalid nested "
                             f"repetition operator: `{c}+`")
        else:
            out.append(c)
            i += 1
    if in_class:
        raise ValueError(f"invalid regular expression {pattern!r}: missing closing ]")
    return "".join(out)


def _escape(p: str, i: int, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(p):
        raise ValueError(f"invalid regular expression {p!r}: trailing backslash at end of "
                         "expression")
    d = p[i + 1]
    if d == "Q":
        end = p.find("\\E", i + 2)
        literal = p[i + 2:] if end < 0 else p[i + 2:end]
        return "".join("\\" + ch if not ch.isalnum() else ch for ch in literal), (
            len(p) if end < 0 else end + 2)
    if d == "z":
        return (r"\Z" if not in_class else "z"), i + 2
    if d in "pP":
        raise ValueError(f"invalid regular expression {p!r}: Unicode classes (\\{d}…) are not "
                         "supported by otelgw")
    if d in "ZC" or d in "89" or d.isalpha() and d not in "AbBdDsSwWfnrtvax":
        raise ValueError(f"invalid regular expression {p!r}: invalid escape sequence: \\{d}")
    if d == "x" and i + 2 < len(p) and p[i + 2] == "{":
        end = p.find("}", i + 3)
        try:
            code = int(p[i + 3:end], 16) if end > 0 else -1
        except ValueError:
            code = -1
        if not 0 <= code <= 0x10FFFF:
            raise ValueError(f"invalid regular expression {p!r}: invalid escape sequence: "
                             f"{p[i:end + 1] if end > 0 else p[i:]}")
        return f"\\U{code:08x}", end + 1
    if d in _OCTAL:
        j = i + 1
        if d != "0" and (j + 1 >= len(p) or p[j + 1] not in _OCTAL):
            raise ValueError(f"invalid regular expression {p!r}: invalid escape sequence: "
                             f"\\{d} (backreferences are not supported)")
        while j < len(p) and j < i + 4 and p[j] in _OCTAL:
            j += 1
        return f"\\U{int(p[i + 1:j], 8):08x}", j
    return p[i:i + 2], i + 2


def _posix(p: str, i: int) -> tuple[str, int]:
    end = p.find(":]", i + 2)
    name = p[i + 2:end] if end > 0 else ""
    if name.startswith("^"):
        raise ValueError(f"invalid regular expression {p!r}: negated class [:{name}:] is not "
                         "supported by otelgw")
    if name not in _POSIX:
        raise ValueError(f"invalid regular expression {p!r}: invalid character class range: "
                         f"[:{name}:]")
    return _POSIX[name], end + 2


def _group(p: str, i: int) -> tuple[str, int]:
    rest = p[i + 2:]
    if rest.startswith("P<"):
        return "(?P<", i + 4
    if rest.startswith("<") and _NAME.match(rest, 1):
        return "(?P<", i + 3
    flags = _FLAGS.match(p, i)
    if flags:
        if "U" in flags.group(1):
            raise ValueError(f"invalid regular expression {p!r}: the U (ungreedy) flag is not "
                             "supported by otelgw")
        return flags.group(0), flags.end()
    raise ValueError(f"invalid regular expression {p!r}: invalid or unsupported Perl syntax: "
                     f"`{p[i:i + 3]}`")
