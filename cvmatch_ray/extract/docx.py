"""DOCX text with python-docx: paragraphs and tables in document order, hidden runs apart.

python-docx opens the package (and resolves styles); the body is walked at the XML level
because its high-level API skips runs inside hyperlinks, content controls and text boxes,
which CV templates use a lot (a sidebar is often a text box or a table cell).

- Table rows become one line, cells joined with `` | ``. A row with a cell of more than a
  few lines is a layout table (a CV laid out in columns), and each cell is read as a block.
- Numbered and bulleted paragraphs get a ``- `` prefix, since their bullet is not text.
- Page headers come first and footers last (contact details often live there), each line
  once.
- Hidden runs go to ``hidden_text``: ``w:vanish``, font under 2 pt, or white text that is
  not on a shaded paragraph, run or cell.

The archive is checked against ``DocxLimits`` before anything is inflated or parsed, from
the sizes its directory declares: the number of files, the total size, and the size and
compression ratio of the XML parts (python-docx parses every XML part it reaches, and the
walk below costs CPU and memory in proportion). ``zipfile`` never inflates a member past
its declared size (it fails the CRC check instead), so the declared sizes bound the real ones.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass, field

from docx import Document
from docx.opc.exceptions import OpcError
from docx.oxml.ns import qn
from lxml import etree

from .document import ExtractedDocument, finish
from .errors import (
    ArchiveTooLarge,
    CorruptDocument,
    DocumentTooComplex,
    EmptyDocument,
    UnsupportedDocumentType,
)

logger = logging.getLogger(__name__)

_RATIO_FLOOR = 1024 * 1024  # XML under this is cheap to parse whatever its compression ratio
_LAYOUT_CELL_LINES = 3
_TINY_HALF_POINTS = 4  # w:sz is in half-points: 4 = 2 pt
_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}
_RUNS = etree.XPath(
    ".//w:r[count(ancestor::w:txbxContent) = $depth and not(ancestor::mc:Fallback) and not(ancestor::w:del)]",
    namespaces=_NS,
)
_TEXT_BOXES = etree.XPath(
    ".//w:txbxContent[count(ancestor::w:txbxContent) = $depth and not(ancestor::mc:Fallback)]",
    namespaces=_NS,
)
_TXBX_DEPTH = etree.XPath("count(ancestor::w:txbxContent)", namespaces=_NS)
_WHITE_THEME = {"background1", "light1"}
_PAGES = re.compile(rb"<(?:\w+:)?Pages>\s*(\d+)\s*</(?:\w+:)?Pages>")

_P, _TBL, _SDT, _TR, _TC = qn("w:p"), qn("w:tbl"), qn("w:sdt"), qn("w:tr"), qn("w:tc")
_SDT_CONTENT, _TXBX = qn("w:sdtContent"), qn("w:txbxContent")
_T, _TAB, _BR, _CR, _NBH = qn("w:t"), qn("w:tab"), qn("w:br"), qn("w:cr"), qn("w:noBreakHyphen")
_RPR, _PPR, _TCPR = qn("w:rPr"), qn("w:pPr"), qn("w:tcPr")
_VAL, _FILL, _THEME = qn("w:val"), qn("w:fill"), qn("w:themeColor")


@dataclass(frozen=True, slots=True)
class DocxLimits:
    """What a DOCX may declare before it is parsed (``Settings.max_docx_*``)."""

    inflated_bytes: int  # all files, inflated
    entries: int  # files in the archive
    xml_bytes: int  # the XML parts, inflated
    compression_ratio: float  # an XML part's inflated over compressed size, past _RATIO_FLOOR


def extract_docx(
    data: bytes, *, limits: DocxLimits, max_chars: int, filename: str | None = None
) -> ExtractedDocument:
    """Extract a DOCX's text.

    Args:
        data: The DOCX file.
        limits: Budgets checked on the archive's directory before anything is parsed.
        max_chars: Cut the text past this many characters.
        filename: Only used in error messages.

    Raises:
        ArchiveTooLarge: More bytes in all than ``limits.inflated_bytes`` once inflated.
        DocumentTooComplex: Too many files, or XML parts too large or too compressible
            (a zip bomb under the size limit).
        CorruptDocument: Not a readable DOCX package.
        UnsupportedDocumentType: A Word package python-docx does not open (macro-enabled,
            template).
        EmptyDocument: No visible text.
    """
    pages = _check_archive(data, limits, filename)
    try:
        document = Document(io.BytesIO(data))
    except ValueError as e:
        if "not a Word file" in str(e):
            raise UnsupportedDocumentType(f"unsupported Word package: {e}", filename=filename) from e
        raise CorruptDocument(f"unreadable DOCX: {e}", filename=filename) from e
    except (OpcError, KeyError, zipfile.BadZipFile, etree.XMLSyntaxError, EOFError) as e:
        raise CorruptDocument(f"unreadable DOCX: {type(e).__name__}: {e}", filename=filename) from e

    reader = _Reader(_Styles(document.styles.element))
    headers, footers = [], []
    for rel in document.part.rels.values():
        if rel.is_external:
            continue
        kind = rel.reltype.rsplit("/", 1)[-1]
        if kind in ("header", "footer"):
            part_reader = _Reader(reader.styles)
            part_reader.blocks(rel.target_part.element)
            (headers if kind == "header" else footers).append(part_reader)
    reader.blocks(document.element.body)

    lines: list[str] = []
    seen: set[str] = set()
    for part in [*headers, reader, *footers]:
        for line in part.lines:
            key = line.strip()
            # Headers repeat per section; keep each of their lines once.
            if part is not reader and key in seen:
                continue
            seen.add(key)
            lines.append(line)
    hidden = [h for part in [*headers, reader, *footers] for h in part.hidden]
    doc = finish(
        "\n".join(lines),
        kind="docx",
        pages=pages,
        extractor="python-docx",
        max_chars=max_chars,
        hidden_text="\n".join(hidden),
    )
    if not doc.text:
        raise EmptyDocument("the DOCX has no visible text", filename=filename)
    logger.debug("docx: lines=%d hidden_runs=%d", len(lines), len(hidden))
    return doc


def _check_archive(data: bytes, limits: DocxLimits, filename: str | None) -> int:
    """Refuse zip bombs before anything inflates; return the saved page count (or 1)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > limits.entries:
                raise DocumentTooComplex(
                    f"the DOCX holds {len(infos)} files; at most {limits.entries} are accepted", filename=filename
                )
            total = sum(i.file_size for i in infos)
            if total > limits.inflated_bytes:
                raise ArchiveTooLarge(
                    f"the DOCX inflates to {total} bytes; at most {limits.inflated_bytes} are accepted",
                    filename=filename,
                )
            xml = [i for i in infos if i.filename.lower().endswith((".xml", ".rels"))]
            xml_bytes = sum(i.file_size for i in xml)
            if xml_bytes > limits.xml_bytes:
                raise DocumentTooComplex(
                    f"the DOCX's XML inflates to {xml_bytes} bytes; at most {limits.xml_bytes} are accepted",
                    filename=filename,
                )
            for i in xml:
                ratio = i.file_size / max(1, i.compress_size)
                if i.file_size > _RATIO_FLOOR and ratio > limits.compression_ratio:
                    raise DocumentTooComplex(
                        f"a part of the DOCX inflates {ratio:.0f} times; at most "
                        f"{limits.compression_ratio:.0f} is accepted",
                        filename=filename,
                    )
            try:
                app = zf.read("docProps/app.xml") if "docProps/app.xml" in zf.namelist() else b""
            except (zipfile.BadZipFile, ValueError):
                app = b""
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise CorruptDocument(f"unreadable DOCX container: {e}", filename=filename) from e
    m = _PAGES.search(app)
    return max(1, int(m.group(1))) if m else 1


