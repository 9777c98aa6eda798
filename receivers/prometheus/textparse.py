"""Parsers for the Prometheus text format (0.0.4 / 1.0.0) and OpenMetrics 1.0 text.

They accept and reject what Prometheus 3.x's model/textparse accepts and rejects (the generation
the Collector's prometheus receiver embeds), and group samples into metric families:

* Text format: tokens may be separated by any run of spaces and tabs; `# HELP`/`# TYPE` lines,
  other `#` lines are comments; blank lines are allowed; timestamps are integer milliseconds;
  label pairs may be followed by a comma (even the last; even none between pairs, as
  Prometheus's lexer allows); a label value may span lines (a raw newline inside the quotes);
  indentation before a metric name stays part of the name (Prometheus 3 quirk: "  m 1" is the
  series "  m"; 2.x fails such a scrape on the invalid name).
* OpenMetrics: single spaces only, no blank lines or comments, `# UNIT`, timestamps in (float)
  seconds, exemplars (`# {labels} value [timestamp]`) after any sample (Prometheus does not
  restrict them to counters and buckets), a trailing comma in a label set (3.x; 2.x rejects
  it), and a final `# EOF`.
* Both: UTF-8 names in quotes (`{"my.metric", "my.label"="v"}`, `# TYPE "my.metric" gauge`),
  as Prometheus 3 parses them; escapes `\\`, `\"` and `\n` in label values (HELP text in the text
  format knows only `\\` and `\n`); values as Go's strconv.ParseFloat reads them (NaN, ±Inf, no
  hex, no `_`, out-of-range is an error); invalid UTF-8 anywhere but a text-format comment is an
  error; duplicate label names are an error (Prometheus fails such a scrape).
* Like Prometheus 3, the `le` label of histogram buckets and the `quantile` label of summaries
  are rewritten in canonical float form (`le="1"` → `le="1.0"`), so relabeling rules written for
  Prometheus 3 match.

Prometheus does not group samples; the receiver needs families to build OTLP metrics, so
a sample joins the family declared (by `# TYPE`, or `# HELP`) under its name or under its name
less a suffix the family's type allows (`_bucket`, `_sum`, `_count`, `_created`, `_total`,
`_gsum`, `_gcount`, `_info`); any other sample is its own "unknown" family. A declared family
with no samples is returned too (with an empty sample list).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# Prometheus 3's default scrape Accept header (scrape.acceptHeader over
# config.DefaultScrapeProtocols): every format listed is one this module parses.
ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,"
    "*/*;q=0.2"
)


class ParseError(ValueError):
    """The body is not valid exposition text. The message starts with the line number."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


@dataclass(slots=True)
class Exemplar:
    labels: dict[str, str]
    value: float
    timestamp: float | None = None  # seconds, as written


@dataclass(slots=True)
class Sample:
    name: str  # full sample name, e.g. "rpc_seconds_bucket"
    labels: dict[str, str]  # without __name__
    value: float
    timestamp_ms: int | None = None
    exemplar: Exemplar | None = None


@dataclass(slots=True)
class MetricFamily:
    name: str  # OpenMetrics counters without "_total"; text format as in "# TYPE"
    type: str  # counter gauge histogram gaugehistogram summary info stateset unknown
    help: str = ""
    unit: str = ""
    samples: list[Sample] = field(default_factory=list)


def parse(body: bytes, content_type: str = "") -> list[MetricFamily]:
    """Parse a scrape body; OpenMetrics when the media type says so, else the text format.

    Raises ParseError on the first invalid line, as Prometheus fails the whole scrape."""
    om = content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"
    text, bad_lines = _decode(body)
    return _Parser(text, om, bad_lines).run()


# --- tokens -------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# The common spellings of a value; anything else takes the careful path.
_FAST_FLOAT = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|Inf)|NaN"
_OM_TS = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?"
_PAIRS = rf'(?:{_LNAME}="[^"\\\n]*"(?:,{_LNAME}="[^"\\\n]*")*,?)?'

