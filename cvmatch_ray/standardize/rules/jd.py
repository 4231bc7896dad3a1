"""Job descriptions: title, required vs preferred skills, minimum years, education, duties.

A skill is preferred when it sits under a "Preferred qualifications" / "Nice to have" /
"Bonus" heading, or in a clause that says "a plus", "preferred", "nice to have",
"desirable"...; it is required under "Requirements" / "Must have" / "Minimum
qualifications" headings and everywhere else. A skill found both ways is required.
"""

from __future__ import annotations

import enum
import re
from datetime import date

from cvmatch_ray.schemas import MAX_ITEMS, JDProfile, Section, clean_line
from cvmatch_ray.standardize.rules.education import lowest_degree_level
from cvmatch_ray.standardize.rules.experience import seniority_from_title, seniority_from_years
from cvmatch_ray.standardize.rules.sections import HeadingTable, match_heading, strip_bullet
from cvmatch_ray.taxonomy import Taxonomy


class Part(enum.StrEnum):
    """What a JD section asks for."""

    intro = "intro"
    required = "required"
    preferred = "preferred"
    duties = "duties"
    about = "about"
    other = "other"


_JD_HEADINGS: dict[Part, tuple[str, ...]] = {
    Part.required: (
        "requirements", "required", "required skills", "required qualifications", "minimum qualifications",
        "basic qualifications", "qualifications", "must have", "must haves", "must have skills", "what you need",
        "what we need", "what you will need", "what you ll need", "what you bring", "who you are",
        "skills", "key skills", "skills required", "required experience", "experience", "requirements and skills",
        "skills and qualifications", "qualifications and skills", "your profile", "profile", "candidate profile",
        "desired profile", "job requirements", "technical skills", "eligibility", "eligibility criteria",
        "mandatory skills", "primary skills", "essential skills", "essential", "competencies",
        "education and experience", "skills and experience", "what we re looking for", "what we are looking for",
        "about you", "you have", "requirement", "key requirements",
    ),
    Part.preferred: (
        "preferred", "preferred qualifications", "preferred skills", "nice to have", "nice to haves",
        "good to have", "bonus", "bonus points", "bonus skills", "desirable", "desired", "desired skills",
        "desired qualifications", "plus", "pluses", "additional qualifications", "secondary skills",
        "it would be great if you have", "extra credit", "preferred experience", "optional",
    ),
    Part.duties: (
        "responsibilities", "key responsibilities", "job responsibilities", "duties", "duties and responsibilities",
        "roles and responsibilities", "role and responsibilities", "what you will do", "what you ll do",
        "what you do", "your responsibilities",
        "day to day", "what you ll be doing", "what you will be doing", "your tasks", "tasks",
        "key accountabilities", "accountabilities", "job duties", "responsibilities and duties",
    ),
    Part.about: (
        "your role", "the role", "role", "job description", "about the role", "the job", "position summary",
        "job summary", "role description", "overview", "about the job", "position overview",
    ),
    Part.other: (
        "about us", "about the company", "company", "benefits", "perks", "what we offer", "we offer",
        "compensation", "salary", "job type", "schedule", "location", "how to apply", "equal opportunity",
        "why join us", "our culture", "company description", "about company", "work location",
        "application question", "application questions", "contract length", "ability to commute",
        "ability to relocate", "speak with the employer",
    ),
}

# match_heading speaks in Sections; a JD's parts are mapped onto spare Section values.
_AS_SECTION = {Part.required: Section.skills, Part.preferred: Section.projects, Part.duties: Section.experience,
               Part.about: Section.summary, Part.other: Section.other}
_FROM_SECTION = {v: k for k, v in _AS_SECTION.items()}
JD_HEADINGS = HeadingTable(
    exact={" ".join(re.sub(r"[^\w\s]", " ", p.replace("&", " and ")).split()): _AS_SECTION[part]
           for part, phrases in _JD_HEADINGS.items() for p in phrases},
    keywords=(
        ("prefer", Section.projects), ("nice to have", Section.projects), ("bonus", Section.projects),
        ("desir", Section.projects), ("good to have", Section.projects),
        ("requirement", Section.skills), ("qualification", Section.skills), ("must have", Section.skills),
        ("skill", Section.skills), ("responsibilit", Section.experience), ("duties", Section.experience),
        ("benefit", Section.other), ("about us", Section.other),
    ),
)

