"""The delivery checkpoint: {event uid: resourceVersion} of every event the pipeline took.

An event is sent when its (uid, resourceVersion) differs from what is recorded here, and
recorded once the pipeline accepted it, so neither a restart nor a relist sends it again.
Entries go when their event is deleted (the API server expires events after about an hour), so
the file holds at most the events the API server still has.

The file is replaced atomically (write a temporary file, fsync, rename, fsync the directory):
after a crash it is the previous or the new version, never a torn one. It is written after each
accepted batch; a crash between the pipeline's acceptance and that write sends that batch again
on the next start (the window is one small write).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from gateway.files import fsync_path, replace_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: dict[str, str] = {}
        self.dirty = False
        self._write_lock = threading.Lock()  # a cancelled save's thread may still be writing

    def load(self) -> None:
        """Read the file; a missing one is an empty checkpoint, an unreadable one is reported
        and treated as empty (its events are sent again rather than the receiver not starting)."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("k8s_events checkpoint %s is unreadable (%s): starting without it; events "
                      "the API server still holds are sent again", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION \
                or not isinstance(data.get("events"), dict):
            log.error("k8s_events checkpoint %s has an unknown format: starting without it",
                      self.path)
            return
        self.sent = {str(k): str(v) for k, v in data["events"].items()}

    def is_sent(self, uid: str, resource_version: str) -> bool:
        return self.sent.get(uid) == resource_version

    def mark(self, uid: str, resource_version: str) -> None:
        if self.sent.get(uid) != resource_version:
            self.sent[uid] = resource_version
            self.dirty = True

    def forget(self, uid: str) -> None:
        if self.sent.pop(uid, None) is not None:
            self.dirty = True

    def keep_only(self, uids: set[str]) -> int:
        """Drop entries of events that no longer exist; returns how many."""
        gone = [uid for uid in self.sent if uid not in uids]
        for uid in gone:
            del self.sent[uid]
        self.dirty = self.dirty or bool(gone)
        return len(gone)

    def snapshot(self) -> bytes:
        return json.dumps({"version": FORMAT_VERSION, "events": self.sent},
                          separators=(",", ":"), sort_keys=True).encode()

    def write(self, data: bytes) -> None:
        """Replace the file with `data` (a snapshot()); blocking, run it in a thread."""
        with self._write_lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, data)
        fsync_path(self.path.parent)
