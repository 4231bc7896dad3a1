"""Skills of a document: taxonomy hits per section, merged into one mention per concept."""

from __future__ import annotations

import re

from cvmatch_ray.schemas import MAX_SKILLS, Section, SkillMention, clean_line
from cvmatch_ray.standardize.rules.sections import Block
from cvmatch_ray.taxonomy import SkillHit, Taxonomy

_URL_OR_EMAIL = re.compile(
    r"(?:https?://|www\.)\S+|\S+@\S+\.\w+|\b[\w.-]+\.(?:com|org|net|io|in|co|edu|gov)/\S*", re.IGNORECASE
)


# Degree names ("B.Sc. Computer Science") are not skills; contact lines hold none.
_SKIPPED = frozenset({Section.education})


def mask_contact(text: str) -> str:
    """``text`` with e-mails and URLs blanked out (same length), so "https" is not HTTP."""
    def blank(m: re.Match[str]) -> str:
        return " " * len(m.group())

    return _URL_OR_EMAIL.sub(blank, text)


def block_hits(blocks: list[Block], taxonomy: Taxonomy) -> list[tuple[Section, list[SkillHit]]]:
    """Taxonomy hits of each block, found with the block's section as context."""
    out: list[tuple[Section, list[SkillHit]]] = []
    for section, _, lines in blocks:
        if lines and section not in _SKIPPED:
            out.append((section, taxonomy.find_skills(mask_contact("\n".join(lines)), section=section)))
    return out


def merge_mentions(hits: list[tuple[Section, list[SkillHit]]]) -> list[SkillMention]:
    """One SkillMention per canonical skill, in order of first mention, with surfaces and sections."""
    merged: dict[str, tuple[str | None, list[str], list[Section]]] = {}
    for section, section_hits in hits:
        for hit in section_hits:
            entry = merged.get(hit.canonical)
            if entry is None:
                if len(merged) >= MAX_SKILLS:
                    continue
                entry = merged[hit.canonical] = (hit.category, [], [])
            surface = clean_line(hit.surface, 120)
            if surface and surface not in entry[1] and len(entry[1]) < 10:
                entry[1].append(surface)
            if section not in entry[2]:
                entry[2].append(section)
    return [
        SkillMention(
            name=clean_line(name, 120),
            category=clean_line(cat, 120) if cat else None,
            mentions=surfaces,
            sections=sections,
        )
        for name, (cat, surfaces, sections) in merged.items()
    ]
