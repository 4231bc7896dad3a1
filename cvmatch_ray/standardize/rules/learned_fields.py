"""Profile fields from the trained extractor's spans, combined with the rules.

The extractor (``standardize.learned``) says *which words* are a name, a company, a title,
a date range, a degree, an institution, a place or a skill; the rules keep what they do
well: date ranges to months, canonical skill names, e-mail and phone, responsibilities
under a dated header. Experience entries are assembled per role from the spans: a title,
company, location or date range that the current role already has opens the next role,
and so does a long gap, so the Indeed layout (title line, ``Company - City -``, date line,
several roles per company) yields each role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from cvmatch_ray.schemas import MAX_ITEMS, MAX_SKILLS, EducationEntry, EducationLevel, ExperienceEntry, Section, SkillMention, clean_line
from cvmatch_ray.standardize.rules.dates import YEAR_RE, DateRange, find_ranges
from cvmatch_ray.standardize.rules.education import _field, degree_level
from cvmatch_ray.standardize.rules.experience import _responsibilities
from cvmatch_ray.standardize.rules.sections import match_heading, prepare_lines
from cvmatch_ray.taxonomy import Taxonomy

if TYPE_CHECKING:
    from cvmatch_ray.standardize.learned import Span

# A role's header spans sit close together; a longer gap is the role's body.
_ROLE_GAP = 250
_EDU_GAP = 200
_ROLE_FIELDS = ("TITLE", "COMPANY", "DATE")
_EDGE = " \t\n,;:|-–—•·*()[]"


def _clean(text: str, max_len: int = 120) -> str:
    return clean_line(text.strip(_EDGE).rstrip("."), max_len)


@dataclass
class Role:
    """One job as the spans describe it; ``start``/``end`` are its header's offsets."""

    start: int
    end: int
    title: str | None = None
    company: str | None = None
    location: str | None = None
    date: DateRange | None = None
    body_end: int = -1


def headings(text: str) -> list[tuple[int, Section]]:
    """(offset, section) of every heading line of the raw text."""
    out: list[tuple[int, Section]] = []
    pos = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and len(stripped) <= 80 and (hit := match_heading(stripped)) is not None:
            out.append((pos, hit[0]))
        pos += len(line) + 1
    return out


def section_at(heads: list[tuple[int, Section]], offset: int) -> Section:
    sec = Section.header
    for pos, s in heads:
        if pos > offset:
            break
        sec = s
    return sec


def assemble_roles(spans: list[Span], *, today: date) -> list[Role]:
    """Roles from the title, company, location and date spans, in document order."""
    roles: list[Role] = []
    cur: Role | None = None
    for sp in spans:
        if sp.label not in ("TITLE", "COMPANY", "LOCATION", "DATE"):
            continue
        if sp.label == "LOCATION":
            if cur is not None and cur.location is None and sp.start - cur.end <= 60:
                cur.location = _clean(sp.text)
                cur.end = sp.end
            continue
        rng: DateRange | None = None
        if sp.label == "DATE":
            ranges = find_ranges(" ".join(sp.text.split()), today=today)
            if not ranges:
                continue  # "over 8 years": a duration, not a role's dates
            rng = ranges[0]
        value = None if rng else _clean(sp.text)
        if sp.label != "DATE" and not value:
            continue
        taken = cur is not None and (
            (sp.label == "TITLE" and cur.title) or (sp.label == "COMPANY" and cur.company)
            or (sp.label == "DATE" and cur.date)
        )
        if cur is None or taken or sp.start - cur.end > _ROLE_GAP:
            cur = Role(sp.start, sp.end)
            roles.append(cur)
        if sp.label == "TITLE":
            cur.title = value
        elif sp.label == "COMPANY":
            cur.company = value
        else:
            cur.date = rng
        cur.end = sp.end
    for k, role in enumerate(roles):
        role.body_end = roles[k + 1].start if k + 1 < len(roles) else -1
    return roles


