"""SQL that turns OTLP AnyValues, as ClickHouse reads them from the request, into the strings the
contrib exporter (v0.129.0) writes into Map(LowCardinality(String), String) columns, i.e. pdata's
`Value.AsString()`:

    string → as is            int → decimal               bool → true / false
    double → Go's float64AsString: shortest round-trip digits, exponent form below 1e-6 and from
             1e21 on (`1e+21`, `1e-7`); NaN / ±Inf → "json: unsupported value: NaN" / "+Inf" / "-Inf"
    bytes  → standard base64  array / kvlist → Go `json.Marshal` of the raw value: keys sorted, a
             repeated key's last value wins, strings escaped as Go does (`<>&` as \\u003c…,
             U+2028/9, lowercase \\u00xx, `/` not escaped), bytes as base64 strings (empty bytes →
             null), NaN/Inf anywhere inside → "" (Marshal fails)
    empty  → "" (also string_value_strindex, which pdata v1.35 does not know: it reads as Empty)

Maps are written with their keys sorted, as clickhouse-go's ordered map sends them.
`tests/oracle.py` holds the same rules in plain Python; the two are compared field by field
(tests/exporters/clickhouse/test_values.py).

Deviations from the Go exporter, kept minimal and reproduced by the oracle:
- Values nested deeper than protoschema.ANY_VALUE_DEPTH levels reach SQL as the raw protobuf bytes
  of the inner array/kvlist and are rendered as a JSON string holding their base64: a documented
  normalization that keeps the data instead of dropping it (Go renders them as JSON; a NaN inside
  them is not seen, so the rendering is not "").
- Invalid UTF-8 never reaches this SQL: the receivers parse each request with upb, which refuses
  a proto3 string that is not UTF-8, so the whole request is rejected. The Go collector accepts it
  and json.Marshal writes each bad byte as \\ufffd; toJSONString would pass the bytes through, so
  this SQL does not emulate that case.
"""

from __future__ import annotations

from exporters.clickhouse.protoschema import ANY_VALUE_DEPTH

ONEOF = ("Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, "
         "'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7, "
         "'string_value_strindex' = 8)")
# Marks a NaN/Inf inside a JSON rendering, so the whole rendering becomes "" as in Go.
NAN_MARK = "\\0otelgw:nan\\0"


def any_value_type(level: int = 0) -> str:
    if level + 1 >= ANY_VALUE_DEPTH:
        nested_array = nested_kvlist = "String"
    else:
        inner = any_value_type(level + 1)
        nested_array = f"Tuple(values Array({inner}))"
        nested_kvlist = f"Tuple(values Array(Tuple(key String, value {inner})))"
    return (f"Tuple(value {ONEOF}, string_value String, bool_value Bool, int_value Int64, "
            f"double_value Float64, bytes_value String, array_value {nested_array}, "
            f"kvlist_value {nested_kvlist})")


def attributes_type(level: int = 0) -> str:
    return f"Array(Tuple(key String, value {any_value_type(level)}))"


def _go_finite(x: str) -> str:
    """Go's float64AsString of a finite float, from ClickHouse's shortest round-trip repr (same
    cut-offs)."""
    return f"if(abs({x}) >= 1e21, replaceOne(toString({x}), 'e', 'e+'), toString({x}))"


def go_float(x: str) -> str:
    """Go's float64AsString, NaN and ±Inf included."""
    return (f"if(isFinite({x}), {_go_finite(x)}, if(isNaN({x}), 'json: unsupported value: NaN', "
            f"if({x} > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf')))")