# ---------------------------------------------------------------------------- styles


@dataclass(frozen=True, slots=True)
class _RunProps:
    vanish: bool | None = None
    color: str | None = None  # "FFFFFF", "auto" or "white" for white theme colours
    size: int | None = None  # half-points
    shaded: bool | None = None

    def over(self, base: _RunProps) -> _RunProps:
        """These properties, falling back to ``base`` where unset."""
        return _RunProps(
            vanish=self.vanish if self.vanish is not None else base.vanish,
            color=self.color if self.color is not None else base.color,
            size=self.size if self.size is not None else base.size,
            shaded=self.shaded if self.shaded is not None else base.shaded,
        )


def _on(el: etree._Element | None) -> bool | None:
    """A WordprocessingML on/off property: present means on unless its value says off."""
    if el is None:
        return None
    return el.get(_VAL, "true").lower() not in ("0", "false", "off")


def _shaded(shd: etree._Element | None) -> bool | None:
    if shd is None:
        return None
    fill = (shd.get(_FILL) or "auto").upper()
    return fill not in ("AUTO", "FFFFFF", "")


def _props(rpr: etree._Element | None) -> _RunProps:
    if rpr is None:
        return _RunProps()
    color_el = rpr.find(qn("w:color"))
    color = None
    if color_el is not None:
        color = "white" if color_el.get(_THEME) in _WHITE_THEME else (color_el.get(_VAL) or "auto").upper()
    size_el = rpr.find(qn("w:sz"))
    size = None
    if size_el is not None:
        try:
            size = int(float(size_el.get(_VAL, "")))
        except ValueError:
            size = None
    return _RunProps(
        vanish=_on(rpr.find(qn("w:vanish"))),
        color=color,
        size=size,
        shaded=_shaded(rpr.find(qn("w:shd"))),
    )


