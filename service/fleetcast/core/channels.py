"""Channel names: ``<family>`` or ``<family>:<suffix>``.

The family is a Kubernetes resource name (the ``Channel`` resource that governs it); the suffix lets one
resource govern any number of rooms (``chat:room-42``) without a resource per room.
"""

from __future__ import annotations

import re

_FAMILY = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^({_FAMILY})(?::([A-Za-z0-9._@=-]{{1,128}}))?\Z")
r"""``\Z``, not ``$``: ``$`` also matches before a trailing newline, and ``chat\n`` is not a channel name."""


def family(channel: str) -> str:
    """The family of a valid channel name."""
    return channel.partition(":")[0]


def validate(channel: str) -> str:
    """Return the family of ``channel``; ``ValueError`` with a readable message if the name is invalid."""
    match = _NAME.match(channel)
    if match is None:
        raise ValueError(
            f"{channel[:200]!r} is not a channel name: expected <family> or <family>:<suffix>, where the family is "
            "lowercase letters, digits and '-' (at most 63, starting and ending with a letter or digit) and the "
            "suffix is 1 to 128 of A-Z a-z 0-9 . _ @ = -"
        )
    return match.group(1)
