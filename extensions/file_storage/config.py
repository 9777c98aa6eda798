"""`extensions.file_storage` configuration: the contrib extension's options (v0.129)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.config.types import ComponentConfig, Duration


class Compaction(ComponentConfig):
    """Accepted for compatibility: otelgw's queues are segment files deleted once sent, so there
    is no database file to compact."""

    on_start: bool = Field(False, description="Accepted for compatibility.")
    on_rebound: bool = Field(False, description="Accepted for compatibility.")
    directory: str = Field("", description="Accepted for compatibility.")
    max_transaction_size: int = Field(65536, ge=0, description="Accepted for compatibility.")
    rebound_needed_threshold_mib: int = Field(100, description="Accepted for compatibility.")
    rebound_trigger_threshold_mib: int = Field(10, description="Accepted for compatibility.")
    check_interval: Duration = Field(5.0, description="Accepted for compatibility.")
    cleanup_on_start: bool = Field(False, description="Accepted for compatibility.")


class FileStorageConfig(ComponentConfig):
    directory: str = Field("/var/lib/otelcol/file_storage", description=(
        "Directory of the stored state: each component that uses it (`sending_queue.storage`) "
        "gets a subdirectory named `<kind>_<type>[_<name>]`, e.g. `exporter_clickhouse`."))
    timeout: Duration = Field(1.0, description="Accepted for compatibility (a file lock wait).")
    fsync: bool = Field(False, description=(
        "Accepted for compatibility: a sending queue's durability is its own `fsync` policy "
        "(`batch` by default: fsync before the acknowledgement)."))
    create_directory: bool = Field(False, description=(
        "Create `directory` at start when it is missing (else a missing directory is an error)."))
    directory_permissions: str = Field("0750", description=(
        "Octal permissions of a directory created by `create_directory` (minus the umask)."))
    compaction: Compaction = Field(default_factory=Compaction)

    @field_validator("directory_permissions")
    @classmethod
    def _octal(cls, value: str) -> str:
        try:
            mode = int(value, 8)
        except ValueError:
            raise ValueError("directory_permissions must be an octal number such as 0750") \
                from None
        if mode & 0o777 != mode:
            raise ValueError("directory_permissions may only hold permission bits (0000-0777)")
        return value
