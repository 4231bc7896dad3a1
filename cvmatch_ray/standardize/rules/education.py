"""Education entries (degree, level, field, institution, year), certifications and languages."""

from __future__ import annotations

import re

from cvmatch_ray.schemas import (
    MAX_ITEMS,
    EducationEntry,
    EducationLevel,
    LanguageLevel,
    LanguageSkill,
    clean_line,
)
from cvmatch_ray.standardize.rules.dates import YEAR_RE
from cvmatch_ray.standardize.rules.sections import strip_bullet

# Degree patterns per level, most specific first. Short forms are case-sensitive so that
# "be", "ms office" or "ma" in prose do not read as degrees.
_CI = re.IGNORECASE
_DEGREES: list[tuple[EducationLevel, re.Pattern[str]]] = [
    (EducationLevel.doctorate, re.compile(
        r"\b(?:ph\.?\s?d\.?|d\.?\s?phil\.?|doctor(?:ate)?\s+(?:of|in)\s+\w+|doctorate|ed\.?\s?d\.?|psy\.?\s?d\.?)"
        r"(?![a-z])", _CI)),
    (EducationLevel.doctorate, re.compile(r"\b(?:M\.D\.|MD(?= |,|$)|Pharm\.?\s?D\.?|D\.?D\.?S\.?|J\.D\.|JD(?= |,))")),
    (EducationLevel.master, re.compile(
        r"\b(?:master'?s?(?:\s+degree)?(?:\s+(?:of|in)\s+[a-z]+)?|m\.?\s?sc\.?|m\.?\s?tech\.?|mba|m\.?\s?b\.?\s?a\.?|"
        r"mca|m\.?\s?com\.?|m\.?\s?phil\.?|m\.?\s?eng\.?|mph|msw|m\.?\s?s\.?\s?s\.?\s?w\.?|llm|pgdm|"
        r"post\s?graduat(?:e|ion)(?:\s+diploma)?)(?![a-z])", _CI)),
    (EducationLevel.master, re.compile(r"\b(?:M\.S\.?|MS(?=\s+in\b|\s*[,(/]|\s+degree)|M\.A\.?|MA(?=\s+in\b|\s*[,/]|\s+degree)|M\.E\.?|"
                                       r"ME(?=\s+in\b)|M\.?\s?Ed\.?|M\.ED\.?|MSc|MEng)(?![A-Za-z])")),
    (EducationLevel.bachelor, re.compile(
        r"\b(?:bachelor'?s?(?:\s+degree)?(?:\s+(?:of|in)\s+[a-z]+)?|b\.?\s?sc\.?|b\.?\s?tech\.?|bba|b\.?\s?b\.?\s?a\.?|"
        r"bca|b\.?\s?com\.?|b\.?\s?eng\.?|bfa|llb|b\.?\s?pharm\.?|undergraduate\s+degree|graduat(?:e|ion)\s+degree)"
        r"(?![a-z])", _CI)),
    (EducationLevel.bachelor, re.compile(r"\b(?:B\.S\.?|BS(?=\s+in\b|\s*[,(/]|\s+degree)|B\.A\.?|BA(?=\s+in\b|\s*[,(/]|\s+degree)|"
                                         r"B\.E\.?|BE(?=\s+in\b|\s*[,(/])|B\.?\s?Ed\.?|BSc|BEng)(?![A-Za-z])")),
    (EducationLevel.associate, re.compile(
        r"\b(?:associate'?s?\s+(?:degree|of\s+(?:arts|science|applied))|a\.a\.s?\.?|a\.s\.)(?![a-z])", _CI)),
    (EducationLevel.high_school, re.compile(
        r"\b(?:high\s+school|secondary\s+school|senior\s+secondary|higher\s+secondary|ged|hsc|ssc|sslc|"
        r"a[\s-]levels?|1[02]th|(?:x|xii)(?:th)?\s+(?:standard|class|grade))(?![a-z])", _CI)),
    (EducationLevel.vocational, re.compile(
        r"\b(?:diploma|vocational|polytechnic|hnd|certificate\s+(?:in|of)\s+\w+|trade\s+school|apprenticeship)"
        r"(?![a-z])", _CI)),
]
_INSTITUTION = re.compile(
    r"\b(?:university|universidad|universit[eéàä]t?|college|institute|institution|school|academy|polytechnic|"
    r"iit|nit|iim|vidyalaya|vidyapeeth|conservatory|seminary)\b",
    re.IGNORECASE,
)
# Where a degree phrase ends: an institution, a date, a separator.
_DEGREE_END = re.compile(
    r"\s+(?:from|at)\s+|\s*[|•·;(]\s*|\s+[-–—]\s+"
    r"|\s*,\s*(?=[^,]*\b(?:univ\w*|college|institut\w*|school|academy|polytechnic)\b)"
    r"|\s*,?\s*(?:19|20)\d\d\b|\s{2,}"
    r"|\s*,?\s*\b(?:expected|anticipated|graduated|summa|magna|cum\s+laude|with\s+(?:honou?rs|distinction)|"
    r"c?gpa|percentage|grade|jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b",
    re.IGNORECASE,
)


