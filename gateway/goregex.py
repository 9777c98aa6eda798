"""Go (RE2) regular expressions, run by Python's `re` with Go's meaning.

Collector and Prometheus configs carry regexes written for Go's regexp package. `compile()` parses
one with Go's syntax and writes out a Python pattern that matches the same texts and captures the
same groups, with the same numbers:

- `\\d \\w \\s \\b` and POSIX classes (`[[:alpha:]]`, `[[:^digit:]]`) are ASCII, as in Go (Python's
  `\\s` would also match `\\v`); `$` without `(?m)` is the end of the text (Python's also matches
  before a final newline); `.` matches `\\n` only under `(?s)`;
- flags `(?i)`, `(?m)`, `(?s)`, `(?U)` (ungreedy) may be set or cleared anywhere, `(?i-s)`,
  `(?i:…)`, and last to the end of the enclosing group;
- `(?i)` uses Go's simple case folding (`k`, `K` and the Kelvin sign fold together, `i` and the
  dotless `ı` do not), written out as explicit classes so Python's own folding never applies;
- `\\pL`, `\\p{Lu}`, `\\PN`, `\\p{^Nd}` (general categories) and `\\p{Any}`;
- `\\Q…\\E`, octal `\\123`, `\\x41`, `\\x{10FFFF}`; `{,n}` and counts with a leading zero are
  literal text, as Go reads them;
- named groups `(?P<n>…)` and `(?<n>…)`, numbered as in Go; Go allows a name twice, or one that
  starts with a digit, which Python does not: the Python pattern spells those differently, and
  `subexp_names()` gives every group's Go name (Go's Regexp.SubexpNames).

What Go rejects is rejected, with Go's reason: look-around, back-references, possessive or
stacked repeats (`a*+`, `a**`), `\\Z`, counts over 1000, also when nested (`(a{100}){100}`).
What Python cannot run with Go's meaning is rejected too: Unicode scripts (`\\p{Greek}`) and
nesting deeper than Python's parser goes (about 400 groups; Go allows 1000).

Differences that stay: Python's engine backtracks, so a pathological regex can be slow on hostile
input where RE2 runs in linear time (regexes come from the operator's configuration, not from the
data); and the Unicode tables are Python's (3.11: Unicode 14), which may be a version apart from
the Go build's.

`Template` is Go's Regexp.Expand: `$1`, `${1}`, `$name`, `${name}` and `$$` in replacements.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata

__all__ = ["GoRegexError", "Template", "compile", "subexp_names", "translate"]

MAX_REPEAT = 1000  # Go's limit on a count, and on counts multiplied through nested repeats
_MAX_DEPTH = 1000  # Go's limit on nesting (Python's parser gives up well before it)
_MAX_RUNE = 0x10FFFF
# A Go group name Python cannot take (it starts with a digit, or is used a second time) becomes
# "<_MANGLE><number>_<name>" in the Python pattern; no Go name, being ASCII, can look like that.
_MANGLE = "\u01e5"

Ranges = list[tuple[int, int]]


class GoRegexError(ValueError):
    """A regex Go rejects, or one Python cannot run with Go's meaning."""

    def __init__(self, reason: str, pattern: str, pos: int) -> None:
        super().__init__(f"{reason} at position {pos} in `{pattern}`")
        self.reason, self.pattern, self.pos = reason, pattern, pos


def compile(pattern: str, *, anchored: bool = False, dotall: bool = False) -> re.Pattern[str]:
    """Compile a Go regex. `anchored` wraps it as `^(?:…)$` (k8sattributes' key_regex) and,
    with `dotall`, as `^(?s:…)$` (Prometheus relabeling); the wrapping is textual, as in Go, so
    a regex that closes it early (`a)|(b`) means what it means there. GoRegexError if invalid."""
    return _compile(pattern, anchored, dotall)


def translate(pattern: str, *, anchored: bool = False, dotall: bool = False) -> str:
    """The Python source `compile()` compiles."""
    return _translate(pattern, anchored, dotall)


def subexp_names(regex: re.Pattern[str]) -> list[str]:
    """Go's Regexp.SubexpNames of a compiled regex: the name of each group by number, "" for the
    whole match (0) and for unnamed groups."""
    names = [""] * (regex.groups + 1)
    for name, index in regex.groupindex.items():
        names[index] = name.partition("_")[2] if name.startswith(_MANGLE) else name
    return names


