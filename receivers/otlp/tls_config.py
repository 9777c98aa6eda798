"""The `tls` block of an OTLP listener: the Collector's configtls.ServerConfig, checked when the
configuration loads (files are read when the listener starts: receivers/otlp/tls.py)."""

from __future__ import annotations

import ssl

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.types import ComponentConfig, Duration

VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
            "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# Go's crypto/tls CipherSuites() names (what Collector YAML lists) → OpenSSL names. The TLS 1.3
# suites are not configurable in Go either; they are accepted and always on.
CIPHER_SUITES = {
    "TLS_AES_128_GCM_SHA256": "", "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}


class TlsServerConfig(ComponentConfig):
    """The Collector's configtls.ServerConfig."""

    cert_file: str = Field("", description="Server certificate (PEM; the chain may follow it).")
    cert_pem: str = Field("", description="Server certificate as PEM text, instead of cert_file.")
    key_file: str = Field("", description="Private key of the certificate (PEM, unencrypted).")
    key_pem: SecretStr = Field(SecretStr(""), description="Private key as PEM text, instead of "
                                                          "key_file.")
    client_ca_file: str = Field("", description="CA certificates (PEM) that client certificates "
                                                "must chain to; setting it requires and verifies "
                                                "a client certificate on every connection (mTLS).")
    client_ca_file_reload: bool = Field(False, description="Reload client_ca_file when it "
                                                           "changes (checked about every second).")
    ca_file: str = Field("", description="Trust roots of a client; unused by a server (as in "
                                         "the Collector): use client_ca_file for mTLS.")
    ca_pem: str = Field("", description="As ca_file, as PEM text; unused by a server.")
    include_system_ca_certs_pool: bool = Field(False, description="Also trust the system CA "
                                                                  "certificates for client "
                                                                  "certificates.")
    min_version: str = Field("1.2", description="Lowest TLS version accepted: 1.0, 1.1, 1.2 or "
                                                "1.3 (empty: 1.2). gRPC always accepts 1.2.")
    max_version: str = Field("", description="Highest TLS version accepted (empty: the highest "
                                             "supported, 1.3). gRPC always offers 1.3.")
    cipher_suites: list[str] = Field(default_factory=list, description=(
        "TLS 1.0-1.2 cipher suites by their Go/IANA names, e.g. "
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (empty: a safe default list; TLS 1.3 suites are "
        "always on). HTTP listener only."))
    curve_preferences: list[str] = Field(default_factory=list, description=(
        "Not supported (Python's ssl module cannot set the key exchange groups); must be empty."))
    reload_interval: Duration = Field(0.0, ge=0, description="Check cert_file and key_file for "
                                                             "changes this often and reload them "
                                                             "(0: never).")

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value and value not in VERSIONS:
            raise ValueError(f"unsupported TLS version {value!r}: use 1.0, 1.1, 1.2 or 1.3")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in CIPHER_SUITES]
        if unknown:
            raise ValueError(f"invalid TLS cipher suite(s) {', '.join(map(repr, unknown))}; "
                             f"supported: {', '.join(CIPHER_SUITES)}")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError("curve_preferences is not supported by otelgw (Python's ssl module "
                             "cannot choose the key exchange groups); remove it")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> TlsServerConfig:
        has_key_pem = bool(self.key_pem.get_secret_value())
        if self.cert_file and self.cert_pem:
            raise ValueError("provide either cert_file or cert_pem, not both")
        if self.key_file and has_key_pem:
            raise ValueError("provide either key_file or key_pem, not both")
        if self.ca_file and self.ca_pem:
            raise ValueError("provide either ca_file or ca_pem, not both")
        has_cert = bool(self.cert_file or self.cert_pem)
        has_key = bool(self.key_file or has_key_pem)
        if has_cert != has_key:
            raise ValueError("provide both a certificate (cert_file) and its key (key_file), or "
                             "neither")
        if not has_cert:
            raise ValueError("a TLS server needs a certificate: set cert_file and key_file")
        if self.client_ca_file_reload and not self.client_ca_file:
            raise ValueError("client_ca_file_reload needs client_ca_file")
        low, high = self.tls_versions()
        if high is not None and high < low:
            raise ValueError("min_version cannot be greater than max_version")
        return self

    def tls_versions(self) -> tuple[ssl.TLSVersion, ssl.TLSVersion | None]:
        return VERSIONS[self.min_version or "1.2"], VERSIONS.get(self.max_version)


def check_grpc(cfg: TlsServerConfig) -> None:
    """What grpc.aio cannot enforce (see the module docstring); raises ValueError."""
    low, high = cfg.tls_versions()
    if low > ssl.TLSVersion.TLSv1_2:
        raise ValueError("min_version 1.3 cannot be enforced on the gRPC listener (grpc.aio "
                         "always offers TLS 1.2 and 1.3)")
    if high is not None and high < ssl.TLSVersion.TLSv1_2:
        raise ValueError("gRPC needs TLS 1.2 or later (HTTP/2); max_version must be 1.2 or more")
    if cfg.cipher_suites:
        raise ValueError("cipher_suites cannot be set on the gRPC listener (grpc.aio has no "
                         "setting for them); remove it or use the HTTP listener")
