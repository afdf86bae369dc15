"""The browser SDK as pods serve it: ``/v1/client.js`` (revalidated), ``/v1/client.<hash>.js`` (immutable), and
the committed module is what ``clients/js`` compiles to today."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "js"
SERVED = ROOT / "service" / "fleetcast" / "web"


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway(*QUICK_STOP, "--pod-name", "pod-under-test") as running:
        yield running


def test_pods_serve_the_sdk_with_an_etag_and_under_an_immutable_name(pod: GatewayProcess) -> None:
    """``/v1/client.js`` is the committed module, cached five minutes and revalidated by ETag (304); its hashed
    name is cacheable for good; another hash is a 404 that names the current one."""
    committed = (SERVED / "client.js").read_bytes()
    digest = hashlib.sha256(committed).hexdigest()[:16]
    with httpx.Client(base_url=pod.url, timeout=10) as client:
        module = client.get("/v1/client.js")
        assert module.status_code == 200
        assert module.content == committed
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["cache-control"] == "public, max-age=300"
        assert module.headers["etag"] == f'"{digest}"'
        assert f"/v1/client.{digest}.js" in module.headers["link"]
        assert b"export class Fleetcast" in module.content

        again = client.get("/v1/client.js", headers={"If-None-Match": module.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""

        pinned = client.get(f"/v1/client.{digest}.js")
        assert pinned.status_code == 200
        assert pinned.content == committed
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"

        other = client.get("/v1/client.0123456789abcdef.js")
        assert other.status_code == 404
        assert f"/v1/client.{digest}.js" in other.json()["error"]["message"]

        types = client.get("/v1/client.d.ts")
        assert types.status_code == 200
        assert b"export declare class Fleetcast" in types.content


def test_readyz_names_the_pod(pod: GatewayProcess) -> None:
    """A page can show which pod it reached (the demo page does)."""
    assert httpx.get(pod.url + "/readyz", timeout=10).json()["pod"] == "pod-under-test"


def test_the_committed_module_is_what_the_typescript_compiles_to(tmp_path: Path) -> None:
    """The server ships the compiled SDK so that it needs no node at run time; this keeps it from going stale.
    Fix a failure with ``cd clients/js && npm ci && npm run build``."""
    tsc = SDK / "node_modules" / ".bin" / "tsc"
    if shutil.which("node") is None or not tsc.exists():
        pytest.skip("needs node and `npm ci` in clients/js")
    subprocess.run([str(tsc), "-p", str(SDK / "tsconfig.json"), "--outDir", str(tmp_path)], check=True, timeout=120)
    for name in ("client.js", "client.d.ts"):
        built = (tmp_path / name).read_bytes()
        assert built == (SERVED / name).read_bytes(), (
            f"service/fleetcast/web/{name} is stale: run `npm run build` in clients/js and commit the result"
        )
