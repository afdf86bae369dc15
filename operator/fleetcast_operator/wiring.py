"""kopf's side of the operator: the only module importing ``kopf``.

It registers handlers in a registry of our own (never kopf's global one, so tests can start and restart the
operator in one process) and turns kopf's arguments into calls of plain functions. The decisions live
elsewhere; here are only the choices about kopf itself:

* standalone: no peering (the chart runs one replica with ``strategy: Recreate``; kopf has no Lease election);
* no CRD or namespace scanning: the CRDs are installed with the chart, so their discovery needs no watch;
* handlers have explicit ids: they name kopf's progress annotations, and nested function names would not
  be valid annotation keys;
* Gateways are indexed by namespace, so a Channel finds the Redis instances of its namespace, and kopf
  holds the other handlers back until that index is complete;
* only warnings become Kubernetes events (a bad spec), not every handler's success;
* a dependency failure retries with a delay; a bad spec gets a condition and an event, never a retry loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from fleetcast_operator import conditions, tracing
from fleetcast_operator.autoscaler.tick import GatewayMemory, autoscale_step
from fleetcast_operator.channels.policy import channel_policy
from fleetcast_operator.channels.sync import ChannelMemory, gateway_refs, remove_channel, sync_channel
from fleetcast_operator.errors import InvalidSpec, TemporaryFailure
from fleetcast_operator.gateway.apply import apply_children
from fleetcast_operator.gateway.spec import parse_gateway_spec
from fleetcast_operator.runtime import Runtime

GATEWAYS = ("fleetcast.dev", "v1alpha1", "gateways")
CHANNELS = ("fleetcast.dev", "v1alpha1", "channels")
RETRY_DELAY_SECONDS = 5.0
DELETE_RETRIES = 10
"""A Channel whose Redis stays unreachable is still deleted after this many attempts (its policy may linger)."""


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = "fleetcast.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="fleetcast.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="fleetcast.dev", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    return settings


def _gateway_memory(memo: Any) -> GatewayMemory:
    memory = memo.get("fleetcast")
    if not isinstance(memory, GatewayMemory):
        memory = memo["fleetcast"] = GatewayMemory()
    return memory


def _channel_memory(memo: Any) -> ChannelMemory:
    memory = memo.get("fleetcast")
    if not isinstance(memory, ChannelMemory):
        memory = memo["fleetcast"] = ChannelMemory()
    return memory


def _gateways_of(index: Mapping[str, Iterable[Mapping[str, Any]]] | None, namespace: str) -> list[Mapping[str, Any]]:
    """The index entries of a namespace (kopf always passes the index; None only satisfies the type)."""
    return list((index or {}).get(namespace, ()))


def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    """A fresh registry whose handlers all act through ``rt``."""
    registry = kopf.OperatorRegistry()
    log = logging.getLogger("fleetcast_operator")

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        info = rt.kube.login
        return kopf.ConnectionInfo(
            server=info.server,
            token=info.token,
            scheme="Bearer" if info.token else None,
            ca_path=info.ca_path,
            certificate_path=info.certificate_path,
            private_key_path=info.private_key_path,
            insecure=info.insecure,
            default_namespace=info.default_namespace,
        )

    @kopf.index(*GATEWAYS, registry=registry, id="gateways_by_namespace")
    def gateways_by_namespace(
        namespace: str | None, name: str, spec: Mapping[str, Any], **_: Any
    ) -> dict[str | None, Any]:
        return {namespace: {"name": name, "redis": dict(spec.get("redis") or {})}}

    async def write_gateway_condition(
        namespace: str, name: str, memory: GatewayMemory, ok: bool, reason: str, message: str
    ) -> None:
        async with memory.status_lock:
            fresh = await rt.kube.get_gateway(namespace, name)
            current = ((fresh or {}).get("status") or {}).get("conditions")
            patch = {"conditions": conditions.upsert(current, "Ready", ok, reason, message)}
            await rt.kube.patch_gateway_status(namespace, name, patch)

    @kopf.on.resume(*GATEWAYS, registry=registry, id="reconcile")
    @kopf.on.create(*GATEWAYS, registry=registry, id="reconcile")
    @kopf.on.update(*GATEWAYS, field="spec", registry=registry, id="reconcile")
    async def reconcile_gateway(
        name: str, namespace: str | None, uid: str, spec: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        memory, namespace = _gateway_memory(memo), namespace or ""
        with tracing.span("reconcile Gateway", {"k8s.namespace.name": namespace, "fleetcast.gateway": name}) as span:
            try:
                parsed = parse_gateway_spec(spec)
                applied = await apply_children(rt.kube, name, namespace, uid, parsed)
                message = _describe(applied.created)
                span.set_attribute("fleetcast.reconcile.result", message)
                await write_gateway_condition(namespace, name, memory, True, "Reconciled", message)
            except InvalidSpec as exc:
                span.set_attribute("fleetcast.reconcile.result", "InvalidSpec")
                kopf.warn(body, reason="InvalidSpec", message=str(exc))
                await write_gateway_condition(namespace, name, memory, False, "InvalidSpec", str(exc))
            except TemporaryFailure as exc:
                raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc

    @kopf.timer(*GATEWAYS, interval=rt.settings.autoscale_interval, registry=registry, id="autoscale")
    async def autoscale(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
        try:
            await autoscale_step(rt, namespace or "", name, _gateway_memory(memo))
        except TemporaryFailure as exc:
            log.warning("autoscaler step for %s/%s failed, retrying on the next one: %s", namespace, name, exc)

    @kopf.on.resume(*CHANNELS, registry=registry, id="policy")
    @kopf.on.create(*CHANNELS, registry=registry, id="policy")
    @kopf.on.update(*CHANNELS, field="spec", registry=registry, id="policy")
    async def apply_channel(
        name: str,
        namespace: str | None,
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
        body: kopf.Body,
        patch: kopf.Patch,
        gateways_by_namespace: kopf.Index[str, Any] | None = None,
        **_: Any,
    ) -> None:
        namespace, previous = namespace or "", status.get("conditions")
        try:
            policy = channel_policy(name, spec)
        except InvalidSpec as exc:
            kopf.warn(body, reason="InvalidSpec", message=str(exc))
            patch.status["conditions"] = conditions.upsert(previous, "Ready", False, "InvalidSpec", str(exc))
            return
        refs = gateway_refs(_gateways_of(gateways_by_namespace, namespace))
        result = await sync_channel(rt, namespace, name, policy, refs)
        patch.status["conditions"] = conditions.upsert(previous, "Ready", result.ready, result.reason, result.message)
        patch.status["observedGeneration"] = body.metadata.get("generation")

    @kopf.timer(*CHANNELS, interval=rt.settings.channel_status_interval, registry=registry, id="status")
    async def channel_status(
        name: str,
        namespace: str | None,
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
        memo: kopf.Memo,
        patch: kopf.Patch,
        gateways_by_namespace: kopf.Index[str, Any] | None = None,
        **_: Any,
    ) -> None:
        namespace = namespace or ""
        try:
            policy = channel_policy(name, spec)
        except InvalidSpec:
            return  # Reported by apply_channel; nothing to refresh.
        refs = gateway_refs(_gateways_of(gateways_by_namespace, namespace))
        result = await sync_channel(rt, namespace, name, policy, refs, _channel_memory(memo))
        for key, value in result.status.items():
            patch.status[key] = value
        previous = status.get("conditions")
        patch.status["conditions"] = conditions.upsert(previous, "Ready", result.ready, result.reason, result.message)

    @kopf.on.delete(*CHANNELS, registry=registry, retries=DELETE_RETRIES, id="remove-policy")
    async def delete_channel(
        name: str,
        namespace: str | None,
        body: kopf.Body,
        gateways_by_namespace: kopf.Index[str, Any] | None = None,
        **_: Any,
    ) -> None:
        namespace = namespace or ""
        refs = gateway_refs(_gateways_of(gateways_by_namespace, namespace))
        try:
            await remove_channel(rt, namespace, name, refs)
        except InvalidSpec as exc:
            kopf.warn(body, reason="PolicyNotRemoved", message=str(exc))
        except TemporaryFailure as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc

    return registry


def _describe(created: tuple[str, ...]) -> str:
    return f"created {', '.join(created)}" if created else "Deployment, Service and PodDisruptionBudget up to date"


async def run(
    rt: Runtime,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or a signal arrives); the caller closes ``rt``.

    Threading events are accepted too (kopf supports them), so the operator can run in a thread of its own.
    """
    await kopf.operator(
        registry=build_registry(rt),
        settings=operator_settings(),
        clusterwide=not rt.settings.namespaces,
        namespaces=list(rt.settings.namespaces),
        liveness_endpoint=rt.settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        standalone=True,
    )