_PREFERRED_CLAUSE = re.compile(
    r"\b(?:nice[\s-]to[\s-]have|good[\s-]to[\s-]have|(?:is\s+)?a\s+(?:big\s+|huge\s+)?plus|preferred|preferably|"
    r"bonus|desirable|desired|advantageous|an\s+advantage|is\s+an\s+asset|would\s+be\s+(?:great|nice|helpful)|"
    r"ideally|optional|not\s+required|not\s+mandatory)\b",
    re.IGNORECASE,
)
_REQUIRED_CLAUSE = re.compile(
    r"\b(?:must|required|requirement|mandatory|essential|need\s+to\s+have|minimum|at\s+least)\b", re.IGNORECASE
)
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
}
_NUM = r"(\d{1,2}(?:\.\d)?|" + "|".join(_NUMBER_WORDS) + r")"
_YEARS_PATTERNS = [
    re.compile(rf"\b{_NUM}\s*\+?\s*(?:-|–|to)\s*{_NUM}\s*\+?\s*(?:years?|yrs?)\b", re.IGNORECASE),
    re.compile(rf"\b(?:at\s+least|minimum(?:\s+of)?|min\.?|over|more\s+than)\s+{_NUM}\s*\+?\s*(?:years?|yrs?)\b",
               re.IGNORECASE),
    re.compile(rf"\b{_NUM}\s*\+\s*(?:years?|yrs?)\b", re.IGNORECASE),
    re.compile(rf"\b{_NUM}\s*(?:or\s+more|plus)\s*(?:years?|yrs?)\b", re.IGNORECASE),
    re.compile(rf"\b{_NUM}\s*(?:years?|yrs?)\s*(?:plus|\+|or\s+more|or\s+above|and\s+above)", re.IGNORECASE),
    re.compile(rf"\b(?:experience|exp)\s+(?:\w+\s+){{0,3}}{_NUM}\s*\+?\s*(?:years?|yrs?)\b", re.IGNORECASE),
    re.compile(rf"\b{_NUM}\s*(?:years?|yrs?)\s*\+?\s*(?:of\s+)?(?:\w+\s+){{0,4}}(?:experience|exp)\b", re.IGNORECASE),
    re.compile(rf"\b(?:experience|exp)\s*(?:of|:)?\s*{_NUM}\s*\+?\s*(?:years?|yrs?)\b", re.IGNORECASE),
]
_LOCATION_LINE = re.compile(r"^(?:job\s+)?(?:location|work\s+location|based\s+in|office)\s*[:\-]\s*(.+)$", re.I)
_TITLE_LINE = re.compile(r"^(?:job\s+title|position|role|title|job\s+role|designation)\s*[:\-]\s*(.+)$", re.I)


def _number(text: str) -> float:
    return float(_NUMBER_WORDS.get(text.lower(), text) if text.lower() in _NUMBER_WORDS else text)


def min_years(text: str) -> float | None:
    """The years of experience a text asks for: "5+ years" 5, "3-5 years" 3, "minimum of two years" 2."""
    found: list[float] = []
    for pattern in _YEARS_PATTERNS:
        for m in pattern.finditer(text):
            value = _number(m.group(1))
            if 0 < value <= 30:
                found.append(value)
    return min(found) if found else None


def _parts(lines: list[str]) -> list[tuple[Part, list[str]]]:
    out: list[tuple[Part, list[str]]] = [(Part.intro, [])]
    for line in lines:
        hit = match_heading(line, JD_HEADINGS)
        if hit is None:
            out[-1][1].append(line)
            continue
        section, rest = hit
        out.append((_FROM_SECTION.get(section, Part.other), [rest] if rest else []))
    return out


def _clauses(line: str) -> list[str]:
    return [c for c in re.split(r"(?<=[.;!?])\s+|\s+(?:and|but)\s+(?=(?:\w+\s+){0,3}(?:is|are)\s+(?:a\s+)?plus)", line) if c]


