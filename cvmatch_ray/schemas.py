"""One schema, many uses.

The pydantic models here are, at once, the API's response bodies, the JSON stored in
LanceDB rows and the JSON schema that constrains the LLM standardizer. That is why they are
LLM-friendly: every string is bounded and has a ``pattern`` (no control characters, which
grammar-constrained decoders would otherwise let through), lists are bounded, closed sets
are enums, and there are no free-form dicts.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# No ASCII control characters (tabs and newlines included): profile strings are single
# lines. Producers collapse whitespace before building a model (see ``clean_line``).
_LINE = r"^[^\x00-\x1f\x7f]*$"

ShortText = Annotated[str, StringConstraints(max_length=120, pattern=_LINE)]
Text = Annotated[str, StringConstraints(max_length=300, pattern=_LINE)]
LongText = Annotated[str, StringConstraints(max_length=2000, pattern=_LINE)]
YearMonth = Annotated[str, StringConstraints(pattern=r"^[12][0-9]{3}-(0[1-9]|1[0-2])$")]
Email = Annotated[str, StringConstraints(max_length=120, pattern=r"^[^\s@\x00-\x1f]+@[^\s@\x00-\x1f]+\.[A-Za-z]{2,}$")]

MAX_SKILLS = 200
MAX_ITEMS = 40


# Control characters (form feeds, NULs from broken PDFs) never belong in a line, nor do the
# bidirectional overrides and isolates that make "cv\u202efdp.exe" display as "cvexe.pdf".
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_DROP_CONTROLS = dict.fromkeys([*range(0x20), 0x7F, *_BIDI])


def clean_line(text: str | None, max_len: int = 300) -> str:
    """Collapse all whitespace (newlines, tabs) to single spaces and cut to ``max_len``."""
    if not text:
        return ""
    return " ".join(text.split()).translate(_DROP_CONTROLS)[:max_len].rstrip()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


# ----------------------------------------------------------------------------- enums


class EducationLevel(str, enum.Enum):
    """Highest education reached, ordered; ``rank`` gives the order."""

    none = "none"
    high_school = "high_school"
    vocational = "vocational"
    associate = "associate"
    bachelor = "bachelor"
    master = "master"
    doctorate = "doctorate"

    @property
    def rank(self) -> int:
        return _EDUCATION_RANK[self]


_EDUCATION_RANK = {level: i for i, level in enumerate(EducationLevel)}


class Seniority(str, enum.Enum):
    unknown = "unknown"
    intern = "intern"
    junior = "junior"
    mid = "mid"
    senior = "senior"
    lead = "lead"
    executive = "executive"


class Section(str, enum.Enum):
    """Where in a document a mention was found."""

    header = "header"
    summary = "summary"
    skills = "skills"
    experience = "experience"
    education = "education"
    certifications = "certifications"
    languages = "languages"
    projects = "projects"
    other = "other"


class LanguageLevel(str, enum.Enum):
    unknown = "unknown"
    basic = "basic"
    intermediate = "intermediate"
    fluent = "fluent"
    native = "native"


# ------------------------------------------------------------------------- CV profile


class Contact(_Model):
    """Personally identifiable information. Never read by the scorer."""

    name: ShortText | None = None
    email: Email | None = None
    phone: Annotated[str, StringConstraints(max_length=40, pattern=r"^[0-9+()./ x-]*$")] | None = None
    location: ShortText | None = None
    links: list[Text] = Field(default_factory=list, max_length=10)


class SkillMention(_Model):
    """A canonical skill and the words in the document that mentioned it."""

    name: ShortText = Field(description="Canonical skill name from the taxonomy.")
    category: ShortText | None = None
    mentions: list[ShortText] = Field(default_factory=list, max_length=10, description="Surface forms seen.")
    sections: list[Section] = Field(default_factory=list, max_length=9)


class ExperienceEntry(_Model):
    title: ShortText | None = None
    company: ShortText | None = None
    location: ShortText | None = None
    start: YearMonth | None = None
    end: YearMonth | None = None
    current: bool = False
    months: int = Field(0, ge=0, le=900)
    responsibilities: list[LongText] = Field(default_factory=list, max_length=MAX_ITEMS)
    skills: list[ShortText] = Field(default_factory=list, max_length=60)


class EducationEntry(_Model):
    degree: ShortText | None = None
    level: EducationLevel = EducationLevel.none
    field: ShortText | None = None
    institution: ShortText | None = None
    year: int | None = Field(None, ge=1940, le=2100)


class LanguageSkill(_Model):
    name: ShortText
    level: LanguageLevel = LanguageLevel.unknown


class CVProfile(_Model):
    """A standardized CV: what the rules or the LLM produce from a CV's text."""

    contact: Contact = Field(default_factory=Contact)
    headline: ShortText | None = Field(None, description="The title line under the name, if any.")
    summary: LongText | None = None
    skills: list[SkillMention] = Field(default_factory=list, max_length=MAX_SKILLS)
    experience: list[ExperienceEntry] = Field(default_factory=list, max_length=MAX_ITEMS)
    total_experience_months: int = Field(0, ge=0, le=900, description="Union of date ranges, overlaps once.")
    education: list[EducationEntry] = Field(default_factory=list, max_length=15)
    certifications: list[Text] = Field(default_factory=list, max_length=MAX_ITEMS)
    languages: list[LanguageSkill] = Field(default_factory=list, max_length=20)
    seniority: Seniority = Seniority.unknown

    @property
    def skill_names(self) -> list[str]:
        return [s.name for s in self.skills]

    @property
    def highest_education(self) -> EducationLevel:
        return max((e.level for e in self.education), key=lambda lv: lv.rank, default=EducationLevel.none)

    @property
    def titles(self) -> list[str]:
        """Headline first, then experience titles, most recent first as listed."""
        seen: list[str] = []
        for t in [self.headline, *(e.title for e in self.experience)]:
            if t and t not in seen:
                seen.append(t)
        return seen