class _Styles:
    """Run properties of styles, resolved through ``w:basedOn`` and the document defaults."""

    def __init__(self, styles: etree._Element) -> None:
        self._by_id = {s.get(qn("w:styleId")): s for s in styles.iterchildren(qn("w:style"))}
        self._cache: dict[str | None, _RunProps] = {}
        defaults = styles.find(f"{qn('w:docDefaults')}/{qn('w:rPrDefault')}/{qn('w:rPr')}")
        self.defaults = _props(defaults)
        self.default_paragraph = next(
            (
                sid
                for sid, s in self._by_id.items()
                if s.get(qn("w:type")) == "paragraph" and s.get(qn("w:default")) in ("1", "true")
            ),
            None,
        )

    def is_list(self, style_id: str | None) -> bool:
        """Whether a paragraph style numbers or bullets its paragraphs (``List Bullet``)."""
        depth = 0
        while style_id is not None and depth < 20:
            style = self._by_id.get(style_id)
            if style is None:
                return False
            ppr = style.find(_PPR)
            if ppr is not None and ppr.find(qn("w:numPr")) is not None:
                return True
            based = style.find(qn("w:basedOn"))
            style_id = based.get(_VAL) if based is not None else None
            depth += 1
        return False

    def props(self, style_id: str | None, _depth: int = 0) -> _RunProps:
        if style_id is None or _depth > 20:
            return _RunProps()
        if style_id in self._cache:
            return self._cache[style_id]
        style = self._by_id.get(style_id)
        if style is None:
            return _RunProps()
        own = _props(style.find(_RPR))
        based = style.find(qn("w:basedOn"))
        result = own.over(self.props(based.get(_VAL), _depth + 1)) if based is not None else own
        self._cache[style_id] = result
        return result


# ---------------------------------------------------------------------------- reader


