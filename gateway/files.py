"""Durable file steps shared by the sending queue's log, its dead letters and the k8s_events
checkpoint: a file's contents replaced atomically, and a name made durable by syncing the
directory that holds it (after a crash a new or renamed file is only there if its directory
reached the disk). And which filesystem a path is on, with its mount options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import psutil


class Mount(NamedTuple):
    point: str
    fstype: str
    options: frozenset[str]


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (its entries), by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, fsync: bool = True) -> None:
    """`path` holds `data` or its old contents, never a mix: written beside it, then renamed
    over it. With `fsync` the data is on disk before the rename; the rename itself is durable
    once the caller syncs the directory (fsync_path(path.parent))."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def mount_of(path: Path) -> Mount | None:
    """The mount that holds `path`: the longest mount point above its real path (of two at the
    same point, the later one, which hides the other). None where the mount table cannot be
    read."""
    real = os.path.realpath(path)
    try:
        parts = psutil.disk_partitions(all=True)
    except OSError:
        return None
    best: Mount | None = None
    for p in parts:
        point = p.mountpoint
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, p.fstype, frozenset(p.opts.split(",")))
    return best
