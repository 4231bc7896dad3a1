"""The rules check and fill an LLM's profile: what the rules read reliably wins.

An LLM reads layout and wording better than rules; rules read e-mails, phones, links and
date ranges exactly. ``merge_profiles`` keeps the LLM's profile and puts the rules' reading
of those fields in where the LLM's is missing or not in the text; skills become canonical
taxonomy names. Given the text, skills, employers and job titles the text does not support
are dropped (``grounding.py``): text written for the model cannot add them.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from cvmatch_ray.schemas import MAX_SKILLS, Contact, CVProfile, ExperienceEntry, JDProfile, SkillMention
from cvmatch_ray.standardize.grounding import Grounding

if TYPE_CHECKING:
    from cvmatch_ray.taxonomy import Taxonomy


def _ym_index(ym: str | None) -> int | None:
    if not ym:
        return None
    year, month = ym.split("-")
    return int(year) * 12 + int(month) - 1


def _entry_span(entry: ExperienceEntry, today: date) -> tuple[int, int] | None:
    """``[start, end)`` month indices of an entry, or None without a usable start."""
    start = _ym_index(entry.start)
    if start is None:
        return None
    end = _ym_index(entry.end)
    now = today.year * 12 + today.month - 1
    stop = now + 1 if end is None and entry.current else (end + 1 if end is not None else None)
    if stop is None or stop <= start:
        return None
    return start, min(stop, now + 1)


def _union(spans: list[tuple[int, int]]) -> int:
    total, cur = 0, None
    for s, e in sorted(spans):
        if cur is None or s > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [s, e]
        else:
            cur[1] = max(cur[1], e)
    if cur is not None:
        total += cur[1] - cur[0]
    return total


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _key(s: str | None) -> str:
    return " ".join((s or "").casefold().split())


def _canonical_skill(name: str, taxonomy: Taxonomy | None) -> str:
    if taxonomy is None:
        return name
    # The LLM only lists skills, so a blocked short form ("Go", "R") is meant as one.
    return taxonomy.canonical(name, allow_blocked=True) or name


def _canonical_skills(skills: list[SkillMention], taxonomy: Taxonomy | None) -> list[SkillMention]:
    merged: dict[str, SkillMention] = {}
    for skill in skills:
        name = _canonical_skill(skill.name, taxonomy)
        have = merged.get(name)
        if have is None:
            category = (taxonomy.category(name) if taxonomy is not None else None) or skill.category
            merged[name] = SkillMention(
                name=name, category=category, mentions=list(dict.fromkeys(skill.mentions))[:10],
                sections=list(dict.fromkeys(skill.sections))[:9],
            )
        else:
            have.mentions = list(dict.fromkeys([*have.mentions, *skill.mentions]))[:10]
            have.sections = list(dict.fromkeys([*have.sections, *skill.sections]))[:9]
    return list(merged.values())[:MAX_SKILLS]


def _canonical_names(names: list[str], taxonomy: Taxonomy | None, limit: int) -> list[str]:
    return list(dict.fromkeys(_canonical_skill(n, taxonomy) for n in names))[:limit]


def _merge_contact(llm: Contact, rules: Contact, text: str | None) -> Contact:
    folded = text.casefold() if text is not None else None
    email = rules.email
    if email is None and llm.email and (folded is None or llm.email.casefold() in folded):
        email = llm.email  # kept only when it is really written in the document
    phone = rules.phone
    if phone is None and llm.phone:
        digits = _digits(llm.phone)
        if len(digits) >= 7 and (text is None or digits in _digits(text)):
            phone = llm.phone
    links = list(rules.links)
    for link in llm.links:
        if link not in links and (folded is None or link.casefold() in folded):
            links.append(link)
    return Contact(
        name=llm.name or rules.name,
        email=email,
        phone=phone,
        location=llm.location or rules.location,
        links=links[:10],
    )


def merge_profiles(
    llm: CVProfile,
    rules: CVProfile,
    *,
    text: str | None = None,
    taxonomy: Taxonomy | None = None,
    today: date | None = None,
    grounding: Grounding | None = None,
) -> CVProfile:
    """The LLM's CV profile, checked and filled with what the rules extract reliably.

    * e-mail and phone: the rules' value wins (read by regular expression from the text);
      the LLM's is kept only when the rules found none and, if ``text`` is given, it is
      written in the text (so a hallucinated address never lands in the store);
    * links: the rules' links, then the LLM's ones that are written in the text;
    * experience: an entry with no dates takes them from the rules' entry with the same
      title or company; every entry's ``months`` is recomputed from its dates;
    * total_experience_months: the rules' union of date ranges when they found any, else
      the union of the merged entries' dates, else the LLM's number;
    * skill names (CV skills, experience skills) go through the taxonomy, and duplicates
      that the taxonomy shows to be the same skill are merged;
    * with ``text``: a skill (CV or experience) not written in it, and an experience
      entry's title or company mostly not written in it, are dropped and counted in
      ``grounding.dropped``.

    Args:
        llm: the profile the LLM produced (already validated).
        rules: the rule-based profile of the same text.
        text: the document text, to check the LLM's contact details against.
        taxonomy: the skills lookup; None leaves skill names as the LLM wrote them.
        today: the month "current" jobs run to; defaults to today.
        grounding: the text's checks, to read the drops from; made from ``text`` if None.
    """
    today = today or date.today()
    if grounding is None and text is not None:
        grounding = Grounding(text, taxonomy)
    if grounding is not None:
        llm = ground_cv(llm, grounding)
    by_title = {_key(e.title): e for e in rules.experience if e.title and e.start}
    by_company = {_key(e.company): e for e in rules.experience if e.company and e.start}
    experience: list[ExperienceEntry] = []
    spans: list[tuple[int, int]] = []
    for entry in llm.experience:
        entry = entry.model_copy(deep=True)
        if entry.start is None:
            match = by_title.get(_key(entry.title)) or by_company.get(_key(entry.company))
            if match is not None:
                entry.start, entry.end, entry.current = match.start, match.end, match.current
        span = _entry_span(entry, today)
        if span is not None:
            spans.append(span)
            entry.months = min(span[1] - span[0], 900)
        entry.skills = _canonical_names(entry.skills, taxonomy, 60)
        experience.append(entry)
    if rules.total_experience_months > 0:
        total = rules.total_experience_months
    elif spans:
        total = _union(spans)
    else:
        total = llm.total_experience_months
    data = llm.model_dump()
    data.update(
        contact=_merge_contact(llm.contact, rules.contact, text).model_dump(),
        experience=[e.model_dump() for e in experience],
        total_experience_months=min(total, 900),
        skills=[s.model_dump() for s in _canonical_skills(llm.skills, taxonomy)],
    )
    return CVProfile.model_validate(data)


def ground_cv(llm: CVProfile, g: Grounding) -> CVProfile:
    """``llm`` without the skills, titles and companies its text does not support."""
    skills = []
    for s in llm.skills:
        if g.keep("skills", g.skill(s.name, s.mentions)):
            skills.append(s.model_copy(update={"mentions": [m for m in s.mentions if g.written(m)]}))
    experience = []
    for e in llm.experience:
        experience.append(e.model_copy(update={
            "title": e.title if e.title is None or g.keep("titles", g.mostly_written(e.title)) else None,
            "company": e.company if e.company is None or g.keep("companies", g.mostly_written(e.company)) else None,
            "skills": [s for s in e.skills if g.keep("skills", g.skill(s))],
        }))
    return llm.model_copy(update={"skills": skills, "experience": experience})


def ground_jd(llm: JDProfile, g: Grounding) -> JDProfile:
    """``llm`` without the skills and title its text does not support."""
    return llm.model_copy(update={
        "required_skills": [s for s in llm.required_skills if g.keep("skills", g.skill(s))],
        "preferred_skills": [s for s in llm.preferred_skills if g.keep("skills", g.skill(s))],
        "title": llm.title if llm.title is None or g.keep("titles", g.mostly_written(llm.title)) else None,
    })


def merge_jd_profiles(
    llm: JDProfile,
    rules: JDProfile,
    *,
    taxonomy: Taxonomy | None = None,
    text: str | None = None,
    grounding: Grounding | None = None,
) -> JDProfile:
    """The LLM's JD profile with skill names through the taxonomy and gaps filled by the rules.

    Title, minimum years, education level and location that the LLM left empty come from
    the rules; a preferred skill that is also required is kept as required only. With
    ``text`` (or ``grounding``), skills and a title the text does not support are dropped.
    """
    if grounding is None and text is not None:
        grounding = Grounding(text, taxonomy)
    if grounding is not None:
        llm = ground_jd(llm, grounding)
    required = _canonical_names(llm.required_skills, taxonomy, 80)
    preferred = [s for s in _canonical_names(llm.preferred_skills, taxonomy, 80) if s not in required]
    data = llm.model_dump()
    data.update(
        required_skills=required,
        preferred_skills=preferred,
        title=llm.title or rules.title,
        min_years=llm.min_years if llm.min_years is not None else rules.min_years,
        education_level=llm.education_level or rules.education_level,
        location=llm.location or rules.location,
    )
    return JDProfile.model_validate(data)
