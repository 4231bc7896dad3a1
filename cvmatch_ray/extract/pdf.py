"""PDF text with pdfium: glyph boxes, hidden text, spacing and column order.

One pass per page reads every glyph's character and loose box from pdfium (two bulk-ish
calls through ctypes), then:

1. Hidden glyphs are set aside: boxes under ~2 pt tall, boxes off the page, and glyphs
   filled white (or fully transparent) where the page under them is white. Fill colours
   are read once per word, not per glyph, and the page is rendered only when some glyph
   is white, to tell white-on-white from white text on a dark sidebar.
2. ``pdf_layout`` rebuilds words, lines and columns from the visible glyphs.
3. Pages whose text still looks unspaced (long glued tokens) are compared with pypdf,
   which is slow (~20x) and only called then; its text is taken when it finds clearly
   more words and the page holds no hidden text (pypdf cannot leave it out).

Not detected as hidden: text under an image or a filled shape, text clipped away, and
render mode 3 (invisible), which is how OCR layers of scanned PDFs are written.
"""

from __future__ import annotations

import ctypes
import io
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .document import (
    FLAG_MULTI_COLUMN,
    FLAG_SPACING_RECOVERED,
    ExtractedDocument,
    finish,
)
from .errors import (
    CorruptDocument,
    DocumentTooComplex,
    EmptyDocument,
    EncryptedDocument,
    NoTextLayer,
    TooManyPages,
)
from .pdf_layout import Glyphs, layout_page

logger = logging.getLogger(__name__)

# pdfium is not thread-safe; a Serve replica may run sync handlers in a thread pool.
_PDFIUM_LOCK = threading.Lock()

_TINY_PT = 2.2  # loose box height of a ~2 pt font
_WHITE = 240  # r, g and b at least this: white or near-white fill
_TRANSPARENT = 25  # fill alpha below this: invisible
_LIGHT_BACKGROUND = 225  # mean grey level under a white word above this: white on white
_RENDER_SCALE = 0.5

_WHITESPACE = np.array([9, 32, 0xA0, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
                        0x2007, 0x2008, 0x2009, 0x200A, 0x202F, 0x3000], dtype=np.uint32)
_BREAKS = np.array([10, 11, 12, 13, 0x2028, 0x2029], dtype=np.uint32)


def _fast(func: object, restype: type, *argtypes: type) -> ctypes._CFuncPtr:
    """Re-declare a pdfium function with plain pointer arguments.

    pypdfium2's own prototypes convert and type-check each argument, which costs ~2 us a
    call; passing integer addresses costs well under one. The shared prototypes are left
    untouched.
    """
    address = ctypes.cast(func, ctypes.c_void_p).value
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


_vp, _int = ctypes.c_void_p, ctypes.c_int
_loose_box = _fast(pdfium_c.FPDFText_GetLooseCharBox, _int, _vp, _int, _vp)
_fill_color = _fast(pdfium_c.FPDFText_GetFillColor, _int, _vp, _int, _vp, _vp, _vp, _vp)
_unicode = _fast(pdfium_c.FPDFText_GetUnicode, ctypes.c_uint, _vp, _int)

_ALPHA_TOKEN = re.compile(r"[^\W\d_]+")


def looks_unspaced(text: str) -> bool:
    """Whether ``text`` looks like it lost spaces between words ("ofexperienceinAccount").

    Cheap: the share of letters that sit in alphabetic tokens of 16 or more letters.
    English prose keeps that share near 1%; losing a fifth of the spaces pushes it past 10%.
    """
    tokens = _ALPHA_TOKEN.findall(text)
    if len(tokens) < 40:
        return False
    letters = sum(map(len, tokens))
    long_letters = sum(len(t) for t in tokens if len(t) >= 16)
    return long_letters > 0.06 * letters


@dataclass(slots=True)
class _PageResult:
    text: str
    hidden: str
    glyphs: int
    spaces_added: int
    spaces_kept: int
    columns: int
    chars: int = 0  # pdfium's character count, whitespace included
    extractor: str = "pypdfium2"


