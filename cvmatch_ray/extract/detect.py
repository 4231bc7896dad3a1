"""Tell a document's format from its bytes, never from its file name.

Uploads arrive with whatever name the user's machine gave them ("cv.pdf" that is really a
DOCX, "resume" with no extension), so the name is only used in error messages.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile

from .document import DocumentKind
from .errors import (
    CorruptDocument,
    EmptyDocument,
    EncryptedDocument,
    UnsupportedDocumentType,
)

# Magic numbers of formats we refuse, with the reason given to the user.
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image; OCR is not supported, upload a PDF with text or a DOCX"),
    (b"\xff\xd8\xff", "a JPEG image; OCR is not supported, upload a PDF with text or a DOCX"),
    (b"GIF87a", "a GIF image; OCR is not supported"),
    (b"GIF89a", "a GIF image; OCR is not supported"),
    (b"II*\x00", "a TIFF image; OCR is not supported"),
    (b"MM\x00*", "a TIFF image; OCR is not supported"),
    (b"BM", "a BMP image; OCR is not supported"),
    (b"{\\rtf", "an RTF document; save it as DOCX or PDF"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
)
_EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UTF8_BOM = codecs.BOM_UTF8
_SNIFF = 8192

_HTML_START = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<!doctype\s+html|^\s*<html[\s>]", re.IGNORECASE | re.DOTALL
)
_HTML_TAG = re.compile(
    r"<(html|head|body|div|p|br|table|tr|td|h[1-6]|ul|ol|li|span|meta|title|section|a)\b", re.IGNORECASE
)


def detect_kind(data: bytes, *, filename: str | None = None) -> DocumentKind:
    """Return the document kind of ``data``.

    Args:
        data: The whole file.
        filename: Only used in error messages.

    Raises:
        EmptyDocument: ``data`` is empty.
        EncryptedDocument: An encrypted Office file (an OLE container holding the package).
        CorruptDocument: A ZIP that cannot be opened.
        UnsupportedDocumentType: Images, legacy ``.doc``, other archives, binaries.
    """
    if not data:
        raise EmptyDocument("the file is empty (0 bytes)", filename=filename)
    head = data[:_SNIFF]
    # PDF readers accept junk before the header (up to 1 KiB), and so do we, unless the
    # junk is an executable (a polyglot that is a program to one reader, a PDF to another).
    pdf_at = head[:1024].find(b"%PDF-")
    if pdf_at >= 0:
        if any(magic in head[:pdf_at] for magic in _EXECUTABLE_MAGIC):
            raise UnsupportedDocumentType("unsupported file type: an executable with a PDF inside", filename=filename)
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data, filename)
    if head.startswith(_OLE_MAGIC):
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k\x00a\x00g\x00e" in data[:1 << 20]:
            raise EncryptedDocument("password-protected Office document", filename=filename)
        raise UnsupportedDocumentType(
            "legacy Word .doc (or another OLE file); save it as DOCX or PDF", filename=filename
        )
    for magic, what in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise UnsupportedDocumentType(f"unsupported file type: {what}", filename=filename)
    text = decode_text(data, filename=filename)
    return "html" if looks_like_html(text[:_SNIFF]) else "text"


def _zip_kind(data: bytes, filename: str | None) -> DocumentKind:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise CorruptDocument(f"unreadable ZIP/DOCX container: {e}", filename=filename) from e
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        what = "an Excel workbook"
    elif "ppt/presentation.xml" in names:
        what = "a PowerPoint presentation"
    elif "content.xml" in names and "mimetype" in names:
        what = "an OpenDocument file; save it as DOCX or PDF"
    else:
        what = "a ZIP archive"
    raise UnsupportedDocumentType(f"unsupported file type: {what}", filename=filename)


def decode_text(data: bytes, *, filename: str | None = None) -> str:
    """Decode bytes that should be text: BOMs first, then UTF-8, UTF-16, then Windows-1252.

    Raises:
        UnsupportedDocumentType: The bytes do not read as text (binary data).
    """
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (_UTF8_BOM, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec)
            except UnicodeDecodeError as e:
                raise UnsupportedDocumentType(f"not valid {codec} text", filename=filename) from e
    head = data[:_SNIFF]
    if b"\x00" in head:
        # UTF-16 without a BOM puts a NUL in every other byte of ASCII text.
        for codec, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
            if zeros.count(0) > 0.9 * len(zeros):
                try:
                    text = data.decode(codec)
                except UnicodeDecodeError:
                    continue
                if _plausible(text):
                    return text
        if head.count(0) > max(4, 0.01 * len(head)):
            raise UnsupportedDocumentType("unsupported file type: binary data", filename=filename)
        # A few stray NULs (a broken export) do not make text binary; normalization drops them.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Old Windows editors; cp1252 is latin-1 plus curly quotes and dashes in 0x80-0x9f.
        text = data.decode("cp1252", errors="replace")
    if not _plausible(text):
        raise UnsupportedDocumentType("unsupported file type: binary data", filename=filename)
    return text


def _plausible(text: str) -> bool:
    """Mostly printable characters, as text written by people is."""
    sample = text[:_SNIFF]
    if not sample:
        return True
    bad = sum(1 for ch in sample if (ch < " " and ch not in "\t\n\r\f") or ch == "\ufffd")
    return bad <= 0.02 * len(sample)


def looks_like_html(text: str) -> bool:
    """An HTML document: a doctype/``<html>`` start, or markup from the first character.

    Markdown may hold a few inline tags (``<br>``), so tags alone are not enough: the text
    must also open with one.
    """
    if _HTML_START.match(text.encode("utf-8", "ignore")[:_SNIFF]):
        return True
    if not text.lstrip().startswith("<"):
        return False
    return len({m.group(1).lower() for m in _HTML_TAG.finditer(text[:_SNIFF])}) >= 2
