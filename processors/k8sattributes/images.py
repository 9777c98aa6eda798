"""Container image references, read the way the Collector reads them (Docker reference rules).

`rancher/local-path-provisioner:v0.0.30` → name `docker.io/rancher/local-path-provisioner`,
tag `v0.0.30`; no tag and no digest means tag `latest`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}")
_ID_ONLY = re.compile(r"(?:sha256:)?[0-9a-f]{64}")


class ImageRef(NamedTuple):
    name: str
    tag: str
    digest: str


def _split(image: str) -> tuple[str, str, str] | None:
    rest, _, digest = image.partition("@")
    slash, colon = rest.rfind("/"), rest.rfind(":")
    tag = ""
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            return None
    if digest and not _DIGEST.fullmatch(digest):
        return None
    return (rest, tag, digest) if rest else None


def _normalize(name: str) -> str | None:
    first, sep, remainder = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, path = "docker.io", name
    else:
        domain, path = first, remainder
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{domain}/{path}" if _PATH.fullmatch(path) else None


def parse_image(image: str) -> ImageRef | None:
    """The normalized repository, tag and digest; None when it is not a valid reference."""
    if not image or _ID_ONLY.fullmatch(image):
        return None
    parts = _split(image)
    if parts is None:
        return None
    name = _normalize(parts[0])
    if name is None:
        return None
    tag, digest = parts[1], parts[2]
    return ImageRef(name, tag or ("" if digest else "latest"), digest)


def service_version(image: str) -> str:
    """service.version from an image: tag@digest, digest or tag; "" without either."""
    parts = _split(image) if image else None
    if parts is None:
        return ""
    tag, digest = parts[1], parts[2]
    if digest:
        return f"{tag}@{digest}" if tag else digest
    return tag


def repo_digest(image_id: str) -> str:
    """The canonical `name@digest` of a container status's imageID; "" when it has none."""
    _, sep, ref = image_id.rpartition("://")
    ref = ref if sep else image_id
    name, at, digest = ref.partition("@")
    if not at or not _DIGEST.fullmatch(digest):
        return ""
    normalized = _normalize(name.rsplit(":", 1)[0] if name.rfind(":") > name.rfind("/") else name)
    return f"{normalized}@{digest}" if normalized else ""
