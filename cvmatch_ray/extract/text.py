"""Plain text, Markdown and HTML.

Markdown is kept as text: its headings and bullets are exactly the line structure the
standardizer reads. HTML is reduced to text with the standard library's parser: scripts,
styles and the ``<head>`` are dropped, block elements become line breaks, table cells are
joined with `` | `` like DOCX tables, and elements hidden with ``display:none``,
``visibility:hidden`` or the ``hidden`` attribute go to ``hidden_text``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from .detect import decode_text
from .document import ExtractedDocument, finish
from .errors import EmptyDocument

_DROP = frozenset({"script", "style", "head", "noscript", "template", "svg", "object", "iframe"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figcaption",
        "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul", "br", "title",
    }
)
_CELL = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


def extract_plain(data: bytes, *, max_chars: int, filename: str | None = None) -> ExtractedDocument:
    """Decode a plain text or Markdown file.

    Raises:
        EmptyDocument: Only whitespace.
        UnsupportedDocumentType: The bytes are not text.
    """
    doc = finish(decode_text(data, filename=filename), kind="text", pages=1, extractor="text", max_chars=max_chars)
    if not doc.text.strip():
        raise EmptyDocument("the file holds only whitespace", filename=filename)
    return doc


def extract_html(data: bytes, *, max_chars: int, filename: str | None = None) -> ExtractedDocument:
    """Strip an HTML document to its visible text (hidden elements to ``hidden_text``).

    Raises:
        EmptyDocument: No visible text.
        UnsupportedDocumentType: The bytes are not text.
    """
    visible, hidden = html_to_text(decode_text(data, filename=filename))
    doc = finish(visible, kind="html", pages=1, extractor="html", max_chars=max_chars, hidden_text=hidden)
    if not doc.text.strip():
        raise EmptyDocument("the HTML page has no visible text", filename=filename)
    return doc


def html_to_text(html: str) -> tuple[str, str]:
    """Return ``(visible_text, hidden_text)`` of an HTML string."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return "".join(parser.visible), "\n".join(parser.hidden)


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.visible: list[str] = []
        self.hidden: list[str] = []
        # One entry per open non-void element: (tag, dropped, hidden).
        self._stack: list[tuple[str, bool, bool]] = []
        self._row_cells = 0

    @property
    def _dropped(self) -> bool:
        return bool(self._stack) and self._stack[-1][1]

    @property
    def _hidden(self) -> bool:
        return bool(self._stack) and self._stack[-1][2]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        hidden = self._hidden or any(
            k == "hidden" or (k == "style" and v and _HIDDEN_STYLE.search(v)) for k, v in attrs
        )
        dropped = self._dropped or tag in _DROP
        if not dropped and not hidden:
            if tag in _BLOCK:
                self.visible.append("\n")
            if tag == "tr":
                self._row_cells = 0
            elif tag in _CELL:
                if self._row_cells:
                    self.visible.append(" | ")
                self._row_cells += 1
            elif tag == "li":
                self.visible.append("- ")
        if tag not in _VOID:
            self._stack.append((tag, dropped, hidden))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK and not self._dropped and not self._hidden:
            self.visible.append("\n")

    def handle_endtag(self, tag: str) -> None:
        # Tag soup: close up to the matching open element; ignore a stray end tag.
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break
        if tag in _BLOCK and not self._dropped and not self._hidden:
            self.visible.append("\n")

    def handle_data(self, data: str) -> None:
        if self._dropped:
            return
        if any(tag == "pre" for tag, _, _ in self._stack):
            (self.hidden if self._hidden else self.visible).append(data)
            return
        # Source newlines are layout of the HTML file, not of the page.
        text = " ".join(data.split())
        if not text:
            if data and self.visible and not self.visible[-1].endswith((" ", "\n")):
                self.visible.append(" ")
            return
        if data[:1].isspace():
            text = " " + text
        if data[-1:].isspace():
            text += " "
        (self.hidden if self._hidden else self.visible).append(text)
