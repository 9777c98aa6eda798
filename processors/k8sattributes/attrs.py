"""Reading and adding Resource attributes on the upb message, without a Python object per item.

The Collector never overwrites an attribute the data already carries (only an empty string is
replaced), so neither does this. New attributes are appended as encoded protobuf in one
MergeFromString: a repeated field's entries concatenate, so the bytes of KeyValue entries merged
into a Resource append to its attributes, which costs far less than building each KeyValue
through the Python API.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

RESTART_COUNT = "k8s.container.restart_count"


class ResourceView:
    """One Resource's attributes by key, read once; values are inspected only when asked."""

    __slots__ = ("values",)

    def __init__(self, resource: Any) -> None:
        self.values: dict[str, Any] = {kv.key: kv.value for kv in resource.attributes}

    def string(self, key: str) -> str:
        """The attribute's value if it is a string (other types never match, as upstream)."""
        value = self.values.get(key)
        if value is None or value.WhichOneof("value") != "string_value":
            return ""
        return str(value.string_value)

    def filled(self, key: str) -> bool:
        """True when the data already has a value for `key` that must not be replaced."""
        value = self.values.get(key)
        if value is None:
            return False
        which = value.WhichOneof("value")
        if which == "string_value":
            return bool(value.string_value)
        if which == "bytes_value":
            return bool(value.bytes_value)
        return which is not None

    def restart_count(self) -> int | None:
        value = self.values.get(RESTART_COUNT)
        if value is None:
            return None
        which = value.WhichOneof("value")
        if which == "int_value":
            return int(value.int_value)
        if which == "string_value":
            try:
                return int(value.string_value)
            except ValueError:
                return None
        return None


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag (wire type 2), length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@lru_cache(maxsize=65536)
def _encoded(key: str, value: str) -> bytes:
    """Resource.attributes (1) entry: KeyValue{key (1), value (2): AnyValue{string_value (1)}}."""
    return _field(1, _field(1, key.encode()) + _field(2, _field(1, value.encode())))


def _encoded_array(key: str, values: tuple[str, ...]) -> bytes:
    # AnyValue.array_value (5): ArrayValue{values (1): AnyValue{string_value (1)}...}
    array = b"".join(_field(1, _field(1, v.encode())) for v in values)
    return _field(1, _field(1, key.encode()) + _field(2, _field(5, array)))


def encode(additions: Mapping[str, str | list[str]]) -> bytes:
    """Resource attribute entries for `additions`, ready for Resource.MergeFromString."""
    return b"".join(_encoded(k, v) if isinstance(v, str) else _encoded_array(k, tuple(v))
                    for k, v in additions.items())


def write(resource: Any, view: ResourceView, additions: Mapping[str, str | list[str]]) -> None:
    """Add `additions` (keys absent or empty in `view`) to the resource's attributes."""
    replace = [k for k in additions if k in view.values]
    if replace:  # an empty value already there is set in place, keeping one entry per key
        for kv in resource.attributes:
            if kv.key in replace:
                _set(kv.value, additions[kv.key])
    encoded = encode({k: v for k, v in additions.items() if k not in view.values})
    if encoded:
        resource.MergeFromString(encoded)


def _set(target: Any, value: str | list[str]) -> None:
    if isinstance(value, list):
        target.ClearField("value")
        values = target.array_value.values
        for item in value:
            values.add().string_value = item
    else:
        target.string_value = value
