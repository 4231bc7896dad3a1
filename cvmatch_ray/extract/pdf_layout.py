"""Rebuild a PDF page's text from glyph boxes: words, lines, columns.

Pure numpy, no PDF library: ``pdf.py`` reads glyphs with pdfium and hands them here, and
tests can build glyphs by hand.

Why not take pdfium's own text: it follows the content stream, so a template that draws
the name last puts it last, a generator that writes both columns row by row interleaves
them, and on some generators (the LiveCareer PDFs) pdfium's space heuristic drops about a
fifth of the spaces between words. Boxes fix all three:

- Words: a space goes between two glyphs when pdfium put one there, or when the gap is
  clearly wider than the line's usual gap between letters (so letter-spaced headings are
  not split into letters).
- Segments: runs of glyphs on one baseline with no wide gap.
- Columns: a vertical band of empty space that splits the segments of a zone of the page
  into a left and a right group; the zone's left column is read before its right one, and
  what is above and below the zone is read before and after it (recursively). A narrow
  column whose few lines each sit on a row of the other column (dates beside jobs) is a
  timeline, read row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Gaps are measured in units of the glyph box height (about 1.15 em).
_SEGMENT_GAP = 1.0  # a wider gap on a line starts a new segment (column gutter, tab stop)
_SPACE_MARGIN = 0.12  # a gap this much wider than the line's letter gap is a word space
_MIN_LETTER_GAP = -0.04  # floor for that letter gap (kerning pulls letters together)
_MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Glyphs:
    """Visible glyphs of one page in content order, whitespace removed.

    Attributes:
        chars: One character per glyph.
        boxes: ``(n, 4)`` float array of loose boxes: left, right, bottom, top (PDF points,
            y upwards).
        space_before: The source text had whitespace before this glyph.
        break_before: The source text had a line break before this glyph.
    """

    chars: list[str]
    boxes: np.ndarray
    space_before: np.ndarray
    break_before: np.ndarray

    def __len__(self) -> int:
        return len(self.chars)


@dataclass(frozen=True, slots=True)
class PageText:
    """Text of one page rebuilt from its glyphs.

    Attributes:
        text: Lines in reading order; a blank line where the vertical gap is wide.
        spaces_added: Word spaces inserted from geometry that the source text lacked.
        spaces_kept: Word spaces the source text already had.
        columns: Column splits used (0 for a single-column page).
        lines: Number of text lines.
    """

    text: str
    spaces_added: int
    spaces_kept: int
    columns: int
    lines: int


@dataclass(slots=True)
class _Segments:
    start: np.ndarray
    end: np.ndarray
    left: np.ndarray
    right: np.ndarray
    bottom: np.ndarray
    top: np.ndarray
    height: np.ndarray
    text: list[str]


def layout_page(glyphs: Glyphs, *, recover_spaces: bool = True) -> PageText:
    """Rebuild the text of one page.

    Args:
        glyphs: The page's visible glyphs in content order.
        recover_spaces: Insert word spaces the source lacks where the gap between two
            glyphs is clearly a word gap.
    """
    n = len(glyphs)
    if n == 0:
        return PageText("", 0, 0, 0, 0)
    segs, added, kept = _segments(glyphs, recover_spaces)
    order: list[list[int]] = []
    columns = _read(segs, np.arange(len(segs.start)), order, 0)
    return PageText(_join_lines(segs, order), added, kept, columns, len(order))


# ----------------------------------------------------------------------------- segments


def _segments(g: Glyphs, recover_spaces: bool) -> tuple[_Segments, int, int]:
    b = np.asarray(g.boxes, dtype=np.float64)
    left, right, bottom, top = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    h = np.maximum(top - bottom, 0.1)
    n = len(g)
    hp = np.maximum(h[1:], h[:-1])  # pair height
    gap = (left[1:] - right[:-1]) / hp
    same_base = np.abs(bottom[1:] - bottom[:-1]) <= 0.4 * np.minimum(h[1:], h[:-1])
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = (
        g.break_before[1:]
        | ~same_base
        | (gap > _SEGMENT_GAP)
        | (gap < -0.6)  # text drawn backwards: another column or an overprint
    )
    starts = np.flatnonzero(new_seg)
    ends = np.append(starts[1:], n)
    src_space = np.asarray(g.space_before, dtype=bool)
    space = src_space.copy()
    space[starts] = False
    added = 0
    if recover_spaces and n > 1:
        inner = ~new_seg[1:]  # pair (i-1, i) inside one segment
        plain = inner & ~src_space[1:]
        adv_gap = _advance_gaps(g.chars, left, right, h, hp, plain)
        # A line's letter gap: the median gap between glyphs with no space between them.
        seg_of_pair = np.cumsum(new_seg)[1:] - 1
        letter_gap = _group_quantile(adv_gap, plain, seg_of_pair, len(starts), 0.5)
        fallback = float(np.median(adv_gap[plain])) if plain.any() else 0.0
        letter_gap = np.where(np.isnan(letter_gap), fallback, letter_gap)
        thresh = np.maximum(letter_gap, _MIN_LETTER_GAP) + _SPACE_MARGIN
        wide = plain & (adv_gap > thresh[seg_of_pair])
        added = int(wide.sum())
        space[1:] |= wide
    kept = int((src_space[1:] & ~new_seg[1:]).sum())
    chars = g.chars
    texts = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        sp = space[s:e]
        texts.append("".join(" " + c if f else c for c, f in zip(chars[s:e], sp.tolist())))
    segs = _Segments(
        start=starts,
        end=ends,
        left=np.minimum.reduceat(left, starts),
        right=np.maximum.reduceat(right, starts),
        # Loose boxes share a bottom along a baseline, so a mean is as good as a median.
        bottom=np.add.reduceat(bottom, starts) / (ends - starts),
        top=np.maximum.reduceat(top, starts),
        height=np.add.reduceat(h, starts) / (ends - starts),
        text=texts,
    )
    return segs, added, kept


def _advance_gaps(
    chars: list[str], left: np.ndarray, right: np.ndarray, h: np.ndarray, hp: np.ndarray, plain: np.ndarray
) -> np.ndarray:
    """Gap after each glyph, measured from where the next glyph would start inside a word.

    A loose box is about a glyph's advance, except for glyphs that overhang the next one
    (an italic or some "f"s), whose gap then looks too small even before a word space. So
    the advance of each glyph shape (character, box width, height: the width tells fonts
    apart) is also estimated from the page itself, as the low (20th percentile) distance
    to the next glyph over pairs with no space between them, and the smaller of the two
    is used. The box width wins for characters that mostly end words ("," or the "y" of
    "Company"), whose steps are mostly word gaps.
    """
    step = left[1:] - left[:-1]
    width = right - left
    keys = (
        np.frombuffer("".join(chars).encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64) << 24
        | np.round(width * 8).astype(np.int64) << 12
        | np.round(h * 8).astype(np.int64)
    )
    uniq, key_id = np.unique(keys, return_inverse=True)
    usable = plain & (step > 0) & (step < 2 * hp)
    advance = _group_quantile(step, usable, key_id[:-1], len(uniq), 0.2)[key_id]
    advance = np.fmin(advance, width)  # fmin: NaN (too few pairs) gives the width
    return (step - advance[:-1]) / hp


def _group_quantile(
    values: np.ndarray, mask: np.ndarray, group: np.ndarray, n_groups: int, q: float
) -> np.ndarray:
    """The ``q`` quantile of ``values[mask]`` per group id; NaN for groups with under 3 values."""
    out = np.full(n_groups, np.nan)
    v, gr = values[mask], group[mask]
    if not len(v):
        return out
    order = np.lexsort((v, gr))
    v, gr = v[order], gr[order]
    first = np.r_[0, np.flatnonzero(np.diff(gr)) + 1]
    counts = np.diff(np.r_[first, len(gr)])
    ok = counts >= 3
    out[gr[first[ok]]] = v[first[ok] + (q * (counts[ok] - 1)).round().astype(np.int64)]
    return out


# ------------------------------------------------------------------------------ columns


def _read(segs: _Segments, idx: np.ndarray, out: list[list[int]], depth: int) -> int:
    """Append the lines of segments ``idx`` to ``out`` in reading order; return column splits."""
    if not len(idx):
        return 0
    split = _find_gutter(segs, idx) if depth < _MAX_DEPTH else None
    if split is None:
        out.extend(_rows(segs, idx))
        return 0
    above, left, right, below = split
    cols = 1
    for part in (above, left, right, below):
        cols += _read(segs, part, out, depth + 1)
    return cols


def _find_gutter(
    segs: _Segments, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Split ``idx`` into (above, left, right, below) at the widest column gutter, if any."""
    if len(idx) < 6:
        return None
    L, R, B, T = segs.left[idx], segs.right[idx], segs.bottom[idx], segs.top[idx]
    hmed = float(np.median(segs.height[idx]))
    x0, x1 = float(L.min()), float(R.max())
    width = x1 - x0
    if width < 12 * hmed:
        return None
    xs = np.arange(x0 + 0.12 * width, x1 - 0.12 * width, 1.0)
    if not len(xs):
        return None
    X = xs[:, None]
    is_left = R[None, :] <= X
    is_right = L[None, :] >= X
    crossing = ~is_left & ~is_right
    inf = np.inf
    # The core zone is where both sides have text; it extends up and down to the nearest
    # segment that crosses the gutter (a full-width header, a section spanning the page).
    zone_lo = np.maximum(np.where(is_left, B, inf).min(1), np.where(is_right, B, inf).min(1))
    zone_hi = np.minimum(np.where(is_left, T, -inf).max(1), np.where(is_right, T, -inf).max(1))
    cross_above = crossing & (B[None, :] >= zone_hi[:, None])
    cross_below = crossing & (T[None, :] <= zone_lo[:, None])
    ext_hi = np.where(cross_above, B, inf).min(1)
    ext_lo = np.where(cross_below, T, -inf).max(1)
    mid = (B + T) / 2
    in_zone = (mid[None, :] > zone_lo[:, None]) & (mid[None, :] < zone_hi[:, None])
    n_left = (is_left & in_zone).sum(1)
    n_right = (is_right & in_zone).sum(1)
    intruders = (crossing & ~cross_above & ~cross_below).sum(1)
    span = float(T.max() - B.min())
    valid = (
        (n_left >= 3)
        & (n_right >= 3)
        & (intruders <= 0.04 * (n_left + n_right))
        & (zone_hi - zone_lo >= max(4 * hmed, 0.2 * span))
    )
    if not valid.any():
        return None
    # The widest run of valid positions is the gutter; its middle is the cut.
    runs = np.split(np.flatnonzero(valid), np.flatnonzero(np.diff(np.flatnonzero(valid)) > 1) + 1)
    best = max(runs, key=len)
    if len(best) < max(3.0, 0.4 * hmed):
        return None
    k = int(best[len(best) // 2])
    gx, lo, hi = float(xs[k]), float(ext_lo[k]), float(ext_hi[k])
    core_lo, core_hi = float(zone_lo[k]), float(zone_hi[k])
    lo, hi = _extend(L, R, B, T, mid, gx, core_lo, core_hi, lo, hi, hmed)
    above_m = mid >= hi
    below_m = (mid <= lo) & ~above_m
    zone_m = ~above_m & ~below_m
    left_m = zone_m & ((L + R) / 2 < gx)
    right_m = zone_m & ~left_m
    if _is_timeline(segs, idx[left_m], idx[right_m], hmed):
        return None
    return idx[above_m], idx[left_m], idx[right_m], idx[below_m]


def _extend(
    L: np.ndarray, R: np.ndarray, B: np.ndarray, T: np.ndarray, mid: np.ndarray, gx: float,
    core_lo: float, core_hi: float, lo: float, hi: float, hmed: float,
) -> tuple[float, float]:
    """How far a column runs past the rows both columns share.

    Past its shared rows a column may go on (a long main column beside a short sidebar)
    or the page may return to one column whose lines happen to be short (a bullet list
    after a two-column skills block). A column goes on only if its first line past the
    shared rows follows at an ordinary line gap, and then only while its gaps stay within
    the largest gap it had beside the other column (section breaks included).
    """
    left_side = (L + R) / 2 < gx
    core = (mid > core_lo) & (mid < core_hi)
    strict, lenient = {}, {}
    for side in (True, False):
        m = core & (left_side == side)
        order = np.argsort(-T[m])
        b, t = B[m][order], T[m][order]
        gaps = np.minimum.accumulate(b)[:-1] - t[1:] if len(b) > 1 else np.zeros(0)
        gaps = gaps[gaps > 0]
        typical = float(np.median(gaps)) if len(gaps) else 0.0
        strict[side] = max(2.0 * typical, 0.9 * hmed)
        lenient[side] = max(1.2 * float(gaps.max(initial=0.0)), 1.5 * hmed)

    def walk(edge: dict[bool, float], cand: np.ndarray, down: bool) -> float | None:
        first = {True: True, False: True}
        for i in cand.tolist():
            side = bool(left_side[i])
            gap = edge[side] - T[i] if down else B[i] - edge[side]
            if gap > (strict if first[side] else lenient)[side]:
                return float(T[i] if down else B[i])
            first[side] = False
            edge[side] = min(edge[side], float(B[i])) if down else max(edge[side], float(T[i]))
        return None

    below = np.flatnonzero((mid <= core_lo) & (mid > lo))
    floor = {side: float(B[core & (left_side == side)].min(initial=core_lo)) for side in (True, False)}
    stop = walk(floor, below[np.argsort(-T[below])], down=True)
    lo = lo if stop is None else stop
    above = np.flatnonzero((mid >= core_hi) & (mid < hi))
    ceiling = {side: float(T[core & (left_side == side)].max(initial=core_hi)) for side in (True, False)}
    stop = walk(ceiling, above[np.argsort(B[above])], down=False)
    hi = hi if stop is None else stop
    return lo, hi


def _is_timeline(segs: _Segments, left: np.ndarray, right: np.ndarray, hmed: float) -> bool:
    """A sparse column whose lines sit on rows of the other: read it row by row."""
    sparse, dense = (left, right) if len(left) <= len(right) else (right, left)
    if len(sparse) < 2:
        return True
    sb, db = segs.bottom[sparse], segs.bottom[dense]
    aligned = (np.abs(sb[:, None] - db[None, :]) < 0.3 * hmed).any(1).mean()
    rows = np.unique(np.round(sb / (0.5 * hmed)))
    step = float(np.median(np.diff(np.sort(rows)))) * 0.5 * hmed if len(rows) > 1 else 0.0
    return bool(aligned >= 0.8 and step >= 2.0 * hmed)


# -------------------------------------------------------------------------------- lines


def _rows(segs: _Segments, idx: np.ndarray) -> list[list[int]]:
    """Group segments into lines top to bottom, each line left to right."""
    centre = (segs.bottom[idx] + segs.top[idx]) / 2
    order = idx[np.argsort(-centre, kind="stable")]
    lines: list[list[int]] = []
    line_c = line_h = 0.0
    for i in order.tolist():
        c = (segs.bottom[i] + segs.top[i]) / 2
        h = segs.height[i]
        if lines and abs(line_c - c) < 0.45 * min(line_h, h):
            lines[-1].append(i)
        else:
            lines.append([i])
            line_c, line_h = c, h
    for line in lines:
        line.sort(key=lambda i: segs.left[i])
    return lines


def _join_lines(segs: _Segments, lines: list[list[int]]) -> str:
    if not lines:
        return ""
    bottoms = np.array([min(segs.bottom[i] for i in line) for line in lines])
    heights = np.array([max(segs.height[i] for i in line) for line in lines])
    steps = bottoms[:-1] - bottoms[1:]
    forward = steps[(steps > 0) & (steps < 3 * heights[1:])]
    pitch = float(np.median(forward)) if len(forward) else float(heights.max())
    out: list[str] = []
    for k, line in enumerate(lines):
        # A step well over the page's usual line pitch is a paragraph or section break;
        # a jump back up the page is the start of another column.
        if k and (steps[k - 1] > 1.45 * max(pitch, heights[k]) or steps[k - 1] < -2 * heights[k]):
            out.append("")
        out.append(" ".join(segs.text[i].strip() for i in line))
    return "\n".join(out)
