"""Document and job ids: how they are made and which forms are accepted.

Document ids are the lowercase hex of a hash (``document_id``), or a UUID; job ids are
short names such as ``job_<hex>``. Anything else is rejected before it reaches a SQL
predicate: with no quote, space or backslash possible, quoting them is safe.
"""

from __future__ import annotations

import hashlib
import re

_ID_RE = re.compile(r"[0-9a-f][0-9a-f-]{7,63}")
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def document_id(data: bytes | str) -> str:
    """Content-derived id of a document: first 32 hex chars of the SHA-256 of its bytes.

    The same bytes always give the same id, so re-uploading a file is idempotent. A JD
    given as text is hashed as its UTF-8 bytes.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]


def text_hash(text: str) -> str:
    """Hash of an extracted text (same form as ``document_id``): equal texts, equal hash."""
    return document_id(text.encode("utf-8"))


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a well-formed id (lowercase hex, optionally with dashes).

    Raises:
        ValueError: anything else, including values that could break out of a SQL string.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid {what}: {str(value)[:80]!r} (expected lowercase hex)")
    return value


def validate_job_id(value: str) -> str:
    """Return ``value`` if it is a well-formed job id (letters, digits, ``_``, ``-``).

    Raises:
        ValueError: anything else.
    """
    if not isinstance(value, str) or not _JOB_ID_RE.fullmatch(value):
        raise ValueError(f"invalid job_id: {str(value)[:80]!r} (expected letters, digits, '_' or '-')")
    return value
