"""Content-Encoding of OTLP/HTTP bodies: gzip, deflate (zlib or raw), zstd, with limits.

The output is bounded while it is produced (TooLarge past `limit`, never a whole bomb in
memory); so are the number of gzip members / zstd frames and the window a zstd frame may ask
for. A truncated stream or bytes after the last member are an error, never a silently shorter
body. Errors are PermanentError (HTTP 400) and TooLarge (HTTP 413).
"""

from __future__ import annotations

import zlib

import zstandard

from gateway.errors import PermanentError


class TooLarge(PermanentError):
    """The body (or what it decompresses to) is over the limit."""


# Concatenated gzip members / zstd frames are one body (Go's readers read them so). Legitimate
# senders write one, or a few hundred (BGZF-style blocks); each costs a Python round here.
MAX_MEMBERS = 10_000
_CHUNK = 1 << 16  # input fed per call: what is left after a member's end is copied each time


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a Content-Encoding, refusing (TooLarge) output over `limit` before producing it all.

    A truncated stream or bytes after the last member are an error, never a silently shorter body.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return _zlib(body, zlib.MAX_WBITS | 16, limit, several=True)
        if encoding == "deflate":
            # RFC 9110 deflate is the zlib format; some clients send raw deflate: tell by the header
            zlib_header = (len(body) >= 2 and body[0] & 0x0F == 8
                           and (body[0] << 8 | body[1]) % 31 == 0)
            return _zlib(body, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS, limit,
                         several=False)
        if encoding == "zstd":
            return _zstd(body, limit)
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        raise PermanentError(f"cannot decompress the {encoding} body: {exc}") from None
    raise PermanentError(f"unsupported Content-Encoding {encoding!r} "
                         "(supported: gzip, deflate, zstd, identity)")


def _zlib(body: bytes, wbits: int, limit: int, several: bool) -> bytes:
    out = bytearray()
    data = memoryview(body)
    pos = members = 0
    while True:
        members += 1
        if members > MAX_MEMBERS:
            raise zlib.error(f"the body has more than {MAX_MEMBERS} gzip members")
        d = zlib.decompressobj(wbits)
        while not d.eof:
            if pos >= len(data):
                raise zlib.error("the compressed stream is truncated")
            chunk = data[pos:pos + _CHUNK]
            pos += len(chunk)
            out += d.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise TooLarge(f"decompressed body is over the limit of {limit} bytes")
        pos -= len(d.unused_data)  # the next member starts there
        if pos >= len(data):
            return bytes(out)
        if not several:
            raise zlib.error(f"{len(data) - pos} unexpected bytes after the end of the stream")


# zstd expands at most ~32768x (a 4-byte RLE block stands for 128 KiB), so feeding the
# input in slices of limit/32768 bytes bounds what one call can produce to about the limit.
_ZSTD_RATIO = 1 << 15


def _zstd_window(limit: int) -> int:
    """The largest window a frame may ask for: enough for any body within the limit (and for
    streaming encoders' default 8 MiB), at most zstd's own default cap of 128 MiB."""
    return min(1 << 27, max(1 << 23, 1 << max(0, limit - 1).bit_length()))


def _zstd(body: bytes, limit: int) -> bytes:
    if not body:
        raise zstandard.ZstdError("the body is empty")
    out = bytearray()
    data = memoryview(body)
    step = max(64, min(1 << 16, limit // _ZSTD_RATIO))
    # one context for every frame: creating one costs ~12 µs, a frame can be 9 bytes
    dctx = zstandard.ZstdDecompressor(max_window_size=_zstd_window(limit))
    pos = frames = 0
    while pos < len(data):  # one frame per round
        frames += 1
        if frames > MAX_MEMBERS:
            raise zstandard.ZstdError(f"the body has more than {MAX_MEMBERS} zstd frames")
        d = dctx.decompressobj()
        while pos < len(data) and not d.eof:
            out += d.decompress(data[pos:pos + step])
            pos += step
            if len(out) > limit:
                raise TooLarge(f"decompressed body is over the limit of {limit} bytes")
        if not d.eof:
            raise zstandard.ZstdError("the compressed stream is truncated")
        pos = min(pos, len(data)) - len(d.unused_data)  # the next frame starts there
    return bytes(out)
