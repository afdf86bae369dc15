"""Status conditions in the Kubernetes shape, upserted so a condition's transition time means something."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def upsert(
    conditions: Sequence[dict[str, Any]] | None, kind: str, ok: bool | None, reason: str, message: str
) -> list[dict[str, Any]]:
    """The list with condition ``kind`` set; its ``lastTransitionTime`` moves only when its status changes."""
    status = "Unknown" if ok is None else "True" if ok else "False"
    result: list[dict[str, Any]] = []
    found = False
    for condition in conditions or ():
        if condition.get("type") != kind:
            result.append(dict(condition))
            continue
        found = True
        changed = condition.get("status") != status
        when = now_iso() if changed else condition.get("lastTransitionTime") or now_iso()
        result.append(
            {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": when}
        )
    if not found:
        result.append(
            {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": now_iso()}
        )
    return result