def degree_level(text: str) -> tuple[EducationLevel, re.Match[str]] | None:
    """The highest degree level mentioned in ``text``, with its match."""
    for level, pattern in _DEGREES:
        m = pattern.search(text)
        if m:
            return level, m
    return None


def lowest_degree_level(text: str) -> EducationLevel | None:
    """The lowest degree level mentioned (a JD's "Bachelor's or Master's" asks for a bachelor)."""
    found = [level for level, pattern in _DEGREES if pattern.search(text)]
    return min(found, key=lambda lv: lv.rank) if found else None


def _institution(text: str) -> str | None:
    for chunk in re.split(r"\s*[,|•·;]\s*|\s+[-–—]\s+|\s{2,}", text):
        if _INSTITUTION.search(chunk) and len(chunk) <= 120:
            inst = re.sub(r"^(?:at|from)\s+", "", chunk.strip(" .:"), flags=re.IGNORECASE)
            inst = YEAR_RE.sub("", inst).strip(" ,-–()")
            if inst and not degree_level(inst):
                return inst
    return None


_GENERIC_FIELDS = frozenset({"arts", "science", "sciences", "engineering", "technology", "commerce", "education"})


def _field(degree: str) -> str | None:
    """The field of study in a degree phrase ("Bachelor of Science in Physics" -> "Physics")."""
    for pattern in (r"\bin\s+(.+)$", r"\s*[:,]\s*(.+)$", r"\bof\s+(.+)$"):
        m = re.search(pattern, degree, re.IGNORECASE)
        if m:
            field = m.group(1).strip(" ,.:")
            if field and field.lower() not in _GENERIC_FIELDS and not degree_level(field):
                return field
    return None


def _degree_phrase(line: str, m: re.Match[str]) -> str:
    tail = line[m.start():]
    end = _DEGREE_END.search(tail, m.end() - m.start())
    phrase = tail[: end.start()] if end else tail
    return phrase.strip(" ,.:-–")


def parse_education(lines: list[str]) -> list[EducationEntry]:
    """Education entries from an education section's lines (at most 15).

    A line with a degree opens an entry; an institution or a year on that line or the next
    two lines without a degree completes it. An institution line with no degree near it
    still makes an entry, with level ``none``.
    """
    entries: list[dict] = []
    for i, raw in enumerate(lines):
        line = strip_bullet(raw)
        found = degree_level(line)
        if found:
            level, m = found
            degree = _degree_phrase(line, m)
            entry = {"degree": degree, "level": level, "field": _field(degree), "institution": None, "year": None,
                     "line": i}
            entries.append(entry)
            window = [line[: m.start()] + " | " + line[m.start() + len(degree):]]
            window += [strip_bullet(x) for x in lines[i + 1:i + 3] if not degree_level(x)]
            for text in window:
                entry["institution"] = entry["institution"] or _institution(text)
                years = [int(y) for y in YEAR_RE.findall(text)]
                if years and entry["year"] is None:
                    entry["year"] = max(years)
            prev = strip_bullet(lines[i - 1]) if i > 0 else ""
            if entry["institution"] is None and YEAR_RE.search(prev) and not degree_level(prev) and not any(
                    e["line"] == i - 1 for e in entries):
                # "UC Berkeley 2019" above the degree: a school named without a keyword.
                name = YEAR_RE.sub("", prev).strip(" ,-–|()")
                if name and len(name.split()) <= 6 and name[:1].isupper() and not name.endswith("."):
                    entry["institution"] = name
                    years = [int(y) for y in YEAR_RE.findall(prev)]
                    if years and entry["year"] is None:
                        entry["year"] = max(years)
            continue
        inst = _institution(line)
        if inst and not any(e["institution"] == inst or i - e["line"] <= 2 for e in entries):
            before = [e for e in entries if e["institution"] is None and i - e["line"] <= 3]
            if before:
                before[-1]["institution"] = inst
            else:
                years = [int(y) for y in YEAR_RE.findall(line)]
                entries.append({"degree": None, "level": EducationLevel.none, "field": None, "institution": inst,
                                "year": max(years) if years else None, "line": i})
    out: list[EducationEntry] = []
    for e in entries[:15]:
        year = e["year"] if e["year"] and 1940 <= e["year"] <= 2100 else None
        out.append(
            EducationEntry(
                degree=clean_line(e["degree"], 120) or None,
                level=e["level"],
                field=clean_line(e["field"], 120) or None,
                institution=clean_line(e["institution"], 120) or None,
                year=year,
            )
        )
    return out


