"""Why a document could not be turned into text.

Every failure has its own class with a stable ``code`` from ``cvmatch_ray.errors`` (for
API bodies, pipeline ``error`` columns and logs); the HTTP edge maps codes to statuses
(``serve/http.py``). All derive from ``ValueError``: the input, not the server, is at fault.
"""

from __future__ import annotations

from cvmatch_ray.errors import ErrorCode


class ExtractionError(ValueError):
    """Base class: the document's bytes cannot be turned into text."""

    code: ErrorCode = ErrorCode.extraction_failed

    def __init__(self, message: str, *, filename: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        # File names are user input but not personal data in themselves; they make a
        # batch error column readable.
        return f"{self.filename}: {self.message}" if self.filename else self.message


class DocumentTooLarge(ExtractionError):
    """More bytes than ``Settings.max_upload_bytes``."""

    code = ErrorCode.document_too_large


class TooManyPages(ExtractionError):
    """A PDF with more pages than ``Settings.max_pdf_pages``."""

    code = ErrorCode.too_many_pages


class ArchiveTooLarge(ExtractionError):
    """A DOCX that would inflate past ``Settings.max_docx_inflated_bytes`` (zip bomb guard)."""

    code = ErrorCode.archive_too_large


class DocumentTooComplex(ExtractionError):
    """Over an extraction budget (``Settings.max_docx_*``, ``max_pdf_chars``), found before
    the expensive parse: small on disk but costly to read."""

    code = ErrorCode.document_too_complex


class EncryptedDocument(ExtractionError):
    """A password-protected PDF (or an encrypted Office file)."""

    code = ErrorCode.encrypted_document


class NoTextLayer(ExtractionError):
    """A PDF with pages but no text at all: a scan or an image export."""

    code = ErrorCode.no_text_layer


class EmptyDocument(ExtractionError):
    """Zero bytes, or nothing but whitespace once extracted."""

    code = ErrorCode.empty_document


class UnsupportedDocumentType(ExtractionError):
    """Bytes that are none of PDF, DOCX, plain text, Markdown or HTML."""

    code = ErrorCode.unsupported_document_type


class CorruptDocument(ExtractionError):
    """Looks like a PDF or DOCX but cannot be parsed."""

    code = ErrorCode.corrupt_document


__all__ = [
    "ArchiveTooLarge",
    "CorruptDocument",
    "DocumentTooComplex",
    "DocumentTooLarge",
    "EmptyDocument",
    "EncryptedDocument",
    "ExtractionError",
    "NoTextLayer",
    "TooManyPages",
    "UnsupportedDocumentType",
]
