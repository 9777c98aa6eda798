"""Split otelgw's runtime dependencies (pyproject.toml) for the two container images:

    python requirements.py pyproject.toml server     # everything but the embedded engine
    python requirements.py pyproject.toml embedded   # the embedded engine alone (chDB)

The server-mode image installs the first list only: chdb-core brings chDB (~530 MB installed)
plus pandas and pyarrow (~250 MB), none of which a gateway that writes to a ClickHouse server
loads (the exporter imports chdb only when it opens the embedded store).
"""

from __future__ import annotations

import re
import sys
import tomllib

EMBEDDED = {"chdb-core"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(pyproject: dict) -> tuple[list[str], list[str]]:
    server, embedded = [], []
    for spec in pyproject["project"]["dependencies"]:
        match = _NAME.match(spec.strip())
        if match is None:
            raise ValueError(f"cannot read the requirement {spec!r}")
        (embedded if canonical(match.group(0)) in EMBEDDED else server).append(spec.strip())
    return server, embedded


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in ("server", "embedded"):
        print("usage: requirements.py PYPROJECT server|embedded", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        server, embedded = split(tomllib.load(f))
    print("\n".join(server if argv[2] == "server" else embedded))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
