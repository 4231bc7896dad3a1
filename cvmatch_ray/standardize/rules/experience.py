"""Work experience entries, anchored on their date ranges.

Every date range in the experience section starts an entry. The entry's title, company
and location come from the short lines right around the date (its header); the lines that
follow, up to the next entry's header, are its responsibilities. Layouts handled:

* ``Title`` / ``Company - City, ST`` / ``April 2015 to Present`` (Indeed);
* ``Title`` / ``September 2014 to Current`` / ``Company Name | City , State`` (LiveCareer);
* ``June 2011 to Current Senior Accountant`` / ``Company Name | City , State``;
* one line: ``Title | Company | 2019 - 2021``, ``Title at Company, Jan 2019 - Present``,
  ``Company — Title (2017-2019)``, ``2001 - 2005: Assistant Producer, Sony``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cvmatch_ray.schemas import MAX_ITEMS, ExperienceEntry, Seniority, clean_line
from cvmatch_ray.standardize.rules.dates import DateRange, find_ranges
from cvmatch_ray.standardize.rules.sections import strip_bullet
from cvmatch_ray.taxonomy import Taxonomy

_COMPANY_WORDS = frozenset(
    """inc incorporated llc llp ltd limited corp corporation company co plc gmbh ag sa bv pvt pte private
    group technologies technology solutions systems services bank university college hospital school
    institute agency labs laboratories consulting consultants associates partners industries enterprises
    international global holdings foundation clinic center centre council department ministry government
    network networks software studios studio media store stores restaurant hotel academy firm office
    infotech infosys tcs wipro accenture deloitte google microsoft amazon oracle ibm""".split()
)
_SEGMENT_SPLIT = re.compile(r"\s+[|•·]\s+|\s*\|\s*|\s+[-–—]\s+|\s+at\s+|\s+@\s+|\s*[;]\s*|\s*\(\s*|\s*\)\s*")
# "City, ST", "City , State", "City, ST 12345" at the end of a segment.
_LOCATION_TAIL = re.compile(
    r"(?:^|,\s*|\s+)((?:City|[A-Z][A-Za-z.'’]+(?: [A-Z][A-Za-z.'’]+){0,2})\s*,\s*(?:State|[A-Z]{2}(?:\s+\d{5})?|"
    r"[A-Z][a-z]+(?: [A-Z][a-z]+)?))\s*$"
)
_PLACEHOLDER_LOCATION = re.compile(r"^(?:city|state|country)(?:\s*,\s*(?:city|state|country))*$", re.IGNORECASE)


@dataclass
class _Part:
    text: str
    order: int  # position relative to the date line: <0 before, 0 on it, >0 after


def _header_like(line: str) -> bool:
    """A short line that can be a title, company or location (not a sentence or a bullet)."""
    if len(line) > 90 or len(line.split()) > 10 or line[:1].islower():
        return False  # a lower-case start is the wrapped tail of the previous bullet
    if line[:1] in "•·▪■►*" or re.match(r"^[-–]\s", line):
        return False
    return not (line.endswith(".") and not re.search(r"\b(?:inc|ltd|co|corp|llc)\.$", line, re.IGNORECASE))


_MINOR = frozenset({"and", "of", "the", "in", "for", "to", "at", "&", "de", "y"})


def _name_like(line: str) -> bool:
    """A short line of capitalised words: a company or a title, not a sentence."""
    words = line.split()
    return 0 < len(words) <= 6 and all(w[0].isupper() or w[0].isdigit() or w.lower() in _MINOR for w in words)


def _is_company(text: str) -> int:
    low = text.lower()
    if low.startswith("company name") or low in {"company", "the company"}:
        return 3
    words = set(re.findall(r"[a-z]+", low))
    if words & _COMPANY_WORDS:
        return 2
    return 0


def _split_location(text: str) -> tuple[str, str | None]:
    """(text without its location tail, the location).

    With no separator between them ("Stripe San Francisco, CA"), the city takes at most two
    words and the rest is left to be the company.
    """
    m = _LOCATION_TAIL.search(text)
    if not m:
        return text, None
    loc = " ".join(m.group(1).split())
    rest = text[:m.start()].strip(" ,-–|")
    city, _, region = loc.partition(",")
    words = city.split()
    if not rest and len(words) > 2 and "City" not in words[-1:]:
        rest, city = " ".join(words[:-2]), " ".join(words[-2:])
        loc = f"{city},{region}"
    return rest, loc


_LABEL = re.compile(
    r"^(role|designation|position|job\s+title|title|client|company|employer|organi[sz]ation|firm|duration|period|"
    r"team\s+size|environment|responsibilities|description|project(?:\s+name)?|technologies|tools)\s*[:\-–]\s*(.*)$",
    re.IGNORECASE,
)
_LABEL_KIND = {
    "role": "title", "designation": "title", "position": "title", "job": "title", "title": "title",
    "client": "company", "company": "company", "employer": "company", "organisation": "company",
    "organization": "company", "firm": "company",
}
_SUFFIX_PIECE = re.compile(r"^(?:inc|llc|llp|ltd|limited|corp|co|plc|gmbh|pvt\.?\s*ltd|s\.?a|ag)\.?$", re.IGNORECASE)


_DEPARTMENTS = frozenset(
    "sales marketing finance operations engineering hr it product research development legal support "
    "human resources business development customer service accounting procurement logistics administration "
    "strategy technology design quality risk compliance communications emea apac americas north america "
    "europe asia".split(" ")
) | {"human resources", "business development", "customer service", "north america"}


def _comma_pieces(seg: str, taxonomy: Taxonomy) -> list[str]:
    """Split "Fourth Grade Teacher, Wolfe Elementary School" at commas when it opens with a title.

    "COMPANY, INC." and "Vice President, Sales" stay whole: a company suffix rejoins its
    name, and a segment is only split when its first piece reads as a title and the rest
    does not.
    """
    pieces = [p.strip() for p in seg.split(", ") if p.strip()]
    if len(pieces) < 2:
        return [seg]
    merged: list[str] = []
    for piece in pieces:
        if merged and _SUFFIX_PIECE.match(piece):
            merged[-1] = f"{merged[-1]}, {piece}"
        else:
            merged.append(piece)
    if len(merged) < 2 or not taxonomy.looks_like_title(merged[0]) or _is_company(merged[0]):
        return [seg]
    rest = merged[1:]
    if all(p.lower() in _DEPARTMENTS for p in rest):
        return [seg]  # "Vice President, Sales": a title with its function
    return merged


def _title_score(text: str, taxonomy: Taxonomy) -> int:
    if taxonomy.normalize_title(text, strict=True):
        return 3
    if taxonomy.looks_like_title(text):
        return 2
    return 1 if taxonomy.normalize_title(text) else 0


def _fields(parts: list[_Part], taxonomy: Taxonomy) -> tuple[str | None, str | None, str | None]:
    """Title, company and location from the header parts of one entry."""
    segments: list[_Part] = []
    location: str | None = None
    labelled: dict[str, str] = {}
    for part in parts:
        m = _LABEL.match(part.text.strip())
        if m:
            # "Role: Functional Consultant", "Client: Cisco Systems", "Team size: 15".
            kind = _LABEL_KIND.get(m.group(1).lower().split()[0])
            value = m.group(2).strip(" ,:-–|")
            if kind and value and kind not in labelled:
                labelled[kind] = value
            continue
        for seg in _SEGMENT_SPLIT.split(part.text):
            seg = seg.strip(" ,:-–—|•·")
            if not seg:
                continue
            if _PLACEHOLDER_LOCATION.match(seg):
                location = location or seg
                continue
            rest, loc = _split_location(seg)
            if loc and re.search(r",\s*[A-Z][a-z]", loc) and taxonomy.looks_like_title(loc.split(",")[0]):
                loc = None  # "Accountant, Sony Music" is a title and a company, not a place
                rest = seg
            if loc and (rest or location is None):
                location = location or loc
                seg = rest
            if seg and len(seg) > 1 and not re.fullmatch(r"[\d\W]+", seg):
                segments.extend(_Part(piece, part.order) for piece in _comma_pieces(seg, taxonomy))
    if not segments:
        return labelled.get("title"), labelled.get("company"), location
    scored = [(s, _title_score(s.text, taxonomy), _is_company(s.text)) for s in segments]
    title_part = max(
        (x for x in scored if x[1] > 0 and x[2] < 3),
        key=lambda x: (x[1] - (x[2] > 0), -abs(x[0].order)),
        default=None,
    )
    rest = [x for x in scored if title_part is None or x[0] is not title_part[0]]
    company_part = max((x for x in rest if x[2] > 0), key=lambda x: (x[2], -abs(x[0].order)), default=None)
    if company_part is None:
        # No company word: the segment nearest the title (or the date) is the company.
        anchor = title_part[0].order if title_part else 0
        company_part = min(rest, key=lambda x: (abs(x[0].order - anchor), x[0].order), default=None)
    title = title_part[0].text if title_part else None
    if title is None and len(rest) > 1 and company_part is not None:
        others = [x for x in rest if x is not company_part]
        title = others[0][0].text
    company = company_part[0].text if company_part else None
    return labelled.get("title", title), labelled.get("company", company), location


def _tidy(text: str | None, max_words: int = 10) -> str | None:
    if not text or len(text.split()) > max_words:
        return None  # a sentence, not a name or a title
    text = text.strip(" ,:-–—|")
    if text.isupper() and len(text) > 4:
        text = text.title()
    return clean_line(text, 120) or None


def _responsibilities(lines: list[str]) -> list[str]:
    out: list[str] = []
    prev_bulleted = False
    for raw in lines:
        line = strip_bullet(raw)
        if not line:
            continue
        bulleted = line != raw.strip()
        # A wrapped line continues the previous item: it starts in lower case, or it follows
        # a bullet that has not ended its sentence ("... in Python (FastAPI) on" / "PostgreSQL.").
        wrapped = line[0].islower() or (prev_bulleted and not out[-1].endswith((".", "!", "?", ":", ";")))
        if out and not bulleted and wrapped and len(out[-1]) < 1500:
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
            prev_bulleted = bulleted
    return [clean_line(x, 2000) for x in out if len(x) > 2][:MAX_ITEMS]


def parse_experience(
    lines: list[str], taxonomy: Taxonomy, *, today: date | None = None
) -> tuple[list[ExperienceEntry], list[DateRange]]:
    """Experience entries and their date ranges from the lines of an experience section.

    Args:
        lines: the section's lines, as ``sections.prepare_lines`` made them.
        taxonomy: for title and skill lookup.
        today: the date "Present" means.

    Returns:
        Entries in document order (at most 40) and the ranges they were built from.
    """
    anchors: list[tuple[int, DateRange]] = []
    for i, line in enumerate(lines):
        ranges = find_ranges(line, today=today)
        if not ranges:
            continue
        r = ranges[0]
        # A range deep inside a long sentence is a detail, not an entry header.
        if len(line) > 140 and r.span[0] > 20 and r.span[1] < len(line) - 20:
            continue
        anchors.append((i, r))
    if not anchors:
        return [], []
    anchor_lines = {i for i, _ in anchors}
    entries: list[tuple[int, int, DateRange, list[_Part]]] = []  # header start, body start, range, parts
    prev_body = 0
    for k, (i, r) in enumerate(anchors):
        next_i = anchors[k + 1][0] if k + 1 < len(anchors) else len(lines)
        line = lines[i]
        parts = [_Part(line[:r.span[0]] + " | " + line[r.span[1]:], 0)]
        start = i
        j = i - 1
        while j >= prev_body and i - j <= 2 and j not in anchor_lines and _header_like(lines[j]):
            parts.append(_Part(lines[j], j - i))
            start = j
            j -= 1
        end = i + 1
        while end < next_i and end - i <= 2 and _header_like(lines[end]):
            cand = lines[end]
            company_or_place = _is_company(cand) or _LOCATION_TAIL.search(cand) or _PLACEHOLDER_LOCATION.match(cand)
            # A title right before the next date belongs to the next entry.
            owned_by_next = next_i - end <= 2 and all(_header_like(x) for x in lines[end:next_i])
            if (company_or_place or _name_like(cand)) and not (owned_by_next and not _is_company(cand)):
                parts.append(_Part(cand, end - i))
                end += 1
            else:
                break
        entries.append((start, end, r, parts))
        prev_body = end
    # One lookup for the whole section; each entry takes the hits on its own lines.
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    hits = taxonomy.find_skills("\n".join(lines))
    out: list[ExperienceEntry] = []
    ranges: list[DateRange] = []
    for k, (header_start, body_start, r, parts) in enumerate(entries):
        body_end = entries[k + 1][0] if k + 1 < len(entries) else len(lines)
        body = lines[body_start:body_end]
        title, company, location = _fields(parts, taxonomy)
        lo, hi = offsets[header_start], offsets[body_end]
        skills = list(dict.fromkeys(h.canonical for h in hits if lo <= h.start < hi))
        out.append(
            ExperienceEntry(
                title=_tidy(title),
                company=_tidy(company),
                location=_tidy(location),
                start=r.start_ym,
                end=r.end_ym,
                current=r.current,
                months=min(r.months, 900),
                responsibilities=_responsibilities(body),
                skills=[clean_line(s, 120) for s in skills[:60]],
            )
        )
        ranges.append(r)
        if len(out) == MAX_ITEMS:
            break
    return out, ranges


# Title words -> seniority, checked from the top: "Senior Manager" is lead, "VP" executive.
_SENIORITY_WORDS: list[tuple[Seniority, re.Pattern[str]]] = [
    (Seniority.executive, re.compile(
        r"\b(?:chief|ceo|cto|cfo|coo|cio|ciso|cmo|vp|svp|evp|vice\s+president|president|director|head\s+of|"
        r"partner|founder|co-founder|owner|executive\s+director|managing\s+director)\b", re.I)),
    (Seniority.lead, re.compile(r"\b(?:lead|principal|staff|architect|manager|supervisor|team\s+leader|head)\b", re.I)),
    (Seniority.senior, re.compile(r"\b(?:senior|sr\.?|snr|experienced|expert|specialist\s+ii+)\b", re.I)),
    (Seniority.intern, re.compile(r"\b(?:intern|internship|trainee|apprentice|working\s+student|stagiaire)\b", re.I)),
    (Seniority.junior, re.compile(r"\b(?:junior|jr\.?|entry[\s-]level|graduate)\b", re.I)),
    (Seniority.mid, re.compile(r"\b(?:mid[\s-]level|intermediate)\b", re.I)),
]


def seniority_from_title(title: str | None) -> Seniority:
    """The seniority a title states ("Sr. Engineer" -> senior), else unknown."""
    if not title:
        return Seniority.unknown
    for level, pattern in _SENIORITY_WORDS:
        if pattern.search(title):
            return level
    return Seniority.unknown


def seniority_from_years(years: float | None) -> Seniority:
    """The usual seniority for a number of years of experience."""
    if years is None:
        return Seniority.unknown
    if years < 2:
        return Seniority.junior
    if years < 5:
        return Seniority.mid
    return Seniority.senior


def seniority(titles: list[str], months: int) -> Seniority:
    """A CV's seniority: the most recent title that states one, else its years of experience."""
    for title in titles[:2]:
        level = seniority_from_title(title)
        if level is not Seniority.unknown:
            return level
    return seniority_from_years(months / 12) if months else Seniority.unknown
