"""Tokens and CRF features of a CV's raw text: one place for training and tagging.

A token keeps its character offsets in the text it came from, so labelled spans are cut
from the original text. Layout is read from line breaks and, for flattened text, from
runs of two or more spaces (the former line breaks of scraped resumes): both cut the text
into *segments*, the unit of the layout features (position in the segment, its length,
whether it holds a date or reads as a title, the heading above it).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from cvmatch_ray.standardize.rules.education import degree_level
from cvmatch_ray.standardize.rules.sections import match_heading
from cvmatch_ray.taxonomy import Taxonomy

# Escaped bytes ("\xef\x82\xa7") are one token; words keep inner dots, apostrophes and "&"
# ("B.Tech", "O'Neil", "AT&T") and a trailing "+"/"#" ("C++", "C#").
_TOKEN = re.compile(r"(?:\\x[0-9a-fA-F]{2})+|[^\W_]+(?:[.'’&][^\W_]+)*[+#]*|\S")
_SEGMENT_BREAK = re.compile(r"\n|[ \t\xa0]{2,}")
_YEAR = re.compile(r"^(?:19[5-9]\d|20[0-4]\d)$")
_MONTHS = frozenset(
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august "
    "september october november december".split()
)
_PRESENT = frozenset("present current now till date today ongoing".split())
_COMPANY_WORDS = frozenset(
    """inc llc llp ltd limited corp corporation company co plc gmbh pvt pte private group technologies
    technology solutions systems services bank consulting consultants associates partners industries
    enterprises international global holdings labs software infotech networks""".split()
)
_INSTITUTION_WORDS = frozenset(
    """university college institute school academy polytechnic vidyalaya vidyapeeth iit nit iim
    universidad faculty board""".split()
)
_DEGREE_WORDS = frozenset(
    """bachelor bachelors master masters diploma degree phd doctorate btech b.tech be b.e mtech m.tech mba
    bsc b.sc msc m.sc bca mca bcom b.com mcom m.com ba ma bs ms hsc ssc sslc intermediate engineering
    graduation postgraduate pgdm associate""".split()
)
_BULLETS = frozenset("•·◦▪■□●○◆◇►▶➢➤✓✔*-–—>~")
_YEAR_IN = re.compile(r"(?:19[5-9]\d|20[0-4]\d)")


@dataclass(frozen=True, slots=True)
class Token:
    """A token and where it is: offsets in the text, its segment, its place in the segment."""

    text: str
    start: int
    end: int
    seg: int


@dataclass(slots=True)
class _Segment:
    start: int
    end: int
    hard: bool  # opened by a line break (not by a run of spaces)
    blank_before: bool
    first_tok: int = 0
    n_toks: int = 0
    feats: tuple[str, ...] = ()


def tokenize(text: str) -> tuple[list[Token], list[_Segment]]:
    """The tokens of ``text`` and the segments they fall in."""
    segments: list[_Segment] = []
    pos = prev_end = 0
    for start, end in [*((m.start(), m.end()) for m in _SEGMENT_BREAK.finditer(text)), (len(text), len(text))]:
        if text[pos:start].strip():
            gap = text[prev_end:pos]
            first = not segments
            segments.append(_Segment(pos, start, first or "\n" in gap, first or gap.count("\n") >= 2))
            prev_end = start
        pos = end
    tokens: list[Token] = []
    for k, seg in enumerate(segments):
        seg.first_tok = len(tokens)
        for m in _TOKEN.finditer(text, seg.start, seg.end):
            tokens.append(Token(m.group(), m.start(), m.end(), k))
        seg.n_toks = len(tokens) - seg.first_tok
    return tokens, segments


def _shape(word: str) -> str:
    out = []
    for ch in word[:8]:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def _segment_features(text: str, seg: _Segment, taxonomy: Taxonomy, section: str) -> tuple[str, ...]:
    raw = text[seg.start:seg.end].strip()
    n = seg.n_toks
    f = [f"sn={min(n, 6) if n < 6 else 6 if n < 10 else 10 if n < 20 else 20}", f"sec={section}",
         "shard" if seg.hard else "ssoft"]
    if seg.blank_before:
        f.append("sblank")
    if _YEAR_IN.search(raw):
        f.append("syear")
    if n <= 10:
        low = raw.lower()
        if taxonomy.looks_like_title(raw):
            f.append("stitle")
        words = set(re.findall(r"[a-z]+", low))
        if words & _COMPANY_WORDS:
            f.append("scomp")
        if words & _INSTITUTION_WORDS:
            f.append("sinst")
        if degree_level(raw):
            f.append("sdeg")
        if raw.isupper():
            f.append("supper")
        elif all(w[:1].isupper() for w in raw.split() if w[:1].isalpha()):
            f.append("scaps")
        if raw.endswith((" -", "-")):
            f.append("sdash")
    if raw[:1] in _BULLETS:
        f.append("sbullet")
    if raw.endswith("."):
        f.append("sdot")
    if "@" in raw:
        f.append("s@")
    return tuple(f)


def _skill_marks(text: str, tokens: list[Token], taxonomy: Taxonomy) -> list[str]:
    """"B"/"I" for tokens inside a taxonomy skill hit, "" elsewhere."""
    marks = [""] * len(tokens)
    hits = taxonomy.find_skills(text)
    if not hits:
        return marks
    starts = [t.start for t in tokens]
    for h in hits:
        i = bisect.bisect_left(starts, h.start)
        first = True
        while i < len(tokens) and tokens[i].start < h.end:
            marks[i] = "B" if first else "I"
            first = False
            i += 1
    return marks


def _word_features(word: str, taxonomy: Taxonomy) -> list[str]:
    low = word.lower()
    f = [f"w={low}", f"sh={_shape(word)}", f"s3={low[-3:]}"]
    if word[0].isupper():
        f.append("cap")
    if word.isupper() and len(word) > 1:
        f.append("upper")
    if word.isdigit():
        f.append("digit")
        if _YEAR.match(word):
            f.append("year")
    elif not word[0].isalnum():
        f.append("punct")
    if low in _MONTHS:
        f.append("month")
    elif low in _PRESENT:
        f.append("present")
    if low in taxonomy.title_head_words:
        f.append("thead")
    if low in taxonomy.seniority_words:
        f.append("senior")
    if low in _COMPANY_WORDS:
        f.append("compw")
    if low in _INSTITUTION_WORDS:
        f.append("instw")
    if low in _DEGREE_WORDS:
        f.append("degw")
    return f


def featurize(text: str, taxonomy: Taxonomy) -> tuple[list[Token], list[list[str]]]:
    """The tokens of ``text`` and one feature list per token."""
    tokens, segments = tokenize(text)
    section = "none"
    for seg in segments:
        raw = text[seg.start:seg.end].strip()
        if seg.n_toks <= 6 and (hit := match_heading(raw)) is not None:
            section = hit[0].value
            seg.feats = (*_segment_features(text, seg, taxonomy, section), "shead")
            continue
        seg.feats = _segment_features(text, seg, taxonomy, section)
    marks = _skill_marks(text, tokens, taxonomy)
    # Per distinct word: its own features, then its features as a neighbour at -2, -1, +1, +2.
    cache: dict[str, tuple[list[str], tuple[str, ...]]] = {}
    words: list[tuple[list[str], tuple[str, ...]]] = []
    for tok in tokens:
        wf = cache.get(tok.text)
        if wf is None:
            low, sh = tok.text.lower(), _shape(tok.text)
            wf = cache[tok.text] = (
                _word_features(tok.text, taxonomy),
                (f"-2w={low}", f"-1w={low}", f"1w={low}", f"2w={low}", f"-1sh={sh}", f"1sh={sh}", low),
            )
        words.append(wf)
    # Per segment: its features and those its neighbours lend it.
    n_seg = len(segments)
    seg_ctx: list[list[str]] = []
    for k, seg in enumerate(segments):
        prev_seg = segments[k - 1].feats if k else ()
        next_seg = segments[k + 1].feats if k + 1 < n_seg else ()
        ctx = [*seg.feats, f"segi={min(k, 5)}"]
        if "syear" in prev_seg:
            ctx.append("pseg:year")
        if "syear" in next_seg:
            ctx.append("nseg:year")
        if "stitle" in prev_seg:
            ctx.append("pseg:title")
        if "scomp" in next_seg:
            ctx.append("nseg:comp")
        seg_ctx.append(ctx)
    n = len(tokens)
    out: list[list[str]] = []
    key = ""
    for i, tok in enumerate(tokens):
        k = tok.seg
        seg = segments[k]
        pos = i - seg.first_tok
        if pos == 0:
            key = ""
        if tok.text == ":" and pos > 0:
            key = words[i - 1][1][6]  # "Company: X", "Designation: Y"
        f = ["bias", *words[i][0], *seg_ctx[k], _POS[pos if pos < 4 else 4]]
        if pos == seg.n_toks - 1:
            f.append("last")
        if key and tok.text != ":":
            f.append(f"key={key}")
        f.append(_DPOS[i // 10] if i < 60 else "dpos=6" if i < 200 else "dpos=7")
        if marks[i]:
            f.append(_SK[marks[i]])
        for off, slot in ((-2, 0), (-1, 1), (1, 2), (2, 3)):
            j = i + off
            if 0 <= j < n:
                if tokens[j].seg == k:
                    ctx = words[j][1]
                    f.append(ctx[slot])
                    if slot == 1 or slot == 2:
                        f.append(ctx[4 if slot == 1 else 5])
                        if marks[j]:
                            f.append(_NSK[slot])
                else:
                    f.append(_BRK[slot])
            else:
                f.append(_EDGE[slot])
        out.append(f)
    return tokens, out


_POS = tuple(f"pos={k}" for k in range(5))
_DPOS = tuple(f"dpos={k}" for k in range(6))
_SK = {"B": "sk=B", "I": "sk=I"}
_NSK = {1: "-1sk", 2: "1sk"}
_BRK = ("-2brk", "-1brk", "1brk", "2brk")
_EDGE = ("-2edge", "-1edge", "1edge", "2edge")