def _lit(s: str) -> str:
    """A ClickHouse string literal holding exactly `s`."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0") + "'"


_ESCAPED_BACKSLASH, _NUL = _lit("\\\\"), _lit("\0")

# Where ClickHouse's toJSONString differs from Go's encoding/json: it writes `/` as `\/` (setting
# output_format_json_escape_forward_slashes, on by default; when off there is nothing to undo),
# control characters without a short escape as \u00XX with uppercase hex (Go: lowercase), and
# leaves `<>&` as they are (json.Marshal escapes them). Both escape U+2028/U+2029 and write
# \b \f \n \r \t (Go >= 1.22).
_JSON_FIXES = [("\\/", "/"),
               *[(f"\\u00{c:02X}", f"\\u00{c:02x}") for c in range(0x20)
                 if c not in (0x08, 0x09, 0x0A, 0x0C, 0x0D) and not f"{c:02x}".isdigit()],
               ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")]


def json_string(s: str) -> str:
    """Go encoding/json string (json.Marshal, HTML-safe) of the String expression `s`."""
    # An escaped backslash `\\` is hidden behind NUL first (toJSONString writes NUL as \u0000, so
    # no raw NUL is left): every backslash still there starts an escape sequence, and the fixes
    # cannot match across one (user text `\u000B` is `\\u000B` here and must stay so).
    expr = f"replaceAll(toJSONString({s}), {_ESCAPED_BACKSLASH}, {_NUL})"
    for ch, go in _JSON_FIXES:
        expr = f"replaceAll({expr}, {_lit(ch)}, {_lit(go)})"
    return f"replaceAll({expr}, {_NUL}, {_ESCAPED_BACKSLASH})"


def _raw_nested(v: str, field: str) -> str:
    return f"concat('\"', base64Encode({v}.{field}), '\"')"


def _nested(v: str, level: int) -> str:
    """The rendering of the array or kvlist AnyValue `v` (of `level`), whichever it holds."""
    if level + 1 >= ANY_VALUE_DEPTH:
        return (f"if({v}.value = 'array_value', {_raw_nested(v, 'array_value')}, "
                f"{_raw_nested(v, 'kvlist_value')})")
    return _json_nested(v, level + 1)


def _json_value(v: str, level: int) -> str:
    """One AnyValue as a JSON value (inside an array or kvlist rendering)."""
    d = f"{v}.double_value"
    return (f"multiIf({v}.value = 'string_value', {json_string(f'{v}.string_value')}, "
            f"{v}.value = 'int_value', toString({v}.int_value), "
            f"{v}.value = 'double_value', if(isFinite({d}), {_go_finite(d)}, '{NAN_MARK}'), "
            f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
            f"{v}.value = 'bytes_value', if(empty({v}.bytes_value), 'null', "
            f"concat('\"', base64Encode({v}.bytes_value), '\"')), "
            f"{_is_nested(v)}, {_nested(v, level)}, 'null')")


def _is_nested(v: str) -> str:
    return f"{v}.value = 'array_value' OR {v}.value = 'kvlist_value'"


def _json_nested(v: str, level: int) -> str:
    """JSON of the array or kvlist AnyValue `v`, whichever it holds; its elements are of `level`.
    Both go through one _json_value: each element is written after a prefix, '' in an array
    and `"key":` in an object. (ClickHouse plans every instance of an expression on each
    INSERT: one instance instead of two makes the rendering cheaper to plan.)"""
    kv, i, p, x = f"kv{level}", f"i{level}", f"p{level}", f"av{level}"
    is_array = f"{v}.value = 'array_value'"
    items, members = f"{v}.array_value.values", f"{v}.kvlist_value.values"
    # Go builds a map (a repeated key: the last one wins) and encodes it with sorted keys.
    last_wins = (f"arrayFilter(({kv}, {i}) -> NOT has(arraySlice(arrayMap(k -> k.key, {members}), "
                 f"{i} + 1), {kv}.key), {members}, arrayEnumerate({members}))")
    members = f"arraySort({kv} -> {kv}.key, {last_wins})"
    prefixes = (f"if({is_array}, arrayWithConstant(length({items}), ''), "
                f"arrayMap({kv} -> concat({json_string(f'{kv}.key')}, ':'), {members}))")
    values = f"if({is_array}, {items}, arrayMap({kv} -> {kv}.value, {members}))"
    body = (f"arrayStringConcat(arrayMap(({p}, {x}) -> concat({p}, {_json_value(x, level)}), "
            f"{prefixes}, {values}), ',')")
    return f"concat(if({is_array}, '[', '{{'), {body}, if({is_array}, ']', '}}'))"


def as_string(v: str, level: int = 0) -> str:
    """pdata Value.AsString() of the AnyValue tuple expression `v`."""
    nested = _nested(v, level)
    if level + 1 < ANY_VALUE_DEPTH:  # JSON, "" when it holds a NaN or ±Inf
        nested = f"arrayMap(j -> if(position(j, '{NAN_MARK}') > 0, '', j), [{nested}])[1]"
    return (f"multiIf({v}.value = 'string_value', {v}.string_value, "
            f"{v}.value = 'int_value', toString({v}.int_value), "
            f"{v}.value = 'double_value', {go_float(f'{v}.double_value')}, "
            f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
            f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), "
            f"{_is_nested(v)}, {nested}, '')")


def attributes_map(attrs: str) -> str:
    """Map(String, String) of a KeyValue array: keys sorted, values rendered with as_string.

    The values are rendered in the request's order and sorted as strings, by their keys: sorting
    the KeyValues themselves moves every column of the deeply nested AnyValue tuple, and cost a
    fifth of a span's flattening (both sorts order by the same keys: the same permutation)."""
    keys = f"arrayMap(a -> a.key, {attrs})"
    values = f"arrayMap(a -> {as_string('a.value')}, {attrs})"
    return f"mapFromArrays(arraySort({keys}), arraySort((v, k) -> k, {values}, {keys}))"


