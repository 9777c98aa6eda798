"""Factory of the `file_storage` extension."""

from extensions.file_storage.config import FileStorageConfig
from extensions.file_storage.extension import FileStorage
from gateway.component import Factory, Kind

factory = Factory(kind=Kind.EXTENSION, type="file_storage", config_model=FileStorageConfig,
                  create=FileStorage)
