"""Log setup: console lines or JSON objects, one per line, with repeats rate-limited.

A target that fails every second or a client that sends the same bad request in a loop must not
flood the log: like the Collector's zap sampler, per message template and tick the first
`initial` lines pass, then every `thereafter`-th, and the next line that passes says how many
were suppressed.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class Sampler(logging.Filter):
    def __init__(self, tick: float = 10.0, initial: int = 10, thereafter: int = 100) -> None:
        super().__init__()
        self.tick, self.initial, self.thereafter = tick, initial, thereafter
        self._window = 0.0
        self._seen: dict[tuple[str, int, object], int] = {}
        self._suppressed: dict[tuple[str, int, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        now = record.created
        if now - self._window >= self.tick:
            self._window, self._seen = now, {}
        key = (record.name, record.levelno, record.msg)
        n = self._seen.get(key, 0) + 1
        self._seen[key] = n
        if n <= self.initial or (self.thereafter and (n - self.initial) % self.thereafter == 0):
            skipped = self._suppressed.pop(key, 0)
            if skipped:
                record.msg = f"{record.msg} ({skipped} similar lines suppressed)"
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False


def setup(level: str = "info", encoding: str = "console",
          sampler: Sampler | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sampler is not None:
        handler.addFilter(sampler)
    if encoding == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
