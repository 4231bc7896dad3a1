"""The result of extraction and the text normalization every format goes through."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

DocumentKind = Literal["pdf", "docx", "text", "html"]

# Known flags, so callers can test membership without typos.
FLAG_HIDDEN_TEXT = "hidden_text"
FLAG_SPACING_RECOVERED = "spacing_recovered"
FLAG_MULTI_COLUMN = "multi_column"
FLAG_TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    """Plain text of one document, ready for the standardizer.

    Attributes:
        text: Visible text, NFC-normalized, one line per visual line, at most one blank
            line in a row, cut at ``Settings.max_text_chars``.
        kind: Format detected from the bytes (never from the file name).
        pages: PDF page count; 1 for text and HTML; the saved page count of a DOCX when
            Word recorded one, else 1.
        extractor: Library that produced ``text`` ("pypdfium2", "pypdf", "python-docx",
            "text", "html").
        hidden_text: Text judged invisible to a human reader (white on white, tiny,
            off-page, hidden runs) and left OUT of ``text``; "" if none.
        flags: Notes on the extraction, e.g. ``("hidden_text",)``, ``("spacing_recovered",)``,
            ``("multi_column",)``, ``("truncated",)``.
    """

    text: str
    kind: DocumentKind
    pages: int
    extractor: str
    hidden_text: str = ""
    flags: tuple[str, ...] = ()


_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        # pdfium marks a hyphen it joined across a line end with U+FFFE.
        "\ufffe": "-",
        "\u00ad": "",  # soft hyphen: invisible unless the line breaks there
        "\u00a0": " ",
        "\u2007": " ",
        "\u202f": " ",
        "\u2028": "\n",
        "\u2029": "\n",
        "\x0b": "\n",
        "\x0c": "\n",
        "\x85": "\n",
        "\ufeff": "",
        "\u200b": "",
    }
)
# Control characters other than tab and newline; NULs included.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_HSPACE = re.compile(r"[ \t\u2000-\u200a\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Normalize extracted text without losing its line structure.

    NFC, ligatures spelled out (``ﬁ`` -> ``fi``), NULs and other control characters
    dropped, runs of spaces and tabs collapsed to one space, lines stripped, at most one
    blank line in a row, no leading or trailing blank lines.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text.translate(_LIGATURES))
    text = _CONTROL.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def finish(
    text: str,
    *,
    kind: DocumentKind,
    pages: int,
    extractor: str,
    max_chars: int,
    hidden_text: str = "",
    flags: list[str] | tuple[str, ...] = (),
) -> ExtractedDocument:
    """Normalize, truncate and package one extraction (flags deduplicated, order kept)."""
    out_flags = list(dict.fromkeys(flags))
    text = normalize_text(text)
    if len(text) > max_chars:
        # Cut at a line boundary when one is near, so the last line is not half a word.
        cut = text.rfind("\n", max(0, max_chars - 200), max_chars)
        text = text[: cut if cut > 0 else max_chars].rstrip()
        out_flags.append(FLAG_TRUNCATED)
    hidden = normalize_text(hidden_text)[:max_chars]
    if hidden and FLAG_HIDDEN_TEXT not in out_flags:
        out_flags.append(FLAG_HIDDEN_TEXT)
    return ExtractedDocument(
        text=text,
        kind=kind,
        pages=pages,
        extractor=extractor,
        hidden_text=hidden,
        flags=tuple(out_flags),
    )