def parse_jd(lines: list[str], taxonomy: Taxonomy, *, today: date | None = None) -> JDProfile:
    """A JD profile from the JD's prepared lines (see ``sections.prepare_lines``).

    Args:
        lines: the JD's lines.
        taxonomy: for skills and titles.
        today: unused today; kept for a uniform signature with the CV parser.
    """
    del today
    parts = _parts(lines)
    required: dict[str, None] = {}
    preferred: dict[str, None] = {}
    years_required: list[float] = []
    years_any: list[float] = []
    edu_required: list = []
    edu_any: list = []
    duties: list[str] = []
    about: list[str] = []
    title = next((m.group(1) for ln in lines if (m := _TITLE_LINE.match(strip_bullet(ln)))), None)
    location = next((m.group(1) for ln in lines if (m := _LOCATION_LINE.match(strip_bullet(ln)))), None)
    for part, part_lines in parts:
        if part == Part.other:
            continue  # "About us", "Benefits": the company's stack is not the candidate's
        for raw in part_lines:
            line = strip_bullet(raw)
            if not line:
                continue
            if part == Part.about and raw != line:
                about.append(line)  # bullets under "The role": duties if no duties heading
            for clause in _clauses(line):
                marked = _PREFERRED_CLAUSE.search(clause) is not None
                if part == Part.required:
                    # "Go is a plus" under Requirements is still preferred, "must ... preferably" is not.
                    is_preferred = marked and _REQUIRED_CLAUSE.search(clause) is None
                else:
                    is_preferred = part == Part.preferred or marked
                section = Section.skills if part in (Part.required, Part.preferred) else None
                for hit in taxonomy.find_skills(clause, section=section):
                    (preferred if is_preferred else required)[hit.canonical] = None
                years = min_years(clause)
                level = lowest_degree_level(clause)
                if years is not None:
                    years_any.append(years)
                    if not is_preferred:
                        years_required.append(years)
                if level is not None:
                    edu_any.append(level)
                    if not is_preferred:
                        edu_required.append(level)
            if part == Part.duties:
                duties.append(line)
    if title is None:
        title = _guess_title(lines, taxonomy)
    if title:
        title = _tidy_title(title)
    if not duties:
        duties = about
    for name in required:
        preferred.pop(name, None)
    years = max(years_required or years_any) if (years_required or years_any) else None
    edu = edu_required or edu_any
    level = seniority_from_title(title)
    if level.value == "unknown":
        level = seniority_from_years(years)
    return JDProfile(
        title=clean_line(title, 120) or None,
        required_skills=[clean_line(s, 120) for s in list(required)[:80]],
        preferred_skills=[clean_line(s, 120) for s in list(preferred)[:80]],
        min_years=years,
        education_level=min(edu, key=lambda lv: lv.rank) if edu else None,
        responsibilities=[clean_line(d, 2000) for d in duties[:MAX_ITEMS]],
        location=clean_line(location, 120) or None,
        seniority=level,
    )


def _tidy_title(title: str) -> str:
    """A title without a leading "Job Description" label or a trailing requisition number."""
    title = re.sub(r"^(?:job\s+description|job\s+title|job\s+opening|position|vacancy|hiring)\s*[:\-–]?\s+", "",
                   title, flags=re.IGNORECASE)
    title = re.sub(r"\s*[-–#(]*\s*(?:req(?:uisition)?\.?\s*(?:id|no)?[\s:#-]*)?[A-Z]*\d{5,}\w*\)?\s*$", "",
                   title, flags=re.IGNORECASE)
    return title.strip(" -–|:")


def _guess_title(lines: list[str], taxonomy: Taxonomy) -> str | None:
    """The first short line near the top that reads as a job title (else the first short line)."""
    first_short: str | None = None
    for line in lines[:6]:
        line = strip_bullet(line)
        if not line or match_heading(line, JD_HEADINGS) is not None or len(line.split()) > 12:
            continue
        first_short = first_short or line
        head = re.split(r"\s+[-–—|]\s+|\s*\(", line, maxsplit=1)[0]
        if taxonomy.looks_like_title(head) or taxonomy.normalize_title(head):
            return line
    return first_short