class SharedMaps:
    """Attribute maps made by ONE attributes_map instance: their KeyValue arrays go into one
    array, attributes_map is mapped over it, and each map (or run of maps) is taken back out by
    its position.

    Why: ClickHouse plans a view's SELECT again on every INSERT, and attributes_map is most of
    that cost (~20 ms of a trace INSERT's ~100 ms), paid once per instance. Sharing costs a copy
    of the KeyValues and of the maps taken out, so it is for maps made once per scope before
    the ARRAY JOIN down to log records or data points, and for the maps of a span's events and
    links, which most spans do not have. (Not for span, record or point attributes: for those
    the copies cost more execution time than the planning they save.)
    `expr()` and `lengths()` are to be columns of a subquery and the maps are taken out in the
    query around it: an alias used again in its own SELECT is planned again where it is used."""

    def __init__(self, column: str) -> None:
        self.column = column
        self._parts: list[tuple[str, bool]] = []  # (expression, is an array of KeyValue arrays)

    def add(self, attrs: str, each: bool = False) -> str:
        """The map of the KeyValue array `attrs` or, with `each`, the array of maps of the array
        of KeyValue arrays `attrs`: an expression over `column` (and lengths())."""
        # where this part's maps start: after one map per single part and a run per `each`
        singles = sum(not e for _, e in self._parts)
        runs = [f"`{name}`" for name, _ in self.lengths()]
        start = " + ".join([str(1 + singles), *runs])
        self._parts.append((attrs, each))
        if not each:
            return f"{self.column}[{start}]"
        return f"arraySlice({self.column}, {start}, `{self.lengths()[-1][0]}`)"

    def lengths(self) -> list[tuple[str, str]]:
        """(column, expression): the number of maps of each part added with `each`."""
        return [(f"{self.column}_n{i}", f"length({attrs})")
                for i, (attrs, each) in enumerate(self._parts, 1) if each]

    def expr(self) -> str:
        """`column`: the maps of every part added, in order."""
        runs: list[str] = []
        singles: list[str] = []
        for attrs, each in self._parts:
            if not each:
                singles.append(attrs)
                continue
            if singles:
                runs.append(f"[{', '.join(singles)}]")
                singles = []
            runs.append(attrs)
        if singles:
            runs.append(f"[{', '.join(singles)}]")
        arrays = runs[0] if len(runs) == 1 else f"arrayConcat({', '.join(runs)})"
        return f"arrayMap(x -> {attributes_map('x')}, {arrays})"
