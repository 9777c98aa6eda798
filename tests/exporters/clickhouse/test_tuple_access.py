"""The dotted-access rewrite the flattening views are created with (tuple_access.py): what it
must leave alone matters as much as what it rewrites; the values it computes are checked end to
end by test_values.py."""

from __future__ import annotations

import pytest

from exporters.clickhouse.flatten import FLATTENINGS
from exporters.clickhouse.tuple_access import tuple_elements


def test_chains_become_nested_tuple_element_calls() -> None:
    assert tuple_elements("f(a.value.string_value, s)") == (
        "f(tupleElement(tupleElement(a, 'value'), 'string_value'), s)")
    assert tuple_elements("ARRAY JOIN rs.scope_spans AS ss") == (
        "ARRAY JOIN tupleElement(rs, 'scope_spans') AS ss")


@pytest.mark.parametrize("sql", [
    "'service.name'",                    # string literals
    "'it\\'s a.b'",                      # with an escaped quote
    "'a''b.c'",                          # with a doubled quote
    "`Events.Attributes`",               # backquoted column names
    '"default"."otel_traces"',           # quoted database.table
    '"default".otel_traces',             # a name after a quoted database
    "1e21 + 0.5 + 1e-7",                 # numbers
])
def test_quoted_text_names_and_numbers_are_kept(sql: str) -> None:
    assert tuple_elements(sql) == sql


def test_every_view_select_keeps_no_dotted_access() -> None:
    for f in FLATTENINGS.values():
        for target in (*f.targets, *([f.stage] if f.stage else [])):
            sql = target.select("{source}")
            assert "tupleElement(" in sql or not target.array_join
            unquoted = tuple_elements(sql)
            assert unquoted == sql  # already rewritten: nothing dotted left outside quotes


def test_an_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        tuple_elements("'abc")
