"""Fuzz target: OTLP/JSON request bodies (receivers/otlp/decode.py, otlpjson.py): random JSON
with OTLP's field names, valid requests with random subtrees swapped in, byte mutations.

Properties: decoding ends in a message or a PermanentError, nothing else; a decoded message is
within the item limit and re-encodes to bytes that parse again (depth included); and on valid
OTLP/JSON the decoder agrees with protobuf's own json_format field for field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import PermanentError
from gateway.signals import Signal, count_items
from loadtests.payloads import to_otlp_json
from receivers.otlp.decode import decode_json
from receivers.otlp.limits import OtlpLimits
from tests import payloads
from tests.fuzz.mutate import json_values, mutated

LIMITS = OtlpLimits(max_items_per_request=40)
SIGNALS = list(Signal)
ROOT = {Signal.TRACES: "resourceSpans", Signal.LOGS: "resourceLogs",
        Signal.METRICS: "resourceMetrics"}


def valid_message(signal: Signal, seed: int) -> Any:
    if signal is Signal.TRACES:
        return payloads.traces(seed, "fuzz", spans_per_scope=2)
    if signal is Signal.LOGS:
        return payloads.logs(seed, "fuzz", records_per_scope=2)
    return payloads.metrics(seed, "fuzz", points=1)


CORPUS = {s: [to_otlp_json(valid_message(s, seed)) for seed in range(3)] for s in SIGNALS}


def check(signal: Signal, body: bytes) -> Any:
    try:
        decoded = decode_json(signal, body, LIMITS)
    except PermanentError:
        return None
    assert decoded.raw is None
    assert count_items(signal, decoded.message) <= LIMITS.max_items_per_request
    signal.request_type.FromString(decoded.message.SerializeToString())
    return decoded.message


@given(signal=st.sampled_from(SIGNALS), doc=json_values())
def test_random_json(signal: Signal, doc: Any) -> None:
    check(signal, json.dumps(doc).encode())


@given(signal=st.sampled_from(SIGNALS), doc=json_values())
def test_random_json_under_the_signal_root(signal: Signal, doc: Any) -> None:
    check(signal, json.dumps({ROOT[signal]: [doc] if isinstance(doc, dict) else doc}).encode())


@st.composite
def grafted(draw: Any) -> tuple[Signal, bytes]:
    """A valid request with one subtree replaced by random JSON."""
    signal = draw(st.sampled_from(SIGNALS))
    doc = json.loads(draw(st.sampled_from(CORPUS[signal])))
    node, steps = doc, draw(st.integers(1, 8))
    for _ in range(steps):
        children = (list(node.items()) if isinstance(node, dict) else list(enumerate(node))
                    if isinstance(node, list) else [])
        if not children:
            break
        key, child = draw(st.sampled_from(children))
        if not isinstance(child, (dict, list)) or draw(st.booleans()):
            node[key] = draw(json_values(max_leaves=6))
            break
        node = child
    return signal, json.dumps(doc).encode()


@given(case=grafted())
def test_valid_requests_with_a_random_subtree(case: tuple[Signal, bytes]) -> None:
    check(*case)


@given(signal=st.sampled_from(SIGNALS), data=st.data())
def test_byte_mutations(signal: Signal, data: st.DataObject) -> None:
    check(signal, data.draw(mutated(data.draw(st.sampled_from(CORPUS[signal])))))


@given(signal=st.sampled_from(SIGNALS), body=st.binary(max_size=200))
def test_random_bytes(signal: Signal, body: bytes) -> None:
    check(signal, body)


@given(signal=st.sampled_from(SIGNALS), seed=st.integers(0, 2**32),
       snake=st.booleans(), names=st.booleans())
def test_agrees_with_json_format_on_valid_requests(signal: Signal, seed: int, snake: bool,
                                                   names: bool) -> None:
    """Field names camelCase or as in the .proto, enums as numbers or names: the same message
    as json_format reads from protobuf's mapping (base64 ids), and the original one."""
    message = valid_message(signal, seed % 100_000)
    doc = json_format.MessageToDict(message, preserving_proto_field_name=snake,
                                    use_integers_for_enums=not names)
    ours = decode_json(signal, json.dumps(_hex(doc)).encode(), OtlpLimits()).message
    theirs = json_format.ParseDict(doc, signal.request_type())
    assert _canonical(ours) == _canonical(theirs)
    if "nan" not in str(message):  # a NaN's payload bits do not survive "NaN", nor NaN == NaN
        assert ours == message


def _hex(doc: Any) -> Any:
    ids = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
    if isinstance(doc, dict):
        return {k: (base64.b64decode(v).hex() if k in ids and isinstance(v, str) else _hex(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_hex(v) for v in doc]
    return doc


def _canonical(message: Any) -> bytes:
    return bytes(message.SerializeToString(deterministic=True))
