"""idscan.all_ids_valid: the C-side proof that a request's ids are valid must never pass a request
that the item-by-item check rejects, and must pass the valid requests SDKs send, so the fast path
is the one taken (a scanner that always says "not known" would pass the first property alone)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.signals import Signal
from receivers.otlp.idscan import all_ids_valid
from receivers.otlp.validate import reject_invalid
from tests import payloads

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
ID_LENGTHS = st.sampled_from([0, 0, 8, 8, 16, 16, 1, 7, 9, 15, 17, 32])


def _slow_verdict(signal: Signal, raw: bytes) -> tuple[int, str]:
    return reject_invalid(signal, signal.request_type.FromString(raw))


def _check(signal: Signal, raw: bytes) -> None:
    slow = _slow_verdict(signal, raw)
    if all_ids_valid(signal, raw):
        assert slow == (0, "")
    # the receiver's entry point gives the item-by-item verdict either way
    assert reject_invalid(signal, signal.request_type.FromString(raw), raw) == slow


@st.composite
def requests(draw: Any) -> tuple[Signal, bytes]:
    """Spans / log records with ids of any length, links, names, several scopes."""
    signal = draw(st.sampled_from([Signal.TRACES, Signal.LOGS]))
    req = signal.request_type()
    traces = signal is Signal.TRACES
    for _ in range(draw(st.integers(0, 2))):
        rx = (req.resource_spans if traces else req.resource_logs).add()
        for _ in range(draw(st.integers(0, 2))):
            sx = (rx.scope_spans if traces else rx.scope_logs).add()
            for _ in range(draw(st.integers(0, 4))):
                item = (sx.spans if traces else sx.log_records).add()
                item.trace_id = b"t" * draw(ID_LENGTHS)
                item.span_id = b"s" * draw(ID_LENGTHS)
                if traces:
                    item.parent_span_id = b"p" * draw(ID_LENGTHS)
                    item.name = "x" * draw(st.integers(0, 150))
                    for _ in range(draw(st.integers(0, 1))):
                        link = item.links.add(trace_id=b"l" * draw(ID_LENGTHS))
                        link.span_id = b"k" * draw(ID_LENGTHS)
                else:
                    item.body.string_value = "x" * draw(st.integers(0, 150))
    return signal, req.SerializeToString()


@SETTINGS
@given(case=requests())
def test_a_request_proven_valid_is_valid(case: tuple[Signal, bytes]) -> None:
    _check(*case)


def _field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


# the id fields' numbers in Span and LogRecord
_IDS = {Signal.TRACES: [1, 2, 4], Signal.LOGS: [9, 10]}
# other wire entries valid in both: field 3 is a string (trace_state, severity_text); an id
# field number with a varint or a fixed64 (another wire type: upb keeps it as unknown); unknown
_OTHER = [_field(3, b"text"), b"\x08\x05", b"\x10\x01", b"\x48\x01", b"\x51" + b"\x00" * 8,
          _field(99, b"?" * 20)]


@st.composite
def wire_requests(draw: Any) -> tuple[Signal, bytes]:
    """Requests written on the wire directly, in encodings the SDKs do not produce: ids of
    any length, in any order, repeated, between other fields."""
    signal = draw(st.sampled_from([Signal.TRACES, Signal.LOGS]))
    entry = st.one_of(st.tuples(st.sampled_from(_IDS[signal]), ID_LENGTHS).map(
        lambda f: _field(f[0], b"i" * f[1])), st.sampled_from(_OTHER))
    scopes = []
    for _ in range(draw(st.integers(1, 2))):
        items = [b"".join(draw(st.lists(entry, max_size=6)))
                 for _ in range(draw(st.integers(0, 3)))]
        scopes.append(_field(2, b"".join(_field(2, item) for item in items)))
    return signal, _field(1, b"".join(scopes))


@SETTINGS
@given(case=wire_requests())
def test_unusual_encodings_are_never_passed_wrongly(case: tuple[Signal, bytes]) -> None:
    _check(*case)


def test_a_repeated_id_field_counts_as_upb_reads_it() -> None:
    """The last occurrence of a field wins in upb, and in the view: a bad first trace_id
    followed by a good one is valid, the other way round it is not."""
    def request(span: bytes) -> bytes:
        scope = b"\x12" + bytes([len(span)]) + span
        resource = b"\x12" + bytes([len(scope)]) + scope
        return b"\x0a" + bytes([len(resource)]) + resource

    good, bad = b"\x0a\x10" + b"T" * 16, b"\x0a\x03abc"
    span_id = b"\x12\x08" + b"S" * 8
    assert all_ids_valid(Signal.TRACES, request(bad + good + span_id))
    assert _slow_verdict(Signal.TRACES, request(bad + good + span_id)) == (0, "")
    assert not all_ids_valid(Signal.TRACES, request(good + bad + span_id))
    assert _slow_verdict(Signal.TRACES, request(good + bad + span_id))[0] == 1


def _without_links(req: Any) -> Any:
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                del span.links[:]
    return req


def test_valid_requests_take_the_fast_path() -> None:
    """Requests with every field an SDK sets (events, status, trace_state, all kinds of
    attribute values), ids present or not."""
    for seed in range(5):
        for n in (1, 10):
            traces = _without_links(payloads.traces(seed, "idscan", spans_per_scope=n))
            traces.resource_spans[0].scope_spans[0].spans[0].parent_span_id = b""  # a root
            logs = payloads.logs(seed, "idscan", records_per_scope=n)
            logs.resource_logs[0].scope_logs[0].log_records[0].trace_id = b""  # no trace
            assert all_ids_valid(Signal.TRACES, traces.SerializeToString())
            assert all_ids_valid(Signal.LOGS, logs.SerializeToString())
    assert all_ids_valid(Signal.TRACES, b"")  # no items at all
    assert not all_ids_valid(Signal.METRICS, b"")  # metrics have no ids: not its job
    assert not all_ids_valid(Signal.TRACES, b"\xff")  # not protobuf: not known


def test_a_span_with_links_is_left_to_the_item_check() -> None:
    req = payloads.traces(1, "idscan", spans_per_scope=3)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.links.add(trace_id=b"t" * 16, span_id=b"s" * 8)
    assert not all_ids_valid(Signal.TRACES, req.SerializeToString())
    assert _slow_verdict(Signal.TRACES, req.SerializeToString()) == (0, "")