def _body(text: str, role: Role, heads: list[tuple[int, Section]]) -> list[str]:
    """The lines after a role's header, up to the next role or the next heading."""
    end = role.body_end if role.body_end >= 0 else len(text)
    nxt = next((pos for pos, _ in heads if role.end < pos < end), end)
    chunk = text[role.end:nxt]
    nl = chunk.find("\n")
    chunk = chunk[nl + 1:] if nl >= 0 else ""  # the rest of the header's last line is header
    return prepare_lines(chunk) if chunk.strip() else []


def experience_entries(
    text: str, spans: list[Span], rule_entries: list[ExperienceEntry], rule_ranges: list[DateRange],
    taxonomy: Taxonomy, *, today: date, heads: list[tuple[int, Section]],
) -> tuple[list[ExperienceEntry], list[DateRange]]:
    """Experience entries from the spans, merged with the rules' date-anchored entries.

    A role whose date range is one the rules found takes the rules' responsibilities and
    skills and the spans' title, company and location (the rules' where the spans have
    none). Rule entries no role matched keep their dates and responsibilities, after the
    role before them; when the spans found roles, such an entry's title and company are
    dropped (on the dev split the rules' guesses there were mostly wrong).
    """
    # A dateless title with no company in the header is the headline, already read by the rules.
    # A dateless title with no company above the first heading is the headline, which the
    # rules already read (text without headings has no such place: its titles are kept).
    first_heading = heads[0][0] if heads else -1
    roles = [r for r in assemble_roles(spans, today=today) if r.date or r.company or r.start > first_heading]
    places = [sp.text.strip() for sp in spans if sp.label == "LOCATION"]
    by_range = {(r.start, r.end): k for k, r in enumerate(rule_ranges)}
    used: set[int] = set()
    out: list[tuple[ExperienceEntry, DateRange | None]] = []
    for role in roles:
        k = by_range.get((role.date.start, role.date.end)) if role.date else None
        if k is not None and k not in used:
            used.add(k)
            base = rule_entries[k]
            base = _split_place(base, places)
            entry = base.model_copy(update={
                "title": role.title or base.title,
                "company": role.company or base.company,
                "location": role.location or (base.location if not role.company else None),
            })
            out.append((entry, rule_ranges[k]))
            continue
        # A dateless role in the header ("Java Developer - Infosys", the Indeed headline) owns no body.
        in_header = role.date is None and section_at(heads, role.start) in (Section.header, Section.summary)
        body = [] if in_header else _body(text, role, heads)
        hits = taxonomy.find_skills("\n".join(body)) if body else []
        skills = list(dict.fromkeys(h.canonical for h in hits))
        r = role.date
        out.append((ExperienceEntry(
            title=role.title, company=role.company, location=role.location,
            start=r.start_ym if r else None, end=r.end_ym if r else None, current=r.current if r else False,
            months=min(r.months, 900) if r else 0, responsibilities=_responsibilities(body),
            skills=[clean_line(s, 120) for s in skills[:60]],
        ), r))
    # Rule entries the spans missed, after the entry that preceded them in the rules' order.
    for k, entry in enumerate(rule_entries):
        if k in used:
            continue
        if roles:
            entry = _split_place(entry, places).model_copy(update={"title": None, "company": None})
        before = [rule_ranges[j] for j in range(k) if j in used]
        at = 0
        if before:
            at = next(i for i, (_, rng) in enumerate(out) if rng is before[-1]) + 1
        out.insert(at, (entry, rule_ranges[k]))
        used.add(k)
    out = out[:MAX_ITEMS]
    return [e for e, _ in out], [r for _, r in out if r is not None]


def _split_place(entry: ExperienceEntry, places: list[str]) -> ExperienceEntry:
    """A rule entry whose "location" is a company and a place ("Ardoise Logiciels, Lyon").

    When the extractor labelled only the tail as a place, the rest is the company.
    """
    loc = entry.location
    if entry.company or not loc:
        return entry
    for place in places:
        if place and loc.endswith(place) and len(loc) > len(place):
            rest = _clean(loc[: -len(place)])
            if rest:
                return entry.model_copy(update={"company": rest, "location": place})
    return entry


