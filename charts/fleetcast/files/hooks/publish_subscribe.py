"""`helm test`: publish one event through the gateway Service and read it back over SSE.

It proves the path a user's first message takes: Service -> gateway pod -> Redis stream -> gateway pod -> SSE
client. The subscriber connects first, so the event arrives live; a retry loop covers the seconds in which the
operator is still writing the test Channel's policy. Standard library only.
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

BASE = os.environ["FLEETCAST_URL"].rstrip("/")
CHANNEL = f"{os.environ['FLEETCAST_CHANNEL']}:{uuid.uuid4().hex[:12]}"
DEADLINE = time.monotonic() + float(os.environ.get("FLEETCAST_TEST_TIMEOUT", "120"))
received: list[dict[str, str]] = []
subscribed = threading.Event()


def subscribe() -> None:
    """Read SSE frames until the test's event arrives or the deadline passes."""
    req = urllib.request.Request(f"{BASE}/v1/channels/{CHANNEL}/events", headers={"Accept": "text/event-stream"})
    remaining = max(1.0, DEADLINE - time.monotonic())
    with urllib.request.urlopen(req, timeout=remaining) as resp:
        subscribed.set()
        frame: dict[str, str] = {}
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if frame.get("event", "message") not in ("fleetcast.gap", "fleetcast.reconnect") and "data" in frame:
                    received.append(frame)
                    return
                frame = {}
            elif not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                frame[key] = value.removeprefix(" ")


def publish() -> str:
    """POST the event, retrying until the gateway accepts it; return its id."""
    body = json.dumps({"data": {"hello": "helm test"}, "type": "helm-test"}).encode()
    while True:
        req = urllib.request.Request(
            f"{BASE}/v1/channels/{CHANNEL}/events",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return str(json.load(resp)["id"])
        except (urllib.error.URLError, TimeoutError) as exc:
            if time.monotonic() > DEADLINE:
                raise
            print(f"publish not accepted yet: {exc}", file=sys.stderr)
            time.sleep(2)


def wait_ready() -> None:
    """Wait until a gateway pod behind the Service answers /readyz with 200."""
    while True:
        try:
            with urllib.request.urlopen(f"{BASE}/readyz", timeout=5):
                return
        except (urllib.error.URLError, TimeoutError) as exc:
            if time.monotonic() > DEADLINE:
                raise
            print(f"gateway not ready yet: {exc}", file=sys.stderr)
            time.sleep(2)


def main() -> int:
    wait_ready()
    reader = threading.Thread(target=subscribe, daemon=True)
    reader.start()
    if not subscribed.wait(max(1.0, DEADLINE - time.monotonic())):
        print("could not subscribe", file=sys.stderr)
        return 1
    event_id = publish()
    reader.join(max(1.0, DEADLINE - time.monotonic()))
    if not received or received[0].get("id") != event_id:
        print(f"published {event_id} to {CHANNEL} but received {received!r}", file=sys.stderr)
        return 1
    print(f"published and received {event_id} on {CHANNEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
