"""Bytes -> text: format detection, PDF, DOCX, plain text/Markdown and HTML, their errors.

The one entry point is :func:`extract_document`; everything downstream (standardizer,
ingest, Serve, Ray Data) receives an :class:`ExtractedDocument` or an
:class:`ExtractionError` subclass to translate at its edge.
"""

from .core import extract_document
from .detect import detect_kind
from .document import (
    FLAG_HIDDEN_TEXT,
    FLAG_MULTI_COLUMN,
    FLAG_SPACING_RECOVERED,
    FLAG_TRUNCATED,
    DocumentKind,
    ExtractedDocument,
    normalize_text,
)
from .errors import (
    ArchiveTooLarge,
    CorruptDocument,
    DocumentTooComplex,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    ExtractionError,
    NoTextLayer,
    TooManyPages,
    UnsupportedDocumentType,
)
from .pdf import looks_unspaced

__all__ = [
    "FLAG_HIDDEN_TEXT",
    "FLAG_MULTI_COLUMN",
    "FLAG_SPACING_RECOVERED",
    "FLAG_TRUNCATED",
    "ArchiveTooLarge",
    "CorruptDocument",
    "DocumentKind",
    "DocumentTooComplex",
    "DocumentTooLarge",
    "EmptyDocument",
    "EncryptedDocument",
    "ExtractedDocument",
    "ExtractionError",
    "NoTextLayer",
    "TooManyPages",
    "UnsupportedDocumentType",
    "detect_kind",
    "extract_document",
    "looks_unspaced",
    "normalize_text",
]
