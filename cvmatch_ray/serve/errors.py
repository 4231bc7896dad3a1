"""What the API's service raises besides a document's own ``ProcessingError`` (``http.py`` maps
each to a status), and the one check of a document id a client sends."""

from __future__ import annotations

from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.ids import validate_id


class ServiceUnavailable(RuntimeError):
    """A backend (a deployment, the progress actor, storage) cannot serve the request now."""


class InvalidRequest(ValueError):
    """Request data that no handler's validation caught (a malformed id in a list...)."""


class RequestTooLarge(ValueError):
    """A request that asks for more work than the server takes in one go."""


def checked_id(value: str, what: str) -> str:
    """A well-formed document id, or ``UnknownDocument`` (a malformed id names nothing)."""
    try:
        return validate_id(value, what)
    except ValueError as e:
        raise UnknownDocument(f"no document with {what} {value[:80]!r}") from e
