"""Fuzz target: Content-Encoding decoding (receivers/otlp/decode.py `decompress`): random bytes,
mutated compressed bodies, several members/frames, limits around the output size.

Properties: the result is bytes within the limit, or a PermanentError (TooLarge past the
limit), nothing else; what a compressor wrote, in any number of members, comes back exactly.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import zstandard
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import PermanentError
from receivers.otlp.compression import MAX_MEMBERS, TooLarge, decompress
from tests.fuzz.mutate import mutated

ENCODINGS = ["gzip", "deflate", "zstd", "identity", "", "x-gzip", " GZIP ", "br", "gzip, zstd"]


def compress(data: bytes, encoding: str, level: int) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=level % 10)
    if encoding == "deflate":
        return zlib.compress(data, level % 10)
    if encoding == "deflate-raw":
        c = zlib.compressobj(level % 10, wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    return zstandard.ZstdCompressor(level=level % 20 + 1).compress(data)


def check(body: bytes, encoding: str, limit: int) -> bytes | None:
    try:
        out = decompress(body, encoding, limit)
    except PermanentError:
        return None
    assert isinstance(out, bytes)
    if encoding.strip().lower() not in ("", "identity"):
        assert len(out) <= limit
    return out


@given(body=st.binary(max_size=300), encoding=st.sampled_from(ENCODINGS),
       limit=st.integers(1, 1 << 16))
def test_random_bytes(body: bytes, encoding: str, limit: int) -> None:
    check(body, encoding, limit)


payload = st.one_of(st.binary(max_size=2000),
                    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8),
                              st.integers(1, 5000)))


@given(data=payload, encoding=st.sampled_from(["gzip", "deflate", "deflate-raw", "zstd"]),
       level=st.integers(0, 30), cuts=st.lists(st.integers(0, 10**6), max_size=5))
def test_what_was_compressed_comes_back(data: bytes, encoding: str, level: int,
                                        cuts: list[int]) -> None:
    # gzip and zstd bodies may be several members / frames; deflate is one stream
    pieces = [data]
    if encoding in ("gzip", "zstd") and data:
        points = sorted({c % len(data) for c in cuts})
        pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    body = b"".join(compress(p, encoding, level) for p in pieces)
    header = "deflate" if encoding == "deflate-raw" else encoding
    assert decompress(body, header, max(1, len(data))) == data
    if len(data) > 1:
        try:
            decompress(body, header, len(data) - 1)
            raise AssertionError("one byte over the limit was not refused")
        except TooLarge:
            pass


@given(data=st.data(), encoding=st.sampled_from(["gzip", "deflate", "zstd"]),
       limit=st.integers(1, 1 << 14))
def test_mutated_compressed_bodies(data: Any, encoding: str, limit: int) -> None:
    base = compress(data.draw(payload), encoding, data.draw(st.integers(0, 9)))
    check(data.draw(mutated(base)), encoding, limit)


@given(encoding=st.sampled_from(["gzip", "zstd"]), extra=st.integers(1, 3))
def test_more_members_than_allowed(encoding: str, extra: int) -> None:
    member = compress(b"", encoding, 1)
    assert decompress(member * MAX_MEMBERS, encoding, 10) == b""
    try:
        decompress(member * (MAX_MEMBERS + extra), encoding, 10)
        raise AssertionError("too many members were decoded")
    except PermanentError as exc:
        assert f"more than {MAX_MEMBERS}" in str(exc)
