"""``extract_document``: bytes in, text out, whatever the format."""

from __future__ import annotations

import logging
import time

from ..config import Settings
from .detect import detect_kind
from .document import ExtractedDocument
from .docx import DocxLimits, extract_docx
from .errors import DocumentTooLarge
from .pdf import extract_pdf
from .text import extract_html, extract_plain

logger = logging.getLogger(__name__)


def extract_document(
    data: bytes, *, filename: str | None = None, settings: Settings | None = None
) -> ExtractedDocument:
    """Extract the visible text of a PDF, DOCX, plain text, Markdown or HTML document.

    The format is read from the bytes (magic numbers, then text sniffing); ``filename``
    only labels error messages, so a DOCX named ``cv.pdf`` is still read as a DOCX.

    Args:
        data: The whole file.
        filename: The uploaded file's name, for messages only.
        settings: Limits (``max_upload_bytes``, ``max_pdf_pages``, ``max_pdf_chars``,
            ``max_docx_*``, ``max_text_chars``); defaults when omitted.

    Returns:
        The normalized text, the detected kind, page count, extractor, hidden text and
        flags.

    Raises:
        ExtractionError: One of its subclasses, each with a stable ``code``:
            ``DocumentTooLarge``, ``TooManyPages``, ``ArchiveTooLarge``, ``DocumentTooComplex``,
            ``EncryptedDocument``, ``NoTextLayer``, ``EmptyDocument``,
            ``UnsupportedDocumentType``, ``CorruptDocument``.
    """
    settings = settings or Settings()
    if len(data) > settings.max_upload_bytes:
        raise DocumentTooLarge(
            f"the file is {len(data)} bytes; at most {settings.max_upload_bytes} are accepted", filename=filename
        )
    start = time.perf_counter()
    kind = detect_kind(data, filename=filename)
    limit = settings.max_text_chars
    if kind == "pdf":
        doc = extract_pdf(
            data, max_pages=settings.max_pdf_pages, max_glyphs=settings.max_pdf_chars, max_chars=limit,
            filename=filename,
        )
    elif kind == "docx":
        limits = DocxLimits(
            inflated_bytes=settings.max_docx_inflated_bytes,
            entries=settings.max_docx_entries,
            xml_bytes=settings.max_docx_xml_bytes,
            compression_ratio=settings.max_docx_compression_ratio,
        )
        doc = extract_docx(data, limits=limits, max_chars=limit, filename=filename)
    elif kind == "html":
        doc = extract_html(data, max_chars=limit, filename=filename)
    else:
        doc = extract_plain(data, max_chars=limit, filename=filename)
    logger.debug(
        "extracted kind=%s bytes=%d chars=%d extractor=%s flags=%s in %.1f ms",
        doc.kind, len(data), len(doc.text), doc.extractor, doc.flags, 1000 * (time.perf_counter() - start),
    )
    return doc
