"""Redis URLs as pods and the operator read them: one server, or the seed list of a Redis Cluster.

A cluster URL lists its seed nodes in one URL, ``redis://[user:password@]host1:port1,host2:port2`` (``rediss://``
for TLS; a query string such as ``?ssl_cert_reqs=none`` applies to every node). Any one reachable seed is enough:
the client discovers the rest of the topology. A cluster has only database 0, so a path other than ``/0`` is
refused rather than ignored.

Stdlib only: the operator parses the same URLs with it.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["standalone", "cluster"]
MODES: tuple[Mode, ...] = ("standalone", "cluster")


def seed_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """Split a cluster URL into a single-node URL (scheme, credentials and options of the first seed: what every
    node shares) and the seeds as ``(host, port)``. Raises ValueError with a readable message for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis URL starts with redis:// or rediss://, not {url.split('://')[0][:20]!r}://")
    credentials, _, hosts = parts.netloc.rpartition("@")
    seeds = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"seed {item.strip()[:100]!r} of the Redis URL is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0; drop the path from the Redis URL")
    first_host, first_port = seeds[0]
    address = f"[{first_host}]:{first_port}" if ":" in first_host else f"{first_host}:{first_port}"
    first = f"{parts.scheme}://{credentials + '@' if credentials else ''}{address}"
    if parts.query:
        first += "?" + parts.query
    return first, seeds
