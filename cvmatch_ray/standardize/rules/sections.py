"""Clean a document's text into lines and cut it into sections at its headings.

Extracted text comes in three shapes, all handled here:

* one line per visual line (most PDFs and DOCX files);
* one fragment per line, with separators on their own lines ("September 2014", "to",
  "Current", "Company Name", "ï¼", "City", ",", "State" from LiveCareer PDFs): separator
  lines are glued back to their neighbours;
* one long line for the whole document, where only runs of spaces mark the former line
  breaks (scraped resumes): such a blob is split at every run of two or more spaces.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from cvmatch_ray.schemas import Section

# Mojibake of common punctuation (UTF-8 read as cp1252) and the LiveCareer "｜" separator.
_MOJIBAKE = [
    ("ï¼\u200b", " | "), ("ï¼\x9c", " | "), ("ï¼", " | "), ("â€¢", " • "), ("â€“", " – "), ("â€”", " — "),
    ("â€™", "'"), ("â€˜", "'"), ("â€œ", '"'), ("â€\x9d", '"'), ("â€‹", ""), ("Â\xa0", " "), ("Â ", " "),
]
# Escaped UTF-8 bytes left as text ("\xe2\x80\xa2") by some scrapers.
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
# A line that only joins its neighbours.
_CONNECTOR = re.compile(r"^(?:to|till|until|through|-|–|—|,|:|\||/|@|at|&)$", re.IGNORECASE)
# A dash lost by a scraper between two years of a range: "2001  2005" -> "2001 - 2005".
_LOST_DASH = re.compile(
    r"\b((?:19|20)\d{2})\s{2,}((?:19|20)\d{2}|present|current|now|today|till date)\b", re.IGNORECASE
)
_BULLET = re.compile(r"^[\s•·◦▪■□●○◆◇►▶➢➤✓✔✗*>\-–—~]+\s*")

Block = tuple[Section, str | None, list[str]]


def _unescape_bytes(m: re.Match[str]) -> str:
    raw = bytes(int(h, 16) for h in re.findall(r"[0-9a-fA-F]{2}", m.group()))
    decoded = raw.decode("utf-8", errors="ignore")
    if decoded.isalnum():
        return decoded  # "R\xc3\x89SUM\xc3\x89" is one word
    return f" {decoded} " if decoded else " "


def clean_text(text: str) -> str:
    """Repair encoding debris and unify whitespace characters, keeping line breaks."""
    for bad, good in _MOJIBAKE:
        if bad in text:
            text = text.replace(bad, good)
    if "\\x" in text:
        text = _ESCAPED_BYTES.sub(_unescape_bytes, text)
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "  ").replace("\xa0", " ")
    # Control characters (form feeds from PDFs, \x01 from scrapers) are line breaks or noise.
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\n", text)


def _is_blob(lines: list[str]) -> bool:
    total = sum(len(x) for x in lines)
    return total > 200 and total / max(1, len(lines)) > 200


def prepare_lines(text: str) -> list[str]:
    """The document as clean, non-empty lines, with fragments glued and blobs split.

    Args:
        text: extracted text of a CV or JD.

    Returns:
        Stripped lines with single spaces inside; no empty lines.
    """
    raw = [ln.strip() for ln in clean_text(text).split("\n")]
    raw = [ln for ln in raw if ln and ln.strip('"\' ')]
    if _is_blob(raw):
        split: list[str] = []
        for ln in raw:
            if len(ln) > 200:
                ln = _LOST_DASH.sub(r"\1 - \2", ln)
                split.extend(p.strip().strip('"') for p in re.split(r"\s{2,}", ln))
            else:
                split.append(ln)
        raw = [p for p in split if p]
    lines: list[str] = []
    i = 0
    while i < len(raw):
        ln = " ".join(raw[i].split())
        if _CONNECTOR.match(ln) and lines and i + 1 < len(raw):
            lines[-1] = f"{lines[-1]} {ln} {' '.join(raw[i + 1].split())}"
            i += 2
            continue
        if lines and (ln.startswith(",") or _DATE_TAIL.match(ln) and _ends_with_date(lines[-1])):
            lines[-1] = f"{lines[-1]} {ln}"
        else:
            lines.append(ln)
        i += 1
    return lines


# The end of a range on its own line ("- 2016", "to Present"), not a bullet after a date line.
_DATE_TAIL = re.compile(
    r"^(?:to|-|–)\s+(?:[A-Za-z]{3,9}\.?,?\s*)?(?:(?:19|20)\d{2}|\d{1,2}[/.](?:19|20)?\d{2}|present|current|now|"
    r"today|date|till\s+date)\s*$",
    re.IGNORECASE,
)
_DATE_END = re.compile(r"(?:\b(?:19|20)\d{2}|\d{1,2}[/.](?:19|20)?\d{2})\s*$")


def _ends_with_date(line: str) -> bool:
    return _DATE_END.search(line) is not None


def strip_bullet(line: str) -> str:
    """A line without its leading bullet or dash."""
    return _BULLET.sub("", line).strip()


# --------------------------------------------------------------------------- headings

_CV_HEADINGS: dict[Section, tuple[str, ...]] = {
    Section.summary: (
        "summary", "professional summary", "profile", "professional profile", "executive profile",
        "career profile", "personal profile", "objective", "career objective", "objectives", "about me",
        "about", "overview", "executive summary", "personal statement", "summary of qualifications",
        "qualifications summary", "career summary", "profile summary", "professional overview",
        "career overview", "introduction", "summary of experience", "career focus", "professional objective",
        "executive overview", "career snapshot", "at a glance",
    ),
    Section.skills: (
        "skills", "technical skills", "key skills", "core skills", "skill set", "skillset", "skill sets",
        "core competencies", "competencies", "areas of expertise", "expertise", "key strengths",
        "strengths", "technologies", "technical proficiencies", "it skills", "computer skills",
        "software skills", "highlights", "skills summary", "technical expertise", "professional skills",
        "core qualifications", "skills and abilities", "skills and expertise", "key competencies",
        "tools", "tools and technologies", "technical summary", "technical skill", "software",
        "programming languages", "areas of strength", "technical competencies", "additional skills",
        "skill highlights", "relevant skills", "key qualifications", "qualifications", "core strengths",
        "summary of skills", "areas of knowledge", "knowledge", "technical knowledge", "specialties", "specialities",
    ),
    Section.experience: (
        "experience", "work experience", "professional experience", "employment", "employment history",
        "work history", "career history", "relevant experience", "professional background",
        "career experience", "job history", "experience summary", "internships", "internship",
        "professional history", "work experience details", "experience details", "employment details",
        "career", "positions held", "academic and professional experience", "teaching experience",
        "research experience", "industry experience", "organizational experience",
    ),
    Section.education: (
        "education", "academic background", "academics", "education and training", "educational background",
        "academic qualifications", "educational qualifications", "education and credentials",
        "academic profile", "academic details", "educational details", "qualification",
        "education details", "scholastic profile", "academic credentials", "education background",
    ),
    Section.certifications: (
        "certifications", "certification", "certificates", "licenses", "licences", "licenses and certifications",
        "certifications and licenses", "certifications licenses", "credentials", "accreditations",
        "professional certifications", "certifications and trainings", "trainings and certifications",
        "training and certifications", "courses", "training", "trainings",
    ),
    Section.languages: ("languages", "language skills", "language proficiency", "language", "languages known"),
    Section.projects: (
        "projects", "personal projects", "key projects", "academic projects", "project experience",
        "project details", "project", "major projects", "selected projects",
    ),
    Section.other: (
        "interests", "hobbies", "hobbies and interests", "references", "awards", "honors", "honours",
        "achievements", "accomplishments", "publications", "volunteer", "volunteering", "volunteer experience",
        "activities", "affiliations", "memberships", "additional information", "personal details",
        "personal information", "declaration", "extracurricular activities", "presentations", "conferences",
        "fellowships and awards", "awards and honors", "honors and awards", "community service", "links",
        "groups", "military service", "professional affiliations", "personal data", "strength", "patents",
    ),
}

# Keyword -> section for headings not in the table ("PROFESSIONAL WORK EXPERIENCE"); checked in order.
_HEADING_KEYWORDS: tuple[tuple[str, Section], ...] = (
    ("experience", Section.experience), ("employment", Section.experience), ("work history", Section.experience),
    ("education", Section.education), ("academic", Section.education),
    ("certif", Section.certifications), ("licens", Section.certifications),
    ("language", Section.languages), ("project", Section.projects),
    ("skill", Section.skills), ("competenc", Section.skills), ("expertise", Section.skills),
    ("strengths", Section.skills),
    ("proficienc", Section.skills), ("summary", Section.summary), ("profile", Section.summary),
    ("objective", Section.summary),
    ("award", Section.other), ("honor", Section.other), ("interest", Section.other),
    ("reference", Section.other), ("publication", Section.other), ("volunteer", Section.other),
    ("activit", Section.other), ("achievement", Section.other),
)


@dataclass
class HeadingTable:
    """Heading phrases -> section, matched on a normalised heading."""

    exact: dict[str, Section]
    keywords: tuple[tuple[str, Section], ...] = field(default_factory=tuple)


def _heading_key(text: str) -> str:
    text = text.replace("&", " and ").replace("/", " ")
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


CV_HEADINGS = HeadingTable(
    exact={_heading_key(p): s for s, phrases in _CV_HEADINGS.items() for p in phrases},
    keywords=_HEADING_KEYWORDS,
)


def match_heading(line: str, table: HeadingTable = CV_HEADINGS) -> tuple[Section, str] | None:
    """The section a heading line opens, with any text after a colon on the same line.

    "Technical Skills:" -> (skills, ""); "Skills: Python, SQL" -> (skills, "Python, SQL");
    "PROFESSIONAL WORK EXPERIENCE" -> (experience, ""). Prose lines are not headings.
    """
    stripped = strip_bullet(line) if line[:1] in "•·▪■►*" else line
    if len(stripped) > 80:
        head, sep, rest = stripped.partition(":")
        if sep and _heading_key(head) in table.exact:
            return table.exact[_heading_key(head)], rest.strip()
        return None
    head, sep, rest = stripped.partition(":")
    key = _heading_key(head)
    if not key:
        return None
    if key in table.exact:
        return table.exact[key], rest.strip() if sep else ""
    if sep and rest.strip():
        return None  # "Responsible for: ..." is prose with a colon
    words = key.split()
    if len(words) > 5 or any(ch.isdigit() for ch in key) or head.rstrip().endswith((".", ",")):
        return None
    letters = re.findall(r"[^\W\d_]+", head)
    if not (sep or head.isupper() or all(w[0].isupper() or w.lower() in _MINOR for w in letters)):
        return None
    # A styled line is a heading when its last word carries the keyword ("Professional
    # Experience", "CORE KNOWLEDGE & SKILLS") or is a heading noun ("Job History"), not when
    # it merely contains one ("Project Accountant", "PROJECT MANAGER").
    last = words[-1]
    for kw, section in table.keywords:
        if kw in last or (" " in kw and key.endswith(kw)):
            return section, ""
    if last in _HEADING_NOUNS or sep:
        for kw, section in table.keywords:
            if kw in key:
                return section, ""
    return None


_HEADING_NOUNS = frozenset(
    "history details summary profile background highlights information overview qualifications "
    "credentials record section areas".split()
)
_MINOR = frozenset({"and", "of", "the", "in", "for", "to", "with", "a", "an", "on", "at", "or", "my"})


def split_sections(lines: list[str], table: HeadingTable = CV_HEADINGS) -> list[Block]:
    """Cut lines into blocks at headings; lines before the first heading form the header.

    Returns:
        ``(section, heading, lines)`` triples in document order; the first has section
        ``header`` and heading None (possibly with no lines).
    """
    blocks: list[Block] = [(Section.header, None, [])]
    for line in lines:
        hit = match_heading(line, table)
        if hit is None:
            blocks[-1][2].append(line)
            continue
        section, rest = hit
        blocks.append((section, line, [rest] if rest else []))
    return blocks