def parse_certifications(lines: list[str]) -> list[str]:
    """One certification per item of a certifications section (at most 40).

    An item is a line; a line ending with a dash, comma or "&" ("AWS Certified Developer -")
    or followed by one opening in lower case or with "(" is wrapped, and joined with the next.
    """
    items: list[str] = []
    joined = False
    for raw in lines:
        line = clean_line(strip_bullet(raw), 300)
        if not line:
            continue
        bulleted = line != raw.strip()
        if items and not bulleted and (joined or line[0].islower() or line[0] == "("):
            items[-1] = clean_line(f"{items[-1]} {line}", 300)
        else:
            items.append(line)
        joined = items[-1].endswith(("-", "–", "—", ",", "&", " and", " of"))
    out: list[str] = []
    for item in items:
        if len(item) > 2 and item not in out:
            out.append(item)
    return out[:MAX_ITEMS]


_LANGUAGES = frozenset(
    """english french german spanish italian portuguese dutch russian polish ukrainian czech slovak hungarian
    romanian bulgarian greek turkish arabic hebrew persian farsi urdu hindi bengali bangla punjabi gujarati
    marathi tamil telugu kannada malayalam sinhala nepali chinese mandarin cantonese japanese korean
    vietnamese thai indonesian malay tagalog filipino swahili amharic yoruba igbo hausa zulu afrikaans
    swedish norwegian danish finnish icelandic estonian latvian lithuanian serbian croatian bosnian slovenian
    macedonian albanian catalan basque galician irish welsh latin esperanto armenian georgian azerbaijani
    kazakh uzbek mongolian burmese khmer lao odia oriya assamese sindhi pashto kurdish somali""".split()
)
_LEVEL_WORDS: list[tuple[LanguageLevel, re.Pattern[str]]] = [
    (LanguageLevel.native, re.compile(r"\b(?:native|mother\s+tongue|bilingual|first\s+language|c2)\b", re.I)),
    (LanguageLevel.fluent, re.compile(r"\b(?:fluent|fluency|proficient|advanced|full\s+professional|c1)\b", re.I)),
    (LanguageLevel.intermediate, re.compile(
        r"\b(?:intermediate|conversational|working\s+knowledge|professional\s+working|good|b1|b2)\b", re.I)),
    (LanguageLevel.basic, re.compile(r"\b(?:basic|beginner|elementary|limited|notions|a1|a2)\b", re.I)),
]


def parse_languages(text: str) -> list[LanguageSkill]:
    """Spoken languages with their level, from a languages section or a "Languages:" line."""
    out: dict[str, LanguageLevel] = {}
    for item in re.split(r"[,;|•·\n]+|\s+and\s+|\s{2,}", text):
        words = re.findall(r"[^\W\d_]+", item)
        names = [w.capitalize() for w in words if w.lower() in _LANGUAGES]
        if not names:
            continue
        level = next((lv for lv, pat in _LEVEL_WORDS if pat.search(item)), LanguageLevel.unknown)
        for name in names:
            if name not in out or out[name] == LanguageLevel.unknown:
                out[name] = level
    return [LanguageSkill(name=n, level=lv) for n, lv in list(out.items())[:20]]
