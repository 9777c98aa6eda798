"""SQL that turns OTLP AnyValues, as ClickHouse reads them from the request, into the strings the
contrib exporter (v0.129.0) writes into Map(LowCardinality(String), String) columns, i.e. pdata's
`Value.AsString()`:

    string → as is            int → decimal               bool → true / false
    double → Go's float64AsString: shortest round-trip digits, exponent form below 1e-6 and from
             1e21 on (`1e+21`, `1e-7`); NaN / ±Inf → "json: unsupported value: NaN" / "+Inf" / "-Inf"
    bytes  → standard base64  array / kvlist → Go `json.Marshal` of the raw value: keys sorted, a
             repeated key's last value wins, `<>&` escaped as \\u003c…, bytes as base64 strings
             (empty bytes → null), NaN/Inf anywhere inside → "" (Marshal fails)
    empty  → ""

Maps are written with their keys sorted, as clickhouse-go's ordered map sends them.
`tests/oracle.py` holds the same rules in plain Python; the two are compared field by field.

Values nested deeper than protoschema.ANY_VALUE_DEPTH levels reach SQL as the raw protobuf bytes
of the inner array/kvlist and are rendered as a JSON string holding their base64: a documented
normalization that keeps the data instead of dropping it.
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


def go_float(x: str) -> str:
    """Go's float64AsString, from ClickHouse's shortest round-trip repr (same cut-offs)."""
    return (f"if(isFinite({x}), if(abs({x}) >= 1e21, replaceOne(toString({x}), 'e', 'e+'), "
            f"toString({x})), if(isNaN({x}), 'json: unsupported value: NaN', "
            f"if({x} > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf')))")


def json_string(s: str) -> str:
    """Go encoding/json string: ClickHouse's JSON escaping plus Go's HTML-safe escapes."""
    expr = f"toJSONString({s})"
    for raw, escaped in (("<", "\\\\u003c"), (">", "\\\\u003e"), ("&", "\\\\u0026"),
                         ("\u2028", "\\\\u2028"), ("\u2029", "\\\\u2029")):
        expr = f"replaceAll({expr}, '{raw}', '{escaped}')"
    return expr


def _raw_nested(v: str, field: str) -> str:
    return f"concat('\"', base64Encode({v}.{field}), '\"')"


def _json_value(v: str, level: int) -> str:
    """One AnyValue as a JSON value (inside an array or kvlist rendering)."""
    if level + 1 >= ANY_VALUE_DEPTH:
        nested_array, nested_kvlist = _raw_nested(v, "array_value"), _raw_nested(v, "kvlist_value")
    else:
        nested_array = _json_array(f"{v}.array_value.values", level + 1)
        nested_kvlist = _json_object(f"{v}.kvlist_value.values", level + 1)
    d = f"{v}.double_value"
    return (f"multiIf({v}.value = 'string_value', {json_string(f'{v}.string_value')}, "
            f"{v}.value = 'int_value', toString({v}.int_value), "
            f"{v}.value = 'double_value', if(isFinite({d}), {go_float(d)}, '{NAN_MARK}'), "
            f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
            f"{v}.value = 'bytes_value', if(empty({v}.bytes_value), 'null', "
            f"concat('\"', base64Encode({v}.bytes_value), '\"')), "
            f"{v}.value = 'array_value', {nested_array}, "
            f"{v}.value = 'kvlist_value', {nested_kvlist}, 'null')")


def _json_array(values: str, level: int) -> str:
    x = f"av{level}"
    return (f"concat('[', arrayStringConcat(arrayMap({x} -> {_json_value(x, level)}, "
            f"{values}), ','), ']')")


def _json_object(values: str, level: int) -> str:
    # Go builds a map (a repeated key: the last one wins) and encodes it with sorted keys.
    kv, i = f"kv{level}", f"i{level}"
    last_wins = (f"arrayFilter(({kv}, {i}) -> NOT has(arraySlice(arrayMap(k -> k.key, {values}), "
                 f"{i} + 1), {kv}.key), {values}, arrayEnumerate({values}))")
    pairs = (f"arrayMap({kv} -> concat({json_string(f'{kv}.key')}, ':', "
             f"{_json_value(f'{kv}.value', level)}), arraySort({kv} -> {kv}.key, {last_wins}))")
    return f"concat('{{', arrayStringConcat({pairs}, ','), '}}')"


def _json_or_empty(json: str) -> str:
    return f"arrayMap(j -> if(position(j, '{NAN_MARK}') > 0, '', j), [{json}])[1]"


def as_string(v: str, level: int = 0) -> str:
    """pdata Value.AsString() of the AnyValue tuple expression `v`."""
    if level + 1 >= ANY_VALUE_DEPTH:
        nested_array, nested_kvlist = _raw_nested(v, "array_value"), _raw_nested(v, "kvlist_value")
    else:
        nested_array = _json_or_empty(_json_array(f"{v}.array_value.values", level + 1))
        nested_kvlist = _json_or_empty(_json_object(f"{v}.kvlist_value.values", level + 1))
    return (f"multiIf({v}.value = 'string_value', {v}.string_value, "
            f"{v}.value = 'int_value', toString({v}.int_value), "
            f"{v}.value = 'double_value', {go_float(f'{v}.double_value')}, "
            f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
            f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), "
            f"{v}.value = 'array_value', {nested_array}, "
            f"{v}.value = 'kvlist_value', {nested_kvlist}, '')")


def attributes_map(attrs: str) -> str:
    """Map(String, String) of a KeyValue array: keys sorted, values rendered with as_string."""
    return (f"mapFromArrays(arrayMap(a -> a.key, arraySort(a -> a.key, {attrs})), "
            f"arrayMap(a -> {as_string('a.value')}, arraySort(a -> a.key, {attrs})))")