# The shape of nearly every sample line, without escapes, quotes in names or odd spacing.
_TEXT_FAST = re.compile(
    rf'({_NAME})(?:\{{({_PAIRS})\}})?[ \t]+({_FAST_FLOAT})(?:[ \t]+([0-9]{{1,18}}))?[ \t]*'
).fullmatch
_OM_FAST = re.compile(
    rf'({_NAME})(?:\{{({_PAIRS})\}})? ({_FAST_FLOAT})(?: ({_OM_TS}))?'
    rf'(?: # \{{({_PAIRS})\}} ({_FAST_FLOAT})(?: ({_OM_TS}))?)?'
).fullmatch
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"').findall

_NAME_AT = re.compile(_NAME).match
_LNAME_AT = re.compile(_LNAME).match
_QUOTED_TEXT = re.compile(r'"((?:\\.|[^\\"])*)"').match  # text format: raw newlines allowed
_QUOTED_OM = re.compile(r'"((?:\\.|[^\\"\n])*)"').match
_TEXT_VALUE = re.compile(r"[^{ \t\n]+").match
_OM_TOKEN = re.compile(r" ([^ \n]+)").match
_DIGITS = re.compile(r"[0-9]+").match
_WS = re.compile(r"[ \t]*").match
_META_START = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+").match
_TEXT_META = re.compile(rf"#[ \t]+(HELP|TYPE)[ \t]+({_NAME})(.*)").fullmatch

_GO_FLOAT = re.compile(
    r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|(?i:inf|infinity))|(?i:nan)"
).fullmatch
_INF = float("inf")
_INT64_MAX = 2**63 - 1

_ESCAPE = re.compile(r'\\([\\"n])')
_HELP_ESCAPE = re.compile(r"\\([\\n])")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}

_TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
               "summary": "summary", "untyped": "unknown"}
_OM_TYPES = frozenset(("counter", "gauge", "histogram", "gaugehistogram", "summary", "info",
                       "stateset", "unknown"))

