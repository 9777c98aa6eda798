"""The dead-letter directory: batches the destination refused for good, kept for a person.

Each batch is two files named `<UTC time>-<token>`: `.pb`, the serialized OTLP
Export*ServiceRequest exactly as it would have been sent (replay it with any OTLP client, e.g.
`curl --data-binary @F.pb -H 'Content-Type: application/x-protobuf' http://gw:4318/v1/traces`),
and `.json`, why it is here: the destination's error, the signal, the item count, the exporter,
the time. The `.json` is written last, so a batch with one is complete. With fsync on, both files
and their names in the directory reach the disk before the batch leaves the queue's log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gateway.files import fsync_path, replace_file


class DeadLetters:
    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync

    def write(self, data: bytes, token: str, info: dict[str, Any]) -> Path:
        """Stores one batch (blocking: run in a thread); returns the path of its `.json`."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.fsync:  # the directory's own name must survive a crash too
                fsync_path(self.directory.parent)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        base = f"{stamp}-{token[:16] or 'unknown'}"
        meta = {**info, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "token": token, "bytes": len(data), "payload_file": base + ".pb"}
        replace_file(self.directory / (base + ".pb"), data, self.fsync)
        path = self.directory / (base + ".json")
        replace_file(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
                     self.fsync)
        if self.fsync:  # the renames: without this a crash may leave the batch nowhere
            fsync_path(self.directory)
        return path
