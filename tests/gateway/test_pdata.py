"""gateway.pdata against the independent AsString of tests/oracle.py, and against texts the
Collector's pdata writes (taken from Go's float64AsString / encoding/json rules)."""

from __future__ import annotations

import math
import struct
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporters.prometheus import names
from gateway.pdata import as_string, format_double, format_f, shortest_digits
from processors.attributes import convert, matching
from tests import oracle
from tests.payloads import EDGE_VALUES, INF, KV, NAN, StrIndex, any_value


def _oracle_as_string(x: Any) -> str:
    """oracle.as_string without the ClickHouse exporter's own rendering of deeply nested values
    (its ANY_VALUE_DEPTH normalization), i.e. plain pdata AsString at every depth."""
    with mock.patch.object(oracle, "ANY_VALUE_DEPTH", 1 << 30):
        return oracle.as_string(any_value(x))


def _bits_to_double(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


# Random bit patterns reach every exponent (subnormals, huge values, NaN payloads) evenly.
_doubles = st.floats() | st.integers(0, (1 << 64) - 1).map(_bits_to_double)
_texts = st.text() | st.text(alphabet="a<>&\"\\/\b\f\n\r\t\x00\x1f\x7fé\u2028\u2029😀\uffff")
_scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | _doubles
            | _texts | st.binary(max_size=12) | st.integers(0, 9).map(StrIndex))
# Few key characters, so repeated keys and keys that sort differently by bytes and UTF-16 occur.
_keys = st.text(alphabet="aBé<😀\uffff", max_size=2)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(st.tuples(_keys, inner), max_size=4).map(KV),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_as_string_matches_the_oracle(x: Any) -> None:
    assert as_string(any_value(x)) == _oracle_as_string(x)


def test_as_string_matches_the_oracle_on_every_edge_value() -> None:
    for x in EDGE_VALUES:
        assert as_string(any_value(x)) == _oracle_as_string(x), x


@settings(max_examples=400, deadline=None)
@given(_doubles)
def test_doubles_match_the_oracle(f: float) -> None:
    assert format_double(f) == oracle.go_float(f)


@pytest.mark.parametrize(("value", "text"), [
    ("", ""), ("a<b&\n", "a<b&\n"), (0, "0"), (-(1 << 63), "-9223372036854775808"),
    (True, "true"), (False, "false"), (b"", ""), (b"\xff\x00\x01", "/wAB"),
    (None, ""), (StrIndex(1), ""),  # pdata v1.35 does not know string_value_strindex: Empty
    (0.0, "0"), (-0.0, "-0"), (1.0, "1"), (100.0, "100"), (0.1, "0.1"),
    (0.30000000000000004, "0.30000000000000004"), (123456789.125, "123456789.125"),
    (1e20, "100000000000000000000"), (9.999999999999999e20, "999999999999999900000"),
    (1e21, "1e+21"), (1.2345678901234569e23, "1.2345678901234569e+23"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (1e-6, "0.000001"), (1.234e-6, "0.000001234"), (9.99e-7, "9.99e-7"), (1e-7, "1e-7"),
    (-2.5e-8, "-2.5e-8"), (1e-10, "1e-10"), (5e-324, "5e-324"),
    (NAN, "json: unsupported value: NaN"), (INF, "json: unsupported value: +Inf"),
    (-INF, "json: unsupported value: -Inf"),
    ([], "[]"), (KV(), "{}"),
    (["s", 1, 1.5, True, b"hi", b"", None, -0.0, 1e21, 1e-7, StrIndex(2)],
     '["s",1,1.5,true,"aGk=",null,null,-0,1e+21,1e-7,null]'),
    ([[1, [2]], KV([("x", KV())])], '[[1,[2]],{"x":{}}]'),
    # NaN or ±Inf anywhere inside: json.Marshal fails and AsString returns "".
    ([1.0, NAN], ""), ([INF], ""), (KV([("k", [1, KV([("x", -INF)])])]), ""),
    # Keys sorted by UTF-8 bytes, a repeated key keeps its last value.
    (KV([("b", 1), ("a", "x"), ("b", 2), ("é", None), ("B", 0.0), ("", b"")]),
     '{"":null,"B":0,"a":"x","b":2,"é":null}'),
    (KV([("😀", 1), ("\uffff", 2), ("z", 3)]), '{"z":3,"\uffff":2,"😀":1}'),
    # json.Marshal escapes: HTML characters, U+2028/9, \b \f (Go >= 1.22), not / nor DEL.
    (["<>&", "\u2028\u2029", "\b\f\n\r\t", "\x00\x1f\x7f", '"\\/', "é😀"],
     '["\\u003c\\u003e\\u0026","\\u2028\\u2029","\\b\\f\\n\\r\\t","\\u0000\\u001f\x7f",'
     '"\\"\\\\/","é😀"]'),
    (KV([("<k>", "v")]), '{"\\u003ck\\u003e":"v"}'),
])
def test_as_string_writes_what_pdata_writes(value: Any, text: str) -> None:
    assert as_string(any_value(value)) == text


def test_format_f_never_uses_an_exponent() -> None:
    cases = [(1e21, "1000000000000000000000"), (1e-7, "0.0000001"), (100.0, "100"),
             (-0.0, "-0"), (0.0, "0"), (-1.5, "-1.5"), (5e-324, "0." + "0" * 323 + "5"),
             (INF, "+Inf"), (-INF, "-Inf"), (NAN, "NaN")]
    assert [(f, format_f(f)) for f, _ in cases] == cases


@settings(max_examples=300, deadline=None)
@given(_doubles.filter(lambda f: math.isfinite(f) and f != 0))
def test_shortest_digits_read_back_and_are_shortest(f: float) -> None:
    digits, point = shortest_digits(f)
    assert digits[0] != "0" and digits[-1] != "0"
    assert float(f"0.{digits}e{point}") == abs(f)
    assert float(format_f(f)) == f and float(format_double(f)) == f
    if len(digits) > 1:  # one digit fewer, rounded either way, no longer reads back
        shorter, exp = int(digits[:-1]), point - len(digits) + 1
        assert float(f"{shorter}e{exp}") != abs(f) and float(f"{shorter + 1}e{exp}") != abs(f)


def test_components_use_this_implementation() -> None:
    assert convert.as_string is as_string and matching.as_string is as_string
    assert names.label_value is as_string