@functools.lru_cache(maxsize=512)
def _compile(pattern: str, anchored: bool, dotall: bool) -> re.Pattern[str]:
    python = _translate(pattern, anchored, dotall)
    try:
        return re.compile(python)
    except RecursionError:
        raise GoRegexError("expression nests too deeply for Python's re", pattern, 0) from None
    except re.error as exc:  # a translation Python refuses: a bug here, said plainly
        raise GoRegexError(f"cannot run this regex in Python ({exc})", pattern, 0) from None


@functools.lru_cache(maxsize=512)
def _translate(pattern: str, anchored: bool, dotall: bool) -> str:
    prefix = ("^(?s:" if dotall else "^(?:") if anchored else ("(?s:" if dotall else "")
    suffix = ")$" if anchored else (")" if dotall else "")
    parser = _Parser(prefix + pattern + suffix, pattern, len(prefix))
    try:
        return parser.translate()
    except RecursionError:
        raise GoRegexError("expression nests too deeply for Python's re", pattern, 0) from None


class Template:
    """Go's Regexp.Expand for one replacement template, parsed once: `$1`, `${1}`, `$name`,
    `${name}`; `$$` is a `$`; `$1x` names the group "1x"; an unknown or unmatched group expands
    to ""; a `$` that starts no reference stays as it is."""

    __slots__ = ("parts", "text")

    def __init__(self, template: str, regex: re.Pattern[str]) -> None:
        names: dict[str, tuple[int, ...]] = {}
        for index, name in enumerate(subexp_names(regex)):
            if name:
                names[name] = (*names.get(name, ()), index)
        parts: list[str | int | tuple[int, ...]] = []
        text: list[str] = []
        i, n = 0, len(template)
        while i < n:
            j = template.find("$", i)
            if j < 0:
                text.append(template[i:])
                break
            text.append(template[i:j])
            i = j + 1
            if i < n and template[i] == "$":
                text.append("$")
                i += 1
                continue
            name, end = _reference(template, i)
            if name is None:
                text.append("$")
                continue
            i = end
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_groups_named(name, names, regex.groups))
        if "".join(text):
            parts.append("".join(text))
        self.parts = tuple(parts)
        # Set when the template refers to no group: then every expansion is this text.
        literal = all(type(p) is str for p in parts)
        self.text = "".join(parts) if literal else None  # type: ignore[arg-type]

    def expand(self, m: re.Match[str]) -> str:
        if self.text is not None:
            return self.text
        out = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
            elif type(part) is int:
                out.append(m.group(part) or "")
            else:  # a name used by several groups: the first of them that took part
                out.append(next((t for t in m.group(*part) if t is not None), ""))
        return "".join(out)


def _reference(template: str, i: int) -> tuple[str | None, int]:
    """The group name after a `$` at i-1, and where it ends; None when there is none."""
    brace = i < len(template) and template[i] == "{"
    start = j = i + 1 if brace else i
    while j < len(template) and (template[j] == "_" or template[j].isalpha()
                                 or template[j].isdecimal()):
        j += 1
    if j == start:
        return None, i
    if brace:
        if j >= len(template) or template[j] != "}":
            return None, i
        return template[start:j], j + 1
    return template[start:j], j


def _groups_named(name: str, names: dict[str, tuple[int, ...]],
                  groups: int) -> str | int | tuple[int, ...]:
    """What a reference expands from: a group number, or the groups of that name."""
    # Go reads ASCII digits without a leading zero, up to nine of them, as a number.
    if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0") and len(name) < 10:
        number = int(name)
        return number if number <= groups else ""
    found = names.get(name, ())
    return "" if not found else found[0] if len(found) == 1 else found


# --- character classes as code point ranges ----------------------------------------------------

_PERL = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_POSIX = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
# Python's \B fails on an empty text (until 3.14), Go's matches: spelled out with look-around.
_ASSERTIONS = {"A": "(?:\\A)", "z": "(?:\\Z)", "b": "(?a:\\b)",
               "B": "(?a:(?<=\\w)(?=\\w)|(?<!\\w)(?!\\w))"}
