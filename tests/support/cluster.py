"""A real Redis Cluster for tests: 3 masters + 3 replicas, six redis-server processes on free loopback ports.

``redis-cli --cluster create`` builds it; the block waits until every node reports ``cluster_state:ok`` and
every replica is attached. The node timeout is short (1 s) so a killed master's replica takes over in a few
seconds. Every process is stopped by its PID when the block ends.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port, redis_server_binary, stop_process, wait_for_port

NODE_TIMEOUT_MS = 1000


@dataclass
class ClusterNode:
    """One redis-server of the cluster."""

    port: int
    directory: Path
    bus_port: int = field(default_factory=free_port)
    """Port of the cluster bus (by default port + 10,000, which may be taken or beyond 65535)."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # A replica whose master died at once may take over (no stale-data guard in a test).
            "--cluster-replica-validity-factor", "0",
            # The other shards keep serving while one has no master (the default stops the whole cluster).
            "--cluster-require-full-coverage", "no",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to hand anything over."""
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGKILL)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def cli(self, *args: str, timeout: float = 10.0) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return out.stdout.decode()

    def info(self, section: str) -> dict[str, str]:
        """``CLUSTER INFO`` (section ``cluster``) or ``INFO <section>`` as a dict."""
        command = ("CLUSTER", "INFO") if section == "cluster" else ("INFO", section)
        fields = {}
        for line in self.cli(*command).splitlines():
            if ":" in line:
                name, _, value = line.strip().partition(":")
                fields[name] = value
        return fields


@dataclass
class RedisCluster:
    """Six nodes; ``masters`` and ``replicas`` as ``redis-cli --cluster create`` assigned them."""

    nodes: list[ClusterNode] = field(default_factory=list)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleetcast-cluster-")))

    @property
    def url(self) -> str:
        """The seed list as ``--redis-url`` takes it in cluster mode: every node, comma-separated."""
        alive = [n for n in self.nodes if n.proc is not None]
        return "redis://" + ",".join(n.address for n in alive)

    def start(self, size: int = 6) -> None:
        for index in range(size):
            node_dir = self.directory / f"n{index}"
            node_dir.mkdir()
            node = ClusterNode(port=free_port(), directory=node_dir)
            self.nodes.append(node)
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes), "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        self.wait_ok()

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.proc is not None]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and knows 3 masters each with a replica alive."""
        deadline = time.monotonic() + timeout
        states: list[str | None] = []
        while True:
            try:
                states = [n.info("cluster").get("cluster_state") for n in self.alive()]
                if all(s == "ok" for s in states) and len(self.masters()) == 3:
                    return
            except subprocess.SubprocessError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok within {timeout} s: {states}")
            time.sleep(0.1)

    def roles(self) -> dict[int, str]:
        """Port -> ``master`` / ``slave`` as the live nodes report themselves."""
        return {n.port: n.info("replication").get("role", "?") for n in self.alive()}

    def masters(self) -> list[ClusterNode]:
        roles = self.roles()
        return [n for n in self.alive() if roles.get(n.port) == "master"]

    def slot_owners(self) -> dict[int, ClusterNode]:
        """Slot -> the live master serving it, as each master reports its own slots (``CLUSTER NODES``)."""
        owners = {}
        for node in self.masters():
            for line in node.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if "myself" not in parts[2]:
                    continue
                for span in parts[8:]:
                    low, _, high = span.partition("-")
                    if low.isdigit():
                        owners.update(dict.fromkeys(range(int(low), int(high or low) + 1), node))
        return owners

    def move_slot(self, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        """Reshard one slot from ``source`` to ``target`` the way ``redis-cli --cluster reshard`` does: mark it
        importing/migrating, MIGRATE its keys in batches, then assign it to ``target`` on every master."""
        source_id, target_id = (n.cli("CLUSTER", "MYID").strip() for n in (source, target))
        target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        while keys := source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
            source.cli("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
        for node in (target, source, *(m for m in self.masters() if m not in (source, target))):
            node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """A fresh 3+3 cluster for the block; every node stopped by PID and its files removed afterwards."""
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
