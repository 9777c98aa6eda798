"""`extensions.bearertokenauth` configuration, with the Collector contrib names and defaults.

The tokens an OTLP listener with `auth: {authenticator: bearertokenauth}` accepts, in the
`Authorization: Bearer <token>` header (gRPC metadata `authorization`). Tokens are compared in
constant time; any other request gets 401 with WWW-Authenticate / UNAUTHENTICATED before its
body is read. Tokens never appear in logs or errors. Put them in a file or an environment
variable (`token: ${env:OTLP_TOKEN}`), not in the YAML itself.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from gateway.config.types import ComponentConfig


class BearerTokenAuthConfig(ComponentConfig):
    header: str = Field("Authorization", min_length=1,
                        description="Request header (gRPC metadata key) that carries the token.")
    scheme: str = Field("Bearer", description="Auth scheme before the token in the header "
                                              "value (`<scheme> <token>`); empty: the bare token.")
    token: SecretStr = Field(SecretStr(""), description="The accepted token.")
    tokens: list[SecretStr] = Field(default_factory=list,
                                    description="Several accepted tokens (instead of token), "
                                                "e.g. the old and the new one during a rotation.")
    filename: str = Field("", description="File with the accepted token(s), one per line; read "
                                          "at start and again whenever it changes (token and "
                                          "tokens are then ignored).")

    @model_validator(mode="after")
    def _one_source(self) -> BearerTokenAuthConfig:
        token = self.token.get_secret_value()
        if not token and not self.tokens and not self.filename:
            raise ValueError("no bearer token provided: set token, tokens or filename")
        if token and self.tokens:
            raise ValueError("either tokens or token should be provided, not both")
        if any(not t.get_secret_value().strip() for t in self.tokens):
            raise ValueError("tokens: an empty token would let anyone in")
        return self
