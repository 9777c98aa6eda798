"""`file_sd_configs`: target groups read from JSON/YAML files (globs allowed), re-read on change.

As Prometheus's file discovery: each file holds a list of `{targets: [...], labels: {...}}`;
group i of file f has source "f:i" and the label `__meta_filepath`; a file that cannot be read
or parsed keeps its previous groups (and the error is logged); groups of a file that vanished
or shrank are removed. Prometheus learns of changes through inotify; here the matching files'
modification times are checked every few seconds, and everything is re-read every
`refresh_interval` regardless.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import Field, field_validator

from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.httpconfig import PromConfig, PromDuration

log = logging.getLogger(__name__)

_PATTERN = re.compile(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")
WATCH_PERIOD = 2.0  # seconds between checks of the files' modification times


class FileSDConfig(PromConfig):
    files: list[str] = Field(..., description="Files to read target groups from; the last path "
                                              "element may be a glob such as 'targets/*.yaml'.")
    refresh_interval: PromDuration = Field(300.0, gt=0, description="Re-read every file this "
                                                                    "often even if unchanged.")

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("file service discovery config must contain at least one path name")
        for name in value:
            if not _PATTERN.match(name):
                raise ValueError(f"path name {name!r} is not valid for file discovery: it must "
                                 f"end in .json, .yml or .yaml (a '*' only in the last element)")
        return value


def _group(item: Any, where: str) -> tuple[tuple[dict[str, str], ...], dict[str, str]]:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a target group must be a mapping with targets and labels")
    unknown = set(item) - {"targets", "labels"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    targets = item.get("targets") or []
    labels = item.get("labels") or {}
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ValueError(f"{where}: targets must be a list of strings")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                               for k, v in labels.items()):
        raise ValueError(f"{where}: labels must map label names to string values")
    return tuple({"__address__": t} for t in targets), dict(labels)


def read_groups(path: str) -> list[TargetGroup]:
    """The target groups of one file; raises OSError / ValueError with the reason."""
    with open(path, "rb") as f:
        content = f.read()
    if path.lower().endswith(".json"):
        data = json.loads(content or b"null")
    else:
        data = yaml.safe_load(content)
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ValueError("the file must hold a list of target groups")
    groups = []
    for i, item in enumerate(data):
        if item is None:
            raise ValueError(f"group {i}: nil target group item found")
        targets, labels = _group(item, f"group {i}")
        labels["__meta_filepath"] = path
        groups.append(TargetGroup(source=f"{path}:{i}", targets=targets, labels=labels))
    return groups


class FileDiscoverer:
    def __init__(self, cfg: FileSDConfig, job_name: str = "") -> None:
        self.cfg = cfg
        self.job_name = job_name
        self._last: dict[str, int] = {}  # file → number of groups last sent
        self._stamps: dict[str, tuple[float, int]] = {}

    def _list(self) -> list[str]:
        out: set[str] = set()
        for pattern in self.cfg.files:
            out.update(p for p in glob.glob(pattern) if os.path.isfile(p))
        return sorted(out)

    def _stat(self, files: list[str]) -> dict[str, tuple[float, int]]:
        stamps = {}
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamps[path] = (st.st_mtime, st.st_size)
        return stamps

    def refresh(self, send: Callable[[list[TargetGroup]], None]) -> None:
        files = self._list()
        counts: dict[str, int] = {}
        for path in files:
            try:
                groups = read_groups(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.error("file_sd (job %s): error reading %s, keeping its previous targets: %s",
                          self.job_name, path, exc)
                if path in self._last:
                    counts[path] = self._last[path]
                continue
            send(groups)
            counts[path] = len(groups)
        for path, n in self._last.items():  # groups that disappeared: empty updates remove them
            m = counts.get(path, 0)
            if m < n:
                send([TargetGroup(source=f"{path}:{i}", targets=()) for i in range(m, n)])
        self._last = counts
        self._stamps = self._stat(files)

    async def run(self, send: Callable[[list[TargetGroup]], None]) -> None:
        loop = asyncio.get_running_loop()
        self.refresh(send)
        next_full = loop.time() + self.cfg.refresh_interval
        while True:
            await asyncio.sleep(min(WATCH_PERIOD, self.cfg.refresh_interval))
            if loop.time() >= next_full or self._stat(self._list()) != self._stamps:
                self.refresh(send)
                next_full = loop.time() + self.cfg.refresh_interval