@dataclass
class _Reader:
    styles: _Styles
    lines: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    def blocks(self, container: etree._Element) -> None:
        """Read the paragraphs and tables of a body, cell, header or text box in order."""
        for child in container.iterchildren():
            if child.tag == _P:
                self.paragraph(child)
            elif child.tag == _TBL:
                self.table(child)
            elif child.tag == _SDT:
                content = child.find(_SDT_CONTENT)
                if content is not None:
                    self.blocks(content)

    def paragraph(self, p: etree._Element, *, shaded_cell: bool = False) -> None:
        ppr = p.find(_PPR)
        style_id = None
        para_shaded = shaded_cell
        bullet = False
        if ppr is not None:
            ps = ppr.find(qn("w:pStyle"))
            style_id = ps.get(_VAL) if ps is not None else None
            para_shaded = para_shaded or bool(_shaded(ppr.find(qn("w:shd"))))
            bullet = ppr.find(qn("w:numPr")) is not None
        bullet = bullet or self.styles.is_list(style_id)
        base = self.styles.props(style_id or self.styles.default_paragraph).over(self.styles.defaults)
        depth = _TXBX_DEPTH(p)
        visible: list[str] = []
        hidden: list[str] = []
        for run in _RUNS(p, depth=depth):
            text = _run_text(run)
            if not text:
                continue
            rpr = run.find(_RPR)
            own = _props(rpr)
            rstyle = rpr.find(qn("w:rStyle")) if rpr is not None else None
            props = own.over(self.styles.props(rstyle.get(_VAL)) if rstyle is not None else _RunProps()).over(base)
            (hidden if _is_hidden(props, para_shaded) else visible).append(text)
        text = "".join(visible)
        if text.strip():
            self.lines.append(("- " if bullet else "") + text)
        if "".join(hidden).strip():
            self.hidden.append("".join(hidden))
        for box in _TEXT_BOXES(p, depth=depth):
            self.blocks(box)

    def table(self, tbl: etree._Element) -> None:
        for tr in tbl.iterchildren(_TR):
            cells: list[_Reader] = []
            for tc in tr.iterchildren(_TC):
                tcpr = tc.find(_TCPR)
                if tcpr is not None:
                    vmerge = tcpr.find(qn("w:vMerge"))
                    if vmerge is not None and vmerge.get(_VAL) != "restart":
                        continue  # continuation of a cell merged from the row above
                shaded = bool(_shaded(tcpr.find(qn("w:shd")))) if tcpr is not None else False
                cell = _Reader(self.styles)
                for child in tc.iterchildren():
                    if child.tag == _P:
                        cell.paragraph(child, shaded_cell=shaded)
                    elif child.tag == _TBL:
                        cell.table(child)
                    elif child.tag == _SDT:
                        content = child.find(_SDT_CONTENT)
                        if content is not None:
                            cell.blocks(content)
                cells.append(cell)
            self.hidden.extend(h for c in cells for h in c.hidden)
            filled = [c for c in cells if c.lines]
            if any(len(c.lines) > _LAYOUT_CELL_LINES for c in filled):
                for c in filled:  # a layout table: each cell is a column of the page
                    self.lines.extend(c.lines)
            elif filled:
                self.lines.append(" | ".join(" ".join(line.strip() for line in c.lines) for c in filled))


def _run_text(run: etree._Element) -> str:
    parts = []
    for el in run.iterchildren():
        tag = el.tag
        if tag == _T:
            parts.append(el.text or "")
        elif tag == _TAB:
            parts.append("\t")
        elif tag in (_BR, _CR):
            parts.append("\n")
        elif tag == _NBH:
            parts.append("-")
    return "".join(parts)


def _is_hidden(props: _RunProps, para_shaded: bool) -> bool:
    if props.vanish:
        return True
    if props.size is not None and props.size < _TINY_HALF_POINTS:
        return True
    white = props.color == "white" or (props.color is not None and _is_white_hex(props.color))
    return white and not (props.shaded or para_shaded)


def _is_white_hex(color: str) -> bool:
    if len(color) != 6:
        return False
    try:
        return all(int(color[i : i + 2], 16) >= 0xF0 for i in (0, 2, 4))
    except ValueError:
        return False
