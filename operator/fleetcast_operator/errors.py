"""The operator's errors: one root, and whether retrying can help is in the class."""

from __future__ import annotations


class OperatorError(Exception):
    """Root of every error the operator raises on purpose."""


class InvalidSpec(OperatorError):
    """A resource's spec cannot be acted on; retrying will not help until the user edits it."""


class TemporaryFailure(OperatorError):
    """A dependency (Redis, the API server) failed; the next attempt may succeed."""
