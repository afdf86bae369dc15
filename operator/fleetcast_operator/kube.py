"""The operator's own Kubernetes API calls, through ``kubernetes_asyncio``: the only module importing it.

kopf talks to the API server for the resources it watches (Gateways, Channels, events) with its own private
client; everything else the operator does (children of a Gateway, pod annotations, a Secret's Redis URL,
the Gateway's status written in a chosen order) goes through :class:`Kube`, so the list of calls in
:mod:`fleetcast_operator.rbac` can be checked against one place. Objects are plain dicts (the generated
models are skipped with ``_preload_content=False``), and every patch is a JSON merge patch, which means the
same thing on a real API server and on the test emulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from fleetcast_operator.errors import TemporaryFailure

MERGE_PATCH = "application/merge-patch+json"
GROUP, VERSION = "fleetcast.dev", "v1alpha1"

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Login:
    """Credentials kopf can use too, so both clients talk to the same server as the same identity."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None
    insecure: bool = False
    default_namespace: str | None = None


class Kube:
    """Typed enough for the operator's needs: get, create and merge-patch a few kinds, as dicts."""

    def __init__(self, api: Any, login: Login) -> None:
        self._api = api
        self.login = login
        apps, core, policy = client.AppsV1Api(api), client.CoreV1Api(api), client.PolicyV1Api(api)
        custom = client.CustomObjectsApi(api)
        self._custom = custom
        self._core = core
        self._read: dict[str, Callable[..., Awaitable[Any]]] = {
            "Deployment": apps.read_namespaced_deployment,
            "Service": core.read_namespaced_service,
            "PodDisruptionBudget": policy.read_namespaced_pod_disruption_budget,
            "Secret": core.read_namespaced_secret,
        }
        self._create: dict[str, Callable[..., Awaitable[Any]]] = {
            "Deployment": apps.create_namespaced_deployment,
            "Service": core.create_namespaced_service,
            "PodDisruptionBudget": policy.create_namespaced_pod_disruption_budget,
        }
        self._patch: dict[str, Callable[..., Awaitable[Any]]] = {
            "Deployment": apps.patch_namespaced_deployment,
            "Service": core.patch_namespaced_service,
            "PodDisruptionBudget": policy.patch_namespaced_pod_disruption_budget,
            "Pod": core.patch_namespaced_pod,
        }

    @classmethod
    async def connect(cls) -> Kube:
        """In a pod: its service account; elsewhere: ``KUBECONFIG`` or ``~/.kube/config``."""
        cfg = client.Configuration()
        namespace: str | None = None
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            namespace = await asyncio.to_thread(_service_account_namespace)
        else:
            await config.load_kube_config(client_configuration=cfg)
        return cls.from_configuration(cfg, default_namespace=namespace)

    @classmethod
    def for_server(cls, server: str) -> Kube:
        """An unauthenticated client for a local API server (the test emulator)."""
        cfg = client.Configuration()
        cfg.host = server.rstrip("/")
        return cls.from_configuration(cfg)

    @classmethod
    def from_configuration(cls, cfg: Any, *, default_namespace: str | None = None) -> Kube:
        header = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        token = header.split(" ", 1)[1] if header and " " in header else header
        login = Login(
            server=cfg.host,
            token=token,
            ca_path=cfg.ssl_ca_cert,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            insecure=not cfg.verify_ssl,
            default_namespace=default_namespace,
        )
        return cls(client.ApiClient(configuration=cfg), login)

    async def close(self) -> None:
        await self._api.close()

    async def get(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        """The object, or None when it does not exist."""
        return await self._call(self._read[kind], name, namespace, missing_ok=True)

    async def create(self, kind: str, namespace: str, body: JsonObject) -> JsonObject:
        result = await self._call(self._create[kind], namespace, body)
        assert result is not None
        return result

    async def patch(self, kind: str, namespace: str, name: str, body: JsonObject) -> JsonObject | None:
        """Merge-patch the object; None when it does not exist (a pod gone meanwhile is not an error)."""
        return await self._call(self._patch[kind], name, namespace, body, missing_ok=True, _content_type=MERGE_PATCH)

    async def get_gateway(self, namespace: str, name: str) -> JsonObject | None:
        """Fresh from the API server, not from a watch event: the autoscaler's progress lives in its status."""
        fn = self._custom.get_namespaced_custom_object
        return await self._call(fn, GROUP, VERSION, namespace, "gateways", name, missing_ok=True)

    async def patch_gateway_status(self, namespace: str, name: str, status: JsonObject) -> JsonObject | None:
        fn = self._custom.patch_namespaced_custom_object_status
        body = {"status": status}
        return await self._call(
            fn, GROUP, VERSION, namespace, "gateways", name, body, missing_ok=True, _content_type=MERGE_PATCH
        )

    async def post_event(
        self, namespace: str, involved: JsonObject, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """A Kubernetes Event about ``involved`` (an object's ``apiVersion``, ``kind`` and ``metadata``), as
        ``kubectl describe`` shows them. Best effort: an event that cannot be posted is not worth a retry."""
        metadata = involved.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: JsonObject = {
            "metadata": {"generateName": f"{metadata.get('name', 'fleetcast')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": metadata.get("name"),
                "namespace": namespace,
                "uid": metadata.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "fleetcast-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(TemporaryFailure):
            await self._call(self._core.create_namespaced_event, namespace, body)

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One decoded value of a Secret, or None when the Secret or the key is missing."""
        secret = await self.get("Secret", namespace, name)
        encoded = ((secret or {}).get("data") or {}).get(key)
        return base64.b64decode(encoded).decode() if encoded else None

    async def _call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> JsonObject | None:
        # With _preload_content=False the client returns the raw response and checks no status: do it here.
        try:
            response = await fn(*args, _preload_content=False, **kwargs)
            async with response:
                if missing_ok and response.status == 404:
                    return None
                if not 200 <= response.status <= 299:
                    text = await response.text()
                    raise TemporaryFailure(f"Kubernetes API: {response.status}: {text[:200]}")
                data: JsonObject = await response.json(content_type=None)
        except ApiException as exc:
            raise TemporaryFailure(f"Kubernetes API: {exc.status} {exc.reason}") from exc
        except OSError as exc:
            raise TemporaryFailure(f"Kubernetes API unreachable: {exc}") from exc
        return data


def _service_account_namespace() -> str | None:
    """The pod's namespace (kopf posts events about cluster-scoped objects there); None outside a pod."""
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return file.read().strip() or None
