"""A test-only fake of what cannot run here: the ReplicaSet controller and the kubelet, for one Deployment.

It is a stand-in, not an implementation. It reads the gateway Deployment that the real operator wrote into
kmock's emulator and does what a cluster would do with it, with real processes:

* **ReplicaSet controller**: keeps ``spec.replicas`` pods. Missing pods are created (a Pod object named like a
  ReplicaSet's, through the emulator's API, so the operator can patch it); surplus pods are chosen in the
  ReplicaSet's order (``getPodsToDelete``, reduced to what differs here: not-ready pods first, then the lowest
  ``controller.kubernetes.io/pod-deletion-cost``, then the newest) and terminated.
* **kubelet**: runs the container's command as a ``fleetcast serve`` process with the container's env
  (``valueFrom.fieldRef metadata.name`` becomes the Pod's name; host and ports are the only translation, from
  the pod network's ``0.0.0.0:8000`` and admin port to free loopback ports, as a pod IP would differ per pod;
  the pod generates its admin token into the shared temporary directory, as into its ``/tmp``); probes
  ``readinessProbe`` at its period; restarts a container that died in place (``restartPolicy: Always``: same
  Pod, same name); terminates a pod as the kubelet does: out of the endpoints at once, the ``preStop`` exec
  (with the container's env), then SIGTERM, then SIGKILL when ``terminationGracePeriodSeconds`` (counted from
  the start of the termination) runs out; and only then is the Pod object removed.

What it leaves out: scheduling, image pulls, liveness probes, crash-loop backoff, ReplicaSet revisions
(the Deployment's template is read once per pod start; a rolling update is not modelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import kmock

from fleetcast.auth.admin_token import generated_path
from tests.operator.harness import create, current, delete, new_object
from tests.support.gateway import GatewayProcess
from tests.support.processes import PYTHON, free_port

log = logging.getLogger(__name__)

DEPLOYMENTS, PODS = "apps/v1/deployments", "v1/pods"
COST = "controller.kubernetes.io/pod-deletion-cost"
POLL_SECONDS = 0.2


@dataclass
class Termination:
    """How one pod ended, as the kubelet saw it: the evidence that it drained before it exited."""

    pod: str
    deletion_cost: int
    drain_before_prestop: dict[str, Any] | None
    """``GET /internal/drain`` just before the ``preStop`` hook (None: the pod did not answer)."""
    prestop_rc: int | None
    prestop_output: str
    exit_code: int | None
    killed: bool
    """True if the grace period ran out and the kubelet sent SIGKILL."""
    seconds: float

    @property
    def drained(self) -> bool:
        """The pod closed every session through its drain before the process exited, and it exited by itself or
        on SIGTERM (uvicorn re-raises a SIGTERM caught while shutting down: exit 143 on Kubernetes), never by
        the grace period's SIGKILL."""
        before = self.drain_before_prestop or {}
        drained_first = before.get("state") == "drained" and before.get("remaining") == 0
        said_drained = self.prestop_rc == 0 and self.prestop_output.startswith("drained:")
        clean_exit = self.exit_code in (0, -signal.SIGTERM)
        return (drained_first or said_drained) and not self.killed and clean_exit


@dataclass
class PodRun:
    """One Pod and its container process."""

    name: str
    env: dict[str, str]
    template: dict[str, Any]
    process: GatewayProcess
    created: float = field(default_factory=time.monotonic)
    ready: bool = False
    terminating: bool = False
    gone: bool = False
    """Terminated and its Pod object removed."""
    restarts: int = 0

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def container(self) -> dict[str, Any]:
        container: dict[str, Any] = self.template["spec"]["containers"][0]
        return container


