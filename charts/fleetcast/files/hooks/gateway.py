"""Apply or delete the chart's default Gateway from inside a Helm hook Job.

Helm cannot create a custom resource in the same step as its CRD (the release's objects are mapped before any is
created), and a Gateway made as a plain hook would be deleted and recreated on every upgrade, which would take the
gateway pods down with it. So a post-install/post-upgrade Job applies the Gateway with server-side apply (an
upgrade changes it in place), and a pre-delete Job deletes it while the operator still runs to release its
finalizer. Standard library only: the operator image's Python runs it, through the pod's ServiceAccount.
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def request(method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> int:
    """Send one API request with the pod's token; return the HTTP status (errors included)."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    with open(f"{SA}/token") as f:
        token = f.read().strip()
    ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    req = urllib.request.Request(f"https://{host}:{port}{path}", data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        print(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return int(exc.code)


def main() -> int:
    mode = sys.argv[1]
    manifest = json.loads(os.environ["GATEWAY_MANIFEST"])
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    path = f"/apis/fleetcast.dev/v1alpha1/namespaces/{namespace}/gateways/{name}"
    timeout = float(os.environ.get("HOOK_TIMEOUT_SECONDS", "120"))
    deadline = time.monotonic() + timeout

    if mode == "apply":
        # Retry while the CRD is being established right after a first install.
        while True:
            status = request(
                "PATCH",
                f"{path}?fieldManager=helm-fleetcast&force=true",
                json.dumps(manifest).encode(),
                "application/apply-patch+yaml",
            )
            if status in (200, 201):
                print(f"gateway {namespace}/{name} applied")
                return 0
            if time.monotonic() > deadline:
                return 1
            time.sleep(2)

    # delete: ask once, then wait until the operator has released its finalizer and the object is gone.
    status = request("DELETE", path)
    if status == 404:
        return 0
    while time.monotonic() < deadline:
        if request("GET", path) == 404:
            print(f"gateway {namespace}/{name} deleted")
            return 0
        time.sleep(2)
    print(f"gateway {namespace}/{name} still present after {timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
