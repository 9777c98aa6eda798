"""A throw-away PKI for TLS tests, made with the `openssl` command line at test time: a CA, a
server certificate for localhost/127.0.0.1 and client certificates (one from the CA, one from a
CA the server does not trust)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   timeout=30)


def _key_and_request(cwd: Path, name: str, subject: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)


def make_ca(cwd: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", "-days", "2",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


def make_cert(cwd: Path, name: str, ca: str, usage: str, san: str = "") -> None:
    """`name`.crt/.key signed by `ca`; usage is serverAuth or clientAuth."""
    _key_and_request(cwd, name, f"/CN={name}")
    ext = cwd / f"{name}.ext"
    ext.write_text(f"extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
                   + (f"subjectAltName={san}\n" if san else ""))
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name, cwd=cwd)


@dataclass(frozen=True)
class Pki:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def serial(self, name: str) -> str:
        """The serial number of `name`.crt, as ssl's getpeercert() writes it."""
        out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                              self.path(f"{name}.crt")],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        return out.strip().removeprefix("serial=").upper()


def make_pki(cwd: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    cwd.mkdir(parents=True, exist_ok=True)
    make_ca(cwd, "ca")
    make_ca(cwd, "other-ca")
    make_cert(cwd, "server", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    make_cert(cwd, "server2", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    make_cert(cwd, "client", "ca", "clientAuth")
    make_cert(cwd, "stranger", "other-ca", "clientAuth")
    return Pki(cwd)
