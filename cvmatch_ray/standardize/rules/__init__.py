"""The rule-based standardizer: headings, regular expressions and the taxonomy, no model.

It is the CPU default: deterministic, a few milliseconds per CV, and the fallback when no
LLM backend is configured. The steps follow the document: ``sections`` cleans the text and
cuts it at headings, ``contact`` reads the header, ``skills`` looks every section up in the
taxonomy, ``experience`` and ``education`` parse their sections, ``jd`` does the same for
job descriptions. With a trained extractor (the default), ``learned_fields`` takes the
names, companies, titles, date ranges, degrees, institutions, places and skill mentions it
labels and combines them with the rules; ``extractor=None`` is the rule-only parser.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cvmatch_ray.schemas import CVProfile, JDProfile, Provenance, Section, clean_line
from cvmatch_ray.standardize.base import StandardizationError
from cvmatch_ray.standardize.rules.contact import extract_contact, find_headline
from cvmatch_ray.standardize.rules.dates import union_months
from cvmatch_ray.standardize.rules.education import parse_certifications, parse_education, parse_languages
from cvmatch_ray.standardize.rules.experience import parse_experience, seniority
from cvmatch_ray.standardize.rules.jd import parse_jd
from cvmatch_ray.standardize.rules.learned_fields import (
    education_entries,
    experience_entries,
    first_name,
    headings,
    skill_mentions,
)
from cvmatch_ray.standardize.rules.sections import prepare_lines, split_sections, strip_bullet
from cvmatch_ray.standardize.rules.skills import block_hits, merge_mentions
from cvmatch_ray.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from cvmatch_ray.standardize.learned import FieldExtractor

logger = logging.getLogger(__name__)

__all__ = ["RuleStandardizer"]

RULES_VERSION = "rules-1"
LEARNED_VERSION = "rules-1+crf-1"

_SHIPPED = object()  # the default extractor: the model shipped with the package


class RuleStandardizer:
    """Standardizer backed by rules and the shipped taxonomy.

    Args:
        taxonomy: the lookup to use; defaults to the shipped one.
        today: the date "Present" means in date ranges; defaults to each call's current date
            (tests pass a fixed date).
        extractor: the trained field extractor combined with the rules; defaults to the
            shipped model (loaded on first use); None parses with the rules alone.
    """

    name = "rules"

    def __init__(
        self, *, taxonomy: Taxonomy | None = None, today: date | None = None,
        extractor: FieldExtractor | None | object = _SHIPPED,
    ) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.today = today
        if extractor is _SHIPPED:
            # Imported here: the extractor's features use the rules' heading and degree patterns.
            from cvmatch_ray.standardize.learned import load_extractor

            extractor = load_extractor()
        self.extractor: FieldExtractor | None = extractor  # type: ignore[assignment]

    @property
    def provenance(self) -> Provenance:
        """Backend "rules", with the rules (and extractor) version as the prompt version."""
        version = LEARNED_VERSION if self.extractor is not None else RULES_VERSION
        return Provenance(backend="rules", model=None, prompt_version=version)

    def standardize_cv(self, text: str, *, today: date | None = None) -> CVProfile:
        """The CV profile of ``text``.

        Args:
            text: the CV's plain text.
            today: overrides the instance's ``today`` for this call.

        Raises:
            StandardizationError: the text is empty, or the profile fails validation.
        """
        if not text or not text.strip():
            raise StandardizationError("empty CV text")
        today = today or self.today or date.today()
        tax = self.taxonomy
        lines = prepare_lines(text)
        blocks = split_sections(lines)
        header = blocks[0][2]
        contact, name_idx = extract_contact(header, text, tax)
        headline = find_headline(header, name_idx, tax)

        by_section: dict[Section, list[str]] = {}
        for section, _, block_lines in blocks[1:]:
            by_section.setdefault(section, []).extend(block_lines)
        exp_lines = by_section.get(Section.experience)
        if not exp_lines:
            # No experience heading: look for dated entries outside the education-like sections.
            exp_lines = [ln for section, _, bl in blocks if section in (Section.header, Section.other, Section.summary)
                         for ln in bl]
        experience, ranges = parse_experience(exp_lines, tax, today=today)
        edu_lines = by_section.get(Section.education) or []
        education = parse_education(edu_lines)
        certifications = parse_certifications(by_section.get(Section.certifications, []))
        languages = parse_languages("\n".join(by_section.get(Section.languages, [])))
        summary_lines = [strip_bullet(x) for x in by_section.get(Section.summary, [])]
        months = min(union_months(ranges), 900)
        skills = merge_mentions(block_hits(blocks, tax))
        if self.extractor is not None:
            spans = self.extractor.spans(text)
            heads = headings(text)
            name = first_name(spans)
            # The rules' reading wins when it contains the span ("Dubois-Lefèvre", "JANE DOE" title-cased).
            if name and not (contact.name and name.lower() in contact.name.lower()):
                contact = contact.model_copy(update={"name": name})
            experience, ranges = experience_entries(text, spans, experience, ranges, tax, today=today, heads=heads)
            months = min(union_months(ranges), 900)
            education = education_entries(spans, education, heads)
            skills = skill_mentions(spans, skills, tax, heads)
        titles = [t for t in [headline, *(e.title for e in experience)] if t]
        try:
            return CVProfile(
                contact=contact,
                headline=headline,
                summary=clean_line(" ".join(summary_lines), 2000) or None,
                skills=skills,
                experience=experience,
                total_experience_months=months,
                education=education,
                certifications=certifications,
                languages=languages,
                seniority=seniority(titles, months),
            )
        except ValidationError as e:
            raise StandardizationError(f"rule-based CV profile failed validation: {e.error_count()} errors") from e

    def standardize_jd(self, text: str, *, today: date | None = None) -> JDProfile:
        """The JD profile of ``text``.

        Raises:
            StandardizationError: the text is empty, or the profile fails validation.
        """
        if not text or not text.strip():
            raise StandardizationError("empty JD text")
        try:
            return parse_jd(prepare_lines(text), self.taxonomy, today=today or self.today)
        except ValidationError as e:
            raise StandardizationError(f"rule-based JD profile failed validation: {e.error_count()} errors") from e