@dataclass
class _Edu:
    start: int
    end: int
    degree: str | None = None
    institution: str | None = None
    years: list[int] = field(default_factory=list)


def education_entries(
    spans: list[Span], rule_entries: list[EducationEntry], heads: list[tuple[int, Section]],
) -> list[EducationEntry]:
    """Education entries: the rules' when each names a degree and an institution (a clean
    education section), else grouped from degree, institution and graduation-year spans
    (outside certification sections), else the rules' again."""
    if rule_entries and all(e.degree and e.institution for e in rule_entries):
        return rule_entries
    groups: list[_Edu] = []
    cur: _Edu | None = None
    for sp in spans:
        if sp.label not in ("DEGREE", "COLLEGE", "GRAD") or section_at(heads, sp.start) is Section.certifications:
            continue
        years = [int(y) for y in YEAR_RE.findall(sp.text)]
        value = _clean(sp.text)
        if not value:
            continue
        taken = cur is not None and (
            (sp.label == "DEGREE" and cur.degree) or (sp.label == "COLLEGE" and cur.institution)
            or (sp.label == "GRAD" and cur.years)
        )
        if cur is None or taken or sp.start - cur.end > _EDU_GAP:
            cur = _Edu(sp.start, sp.end)
            groups.append(cur)
        if sp.label == "DEGREE":
            cur.degree = value
        elif sp.label == "COLLEGE":
            cur.institution = value
        else:
            cur.years = years
        cur.end = sp.end
    out: list[EducationEntry] = []
    for g in groups:
        if not (g.degree or g.institution):
            continue
        found = degree_level(g.degree) if g.degree else None
        year = max((y for y in g.years if 1940 <= y <= 2100), default=None)
        out.append(EducationEntry(
            degree=g.degree, level=found[0] if found else EducationLevel.none,
            field=clean_line(_field(g.degree), 120) or None if g.degree else None,
            institution=g.institution, year=year,
        ))
    return out[:15] or rule_entries


def first_name(spans: list[Span]) -> str | None:
    """The first name span that reads as a name (2 to 5 words, no digits)."""
    for sp in spans:
        if sp.label == "NAME":
            name = _clean(sp.text)
            if 1 <= len(name.split()) <= 5 and not re.search(r"\d|@", name):
                return name
    return None


def skill_mentions(
    spans: list[Span], rule_skills: list[SkillMention], taxonomy: Taxonomy, heads: list[tuple[int, Section]],
) -> list[SkillMention]:
    """The skills of a CV: the rules' taxonomy hits in skills sections, then the skill spans.

    Lists under a skills heading are what the taxonomy lookup reads well; in prose the
    extractor decides what is a skill (on the dev split, taxonomy hits in prose that the
    extractor did not label were mostly wrong). A span the taxonomy knows adds its surface
    to that canonical concept; an unknown one becomes a skill named as written.
    """
    merged: dict[str, SkillMention] = {
        s.name: s.model_copy(deep=True) for s in rule_skills if Section.skills in s.sections
    }
    for sp in spans:
        if sp.label != "SKILL":
            continue
        surface = _clean(sp.text)
        if not surface or len(surface) > 60 or len(surface.split()) > 6:
            continue
        name = taxonomy.canonical(surface, allow_blocked=True) or surface
        section = section_at(heads, sp.start)
        entry = merged.get(name)
        if entry is None:
            if len(merged) >= MAX_SKILLS:
                continue
            cat = taxonomy.category(name)
            entry = merged[name] = SkillMention(name=clean_line(name, 120), category=cat, mentions=[], sections=[])
        if surface not in entry.mentions and len(entry.mentions) < 10:
            entry.mentions.append(surface)
        if section not in entry.sections:
            entry.sections.append(section)
    return list(merged.values())
