"""The `bearertokenauth` extension on the server side: receivers that name it
(`auth: {authenticator: bearertokenauth}`) call `authenticate(headers)` before they read a body.

The contract with receivers: `authenticate(headers)` takes the request headers (gRPC metadata)
as a mapping with lowercase or case-insensitive keys and returns when the request may go on, or
raises PermissionError with a reason for the client. No reason, log line or error ever holds a
presented or configured token.

The header value must equal `<scheme> <token>` (the bare token with an empty scheme) for one of
the accepted tokens. The SHA-256 of the presented value is compared with that of every accepted
value by hmac.compare_digest, without stopping at a match, so the time taken tells neither which
token matched, nor how much of one, nor its length.

With `filename`, the tokens are the file's lines (stripped; empty lines skipped, where the
Collector would accept the bare scheme as a token). The file is read at start (a missing file
stops the gateway, as in the Collector) and looked at every second afterwards; a change (a new
inode, size or mtime: a Kubernetes Secret update swaps a symlink) reloads it for the next
request. While the file is missing or unreadable the last tokens stay in force.

Only the server side is implemented: no otelgw exporter takes an `auth` setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Iterable, Mapping

from extensions.bearertokenauth.config import BearerTokenAuthConfig
from gateway.component import ComponentID, Host
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between looks at `filename`


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class BearerTokenAuth:
    def __init__(self, cid: ComponentID, cfg: BearerTokenAuthConfig) -> None:
        self.id = cid
        self.cfg = cfg
        self.header = cfg.header
        self._key = cfg.header.lower()
        self._digests: tuple[bytes, ...] = ()
        self._stamp: tuple[int, int, int] | None = None
        self._watch: asyncio.Task[None] | None = None
        if cfg.filename:
            if cfg.token.get_secret_value() or cfg.tokens:
                log.warning("extensions::%s: filename is set, so token/tokens are ignored", cid)
        else:
            tokens = cfg.tokens or [cfg.token]
            self._set([t.get_secret_value() for t in tokens])

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401 (RFC 6750)."""
        return f'{self.cfg.scheme or "Bearer"} realm="otelgw"'

    def _set(self, tokens: Iterable[str]) -> int:
        scheme = self.cfg.scheme
        values = [f"{scheme} {t}" if scheme else t for t in tokens]
        self._digests = tuple(_digest(v) for v in values)
        return len(values)

    def authenticate(self, headers: Mapping[str, str]) -> None:
        value = headers.get(self._key)
        if not value:
            raise PermissionError(f"missing or empty authorization header: {self.header}")
        presented = _digest(value)
        ok = False
        for expected in self._digests:
            ok |= hmac.compare_digest(expected, presented)
        if not ok:
            raise PermissionError("scheme or token does not match")

    # -- the token file --------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        if not self.cfg.filename:
            return
        try:
            self._reload()
        except OSError as exc:
            raise ConfigError([f"extensions::{self.id}::filename: cannot read "
                               f"{self.cfg.filename}: {exc.strerror or exc}"]) from None
        self._watch = asyncio.create_task(self._poll(), name=f"{self.id} token file")

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    def _reload(self) -> None:
        path = self.cfg.filename
        st = os.stat(path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = [line.strip() for line in f.read().splitlines()]
        n = self._set(line for line in lines if line)
        self._stamp = stamp
        if n:
            log.info("extensions::%s: loaded %d token(s) from %s", self.id, n, path)
        else:
            log.warning("extensions::%s: %s holds no token: every request is refused",
                        self.id, path)

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                self._reload()
                failing = False
            except OSError as exc:
                if not failing:  # once per outage, not every second
                    log.warning("extensions::%s: cannot read %s (%s); the last tokens stay in "
                                "force", self.id, self.cfg.filename, exc.strerror or exc)
                failing = True