def extract_pdf(
    data: bytes, *, max_pages: int, max_glyphs: int, max_chars: int, filename: str | None = None
) -> ExtractedDocument:
    """Extract a PDF's visible text.

    Args:
        data: The PDF file.
        max_pages: Refuse PDFs with more pages.
        max_glyphs: Refuse PDFs whose pages hold more characters in all; counted page by
            page before the page's glyphs are read and laid out (the costly part).
        max_chars: Cut the text past this many characters.
        filename: Only used in error messages.

    Raises:
        EncryptedDocument: It needs a password.
        CorruptDocument: pdfium cannot open or read it.
        TooManyPages: More than ``max_pages`` pages.
        DocumentTooComplex: More than ``max_glyphs`` characters.
        NoTextLayer: Pages but no text (a scan).
        EmptyDocument: No pages, or only hidden text.
    """
    with _PDFIUM_LOCK:
        pdf = _open(data, filename)
        try:
            n_pages = len(pdf)
            if n_pages == 0:
                raise EmptyDocument("the PDF has no pages", filename=filename)
            if n_pages > max_pages:
                raise TooManyPages(f"the PDF has {n_pages} pages; at most {max_pages} are accepted", filename=filename)
            pages: list[_PageResult] = []
            for i in range(n_pages):
                try:
                    page = pdf[i]
                except pdfium.PdfiumError as e:
                    raise CorruptDocument(f"cannot read page {i + 1}: {e}", filename=filename) from e
                try:
                    left = max_glyphs - sum(p.chars for p in pages)
                    pages.append(_read_page(page, left, max_glyphs, filename))
                finally:
                    page.close()
        finally:
            pdf.close()
    if sum(p.glyphs for p in pages) == 0:
        raise NoTextLayer("scanned document, no text layer; OCR is not supported", filename=filename)
    flags: list[str] = []
    added = sum(p.spaces_added for p in pages)
    kept = sum(p.spaces_kept for p in pages)
    if added >= 3 and added >= 0.02 * (added + kept):
        flags.append(FLAG_SPACING_RECOVERED)
    _pypdf_fallback(data, pages, flags)
    if any(p.columns for p in pages):
        flags.append(FLAG_MULTI_COLUMN)
    extractors = sorted({p.extractor for p in pages})
    doc = finish(
        "\n\n".join(p.text for p in pages),
        kind="pdf",
        pages=n_pages,
        extractor="+".join(extractors),
        max_chars=max_chars,
        hidden_text="\n".join(p.hidden for p in pages if p.hidden),
        flags=flags,
    )
    if not doc.text:
        raise EmptyDocument("the PDF has no visible text", filename=filename)
    logger.debug(
        "pdf: pages=%d chars=%d spaces_added=%d columns=%d flags=%s",
        n_pages, len(doc.text), added, sum(p.columns for p in pages), doc.flags,
    )
    return doc


def _open(data: bytes, filename: str | None) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if e.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise EncryptedDocument("the PDF is password-protected", filename=filename) from e
        raise CorruptDocument(f"unreadable PDF: {e}", filename=filename) from e


def _read_page(page: pdfium.PdfPage, chars_left: int, max_glyphs: int, filename: str | None) -> _PageResult:
    textpage = page.get_textpage()
    try:
        n = pdfium_c.FPDFText_CountChars(textpage.raw)
        if n <= 0:
            return _PageResult("", "", 0, 0, 0, 0)
        if n > chars_left:
            raise DocumentTooComplex(
                f"the PDF holds more than {max_glyphs} characters", filename=filename
            )
        tp = ctypes.cast(textpage.raw, ctypes.c_void_p).value
        codes = _codes(textpage, tp, n)
        boxes = _boxes(tp, n)
        is_ws = np.isin(codes, _WHITESPACE)
        is_break = np.isin(codes, _BREAKS)
        glyph = ~is_ws & ~is_break & (codes != 0)
        hidden = glyph & _tiny_or_offpage(page, boxes)
        white = glyph & ~hidden & _white_fill(tp, glyph, boxes)
        if white.any():
            hidden |= _on_light_background(page, boxes, white)
    finally:
        textpage.close()
    boxes = _reading_frame(boxes, glyph)
    chars = _to_chars(codes)
    visible = glyph & ~hidden
    vis = layout_page(_glyphs(chars, boxes, visible, is_ws | hidden, is_break))
    hid = layout_page(_glyphs(chars, boxes, hidden, is_ws | visible, is_break)) if hidden.any() else None
    text = vis.text
    if vis.lines >= 20 and len(text) < 3 * vis.lines:
        # Mostly one-glyph lines: vertical or rotated text that boxes cannot order. pdfium's
        # own content-order text is the better guess.
        text = "".join(ch for ch, v in zip(chars, (visible | is_ws | is_break).tolist()) if v)
    hidden_text = hid.text if hid else ""
    if sum(ch.isalnum() for ch in hidden_text) < 3:
        # A glyph or two cut by the page edge is layout noise, not hidden content.
        hidden_text = ""
    return _PageResult(
        text=text,
        hidden=hidden_text,
        glyphs=int(glyph.sum()),
        spaces_added=vis.spaces_added,
        spaces_kept=vis.spaces_kept,
        columns=vis.columns,
        chars=n,
    )