_SIMPLE_ESCAPES = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
_HEX = frozenset("0123456789abcdefABCDEF")
_SPECIAL = frozenset(".^$*+?{}[]\\|()")  # what Python reads as syntax outside a class
_OCTAL = "01234567"
_COUNT = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")
# Go's one-letter categories; "C" is Go's Other, which leaves unassigned code points (Cn) out.
_GROUPS = {"C": ("Cc", "Cf", "Co", "Cs"), "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
           "M": ("Mn", "Mc", "Me"), "N": ("Nd", "Nl", "No"),
           "P": ("Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps"), "S": ("Sc", "Sk", "Sm", "So"),
           "Z": ("Zl", "Zp", "Zs")}


def _normalize(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges) -> Ranges:
    out, lo = [], 0
    for a, b in _normalize(ranges):
        if a > lo:
            out.append((lo, a - 1))
        lo = b + 1
    if lo <= _MAX_RUNE:
        out.append((lo, _MAX_RUNE))
    return out


@functools.cache
def _categories() -> dict[str, Ranges]:
    """Unicode general category → ranges (one pass over the code points, ~0.3 s, on first use)."""
    runs: dict[str, Ranges] = {}
    category, start, previous = unicodedata.category, 0, "Cc"
    for code in range(1, _MAX_RUNE + 1):
        current = category(chr(code))
        if current != previous:
            runs.setdefault(previous, []).append((start, code - 1))
            start, previous = code, current
    runs.setdefault(previous, []).append((start, _MAX_RUNE))
    for name, members in _GROUPS.items():
        runs[name] = _normalize([r for m in members for r in runs.get(m, [])])
    runs["Any"] = [(0, _MAX_RUNE)]
    runs.pop("Cn", None)  # not one of Go's names
    return runs


@functools.cache
def _orbits() -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """Go's simple case-folding orbits: every code point that has other case forms, sorted, and
    its orbit. Python's single-character casefold() (else lower()) gives the same classes."""
    by_key: dict[str, list[int]] = {}
    for code in range(0x41, 0x1E944):  # Go's minFold..maxFold
        ch = chr(code)
        key = ch.casefold()
        if len(key) != 1:
            key = ch.lower() if len(ch.lower()) == 1 else ch
        by_key.setdefault(key, []).append(code)
    orbit = {code: tuple(group) for group in by_key.values() if len(group) > 1
             for code in group}
    return sorted(orbit), orbit


def _fold(ranges: Ranges) -> Ranges:
    """The ranges plus every other case form of what they hold, as Go's (?i) does."""
    folding, orbit = _orbits()
    out = list(ranges)
    for lo, hi in ranges:
        for code in folding[bisect.bisect_left(folding, lo):bisect.bisect_right(folding, hi)]:
            out.extend((c, c) for c in orbit[code])
    return _normalize(out)


def _char(code: int) -> str:
    c = chr(code)
    if c.isascii() and c.isalnum():
        return c
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _class_text(ranges: Ranges) -> str:
    """Python for a set of code points (normalized ranges), the shorter of [...] and [^...]."""
    if not ranges:
        return "(?!)"  # Go allows an empty class, [^\x00-\x{10FFFF}]: it matches nothing
    if ranges == [(0, _MAX_RUNE)]:
        return "(?s:.)"
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _char(ranges[0][0])
    negated = _negate(ranges)
    body = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}"
                   for a, b in (negated if len(negated) < len(ranges) else ranges))
    return f"[^{body}]" if len(negated) < len(ranges) else f"[{body}]"


def _literal(code: int, icase: bool) -> str:
    if icase:
        orbit = _orbits()[1].get(code)
        if orbit is not None:
            return _class_text(_normalize([(c, c) for c in orbit]))
    c = chr(code)
    if c in _SPECIAL:
        return "\\" + c
    return c if c.isprintable() else _char(code)


