"""Hostile documents built in the tests: small on disk, costly to read."""

from __future__ import annotations

import io
import zipfile

import docx

_PARAGRAPH = b"<w:p><w:r><w:t>Python SQL Spark Docker Kubernetes</w:t></w:r></w:p>"


def inflating_docx(xml_bytes: int) -> bytes:
    """A valid DOCX whose body holds ``xml_bytes`` of repeated paragraphs (a zip bomb that
    python-docx would open and walk): it inflates hundreds of times."""
    d = docx.Document()
    d.add_paragraph("Data Scientist at Bramble Retail")
    good = io.BytesIO()
    d.save(good)
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "word/document.xml":
                at = body.index(b"<w:body>") + len(b"<w:body>")
                body = body[:at] + _PARAGRAPH * (xml_bytes // len(_PARAGRAPH)) + body[at:]
            dst.writestr(info.filename, body, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()