def _codes(textpage: pdfium.PdfTextPage, tp: int, n: int) -> np.ndarray:
    buf = (ctypes.c_ushort * (n + 1))()
    written = pdfium_c.FPDFText_GetText(textpage.raw, 0, n, buf)
    units = np.frombuffer(buf, dtype=np.uint16, count=n).astype(np.uint32)
    if written - 1 == n and not ((units >= 0xD800) & (units < 0xE000)).any():
        return units
    # Characters outside the BMP take two UTF-16 units, so the text no longer lines up
    # with glyph indices: ask glyph by glyph.
    return np.fromiter((_unicode(tp, i) for i in range(n)), dtype=np.uint32, count=n)


def _to_chars(codes: np.ndarray) -> list[str]:
    try:
        return list(codes.astype("<u4").tobytes().decode("utf-32-le"))
    except UnicodeDecodeError:  # lone surrogates from a broken font map
        return [chr(c) for c in codes.tolist()]


def _boxes(tp: int, n: int) -> np.ndarray:
    """Loose glyph boxes as ``(n, 4)``: left, right, bottom, top."""
    rects = np.zeros((n, 4), dtype=np.float32)  # FS_RECTF: left, top, right, bottom
    base = rects.ctypes.data
    # map() keeps the per-glyph loop in C; this is the hot loop of PDF extraction.
    deque(map(_loose_box, repeat(tp, n), range(n), range(base, base + 16 * n, 16)), maxlen=0)
    return rects[:, [0, 2, 3, 1]].astype(np.float64)


def _tiny_or_offpage(page: pdfium.PdfPage, boxes: np.ndarray) -> np.ndarray:
    left, right, bottom, top = boxes.T
    height = top - bottom
    # Zero-height boxes come from fonts without ascent/descent metrics, not from tiny text.
    tiny = (height > 0) & (height < _TINY_PT)
    x0, y0, x1, y1 = page.get_bbox()
    cx, cy = (left + right) / 2, (bottom + top) / 2
    off = (cx < x0) | (cx > x1) | (cy < y0) | (cy > y1)
    return tiny | off


