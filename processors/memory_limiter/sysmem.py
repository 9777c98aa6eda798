"""What the memory limiter asks the operating system: the process RSS, the total memory it may
use (the cgroup limit of its container, else the physical memory), and giving memory back.

The Collector measures its Go heap; a Python process with an embedded ClickHouse has no single
heap, and RSS is what the kernel's OOM killer and a container limit act on.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable
from pathlib import Path

import psutil

from gateway.workers import owner_pid

# cgroup v1 writes "no limit" as the largest page-aligned int64; anything this large is no limit
_UNLIMITED = 1 << 62


def process_rss() -> int:
    """Resident set size of the gateway, in bytes: this process, or with `--workers` the owner
    and its workers together. A container limit counts them all, so each process's limiter acts
    on the sum and `limit_mib` stays the gateway's limit however many processes share it
    (pages the processes share, such as the interpreter's libraries, count once per process:
    the sum errs on the safe side)."""
    owner = owner_pid()
    if owner is None:
        return int(psutil.Process().memory_info().rss)  # not cached: stays right after a fork
    try:
        root = psutil.Process(owner)
        processes = [root, *root.children()]
    except psutil.Error:  # the owner is gone: this worker is about to stop
        return int(psutil.Process().memory_info().rss)
    total = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):  # a worker that exited meanwhile
            total += proc.memory_info().rss
    return total


def physical_memory() -> int:
    return int(psutil.virtual_memory().total)


def total_memory(proc: Path = Path("/proc/self")) -> int:
    """The memory this process may use: its cgroup limit when one is set, else the physical
    memory (a cgroup limit above the physical memory cannot be reached, so the smaller wins)."""
    physical = physical_memory()
    limit = cgroup_memory_limit(proc)
    return min(limit, physical) if limit else physical


def cgroup_memory_limit(proc: Path = Path("/proc/self")) -> int | None:
    """The tightest memory limit on the cgroups this process is in (cgroup v2 `memory.max`,
    v1 `memory.limit_in_bytes`, of its own group and every ancestor), None when unlimited or
    when there are no cgroups (not Linux)."""
    try:
        membership = _membership((proc / "cgroup").read_text())
        mounts = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in mounts:
        mount = _cgroup_mount(line)
        if mount is None:
            continue
        root, mount_point, controller, filename = mount
        path = membership.get(controller)
        if path is None:
            continue
        limit = _tightest(Path(mount_point), _relative(path, root), filename)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _membership(text: str) -> dict[str, str]:
    """/proc/self/cgroup: controller → cgroup path; "" is the cgroup v2 hierarchy."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _cgroup_mount(line: str) -> tuple[str, str, str, str] | None:
    """(root, mount point, controller, limit file) of a memory cgroup mount in mountinfo."""
    head, sep, tail = line.partition(" - ")
    fields, rest = head.split(), tail.split()
    if not sep or len(fields) < 5 or len(rest) < 3:
        return None
    root, mount_point = _unescape(fields[3]), _unescape(fields[4])
    if rest[0] == "cgroup2":
        return root, mount_point, "", "memory.max"
    if rest[0] == "cgroup" and "memory" in rest[2].split(","):
        return root, mount_point, "memory", "memory.limit_in_bytes"
    return None


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def _relative(path: str, root: str) -> str:
    """The process's cgroup below the mount: a container sees its own group mounted as root."""
    if root == "/":
        return path.strip("/")
    if path == root or path.startswith(root + "/"):
        return path[len(root):].strip("/")
    return ""  # outside what is mounted here: only the mount point itself can be read


def _tightest(mount_point: Path, relative: str, filename: str) -> int | None:
    found = None
    directory = mount_point / relative if relative else mount_point
    while True:
        limit = _read_limit(directory / filename)
        if limit is not None:
            found = limit if found is None else min(found, limit)
        if directory == mount_point or mount_point not in directory.parents:
            return found
        directory = directory.parent


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max" (v2), or unreadable
        return None
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0): hands free heap pages of every arena back to the kernel.

    CPython frees large buffers with free(), and glibc keeps that memory in its arenas, so
    without this the RSS of a process that has been flooded would not come down."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_trim = _malloc_trim() if os.name == "posix" else None


def release_memory() -> None:
    """Collect garbage cycles, then return free heap memory to the operating system."""
    gc.collect()
    if _trim is not None:
        _trim()  # ctypes releases the GIL for the call