class CVStats(_Model):
    skills_count: int = 0
    responsibilities_count: int = 0
    pii_fields_found: list[ShortText] = Field(default_factory=list)

    @classmethod
    def of(cls, profile: CVProfile) -> CVStats:
        c = profile.contact
        pii = [f for f in ("name", "email", "phone", "location") if getattr(c, f)]
        if c.links:
            pii.append("links")
        return cls(
            skills_count=len(profile.skills),
            responsibilities_count=sum(len(e.responsibilities) for e in profile.experience),
            pii_fields_found=pii,
        )


# ------------------------------------------------------------------------- JD profile


class JDProfile(_Model):
    """A standardized job description."""

    title: ShortText | None = None
    required_skills: list[ShortText] = Field(default_factory=list, max_length=80, description="Canonical names.")
    preferred_skills: list[ShortText] = Field(default_factory=list, max_length=80, description="Canonical names.")
    min_years: float | None = Field(None, ge=0, le=50)
    education_level: EducationLevel | None = None
    responsibilities: list[LongText] = Field(default_factory=list, max_length=MAX_ITEMS)
    location: ShortText | None = None
    seniority: Seniority = Seniority.unknown


# ---------------------------------------------------------------------- provenance


class Provenance(_Model):
    """Which backend, model and prompt produced a profile, so any score can be traced."""

    backend: ShortText = "rules"
    model: ShortText | None = None
    prompt_version: ShortText | None = None
    extractor: ShortText | None = None


# -------------------------------------------------------------------------- matching


class ScoreBreakdown(_Model):
    """Each component in [0, 1]; ``None`` where it does not apply to the pair."""

    required_skills: float | None = None
    preferred_skills: float | None = None
    semantic: float | None = None
    experience: float | None = None
    education: float | None = None
    title: float | None = None
    lexical: float | None = None


MAX_EVIDENCE = 16


class Evidence(_Model):
    """One reason behind a component's value: a JD requirement and the CV text that met it."""

    component: ShortText = Field(description="The score component, e.g. 'required_skills'.")
    requirement: Text = Field(description="What the JD asked for (a skill, a title, years...).")
    cv_text: Text = Field(description="The CV line, skill or value that met it (blinded).")


class MatchResult(_Model):
    cv_id: str
    jd_id: str
    score: float = Field(ge=0, le=100)
    breakdown: ScoreBreakdown
    matched_skills: list[str] = Field(default_factory=list)
    missing_required: list[str] = Field(default_factory=list)
    missing_preferred: list[str] = Field(default_factory=list)
    explanation: str = ""
    evidence: list[Evidence] = Field(default_factory=list, max_length=MAX_EVIDENCE)


# ---------------------------------------------------------------------- stored docs


class CVPublic(_Model):
    """A stored CV as the API returns it."""

    cv_id: str
    filename: str | None = None
    profile: CVProfile
    stats: CVStats
    provenance: Provenance
    flags: list[str] = Field(default_factory=list, description="e.g. 'hidden_text'.")
    created_at: datetime | None = None


class JDPublic(_Model):
    jd_id: str
    filename: str | None = None
    profile: JDProfile
    provenance: Provenance
    created_at: datetime | None = None