# Which sample names (family name + suffix) belong to a family of each type.
_SUFFIXES = {
    "counter": ("_total", "_created", ""),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
_ALL_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total", "_gcount", "_gsum", "_info")
# Prometheus 3 rewrites these label values in canonical float form (textparse's
# normalizeFloatsInLabelValues); gauge histograms keep theirs.
_FLOAT_LABEL = {"histogram": "le", "summary": "quantile"}


def parse_go_float(token: str) -> float | None:
    """A float as Go's strconv.ParseFloat reads it (decimal, Inf/Infinity/NaN in any case, no
    hex, no `_`), or None where Prometheus rejects the value (including out of range)."""
    if _GO_FLOAT(token) is None:
        return None
    value = float(token)
    if (value == _INF or value == -_INF) and token[-1] not in "fFyY":
        return None  # "1e999": ParseFloat returns ErrRange, Prometheus fails the line
    return value


def format_om_float(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, 64) with ".0" added to integers, as Prometheus's
    labels.FormatOpenMetricsFloat writes le/quantile values (1 → "1.0", 1e6 → "1e+06")."""
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + (int(exp) if exp else 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    exponent = point - 1
    if exponent < -4 or exponent >= 6:  # Go's shortest 'g' switches to %e from 1e+06 up
        tail = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{tail}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return sign + (text if "." in text else text + ".0")


def _split_pairs(body: str) -> dict[str, str] | None:
    """`a="1",b="2"` as a dict, or None on a duplicate name (or `__name__`).

    Only for a body the fast regex took: its values hold no quote, so `="` and `",` occur
    exactly between a name and its value and between pairs (faster than a findall)."""
    parts = body[:-1].replace('",', '="').split('="')
    it = iter(parts)
    labels = dict(zip(it, it))
    if len(labels) * 2 != len(parts) or "__name__" in labels:
        return None
    return labels


def _unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], value) if "\\" in value else value


def _decode(body: bytes) -> tuple[str, frozenset[int]]:
    """The body as text, and the numbers of the lines holding invalid UTF-8 (if any)."""
    try:
        return body.decode("utf-8"), frozenset()
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8", "surrogateescape")
    bad = set()
    for number, line in enumerate(text.split("\n"), 1):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            bad.add(number)
    return text, frozenset(bad)


class _LineError(Exception):
    """A problem in the current line; the parser adds the line number."""


class _Unterminated(_LineError):
    """A quoted string that never closes: reported at the line where it opened."""


# --- the parser ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, om: bool, bad_lines: frozenset[int]) -> None:
        self.lines = text.split("\n")
        self.om = om
        self.bad_lines = bad_lines
        self.families: list[MetricFamily] = []
        self.declared: dict[str, MetricFamily] = {}  # by family name
        self.strays: dict[str, MetricFamily] = {}  # undeclared sample names
        # sample name → (family, label to normalize); names repeat, resolve each once
        self.by_sample: dict[str, tuple[MetricFamily, str | None]] = {}
        self.float_labels: dict[str, str] = {}
        self.heads: dict[str, dict[str, str]] = {}
        self.lineno = 0

    def run(self) -> list[MetricFamily]:
        try:
            if self.om:
                self._run_om()
            else:
                self._run_text()
        except _LineError as exc:
            raise ParseError(self.lineno, str(exc)) from None
        return self.families

    # The two loops are the hot path: one fullmatch per common line, no calls beyond it.

    def _run_text(self) -> None:
        lines, fast, pairs, by_sample = self.lines, _TEXT_FAST, _PAIR, self.by_sample
        meta, bad, split = _TEXT_META, self.bad_lines, self._split
        index, count = 0, len(lines)
        while index < count:
            line = lines[index]
            index += 1
            m = fast(line)
            if m is not None and (not bad or index not in bad):
                name, body, value, ts = m.groups()
                if body:
                    labels = split(body)
                    if labels is None:
                        self.lineno = index
                        found = pairs(body)
                        self._duplicate(name, found)
                        labels = dict(found)  # no duplicate: a value split() cannot cut
                else:
                    labels = {}
                entry = by_sample.get(name) or self._resolve(name)
                if entry[1] is not None:
                    self._normalize(labels, entry[1])
                v = float(value)
                if v == _INF or v == -_INF:
                    if value[-1] != "f":
                        raise ParseError(index, f'value {value} for metric "{name}" is out '
                                                f'of range')
                entry[0].samples.append(Sample(name, labels, v, int(ts) if ts else None))
                continue
            self.lineno = index
            m = meta(line)
            if m is not None and (not bad or index not in bad):
                self._text_meta(*m.groups())
                continue
            stripped = line.lstrip(" \t")
            if not stripped:
                continue
            if stripped[0] == "#":
                m = _META_START(stripped)
                if m is None:
                    continue  # a comment
                if index in bad:
                    raise _LineError("invalid UTF-8")
                name, pos = self._meta_name(stripped, m.end(), quoted=_QUOTED_TEXT)
                self._text_meta(m.group(1), name, stripped[pos:])
                continue
            if stripped[0] == "\0":
                return  # Prometheus's lexer reads a NUL at the start of a line as the end
            if index in bad:
                raise _LineError("invalid UTF-8")
            more = self._more_lines(index)
            try:
                name, labels, value, ts = self._slow_text(line, more)
            except _Unterminated:
                self.lineno = index
                raise
            index = self.lineno  # a label value may have spanned lines
            self._add(name, labels, value, ts, None)

    def _run_om(self) -> None:
        lines, fast, pairs, by_sample = self.lines, _OM_FAST, _PAIR, self.by_sample
        split = self._split
        if self.bad_lines:
            self.lineno = min(self.bad_lines)
            raise _LineError("invalid UTF-8")
        count = len(lines)
        if count and lines[-1] == "":
            count -= 1  # the final newline
        for index in range(1, count + 1):
            line = lines[index - 1]
            m = fast(line)
            if m is not None:
                name, body, value, ts, ebody, evalue, ets = m.groups()
                if body:
                    labels = split(body)
                    if labels is None:
                        self.lineno = index
                        found = pairs(body)
                        self._duplicate(name, found)
                        labels = dict(found)  # no duplicate: a value split() cannot cut
                else:
                    labels = {}
                entry = by_sample.get(name) or self._resolve(name)
                if entry[1] is not None:
                    self._normalize(labels, entry[1])
                v = float(value)
                if v == _INF or v == -_INF:
                    if value[-1] != "f":
                        raise ParseError(index, f'value {value} for metric "{name}" is out '
                                                f'of range')
                ts_ms = self._om_ms(ts, index) if ts is not None else None
                exemplar = None
                if evalue is not None:
                    self.lineno = index
                    exemplar = self._exemplar(dict(pairs(ebody)) if ebody else {},
                                              evalue, ets)
                entry[0].samples.append(Sample(name, labels, v, ts_ms, exemplar))
                continue
            self.lineno = index
            if line == "# EOF":
                if index != count or len(lines) > count + 1:
                    self.lineno = index + 1
                    raise _LineError('unexpected data after "# EOF"')
                return
            if line[:2] == "# ":
                self._om_meta(line)
                continue
            self._add(*self._slow_om(line))
        self.lineno = count + (len(lines) > count)
        raise _LineError('OpenMetrics data does not end with "# EOF"')

    def _split(self, body: str) -> dict[str, str] | None:
        """The labels of a body the fast regex took, or None on a duplicate name or a body it
        cannot cut (the caller takes the slow path).

        Series of one histogram or summary differ only in their last label (le, quantile):
        the pairs before it are split once and copied after that."""
        if '=",' in body:
            return None  # a value starting with a comma: `",` is no longer only between pairs
        if body[-1] == ",":
            body = body[:-1]
        cut = body.rfind('",')
        if cut < 0:
            name, _, value = body[:-1].partition('="')
            return None if name == "__name__" else {name: value}
        head = body[:cut + 1]
        labels = self.heads.get(head)
        if labels is None:
            labels = _split_pairs(head)
            if labels is None:
                return None
            if len(self.heads) >= 4096:
                self.heads.clear()
            self.heads[head] = labels
        name, _, value = body[cut + 2:-1].partition('="')
        if name in labels or name == "__name__":
            return None
        labels = labels.copy()
        labels[name] = value
        return labels

    def _more_lines(self, index: int) -> Callable[[], str | None]:
        """Hands the slow path the next line when a label value goes on past a newline."""
        def more() -> str | None:
            if self.lineno >= len(self.lines):
                return None
            self.lineno += 1
            if self.lineno in self.bad_lines:
                raise _LineError("invalid UTF-8")
            return self.lines[self.lineno - 1]
        self.lineno = index
        return more

    # --- families ---------------------------------------------------------------------

    def _family(self, name: str) -> MetricFamily:
        family = self.declared.get(name)
        if family is None:
            family = self.strays.pop(name, None)  # samples came before the TYPE line
            if family is None:
                family = MetricFamily(name, "unknown")
                self.families.append(family)
            self.declared[name] = family
            self.by_sample.clear()  # a new declaration can claim names resolved before
        return family

    def _resolve(self, name: str) -> tuple[MetricFamily, str | None]:
        declared = self.declared
        family = declared.get(name)
        if family is None or "" not in _SUFFIXES[family.type]:
            family = None
            for suffix in _ALL_SUFFIXES:
                if name.endswith(suffix):
                    owner = declared.get(name[: -len(suffix)])
                    if owner is not None and suffix in _SUFFIXES[owner.type]:
                        family = owner
                        break
            if family is None and name.endswith("_created"):
                # the text format names counters with "_total"; their _created goes with them
                owner = declared.get(name[:-8] + "_total")
                if owner is not None and owner.type == "counter":
                    family = owner
        if family is None:
            family = self.strays.get(name)
            if family is None:
                family = self.strays[name] = MetricFamily(name, "unknown")
                self.families.append(family)
        label = _FLOAT_LABEL.get(family.type)
        entry = (family, label)
        self.by_sample[name] = entry
        return entry

    def _normalize(self, labels: dict[str, str], label: str) -> None:
        raw = labels.get(label)
        if raw is None:
            return
        canonical = self.float_labels.get(raw)
        if canonical is None:
            value = parse_go_float(raw)
            canonical = raw if value is None else format_om_float(value)
            if len(self.float_labels) < 10_000:
                self.float_labels[raw] = canonical
        labels[label] = canonical

    def _add(self, name: str, labels: dict[str, str], value: float, ts_ms: int | None,
             exemplar: Exemplar | None) -> None:
        entry = self.by_sample.get(name) or self._resolve(name)
        if entry[1] is not None:
            self._normalize(labels, entry[1])
        entry[0].samples.append(Sample(name, labels, value, ts_ms, exemplar))

    # --- metadata -----------------------------------------------------------------------

    def _text_meta(self, kind: str, name: str, rest: str) -> None:
        # Prometheus's lexer drops the one character after the name; blank text is empty.
        text = rest[1:] if rest.strip(" \t") else ""
        if kind == "TYPE":
            mtype = _TEXT_TYPES.get(text)
            if mtype is None:
                raise _LineError(f'invalid metric type "{text}"')
            self._family(name).type = mtype
        else:
            if "\\" in text:
                text = _HELP_ESCAPE.sub(lambda e: _UNESCAPED[e.group(1)], text)
            self._family(name).help = text

    def _om_meta(self, line: str) -> None:
        kind = line[2:7]
        if kind not in ("HELP ", "TYPE ", "UNIT "):
            raise _LineError('expected "# HELP", "# TYPE", "# UNIT" or "# EOF" (OpenMetrics '
                             f"has no other comments), got {line!r}")
        name, pos = self._meta_name(line, 7, quoted=_QUOTED_OM)
        if pos == len(line) or line[pos] != " ":
            raise _LineError(f"expected a space and text after the name in {kind.strip()}")
        text = line[pos + 1:]
        if kind == "TYPE ":
            if text not in _OM_TYPES:
                raise _LineError(f'invalid metric type "{text}"')
            self._family(name).type = text
        elif kind == "HELP ":
            self._family(name).help = _unescape(text)
        else:
            if text and not (name.endswith("_" + text)):
                raise _LineError(f'unit "{text}" is not a suffix of metric "{name}"')
            self._family(name).unit = text

    def _meta_name(self, line: str, pos: int, quoted: Callable) -> tuple[str, int]:
        m = _NAME_AT(line, pos)
        if m is not None:
            return m.group(), m.end()
        m = quoted(line, pos)
        if m is None:
            raise _LineError(f"expected a metric name after the keyword, got {line[pos:]!r}")
        name = _unescape(m.group(1))
        if not name:
            raise _LineError("empty metric name")
        return name, m.end()

    # --- careful paths ------------------------------------------------------------------

    def _slow_text(self, line: str, more: Callable[[], str | None]
                   ) -> tuple[str, dict[str, str], float, int | None]:
        scan = _Scanner(line, om=False, more=more)
        # Prometheus 3 takes the metric name from the start of the line, so indentation
        # becomes part of it ("  m 1" is the series "  m", valid as a UTF-8 name).
        indent = scan.match(_WS) or ""
        name, labels = scan.series()
        if indent and scan.line[len(indent)] != "{":
            name = indent + name
        scan.skip_ws()
        token = scan.match(_TEXT_VALUE)
        if token is None:
            raise _LineError(f'expected a value after metric "{name}", got '
                             f"{scan.rest()!r}")
        value = _value(token, name)
        scan.skip_ws()
        ts = None
        if not scan.at_end():
            digits = scan.match(_DIGITS)
            if digits is None:
                raise _LineError(f'expected a timestamp (integer milliseconds) or the end of '
                                 f'the line after the value of "{name}", got {scan.rest()!r}')
            ts = int(digits)
            if ts > _INT64_MAX:
                raise _LineError(f'timestamp {digits} of metric "{name}" is out of range')
            scan.skip_ws()
            if not scan.at_end():
                raise _LineError(f'expected the end of the line after the timestamp of '
                                 f'"{name}", got {scan.rest()!r}')
        return name, labels, value, ts

    def _slow_om(self, line: str
                 ) -> tuple[str, dict[str, str], float, int | None, Exemplar | None]:
        scan = _Scanner(line, om=True, more=None)
        name, labels = scan.series()
        token = scan.match(_OM_TOKEN)
        if token is None:
            raise _LineError(f'expected a space and a value after metric "{name}", got '
                             f"{scan.rest()!r}")
        value = _value(token[1:], name)
        ts_ms = exemplar = None
        if scan.startswith(" # {"):
            exemplar = self._slow_exemplar(scan)
        elif not scan.at_end():
            token = scan.match(_OM_TOKEN)
            if token is None:
                raise _LineError(f'expected a timestamp, an exemplar or the end of the line '
                                 f'after the value of "{name}", got {scan.rest()!r}')
            ts_ms = self._om_ms(token[1:], self.lineno)
            if scan.startswith(" # {"):
                exemplar = self._slow_exemplar(scan)
            elif not scan.at_end():
                raise _LineError(f'expected an exemplar or the end of the line after the '
                                 f'timestamp of "{name}", got {scan.rest()!r}')
        return name, labels, value, ts_ms, exemplar

    def _slow_exemplar(self, scan: _Scanner) -> Exemplar:
        scan.pos += 4
        labels = scan.labels(exemplar=True)
        value = scan.match(_OM_TOKEN)
        if value is None:
            raise _LineError(f"expected a space and the exemplar value, got {scan.rest()!r}")
        ts = None
        if not scan.at_end():
            ts = scan.match(_OM_TOKEN)
            if ts is None or not scan.at_end():
                raise _LineError(f"expected the exemplar timestamp and the end of the line, "
                                 f"got {scan.rest()!r}")
            ts = ts[1:]
        return self._exemplar(labels, value[1:], ts)

    def _exemplar(self, labels: dict[str, str], value: str, ts: str | None) -> Exemplar:
        seconds = None
        if ts is not None:
            seconds = parse_go_float(ts)
            if seconds is None or seconds != seconds or seconds in (_INF, -_INF):
                raise _LineError(f'invalid exemplar timestamp "{ts}"')
        v = parse_go_float(value)
        if v is None:
            raise _LineError(f'invalid exemplar value "{value}"')
        return Exemplar(labels, v, seconds)

    @staticmethod
    def _om_ms(token: str, lineno: int) -> int:
        seconds = parse_go_float(token)
        if seconds is None or seconds != seconds or seconds in (_INF, -_INF):
            raise ParseError(lineno, f'invalid timestamp "{token}"')
        ms = int(seconds * 1000)  # truncated like Go's int64(ts * 1000)
        if not -_INT64_MAX - 1 <= ms <= _INT64_MAX:
            raise ParseError(lineno, f'timestamp "{token}" is out of range')
        return ms

    @staticmethod
    def _duplicate(name: str, found: list[tuple[str, str]]) -> None:
        seen = {"__name__"}
        for label, _ in found:
            if label in seen:
                raise _LineError(f'label name "{label}" is not unique in metric "{name}"')
            seen.add(label)


def _value(token: str, name: str) -> float:
    value = parse_go_float(token)
    if value is None:
        raise _LineError(f'invalid value "{token}" for metric "{name}"')
    return value


class _Scanner:
    """Walks one sample line the way Prometheus's lexer does, for the lines the fast regex
    does not take (escapes, quoted names, odd spacing, errors)."""

    __slots__ = ("line", "pos", "om", "more", "quoted", "name")

    def __init__(self, line: str, om: bool, more: Callable[[], str | None] | None) -> None:
        self.line, self.pos, self.om, self.more = line, 0, om, more
        self.quoted = _QUOTED_OM if om else _QUOTED_TEXT
        self.name: str | None = None

    def at_end(self) -> bool:
        return self.pos >= len(self.line)

    def rest(self) -> str:
        return self.line[self.pos:self.pos + 40]

    def startswith(self, text: str) -> bool:
        return self.line.startswith(text, self.pos)

    def peek(self) -> str:
        return self.line[self.pos:self.pos + 1]

    def skip_ws(self) -> None:
        if not self.om:
            self.pos = _WS(self.line, self.pos).end()

    def match(self, pattern: Callable) -> str | None:
        m = pattern(self.line, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def string(self) -> str:
        """A quoted string at pos, unescaped; in the text format it may go on past a newline."""
        while True:
            m = self.quoted(self.line, self.pos)
            if m is not None:
                self.pos = m.end()
                value = m.group(1)
                return _unescape(value)
            nxt = self.more() if self.more is not None and _open_quote(self.line,
                                                                      self.pos) else None
            if nxt is None:
                raise _Unterminated(f"unterminated quoted string {self.rest()!r}")
            self.line += "\n" + nxt

    def series(self) -> tuple[str, dict[str, str]]:
        """The metric name and labels: `name`, `name{...}` or `{"name", ...}`."""
        self.name = self.match(_NAME_AT)
        if self.name is None and self.peek() != "{":
            raise _LineError(f"expected a metric name or '{{', got {self.rest()!r}")
        if self.name is not None:
            self.skip_ws()
            if self.peek() != "{":
                return self.name, {}
        self.pos += 1
        labels = self.labels(exemplar=False)
        if self.name is None:
            raise _LineError("metric name not set (no name before '{' nor quoted inside)")
        return self.name, labels

    def labels(self, exemplar: bool) -> dict[str, str]:
        """Label pairs after '{' up to and including '}'."""
        labels: dict[str, str] = {}
        where = "exemplar" if exemplar else f'metric "{self.name}"' if self.name else "metric"
        while True:
            self.skip_ws()
            c = self.peek()
            if c == "}":
                self.pos += 1
                return labels
            if c == '"':
                label = self.string()
                quoted = True
            else:
                label = self.match(_LNAME_AT)
                quoted = False
                if label is None:
                    raise _LineError(f"expected a label name in the {where}, got "
                                     f"{self.rest()!r}")
            self.skip_ws()
            c = self.peek()
            if quoted and c in (",", "}") and not exemplar:
                if self.name is not None:
                    raise _LineError(f'metric name already set while parsing "{label}"')
                if not label:
                    raise _LineError("empty metric name")
                self.name = label
                if c == ",":
                    self.pos += 1
                continue
            if c != "=":
                raise _LineError(f'expected "=" after label name "{label}", got '
                                 f"{self.rest()!r}")
            self.pos += 1
            self.skip_ws()
            if self.peek() != '"':
                raise _LineError(f'expected a quoted value for label "{label}", got '
                                 f"{self.rest()!r}")
            value = self.string()
            if not label:
                raise _LineError("empty label name")
            if not exemplar and (label in labels or label == "__name__"):
                raise _LineError(f'label name "{label}" is not unique in the {where}')
            labels[label] = value
            self.skip_ws()
            c = self.peek()
            if c == ",":
                self.pos += 1
            elif self.om and c != "}":
                raise _LineError(f"expected ',' or '}}' after the value of label "
                                 f'"{label}", got {self.rest()!r}')


_QUOTE_START = re.compile(r'"(?:\\.|[^\\"])*').match


def _open_quote(line: str, pos: int) -> bool:
    """True when the quoted string at pos runs to the end of the line without closing."""
    m = _QUOTE_START(line, pos)
    return m is not None and m.end() == len(line)