def _white_fill(tp: int, glyph: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Glyphs filled white or transparent, reading colours once per word.

    A word is a run of glyphs with no whitespace between them. Its first and last glyphs
    are read; only when they differ is every glyph of the word read.
    """
    n = len(glyph)
    idx = np.flatnonzero(glyph)
    if not len(idx):
        return np.zeros(n, dtype=bool)
    new_word = np.ones(len(idx), dtype=bool)
    new_word[1:] = np.diff(idx) > 1
    starts = np.flatnonzero(new_word)
    ends = np.append(starts[1:], len(idx)) - 1
    rgba = (ctypes.c_uint * 4)()
    a = ctypes.addressof(rgba)

    def is_white(i: int) -> bool:
        if not _fill_color(tp, i, a, a + 4, a + 8, a + 12):
            return False
        r, g, b, alpha = rgba
        return alpha < _TRANSPARENT or (r >= _WHITE and g >= _WHITE and b >= _WHITE)

    white = np.zeros(n, dtype=bool)
    for s, e in zip(idx[starts].tolist(), idx[ends].tolist()):
        first = is_white(s)
        last = first if e == s else is_white(e)
        if first and last:
            white[s : e + 1] = True
        elif first != last:
            for i in range(s, e + 1):
                white[i] = is_white(i)
    return white & glyph


def _on_light_background(page: pdfium.PdfPage, boxes: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Which white glyphs sit on a light background (invisible), by rendering the page."""
    bitmap = page.render(scale=_RENDER_SCALE, grayscale=True)
    try:
        grey = np.asarray(bitmap.to_numpy(), dtype=np.float32)
    finally:
        bitmap.close()
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    height_px, width_px = grey.shape
    x0, _, _, y1 = page.get_bbox()
    rotation = page.get_rotation()
    out = np.zeros(len(white), dtype=bool)
    if rotation:
        # Mapping boxes onto a rotated render is not worth it for hidden-text checks: a
        # white glyph on a rotated page counts as hidden.
        return white
    for i in np.flatnonzero(white).tolist():
        left, right, bottom, top = boxes[i]
        c0 = int(np.clip((left - x0) * _RENDER_SCALE, 0, width_px - 1))
        c1 = int(np.clip(np.ceil((right - x0) * _RENDER_SCALE), c0 + 1, width_px))
        r0 = int(np.clip((y1 - top) * _RENDER_SCALE, 0, height_px - 1))
        r1 = int(np.clip(np.ceil((y1 - bottom) * _RENDER_SCALE), r0 + 1, height_px))
        out[i] = grey[r0:r1, c0:c1].mean() >= _LIGHT_BACKGROUND
    return out


def _reading_frame(boxes: np.ndarray, glyph: np.ndarray) -> np.ndarray:
    """Turn boxes so that the page's text runs left to right, bottom line last.

    Text on a page with ``/Rotate`` or drawn rotated (a landscape scan's OCR layer, a page
    saved sideways) advances up, down or leftwards in PDF space. The dominant direction of
    glyph-to-glyph steps tells which, and the boxes are turned to match.
    """
    idx = np.flatnonzero(glyph)
    if len(idx) < 2:
        return boxes
    b = boxes[idx]
    cx, cy = (b[:, 0] + b[:, 1]) / 2, (b[:, 2] + b[:, 3]) / 2
    dx, dy = np.diff(cx), np.diff(cy)
    size = np.maximum(b[:, 1] - b[:, 0], b[:, 3] - b[:, 2])[:-1]
    near = np.hypot(dx, dy) < 2 * np.maximum(size, 0.1)
    dx, dy = dx[near], dy[near]
    votes = {
        "right": int((dx > np.abs(dy)).sum()),
        "left": int((-dx > np.abs(dy)).sum()),
        "up": int((dy > np.abs(dx)).sum()),
        "down": int((-dy > np.abs(dx)).sum()),
    }
    direction = max(votes, key=votes.__getitem__)
    left, right, bottom, top = boxes.T
    if direction == "up":  # rotated a quarter turn anticlockwise
        return np.stack([bottom, top, -right, -left], axis=1)
    if direction == "down":
        return np.stack([-top, -bottom, left, right], axis=1)
    if direction == "left":
        return np.stack([-right, -left, -top, -bottom], axis=1)
    return boxes


def _glyphs(
    chars: list[str], boxes: np.ndarray, keep: np.ndarray, gap: np.ndarray, brk: np.ndarray
) -> Glyphs:
    """The glyphs in ``keep``, with whether a ``gap`` or ``brk`` character preceded each."""
    idx = np.flatnonzero(keep)
    gaps = np.concatenate([[0], np.cumsum(gap)])
    breaks = np.concatenate([[0], np.cumsum(brk)])
    prev = np.concatenate([[0], idx[:-1] + 1])
    return Glyphs(
        chars=[chars[i] for i in idx.tolist()],
        boxes=boxes[idx],
        space_before=(gaps[idx] - gaps[prev]) > 0,
        break_before=(breaks[idx] - breaks[prev]) > 0,
    )


def _word_count(text: str) -> int:
    return len(text.split())


def _pypdf_fallback(data: bytes, pages: list[_PageResult], flags: list[str]) -> None:
    """Replace still-unspaced pages with pypdf's text when pypdf finds clearly more words."""
    suspects = [i for i, p in enumerate(pages) if not p.hidden and looks_unspaced(p.text)]
    if not suspects:
        return
    # Imported here: pypdf is only needed for the rare page pdfium gets wrong.
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        for i in suspects:
            alt = reader.pages[i].extract_text() or ""
            if _word_count(alt) >= 1.1 * _word_count(pages[i].text):
                pages[i].text = alt
                pages[i].extractor = "pypdf"
                if FLAG_SPACING_RECOVERED not in flags:
                    flags.append(FLAG_SPACING_RECOVERED)
    except (PdfReadError, ValueError, KeyError, IndexError) as e:
        # pdfium's text stands; pypdf only ever improves on it.
        logger.warning("pypdf fallback failed: %s", type(e).__name__)