# --- the parser ----------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over Go's syntax, writing Python as it goes. Each group's text comes
    with its repeat weight: the product of the counts nested in it, which Go caps at 1000."""

    __slots__ = ("src", "pos", "pattern", "offset", "names", "groups")

    def __init__(self, src: str, pattern: str, offset: int) -> None:
        self.src, self.pos = src, 0
        self.pattern, self.offset = pattern, offset  # errors speak of the caller's pattern
        self.names: set[str] = set()
        self.groups = 0

    def error(self, reason: str, at: int | None = None) -> GoRegexError:
        where = (self.pos if at is None else at) - self.offset
        if where < 0:  # the anchoring group, left open by the pattern (`\\` escapes its ")")
            where = len(self.pattern)
        return GoRegexError(reason, self.pattern, min(where, len(self.pattern)))

    def translate(self) -> str:
        text, _ = self.sequence(frozenset(), depth=0)
        return text

    def sequence(self, flags: frozenset[str], depth: int) -> tuple[str, int]:
        """Up to an unmatched ')' or the end. (?i) and the like change `flags` on the way."""
        src = self.src
        out: list[str] = []
        weights: list[int] = []
        top = -1  # the item a repeat would apply to; -1 at the start and after '|'
        top_repeated = False  # it has a repeat already (Go allows (a*)* spelled a*(?i)*)
        last_repeat = -1  # where the repeat just before started; -1: not right after one
        while self.pos < len(src):
            c = src[self.pos]
            if c == ")":
                if depth == 0:
                    raise self.error("unexpected )")
                break
            if c == "|":
                out.append("|")
                weights.append(0)
                self.pos += 1
                top, last_repeat = -1, -1
                continue
            start = self.pos
            repeat = self.repeat_op("U" in flags)
            if repeat is not None:
                op, low, high = repeat
                if last_repeat >= 0:
                    raise self.error("invalid nested repetition operator "
                                     f"`{src[last_repeat:self.pos]}`", last_repeat)
                if top < 0:
                    raise self.error("missing argument to repetition operator "
                                     f"`{src[start:self.pos]}`", start)
                weights[top] = _repeat_weight(low, high, weights[top])
                if weights[top] > MAX_REPEAT:
                    raise self.error(f"invalid repeat count `{src[start:self.pos]}` (counts "
                                     f"multiply through nested repeats; Go allows "
                                     f"{MAX_REPEAT})", start)
                out[top] = f"(?:{out[top]}){op}" if top_repeated else out[top] + op
                top_repeated, last_repeat = True, start
                continue
            last_repeat = -1
            if src.startswith("(?", self.pos) and not self.at_named_group():
                new_flags, opens_group = self.flag_group(flags)
                if not opens_group:
                    flags = new_flags  # (?i): for the rest of this group
                    continue
                inner, weight = self.group_body(new_flags, depth)
                out.append(f"(?:{inner})")
                weights.append(weight)
            elif src.startswith("\\Q", self.pos):
                end = src.find("\\E", self.pos + 2)
                text = src[self.pos + 2:end if end >= 0 else len(src)]
                self.pos = end + 2 if end >= 0 else len(src)
                if not text:
                    continue  # nothing to repeat: a repeat after it applies to what came before
                out.extend(_literal(ord(ch), "i" in flags) for ch in text)
                weights.extend(0 for _ in text)
            else:
                text, weight = self.atom(flags, depth)
                out.append(text)
                weights.append(weight)
            top, top_repeated = len(out) - 1, False
        return "".join(out), max(weights, default=0)

    def at_named_group(self) -> bool:
        src, i = self.src, self.pos
        return src.startswith("(?P<", i) or (src.startswith("(?<", i)
                                             and not src.startswith(("(?<=", "(?<!"), i))

    def group_body(self, flags: frozenset[str], depth: int) -> tuple[str, int]:
        start = self.pos
        if depth >= _MAX_DEPTH:
            raise self.error("expression nests too deeply", start - 1)
        inner, weight = self.sequence(flags, depth + 1)
        if self.pos >= len(self.src):
            raise self.error("missing closing )", start - 1)
        self.pos += 1
        return inner, weight

    def repeat_op(self, ungreedy: bool) -> tuple[str, int, int] | None:
        """A repeat at pos: its Python text, min and max (-1: unbounded); None if not one."""
        src, i = self.src, self.pos
        c = src[i]
        if c in "*+?":
            op, i = c, i + 1
            low, high = (0, -1) if c == "*" else (1, -1) if c == "+" else (0, 1)
        elif c == "{":
            m = _COUNT.match(src, i)
            if m is None:
                return None  # Go reads a '{' that starts no count, like {,2}, as a literal
            lo_text, comma, hi_text = m.groups()
            if any(len(t) > 1 and t[0] == "0" for t in (lo_text, hi_text or "")):
                return None  # Go reads a count with a leading zero as no count: a literal
            low = int(lo_text)
            high = low if not comma else int(hi_text) if hi_text else -1
            if low > MAX_REPEAT or high > MAX_REPEAT or (high >= 0 and high < low):
                raise self.error(f"invalid repeat count `{m.group()}`")
            op, i = m.group(), m.end()
        else:
            return None
        lazy = i < len(src) and src[i] == "?"
        if lazy:
            i += 1
        self.pos = i
        return (op + "?" if lazy != ungreedy else op), low, high

    def flag_group(self, flags: frozenset[str]) -> tuple[frozenset[str], bool]:
        """After '(?': flags up to ')' (no group) or ':' (a non-capturing group)."""
        src, i = self.src, self.pos + 2
        on, clear, saw = set(flags), False, False
        while i < len(src):
            c = src[i]
            if c in "imsU":
                (on.discard if clear else on.add)(c)
                saw = True
            elif c == "-" and not clear:
                clear, saw = True, False
            elif c in ":)" and (saw or not clear):
                self.pos = i + 1
                return frozenset(on), c == ":"
            else:
                break
            i += 1
        end = src.find(")", self.pos)
        text = src[self.pos:end + 1 if end >= 0 else len(src)]
        why = " (RE2 has no look-around)" if src.startswith(("(?=", "(?!", "(?<=", "(?<!"),
                                                            self.pos) else ""
        raise self.error(f"invalid or unsupported Perl syntax `{text}`{why}")

    def atom(self, flags: frozenset[str], depth: int) -> tuple[str, int]:
        src, c = self.src, self.src[self.pos]
        icase = "i" in flags
        if c == "(":
            name = None
            if src.startswith("(?", self.pos):  # a named group: (?P<name> or (?<name>
                start = self.pos + (4 if src[self.pos + 2] == "P" else 3)
                end = src.find(">", start)
                name = src[start:end] if end >= 0 else ""
                if end < 0 or not name or not all(ch == "_" or (ch.isascii() and ch.isalnum())
                                                  for ch in name):
                    raise self.error("invalid named capture "
                                     f"`{src[self.pos:end + 1 if end >= 0 else len(src)]}`")
                self.pos = end + 1
            else:
                self.pos += 1
            self.groups += 1
            number = self.groups
            inner, weight = self.group_body(flags, depth)
            if name is None:
                return f"({inner})", weight
            if not name.isidentifier() or name in self.names:
                name = f"{_MANGLE}{number}_{name}"
            self.names.add(name)
            return f"(?P<{name}>{inner})", weight
        self.pos += 1
        if c == "[":
            self.pos -= 1
            return self.char_class(icase), 0
        if c == ".":
            return ("(?s:.)" if "s" in flags else "[^\\n]"), 0
        if c == "^":
            return ("(?m:^)" if "m" in flags else "(?:^)"), 0
        if c == "$":
            return ("(?m:$)" if "m" in flags else "(?:\\Z)"), 0
        if c != "\\":
            return _literal(ord(c), icase), 0
        self.pos -= 1
        assertion = _ASSERTIONS.get(src[self.pos + 1:self.pos + 2])
        if assertion is not None:
            self.pos += 2
            return assertion, 0
        item = self.escape(icase)
        if isinstance(item, int):
            return _literal(item, icase), 0
        return _class_text(item), 0

    def escape(self, icase: bool) -> int | Ranges:
        """The escape at pos (a backslash): a code point, or the ranges of \\d, \\pL etc."""
        src, at = self.src, self.pos
        if at + 1 >= len(src):
            raise self.error("trailing backslash at end of expression")
        c = src[at + 1]
        self.pos += 2
        if c.lower() in _PERL:
            ranges = _fold(_PERL[c.lower()]) if icase else _PERL[c.lower()]
            return _negate(ranges) if c.isupper() else ranges
        if c in "pP":
            return self.unicode_class(c == "P", icase, at)
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c in _OCTAL:
            digits = c
            while len(digits) < 3 and self.pos < len(src) and src[self.pos] in _OCTAL:
                digits += src[self.pos]
                self.pos += 1
            if c != "0" and len(digits) == 1:
                raise self.error(f"invalid escape sequence `\\{c}` (backreferences are not "
                                 "supported)", at)
            return int(digits, 8)
        if c == "x":
            if src.startswith("{", self.pos):
                end = src.find("}", self.pos)
                digits = src[self.pos + 1:end] if end > 0 else ""
                if not digits or not set(digits) <= _HEX or int(digits, 16) > _MAX_RUNE:
                    text = src[at:end + 1 if end > 0 else len(src)]
                    raise self.error(f"invalid escape sequence `{text}`", at)
                self.pos = end + 1
                return int(digits, 16)
            digits = src[self.pos:self.pos + 2]
            if len(digits) < 2 or not set(digits) <= _HEX:
                raise self.error(f"invalid escape sequence `{src[at:self.pos + 2]}`", at)
            self.pos += 2
            return int(digits, 16)
        if c.isascii() and not c.isalnum():
            return ord(c)  # escaped punctuation is itself
        raise self.error(f"invalid escape sequence `\\{c}`", at)

    def unicode_class(self, negated: bool, icase: bool, at: int) -> Ranges:
        src = self.src
        if src.startswith("{", self.pos):
            end = src.find("}", self.pos)
            if end < 0:
                raise self.error(f"invalid character class range `{src[at:]}`", at)
            name, self.pos = src[self.pos + 1:end], end + 1
        elif self.pos < len(src):
            name, self.pos = src[self.pos], self.pos + 1
        else:
            raise self.error("invalid character class range `\\p`", at)
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        ranges = _categories().get(name)
        if ranges is None:
            raise self.error(f"invalid or unsupported Unicode class `{src[at:self.pos]}` "
                             "(general categories such as \\pL, \\p{Lu}, \\p{Nd} and \\p{Any} "
                             "work; scripts such as \\p{Greek} do not)", at)
        if icase:
            ranges = _fold(ranges)
        return _negate(ranges) if negated else ranges

    def char_class(self, icase: bool) -> str:
        src, start = self.src, self.pos
        self.pos += 1
        negated = src.startswith("^", self.pos)
        if negated:
            self.pos += 1
        ranges: Ranges = []
        first = True
        while True:
            if self.pos >= len(src):
                raise self.error("missing closing ]", start)
            c = src[self.pos]
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            if src.startswith("[:", self.pos):
                end = src.find(":]", self.pos + 2)
                if end >= 0:
                    name = src[self.pos + 2:end]
                    posix = _POSIX.get(name.removeprefix("^"))
                    if posix is None:
                        raise self.error(f"invalid character class range `[:{name}:]`")
                    posix = _fold(posix) if icase else posix
                    ranges.extend(_negate(posix) if name.startswith("^") else posix)
                    self.pos = end + 2
                    continue
            item_at = self.pos
            lo = self.class_char(icase)
            if not isinstance(lo, int):
                ranges.extend(lo)
                continue
            if src.startswith("-", self.pos) and not src.startswith("-]", self.pos):
                self.pos += 1
                if self.pos >= len(src):
                    raise self.error("missing closing ]", start)
                hi = self.class_char(icase)
                if not isinstance(hi, int) or hi < lo:
                    raise self.error("invalid character class range "
                                     f"`{src[item_at:self.pos]}`", item_at)
                item = [(lo, hi)]
            else:
                item = [(lo, lo)]
            ranges.extend(_fold(item) if icase else item)
        # Go folds each item, then negates the whole class.
        ranges = _normalize(ranges)
        return _class_text(_negate(ranges) if negated else ranges)

    def class_char(self, icase: bool) -> int | Ranges:
        c = self.src[self.pos]
        if c == "\\":
            return self.escape(icase)
        self.pos += 1
        return ord(c)


def _repeat_weight(low: int, high: int, inner: int) -> int:
    """Go's repeatIsValid, as a number: the smallest limit the repeat and its insides pass."""
    count = high if high >= 0 else low
    if high == 0:
        return 0
    if count == 0:
        return inner
    return count * max(1, inner)
