"""Factory of the `bearertokenauth` extension."""

from extensions.bearertokenauth.config import BearerTokenAuthConfig
from extensions.bearertokenauth.extension import BearerTokenAuth
from gateway.component import Factory, Kind

factory = Factory(kind=Kind.EXTENSION, type="bearertokenauth", config_model=BearerTokenAuthConfig,
                  create=BearerTokenAuth)
