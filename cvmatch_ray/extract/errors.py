"""Why a document could not be turned into text.

Every failure has its own class with a stable ``code`` (for API bodies, pipeline ``error``
columns and logs) and an ``http_status`` so the HTTP edge translates them in one place:
too large -> 413, unsupported type -> 415, anything else wrong with the content -> 422.
All derive from ``ValueError``: the input, not the server, is at fault.
"""

from __future__ import annotations


class ExtractionError(ValueError):
    """Base class: the document's bytes cannot be turned into text."""

    code: str = "extraction_failed"
    http_status: int = 422

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

    code = "document_too_large"
    http_status = 413


class TooManyPages(ExtractionError):
    """A PDF with more pages than ``Settings.max_pdf_pages``."""

    code = "too_many_pages"
    http_status = 413


class ArchiveTooLarge(ExtractionError):
    """A DOCX that would inflate past ``Settings.max_docx_inflated_bytes`` (zip bomb guard)."""

    code = "archive_too_large"
    http_status = 413


class EncryptedDocument(ExtractionError):
    """A password-protected PDF (or an encrypted Office file)."""

    code = "encrypted_document"


class NoTextLayer(ExtractionError):
    """A PDF with pages but no text at all: a scan or an image export."""

    code = "no_text_layer"


class EmptyDocument(ExtractionError):
    """Zero bytes, or nothing but whitespace once extracted."""

    code = "empty_document"


class UnsupportedDocumentType(ExtractionError):
    """Bytes that are none of PDF, DOCX, plain text, Markdown or HTML."""

    code = "unsupported_document_type"
    http_status = 415


class CorruptDocument(ExtractionError):
    """Looks like a PDF or DOCX but cannot be parsed."""

    code = "corrupt_document"


__all__ = [
    "ArchiveTooLarge",
    "CorruptDocument",
    "DocumentTooLarge",
    "EmptyDocument",
    "EncryptedDocument",
    "ExtractionError",
    "NoTextLayer",
    "TooManyPages",
    "UnsupportedDocumentType",
]