def container_env(
    container: dict[str, Any], pod_name: str, port: int, admin_port: int, namespace: str
) -> dict[str, str]:
    """The container's env as process env; fails on a source this fake does not know, never guesses."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = pod_name
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[name] = namespace
        else:
            raise AssertionError(f"the replica controller cannot translate env {name}: {var}")
    # The pod network: each pod listens on its own address; here, its own loopback port.
    env["FLEETCAST_HOST"] = "127.0.0.1"
    env["FLEETCAST_PORT"] = str(port)
    assert "FLEETCAST_ADMIN_PORT" in env, "the Deployment names no admin port: the preStop drain cannot reach it"
    env["FLEETCAST_ADMIN_PORT"] = str(admin_port)
    return env


def exec_command(command: list[str]) -> list[str]:
    """A container command as a local argv: ``fleetcast ...`` runs this interpreter's ``-m fleetcast``."""
    if command and command[0] == "fleetcast":
        return [PYTHON, "-m", "fleetcast", *command[1:]]
    raise AssertionError(f"the replica controller only runs fleetcast commands, not {command}")


class ReplicaController:
    """Turns one Deployment's ``spec.replicas`` into pod processes until :meth:`stop`; every task is owned."""

    def __init__(self, k8s: kmock.KubernetesEmulator, namespace: str, deployment: str) -> None:
        self.k8s = k8s
        self.namespace = namespace
        self.deployment = deployment
        self.pods: dict[str, PodRun] = {}
        self.terminations: list[Termination] = []
        self.replica_timeline: list[tuple[float, int]] = []
        """(monotonic time, spec.replicas) at every change the controller saw."""
        self.events: list[tuple[float, str]] = []
        self.on_change: Callable[[], None] | None = None
        """Called whenever the set of pods or their readiness changes (the Service's endpoints follow)."""
        self._suffix = secrets.token_hex(3)
        self._serial = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(1.0))

    # Lifetime

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._reconcile_forever(), name="replica controller")

    async def stop(self) -> None:
        """Stop reconciling, then stop every pod process by PID (SIGTERM, SIGKILL after 10 s)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(asyncio.to_thread(run.process.cleanup) for run in self.pods.values()))
        await self._http.aclose()

    def logs(self) -> str:
        return "\n".join(f"--- pod {name} ---\n{run.process.log()[-3000:]}" for name, run in self.pods.items())

    # Views

    @property
    def serving(self) -> list[PodRun]:
        """Pods not being terminated."""
        return [run for run in self.pods.values() if not run.terminating]

    @property
    def ready(self) -> list[PodRun]:
        return [run for run in self.serving if run.ready]

    def note(self, message: str) -> None:
        self.events.append((time.monotonic(), message))
        log.info("replicas: %s", message)
        if self.on_change is not None:
            self.on_change()

    # The ReplicaSet controller

    async def _reconcile_forever(self) -> None:
        while True:
            deployment = current(self.k8s, DEPLOYMENTS, self.deployment)
            if deployment is not None:
                await self._reconcile(deployment)
            self._restart_dead_containers()
            await asyncio.sleep(POLL_SECONDS)

    async def _reconcile(self, deployment: dict[str, Any]) -> None:
        desired = int(deployment["spec"].get("replicas", 1))
        if not self.replica_timeline or self.replica_timeline[-1][1] != desired:
            self.replica_timeline.append((time.monotonic(), desired))
        serving = self.serving
        if len(serving) < desired:
            for _ in range(desired - len(serving)):
                await self._create_pod(deployment["spec"]["template"])
        elif len(serving) > desired:
            for run in sorted(serving, key=self._deletion_rank)[: len(serving) - desired]:
                run.terminating = True
                run.ready = False
                self.note(f"scale-down: terminating {run.name} (deletion cost {self._cost(run)})")
                self._own(self._terminate(run), f"terminate {run.name}")

    def _cost(self, run: PodRun) -> int:
        pod = current(self.k8s, PODS, run.name) or {}
        return int(((pod.get("metadata") or {}).get("annotations") or {}).get(COST, "0"))

    def _deletion_rank(self, run: PodRun) -> tuple[bool, int, float]:
        """The ReplicaSet's order, reduced: not ready first, then the lowest deletion cost, then the newest."""
        return (run.ready, self._cost(run), -run.created)

    async def _create_pod(self, template: dict[str, Any]) -> None:
        name = f"{self.deployment}-{self._suffix}-{next(self._serial):05d}"
        body = new_object("v1", "Pod", name, template["spec"], status={"phase": "Pending"})
        body["metadata"]["labels"] = dict(template["metadata"].get("labels", {}))
        await create(self.k8s, PODS, body)
        port, admin_port = free_port(), free_port()
        container = template["spec"]["containers"][0]
        env = container_env(container, name, port, admin_port, self.namespace)
        process = GatewayProcess(env=env, port=port, admin_port=admin_port, generated_token=True)
        run = PodRun(name, env, template, process)
        self.pods[name] = run
        self.note(f"created {name} on port {port}")
        self._own(self._run_pod(run), f"kubelet {name}")

    # The kubelet

    def _own(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_pod(self, run: PodRun) -> None:
        """Start the container, then probe readiness at the probe's period until the pod terminates."""
        await asyncio.to_thread(run.process.start)
        proc = run.process.proc
        probe = run.container.get("readinessProbe", {})
        period = float(probe.get("periodSeconds", 10))
        path = probe.get("httpGet", {}).get("path", "/readyz")
        # Until the pod terminates or this container dies (a restart probes its own container).
        while not run.terminating and proc is not None and proc.poll() is None and run.process.proc is proc:
            ready = False
            with contextlib.suppress(httpx.HTTPError):
                ready = (await self._http.get(run.url + path)).status_code == 200
            if ready != run.ready and not run.terminating:
                run.ready = ready
                self.note(f"{run.name} {'ready' if ready else 'not ready'}")
            # A fresh container is probed quickly until it first turns ready, then at the probe's period.
            await asyncio.sleep(period if run.ready else 0.2)

    def _restart_dead_containers(self) -> None:
        for run in self.serving:
            proc = run.process.proc
            if proc is not None and proc.poll() is not None:
                run.ready = False
                run.restarts += 1
                self.note(f"{run.name} exited with {proc.returncode}; restarting its container")
                run.process.proc = None
                self._own(self._run_pod(run), f"kubelet {run.name} restart {run.restarts}")

    async def _terminate(self, run: PodRun) -> None:
        """preStop, SIGTERM, SIGKILL at the grace period's end; then the Pod object goes."""
        started = time.monotonic()
        grace = float(run.template["spec"].get("terminationGracePeriodSeconds", 30))
        deadline = started + grace
        cost = self._cost(run)
        before: dict[str, Any] | None = None
        with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
            token = generated_path(run.process.admin_port).read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            before = (await self._http.get(run.process.admin_url + "/internal/drain", headers=headers)).json()
        prestop_rc, output = await self._prestop(run, deadline)
        proc = run.process.proc
        if proc is None:  # its container was being restarted: nothing runs to stop
            await delete(self.k8s, PODS, run.name)
            run.gone = True
            self.note(f"{run.name} removed while its container was down")
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        killed = False
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5)
        self.terminations.append(
            Termination(run.name, cost, before, prestop_rc, output, proc.returncode, killed, time.monotonic() - started)
        )
        await delete(self.k8s, PODS, run.name)
        run.gone = True
        self.note(f"{run.name} terminated (exit {proc.returncode}, preStop {prestop_rc}: {output!r})")

    async def _prestop(self, run: PodRun, deadline: float) -> tuple[int | None, str]:
        hook = run.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if not hook:
            return None, ""
        env = {**os.environ, **run.env}
        proc = await asyncio.create_subprocess_exec(
            *exec_command(hook), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None, "preStop hook outlived the grace period"
        return proc.returncode, out.decode(errors="replace").strip()

    def kill(self, name: str) -> None:
        """kill -9 one pod's container, as a node or OOM kill would; the kubelet restarts it."""
        proc = self.pods[name].process.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        self.note(f"killed {name} (SIGKILL, pid {proc.pid})")
