"""The operator under test: the real kopf runtime against kmock's Kubernetes emulator and a real Redis.

:func:`emulator` serves the built-in resources plus our two CRDs (verbs and the ``status`` subresource as
the API server would announce them). :func:`running_operator` starts the operator as the program does, with a
fresh registry, and stops it by its stop flag within a bounded time; its clients are closed either way.
Objects are created through the emulator's HTTP API, so they produce watch events (assigning them directly
would not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock

from fleetcast_operator import wiring
from fleetcast_operator.fleet_redis import RedisPool
from fleetcast_operator.kube import Kube
from fleetcast_operator.runtime import Runtime, Settings

NAMESPACE = "realtime"
GATEWAYS = "fleetcast.dev/v1alpha1/gateways"
CHANNELS = "fleetcast.dev/v1alpha1/channels"
CRUD = {"get", "list", "watch", "create", "update", "patch", "delete"}


_VERSIONS = itertools.count(100)
RV_PATH = "/metadata/resourceVersion"


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus one thing a real API server does: a new ``resourceVersion`` on every write.

    kopf relies on it: after patching an object it skips watch events older than its own patch. With a
    constant version it would take its own earlier events for new ones and run creation handlers again.
    """

    async def _handle(self, request: kmock.Request) -> Any:
        writes = (kmock.action.CREATE, kmock.action.UPDATE)
        if request.resource is not None and request.action in writes:
            version = str(next(_VERSIONS))
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            elif isinstance(request.data, list):
                # A JSON patch (kopf's finalizers): last writer wins, as for every other write here. Its
                # optimistic "test" of the version is dropped: kopf would only retry on the next watch event,
                # which the emulator's timing may never deliver for an object nobody else touches.
                ops = [op for op in request.data if not (op.get("op") == "test" and op.get("path") == RV_PATH)]
                request.data[:] = [*ops, {"op": "replace", "path": RV_PATH, "value": version}]
        return await super()._handle(request)


@contextlib.asynccontextmanager
async def emulator() -> AsyncIterator[tuple[kmock.KubernetesEmulator, str]]:
    async with Emulator() as k8s, kmock.Server(k8s) as server:
        with warnings.catch_warnings():
            # kmock 0.8 reads its bundle with importlib.resources.read_binary, deprecated on Python 3.11+.
            warnings.simplefilter("ignore", DeprecationWarning)
            k8s.resources.load_bundled()
        for plural, kind in (("gateways", "Gateway"), ("channels", "Channel")):
            k8s.resources[f"fleetcast.dev/v1alpha1/{plural}"] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=True, verbs=CRUD, subresources={"status"}
            )
        yield k8s, str(server.url).rstrip("/")


@contextlib.asynccontextmanager
async def running_operator(url: str, **settings: Any) -> AsyncIterator[None]:
    """The operator serving :data:`NAMESPACE` until the block ends, in a thread with its own event loop.

    A thread, because kopf treats every task created on its loop after its start as its own and waits 5 s for
    them at exit: the emulator's connection tasks would cost every stop 5 s. In its own loop the operator
    owns exactly its tasks, as in production. Its failures are re-raised here when the block ends.
    """
    options: dict[str, Any] = {
        "autoscale_interval": 0.3,
        "channel_status_interval": 0.5,
        "namespaces": (NAMESPACE,),
    }
    options.update(settings)
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def serve() -> None:
        pool = RedisPool()
        kube = Kube.for_server(url)
        rt = Runtime(settings=Settings(**options), kube=kube, fleet_for_url=pool.get, close_fleets=pool.close)
        try:
            await wiring.run(rt, stop_flag=stop, ready_flag=ready)
        finally:
            await rt.close()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="operator under test", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start within 10 s"
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
        assert not thread.is_alive(), "the operator did not stop within 15 s"
    if failures:
        raise failures[0]


def path(resource: str, name: str | None = None, namespace: str = NAMESPACE) -> str:
    group_version, plural = resource.rsplit("/", 1)
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def new_object(api_version: str, kind: str, name: str, spec: Any = None, **extra: Any) -> dict[str, Any]:
    """A body with what the API server would add: uid, resourceVersion, generation, creationTimestamp."""
    body: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        **extra,
    }
    if spec is not None:
        body["spec"] = spec
    return body


async def create(k8s: kmock.KubernetesEmulator, resource: str, body: dict[str, Any]) -> None:
    async with k8s.post(path(resource), json=body) as response:
        assert response.status < 300, await response.text()


async def delete(k8s: kmock.KubernetesEmulator, resource: str, name: str) -> None:
    async with k8s.delete(path(resource, name)) as response:
        assert response.status < 300, await response.text()


def current(k8s: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    """The stored object now, or None if absent or deleted."""
    try:
        stored = k8s.objects[resource, NAMESPACE, name]
    except KeyError:
        return None
    return None if stored.deleted else dict(stored.raw)


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds with ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
