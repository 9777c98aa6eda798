"""Fuzz target: OTLP protobuf request bodies (receivers/otlp/decode.py, wire.py, validate.py,
limits.py), random and mutated from valid requests of every signal.

Properties: decoding ends in a message or a PermanentError, nothing else; a decoded message is
within the item limit, re-encodes to bytes that parse again (every later stage may parse them),
and survives the receiver's item checks and attribute truncation; the wire pre-count never
counts fewer items than upb builds (so the limit holds); repair only touches invalid strings.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import PermanentError
from gateway.signals import Signal, count_items
from receivers.otlp import wire
from receivers.otlp.decode import decode_protobuf, parse_protobuf
from receivers.otlp.idscan import all_ids_valid
from receivers.otlp.limits import OtlpLimits, truncate_attributes
from receivers.otlp.validate import reject_invalid
from tests import payloads
from tests.fuzz.mutate import mutated

LIMITS = OtlpLimits(max_items_per_request=40, attribute_value_length_limit=8)
SIGNALS = list(Signal)


def valid_request(signal: Signal, seed: int) -> bytes:
    if signal is Signal.TRACES:
        return bytes(payloads.traces(seed, "fuzz", spans_per_scope=2).SerializeToString())
    if signal is Signal.LOGS:
        return bytes(payloads.logs(seed, "fuzz", records_per_scope=2).SerializeToString())
    return bytes(payloads.metrics(seed, "fuzz", points=1).SerializeToString())


# a few valid requests per signal, built once: the corpus the mutations start from
CORPUS = {s: [valid_request(s, seed) for seed in range(3)] for s in SIGNALS}


def check(signal: Signal, body: bytes) -> None:
    try:
        decoded = decode_protobuf(signal, body, LIMITS)
    except PermanentError:
        try:
            parse_protobuf(signal, body, LIMITS)
        except PermanentError:
            return
        raise AssertionError("parse_protobuf took what decode_protobuf refused") from None
    message = decoded.message
    items = count_items(signal, message)
    assert items <= LIMITS.max_items_per_request
    if decoded.raw is not None:
        assert decoded.raw is body and decoded.utf8_replacements == 0
        try:
            upper = wire.count_items(signal, body, 10**9)
        except wire.WireError:
            pass  # upb read what the pre-count could not: counted after decoding instead
        else:
            assert upper >= items
        # the fast id check may only say "valid" when the item-by-item check finds nothing
        if all_ids_valid(signal, body):
            assert reject_invalid(signal, signal.request_type.FromString(body))[0] == 0
    # what later stages do with it
    again = signal.request_type.FromString(message.SerializeToString())
    reject_invalid(signal, again)
    truncate_attributes(signal, again, LIMITS.attribute_value_length_limit)
    signal.request_type.FromString(again.SerializeToString())


@given(signal=st.sampled_from(SIGNALS), body=st.binary(max_size=400))
def test_random_bytes(signal: Signal, body: bytes) -> None:
    check(signal, body)


@st.composite
def mutated_requests(draw: Any) -> tuple[Signal, bytes]:
    signal = draw(st.sampled_from(SIGNALS))
    return signal, draw(mutated(draw(st.sampled_from(CORPUS[signal]))))


@given(case=mutated_requests())
def test_mutated_valid_requests(case: tuple[Signal, bytes]) -> None:
    check(*case)


@given(case=mutated_requests(), other=st.sampled_from(SIGNALS))
def test_a_request_sent_to_the_wrong_signal(case: tuple[Signal, bytes], other: Signal) -> None:
    check(other, case[1])


@given(signal=st.sampled_from(SIGNALS), seed=st.integers(0, 2**32),
       bad=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
                    min_size=1, max_size=4))
def test_invalid_utf8_is_repaired_in_place(signal: Signal, seed: int,
                                           bad: list[tuple[int, bytes]]) -> None:
    """Overwrite bytes inside string fields with invalid UTF-8 (same length): the request
    decodes with every string still there, valid, and the rest of the message unchanged."""
    body = bytearray(valid_request(signal, seed % 1000))
    original = signal.request_type.FromString(bytes(body))
    spans = _string_spans(signal.request_type.DESCRIPTOR, bytes(body), 0, len(body))
    changed = False
    for where, junk in bad:
        start, end = spans[where % len(spans)] if spans else (0, 0)
        if end - start >= len(junk):
            body[start:start + len(junk)] = b"\xff" + junk[1:]  # 0xff is never UTF-8
            changed = True
    assume(changed)
    decoded = decode_protobuf(signal, bytes(body), OtlpLimits())
    assert decoded.raw is None and decoded.utf8_replacements >= 1
    assert count_items(signal, decoded.message) == count_items(signal, original)
    assert decoded.message.ByteSize() >= original.ByteSize()  # U+FFFD takes 3 bytes


def _string_spans(desc: Any, buf: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Where the non-empty string field values of a valid message are."""
    out = []
    for number, wire_type, _, s, e in wire.fields(buf, start, end):
        f = desc.fields_by_number.get(number)
        if f is None or wire_type != 2:
            continue
        if f.type == f.TYPE_STRING and e > s:
            out.append((s, e))
        elif f.type == f.TYPE_MESSAGE:
            out += _string_spans(f.message_type, buf, s, e)
    return out


@given(signal=st.sampled_from(SIGNALS), items=st.integers(0, 200), pad=st.binary(max_size=30))
def test_the_item_count_is_exact_for_well_formed_bodies(signal: Signal, items: int,
                                                        pad: bytes) -> None:
    levels = {Signal.TRACES: [1, 2], Signal.LOGS: [1, 2], Signal.METRICS: [1, 2, 2, 5]}[signal]
    body = b"\x0a\x00" * items  # `items` empty items (field 1: data_points, for metrics)
    if signal is not Signal.METRICS:
        body = b"\x12\x00" * items  # field 2: spans / log_records
    for number in reversed(levels):
        body = bytes([number << 3 | 2]) + _varint(len(body)) + body
    n = wire.count_items(signal, body, 10**9)
    assert n == items == count_items(signal, signal.request_type.FromString(body))
    assert wire.count_items(signal, body, 10) == min(items, 11)  # stops once over the budget


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
