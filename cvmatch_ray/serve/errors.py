"""What the API's service raises besides a document's own ``ProcessingError``; ``http.py`` maps each to a status."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A backend (a deployment, the progress actor, storage) cannot serve the request now."""


class InvalidRequest(ValueError):
    """Request data that no handler's validation caught (a malformed id in a list...)."""


class RequestTooLarge(ValueError):
    """A request that asks for more work than the server takes in one go."""
