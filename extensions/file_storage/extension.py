"""The `file_storage` extension: a directory where components keep state on disk.

Here it holds exporters' sending queues (`sending_queue.storage: file_storage`), as in the
Collector; each component gets a subdirectory of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from extensions.file_storage.config import FileStorageConfig
from gateway.component import ComponentID, Host
from gateway.errors import ConfigError


class FileStorage:
    def __init__(self, cid: ComponentID, cfg: FileStorageConfig) -> None:
        self.id = cid
        self.cfg = cfg

    async def start(self, host: Host) -> None:
        path = Path(self.cfg.directory)
        if path.is_dir():
            return
        if path.exists():
            raise ConfigError([f"extensions::{self.id}: directory {path} is not a directory"])
        if not self.cfg.create_directory:
            raise ConfigError([f"extensions::{self.id}: directory {path} must exist; set "
                               "create_directory: true to create it"])
        try:
            path.mkdir(mode=int(self.cfg.directory_permissions, 8), parents=True)
        except OSError as exc:
            raise ConfigError([f"extensions::{self.id}: cannot create {path}: {exc}"]) from None

    async def shutdown(self) -> None:
        pass

    def directory_for(self, kind: str, cid: ComponentID) -> Path:
        """The subdirectory of the component `kind` (exporter, receiver, …) `cid`."""
        name = f"{kind}_{cid.type}" + (f"_{cid.name}" if cid.name else "")
        # a component name may hold any character; a path component may not
        return Path(self.cfg.directory) / name.replace(os.sep, "_")
